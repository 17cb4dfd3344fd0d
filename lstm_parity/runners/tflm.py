"""A `.tflite` export run by the TensorFlow Lite Micro interpreter (`tflite-micro`, the kernels that run
on the device), the only module importing it. `--against tflm:FILE.tflite`.

TFLite Micro runs a file exactly as stored: no resizing, so the batch size and the sequence length are
the ones the file was converted with (a dynamic batch runs as the 1 in its stored shape), and every
tensor lives in one preallocated arena. The arena is sized automatically (from ten times the file's
size, TFLM's own guess, growing until the model allocates) or given in bytes; the report says how
many bytes the model used. The tflite-micro Python package has no call that returns that number: it is
read from the text `print_allocations()` prints ("Arena allocation total N bytes", see ARENA_USED), so
a release that rewords it leaves "used" out of the report (None), nothing else.

The interpreter is used as an app on the device would use it: invoke() after invoke(), never reset in
between, so a file that keeps state from one invocation to the next (a fused LSTM's variable tensors)
shows it in the check's second pass. `reset()` (and ExportRunner.predict_reset) shows whether
resetting between sequences would make it pass.

TFLM prints its errors to stderr and raises only "TFLM failed to allocate tensors": the runner
captures that output and quotes the runtime's own lines. Before the interpreter here sees the file, a
forked, time-limited child (TFLM does not verify flatbuffers) takes its census, refuses Flex and
custom ops, sizes the arena, and invokes it once on zeros. TFLM can crash (not fail) on a given arena
that is too small (measured: a segfault below about 460 bytes); when that child dies with an arena
given, a second child tries the file with an arena sized automatically: if that one runs, the arena
was the problem (exit 4, saying how many bytes it needs), else the file is (exit 2).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from ..errors import BadInputError, KerasSideError, first_line
from ..formats.sandbox import ChildDied
from ..quiet_stderr import native_output
from ..spec import ModelSpec
from .census import TFLM_SCHEMA, tflite_census
from .exports import (
    ExportRunner,
    Port,
    check_export_file,
    import_runtime,
    ports_from_census,
    probe_arrays,
    probe_isolated,
)
from .tflite_io import dequantize, port_notes, quantize, refuse_unrunnable

RUNTIME = "TFLite Micro"
MIN_ARENA = 16 * 1024  # bytes: where automatic sizing starts for a tiny file
MAX_ARENA = 1 << 30  # bytes: automatic sizing gives up beyond this
ARENA_TOO_SMALL = re.compile(r"Failed to allocate|missing: \d+|Arena size is too small", re.IGNORECASE)
ARENA_USED = re.compile(r"Arena allocation total (\d+) bytes")  # print_allocations()' summary line
UNROLL_ADVICE = "export it unrolled (unroll=True) with a fixed batch of 1 and fixed timesteps"
FIXED_SHAPES_ADVICE = (
    "the file's shapes are dynamic and TFLite Micro needs them fixed: convert a model built with "
    "Input(..., batch_size=1), fixed timesteps and unroll=True"
)


class TFLMRunner(ExportRunner):
    """One TFLite Micro interpreter on the file's own fixed shapes; rows run `batch` at a time."""

    kind = "tflm"
    runtime = RUNTIME
    reset_call = "the interpreter's reset()"

    def __init__(self, interpreter: Any, path: str, spec: ModelSpec, census: dict, version: str):
        super().__init__(path, spec, census, version, _notes(census, self.reset_call))
        self.interpreter = interpreter

    def reset(self) -> None:
        """Put the interpreter back in its freshly prepared state (a fused LSTM's h and c to zero), as
        an app could between sequences; predict never does this by itself. Raises KerasSideError."""
        try:
            with native_output():
                self.interpreter.reset()
        except Exception as exc:
            raise KerasSideError(f"{self.path}: {RUNTIME} failed to reset: {first_line(exc)}") from None

    def _invoke(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        return _invoke(self.interpreter, self.path, self.inputs, self.outputs, feed)

    def close(self) -> None:
        self.interpreter = None


def open_tflm(path: str, spec: ModelSpec, arena_bytes: int | None = None) -> TFLMRunner:
    """Open `path` in TFLite Micro for the model `spec` after guarding and probing it (see the module).

    `arena_bytes` fixes the tensor arena (else it is sized automatically). Raises BadInputError (exit 2)
    for an unreadable or corrupt file or a non-positive arena, KerasSideError (exit 4) when tflite-micro
    is not installed, the file needs Flex/custom ops or ops TFLM cannot prepare (a dynamic shape), or the
    arena is too small (TFLM failing, or crashing, on it).
    """
    if arena_bytes is not None and arena_bytes <= 0:
        raise BadInputError(f"{path}: the tensor arena must be a positive number of bytes, not {arena_bytes}")
    check_export_file(path, "tflite")
    module = import_runtime("tflite_micro", "tflm", path)
    version = str(getattr(module, "__version__", ""))
    try:
        census = probe_isolated(functools.partial(_probe, arena_bytes=arena_bytes), path, RUNTIME)
    except ChildDied as died:
        if arena_bytes is None:
            raise
        raise _arena_crash(path, arena_bytes, died) from None
    interpreter = _interpreter(module.runtime, path, census["arena"]["size"])
    return TFLMRunner(interpreter, path, spec, census, version)


def _arena_crash(path: str, arena_bytes: int, died: ChildDied) -> BaseException:
    """What a crash of the probe with `arena_bytes` given means: when the file runs with an arena sized
    automatically (tried in another child), a KerasSideError (exit 4) saying the arena is too small and
    what the file needs; else `died` itself (the file is corrupt, exit 2)."""
    try:
        sized = probe_isolated(functools.partial(_probe, arena_bytes=None), path, RUNTIME)["arena"]
    except BadInputError:
        return died
    except KerasSideError as exc:  # runs in no arena either: the file's own problem, said by TFLM
        return exc
    needs = sized.get("used") or sized["size"]
    return KerasSideError(
        f"{path}: {RUNTIME} crashed ({died.how}) preparing it with a tensor arena of {arena_bytes:,} bytes, too "
        f"small for it; give more bytes (it runs in {needs:,} bytes), or let the arena be sized automatically"
    )


def _invoke(interpreter: Any, path: str, inputs: list[Port], outputs: list[Port], feed: list[np.ndarray]) -> list:
    """One invocation: `feed` (the file's input order) in, its outputs (float32 when quantized) out.
    Raises KerasSideError quoting what TFLM printed."""
    error: BaseException | None = None
    with native_output() as printed:
        try:
            for index, (port, x) in enumerate(zip(inputs, feed, strict=True)):
                interpreter.set_input(quantize(x, port), index)
            interpreter.invoke()
            return [dequantize(np.array(interpreter.get_output(index)), port) for index, port in enumerate(outputs)]
        except Exception as exc:
            error = exc
    raise KerasSideError(f"{path}: {RUNTIME} failed to run it: {_tflm_error(error, printed)}")


def _interpreter(runtime: Any, path: str, arena: int) -> Any:
    """An interpreter on `path` with an arena of `arena` bytes; raises KerasSideError quoting TFLM."""
    error: BaseException | None = None
    with native_output() as printed:
        try:
            return runtime.Interpreter.from_file(path, arena_size=arena)
        except Exception as exc:
            error = exc
    if any(ARENA_TOO_SMALL.search(line) for line in printed):
        raise KerasSideError(
            f"{path}: a tensor arena of {arena:,} bytes is too small for it ({_tflm_error(error, printed)}); "
            f"give more bytes, or let the arena be sized automatically"
        )
    raise KerasSideError(f"{path}: {RUNTIME} cannot prepare it: {_tflm_error(error, printed)}")


def _tflm_error(exc: BaseException | None, printed: list[str]) -> str:
    """TFLM's own words: the lines it printed (the exception only says "failed to allocate"),
    else the exception's first line; one line of at most 300 characters."""
    lines = [line for line in printed if not line.startswith("[RecordingMicroAllocator]")]
    if lines:
        return "; ".join(lines[:2])[:300]
    return first_line(exc) if exc is not None else "no message"


def _sized_interpreter(runtime: Any, path: str, arena_bytes: int | None, file_bytes: int) -> tuple[Any, int]:
    """The interpreter and its arena size: `arena_bytes`, or from 10 x the file's size (at least
    MIN_ARENA) doubled until it allocates. Raises KerasSideError when it cannot be prepared."""
    if arena_bytes is not None:
        return _interpreter(runtime, path, arena_bytes), arena_bytes
    size = max(MIN_ARENA, 10 * file_bytes)
    while True:
        try:
            return _interpreter(runtime, path, size), size
        except KerasSideError as exc:
            if "is too small" not in str(exc) or size >= MAX_ARENA:
                raise
        size *= 2


def _arena_used(interpreter: Any) -> int | None:
    """Bytes of the arena the model used, from the text TFLM's recording allocator prints (after an
    invocation; see the module); None when that text no longer says it."""
    with native_output() as printed:
        interpreter.print_allocations()
    for line in printed:
        found = ARENA_USED.search(line)
        if found:
            return int(found.group(1))
    return None


def _notes(census: dict, reset_call: str) -> tuple[str, ...]:
    """Report sentences: the shapes TFLM runs, then the .tflite runners' own (integer ports, state kept)."""
    notes = []
    dynamic = [entry["name"] for entry in census["inputs"] if entry.get("signature_dynamic")]
    if dynamic:
        notes.append(
            f"the signature leaves the batch or time of {', '.join(dynamic)} open; TFLite Micro runs the "
            f"stored shape {census['inputs'][0]['shape']}"
        )
    return (*notes, *port_notes(census, reset_call))


def _stored_shapes(census: dict, interpreter: Any) -> None:
    """Replace the census' input/output shapes (the signature's, None where dynamic) by the ones TFLM
    runs (the stored shapes), marking the ports whose signature was dynamic."""
    for which, details in (("inputs", interpreter.get_input_details), ("outputs", interpreter.get_output_details)):
        for index, entry in enumerate(census[which]):
            stored = [int(d) for d in details(index)["shape"]]
            if entry["shape"] is None or any(d is None for d in entry["shape"]):
                entry["signature_dynamic"] = True
            entry["shape"] = stored


def _probe(path: str, arena_bytes: int | None) -> dict:
    """In the sandbox: census, refuse Flex/custom ops, size the arena, one invocation on zeros.
    Returns the census with "arena" {"size", "used", "automatic"}; raises BadInputError (corrupt) or
    KerasSideError (TFLM cannot run it)."""
    module = import_runtime("tflite_micro", "tflm", path)  # already imported by open_tflm
    try:
        census = tflite_census(path, TFLM_SCHEMA)
    except Exception as exc:
        raise BadInputError(f"{path}: corrupt TFLite flatbuffer ({first_line(exc)})") from None
    refuse_unrunnable(path, census, RUNTIME, UNROLL_ADVICE)
    if not census["inputs"] or not census["outputs"]:
        raise BadInputError(f"{path}: the TFLite model declares no inputs or no outputs; truncated or corrupt")
    with open(path, "rb") as handle:
        size_of_file = len(handle.read())
    try:
        interpreter, arena = _sized_interpreter(module.runtime, path, arena_bytes, size_of_file)
    except KerasSideError as exc:
        if any(entry["shape"] is None or None in entry["shape"] for entry in census["inputs"]):
            raise KerasSideError(f"{exc.message}; {FIXED_SHAPES_ADVICE}") from None
        raise
    _stored_shapes(census, interpreter)
    inputs = ports_from_census(census["inputs"])
    _invoke(interpreter, path, inputs, ports_from_census(census["outputs"]), probe_arrays(inputs))
    census["arena"] = {"size": arena, "used": _arena_used(interpreter), "automatic": arena_bytes is None}
    return census
