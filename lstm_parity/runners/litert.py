"""A `.tflite` export run by the LiteRT interpreter (`ai_edge_litert`), the only module importing it.

Before the interpreter here sees the file it is size/magic checked, and a forked, time-limited child
(LiteRT's XNNPACK delegate can segfault on a corrupt file) verifies the flatbuffer, takes its census,
refuses Flex and other custom ops up front, allocates and invokes it once on zeros.

The interpreter is used as an app would use it: invoke() after invoke(), never reset in between,
so an export that keeps state from one invocation to the next (a fused LSTM's variable tensors)
shows it. `reset()` is there for the caller who wants to show that a reset would have helped.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..errors import BadInputError, KerasSideError, first_line
from ..quiet_stderr import quiet_stderr
from ..spec import ModelSpec
from .census import tflite_census
from .exports import (
    ExportRunner,
    check_export_file,
    import_runtime,
    ports_from_census,
    probe_arrays,
    probe_isolated,
    thread_count,
)
from .tflite_io import dequantize, port_notes, quantize, refuse_unrunnable

RUNTIME = "LiteRT"
FLEX_ADVICE = "export the model unrolled (unroll=True, fixed timesteps) or from tf_keras"


class LiteRTRunner(ExportRunner):
    """One LiteRT interpreter; a dynamic batch is resized to each chunk, a fixed one is padded."""

    kind = "litert"
    runtime = RUNTIME
    reset_call = "interpreter.reset_all_variables()"

    def __init__(self, interpreter: Any, path: str, spec: ModelSpec, census: dict, version: str):
        super().__init__(path, spec, census, version, tuple(port_notes(census, self.reset_call)))
        self.interpreter = interpreter
        self._input_indices = [d["index"] for d in interpreter.get_input_details()]
        self._output_indices = [d["index"] for d in interpreter.get_output_details()]
        self._shapes = [tuple(d["shape"]) for d in interpreter.get_input_details()]  # as allocated

    @property
    def quantized(self) -> bool:
        """Are any weights stored as int8/float16/...? (also `info.census["quantized"]`)."""
        return bool(self.census["quantized"])

    def reset(self) -> None:
        """Zero the interpreter's variable tensors (a fused LSTM's h and c), as an app could between
        sequences; predict never does this by itself. Raises KerasSideError if LiteRT fails."""
        try:
            self.interpreter.reset_all_variables()
        except Exception as exc:
            raise KerasSideError(f"{self.path}: {RUNTIME} failed to reset its variables: {first_line(exc)}") from None

    def _invoke(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        self._resize([x.shape for x in feed])
        for index, port, x in zip(self._input_indices, self.inputs, feed, strict=True):
            self.interpreter.set_tensor(index, quantize(x, port))
        self.interpreter.invoke()
        return [
            dequantize(self.interpreter.get_tensor(index), port)  # shapes are final only after invoke
            for index, port in zip(self._output_indices, self.outputs, strict=True)
        ]

    def _resize(self, shapes: list[tuple[int, ...]]) -> None:
        """Resize the inputs whose shapes changed (a dynamic batch or time axis) and reallocate."""
        changed = [(i, s) for i, (s, old) in enumerate(zip(shapes, self._shapes, strict=True)) if tuple(s) != old]
        for position, shape in changed:
            self.interpreter.resize_tensor_input(self._input_indices[position], list(shape), strict=True)
            self._shapes[position] = tuple(shape)
        if changed:
            _allocate(self.interpreter)

    def close(self) -> None:
        self.interpreter = None


def open_tflite(path: str, spec: ModelSpec) -> LiteRTRunner:
    """Open `path` in LiteRT for the model `spec` after guarding and probing it (see the module).

    Raises BadInputError (exit 2) for an unreadable or corrupt file, KerasSideError (exit 4) when
    ai_edge_litert is not installed, the file needs Flex/custom ops, or LiteRT cannot run it.
    """
    check_export_file(path, "tflite")
    module = import_runtime("ai_edge_litert.interpreter", "tflite", path)
    version = str(getattr(sys.modules.get("ai_edge_litert"), "__version__", ""))
    census = probe_isolated(_probe, path, RUNTIME)
    try:
        interpreter = _interpreter(module, path)
        _allocate(interpreter)
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} {version} cannot load it: {first_line(exc)}") from None
    return LiteRTRunner(interpreter, path, spec, census, version)


def _interpreter(module: Any, path: str) -> Any:
    """An Interpreter on `path` (the flatbuffer verifier runs here), threads from LSTM_PARITY_THREADS."""
    with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        return module.Interpreter(model_path=path, num_threads=thread_count())


def _allocate(interpreter: Any) -> None:
    """allocate_tensors(), where LiteRT applies its default delegate (and says so on stderr)."""
    with quiet_stderr():
        interpreter.allocate_tensors()


def _probe(path: str) -> dict:
    """In the sandbox: verify, census, refuse Flex/custom ops, allocate, one invoke on zeros of the
    declared shapes. Returns the census; raises BadInputError (corrupt) or KerasSideError."""
    module = import_runtime("ai_edge_litert.interpreter", "tflite", path)  # already imported by open_tflite
    try:
        interpreter = _interpreter(module, path)
    except Exception as exc:
        raise BadInputError(f"{path}: not a valid TFLite model ({first_line(exc)})") from None
    try:
        census = tflite_census(path)
    except Exception as exc:
        raise BadInputError(f"{path}: corrupt TFLite flatbuffer ({first_line(exc)})") from None
    refuse_unrunnable(path, census, "the LiteRT interpreter", FLEX_ADVICE)
    ports = ports_from_census(census["inputs"])
    try:
        details = interpreter.get_input_details()
        for detail, x in zip(details, probe_arrays(ports), strict=True):
            if tuple(detail["shape"]) != x.shape:
                interpreter.resize_tensor_input(detail["index"], list(x.shape), strict=True)
        _allocate(interpreter)
        for detail, port, x in zip(details, ports, probe_arrays(ports), strict=True):
            interpreter.set_tensor(detail["index"], quantize(x, port))
        interpreter.invoke()
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} cannot run it: {first_line(exc)}") from None
    return census
