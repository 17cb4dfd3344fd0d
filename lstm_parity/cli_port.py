"""`dump` and `vectors`: what a porter needs, written without TensorFlow: the weights (JSON, .npz or a C
header) and golden test data (inputs, reference outputs, one sample's trace, suggested tolerances)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .cli_inputs import input_options, inputs_from_options, write_text
from .errors import BadInputError

SUFFIX_FORMATS = {".npz": "npz", ".h": "c", ".hpp": "c", ".json": "json"}


def c_type_option(help_text: str) -> Callable[[Any], Any]:
    """--c-type float|double, with the help of the command it is on."""
    return click.option(
        "--c-type",
        type=click.Choice(["float", "double"]),
        default="float",
        show_default=True,
        help=help_text,
    )


def _refuse_c_type_without_c(ctx: click.Context, fmt: str) -> None:
    if fmt != "c" and ctx.get_parameter_source("c_type") == click.core.ParameterSource.COMMANDLINE:
        raise BadInputError(f"--c-type applies to --format c, not {fmt}")


@click.command(
    epilog="""\b
Examples:
  lstm-parity dump model.h5                          # JSON on stdout
  lstm-parity dump model.keras -o model.json
  lstm-parity dump model.h5 --format c -o weights.h  # a C header (-o weights.h alone says the same)
  lstm-parity dump model.h5 -o weights.npz           # every array as <layer>/<weight>, plus W, U, b, Wout, bout"""
)
@click.argument("model", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write ('-' for stdout; .npz needs a file).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "npz", "c"]),
    default=None,
    help="json (the default), npz, or c (a C99/C++ header). Without it, -o's suffix decides (.npz, .h), else json.",
)
@c_type_option(
    "Element type of the C arrays (--format c). float32 weights are exact either way; float64 weights are "
    "rounded to float (the header says so) unless double."
)
@click.pass_context
def dump(ctx: click.Context, model: str, output: str, fmt: str | None, c_type: str) -> None:
    """Write MODEL's layers, math-changing options and weights (no TensorFlow needed).

    \b
    json: for an LSTM the kernel (x, 4h), recurrent_kernel (h, 4h) and bias (4h,) are also split into
      their i, f, c, o gate blocks; a model that is one LSTM followed by one Dense also gets a
      top-level "tutorial" block with W, U, b, Wout, bout. float32 values are written exactly and
      read back bit-identically (`lstm-parity predict dump.json ...`). Schema: README.md.
    npz: every weight array under "<layer>/<weight>", plus W, U, b, Wout, bout for the tutorial model.
    c: one header for any model: every array as `static const float NAME[...]`, #defines for every
      dimension, units, gate column offsets and activations (by Keras generation), the equations in
      a comment, and TUTORIAL_* names for the tutorial model. Literals read back bit-exactly.
    """
    from .formats import open_model
    from .plugins import plugin_files

    if fmt is None:
        fmt = next((f for suffix, f in SUFFIX_FORMATS.items() if output.lower().endswith(suffix)), "json")
    _refuse_c_type_without_c(ctx, fmt)
    if fmt == "npz" and output == "-":
        raise BadInputError("--format npz writes a binary file: give it a name with -o FILE.npz")
    spec = open_model(model)
    if fmt == "npz":
        from .atomicio import atomic_write, refuse_overwriting_inputs
        from .dump import render_npz

        refuse_overwriting_inputs(output, [model, *plugin_files()])
        data = render_npz(spec)
        with atomic_write(output) as handle:
            handle.write(data)
        return
    if fmt == "c":
        from .c_header import render_header

        text = render_header(spec, c_type)
    else:
        from .dump import render_dump

        text = render_dump(spec)
    if output == "-":
        click.echo(text, nl=False)
    else:
        write_text(output, text, [model, *plugin_files()])


@click.command(
    epilog="""\b
Examples:
  lstm-parity vectors model.h5 x.npy -o golden --format c     # golden/vectors.h + golden/inputs.npy
  lstm-parity vectors model.h5 -o golden --samples 16 --sample 3
  lstm-parity vectors model.keras x.npy -o golden --format npz
\b
Then gate the port on the same inputs:
  lstm-parity check model.h5 golden/inputs.npy --no-keras --expected port_out.npy \\
      --expected-trace port_trace.json --sample 3"""
)
@click.argument("model", type=click.Path())
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path())
@click.option(
    "-o",
    "--output",
    "folder",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write into (created if missing; its parent must exist): vectors.json / vectors.npz / "
    "vectors.h, and inputs.npy (inputs.npz for several inputs). Both files are written or neither.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "npz", "c"]),
    default="json",
    show_default=True,
    help="json, npz, or c (a header a test program includes).",
)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True, help="Which sample to trace.")
@c_type_option(
    "Element type of the C arrays (--format c): the float64 reference outputs and trace are rounded to "
    "float, or kept exactly with double. float32 inputs are exact either way."
)
@input_options
@click.pass_context
def vectors(
    ctx: click.Context,
    model: str,
    input_file: str | None,
    folder: str,
    fmt: str,
    sample: int,
    c_type: str,
    samples: int,
    seed: int,
    timesteps: int,
    value_range: str,
    save_inputs: str | None,
) -> None:
    """Write golden test data for a port of MODEL: the inputs (INPUT, or generated as `check` generates
    them), the float64 reference outputs, every gate and output of one sample at every timestep (the
    keys of `lstm-parity trace`), and suggested tolerances: 10x how far the float32 reference is from
    the float64 one, at least 1e-6. Never imports TensorFlow."""
    from .formats import open_model
    from .vectors import golden_vectors, write_vectors

    _refuse_c_type_without_c(ctx, fmt)
    from .cli import echo_plugin_notes
    from .plugins import blame_plugins, plugin_files

    protected = [model] + ([input_file] if input_file else []) + plugin_files()
    spec = open_model(model)
    inputs = inputs_from_options(spec, input_file, samples, seed, timesteps, value_range, save_inputs, protected)
    with blame_plugins(spec) as computed:  # a layer that cannot take a plugin's output is the plugin's failure
        golden = golden_vectors(spec, inputs, sample=sample)
    echo_plugin_notes(computed)
    written = write_vectors(golden, folder, fmt, c_type, protected)
    click.echo(
        f"wrote {' and '.join(written)}: {inputs[0].shape[0]} samples, reference outputs, the trace of sample "
        f"{sample} ({len(golden.trace)} keys)"
    )
    worst = max(golden.float32_diff.values(), default=0.0)
    click.echo(
        f"suggested tolerance: check --atol {golden.check_atol:g} (one --atol covers outputs and trace: the "
        f"larger of {golden.output_atol:g} for the outputs and {golden.trace_atol:g} for the trace; the float32 "
        f"reference is within {worst:.2g} of the float64 one on the outputs, {golden.trace_float32_diff:.2g} on "
        "the trace)"
    )
