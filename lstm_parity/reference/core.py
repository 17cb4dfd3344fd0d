"""Core and neighbouring layers at inference: Dense, activations, identities, Embedding, Masking,
shape layers, normalization, TimeDistributed."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError
from ..spec import LayerSpec
from .activations import Activation, get_activation
from .layers import (
    Context,
    LayerFn,
    LayerResult,
    build_layer,
    check_width,
    child,
    register,
    take_weights,
    unsupported_option,
    where,
)


def _passing(fn):
    """A layer function of one input whose output keeps the input's mask."""
    return lambda inputs, masks: LayerResult([fn(inputs[0])], masks[:1])


def _dropping(fn):
    """A layer function of one input that Keras gives no output mask."""
    return lambda inputs, masks: LayerResult([fn(inputs[0])], [None])


@register("Dense", options=("units", "activation", "use_bias"), defaults={"use_bias": True, "activation": None})
def build_dense(layer: LayerSpec, ctx: Context) -> LayerFn:
    kernel, bias, activation = dense_parts(layer, ctx)

    def run(x: np.ndarray) -> np.ndarray:  # (..., features) -> (..., units)
        check_width(layer, ctx, x, kernel.shape[0])
        y = x @ kernel  # (..., units)
        if bias is not None:
            y += bias
        return activation(y)

    return _passing(run)


def dense_parts(layer: LayerSpec, ctx: Context) -> tuple[np.ndarray, np.ndarray | None, Activation]:
    """A Dense layer's kernel (features, units), bias (units,) or None, and activation, checked."""
    units = int(layer.config["units"])
    use_bias = layer.config.get("use_bias", True)
    activation = get_activation(layer.config.get("activation"), ctx.semantics, where(ctx, layer))
    weights = take_weights(layer, ctx, [(None, units)] + ([(units,)] if use_bias else []))
    return weights[0], (weights[1] if use_bias else None), activation


@register("Activation", options=("activation",))
def build_activation(layer: LayerSpec, ctx: Context) -> LayerFn:
    return _passing(get_activation(layer.config.get("activation"), ctx.semantics, where(ctx, layer)))


@register(
    "ReLU",
    options=("max_value", "negative_slope", "threshold"),
    defaults={"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
)
def build_relu(layer: LayerSpec, ctx: Context) -> LayerFn:
    cfg = layer.config
    max_value, slope, threshold = (
        cfg.get("max_value"),
        float(cfg.get("negative_slope") or 0),
        float(cfg.get("threshold") or 0),
    )

    def run(x: np.ndarray) -> np.ndarray:
        y = np.where(x >= threshold, x, slope * (x - threshold))
        return np.minimum(y, max_value) if max_value is not None else y

    return _passing(run)


@register("LeakyReLU", options=("alpha", "negative_slope"))
def build_leaky_relu(layer: LayerSpec, ctx: Context) -> LayerFn:
    slope = layer.config.get("negative_slope", layer.config.get("alpha"))  # Keras 3 / Keras 2 name
    slope = 0.3 if slope is None else float(slope)  # the layer's default in both generations
    return _passing(lambda x: np.where(x >= 0, x, slope * x))


@register("ELU", options=("alpha",), defaults={"alpha": 1.0})
def build_elu(layer: LayerSpec, ctx: Context) -> LayerFn:
    alpha = float(layer.config.get("alpha", 1.0))
    return _passing(lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))))


@register("Softmax", options=("axis",), defaults={"axis": -1})
def build_softmax(layer: LayerSpec, ctx: Context) -> LayerFn:
    axis = layer.config.get("axis", -1)

    def run(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    return _passing(run)


@register(
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
)
def build_identity(layer: LayerSpec, ctx: Context) -> LayerFn:
    """Regularizers do nothing at inference; they keep the mask."""
    return _passing(lambda x: x)


@register("Embedding", options=("input_dim", "output_dim", "mask_zero"), defaults={"mask_zero": False})
def build_embedding(layer: LayerSpec, ctx: Context) -> LayerFn:
    input_dim, output_dim = int(layer.config["input_dim"]), int(layer.config["output_dim"])
    (embeddings,) = take_weights(layer, ctx, [(input_dim, output_dim)])  # (input_dim, output_dim)
    mask_zero = bool(layer.config.get("mask_zero", False))

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x = inputs[0]  # (batch, time) token ids
        ids = x.astype(np.int64)
        if x.dtype.kind == "f" and not np.array_equal(ids, x):
            raise BadInputError(f"{where(ctx, layer)}: expects integer token ids, got non-integer values")
        if ids.size and (ids.min() < 0 or ids.max() >= input_dim):
            raise BadInputError(
                f"{where(ctx, layer)}: token ids must be in [0, {input_dim}), got values in [{ids.min()}, {ids.max()}]"
            )
        return LayerResult([embeddings[ids]], [ids != 0 if mask_zero else None])  # (batch, time, output_dim)

    return run


@register("Masking", options=("mask_value",), defaults={"mask_value": 0.0})
def build_masking(layer: LayerSpec, ctx: Context) -> LayerFn:
    mask_value = float(layer.config.get("mask_value", 0.0))

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        keep = np.any(inputs[0] != mask_value, axis=-1)  # (batch, time)
        return LayerResult([inputs[0] * keep[..., None]], [keep])

    return run


def _channels_last(layer: LayerSpec, ctx: Context) -> None:
    data_format = layer.config.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise unsupported_option(ctx, layer, "data_format", data_format, "channels_last")


@register("Flatten", options=("data_format",))
def build_flatten(layer: LayerSpec, ctx: Context) -> LayerFn:
    _channels_last(layer, ctx)
    return _dropping(lambda x: x.reshape(x.shape[0], -1))


@register("Reshape", options=("target_shape",))
def build_reshape(layer: LayerSpec, ctx: Context) -> LayerFn:
    target = tuple(-1 if d is None else int(d) for d in layer.config["target_shape"])
    return _dropping(lambda x: x.reshape((x.shape[0], *target)))


@register("Permute", options=("dims",))
def build_permute(layer: LayerSpec, ctx: Context) -> LayerFn:
    dims = tuple(int(d) for d in layer.config["dims"])
    return _dropping(lambda x: np.transpose(x, (0, *dims)))


@register("RepeatVector", options=("n",))
def build_repeat_vector(layer: LayerSpec, ctx: Context) -> LayerFn:
    n = int(layer.config["n"])
    return _dropping(lambda x: np.repeat(x[:, None, :], n, axis=1))  # (batch, n, features)


def _axes(value: Any) -> tuple[int, ...]:
    return tuple(int(a) for a in (value if isinstance(value, (list, tuple)) else [value]))


def _broadcast_param(param: np.ndarray, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Place a parameter of shape x.shape[axes] so that it broadcasts against x."""
    shape = [1] * x.ndim
    for axis in axes:
        shape[axis % x.ndim] = x.shape[axis]
    return param.reshape(shape)


@register(
    "BatchNormalization",
    options=("axis", "epsilon", "center", "scale"),
    defaults={"axis": -1, "epsilon": 1e-3, "center": True, "scale": True},
)
def build_batch_norm(layer: LayerSpec, ctx: Context) -> LayerFn:
    cfg = layer.config
    axes = _axes(cfg.get("axis", -1))
    epsilon = float(cfg.get("epsilon", 1e-3))
    center, scale = cfg.get("center", True), cfg.get("scale", True)
    count = int(scale) + int(center) + 2
    size = layer.weights[-1].shape if layer.weights else (None,)
    weights = take_weights(layer, ctx, [size] * count)
    gamma = weights[0] if scale else None
    beta = weights[int(scale)] if center else None
    moving_mean, moving_variance = weights[-2], weights[-1]

    def run(x: np.ndarray) -> np.ndarray:
        def p(v):
            return _broadcast_param(v, x, axes)

        y = (x - p(moving_mean)) / np.sqrt(p(moving_variance) + epsilon)
        if gamma is not None:
            y = y * p(gamma)
        if beta is not None:
            y = y + p(beta)
        return y

    return _passing(run)


@register(
    "LayerNormalization",
    options=("axis", "epsilon", "center", "scale", "rms_scaling"),
    defaults={"axis": -1, "epsilon": 1e-3, "center": True, "scale": True, "rms_scaling": False},
)
def build_layer_norm(layer: LayerSpec, ctx: Context) -> LayerFn:
    cfg = layer.config
    axes = _axes(cfg.get("axis", -1))
    epsilon = float(cfg.get("epsilon", 1e-3))
    center, scale, rms = cfg.get("center", True), cfg.get("scale", True), bool(cfg.get("rms_scaling", False))
    count = int(scale) + int(center)
    size = layer.weights[0].shape if layer.weights else (None,)
    weights = take_weights(layer, ctx, [size] * count)
    gamma = weights[0] if scale else None
    beta = weights[int(scale)] if center else None

    def run(x: np.ndarray) -> np.ndarray:
        reduce = tuple(a % x.ndim for a in axes)
        if rms:
            y = x / np.sqrt(np.mean(x * x, axis=reduce, keepdims=True) + epsilon)
        else:
            mean = np.mean(x, axis=reduce, keepdims=True)
            variance = np.mean((x - mean) ** 2, axis=reduce, keepdims=True)
            y = (x - mean) / np.sqrt(variance + epsilon)
        if gamma is not None:
            y = y * _broadcast_param(gamma, x, axes)
        if beta is not None and not rms:
            y = y + _broadcast_param(beta, x, axes)
        return y

    return _passing(run)


@register("TimeDistributed", options=("layer",))
def build_time_distributed(layer: LayerSpec, ctx: Context) -> LayerFn:
    inner = build_layer(child(layer, "inner", layer.config["layer"], layer.weights, ctx), ctx)

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x = inputs[0]  # (batch, time, ...)
        batch, time = x.shape[:2]
        result = inner([x.reshape((batch * time, *x.shape[2:]))], [None])
        y = result.outputs[0]  # (batch*time, ...)
        return LayerResult([y.reshape((batch, time, *y.shape[1:]))], masks[:1])

    return run
