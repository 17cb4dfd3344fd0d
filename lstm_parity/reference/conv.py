"""Convolution and pooling at inference (channels_last): Conv1D/2D, Max/AveragePooling 1D-3D,
global pooling. Written as sums over kernel taps of strided views: plain NumPy, no im2col copies
of the whole input."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..spec import LayerSpec
from .activations import get_activation
from .layers import Context, LayerFn, LayerResult, check_width, register, take_weights, unsupported_option, where


def _tuple(value: Any, rank: int) -> tuple[int, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    values = [int(v) for v in values]
    return tuple(values * rank if len(values) == 1 else values)


def _pad_amounts(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def _padded(
    x: np.ndarray,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: str,
    fill: float,
) -> np.ndarray:
    pads = (
        [(0, 0)]
        + [
            _pad_amounts(x.shape[1 + i], k, s, d, padding)
            for i, (k, s, d) in enumerate(zip(kernel, strides, dilation, strict=True))
        ]
        + [(0, 0)]
    )
    return np.pad(x, pads, constant_values=fill) if any(p != (0, 0) for p in pads) else x


def _out_sizes(
    x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]
) -> list[int]:
    return [
        (x.shape[1 + i] - ((k - 1) * d + 1)) // s + 1
        for i, (k, s, d) in enumerate(zip(kernel, strides, dilation, strict=True))
    ]


def _tap(x: np.ndarray, offset: tuple[int, ...], strides: tuple[int, ...], sizes: list[int]) -> np.ndarray:
    index = (slice(None),) + tuple(
        slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offset, strides, sizes, strict=True)
    )
    return x[index]  # (batch, *out_sizes, channels)


def convolve(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: str,
    groups: int = 1,
) -> np.ndarray:
    """N-D convolution (channels_last): x (batch, *spatial, in), kernel (*k, in/groups, out) -> (batch, *out, out)."""
    kernel_size = kernel.shape[:-2]
    per_group_in, filters = kernel.shape[-2], kernel.shape[-1]
    per_group_out = filters // groups
    x = _padded(x, kernel_size, strides, dilation, padding, 0.0)
    sizes = _out_sizes(x, kernel_size, strides, dilation)
    y = np.zeros((x.shape[0], *sizes, filters), dtype=np.result_type(x, kernel))  # (batch, *out, filters)
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        window = _tap(x, tuple(t * d for t, d in zip(tap, dilation, strict=True)), strides, sizes)  # (batch, *out, in)
        w = kernel[tap]  # (in / groups, filters)
        if groups == 1:
            y += window @ w
            continue
        for g in range(groups):
            y[..., g * per_group_out : (g + 1) * per_group_out] += (
                window[..., g * per_group_in : (g + 1) * per_group_in]
                @ w[:, g * per_group_out : (g + 1) * per_group_out]
            )
    return y


def _conv_options(layer: LayerSpec, ctx: Context, rank: int) -> tuple:
    cfg = layer.config
    data_format = cfg.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise unsupported_option(ctx, layer, "data_format", data_format, "channels_last")
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same") + (("causal",) if rank == 1 else ()):
        raise unsupported_option(ctx, layer, "padding", padding, "valid, same" + (", causal" if rank == 1 else ""))
    return (
        _tuple(cfg["kernel_size"], rank),
        _tuple(cfg.get("strides", 1), rank),
        _tuple(cfg.get("dilation_rate", 1), rank),
        padding,
        int(cfg.get("groups", 1) or 1),
    )


def _build_conv(layer: LayerSpec, ctx: Context, rank: int) -> LayerFn:
    kernel_size, strides, dilation, padding, groups = _conv_options(layer, ctx, rank)
    filters = int(layer.config["filters"])
    use_bias = layer.config.get("use_bias", True)
    activation = get_activation(layer.config.get("activation"), ctx.semantics, where(ctx, layer))
    weights = take_weights(layer, ctx, [(*kernel_size, None, filters)] + ([(filters,)] if use_bias else []))
    kernel = weights[0]  # (*kernel_size, in_channels / groups, filters)
    bias = weights[1] if use_bias else None

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x = inputs[0]  # (batch, *spatial, channels)
        check_width(layer, ctx, x, kernel.shape[-2] * groups)
        y = convolve(x, kernel, strides, dilation, padding, groups)  # (batch, *out, filters)
        if bias is not None:
            y += bias
        return LayerResult([activation(y)], [None])

    return run


@register(
    "Conv1D",
    options=(
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "dilation_rate",
        "groups",
        "activation",
        "use_bias",
        "data_format",
    ),
)
def build_conv1d(layer: LayerSpec, ctx: Context) -> LayerFn:
    return _build_conv(layer, ctx, 1)


@register(
    "Conv2D",
    options=(
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "dilation_rate",
        "groups",
        "activation",
        "use_bias",
        "data_format",
    ),
)
def build_conv2d(layer: LayerSpec, ctx: Context) -> LayerFn:
    return _build_conv(layer, ctx, 2)


def _build_pool(layer: LayerSpec, ctx: Context, rank: int, mode: str) -> LayerFn:
    cfg = layer.config
    data_format = cfg.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise unsupported_option(ctx, layer, "data_format", data_format, "channels_last")
    pool = _tuple(cfg.get("pool_size", 2), rank)
    strides = _tuple(cfg.get("strides") or pool, rank)
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise unsupported_option(ctx, layer, "padding", padding, "valid, same")
    ones = (1,) * rank

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x = inputs[0]  # (batch, *spatial, channels)
        if mode == "max":
            xp = _padded(x, pool, strides, ones, padding, -np.inf)
            sizes = _out_sizes(xp, pool, strides, ones)
            y = np.max([_tap(xp, tap, strides, sizes) for tap in itertools.product(*(range(p) for p in pool))], axis=0)
        else:  # average over the taps inside the input only, as TensorFlow's SAME padding does
            xp = _padded(x, pool, strides, ones, padding, 0.0)
            counts = _padded(np.ones((1, *x.shape[1:-1], 1), x.dtype), pool, strides, ones, padding, 0.0)
            sizes = _out_sizes(xp, pool, strides, ones)
            taps = list(itertools.product(*(range(p) for p in pool)))
            total = np.sum([_tap(xp, tap, strides, sizes) for tap in taps], axis=0)
            count = np.sum([_tap(counts, tap, strides, sizes) for tap in taps], axis=0)
            y = total / count
        return LayerResult([y], [None])

    return run


def _register_pools() -> None:
    for rank in (1, 2, 3):
        for mode, name in (("max", "MaxPooling"), ("avg", "AveragePooling")):

            def build(layer: LayerSpec, ctx: Context, rank: int = rank, mode: str = mode) -> LayerFn:
                return _build_pool(layer, ctx, rank, mode)

            register(f"{name}{rank}D", options=("pool_size", "strides", "padding", "data_format"))(build)


_register_pools()


def _build_global(layer: LayerSpec, ctx: Context, mode: str) -> LayerFn:
    data_format = layer.config.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise unsupported_option(ctx, layer, "data_format", data_format, "channels_last")
    keepdims = bool(layer.config.get("keepdims", False))

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x = inputs[0]  # (batch, *spatial, channels)
        axes = tuple(range(1, x.ndim - 1))
        mask = masks[0] if masks and mode == "avg" and x.ndim == 3 else None
        if mask is not None:  # GlobalAveragePooling1D averages over the unmasked steps only
            keep = mask[..., None].astype(x.dtype)  # (batch, time, 1)
            y = np.sum(x * keep, axis=1, keepdims=keepdims) / np.sum(keep, axis=1, keepdims=keepdims)
        elif mode == "avg":
            y = np.mean(x, axis=axes, keepdims=keepdims)
        else:
            y = np.max(x, axis=axes, keepdims=keepdims)
        return LayerResult([y], [None])

    return run


@register(
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", options=("data_format", "keepdims")
)
def build_global_average(layer: LayerSpec, ctx: Context) -> LayerFn:
    return _build_global(layer, ctx, "avg")


@register("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", options=("data_format", "keepdims"))
def build_global_max(layer: LayerSpec, ctx: Context) -> LayerFn:
    return _build_global(layer, ctx, "max")
