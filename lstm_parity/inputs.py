"""Inputs made from the model when the user gives none: shapes from the config, token ids for
Embedding inputs, and padded sequences of varied lengths when the model masks, so the masking
path is really exercised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError
from .spec import ModelSpec


@dataclass(frozen=True)
class InputPlan:
    samples: int = 4
    seed: int = 0
    timesteps: int = 12
    low: float = -1.0
    high: float = 1.0


def _masking(spec: ModelSpec) -> tuple[str, float] | None:
    """("mask_zero", 0) or ("Masking", mask_value) when the model builds a mask, else None."""
    for layer in spec.layers:
        if layer.class_name == "Embedding" and layer.config.get("mask_zero"):
            return "mask_zero", 0.0
        if layer.class_name == "Masking":
            return "Masking", float(layer.config.get("mask_value", 0.0))
    return None


def generate_inputs(spec: ModelSpec, plan: InputPlan) -> list[np.ndarray]:
    """One array per model input: uniform floats in [low, high) (float32), or int32 token ids in
    [1, input_dim) for inputs that feed an Embedding. Unknown time axes get `plan.timesteps`;
    a fixed batch size (stateful models) rounds `plan.samples` up to a multiple of it. When the
    model masks, sample i is padded after a length drawn from [1, time] (the first sample is full).
    Raises BadInputError if a shape cannot be determined."""
    rng = np.random.default_rng(plan.seed)
    masking = _masking(spec)
    arrays = []
    for name, shape in zip(spec.input_names, spec.input_shapes, strict=True):
        batch = plan.samples
        if shape[0] is not None:
            batch = -(-plan.samples // shape[0]) * shape[0]
        dims = list(shape[1:])
        if dims and dims[0] is None:
            dims[0] = plan.timesteps
        known = [d for d in dims if d is not None]
        if len(known) != len(dims):
            raise BadInputError(f"{spec.source}: input {name!r} has unknown dimensions {shape}; pass an INPUT file")
        embedding = next((layer for layer in spec.consumers(name) if layer.class_name == "Embedding"), None)
        if embedding is not None:
            x = rng.integers(1, int(embedding.config["input_dim"]), size=(batch, *known)).astype(np.int32)
        else:
            x = rng.uniform(plan.low, plan.high, size=(batch, *known)).astype(np.float32)
        if masking is not None and x.ndim >= 2 and dims:
            time = x.shape[1]
            lengths = rng.integers(1, time + 1, size=batch)
            lengths[0] = time
            pad = masking[1] if masking[0] == "Masking" and embedding is None else 0
            for i, length in enumerate(lengths):
                x[i, length:] = pad
        arrays.append(x)
    return arrays


def parse_range(text: str) -> tuple[float, float]:
    """'LO,HI' -> (LO, HI); raises BadInputError unless LO < HI."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise BadInputError(f"--range {text!r}: expected LO,HI such as -1,1") from None
    if not low < high:
        raise BadInputError(f"--range {text!r}: LO must be below HI")
    return low, high
