"""An `.onnx` or OpenVINO IR (`.xml` + `.bin`) export run by OpenVINO on the CPU, the only module that
imports openvino. `--against openvino:FILE`.

OpenVINO's CPU plugin picks its arithmetic when it compiles: on a CPU with bfloat16 support
(AVX512-BF16, AMX) `INFERENCE_PRECISION_HINT` defaults to bf16, so the same file computes other
numbers on another machine (measured: 1.4e-3 off on a 5-unit LSTM, exact with f32). The runner
compiles with the precision asked for (`auto` = no hint, what a deployment on this machine gets),
reads the precision that actually ran back from the compiled model, and always reports it with the
CPU's bf16/fp16 support; when the check then fails, a note says whether that reduced precision
explains it and how to pin float32.

Before OpenVINO sees the file it is size/magic checked (an ONNX file's external data follows the ONNX
Runtime runner's rules: refused unless allowed, never outside its folder), and a forked, time-limited
child reads, compiles and runs it once on zeros and sends back its census. Conversion failures (an
ONNX `Loop` the frontend cannot convert) are one line quoting OpenVINO's own summary, exit 4; an IR that
OpenVINO cannot read (bad XML, its .bin missing or truncated) is a bad file, exit 2.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from ..compare import ComparisonResult
from ..errors import BadInputError, KerasSideError, first_line
from ..quiet_stderr import native_output
from ..spec import ModelSpec
from .census import openvino_census
from .exports import (
    ExportRunner,
    check_export_file,
    import_runtime,
    ports_from_census,
    probe_arrays,
    probe_isolated,
    thread_count,
)

RUNTIME = "OpenVINO"
DEVICE = "CPU"
PRECISION_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
SOURCE_FORMATS = {".onnx": "onnx", ".xml": "ir"}
# Lines of OpenVINO's multi-line exceptions that say where, not what.
NOISE_PREFIXES = ("Exception from ", "Check '", "While validating", "FrontEnd API failed", "Summary:")


class OpenVINORunner(ExportRunner):
    """One compiled model on the CPU with one infer request; inputs fed by position."""

    kind = "openvino"
    runtime = RUNTIME

    def __init__(self, compiled: Any, path: str, spec: ModelSpec, census: dict, version: str):
        super().__init__(path, spec, census, version, precision_notes(census["compiled"]))
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    @property
    def inference_precision(self) -> str:
        """What the CPU computed in: "f32", "bf16" or "f16" (read back from the compiled model)."""
        return str(self.census["compiled"]["inference_precision"])

    def verdict_notes(self, result: ComparisonResult) -> list[str]:
        """After a failure computed in reduced precision: whether that rounding explains it, and how to
        pin float32 (see failure_notes)."""
        return failure_notes(self.census["compiled"], result)

    def _invoke(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(dict(enumerate(feed)))
        return [np.array(results[port]) for port in self.compiled.outputs]  # copies: the request reuses its memory

    def close(self) -> None:
        self.request = self.compiled = None


def open_openvino(
    path: str, spec: ModelSpec, precision: str = "auto", allow_external_data: bool = False
) -> OpenVINORunner:
    """Open `path` (.onnx or IR .xml) in OpenVINO on the CPU for the model `spec` after guarding and
    probing it (see the module), compiled at `precision` ("auto", "f32", "bf16", "f16").

    Raises BadInputError (exit 2) for another extension, an unreadable or corrupt file, refused external
    data, KerasSideError (exit 4) when openvino (or onnx, for an .onnx file) is not installed or
    OpenVINO cannot convert, compile or run the file.
    """
    source_format = SOURCE_FORMATS.get(os.path.splitext(path)[1].lower())
    if source_format is None:
        raise BadInputError(f"{path}: OpenVINO runs an .onnx file or an IR .xml (with its .bin beside it)")
    check_export_file(path, "onnx" if source_format == "onnx" else "xml")
    ov = import_runtime("openvino", "openvino", path)
    if source_format == "onnx":
        import_runtime("onnx", "openvino", path)  # the census and the external-data rules read the protobuf
    probe = functools.partial(_probe, precision=precision, allow_external_data=allow_external_data)
    census = probe_isolated(probe, path, RUNTIME)
    version = ov.get_version().split("-")[0]
    compiled = _compiled(ov, path, precision, version)
    census["compiled"] = _compiled_facts(ov.Core(), compiled, precision)
    return OpenVINORunner(compiled, path, spec, census, version)


def precision_notes(compiled: dict) -> tuple[str, ...]:
    """What the report always says about the arithmetic: the precision that ran and the CPU's support,
    and when it is not what was asked for, that the CPU lacks it. `compiled` is the census' "compiled"
    entry (see _compiled_facts)."""
    ran, requested = compiled["inference_precision"], compiled["requested"]
    support = f"bf16 {'yes' if compiled['cpu_bf16'] else 'no'}, fp16 {'yes' if compiled['cpu_fp16'] else 'no'}"
    how = "OpenVINO's default on this CPU" if requested == "auto" else f"{requested} asked"
    notes = [f"CPU inference precision {PRECISION_NAMES.get(ran, ran)} ({how}; the CPU has {support})"]
    if requested not in ("auto", ran):
        notes.append(f"asked for {requested}, OpenVINO compiled {ran} (the CPU lacks {requested} arithmetic)")
    return tuple(notes)


def failure_notes(compiled: dict, result: ComparisonResult) -> list[str]:
    """Nothing when `result` (judged as the report judges it) passed or the CPU computed in float32.
    Otherwise: failing the float32 profile in bf16/f16 is that rounding, with how to pin float32 or
    judge it under the precision that ran; failing even that precision's profile is more than rounding."""
    ran = compiled["inference_precision"]
    if result.passed or ran == "f32":
        return []
    name = PRECISION_NAMES.get(ran, ran)
    pin = "pin float32 with --openvino-precision f32 (a deployment sets INFERENCE_PRECISION_HINT=f32)"
    if result.profile == "float32":
        return [
            f"computed in {name}: failing the float32 profile is expected from that rounding, not a fault of the "
            f"export; {pin}, or judge it with --profile {name}"
        ]
    return [f"computed in {name}, and it fails even the {result.profile} profile: more than that rounding; {pin}"]


def openvino_error(exc: BaseException) -> str:
    """One line of OpenVINO's multi-line exception: its conversion summary ("Conversion is failed for:
    Loop-17") when there is one, else its first line that says what went wrong."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
    summary = [line for line in lines if line.startswith("Conversion is failed for")]
    if summary:
        return f"{type(exc).__name__}: {summary[0]}"[:300]
    telling = [line for line in lines if not line.startswith(NOISE_PREFIXES)]
    return f"{type(exc).__name__}: {telling[0]}"[:300] if telling else first_line(exc)


def _config(precision: str) -> dict[str, Any]:
    """compile_model properties: the precision hint unless auto, threads from LSTM_PARITY_THREADS."""
    config: dict[str, Any] = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}
    threads = thread_count()
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _read(core: Any, path: str, version: str) -> Any:
    """The graph OpenVINO reads from `path`. Raises KerasSideError with its conversion summary for an
    ONNX file it cannot convert, BadInputError for an IR it cannot read (naming a missing .bin)."""
    try:
        with native_output():
            return core.read_model(path)
    except Exception as exc:
        if SOURCE_FORMATS.get(os.path.splitext(path)[1].lower()) != "ir":
            raise KerasSideError(f"{path}: {RUNTIME} {version} cannot convert it: {openvino_error(exc)}") from None
        weights = ir_weights(path)
        if not os.path.isfile(weights) and "bin" in str(exc).lower():  # it looked for the weights
            raise BadInputError(
                f"{path}: {RUNTIME} cannot read the IR: its weights file {weights} is missing ({openvino_error(exc)})"
            ) from None
        raise BadInputError(
            f"{path}: not a readable OpenVINO IR ({openvino_error(exc)}); truncated or corrupt"
        ) from None


def ir_weights(path: str) -> str:
    """The .bin an IR .xml reads its weights from: the same path with .bin (OpenVINO's rule)."""
    return os.path.splitext(path)[0] + ".bin"


def _compile(core: Any, model: Any, path: str, precision: str, version: str) -> Any:
    try:
        with native_output():
            return core.compile_model(model, DEVICE, _config(precision))
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} {version} cannot compile it: {openvino_error(exc)}") from None


def _compiled(ov: Any, path: str, precision: str, version: str) -> Any:
    core = ov.Core()
    return _compile(core, _read(core, path, version), path, precision, version)


def _compiled_facts(core: Any, compiled: Any, precision: str) -> dict[str, Any]:
    """{"requested", "inference_precision" (read back: f32/bf16/f16), "cpu", "cpu_bf16", "cpu_fp16"}."""
    capabilities = [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]
    return {
        "requested": precision,
        "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT").to_string()),
        "cpu": str(core.get_property(DEVICE, "FULL_DEVICE_NAME")),
        "cpu_bf16": "BF16" in capabilities,
        "cpu_fp16": "FP16" in capabilities,
    }


def _probe(path: str, precision: str, allow_external_data: bool) -> dict:
    """In the sandbox: external-data rules (ONNX), read, census, compile, one run on zeros of the
    declared shapes. Returns the census; raises BadInputError (corrupt or refused) or KerasSideError."""
    ov = import_runtime("openvino", "openvino", path)  # already imported by open_openvino
    version = ov.get_version().split("-")[0]
    source_format = SOURCE_FORMATS[os.path.splitext(path)[1].lower()]
    if source_format == "onnx":
        from .census import onnx_census
        from .onnx_runtime import check_external_data

        try:
            proto = onnx_census(path)
        except Exception as exc:
            raise BadInputError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
        check_external_data(path, proto["external_data"], allow_external_data)
    core = ov.Core()
    model = _read(core, path, version)
    census = openvino_census(model, source_format)
    if not census["inputs"] or not census["outputs"]:
        raise BadInputError(f"{path}: the model declares no inputs or no outputs; truncated or corrupt")
    compiled = _compile(core, model, path, precision, version)
    try:
        request = compiled.create_infer_request()
        request.infer(dict(enumerate(probe_arrays(ports_from_census(census["inputs"])))))
    except Exception as exc:
        raise KerasSideError(f"{path}: {RUNTIME} {version} failed to run it: {openvino_error(exc)}") from None
    return census
