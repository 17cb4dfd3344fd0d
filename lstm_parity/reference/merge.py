"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot.

Output masks differ by generation: Keras 2 ANDs the masks it has, Keras 3 ORs them (and a merge
of a masked with an unmasked input has no mask).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec import LayerSpec
from .layers import Context, LayerFn, LayerResult, register

ELEMENTWISE = {
    "Add": lambda xs: np.sum(xs, axis=0),
    "Subtract": lambda xs: xs[0] - xs[1],
    "Multiply": lambda xs: np.prod(xs, axis=0),
    "Average": lambda xs: np.mean(xs, axis=0),
    "Maximum": lambda xs: np.max(xs, axis=0),
    "Minimum": lambda xs: np.min(xs, axis=0),
}


def _merged_mask(masks: list, semantics: str) -> np.ndarray | None:
    present = [m for m in masks if m is not None]
    if not present:
        return None
    if semantics == "keras3":
        return None if len(present) < len(masks) else np.logical_or.reduce(present)
    return np.logical_and.reduce(present)


@register(*ELEMENTWISE)
def build_elementwise(layer: LayerSpec, ctx: Context) -> LayerFn:
    op = ELEMENTWISE[layer.class_name]

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        return LayerResult([op(np.broadcast_arrays(*inputs))], [_merged_mask(masks, ctx.semantics)])

    return run


@register("Concatenate", options=("axis",), defaults={"axis": -1})
def build_concatenate(layer: LayerSpec, ctx: Context) -> LayerFn:
    axis = int(layer.config.get("axis", -1))

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        out = np.concatenate(inputs, axis=axis)
        mask = None
        if any(m is not None for m in masks):
            # Keras broadcasts each mask (ones where absent) to its input, concatenates, then reduces
            # the last axis: all() in Keras 2, any() in Keras 3.
            full = [
                np.broadcast_to(
                    m[..., None] if m is not None and m.ndim < x.ndim else (m if m is not None else True), x.shape
                )
                for m, x in zip(masks, inputs, strict=True)
            ]
            joined = np.concatenate(full, axis=axis)
            mask = np.all(joined, axis=-1) if ctx.semantics == "keras2" else np.any(joined, axis=-1)
        return LayerResult([out], [mask])

    return run


def _axes(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


@register("Dot", options=("axes", "normalize"), defaults={"normalize": False})
def build_dot(layer: LayerSpec, ctx: Context) -> LayerFn:
    axes = _axes(layer.config["axes"])
    normalize = bool(layer.config.get("normalize", False))

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x, y = inputs
        ax, ay = axes[0] % x.ndim, axes[1] % y.ndim
        if normalize:
            x = x / np.sqrt(np.maximum(np.sum(x * x, axis=ax, keepdims=True), 1e-12))
            y = y / np.sqrt(np.maximum(np.sum(y * y, axis=ay, keepdims=True), 1e-12))
        xm = np.moveaxis(x, ax, -1)  # (batch, X..., k)
        ym = np.moveaxis(y, ay, 1)  # (batch, k, Y...)
        batch, k = xm.shape[0], xm.shape[-1]
        out = xm.reshape(batch, -1, k) @ ym.reshape(batch, k, -1)  # (batch, P, Q)
        out = out.reshape((batch, *xm.shape[1:-1], *ym.shape[2:]))
        if out.ndim == 1:
            out = out[:, None]  # Keras' batch_dot returns (batch, 1) for vectors
        return LayerResult([out], [None])

    return run
