"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot, and Keras 1's
`Merge` (modes sum, mul, ave, max, concat, dot, cos).

Output masks differ by generation: Keras 2 ANDs the masks it has, Keras 3 ORs them (and a merge
of a masked with an unmasked input has no mask). Keras 1 ANDs them, like Keras 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..spec import LayerSpec
from .layers import PLUGIN_HINT, Context, LayerFn, LayerResult, register, unsupported_option, where

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
        return LayerResult(
            [np.concatenate(inputs, axis=axis)], [_concatenated_mask(inputs, masks, axis, ctx.semantics)]
        )

    return run


def _concatenated_mask(inputs: list[np.ndarray], masks: list, axis: int, semantics: str) -> np.ndarray | None:
    """Keras broadcasts each mask (ones where absent) to its input, concatenates, then reduces the
    last axis: all() in Keras 1/2, any() in Keras 3."""
    if all(m is None for m in masks):
        return None
    full = [
        np.broadcast_to(m[..., None] if m is not None and m.ndim < x.ndim else (m if m is not None else True), x.shape)
        for m, x in zip(masks, inputs, strict=True)
    ]
    joined = np.concatenate(full, axis=axis)
    return np.all(joined, axis=-1) if semantics == "keras2" else np.any(joined, axis=-1)


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
        return LayerResult([batch_dot(x, y, (ax, ay))], [None])

    return run


def batch_dot(x: np.ndarray, y: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """Per sample, contract axis axes[0] of x with axis axes[1] of y (both >= 1): the remaining axes
    of x, then those of y; (batch, 1) for two vectors, as Keras' batch_dot returns."""
    xm = np.moveaxis(x, axes[0], -1)  # (batch, X..., k)
    ym = np.moveaxis(y, axes[1], 1)  # (batch, k, Y...)
    batch, k = xm.shape[0], xm.shape[-1]
    out = xm.reshape(batch, -1, k) @ ym.reshape(batch, k, -1)  # (batch, P, Q)
    out = out.reshape((batch, *xm.shape[1:-1], *ym.shape[2:]))
    return out[:, None] if out.ndim == 1 else out


KERAS1_MODES = ("sum", "mul", "ave", "max", "concat", "dot", "cos")
KERAS1_REDUCE: dict[str, Callable[..., np.ndarray]] = {"sum": np.sum, "mul": np.prod, "ave": np.mean, "max": np.max}
KERAS1_EPSILON = 1e-7  # K.epsilon(), which Keras 1's cos mode floors the norm product's root at


@register("Merge", options=("mode", "concat_axis", "dot_axes"), defaults={"concat_axis": -1, "dot_axes": -1})
def build_keras1_merge(layer: LayerSpec, ctx: Context) -> LayerFn:
    """Keras 1's `Merge` layer (and the 2.0 legacy one): the merge layers of Keras 2 in one class.

    sum/mul/ave/max are elementwise; concat joins on `concat_axis`; dot is batch_dot over `dot_axes`;
    cos is dot / max(sqrt(dot(x, x) * dot(y, y)), 1e-7) with a new axis 1 (Keras 1 adds it:
    (batch, 1, 1) for two vectors). Masks: AND for the elementwise modes, Concatenate's rule for
    concat, none for dot and cos.
    """
    mode = layer.config.get("mode", "sum")
    if layer.config.get("mode_type", "raw") != "raw" or not isinstance(mode, str):
        raise UnsupportedError(
            f"{where(ctx, layer)}: a Merge with a Python function as its mode is code; {PLUGIN_HINT}"
        )
    if mode not in KERAS1_MODES:
        raise unsupported_option(ctx, layer, "mode", mode, ", ".join(KERAS1_MODES))
    concat_axis = int(layer.config.get("concat_axis", -1))
    dot_axes = _keras1_dot_axes(layer.config.get("dot_axes", -1), layer, ctx)

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        if mode in ("dot", "cos"):
            x, y = inputs
            if max(x.ndim, y.ndim) > 3:
                raise UnsupportedError(f"{where(ctx, layer)}: Merge mode {mode!r} on inputs of more than 3 axes")
            axes = (dot_axes[0] % x.ndim, dot_axes[1] % y.ndim)
            if 0 in axes:
                raise ValueError("dot_axes cannot contract the batch axis")
            out = batch_dot(x, y, axes)
            if mode == "cos":  # Keras 1 contracts each input with itself over the same pair of axes
                norms = np.sqrt(batch_dot(x, x, axes) * batch_dot(y, y, axes))
                out = np.expand_dims(out / np.maximum(norms, KERAS1_EPSILON), 1)
            return LayerResult([out], [None])
        if mode == "concat":
            out = np.concatenate(inputs, axis=concat_axis)
            return LayerResult([out], [_concatenated_mask(inputs, masks, concat_axis, "keras2")])
        stacked = np.stack(np.broadcast_arrays(*inputs))  # (inputs, batch, ...)
        return LayerResult([KERAS1_REDUCE[mode](stacked, axis=0)], [_merged_mask(masks, "keras2")])

    return run


def _keras1_dot_axes(value: Any, layer: LayerSpec, ctx: Context) -> tuple[int, int]:
    """Keras 1 `dot_axes`: one int for both inputs (negative counts from each input's end), a pair
    [a, b], or Keras 0.x/1.0's pair of axis lists [[a], [b]] (one axis each: several are refused)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if any(isinstance(v, (list, tuple)) and len(v) > 1 for v in value):
            raise unsupported_option(ctx, layer, "dot_axes", value, "one axis per input")
        pair = [v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v for v in value]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
            return int(pair[0]), int(pair[1])
    elif isinstance(value, int) and not isinstance(value, bool):
        return value, value
    raise BadInputError(f"{where(ctx, layer)}: malformed dot_axes {value!r}")
