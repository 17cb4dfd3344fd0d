"""An `.onnx` export run by ONNX Runtime (CPU), the only module that imports onnxruntime.

Before the runtime sees the file it is size/magic checked, its external-data references are checked
(refused unless allowed, and always when they leave the file's folder), and a forked, time-limited
child loads it, runs it once on zeros and sends back its census. Only then is it opened here.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from ..errors import BadInputError, KerasSideError, first_line
from ..spec import ModelSpec
from .census import onnx_census
from .exports import (
    ExportRunner,
    check_export_file,
    import_runtime,
    ports_from_census,
    probe_arrays,
    probe_isolated,
    thread_count,
)

RUNTIME = "ONNX Runtime"
# Load-time failures that mean the bytes are not a sound model (exit 2); any other is the runtime's (exit 4).
CORRUPT_LOAD_ERRORS = frozenset({"InvalidProtobuf", "InvalidGraph", "InvalidArgument", "UnicodeDecodeError"})


class OnnxRunner(ExportRunner):
    """One InferenceSession on the CPU provider; inputs are fed by the export's names."""

    kind = "onnxruntime"
    runtime = RUNTIME

    def __init__(self, session: Any, path: str, spec: ModelSpec, census: dict, version: str, notes: tuple[str, ...]):
        super().__init__(path, spec, census, version, notes)
        self.session = session

    def _invoke(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, {port.name: x for port, x in zip(self.inputs, feed, strict=True)}))

    def close(self) -> None:
        self.session = None


def open_onnx(path: str, spec: ModelSpec, allow_external_data: bool = False) -> OnnxRunner:
    """Open `path` in ONNX Runtime for the model `spec` after guarding and probing it (see the module).

    `allow_external_data` lets tensors load from files inside the model's own folder. Raises
    BadInputError (exit 2) for an unreadable, corrupt or refused file, KerasSideError (exit 4) when
    onnxruntime/onnx are not installed or the runtime cannot load or run the file.
    """
    check_export_file(path, "onnx")
    ort = import_runtime("onnxruntime", "onnx", path)
    import_runtime("onnx", "onnx", path)
    census = probe_isolated(functools.partial(_probe, allow_external_data=allow_external_data), path, RUNTIME)
    try:
        session = _session(ort, path)
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} {ort.__version__} cannot load it: {first_line(exc)}") from None
    notes = (f"{len(census['external_data'])} tensors loaded from external data",) if census["external_data"] else ()
    return OnnxRunner(session, path, spec, census, ort.__version__, notes)


def check_external_data(path: str, refs: list[dict[str, Any]], allow: bool) -> None:
    """Refuse external data that leaves the model's folder (absolute, `..`, symlinks out), is missing or
    shorter than declared, and any external data at all unless `allow`. Raises BadInputError."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for ref in refs:
        location, tensor = ref.get("location", ""), ref.get("tensor", "?")
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise BadInputError(
                f"{path}: tensor '{tensor}' keeps its data in '{location}', outside the model's folder; refused"
            )
        if not os.path.isfile(target):
            raise BadInputError(f"{path}: tensor '{tensor}' keeps its data in '{location}', which does not exist")
        end = int(ref.get("offset", 0) or 0) + int(ref.get("length", 0) or 0)
        if end > os.path.getsize(target):
            raise BadInputError(f"{path}: tensor '{tensor}' needs bytes up to {end} of '{location}', which is shorter")
    if refs and not allow:
        files = sorted({ref.get("location", "") for ref in refs})
        raise BadInputError(
            f"{path}: {len(refs)} tensors keep their data in external files ({', '.join(files)}); "
            f"refused unless external data is allowed (--allow-external-data)"
        )


def _session(ort: Any, path: str) -> Any:
    """An InferenceSession on the CPU provider, intra-op threads from LSTM_PARITY_THREADS, warnings off."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = thread_count()
    if threads:
        options.intra_op_num_threads = threads
    # enable_fallback=0: no retry on another provider, and no "EP Error" banner printed to stdout
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"], enable_fallback=0)


def _probe(path: str, allow_external_data: bool) -> dict:
    """In the sandbox: census, external-data rules, load, one run on zeros of the declared shapes.
    Returns the census; raises BadInputError (corrupt/refused) or KerasSideError (runtime failure)."""
    ort = import_runtime("onnxruntime", "onnx", path)  # already imported by open_onnx
    try:
        census = onnx_census(path)
    except Exception as exc:
        raise BadInputError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    check_external_data(path, census["external_data"], allow_external_data)
    if not census["inputs"] or not census["outputs"]:
        raise BadInputError(f"{path}: the ONNX graph declares no inputs or no outputs; truncated or corrupt")
    try:
        session = _session(ort, path)
    except Exception as exc:
        error = BadInputError if type(exc).__name__ in CORRUPT_LOAD_ERRORS else KerasSideError
        raise error(f"{path}: {RUNTIME} {ort.__version__} cannot load it: {first_line(exc)}") from None
    ports = ports_from_census(census["inputs"])
    feed = {port.name: x for port, x in zip(ports, probe_arrays(ports), strict=True)}
    try:
        session.run(None, feed)
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} {ort.__version__} failed to run it: {first_line(exc)}") from None
    return census
