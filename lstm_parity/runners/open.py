"""Open an export for `check --against`: the runtime follows the file's extension, or a target prefix
(`tflm:`, `openvino:`, `hls4ml`), and each runtime is imported by its own runner module only when such
a file is given.

    model.onnx                ONNX Runtime               model.tflite          LiteRT
    tflm:model.tflite         TFLite Micro               openvino:model.onnx   OpenVINO (or an IR .xml)
    hls4ml / hls4ml:cfg.yml   MODEL itself through hls4ml (its default config, or the YAML's)
    keras:jax                 MODEL itself on Keras 3's JAX (or tensorflow) backend
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import BadInputError
from ..spec import ModelSpec
from .base import Runner

EXPORT_KINDS = {".onnx": "ONNX Runtime", ".tflite": "LiteRT"}
KERAS_SIDE = "keras:"  # --against keras:jax / keras:tensorflow: Keras 3 on that backend, in a child process
TARGETS = {  # --against TARGET:FILE: a runtime chosen by name, not by extension
    "tflm": "tflm:FILE.tflite (TFLite Micro)",
    "openvino": "openvino:FILE.onnx or .xml (OpenVINO)",
    "hls4ml": "hls4ml or hls4ml:CONFIG.yml (MODEL through hls4ml)",
    "keras": "keras:jax / keras:tensorflow",
}
BARE_TARGETS = ("hls4ml",)  # targets that need no file
OPENVINO_PRECISIONS = ("auto", "f32", "bf16", "f16")


def split_target(against: str) -> tuple[str | None, str]:
    """`against` as (target, rest): "tflm:m.tflite" -> ("tflm", "m.tflite"), "hls4ml" -> ("hls4ml", ""),
    "keras:jax" -> ("keras", "jax"), "m.onnx" -> (None, "m.onnx"). Only the names in TARGETS are
    prefixes, so a path such as C:\\m.onnx stays a path."""
    if against in BARE_TARGETS:
        return against, ""
    prefix, sep, rest = against.partition(":")
    if sep and prefix in TARGETS:
        return prefix, rest
    return None, against


def export_file(against: str) -> str | None:
    """The file an --against value names (an export, or an hls4ml YAML config), None when it names
    none (keras:jax, a bare hls4ml)."""
    target, rest = split_target(against)
    if target == "keras" or not rest:
        return None
    return rest


def export_files(against: str) -> list[str]:
    """Every file an --against value reads, which no report may overwrite: its file, and for an
    OpenVINO IR .xml the .bin beside it that holds the weights."""
    path = export_file(against)
    if path is None:
        return []
    target, _ = split_target(against)
    if target == "openvino" and os.path.splitext(path)[1].lower() == ".xml":
        return [path, os.path.splitext(path)[0] + ".bin"]
    return [path]


def refuse_unused_settings(against: Sequence[str], tflm_arena: int | None, openvino_precision: str) -> None:
    """Raise BadInputError when a runtime's setting is given without any --against for that runtime
    (`check --tflm-arena` without a tflm: target, `--openvino-precision` other than auto without an
    openvino: target): a setting that would silently do nothing."""
    targets = {split_target(value)[0] for value in against}
    if tflm_arena is not None and "tflm" not in targets:
        raise BadInputError(f"--tflm-arena {tflm_arena}: applies to --against tflm:FILE.tflite, and none is given")
    if openvino_precision != "auto" and "openvino" not in targets:
        raise BadInputError(
            f"--openvino-precision {openvino_precision}: applies to --against openvino:FILE, and none is given"
        )


def relocate(against: str, base: str) -> str:
    """`against` with its file made relative to `base` (check-all: paths are relative to the TOML file),
    keeping the target prefix: relocate("tflm:m.tflite", "/cfg") == "tflm:/cfg/m.tflite"."""
    path = export_file(against)
    if path is None:
        return against
    target, _ = split_target(against)
    moved = os.path.join(base, path)
    return f"{target}:{moved}" if target else moved


def open_export(
    path: str,
    spec: ModelSpec,
    allow_external_data: bool = False,
    *,
    batch_size: int = 32,
    trust_model_code: bool = False,
    tflm_arena: int | None = None,
    openvino_precision: str = "auto",
) -> Runner:
    """A runner for the --against value `path` (see the module): `.onnx` through ONNX Runtime, `.tflite`
    through LiteRT, `tflm:F.tflite` through TFLite Micro (tensor arena `tflm_arena` bytes, or sized
    automatically), `openvino:F` (.onnx or IR .xml) through OpenVINO on CPU at `openvino_precision`
    (auto, what OpenVINO picks on this CPU; f32, bf16 or f16), `hls4ml[:CONFIG.yml]` the model itself
    converted and compiled by hls4ml, `keras:BACKEND` the model itself on Keras 3 with that backend.

    Raises BadInputError (2) for another extension, an unknown option value or an unreadable file,
    KerasSideError (4) when the runtime is not installed or cannot run the file."""
    if openvino_precision not in OPENVINO_PRECISIONS:
        raise BadInputError(f"openvino precision {openvino_precision!r}: one of {', '.join(OPENVINO_PRECISIONS)}")
    target, rest = split_target(path)
    if target == "hls4ml" and path != "hls4ml" and not rest:
        raise BadInputError(
            f"{path}: give a config after 'hls4ml:' (hls4ml:CONFIG.yml), or hls4ml alone for its default"
        )
    if target == "keras":
        from .keras_backend import open_keras_backend

        return open_keras_backend(rest, spec, batch_size, trust_model_code)
    if target == "hls4ml":
        from .hls4ml import open_hls4ml

        return open_hls4ml(spec, rest or None, trust_model_code=trust_model_code)
    if target is not None and not rest:
        raise BadInputError(f"{path}: {TARGETS[target]} needs a file after '{target}:'")
    if target == "tflm":
        from .tflm import open_tflm

        return open_tflm(rest, spec, tflm_arena)
    if target == "openvino":
        from .openvino import open_openvino

        return open_openvino(rest, spec, openvino_precision, allow_external_data=allow_external_data)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        from .onnx_runtime import open_onnx

        return open_onnx(path, spec, allow_external_data=allow_external_data)
    if suffix == ".tflite":
        from .litert import open_tflite

        return open_tflite(path, spec)
    known = ", ".join(f"{ext} ({runtime})" for ext, runtime in EXPORT_KINDS.items())
    raise BadInputError(f"{path}: --against takes an exported model ({known}) or {', '.join(TARGETS.values())}")


def fixed_timesteps(runners: list[Runner]) -> int | None:
    """The time length an export fixes for its first input (axis 1), if any: generated inputs use it."""
    for runner in runners:
        shapes = getattr(runner, "input_shapes", None) or []
        if shapes and len(shapes[0]) >= 3 and shapes[0][1] is not None:
            return int(shapes[0][1])
    return None
