"""The `lstm-parity` command: thin click commands that wire the library and map errors to exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .cli_inputs import input_options, inputs_from_options, write_text
from .errors import EXIT_PARITY_FAILURE, EXIT_PASS, BadInputError, LstmParityError

EXIT_INTERNAL = 5

EXIT_CODES_HELP = """\b
Exit codes:
  0  pass (check) / success
  1  parity failure: outputs differ beyond tolerance, weights read differ from Keras',
     or an export carries state between invocations
  2  bad usage, or an unreadable/invalid model, input or export file
  3  the model uses a layer or option the reference does not implement
  4  Keras or an export's runtime could not be imported, load the file, or run
  5  internal error in lstm-parity (re-run with --debug and report it)"""


class ErrorMappingGroup(click.Group):
    """Turn our errors into one line on stderr plus the documented exit code; --debug shows tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LstmParityError as exc:
            if ctx.meta.get("lstm_parity.debug"):
                traceback.print_exc()
            click.echo(f"lstm-parity: error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug of ours: still one line unless asked for more
            if ctx.meta.get("lstm_parity.debug"):
                raise
            click.echo(
                f"lstm-parity: internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=ErrorMappingGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstm-parity")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors (for bug reports).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Prove that a NumPy forward pass computes what a saved Keras recurrent model computes.

    \b
    Quick start:
      lstm-parity check model.h5 input.npy      reference vs Keras model.predict
      lstm-parity dump model.h5 -o weights.json  weights + options for porting
      lstm-parity predict model.h5 input.npy -o out.npy   reference only, no TensorFlow
    """
    ctx.meta["lstm_parity.debug"] = debug


dtype_option = click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Precision of the NumPy reference. float32 mimics Keras' own arithmetic.",
)
semantics_option = click.option(
    "--semantics",
    type=click.Choice(["keras2", "keras3"]),
    default=None,
    help="Compute with this Keras generation's math instead of the one that saved the file "
    "(e.g. hard_sigmoid is clip(0.2x+0.5) in keras2, relu6(x+3)/6 in keras3).",
)


def use_plugins(ctx: click.Context, paths: Sequence[str]) -> Any:
    """Load the plugin files `paths` and put them in force for the command of `ctx` (restored to what was
    in force before when the command ends, so that nothing leaks into the next command or library call);
    returns the PluginSet. Raises BadInputError (exit 2) naming a file that cannot be loaded."""
    from .plugins import activate, load_plugins

    plugins = load_plugins(list(paths))
    previous = activate(plugins)
    ctx.call_on_close(lambda: activate(previous))
    return plugins


def _plugin_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    use_plugins(ctx, value)  # also with no --plugin: a command never inherits an earlier command's plugins
    return value


def echo_plugin_notes(computed: Any) -> None:
    """On stderr, the notes on what plugins computed (an installed package's plugin, a mask it did not get):
    for commands whose output is a file of numbers, with no report to carry them."""
    from .plugins import plugin_notes as notes

    for note in notes(computed):
        click.echo(f"lstm-parity: note: {note}", err=True)


plugin_option = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    type=click.Path(),
    metavar="FILE.py",
    expose_value=False,
    callback=_plugin_callback,
    help="Your own NumPy code for a custom layer or a Lambda whose code is not in the file (repeatable): "
    'a Python file whose functions are decorated with @lstm_parity.plugins.layer("ClassName") '
    "(README: Custom layers and Lambdas). Nothing from the model file is ever run.",
)


chunk_option = click.option(
    "--chunk-size",
    "chunk_size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stream INPUT N samples at a time (memory-mapped; peak memory follows N, not the file). "
    "Default: inputs over 32 MB stream in chunks of about 32 MB; smaller ones are read whole.",
)


def _console() -> Any:
    """A rich console when stdout is a terminal and NO_COLOR is unset, else None (plain text)."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return None
    from rich.console import Console

    return Console()


@cli.command(
    epilog="""\b
Examples:
  lstm-parity check model.h5 x.npy
  lstm-parity check model.keras x.npy --atol 1e-6 --json report.json
  lstm-parity check old_keras2.h5 x.npy --semantics keras3   # shows the hard_sigmoid change
  lstm-parity check model.h5 --samples 16 --seed 1            # inputs made from the config
  lstm-parity check model.h5 test_set.npy --chunk-size 20000   # any size: Keras fed the same chunks
  lstm-parity check model.keras x.npy --against model.onnx --against model.tflite   # gate the exports
  lstm-parity check model.keras x.npy --no-keras --against model_int8.tflite --profile int8
  lstm-parity check model.h5 x.npy --against tflm:m.tflite --against openvino:m.onnx --against hls4ml"""
    + "\n\n"
    + EXIT_CODES_HELP
)
@click.argument("model", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option(
    "--atol",
    multiple=True,
    default=("1e-5",),
    show_default=True,
    metavar="[OUTPUT:]ATOL",
    help="Absolute tolerance; repeat as OUTPUT:ATOL to override it for one output (--atol dense_1:1e-4).",
)
@click.option(
    "--rtol",
    multiple=True,
    default=("1e-5",),
    show_default=True,
    metavar="[OUTPUT:]RTOL",
    help="Relative tolerance; OUTPUT:RTOL overrides it for one output.",
)
@dtype_option
@semantics_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Batch size for Keras model.predict (changes rounding at the last-bit level only).",
)
@click.option(
    "--expected",
    type=click.Path(),
    help="Outputs produced elsewhere (your port, another runtime): .npy for one output, .npz keyed by "
    "output name or y0, y1, ...; compared with the reference. Needs no TensorFlow with --no-keras.",
)
@click.option(
    "--against",
    "against",
    multiple=True,
    type=click.Path(),
    help="An exported model to gate as well (repeatable): .onnx runs in ONNX Runtime (extra [onnx]), "
    ".tflite in LiteRT (extra [tflite]), tflm:FILE.tflite in TFLite Micro (extra [tflm]), openvino:FILE "
    "(.onnx or IR .xml) in OpenVINO on the CPU (extra [openvino]); hls4ml or hls4ml:CONFIG.yml converts MODEL "
    "with hls4ml and runs its C++ emulation (extra [hls4ml], needs g++). Each export is compared with the "
    "reference, and run a second time (same session, no reset) to catch state carried between invocations. "
    "keras:jax (extra [jax]) or keras:tensorflow runs the model itself on that Keras 3 backend, in a child process.",
)
@click.option(
    "--profile",
    type=click.Choice(["float32", "float16", "bfloat16", "int8"]),
    help="The pass rule. float32: every element within atol/rtol (the default). float16, bfloat16 and "
    "int8, for reduced-precision or quantized exports: cosine, SNR and relative L2 thresholds measured "
    "on such exports (see the README). A .tflite with quantized weights defaults to int8, a model whose "
    "dtype policy is mixed_float16 (mixed_bfloat16) to float16 (bfloat16) for the Keras side.",
)
@click.option(
    "--require",
    "requires",
    multiple=True,
    metavar="[OUTPUT:]METRIC>=X",
    help="An extra rule (repeatable), e.g. 'dense:snr_db>=40' or 'top1>=0.99'. Metrics: max_abs, max_rel, "
    "mean_abs, cosine, snr_db, rel_l2, top1.",
)
@click.option(
    "--classes",
    is_flag=True,
    help="Every output's last axis holds class scores: also report top-1 agreement (automatic for softmax "
    "and sigmoid outputs).",
)
@click.option(
    "--allow-external-data",
    is_flag=True,
    help="Let an .onnx file load weights from external files in its own folder (refused by default).",
)
@click.option(
    "--tflm-arena",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Tensor arena for tflm:FILE exports, in bytes (default: sized automatically, from 10 x the file's "
    "size until the model allocates; the report says how many bytes the model used).",
)
@click.option(
    "--openvino-precision",
    type=click.Choice(["auto", "f32", "bf16", "f16"]),
    default="auto",
    show_default=True,
    help="The arithmetic OpenVINO compiles openvino:FILE exports for (INFERENCE_PRECISION_HINT). auto is what "
    "a deployment on this CPU gets: bf16 on CPUs with AVX512-BF16 or AMX. The report names what ran.",
)
@click.option("--no-keras", is_flag=True, help="Do not run Keras (no TensorFlow): only the reference, and --expected.")
@click.option(
    "--save-outputs",
    type=click.Path(file_okay=False),
    help="Write reference.npy/.npz (and keras.npy/.npz) into this folder, e.g. as a port's test data.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(allow_dash=True),
    help="Also write the report as JSON to this file ('-' for stdout instead of the text report).",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(),
    help="Also write a JUnit XML file: one testcase per output and comparison.",
)
@click.option(
    "--layerwise",
    is_flag=True,
    help="Also compare every layer's output with Keras' and report the first layer (and timestep) "
    "where they differ beyond the tolerance.",
)
@click.option(
    "--expected-trace",
    type=click.Path(),
    help="A port's own per-layer/per-step dump in the `lstm-parity trace` format (.npz or .json) for "
    "sample --sample: report the first layer, timestep and gate where it departs.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which sample --expected-trace describes.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the verdict line.")
@click.option(
    "--trust-model-code",
    is_flag=True,
    help="DANGEROUS: let Keras load Lambda layers, which runs Python code stored in the model file, "
    "and load Keras 3 files outside safe_mode. Only for files you made or fully trust.",
)
@chunk_option
@input_options
@plugin_option
def check(
    model: str,
    input_file: str | None,
    atol: tuple[str, ...],
    rtol: tuple[str, ...],
    dtype: str,
    semantics: str | None,
    batch_size: int,
    expected: str | None,
    against: tuple[str, ...],
    profile: str | None,
    requires: tuple[str, ...],
    classes: bool,
    allow_external_data: bool,
    tflm_arena: int | None,
    openvino_precision: str,
    no_keras: bool,
    save_outputs: str | None,
    json_path: str | None,
    junit_path: str | None,
    layerwise: bool,
    expected_trace: str | None,
    sample: int,
    quiet: bool,
    trust_model_code: bool,
    chunk_size: int | None,
    samples: int,
    seed: int,
    timesteps: int,
    value_range: str,
    save_inputs: str | None,
) -> None:
    """Compare the NumPy reference with Keras model.predict, with --expected outputs and with exported
    models (--against) on INPUT.

    MODEL is a .h5 or .keras file; INPUT a .npy of shape (batch, time, features), or
    (time, features) for one sample, or an .npz keyed by input name or x0, x1, ... for several
    inputs. Without INPUT, inputs are generated from the model's config (see --samples).
    Keras 1/2 files are run by tf_keras, Keras 3 files by Keras 3; the reference uses the
    same generation's math unless --semantics says otherwise. Passes when every element satisfies
    |other - reference| <= atol + rtol * |reference| and the weights we read are bit-identical to
    model.get_weights(). NaN in the same place on both sides counts as equal; elsewhere it fails.
    """
    from .check import CheckOptions, run_check
    from .cli_support import load_expected, parse_tolerance
    from .formats import open_model
    from .plugins import plugin_files
    from .profiles import parse_require
    from .runners.open import export_files, fixed_timesteps, open_export, refuse_unused_settings
    from .streaming import stream_check, worth_streaming

    refuse_unused_settings(against, tflm_arena, openvino_precision)  # a setting that would do nothing: exit 2
    files_against = [f for value in against for f in export_files(value)]  # an IR's .bin too; keras:jax: none
    protected = [model, *files_against] + [p for p in (input_file, expected, expected_trace) if p]
    protected += plugin_files()  # no report may overwrite the user's plugin code
    options = CheckOptions(
        semantics=semantics,
        dtype=dtype,
        tolerance=parse_tolerance(list(atol), list(rtol)),
        batch_size=batch_size,
        keras=not no_keras,
        trust_model_code=trust_model_code,
        profile=profile,
        rules=tuple(parse_require(text) for text in requires),
        classes=classes,
    )
    spec = open_model(model)
    whole_arrays = [
        name
        for name, used in (
            ("--layerwise", layerwise),
            ("--expected-trace", expected_trace),
            ("--save-outputs", save_outputs),
            ("--save-inputs", save_inputs),
        )
        if used
    ]
    if chunk_size and whole_arrays:
        raise BadInputError(
            f"{input_file}: --chunk-size streams INPUT and keeps no whole arrays; "
            f"{', '.join(whole_arrays)} need them (drop --chunk-size)"
        )
    exports = []
    try:
        for path in against:
            exports.append(
                open_export(
                    path,
                    spec,
                    allow_external_data,
                    batch_size=batch_size,
                    trust_model_code=trust_model_code,
                    tflm_arena=tflm_arena,
                    openvino_precision=openvino_precision,
                )
            )
        if worth_streaming(input_file, chunk_size) and not whole_arrays:
            report = stream_check(
                spec,
                input_file,
                options,
                expected_path=expected,
                exports=exports,
                chunk_rows=chunk_size,
                show_progress=not quiet,
            )
        else:
            timesteps = fixed_timesteps(exports) or timesteps  # an export with a fixed length sets it
            inputs = inputs_from_options(
                spec, input_file, samples, seed, timesteps, value_range, save_inputs, protected
            )
            expected_outputs = load_expected(spec, expected) if expected else None
            console = None if quiet or json_path == "-" else _console()
            status = console.status("computing the reference and running the other sides...") if console else None
            with status or contextlib.nullcontext():
                report = run_check(
                    spec,
                    inputs,
                    options,
                    expected=expected_outputs,
                    layerwise=layerwise,
                    expected_trace=(_load_trace(expected_trace), sample) if expected_trace else None,
                    exports=exports,
                )
    finally:
        for runner in exports:
            runner.close()
    code = EXIT_PASS if report.passed else EXIT_PARITY_FAILURE
    _emit_check(report, code, json_path, junit_path, quiet, protected)
    if save_outputs:
        _save_outputs(save_outputs, report, spec.output_names)
    if code:
        sys.exit(code)


def _load_trace(path: str) -> dict:
    """A trace written by `lstm-parity trace` (or a port in the same format): .npz or .json."""
    import numpy as np

    from .arrays import load_arrays

    if path.endswith(".json"):
        from .formats.safety import parse_json

        try:
            with open(path, "rb") as handle:
                data = parse_json(handle.read(), "trace JSON", path)
            return {k: np.asarray(v, dtype=np.float64) for k, v in data["values"].items()}
        except OSError as exc:
            raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"{path}: not an lstm-parity trace ({type(exc).__name__}: {exc})") from None
    loaded = load_arrays(path)
    if not isinstance(loaded, dict):
        raise BadInputError(f"{path}: a trace is an .npz (or .json) of named arrays, not a single array")
    return loaded


def _emit_check(
    report: Any, code: int, json_path: str | None, junit_path: str | None, quiet: bool, protected: list[str]
) -> None:
    from .report.json_report import render_check_json
    from .report.junit import render_junit
    from .report.text import render_check, verdict

    if json_path == "-":
        click.echo(render_check_json(report, code), nl=False)
    elif quiet:
        click.echo(verdict(report))
    else:
        console = _console()
        if console is None:
            click.echo(render_check(report), nl=False)
        else:
            from .report.rich_report import render_check_rich

            render_check_rich(report, console)
    if json_path and json_path != "-":
        write_text(json_path, render_check_json(report, code), protected)
    if junit_path:
        write_text(junit_path, render_junit([(report.spec.source, report, code, None)]), protected)


def _save_outputs(folder: str, report: Any, names: list[str]) -> None:
    from .arrays import save_outputs

    os.makedirs(folder, exist_ok=True)
    suffix = ".npy" if len(names) == 1 else ".npz"
    save_outputs(os.path.join(folder, "reference" + suffix), list(report.reference_outputs), names)
    if report.keras_outputs:
        save_outputs(os.path.join(folder, "keras" + suffix), list(report.keras_outputs), names)


@cli.command(
    epilog="""\b
Examples:
  lstm-parity predict model.h5 x.npy -o y.npy
  lstm-parity predict dump.json x.npy -o y.npy --dtype float32
  lstm-parity predict model.h5 huge.npy -o y.npy --chunk-size 50000   # bounded memory"""
)
@click.argument("model", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="Output file: .npy for one output, .npz (keys y0, y1, ... and output names) for several.",
)
@dtype_option
@semantics_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Batch size of predict; matters only for stateful models, whose states carry across batches.",
)
@chunk_option
@input_options
@plugin_option
def predict(
    model: str,
    input_file: str | None,
    output: str,
    dtype: str,
    semantics: str | None,
    batch_size: int,
    chunk_size: int | None,
    samples: int,
    seed: int,
    timesteps: int,
    value_range: str,
    save_inputs: str | None,
) -> None:
    """Run only the NumPy reference on INPUT and save its outputs (never imports TensorFlow).

    MODEL may be a .h5, a .keras or a JSON dump written by `lstm-parity dump`. Without INPUT,
    inputs are generated from the model's config (see --samples). An INPUT bigger than memory
    is fine: it is memory-mapped and computed --chunk-size samples at a time (a progress bar
    shows on a terminal), the outputs written as they come.
    """
    import numpy as np

    from .arrays import save_outputs
    from .atomicio import refuse_overwriting_inputs
    from .formats import open_model
    from .plugins import blame_plugins, plugin_files
    from .reference.forward import predict_batches
    from .streaming import stream_predict, worth_streaming

    protected = [model] + ([input_file] if input_file else []) + plugin_files()  # never overwrite the user's code
    refuse_overwriting_inputs(output, protected)
    spec = open_model(model)
    if chunk_size and save_inputs:
        raise BadInputError(
            f"{input_file}: --chunk-size streams INPUT; --save-inputs would copy it whole (drop one of them)"
        )
    if not save_inputs and worth_streaming(input_file, chunk_size):
        with blame_plugins(spec) as computed:
            stream_predict(
                spec, input_file, output, dtype=dtype, semantics=semantics, batch_size=batch_size, chunk_rows=chunk_size
            )
        echo_plugin_notes(computed)
        return
    inputs = inputs_from_options(spec, input_file, samples, seed, timesteps, value_range, save_inputs, protected)
    with blame_plugins(spec) as computed:  # a layer that cannot take a plugin's output: the plugin's failure (3)
        outputs = predict_batches(spec, inputs, semantics=semantics, dtype=np.dtype(dtype), batch_size=batch_size)
    save_outputs(output, outputs, spec.output_names)
    echo_plugin_notes(computed)


@cli.command(
    "check-all",
    epilog="""\b
Examples:
  lstm-parity check-all                         # [tool.lstm-parity] in ./pyproject.toml
  lstm-parity check-all models.toml --jobs 2 --junit parity.xml --json parity.json

\b
models.toml:
  [tool.lstm-parity]
  atol = 1e-5
  [[tool.lstm-parity.models]]
  path = "sample_models/tutorial.keras"
  input = "sample_models/tutorial.input.npy"
  [[tool.lstm-parity.models]]
  path = "exports/encoder.h5"
  samples = 16
  expected = "port/encoder_outputs.npz"
  atol = ["1e-5", "dense_1:1e-4"]"""
    + "\n\n"
    + EXIT_CODES_HELP,
)
@click.argument("config", required=False, type=click.Path())
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Check this many models at once, in separate processes.",
)
@click.option("--json", "json_path", type=click.Path(allow_dash=True), help="Write all reports as JSON ('-': stdout).")
@click.option("--junit", "junit_path", type=click.Path(), help="Write a JUnit XML file: one testsuite per model.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary verdict.")
def check_all(config: str | None, jobs: int, json_path: str | None, junit_path: str | None, quiet: bool) -> None:
    """Check every model listed in CONFIG (default: [tool.lstm-parity] in ./pyproject.toml).

    Each entry takes the same settings as `check` (input or samples/seed/timesteps/range, expected,
    atol, rtol, no_keras, semantics, dtype, batch_size, plugins: plugin files relative to the TOML file,
    trust_model_code: true lets Keras load that model's Lambda layers, DANGEROUS as --trust-model-code);
    top-level keys are defaults. Models run in parallel with --jobs; a model that fails or cannot be
    read never hides the others. The exit code is the worst of all models' exit codes.
    """
    from .check_all import load_jobs
    from .report.summary import render_summary, render_summary_rich, run_all, summary_json
    from .runners.open import export_files

    job_list = load_jobs(config)
    results = run_all(job_list, jobs, show_progress=not quiet and json_path != "-" and _console() is not None)
    code = max(result[2] for result in results)
    if json_path == "-":
        click.echo(summary_json(results, code), nl=False)
    else:
        console = None if quiet else _console()
        if console is None:
            click.echo(render_summary(results, code, quiet), nl=False)
        else:
            render_summary_rich(results, code, console)
    protected = [j.path for j in job_list]  # no report may overwrite a model, an input or an export
    protected += [str(p) for j in job_list for key in ("input", "expected") if (p := j.options.get(key))]
    protected += [f for j in job_list for p in j.options.get("against", []) for f in export_files(str(p))]
    protected += [str(p) for j in job_list for p in j.options.get("plugins", [])]
    if json_path and json_path != "-":
        write_text(json_path, summary_json(results, code), protected)
    if junit_path:
        from .report.junit import render_junit

        write_text(junit_path, render_junit(results), protected)
    if code:
        sys.exit(code)


@cli.command(
    epilog="""\b
Examples:
  lstm-parity inspect sample_models/tutorial.keras
  lstm-parity inspect model.h5 --json"""
)
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
@plugin_option
def inspect(model: str, as_json: bool) -> None:
    """Show MODEL's layers: class, output shape, parameters, the options that change the math, each
    recurrent weight explained gate by gate (kernel (3, 20) = [W_i | W_f | W_c | W_o], each (3, 5)),
    the Keras that saved it, the semantics used, and whether the reference supports each layer.
    Never imports TensorFlow."""
    import json as json_module

    from .formats import open_model
    from .inspect import inspect_model, render_inspection

    info = inspect_model(open_model(model))
    click.echo(json_module.dumps(info, indent=2) + "\n" if as_json else render_inspection(info), nl=False)


@cli.command(
    "trace",
    epilog="""\b
Examples:
  lstm-parity trace sample_models/tutorial.keras sample_models/tutorial.input.npy --sample 2
  lstm-parity trace model.h5 x.npy --layer lstm_1 -o trace.npz
\b
Keys written: "<layer>/output<k>" (the layer's k-th output for the sample) and, for recurrent
layers, "<layer>/<gate>" of shape (time, units) in processing order: LSTM i, f, c_hat, o, c, h;
GRU z, r, h_hat, h; SimpleRNN h (Bidirectional: "<layer>/forward/<gate>", "<layer>/backward/<gate>").""",
)
@click.argument("model", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True, help="Which sample to trace.")
@click.option("--layer", default=None, help="Only this layer.")
@click.option("-o", "--output", type=click.Path(), help="Write the trace: .npz, or .json (values as nested lists).")
@dtype_option
@semantics_option
@input_options
@plugin_option
def trace_command(
    model: str,
    input_file: str | None,
    sample: int,
    layer: str | None,
    output: str | None,
    dtype: str,
    semantics: str | None,
    samples: int,
    seed: int,
    timesteps: int,
    value_range: str,
    save_inputs: str | None,
) -> None:
    """Every timestep of every recurrent layer's gates and every layer's output, for one sample:
    printed as a table, or written (-o) so a port can dump the same values and compare them with
    `lstm-parity check MODEL INPUT --expected-trace PORT_TRACE`. Never imports TensorFlow."""
    import numpy as np

    from .formats import open_model
    from .plugins import blame_plugins, plugin_files
    from .trace import render_trace, trace

    protected = [model] + ([input_file] if input_file else []) + plugin_files()  # never overwrite the user's code
    spec = open_model(model)
    inputs = inputs_from_options(spec, input_file, samples, seed, timesteps, value_range, save_inputs, protected)
    with blame_plugins(spec) as computed:
        values = trace(spec, inputs, sample=sample, layer=layer, semantics=semantics, dtype=np.dtype(dtype))
    echo_plugin_notes(computed)
    if output is None:
        click.echo(render_trace(values), nl=False)
        return
    from .atomicio import refuse_overwriting_inputs

    refuse_overwriting_inputs(output, protected)
    if output.endswith(".json"):
        import json as json_module

        body = {
            "schema_version": 1,
            "model": spec.source,
            "sample": sample,
            "values": {k: v.tolist() for k, v in values.items()},
        }
        write_text(output, json_module.dumps(body) + "\n", protected)
    else:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **values)
        from .atomicio import atomic_write

        with atomic_write(output) as handle:
            handle.write(buffer.getvalue())


@cli.command(
    epilog="""\b
Examples:
  lstm-parity upgrade old_keras2.h5 new.keras
  lstm-parity upgrade old.h5 new.keras x.npy --atol 1e-6
\b
Exit 0: written and proven; 1: Keras 3 on the rewrite does not match (nothing written); 3: no exact
rewrite exists (e.g. an LSTM whose activation is hard_sigmoid, or a Keras 2 RNN given initial_state on
masked input, which Keras 3 runs unmasked): the message says by how much the naive conversion differs;
--allow-semantic-change writes it anyway and records the difference."""
)
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option(
    "--allow-semantic-change",
    is_flag=True,
    help="Write the file even where Keras 3 cannot compute the old math exactly (the report says how far).",
)
@click.option("--atol", multiple=True, default=("1e-5",), show_default=True, metavar="[OUTPUT:]ATOL")
@click.option("--rtol", multiple=True, default=("1e-5",), show_default=True, metavar="[OUTPUT:]RTOL")
@input_options
@plugin_option
def upgrade(
    old: str,
    new: str,
    input_file: str | None,
    allow_semantic_change: bool,
    atol: tuple[str, ...],
    rtol: tuple[str, ...],
    samples: int,
    seed: int,
    timesteps: int,
    value_range: str,
    save_inputs: str | None,
) -> None:
    """Rewrite OLD (any file the reader understands: Keras 1/2, tf.keras, CuDNN layers, ...) as a Keras 3
    NEW.keras that plain keras.models.load_model loads, compensating where Keras 3's math moved
    (hard_sigmoid gates are rescaled exactly), and prove it: Keras 3 predicts on generated inputs (and
    INPUT if given) and must match the reference of OLD under its own semantics, or nothing is written."""
    from .atomicio import refuse_overwriting_inputs
    from .cli_support import parse_tolerance
    from .formats import open_model
    from .plugins import blame_plugins
    from .upgrade import render_upgrade, run_upgrade

    if not new.endswith(".keras"):
        raise BadInputError(f"{new}: the upgraded model must be a .keras file")
    protected = [old] + ([input_file] if input_file else [])
    refuse_overwriting_inputs(new, protected)
    spec = open_model(old)
    inputs = inputs_from_options(
        spec, input_file, max(samples, 8), seed, timesteps, value_range, save_inputs, protected
    )
    with blame_plugins(spec):
        report = run_upgrade(spec, new, inputs, parse_tolerance(list(atol), list(rtol)), allow_semantic_change)
    console = _console()
    if console is None:
        click.echo(render_upgrade(report), nl=False)
    else:
        from .report.rich_report import render_upgrade_rich

        render_upgrade_rich(report, console)
    if not report.written:
        sys.exit(EXIT_PARITY_FAILURE)


def _register_commands() -> None:
    """Commands that live in their own modules (one job each)."""
    from .cli_export import export
    from .cli_port import dump, vectors

    for command in (dump, export, vectors):
        cli.add_command(plugin_option(command))


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="lstm-parity")
