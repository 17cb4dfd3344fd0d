"""What the export runners (ONNX Runtime, LiteRT, TFLite Micro, OpenVINO) share: guarding an untrusted
export before a runtime sees it, probing it in a sandboxed child, matching its inputs/outputs to the
model's, casting, running a chunk through a fixed batch size with padding, and capturing what native
code prints (a runtime's real error is often on its stderr, not in its exception).

A runner subclasses ExportRunner and supplies `_invoke` (one invocation on arrays already in the
export's input order and dtypes); `predict` (the Runner interface of base.py) is written once here.
Capturing what native code prints is quiet_stderr.native_output. Nothing here imports a runtime.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compare import ComparisonResult
from ..errors import BadInputError, KerasSideError, LstmParityError, first_line
from ..formats.sandbox import run_isolated
from ..reference.quiet import float_quiet
from ..spec import ModelSpec
from .base import RunnerInfo

MAX_EXPORT_BYTES = 2 * 1024**3  # protobuf and flatbuffer files cannot be larger
EXTRAS = {extra: f"pip install 'lstm-parity[{extra}]'" for extra in ("onnx", "tflite", "tflm", "openvino", "hls4ml")}
# Valid first bytes of an ONNX ModelProto (serialized in field order): the tag of ir_version (1, varint),
# producer_name/version, domain (2-4, bytes), model_version (5, varint), doc_string, graph (6-7, bytes).
ONNX_FIRST_TAGS = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A})
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8
IR_STARTS = (b"<?xml", b"<net")  # an OpenVINO IR .xml, after an optional byte-order mark and whitespace
NAME_DECORATIONS = (re.compile(r"^serving_default_"), re.compile(r":\d+$"))  # TF signature spelling
NUMBERED_OUTPUT = re.compile(r"^output_(\d+)$")  # Keras export / tf2onnx: the model's N-th output


# ------------------------------------------------------------------------------ guarding the file


def check_export_file(path: str, kind: str) -> None:
    """Refuse what no runtime should be handed: a missing path, a directory, an empty or oversized file,
    or bytes that do not start like `kind` ("onnx", "tflite" or "xml", an OpenVINO IR). Raises
    BadInputError (exit 2)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the export ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadInputError(f"{path}: is a directory, not an exported .{kind} model file")
    if not stat.S_ISREG(info.st_mode):
        raise BadInputError(f"{path}: is not a regular file")
    if info.st_size == 0:
        raise BadInputError(f"{path}: the file is empty")
    if info.st_size > MAX_EXPORT_BYTES:
        raise BadInputError(f"{path}: {info.st_size} bytes is over the 2 GiB limit of a .{kind} file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the export ({exc.strerror})") from None
    if kind == "xml" and not head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(IR_STARTS):
        raise BadInputError(f"{path}: not an OpenVINO IR (an .xml file starting with <?xml or <net)")
    if kind == "tflite" and head[4:8] != TFLITE_IDENTIFIER:
        raise BadInputError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier); truncated or another format")
    if kind == "onnx" and head[0] not in ONNX_FIRST_TAGS:
        raise BadInputError(f"{path}: not an ONNX model (does not start with a ModelProto field)")


def import_runtime(module: str, extra: str, path: str) -> Any:
    """Import a runtime package; raises KerasSideError (exit 4) naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise KerasSideError(f"{path}: cannot import {module} ({exc}); {EXTRAS[extra]}") from None


def probe_isolated(probe: Callable[[str], dict], path: str, runtime: str) -> dict:
    """Run `probe(path)` (load, allocate, one invocation; returns the census) in a forked, time-limited
    child. Raises the probe's own errors, and BadInputError when the runtime crashes or hangs on it."""
    return run_isolated(probe, path, what=runtime)


def thread_count() -> int | None:
    """LSTM_PARITY_THREADS when it is a positive integer, else None (the runtime's default)."""
    value = os.environ.get("LSTM_PARITY_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


# ---------------------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True)
class Port:
    """One declared input or output of an export. `dtype` is what the caller feeds or gets (float32
    for a quantized tensor); `shape` has None for dynamic dims (None as a whole: rank unknown);
    `quantization` is (scale, zero point, stored dtype) for an integer-quantized tensor; `signature_name`
    is the port's name in the file's signature (TFLite), which is what matching uses when present."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None
    quantization: tuple[float, int, np.dtype] | None = None
    signature_name: str = ""


def ports_from_census(entries: list[dict[str, Any]]) -> list[Port]:
    """Ports from a census' "inputs"/"outputs" entries (see census.py)."""
    ports = []
    for entry in entries:
        stored = np.dtype(entry["dtype"]) if entry["dtype"] not in ("unknown", "string") else np.dtype(object)
        shape = tuple(entry["shape"]) if entry["shape"] is not None else None
        scale, zero_point = entry.get("quantization", (0.0, 0))
        signature_name = str(entry.get("signature_name") or "")
        if scale and np.issubdtype(stored, np.integer):
            quantization = (float(scale), int(zero_point), stored)
            ports.append(Port(entry["name"], np.dtype(np.float32), shape, quantization, signature_name))
        else:
            ports.append(Port(entry["name"], stored, shape, signature_name=signature_name))
    return ports


def plain_name(name: str) -> str:
    """A tensor name without TF's signature decorations: "serving_default_feats:0" -> "feats"."""
    for pattern in NAME_DECORATIONS:
        name = pattern.sub("", name)
    return name


def match_ports(model_names: list[str], ports: list[Port], what: str, path: str) -> tuple[list[int], str]:
    """For each model input/output (`what`), the index of the export's port that carries it, and how
    they were matched ("by name", "by position", or e.g. "1 by name, 1 by position").

    A port's name is its signature name when the file has one, else its tensor name without TF's
    decorations. Names the model and the export both have once are matched first; then an output
    port named `output_N` takes the model's N-th output; the rest pair up by position among the
    ports left, never onto a port named like another model input/output. Raises BadInputError when
    the counts differ or the names leave no consistent pairing."""
    export_names = [port.signature_name or plain_name(port.name) for port in ports]
    if len(export_names) != len(model_names):
        raise BadInputError(
            f"{path}: the export has {len(export_names)} {what} {export_names}, "
            f"the model has {len(model_names)} {model_names}"
        )
    chosen: list[int | None] = [None] * len(model_names)
    for model, name in enumerate(model_names):
        if model_names.count(name) == 1 and export_names.count(name) == 1:
            chosen[model] = export_names.index(name)
    by_name = sum(port is not None for port in chosen)
    if what == "outputs":
        for port, name in enumerate(export_names):
            number = NUMBERED_OUTPUT.match(name)
            if number and name not in model_names and port not in chosen:
                model = int(number.group(1))
                if model < len(chosen) and chosen[model] is None:
                    chosen[model] = port
    free = iter([port for port in range(len(ports)) if port not in chosen])  # in the export's order
    result = [next(free) if found is None else found for found in chosen]
    for model, port in enumerate(result):
        if export_names[port] in model_names and export_names[port] != model_names[model]:
            raise BadInputError(
                f"{path}: cannot tell which of the export's {what} {export_names} carries which of the "
                f"model's {model_names}"
            )
    by_position = len(model_names) - by_name
    if not by_position:
        return result, "by name"
    if not by_name:
        return result, "by position"
    return result, f"{by_name} by name, {by_position} by position"


def fixed_batch(ports: list[Port]) -> int | None:
    """The batch size the export's inputs fix (axis 0), or None when it is dynamic."""
    sizes = [port.shape[0] for port in ports if port.shape and port.shape[0] is not None]
    return int(sizes[0]) if sizes else None


def probe_arrays(ports: list[Port]) -> list[np.ndarray]:
    """Zeros of every input's declared shape, dynamic dims (batch, time) set to 1."""
    return [np.zeros([1 if d is None else d for d in port.shape or ()], dtype=port.dtype) for port in ports]


@float_quiet
def cast_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`x` as `dtype`, C-contiguous; float token ids are rounded before becoming integers. Values out
    of a narrower float's range become inf, without a NumPy warning."""
    if np.issubdtype(dtype, np.integer) and np.issubdtype(x.dtype, np.floating):
        x = np.rint(x)
    return np.ascontiguousarray(x, dtype=dtype)


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """`x` (n, ...) grown to (rows, ...) by repeating its last row."""
    extra = np.repeat(x[-1:], rows - x.shape[0], axis=0)  # (rows - n, ...)
    return np.concatenate([x, extra], axis=0)  # (rows, ...)


# ------------------------------------------------------------------------------------- the runner


class ExportRunner:
    """An export run by a runtime, behind the Runner interface (base.py).

    `input_shapes` are the export's declared input shapes in the model's input order (None where
    dynamic). Subclasses set `kind` and `runtime` and implement `_invoke`; a runtime that can reset its
    state between sequences has `reset()` and says how an app calls it in `reset_call`; notes that
    depend on the verdict come from `verdict_notes`.
    """

    kind = ""  # RunnerInfo.kind
    runtime = ""  # the runtime's name in messages
    reset_call = ""  # how an app resets the runtime's state ("interpreter.reset_all_variables()"), if it can

    def __init__(self, path: str, spec: ModelSpec, census: dict, version: str, notes: tuple[str, ...] = ()):
        self.path, self.census = path, census
        self.inputs = ports_from_census(census["inputs"])  # export order
        self.outputs = ports_from_census(census["outputs"])
        # per model input/output: the export's port; per export input: the model input feeding it
        self.input_port, inputs_how = match_ports(spec.input_names, self.inputs, "inputs", path)
        self.output_port, outputs_how = match_ports(spec.output_names, self.outputs, "outputs", path)
        self.input_source = [self.input_port.index(port) for port in range(len(self.inputs))]
        self.model_input_names = spec.input_names
        self.tokens = spec.token_inputs()
        self.batch = fixed_batch(self.inputs)
        self.input_shapes: list[tuple[int | None, ...]] = [self.inputs[port].shape or () for port in self.input_port]
        self._notes = notes
        self._verdict_notes: tuple[str, ...] = ()  # set by explain() once the check has judged this side
        self._covered, self._invocations = 0, 0  # rows already run and their invocations (batch note)
        self._padded: list[int] = []  # rows added to each padded invocation
        self._reset_each = False  # predict_reset: the runtime's state reset before every invocation
        self.info = RunnerInfo(
            kind=self.kind,
            label=f"{self.kind} {os.path.basename(path)}",
            version=version,
            path=path,
            matching=f"inputs {inputs_how}, outputs {outputs_how}",
            notes=(*notes, self._batch_note()) if self.batch else notes,
            census=census,
        )

    def _invoke(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        """One invocation: arrays in the export's input order and dtypes -> outputs in its output order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's session or interpreter."""

    def explain(self, result: ComparisonResult) -> None:
        """Add the notes that depend on the verdict (`result`: this side judged as the report judges it)
        to `info.notes`; the check flow calls this once the comparison is done."""
        self._verdict_notes = tuple(self.verdict_notes(result))
        self._refresh_notes()

    def verdict_notes(self, result: ComparisonResult) -> list[str]:
        """The sentences a runtime adds once it knows whether it passed (none by default)."""
        return []

    def predict(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        """Outputs for the rows [start, stop) given as `inputs` (one batch-first array per model input),
        one array per model output in the model's order. Raises BadInputError when the inputs do not
        fit the export (count, rank, a fixed time length), KerasSideError when the runtime fails."""
        self._check_shapes(inputs)
        rows = inputs[0].shape[0]
        feed = [cast_to(inputs[model], port.dtype) for model, port in zip(self.input_source, self.inputs, strict=True)]
        outputs, padded = self._run_batched(feed) if self.batch else (self._run(feed), [])
        self._note_batches(stop, rows, padded)
        return [self._rows_checked(outputs[port], rows) for port in self.output_port]

    def predict_reset(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        """`predict`, with the runtime's state reset (the subclass' `reset()`) before every invocation:
        what an app that resets between sequences computes. The flow can compare it with the reference
        after a failed second pass, to say whether a reset would make the export pass. Raises
        KerasSideError when the runtime has no reset, and what predict raises."""
        if not callable(getattr(self, "reset", None)):
            raise KerasSideError(f"{self.path}: {self.runtime} has no reset between invocations")
        self._reset_each = True
        try:
            return self.predict(inputs, start, stop)
        finally:
            self._reset_each = False

    def _check_shapes(self, inputs: list[np.ndarray]) -> None:
        """One array per model input, all with the same rows (at least one); every declared non-batch
        dim must equal the input's (the time axis is named as such). Raises BadInputError."""
        if len(inputs) != len(self.input_port):
            raise BadInputError(f"{self.path}: got {len(inputs)} input arrays, the model has {len(self.input_port)}")
        rows = sorted({x.shape[0] if x.ndim else 0 for x in inputs})
        if len(rows) != 1 or rows[0] == 0:
            raise BadInputError(
                f"{self.path}: the input arrays have {rows} rows; they need the same number, at least 1"
            )
        for model, (x, name) in enumerate(zip(inputs, self.model_input_names, strict=True)):
            declared = self.inputs[self.input_port[model]].shape
            if declared is None:
                continue
            if x.ndim != len(declared):
                raise BadInputError(
                    f"{self.path}: input '{name}' has shape {x.shape}, the export declares {_shape_text(declared)}"
                )
            for axis, (want, got) in enumerate(zip(declared, x.shape, strict=True)):
                if axis == 0 or want is None or want == got:
                    continue
                if axis == 1 and (x.ndim >= 3 or self.tokens[model]):
                    raise BadInputError(
                        f"{self.path}: the export fixes {want} timesteps, the input '{name}' has {got}; "
                        f"give inputs of {want} timesteps or export with a dynamic time axis"
                    )
                raise BadInputError(
                    f"{self.path}: input '{name}' has shape {x.shape}, the export declares {_shape_text(declared)}"
                )

    def _run(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        """One invocation with the runtime's failures turned into KerasSideError (exit 4)."""
        try:
            if self._reset_each:
                self.reset()  # type: ignore[attr-defined]  # present: predict_reset checked
            return self._invoke(feed)
        except LstmParityError:
            raise
        except Exception as exc:  # runtimes raise their own classes (ORT's are not RuntimeError)
            raise KerasSideError(f"{self.path}: {self.runtime} failed to run it: {first_line(exc)}") from None

    def _run_batched(self, feed: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        """The rows in invocations of the fixed batch size; the last is padded with copies of its last
        row, and the padded rows' outputs are dropped. Returns the outputs and the rows padded."""
        assert self.batch is not None
        rows, parts, padded = feed[0].shape[0], [], []
        for low in range(0, rows, self.batch):
            part = [x[low : low + self.batch] for x in feed]  # (n <= batch, ...) each
            n = part[0].shape[0]
            if n < self.batch:
                part = [pad_rows(x, self.batch) for x in part]  # (batch, ...)
                padded.append(self.batch - n)
            parts.append([y[:n] for y in self._run(part)])  # (n, ...) each
        return [np.concatenate([part[k] for part in parts], axis=0) for k in range(len(parts[0]))], padded

    def _rows_checked(self, y: np.ndarray, rows: int) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != rows:
            raise KerasSideError(f"{self.path}: {self.runtime} returned shape {y.shape} for {rows} input rows")
        return y

    def _note_batches(self, stop: int, rows: int, padded: list[int]) -> None:
        """Keep the fixed-batch note about the pass over the input: calls that revisit rows already
        run (the flow's second pass) are not counted."""
        if not self.batch or stop <= self._covered:
            return
        self._covered = stop
        self._invocations += -(-rows // self.batch)
        self._padded += padded
        self._refresh_notes()

    def _refresh_notes(self) -> None:
        """`info.notes`: the runtime's own notes, the verdict's, then what the fixed batch made it do."""
        batch = (self._batch_note(),) if self.batch else ()
        self.info = dataclasses.replace(self.info, notes=(*self._notes, *self._verdict_notes, *batch))

    def _batch_note(self) -> str:
        """What the fixed batch size made the runner do (or will make it do, before any run)."""
        padded = self._padded
        if not self._invocations:
            return f"fixed batch {self.batch}: rows run {self.batch} at a time, a short last batch padded"
        if not padded:
            how = "none padded"
        elif len(padded) == 1:
            how = f"last one padded with {padded[0]} rows"
        else:
            how = f"{len(padded)} of them padded ({sum(padded)} rows in all)"
        runs = f"{self._invocations} invocation" + ("s" if self._invocations != 1 else "")
        return f"fixed batch {self.batch}: ran {runs}, {how}"


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
