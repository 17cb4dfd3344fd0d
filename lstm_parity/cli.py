"""The `lstm-parity` command: thin click commands that wire the library and map errors to exit codes."""
from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from . import __version__
from .errors import EXIT_PARITY_FAILURE, EXIT_PASS, LstmParityError

EXIT_INTERNAL = 5

EXIT_CODES_HELP = """\b
Exit codes:
  0  pass (check) / success
  1  parity failure: outputs differ beyond tolerance, or weights read differ from Keras'
  2  bad usage, or an unreadable/invalid model or input file
  3  the model uses a layer or option the reference does not implement
  4  the Keras side could not be imported, load the file, or predict
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
            click.echo(f"lstm-parity: internal error: {type(exc).__name__}: {exc} "
                       f"(re-run with --debug for the traceback)", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=ErrorMappingGroup, epilog=EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"]})
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
    "--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
    help="Precision of the NumPy reference. float32 mimics Keras' own arithmetic.")
semantics_option = click.option(
    "--semantics", type=click.Choice(["keras2", "keras3"]), default=None,
    help="Compute with this Keras generation's math instead of the one that saved the file "
         "(e.g. hard_sigmoid is clip(0.2x+0.5) in keras2, relu6(x+3)/6 in keras3).")


def input_options(command: Any) -> Any:
    """INPUT is optional: without it, inputs are generated from the model's config."""
    options = [
        click.option("--samples", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Without INPUT: how many sequences to generate."),
        click.option("--seed", type=int, default=0, show_default=True, help="Without INPUT: random seed."),
        click.option("--timesteps", type=click.IntRange(min=1), default=12, show_default=True,
                     help="Without INPUT: length of sequences whose time axis the model leaves open."),
        click.option("--range", "value_range", default="-1,1", show_default=True, metavar="LO,HI",
                     help="Without INPUT: generated float values are uniform in [LO, HI). Inputs feeding an "
                          "Embedding get token ids in [1, input_dim); masked models get padded sequences."),
        click.option("--save-inputs", type=click.Path(),
                     help="Write the inputs used (.npy, or .npz keyed x0, x1, ... for several inputs)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _inputs(spec: Any, input_path: str | None, samples: int, seed: int, timesteps: int, value_range: str,
            save_inputs: str | None, protected: list[str]) -> list:
    from .arrays import load_arrays, prepare_inputs, save_inputs as write_inputs
    from .inputs import InputPlan, generate_inputs, parse_range

    if input_path is not None:
        inputs = prepare_inputs(spec, load_arrays(input_path), input_path)
    else:
        low, high = parse_range(value_range)
        inputs = generate_inputs(spec, InputPlan(samples, seed, timesteps, low, high))
    if save_inputs:
        from .atomicio import refuse_overwriting_inputs
        refuse_overwriting_inputs(save_inputs, protected)
        write_inputs(save_inputs, inputs, spec.input_names)
    return inputs


@cli.command(epilog="""\b
Examples:
  lstm-parity check model.h5 x.npy
  lstm-parity check model.keras x.npy --atol 1e-6 --json report.json
  lstm-parity check old_keras2.h5 x.npy --semantics keras3   # shows the hard_sigmoid change
  lstm-parity check model.h5 --samples 16 --seed 1            # inputs made from the config""" + "\n\n" + EXIT_CODES_HELP)
@click.argument("model", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option("--atol", type=click.FloatRange(min=0), default=1e-5, show_default=True, help="Absolute tolerance.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-5, show_default=True, help="Relative tolerance.")
@dtype_option
@semantics_option
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Batch size for Keras model.predict (changes rounding at the last-bit level only).")
@click.option("--json", "json_path", type=click.Path(allow_dash=True),
              help="Also write the report as JSON to this file ('-' for stdout instead of the text report).")
@click.option("--no-keras", is_flag=True, help="Run only the reference (no TensorFlow); nothing is compared.")
@click.option("--trust-model-code", is_flag=True,
              help="DANGEROUS: let Keras load Lambda layers, which runs Python code stored in the model file, "
                   "and load Keras 3 files outside safe_mode. Only for files you made or fully trust.")
@input_options
def check(model: str, input_file: str | None, atol: float, rtol: float, dtype: str, semantics: str | None,
          batch_size: int, json_path: str | None, no_keras: bool, trust_model_code: bool, samples: int, seed: int,
          timesteps: int, value_range: str, save_inputs: str | None) -> None:
    """Compare the NumPy reference with Keras model.predict on INPUT.

    MODEL is a .h5 or .keras file; INPUT a .npy of shape (batch, time, features), or
    (time, features) for one sample, or an .npz keyed by input name or x0, x1, ... for several
    inputs. Without INPUT, inputs are generated from the model's config (see --samples). Keras 1/2 files are run by tf_keras, Keras 3 files by Keras 3; the reference uses the
    same generation's math unless --semantics says otherwise. Passes when every element satisfies
    |keras - reference| <= atol + rtol * |reference| and the weights we read are bit-identical to
    model.get_weights().
    """
    from .check import run_check
    from .formats import open_model
    from .report.json_report import render_check_json
    from .report.text import render_check

    spec = open_model(model)
    inputs = _inputs(spec, input_file, samples, seed, timesteps, value_range, save_inputs,
                     [model] + ([input_file] if input_file else []))
    report = run_check(spec, inputs, semantics=semantics, dtype=dtype, atol=atol, rtol=rtol,
                       batch_size=batch_size, keras=not no_keras, trust_model_code=trust_model_code)
    code = EXIT_PASS if report.passed else EXIT_PARITY_FAILURE
    if json_path == "-":
        click.echo(render_check_json(report, code), nl=False)
    else:
        click.echo(render_check(report), nl=False)
        if json_path:
            _write_text(json_path, render_check_json(report, code), [model, input_file])
    if code:
        sys.exit(code)


def _write_text(path: str, text: str, inputs: list[str]) -> None:
    from .atomicio import atomic_write, refuse_overwriting_inputs
    refuse_overwriting_inputs(path, inputs)
    with atomic_write(path, "w") as handle:
        handle.write(text)


@cli.command(epilog="""\b
Examples:
  lstm-parity dump model.h5                 # JSON on stdout
  lstm-parity dump model.keras -o model.json""")
@click.argument("model", type=click.Path())
@click.option("-o", "--output", type=click.Path(allow_dash=True), default="-",
              show_default=True, help="Where to write the JSON ('-' for stdout).")
def dump(model: str, output: str) -> None:
    """Write MODEL's layers, math-changing options and weights as JSON (no TensorFlow needed).

    For an LSTM the kernel (x, 4h), recurrent_kernel (h, 4h) and bias (4h,) are also split into
    their i, f, c, o gate blocks; a model that is one LSTM followed by one Dense also gets a
    top-level "tutorial" block with W, U, b, Wout, bout. float32 values are written exactly and
    read back bit-identically (`lstm-parity predict dump.json ...`). Schema: README.md.
    """
    from .dump import render_dump
    from .formats import open_model

    text = render_dump(open_model(model))
    if output == "-":
        click.echo(text, nl=False)
    else:
        _write_text(output, text, [model])


@cli.command(epilog="""\b
Examples:
  lstm-parity predict model.h5 x.npy -o y.npy
  lstm-parity predict dump.json x.npy -o y.npy --dtype float32""")
@click.argument("model", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output file: .npy for one output, .npz (keys y0, y1, ... and output names) for several.")
@dtype_option
@semantics_option
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Batch size of predict; matters only for stateful models, whose states carry across batches.")
@input_options
def predict(model: str, input_file: str | None, output: str, dtype: str, semantics: str | None, batch_size: int,
            samples: int, seed: int, timesteps: int, value_range: str, save_inputs: str | None) -> None:
    """Run only the NumPy reference on INPUT and save its outputs (never imports TensorFlow).

    MODEL may be a .h5, a .keras or a JSON dump written by `lstm-parity dump`. Without INPUT,
    inputs are generated from the model's config (see --samples).
    """
    import numpy as np

    from .arrays import save_outputs
    from .atomicio import refuse_overwriting_inputs
    from .formats import open_model
    from .reference.forward import predict_batches

    protected = [model] + ([input_file] if input_file else [])
    refuse_overwriting_inputs(output, protected)
    spec = open_model(model)
    inputs = _inputs(spec, input_file, samples, seed, timesteps, value_range, save_inputs, protected)
    inputs = [x if x.dtype.kind in "iu" else np.asarray(x, dtype=np.float32) for x in inputs]
    outputs = predict_batches(spec, inputs, semantics=semantics, dtype=np.dtype(dtype), batch_size=batch_size)
    save_outputs(output, outputs, spec.output_names)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="lstm-parity")
