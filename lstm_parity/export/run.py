"""`export`, start to end: choose the strategy, rebuild the model with Keras 3, convert (and quantize)
into a temporary file beside OUT, prove it with the check flow (the export in its target runtime, ONNX
Runtime, LiteRT or TFLite Micro, against the reference under the file's own semantics, invoked twice
without reset), and only then move it into place. A failed proof, a refusal or a converter error leaves
nothing behind and OUT untouched."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np

from ..atomicio import check_writable, publish
from ..check import CheckOptions, CheckReport, run_check
from ..cli_support import make_inputs
from ..errors import BadInputError, KerasSideError, LstmParityError, UnsupportedError
from ..profiles import TOP1_MIN_ROWS, top1_outputs
from ..spec import ModelSpec
from .options import DEFAULT_OPSET, TARGETS, ExportOptions, check_for_format, format_for, target_for
from .report import ExportReport, Gate
from .strategy import Strategy, choose_strategy, sequence_inputs

# The --against prefix that opens each target's runner (runners/open.py); the formats' own need none.
TARGET_PREFIX = {"onnxruntime": "", "litert": "", "tflm": "tflm:"}
TFLM_CANNOT_PREPARE = "TFLite Micro cannot prepare it"  # runners/tflm.py's words when a kernel refuses the file
CALIBRATION_SAMPLES = 64  # generated sequences int8 calibrates on when no --calibration is given
DEFAULT_TIMESTEPS = 12  # generated inputs' length where the export leaves the time axis open


def run_export(
    spec: ModelSpec,
    out: str,
    options: ExportOptions,
    user_inputs: tuple[str, list[np.ndarray]] | None = None,
    calibration: list[np.ndarray] | None = None,
) -> ExportReport:
    """Export `spec` to `out` (.onnx or .tflite) and write it only if the proof passes.

    `user_inputs` is (label, arrays) of the user's INPUT, proven on as well as the generated inputs;
    `calibration` the arrays int8 calibrates on (generated when None, and the report says so).
    Returns the report (`written` says whether `out` was written). Raises BadInputError (2) for options or
    inputs that do not fit, UnsupportedError (3) for a limit of the target runtime or of the rewrite,
    KerasSideError (4) when Keras, a converter or the runtime fails."""
    fmt = format_for(out)
    check_for_format(options, fmt, out)
    check_writable(out)
    target = target_for(options, fmt)
    if target == "tflm":
        _require_tflm(out)
    strategy = choose_strategy(spec, fmt, options)
    generated = _generated(spec, strategy, options, samples=proof_samples(spec, options))
    sets = [(f"generated inputs: {generated[0].shape[0]} samples, seed {options.seed}", generated)]
    if user_inputs is not None:
        _fits(spec, strategy, *user_inputs)
        sets.append(user_inputs)
    notes = []
    if options.quantize == "int8" and calibration is None:
        calibration = _generated(spec, strategy, options, CALIBRATION_SAMPLES, seed=options.seed + 1)
        notes.append(
            f"int8 calibrated on {CALIBRATION_SAMPLES} generated sequences (uniform in {options.value_range}, "
            f"seed {options.seed + 1}); pass --calibration X.npy with real data for a representative scale"
        )
    elif calibration is not None:
        _fits(spec, strategy, "--calibration", calibration)
    from .rebuild import rebuild

    rebuilt = rebuild(spec, strategy, generated)
    report = ExportReport(
        source=spec.source,
        target=out,
        format=fmt,
        runtime=target,
        keras_version=spec.keras_version,
        semantics=spec.semantics,
        strategy=strategy,
        strategy_taken=strategy.name,
        quantize=options.quantize,
        profile=options.profile,
        transformed=rebuilt.transformed,
        dropped=rebuilt.dropped,
        notes=rebuilt.rewritten + notes,
    )
    stem, suffix = os.path.splitext(os.path.basename(out))
    with _work_folder(out) as work:
        final = os.path.join(work, stem + suffix)  # the runtime's report names OUT's own file name
        float32 = final if options.quantize == "none" else os.path.join(work, stem + "-float32" + suffix)
        convert = _onnx if fmt == "onnx" else _tflite
        convert(spec, rebuilt.model, strategy, options, float32, final, calibration, report)
        report.gates = [Gate(label, _prove(spec, final, out, options, arrays, target)) for label, arrays in sets]
        if report.nonstandard_ops:
            report.notes.append(
                f"ops outside the {'ONNX standard' if fmt == 'onnx' else 'TFLite builtins'}: "
                f"{', '.join(report.nonstandard_ops)}"
                + (" (ONNX Runtime's own: other ONNX runtimes cannot run this file)" if fmt == "onnx" else "")
            )
        if options.quantize != "none" and not report.census.get("quantized"):
            report.notes.append(
                f"--quantize {options.quantize} changed no weight: every weight tensor stayed float32 (TFLite's "
                f"dynamic-range quantizer skips tensors under 1,024 elements)"
                if fmt == "tflite"
                else f"--quantize {options.quantize} changed no weight: every weight tensor stayed float32"
            )
        if report.passed:
            publish(final, out)
            report.written = True
    return report


def _onnx(
    spec: ModelSpec,
    model: object,
    strategy: Strategy,
    options: ExportOptions,
    float32: str,
    final: str,
    calibration: list[np.ndarray] | None,
    report: ExportReport,
) -> None:
    """Convert to ONNX at `float32`, then quantize into `final` (the same path when not quantizing)."""
    from ..runners.census import onnx_census
    from .onnx_convert import convert_onnx, quantize_onnx

    shapes = dict(zip(spec.input_names, strategy.input_shapes, strict=True))  # the model's input order
    report.versions = convert_onnx(model, float32, options.opset or DEFAULT_OPSET, spec.source, input_shapes=shapes)
    report.size_float = report.size_final = os.path.getsize(float32)
    report.strategy_taken = _onnx_taken(spec, strategy, onnx_census(float32))
    if float32 == final:
        return
    by_name = dict(zip(spec.input_names, calibration, strict=True)) if calibration is not None else None
    report.versions.update(quantize_onnx(float32, final, options.quantize, by_name, spec.source))
    report.size_final = os.path.getsize(final)


def _onnx_taken(spec: ModelSpec, strategy: Strategy, census: dict) -> str:
    """What tf2onnx made of the recurrent layers: fused, loop, both, or unrolled; exit 3 when --strategy
    fused/loop/unrolled asked for what did not come out."""
    fused, loops = census.get("fused", {}), census.get("loops", {})
    if strategy.name == "unrolled":
        _refuse_left_rolled(spec, {**fused, **loops})
        return "unrolled"
    taken = "fused and loop" if fused and loops else "fused" if fused else "loop" if loops else "plain ops"
    if strategy.name in ("fused", "loop") and taken != strategy.name:
        made = ", ".join(sorted({**fused, **loops})) or "no recurrent op"
        raise UnsupportedError(
            f"{spec.source}: --strategy {strategy.name}: tf2onnx wrote the recurrence as {made}; it fuses only "
            f"a plain sigmoid/tanh LSTM without a mask into ONNX's LSTM op (no GRU) and cannot be told to "
            f"loop one it fuses; use --strategy auto"
        )
    return taken


def _tflite(
    spec: ModelSpec,
    model: object,
    strategy: Strategy,
    options: ExportOptions,
    float32: str,
    final: str,
    calibration: list[np.ndarray] | None,
    report: ExportReport,
) -> None:
    """Convert to TFLite at `float32` (for its size), then quantized into `final` (the same path when
    not quantizing)."""
    from ..runners.census import tflite_census
    from .tflite_convert import convert_tflite

    flatbuffer, report.versions = convert_tflite(model, "none", None, strategy.batch, spec.source)
    _write(float32, flatbuffer)
    if strategy.unroll:
        census = tflite_census(float32)
        _refuse_left_rolled(spec, {**census.get("fused", {}), **census.get("loops", {})})
    report.size_float = report.size_final = len(flatbuffer)
    if float32 == final:
        return
    by_name = dict(zip(spec.input_names, calibration, strict=True)) if calibration is not None else None
    flatbuffer, _ = convert_tflite(model, options.quantize, by_name, strategy.batch, spec.source)
    _write(final, flatbuffer)
    report.size_final = len(flatbuffer)
    report.versions["quantizer"] = f"TFLite converter, {QUANTIZER_TEXT[options.quantize]}"


def _refuse_left_rolled(spec: ModelSpec, ops: dict[str, int]) -> None:
    """An unrolled export must hold no loop and no fused recurrent op (exit 3 naming what it holds)."""
    if ops:
        raise UnsupportedError(
            f"{spec.source}: --strategy unrolled: the converted graph still holds {', '.join(sorted(ops))}; "
            f"some recurrent layer was not unrolled; use --strategy auto or loop"
        )


QUANTIZER_TEXT = {
    "float16": "float16 weights (supported_types=[tf.float16])",
    "dynamic": "dynamic range: int8 weights (tensors of 1,024 elements or more), float activations",
    "int8": "full integer: int8 weights and activations (TFLITE_BUILTINS_INT8), float32 inputs/outputs",
}


def _require_tflm(out: str) -> None:
    """Raise KerasSideError (exit 4) naming the [tflm] extra when tflite-micro is not installed: the proof
    needs it, so this is said before anything is converted. (Found, not imported: its runner imports it.)"""
    from ..runners.exports import EXTRAS

    try:
        found = importlib.util.find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise KerasSideError(
            f"{out}: --target tflm proves the file in TFLite Micro, and tflite_micro is not installed; {EXTRAS['tflm']}"
        )


def _prove(
    spec: ModelSpec, path: str, out: str, options: ExportOptions, inputs: list[np.ndarray], target: str
) -> CheckReport:
    """The check flow on `path` in the `target` runtime vs the reference (the file's own semantics,
    float64), under the profile that fits the quantization; the export is invoked a second time without
    reset. A file TFLite Micro cannot prepare (a kernel it lacks, or refuses for these shapes or types)
    is a limit of that target (UnsupportedError, exit 3); any other runtime failure is KerasSideError."""
    from ..runners.open import open_export

    try:
        runner = open_export(TARGET_PREFIX[target] + path, spec)
        try:
            report = run_check(
                spec,
                inputs,
                CheckOptions(keras=False, profile=options.profile, tolerance=options.tolerance),
                exports=[runner],
            )
        finally:
            runner.close()
    except LstmParityError as exc:  # name OUT, not the temporary file, and say that nothing was written
        message = exc.message.replace(path, os.path.basename(path))
        if target == "tflm" and TFLM_CANNOT_PREPARE in message:
            detail = message.split(TFLM_CANNOT_PREPARE, 1)[1].lstrip(": ")
            raise UnsupportedError(
                f"{out}: not written: TFLite Micro cannot run the converted file: {detail}"
            ) from None
        runtime = TARGETS[target][1]
        raise type(exc)(f"{out}: not written: the converted file failed in {runtime}: {message}") from None
    # the report names OUT, where the file goes, not the temporary file that is removed afterwards
    target = os.path.abspath(out)
    sides = tuple(
        dataclasses.replace(side, path=target, notes=tuple(n.replace(path, target) for n in side.notes))
        for side in report.sides
    )
    return dataclasses.replace(report, sides=sides)


def proof_samples(spec: ModelSpec, options: ExportOptions) -> int:
    """How many sequences the proof generates: --samples, else 16 for a float32 export, 256 for a quantized
    one, and TOP1_MIN_ROWS for a quantized one with class scores, so that the profile's top-1 rule (which
    waits for that many rows) is judged rather than shown."""
    if options.samples is not None:
        return options.samples
    if options.quantize != "none" and top1_outputs(spec):
        return max(options.proof_samples, TOP1_MIN_ROWS)
    return options.proof_samples


def _generated(
    spec: ModelSpec, strategy: Strategy, options: ExportOptions, samples: int, seed: int | None = None
) -> list[np.ndarray]:
    """`samples` inputs made from the model at the export's shapes: its fixed time axis, else
    DEFAULT_TIMESTEPS (or --timesteps); a stateful model's batch size is kept so whole batches are made."""
    shapes = tuple((own[0], *chosen[1:]) for own, chosen in zip(spec.input_shapes, strategy.input_shapes, strict=True))
    seed = options.seed if seed is None else seed
    model = dataclasses.replace(spec, input_shapes=shapes)
    return make_inputs(model, None, samples, seed, options.timesteps or DEFAULT_TIMESTEPS, options.value_range)


def _fits(spec: ModelSpec, strategy: Strategy, label: str, arrays: list[np.ndarray]) -> None:
    """Refuse (exit 2) inputs whose time axis differs from the length the export fixes."""
    for x, shape, sequence, name in zip(
        arrays, strategy.input_shapes, sequence_inputs(spec), spec.input_names, strict=True
    ):
        if sequence and shape[1] is not None and x.ndim >= 2 and x.shape[1] != shape[1]:
            raise BadInputError(
                f"{label}: input {name!r} has {x.shape[1]} timesteps and the export fixes {shape[1]}; "
                f"pass --timesteps {x.shape[1]} (if the model leaves the length open) or inputs of {shape[1]} steps"
            )


@contextlib.contextmanager
def _work_folder(out: str) -> Iterator[str]:
    """A new hidden folder beside `out` (the final rename stays in one filesystem), removed afterwards
    with whatever is left in it."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        work = tempfile.mkdtemp(prefix=".lstm-parity-", dir=folder)
    except OSError as exc:
        raise BadInputError(f"{out}: cannot write in {folder} ({exc.strerror or exc})") from None
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
