"""What commands share about their inputs and text outputs: the options that make inputs from the
model's config when INPUT is omitted (`--samples`, `--seed`, `--timesteps`, `--range`, `--save-inputs`),
the inputs those options (or INPUT) give, and writing a text file that must not replace an input.

A module of its own so that command modules (cli_port.py, ...) can use it without importing cli.py,
which imports them."""

from __future__ import annotations

from typing import Any

import click
import numpy as np


def input_options(command: Any) -> Any:
    """INPUT is optional: without it, inputs are generated from the model's config."""
    options = [
        click.option(
            "--samples",
            type=click.IntRange(min=1),
            default=4,
            show_default=True,
            help="Without INPUT: how many sequences to generate.",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Without INPUT: random seed."),
        click.option(
            "--timesteps",
            type=click.IntRange(min=1),
            default=12,
            show_default=True,
            help="Without INPUT: length of sequences whose time axis the model leaves open.",
        ),
        click.option(
            "--range",
            "value_range",
            default="-1,1",
            show_default=True,
            metavar="LO,HI",
            help="Without INPUT: generated float values are uniform in [LO, HI). Inputs feeding an "
            "Embedding get token ids in [1, input_dim); masked models get padded sequences.",
        ),
        click.option(
            "--save-inputs",
            type=click.Path(),
            help="Write the inputs used (.npy, or .npz keyed x0, x1, ... for several inputs).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def inputs_from_options(
    spec: Any,
    input_path: str | None,
    samples: int,
    seed: int,
    timesteps: int,
    value_range: str,
    save_inputs: str | None,
    protected: list[str],
) -> list[np.ndarray]:
    """The inputs of a command with `input_options`: INPUT checked against the model, or generated from
    its config (float inputs rounded to float32, token ids integers); with --save-inputs also written
    there, never over a `protected` file. Raises BadInputError."""
    from .arrays import save_inputs as write_inputs
    from .cli_support import make_inputs

    inputs = make_inputs(spec, input_path, samples, seed, timesteps, value_range)
    if save_inputs:
        from .atomicio import refuse_overwriting_inputs

        refuse_overwriting_inputs(save_inputs, protected)
        write_inputs(save_inputs, inputs, spec.input_names)
    return inputs


def write_text(path: str, text: str, protected: list[str]) -> None:
    """Write `text` to `path` atomically (temp file + rename); raises BadInputError when `path` is one of
    the `protected` input files or cannot be written."""
    from .atomicio import atomic_write, refuse_overwriting_inputs

    refuse_overwriting_inputs(path, protected)
    with atomic_write(path, "w") as handle:
        handle.write(text)
