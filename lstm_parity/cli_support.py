"""Helpers shared by `check` and `check-all`: inputs, expected outputs, tolerance options."""

from __future__ import annotations

from typing import Any

import numpy as np

from .compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from .errors import BadInputError


def make_inputs(
    spec: Any, input_path: str | None, samples: int, seed: int, timesteps: int, value_range: str
) -> list[np.ndarray]:
    """The user's INPUT file checked against the model, or inputs generated from its config.

    Float inputs are rounded to float32 (what the model sees); token ids stay integers."""
    from .arrays import load_arrays, prepare_inputs
    from .inputs import InputPlan, generate_inputs, parse_range

    if input_path is not None:
        inputs = prepare_inputs(spec, load_arrays(input_path), input_path)
    else:
        low, high = parse_range(value_range)
        inputs = generate_inputs(spec, InputPlan(samples, seed, timesteps, low, high))
    return [x if x.dtype.kind in "iu" else np.asarray(x, dtype=np.float32) for x in inputs]


def load_expected(spec: Any, path: str) -> list[np.ndarray]:
    """Outputs produced elsewhere: `.npy` for one output, `.npz` keyed by output name or y0, y1, ..."""
    from .arrays import load_arrays

    loaded = load_arrays(path)
    return [np.asarray(a) for a in select_outputs(spec, loaded, path)]


def select_outputs(spec: Any, loaded: Any, path: str) -> list:
    """The model's outputs, in order, from a file's arrays (or row readers): by name, y0.., or alone."""
    names = spec.output_names
    if not isinstance(loaded, dict):
        if len(names) != 1:
            raise BadInputError(
                f"{path}: the model has {len(names)} outputs {names}; pass an .npz keyed by those "
                f"names or y0..y{len(names) - 1}"
            )
        return [loaded]
    if len(names) == 1 and len(loaded) == 1:
        return list(loaded.values())
    for keys in (names, [f"y{i}" for i in range(len(names))]):
        if all(k in loaded for k in keys):
            return [loaded[k] for k in keys]
    raise BadInputError(
        f"{path}: the model's outputs are {names}; the .npz must have those keys or "
        f"y0..y{len(names) - 1}, it has {sorted(loaded)}"
    )


def parse_tolerance(atols: list[str], rtols: list[str]) -> Tolerance:
    """`--atol 1e-5 --atol dense_1:1e-4` -> Tolerance with a default and per-output overrides."""

    def split(values: list[str], default: float, option: str) -> tuple[float, dict[str, float]]:
        overrides: dict[str, float] = {}
        for value in values:
            name, _, number = value.rpartition(":")
            try:
                parsed = float(number)
            except ValueError:
                raise BadInputError(f"{option} {value!r}: expected a number or OUTPUT:NUMBER") from None
            if not 0 <= parsed < float("inf"):  # NaN fails this too
                raise BadInputError(f"{option} {value!r}: must be a finite non-negative number")
            if name:
                overrides[name] = parsed
            else:
                default = parsed
        return default, overrides

    atol, atol_for = split(atols, DEFAULT_ATOL, "--atol")
    rtol, rtol_for = split(rtols, DEFAULT_RTOL, "--rtol")
    return Tolerance(atol, rtol, atol_for, rtol_for)
