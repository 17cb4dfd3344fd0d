"""`export`: convert a model along a path that works, and write it only with proof."""

from __future__ import annotations

import os
import sys

import click

from .errors import EXIT_PARITY_FAILURE, BadInputError

EPILOG = """\b
Examples:
  lstm-parity export model.h5 model.onnx
  lstm-parity export model.h5 model.tflite                      # unrolled, builtin ops only
  lstm-parity export model.keras model.tflite --timesteps 50    # an open time axis, fixed for unrolling
  lstm-parity export model.keras model.tflite --quantize dynamic --json report.json
  lstm-parity export model.keras model_int8.tflite x.npy --quantize int8 --calibration train_sample.npy
  lstm-parity export model.keras model.tflite --strategy loop --batch-size 8   # any length, batches of 8
  lstm-parity export model.h5 model.tflite --target tflm        # TFLite Micro: batch 1, fixed length

\b
Strategies (--strategy):
  .onnx    auto     tf2onnx's choice per layer: ONNX's fused LSTM op for a plain LSTM, a Loop for GRU,
                    masks and hard_sigmoid; no state between runs; any batch size and length unless
                    --batch-size / --timesteps fix them
           fused    auto, required to come out as fused ops only (exit 3 if not)
           loop     auto, required to come out as Loops only (exit 3 if not)
           unrolled unroll=True at a fixed length (--timesteps where the model leaves it open)
  .tflite  unrolled the default up to 200 steps: unroll=True at a fixed length; builtin ops only,
                    any batch size, nothing kept between invokes
           loop     a WHILE loop at a fixed batch size (--batch-size, default 1), any length; the
                    default for longer sequences, for stateful models (their states are kept
                    between invokes), and where Keras 3 cannot unroll correctly (ConvLSTM; a
                    Bidirectional returning sequences of masked input). No int8 (TensorFlow's
                    calibrator crashes on it)
           fused    refused (exit 3): the fused TFLite LSTM carries h and c from one invoke() to the
                    next (wrong for a stateless model) and takes no mask
  --target tflm     a .tflite for TFLite Micro: as above (unrolled by default; a loop where LiteRT
                    would loop, a stateful model's states kept in resource variables), at a fixed
                    batch (1 unless --batch-size) and a fixed length (the model's, else --timesteps);
                    no masks, no float16 or dynamic quantization (TFLite Micro has no kernels for
                    them); proven in the tflite-micro interpreter, invoked again and again, never reset

\b
Proof: the file is written only when, in its runtime (ONNX Runtime, LiteRT or TFLite Micro), it
matches the reference (NumPy, the file's own Keras semantics) on generated inputs and on INPUT if
given, and gives the same outputs when invoked again without a reset. Pass rule: --atol/--rtol
without quantization; the float16 profile for --quantize float16; the int8 profile for dynamic and
int8.

\b
Exit codes:
  0  written and proven
  1  the proof failed: nothing written, OUT untouched (the report shows the numbers)
  2  bad usage, or an unreadable model or input
  3  a limit, named: no exact rewrite (an LSTM whose activation is hard_sigmoid; a Keras 2 RNN
     given initial_state on masked input), a stateful model to ONNX, the fused TFLite LSTM, an open
     time axis where unrolling needs --timesteps, unrolling what Keras 3 cannot unroll, a Lambda or
     a layer computed by a plugin (the rebuilt model has no code for it), what TFLite Micro cannot
     run (masks, float16/dynamic weights, an op it has no kernel for)
  4  Keras, a converter or the runtime is missing or failed (one line; --debug for more)"""


@click.command(epilog=EPILOG)
@click.argument("model", type=click.Path())
@click.argument("out", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option(
    "--quantize",
    type=click.Choice(["none", "float16", "dynamic", "int8"]),
    default="none",
    show_default=True,
    help="none; float16 weights; dynamic (int8 weights, float activations); int8 (weights and activations, "
    "calibrated on --calibration, else on generated inputs, which the report says).",
)
@click.option(
    "--calibration",
    type=click.Path(),
    help="With --quantize int8: representative inputs (.npy, or .npz for several inputs) to set the scales.",
)
@click.option(
    "--strategy",
    type=click.Choice(["auto", "unrolled", "fused", "loop"]),
    default="auto",
    show_default=True,
    help="How the recurrence is written (see Strategies below); auto picks a file that runs in the pip "
    "runtime with builtin ops, is correct when invoked in a loop without reset, and takes any batch size "
    "where the format allows.",
)
@click.option(
    "--target",
    type=click.Choice(["onnxruntime", "litert", "tflm"]),
    help="The runtime the file is made for and proven in.  [default: onnxruntime for .onnx, litert for "
    ".tflite]  tflm: TFLite Micro (a .tflite at a fixed batch and length; see Strategies).",
)
@click.option(
    "--timesteps",
    type=click.IntRange(min=1),
    help="Fix an open time axis to T steps (needed to unroll a model whose length is open, and by --target tflm).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Fix the batch axis to N (default: any batch size; the loop strategy and --target tflm use 1).",
)
@click.option("--opset", type=click.IntRange(min=9), help="ONNX opset (ONNX only).  [default: 17]")
@click.option(
    "--atol",
    multiple=True,
    default=("1e-5",),
    show_default=True,
    metavar="[OUTPUT:]ATOL",
    help="Absolute tolerance of the proof of a float32 export (repeatable: OUTPUT:ATOL for one output); "
    "quantized exports are judged by their profile instead.",
)
@click.option(
    "--rtol",
    multiple=True,
    default=("1e-5",),
    show_default=True,
    metavar="[OUTPUT:]RTOL",
    help="Relative tolerance of the proof of a float32 export: |export - reference| <= atol + rtol*|reference|.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    help="How many sequences to generate for the proof.  [default: 16; 256 when quantizing; 1,000 when "
    "quantizing a model whose outputs are class scores, so that the top-1 rule is judged]",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated inputs.")
@click.option(
    "--range",
    "value_range",
    default="-1,1",
    show_default=True,
    metavar="LO,HI",
    help="Generated float values are uniform in [LO, HI).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(allow_dash=True),
    help="Also write the report as JSON ('-': JSON to stdout instead of the text report): converter and "
    "versions, op census, sizes before/after quantization, strategy and why, the proof's numbers.",
)
def export(
    model: str,
    out: str,
    input_file: str | None,
    quantize: str,
    calibration: str | None,
    strategy: str,
    target: str | None,
    timesteps: int | None,
    batch_size: int | None,
    opset: int | None,
    atol: tuple[str, ...],
    rtol: tuple[str, ...],
    samples: int | None,
    seed: int,
    value_range: str,
    json_path: str | None,
) -> None:
    """Convert MODEL to OUT (.onnx for ONNX Runtime, .tflite for LiteRT or, with --target tflm, TFLite Micro)
    and write OUT only with proof.

    MODEL is any file lstm-parity reads, including files no Keras loads (Keras 1/2 configs, CuDNNLSTM).
    It is rebuilt with Keras 3 from what was read (Keras 2's hard_sigmoid rescaled exactly), converted
    into a temporary file, and proven there before it is moved into place."""
    from .atomicio import atomic_write, check_writable, refuse_overwriting_inputs
    from .cli_support import make_inputs, parse_tolerance
    from .export.options import ExportOptions
    from .export.report import render_export, render_export_json
    from .export.run import run_export
    from .formats import open_model
    from .plugins import plugin_files

    protected = [model] + [p for p in (input_file, calibration) if p] + plugin_files()
    refuse_overwriting_inputs(out, protected)
    if json_path and json_path != "-":
        if os.path.realpath(json_path) == os.path.realpath(out):
            raise BadInputError(f"--json {json_path}: is OUT itself; write the report to another file")
        refuse_overwriting_inputs(json_path, [*protected, out])
        check_writable(json_path)  # before converting: a report that cannot be written fails now, not after
    options = ExportOptions(
        quantize=quantize,
        strategy=strategy,
        target=target or "",
        timesteps=timesteps,
        batch_size=batch_size,
        opset=opset,
        calibration=calibration,
        tolerance=parse_tolerance(list(atol), list(rtol)),
        samples=samples,
        seed=seed,
        value_range=value_range,
    )
    spec = open_model(model)
    user = (f"INPUT {input_file}", make_inputs(spec, input_file, 1, 0, 1, "-1,1")) if input_file else None
    calibrating = make_inputs(spec, calibration, 1, 0, 1, "-1,1") if calibration else None
    report = run_export(spec, out, options, user, calibrating)
    code = 0 if report.written else EXIT_PARITY_FAILURE
    if json_path == "-":
        click.echo(render_export_json(report, code), nl=False)
    elif os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        click.echo(render_export(report), nl=False)
    else:
        from rich.console import Console

        from .export.report import render_export_rich

        render_export_rich(report, Console())
    if json_path and json_path != "-":
        with atomic_write(json_path, "w") as handle:
            handle.write(render_export_json(report, code))
    if code:
        sys.exit(code)
