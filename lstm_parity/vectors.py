"""`vectors`: golden test data for a port's own unit tests (on the host or on the device).

For a set of inputs: the float64 reference outputs, the full trace of one sample (the keys of
`trace`), and tolerances suggested by how far the float32 reference is from the float64 one. Written as
JSON, .npz, or a C header a test program includes, next to the inputs as `.npy`/`.npz` so that
`lstm-parity check MODEL DIR/inputs.npy --expected ...` gates the port on exactly these inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from . import __version__
from .arrays import write_arrays
from .atomicio import current_umask, publish, refuse_overwriting_inputs
from .c_arrays import CArray, guard_name, header_end, header_start, name_array
from .c_names import NameTable, c_string, sanitize
from .dump import encode_array
from .errors import BadInputError
from .reference.forward import predict_batches
from .spec import ModelSpec
from .trace import trace

VECTORS_SCHEMA_VERSION = 1
FORMATS = {"json": "vectors.json", "npz": "vectors.npz", "c": "vectors.h"}
# The C header's own names, claimed before any array's.
FIXED_NAMES = (
    *(f"VECTORS_{n}" for n in ("SAMPLES", "SAMPLE", "OUTPUT_ATOL", "TRACE_ATOL", "CHECK_ATOL", "TRACE_KEYS")),
    *(f"vectors_trace_{n}" for n in ("keys", "values", "sizes")),
)
MARGIN = 10.0  # a port in float32 may round differently from the float32 reference: allow 10x its error
FLOOR = 1e-6
TOLERANCE_RULE = (
    f"atol = {MARGIN:g} x the largest |float32 reference - float64 reference|, at least {FLOOR:g}, "
    "rounded up to one significant digit"
)


@dataclass
class Vectors:
    """Golden data: inputs (as the model sees them), float64 reference outputs, one sample's trace, and
    per output (and for the trace) the float32 reference's max abs difference and the suggested atol."""

    spec: ModelSpec
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    sample: int
    trace: dict[str, np.ndarray]
    float32_diff: dict[str, float]  # output name -> max |float32 reference - float64 reference|
    trace_float32_diff: float  # the same over every trace key

    @property
    def output_atol(self) -> float:
        """The suggested atol for every output at once (the largest per-output suggestion)."""
        return max((suggest_atol(d) for d in self.float32_diff.values()), default=FLOOR)

    @property
    def trace_atol(self) -> float:
        """The suggested atol for the trace."""
        return suggest_atol(self.trace_float32_diff)

    @property
    def check_atol(self) -> float:
        """The larger of both: `check` has one --atol for the outputs and the --expected-trace."""
        return max(self.output_atol, self.trace_atol)


def suggest_atol(diff: float) -> float:
    """TOLERANCE_RULE: MARGIN x diff, at least FLOOR, rounded up to one significant digit (3.2e-7 -> 4e-6)."""
    value = max(MARGIN * diff, FLOOR)
    if not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value))
    digit = math.ceil(round(value / 10**exponent, 9))
    return float(f"{digit}e{exponent}")


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| where both are finite (NaN and infinities are judged elsewhere); 0 when none."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    finite = diff[np.isfinite(diff)]
    return float(finite.max()) if finite.size else 0.0


def golden_vectors(spec: ModelSpec, inputs: list[np.ndarray], sample: int = 0, batch_size: int = 32) -> Vectors:
    """Compute the vectors for `inputs` (as `make_inputs` gives them). Raises BadInputError for a
    sample index outside the batch (before computing anything)."""
    batch = inputs[0].shape[0]
    if not 0 <= sample < batch:
        raise BadInputError(f"--sample {sample}: the input has {batch} samples (0..{batch - 1})")
    outputs = predict_batches(spec, inputs, dtype=np.float64, batch_size=batch_size)  # [(batch, ...)] per output
    outputs32 = predict_batches(spec, inputs, dtype=np.float32, batch_size=batch_size)
    traced = trace(spec, inputs, sample=sample, dtype=np.float64)  # {"lstm/i": (time, units), "lstm/output0": ...}
    traced32 = trace(spec, inputs, sample=sample, dtype=np.float32)
    return Vectors(
        spec=spec,
        inputs=inputs,
        outputs=outputs,
        sample=sample,
        trace=traced,
        float32_diff={name: _max_abs(a, b) for name, a, b in zip(spec.output_names, outputs, outputs32, strict=True)},
        trace_float32_diff=max((_max_abs(traced[k], traced32[k]) for k in traced), default=0.0),
    )


def tolerances(vectors: Vectors) -> dict:
    """The suggested tolerances as plain data (JSON and the summary line)."""
    return {
        "rule": TOLERANCE_RULE,
        "outputs": {
            name: {"float32_max_abs_diff": diff, "atol": suggest_atol(diff)}
            for name, diff in vectors.float32_diff.items()
        },
        "trace": {"float32_max_abs_diff": vectors.trace_float32_diff, "atol": vectors.trace_atol},
        "check_atol": vectors.check_atol,
    }


def render_json(vectors: Vectors) -> str:
    """JSON: {"schema_version", "tool", "model", "inputs": {name: values}, "outputs": {name: values},
    "sample", "trace": {key: values}, "tolerances"}; values are exact (see dump.encode_array)."""
    spec = vectors.spec
    body = {
        "schema_version": VECTORS_SCHEMA_VERSION,
        "tool": {"name": "lstm-parity", "version": __version__},
        "model": {
            "path": spec.source,
            "sha256": spec.sha256,
            "keras_version": spec.keras_version,
            "semantics": spec.semantics,
        },
        "inputs": {name: encode_array(x) for name, x in zip(spec.input_names, vectors.inputs, strict=True)},
        "outputs": {name: encode_array(y) for name, y in zip(spec.output_names, vectors.outputs, strict=True)},
        "sample": vectors.sample,
        "trace": {key: encode_array(value) for key, value in vectors.trace.items()},
        "tolerances": tolerances(vectors),
    }
    return json.dumps(body, allow_nan=False) + "\n"


def render_npz(vectors: Vectors) -> bytes:
    """.npz keys: inputs/<name>, outputs/<name>, trace/<key>, sample, suggested_atol/outputs/<name>,
    suggested_atol/trace, suggested_atol/check (the larger, for `check --atol`), float32_max_abs_diff/outputs/<name>,
    float32_max_abs_diff/trace."""
    spec = vectors.spec
    arrays: dict[str, np.ndarray] = {"sample": np.array(vectors.sample)}
    arrays.update({f"inputs/{n}": x for n, x in zip(spec.input_names, vectors.inputs, strict=True)})
    arrays.update({f"outputs/{n}": y for n, y in zip(spec.output_names, vectors.outputs, strict=True)})
    arrays.update({f"trace/{k}": v for k, v in vectors.trace.items()})
    for name, diff in vectors.float32_diff.items():
        arrays[f"suggested_atol/outputs/{name}"] = np.array(suggest_atol(diff))
        arrays[f"float32_max_abs_diff/outputs/{name}"] = np.array(diff)
    arrays["suggested_atol/trace"] = np.array(vectors.trace_atol)
    arrays["suggested_atol/check"] = np.array(vectors.check_atol)
    arrays["float32_max_abs_diff/trace"] = np.array(vectors.trace_float32_diff)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def render_c(vectors: Vectors, c_type: str = "float") -> str:
    """A C header: VECTORS_* defines, vectors_x<k> (inputs), vectors_y<k> (reference outputs), one
    vectors_trace_<layer>_<gate> array per trace key, and tables of the trace's keys, values and sizes.
    The model is named by its base name and SHA-256 (no folder)."""
    spec = vectors.spec
    names = NameTable()
    names.stems.update({"VECTORS", "LP"})
    for fixed in FIXED_NAMES:
        names.claim(fixed)
    source_name = os.path.basename(spec.source)
    guard = guard_name(names, source_name, spec.sha256, "VECTORS")
    arrays: list[CArray] = []
    for k, (name, x) in enumerate(zip(spec.input_names, vectors.inputs, strict=True)):
        typed = x if x.dtype.kind in "iub" else x.astype(np.float32)
        what = f"x{k}: input {name} {tuple(x.shape)}, as the model sees it"
        arrays.append(name_array(names, "vectors", f"_x{k}", typed, what))
    for k, (name, y) in enumerate(zip(spec.output_names, vectors.outputs, strict=True)):
        diff = vectors.float32_diff[name]
        what = f"y{k}: output {name} {tuple(y.shape)}, float64 reference (float32 reference within {diff:.2g})"
        arrays.append(name_array(names, "vectors", f"_y{k}", y, what))
    keys = list(vectors.trace)
    traced = []
    stems: dict[str, str] = {}  # layer name -> its stem, the same for all its keys
    for key, value in vectors.trace.items():
        head, tail = _trace_name(spec, key, names, stems)
        what = f'trace of sample {vectors.sample}: "{key}"'
        traced.append(name_array(names, head, tail, value.astype(np.float64, copy=False), what))
    comment = [
        f"Golden vectors for {source_name}, by lstm-parity {__version__} (lstm-parity vectors --format c).",
        f"model:   {source_name}, sha256 {spec.sha256 or 'unknown'}, {spec.semantics} semantics",
        "inputs:  vectors_x0, ... (batch first); outputs: vectors_y0, ... (the float64 reference);",
        f"trace:   every gate and output of sample {vectors.sample} (keys as `lstm-parity trace`), tabled below;",
        "         LSTM i, f, o after recurrent_activation, c_hat = activation(z_c), c and h the new states;",
        "         GRU z, r after recurrent_activation, h_hat after activation; time in processing order",
        f"atol:    {TOLERANCE_RULE}; `check` takes one --atol for outputs and trace: VECTORS_CHECK_ATOL",
    ]
    lines = header_start(comment, guard, [a.values for a in arrays + traced])
    lines += [
        "",
        f"#define VECTORS_SAMPLES {vectors.inputs[0].shape[0]}",
        f"#define VECTORS_SAMPLE {vectors.sample} /* the traced sample: pass --sample to check --expected-trace */",
        f"#define VECTORS_OUTPUT_ATOL {vectors.output_atol!r} /* suggested, for every output */",
        f"#define VECTORS_TRACE_ATOL {vectors.trace_atol!r} /* suggested, for the trace */",
        f"#define VECTORS_CHECK_ATOL {vectors.check_atol!r} /* the larger: for `check --atol` (outputs and trace) */",
        f"#define VECTORS_TRACE_KEYS {len(keys)}",
    ]
    for array in arrays + traced:
        lines += ["", *array.lines(c_type)]
    if keys:  # C has no empty arrays
        lines += [
            "",
            "/* The trace as tables: key, first value (a null pointer for no values), number of values (row-major). */",
            "static const char *const vectors_trace_keys[VECTORS_TRACE_KEYS] = {",
            *[f"    {c_string(k)}," for k in keys],
            "};",
            f"static const {c_type} *const vectors_trace_values[VECTORS_TRACE_KEYS] = {{",
            *[f"    {_first(a, c_type)}," for a in traced],
            "};",
            "static const long vectors_trace_sizes[VECTORS_TRACE_KEYS] = {",
            *[f"    {a.values.size}L," for a in traced],
            "};",
        ]
    return "\n".join(lines + header_end(guard))


def _trace_name(spec: ModelSpec, key: str, names: NameTable, stems: dict[str, str]) -> tuple[str, str]:
    """The head and tail of a trace key's array name: "vectors_trace_<layer stem>" (the layer's name may be
    shortened; `stems` keeps one stem per layer) and "_<direction>_<gate>" / "_output0" (kept whole, so gate
    names survive)."""
    layer = max((n for n in (each.name for each in spec.layers) if key.startswith(n + "/")), key=len, default=None)
    if layer is None:
        layer, _, rest = key.rpartition("/")
    else:
        rest = key[len(layer) + 1 :]
    tail = "".join("_" + sanitize(part, "key") for part in rest.split("/"))
    if layer not in stems:
        stems[layer] = names.stem(layer or "key", "layer")
    return "vectors_trace_" + stems[layer], tail


def _first(array: CArray, c_type: str) -> str:
    """A pointer to the first value of a declared array; a null pointer when it has no elements."""
    if array.values.size == 0:
        return f"(const {c_type} *)0"
    return f"&{array.identifier}{'[0]' * max(array.values.ndim, 1)}"


def render(vectors: Vectors, fmt: str, c_type: str = "float") -> bytes:
    """The vectors file's bytes in `fmt` ("json", "npz" or "c")."""
    if fmt == "json":
        return render_json(vectors).encode()
    if fmt == "npz":
        return render_npz(vectors)
    return render_c(vectors, c_type).encode()


def write_vectors(vectors: Vectors, folder: str, fmt: str, c_type: str, protected: list[str]) -> list[str]:
    """Write FORMATS[fmt] and the inputs (inputs.npy, or inputs.npz for several) into `folder`; returns
    the two paths. All or nothing:

    - the vectors file is rendered in memory first, so a failure to compute it touches no file;
    - a `folder` that does not exist yet (its parent must) is made as a temporary folder beside it,
      both files are written there, and it is renamed to `folder` in one step: on any failure it is
      removed and nothing is left;
    - in a `folder` that exists, both files are written under temporary names there, then renamed
      onto their names one after the other; should the second rename fail, the first file is put
      back as it was (the file it replaced, or none). Other files in the folder are never touched.

    Raises BadInputError when the folder cannot be made or written, or a path names an input (or
    a folder)."""
    suffix = ".npy" if len(vectors.inputs) == 1 else ".npz"
    names = [FORMATS[fmt], "inputs" + suffix]
    paths = [os.path.join(folder, name) for name in names]
    for path in paths:
        refuse_overwriting_inputs(path, protected)
        if os.path.isdir(path):
            raise BadInputError(f"{path}: is a folder; the vectors cannot be written there")
    body = render(vectors, fmt, c_type)
    try:
        if os.path.isdir(folder):
            _replace_files(vectors, folder, names, body)
        else:
            _new_folder(vectors, folder, names, body)
    except OSError as exc:
        raise BadInputError(f"{folder}: cannot write the vectors ({exc.strerror or exc})") from None
    return paths


def _write_pair(vectors: Vectors, paths: list[str], body: bytes) -> None:
    """The vectors file (`body`) at paths[0], the inputs at paths[1]."""
    with open(paths[0], "wb") as handle:
        handle.write(body)
    write_arrays(paths[1], vectors.inputs, vectors.spec.input_names, "x")


def _new_folder(vectors: Vectors, folder: str, names: list[str], body: bytes) -> None:
    """Fill a temporary folder beside `folder`, then rename it to `folder` (removed on any failure)."""
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise BadInputError(f"{folder}: its parent folder {parent} does not exist")
    staging = tempfile.mkdtemp(prefix=".lstm-parity-", dir=parent)
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # what os.mkdir would have given it
        _write_pair(vectors, [os.path.join(staging, name) for name in names], body)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_files(vectors: Vectors, folder: str, names: list[str], body: bytes) -> None:
    """Write both files under temporary names in `folder`, then rename them into place; when the second
    rename fails, undo the first (restore the file it replaced from a hard link, or remove it)."""
    temporaries = [_temporary(folder, os.path.splitext(name)[1]) for name in names]
    backups: list[str | None] = []
    published: list[str] = []
    try:
        _write_pair(vectors, temporaries, body)
        for temporary, name in zip(temporaries, names, strict=True):
            path = os.path.join(folder, name)
            backups.append(_link_aside(path, folder))
            publish(temporary, path)
            published.append(path)
    except BaseException:
        for path, backup in zip(published, backups, strict=False):  # only those renamed into place
            with contextlib.suppress(OSError):
                if backup:
                    os.replace(backup, path)
                else:
                    os.unlink(path)
        raise
    finally:
        for leftover in [*temporaries, *(b for b in backups if b)]:
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _link_aside(path: str, folder: str) -> str | None:
    """A hard link to the file at `path` under a temporary name, or a copy where the file system has no
    hard links; None when there is no file there."""
    if not os.path.lexists(path):
        return None
    backup = _temporary(folder, ".old")
    os.unlink(backup)
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _temporary(folder: str, suffix: str) -> str:
    fd, path = tempfile.mkstemp(prefix=".lstm-parity-", suffix=suffix, dir=folder)
    os.close(fd)
    return path
