"""Open an export for `check --against`: the runtime follows the file's extension, and each runtime
is imported by its own runner module only when such a file is given."""

from __future__ import annotations

import os

from ..errors import BadInputError
from ..spec import ModelSpec
from .base import Runner

EXPORT_KINDS = {".onnx": "ONNX Runtime", ".tflite": "LiteRT"}
KERAS_SIDE = "keras:"  # --against keras:jax / keras:tensorflow: Keras 3 on that backend, in a child process


def open_export(
    path: str,
    spec: ModelSpec,
    allow_external_data: bool = False,
    *,
    batch_size: int = 32,
    trust_model_code: bool = False,
) -> Runner:
    """A runner for `path`: `.onnx` through ONNX Runtime, `.tflite` through LiteRT, `keras:BACKEND`
    the model itself on Keras 3 with that backend (jax, tensorflow).

    Raises BadInputError (2) for another extension or an unreadable file, KerasSideError (4) when the
    runtime is not installed or cannot run the file."""
    if path.startswith(KERAS_SIDE):
        from .keras_backend import open_keras_backend

        return open_keras_backend(path[len(KERAS_SIDE) :], spec, batch_size, trust_model_code)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        from .onnx_runtime import open_onnx

        return open_onnx(path, spec, allow_external_data=allow_external_data)
    if suffix == ".tflite":
        from .litert import open_tflite

        return open_tflite(path, spec)
    known = ", ".join(f"{ext} ({runtime})" for ext, runtime in EXPORT_KINDS.items())
    raise BadInputError(f"{path}: --against takes an exported model ({known}) or keras:jax / keras:tensorflow")


def fixed_timesteps(runners: list[Runner]) -> int | None:
    """The time length an export fixes for its first input (axis 1), if any: generated inputs use it."""
    for runner in runners:
        shapes = getattr(runner, "input_shapes", None) or []
        if shapes and len(shapes[0]) >= 3 and shapes[0][1] is not None:
            return int(shapes[0][1])
    return None
