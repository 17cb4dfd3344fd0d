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
from ..reference.quiet import float_quiet
from ..spec import ModelSpec
from .census import tflite_census
from .exports import (
    ExportRunner,
    Port,
    check_export_file,
    import_runtime,
    ports_from_census,
    probe_arrays,
    probe_isolated,
    thread_count,
)

RUNTIME = "LiteRT"
FLEX_ADVICE = (
    "that the pip LiteRT interpreter cannot run; export the model unrolled (unroll=True, fixed timesteps) "
    "or from tf_keras"
)


class LiteRTRunner(ExportRunner):
    """One LiteRT interpreter; a dynamic batch is resized to each chunk, a fixed one is padded."""

    kind = "litert"
    runtime = RUNTIME

    def __init__(self, interpreter: Any, path: str, spec: ModelSpec, census: dict, version: str):
        super().__init__(path, spec, census, version, _notes(census))
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
            self.interpreter.set_tensor(index, _quantize(x, port))
        self.interpreter.invoke()
        return [
            _dequantize(self.interpreter.get_tensor(index), port)  # shapes are final only after invoke
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


def refuse_unrunnable(path: str, census: dict) -> None:
    """Raise KerasSideError (exit 4) when the file needs Flex (TensorFlow) or other custom ops."""
    if census["flex_ops"]:
        raise KerasSideError(f"{path}: needs TensorFlow Flex ops ({', '.join(census['flex_ops'])}) {FLEX_ADVICE}")
    if census["custom_ops"]:
        raise KerasSideError(
            f"{path}: needs custom ops ({', '.join(census['custom_ops'])}) that the LiteRT interpreter "
            f"does not have; export with builtin ops only"
        )


def _interpreter(module: Any, path: str) -> Any:
    """An Interpreter on `path` (the flatbuffer verifier runs here), threads from LSTM_PARITY_THREADS."""
    with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        return module.Interpreter(model_path=path, num_threads=thread_count())


def _allocate(interpreter: Any) -> None:
    """allocate_tensors(), where LiteRT applies its default delegate (and says so on stderr)."""
    with quiet_stderr():
        interpreter.allocate_tensors()


def _notes(census: dict) -> tuple[str, ...]:
    """Report sentences about quantized tensors and state kept between invocations (quantized weights
    are in the census' description, and the check says which profile judges them)."""
    notes = []
    if any("quantization" in entry for entry in census["inputs"] + census["outputs"]):
        notes.append("integer inputs/outputs: inputs quantized and outputs dequantized with the file's scales")
    if census["variable_tensors"]:
        count = len(census["variable_tensors"])
        notes.append(f"{count} variable tensors keep state between invocations; never reset by the check")
    return tuple(notes)


@float_quiet
def _quantize(x: np.ndarray, port: Port) -> np.ndarray:
    """Float `x` to the stored integer type of a quantized input: clip(round(x / scale + zero point));
    values beyond the float range (inf after the division) clip without a NumPy warning."""
    if port.quantization is None:
        return x
    scale, zero_point, stored = port.quantization
    info = np.iinfo(stored)
    return np.clip(np.rint(x / scale + zero_point), info.min, info.max).astype(stored)


def _dequantize(y: np.ndarray, port: Port) -> np.ndarray:
    """A quantized output back to float32: (y - zero point) * scale; other outputs are copied."""
    if port.quantization is None:
        return np.array(y)
    scale, zero_point, _ = port.quantization
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


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
    refuse_unrunnable(path, census)
    ports = ports_from_census(census["inputs"])
    try:
        details = interpreter.get_input_details()
        for detail, x in zip(details, probe_arrays(ports), strict=True):
            if tuple(detail["shape"]) != x.shape:
                interpreter.resize_tensor_input(detail["index"], list(x.shape), strict=True)
        _allocate(interpreter)
        for detail, port, x in zip(details, ports, probe_arrays(ports), strict=True):
            interpreter.set_tensor(detail["index"], _quantize(x, port))
        interpreter.invoke()
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} cannot run it: {first_line(exc)}") from None
    return census
