"""Keras' MultiHeadAttention at inference.

    q = query @ W_q + b_q       # (batch, Tq, heads, key_dim)     (EinsumDense "abc,cde->abde")
    k = key   @ W_k + b_k       # (batch, S, heads, key_dim)
    v = value @ W_v + b_v       # (batch, S, heads, value_dim)
    scores  = (q / sqrt(key_dim)) . k over key_dim           # (batch, heads, Tq, S)
    weights = masked_softmax(scores, mask) over the key steps
    context = weights . v                                      # (batch, Tq, heads, value_dim)
    output  = context @ W_o + b_o over (heads, value_dim)      # (batch, Tq, *output_shape)

`attention_axes` generalizes the time axis to any non-batch, non-feature axes of a higher-rank query.
Keras 3.14+'s `use_gate` multiplies the context by `sigmoid(query @ W_g + b_g)` before W_o. The mask
is the AND of the query's (batch, Tq, 1), value's and key's (batch, 1, S) Keras masks (tf.keras 2.10+
and Keras 3; tf.keras 2.4-2.9 ignored them), the causal and sliding-window masks (1, Tq, S) and the
`attention_mask` argument; how masked scores are kept out of the softmax is `mha_rule` for the
saving Keras' version (attention_math.KERAS_ATTENTION). The weights are formats/layout.py's
`attention_weights`: query, key, [gate], value, output, each kernel then bias.
"""

from __future__ import annotations

import math
import string
from typing import Any

import numpy as np

from ..errors import BadInputError
from ..formats.layout import attention_weights
from ..spec import LayerSpec
from .attention_checks import compute_dtype, flag, refuse_custom, refuse_training_dropout, versions
from .attention_math import KerasAttention, causal_mask, masked_softmax, merge_masks, mha_rule, sliding_window_mask
from .layers import Call, Context, LayerResult, Mask, check_width, register, take_weights, unsupported_option, where


def attention_equations(rank: int, axes: tuple[int, ...]) -> tuple[str, str]:
    """einsum equations for projected tensors of `rank` (batch, ..., heads, channels) attending over `axes`:
    (key, query) -> scores laid out (batch dims and heads, query axes, key axes), and (scores, value) -> context."""
    letters = string.ascii_lowercase
    target = letters[:rank]  # the query's (and the context's) axes
    source = list(target)  # the key's/value's: new letters on the attended axes
    for offset, axis in enumerate(axes):
        source[axis] = letters[rank + offset]
    key_axes = "".join(source)
    kept = "".join(target[i] for i in range(rank - 1) if i not in axes)  # batch, other axes, heads
    scores = kept + "".join(target[i] for i in axes) + "".join(key_axes[i] for i in axes)
    return f"{key_axes},{target}->{scores}", f"{scores},{key_axes}->{target}"


def _positive_int(layer: LayerSpec, ctx: Context, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadInputError(f"{where(ctx, layer)}: option {name}={value!r} is not a positive integer")
    return value


def _dims(layer: LayerSpec, ctx: Context, name: str, value: Any) -> tuple[int, ...] | None:
    """An int or list option (output_shape, attention_axes) as a tuple; None/empty -> None."""
    if value is None or value == [] or value == ():
        return None
    items = [value] if isinstance(value, int) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise BadInputError(f"{where(ctx, layer)}: option {name}={value!r} is not an integer or a list of integers")
    return tuple(items)


@register(
    "MultiHeadAttention",
    options=(
        "num_heads",
        "key_dim",
        "value_dim",
        "use_bias",
        "output_shape",
        "attention_axes",
        "dropout",
        "use_gate",
        "sliding_window",
        "softmax_robust_masking",
    ),
    defaults={"value_dim": None, "use_bias": True, "output_shape": None, "attention_axes": None, "dropout": 0.0},
    call_kwargs=True,
)
def build_multi_head_attention(layer: LayerSpec, ctx: Context):
    """Keras' MultiHeadAttention: check the config and the eight (four without biases; ten or five with
    use_gate) weight arrays, and return the call function (see the module docstring)."""
    config = layer.config
    refuse_custom(layer, ctx, None, (2, 3), QKV)  # the weights are checked below, once dims are known
    _positive_int(layer, ctx, "num_heads", config["num_heads"])
    key_dim = _positive_int(layer, ctx, "key_dim", config["key_dim"])
    _positive_int(layer, ctx, "value_dim", config.get("value_dim") or key_dim)
    flag(layer, ctx, "use_bias", config.get("use_bias", True))
    use_gate = flag(layer, ctx, "use_gate", config.get("use_gate", False))
    robust = flag(layer, ctx, "softmax_robust_masking", config.get("softmax_robust_masking", False))
    _dims(layer, ctx, "output_shape", config.get("output_shape"))
    axes = _dims(layer, ctx, "attention_axes", config.get("attention_axes"))
    if axes is not None and min(axes) < 1:
        # Keras versions disagree on what a negative axis means (python indexing vs. input axes).
        raise unsupported_option(ctx, layer, "attention_axes", config.get("attention_axes"), "axes >= 1")
    window = config.get("sliding_window")
    window = None if window is None else _positive_int(layer, ctx, "sliding_window", window)
    dropout = float(config.get("dropout", 0.0) or 0.0)

    slots = attention_weights(layer.class_name, config) or ()
    shapes = [slot.shape for slot in slots]
    refuse_custom(layer, ctx, shapes, None)
    projections: dict[str, list[np.ndarray]] = {}  # "query" -> [kernel (features, heads, key_dim), bias]
    for slot, array in zip(slots, take_weights(layer, ctx, shapes), strict=True):
        projections.setdefault(slot.name.rsplit("_", 1)[0], []).append(array)
    dtype = compute_dtype(layer)
    keras = versions(ctx)
    inverse_sqrt_key_dim = 1.0 / math.sqrt(float(key_dim))

    def project(name: str, x: np.ndarray, bound: int = 1) -> np.ndarray:
        kernel, *bias = projections[name]
        check_width(layer, ctx, x, kernel.shape[0], axis=-bound)
        y = np.tensordot(x, kernel, axes=bound)  # (batch, ..., heads, dim) or (batch, ..., *output_shape)
        return y + bias[0] if bias else y

    def run(inputs: list[np.ndarray], masks: list[Mask], call: Call) -> LayerResult:
        refuse_training_dropout(layer, ctx, call, dropout)
        query, value, key, query_mask, value_mask, key_mask = _operands(layer, ctx, inputs, masks, call)
        causal = bool(call.kwargs.get("use_causal_mask", False))
        want_scores = bool(call.kwargs.get("return_attention_scores", False))
        rank = query.ndim + 1  # of the projected tensors
        attended = axes if axes is not None else tuple(range(1, rank - 2))
        if max(attended) > rank - 3:
            raise BadInputError(
                f"{where(ctx, layer)}: attention_axes {attended} do not fit a query of rank {query.ndim}"
            )
        if not keras.mha_input_masks:  # tf.keras 2.4-2.9: no masking support, the output has no mask
            query_mask = value_mask = key_mask = None
        keep = _attention_keep(keras, query, value, query_mask, value_mask, key_mask, call, causal, window)
        fused = keras.mha_fused and dropout == 0 and not want_scores and rank == 4
        rule = mha_rule(keras, dtype, robust, fused)
        q = project("query", query) * inverse_sqrt_key_dim  # (batch, Tq, heads, key_dim)
        k = project("key", key)  # (batch, S, heads, key_dim)
        v = project("value", value)  # (batch, S, heads, value_dim)
        dot_equation, combine_equation = attention_equations(rank, attended)
        scores = np.einsum(dot_equation, k, q)  # (batch, heads, Tq, S)
        if keep is not None:
            for _ in range(scores.ndim - keep.ndim):
                keep = np.expand_dims(keep, axis=-2 * len(attended) - 1)  # (batch, 1, Tq, S)
        weights = masked_softmax(scores, keep, rule, tuple(range(-len(attended), 0)))  # (batch, heads, Tq, S)
        context = np.einsum(combine_equation, weights, v)  # (batch, Tq, heads, value_dim)
        if use_gate:
            context = context * (0.5 * (1 + np.tanh(0.5 * project("gate", query))))  # sigmoid gate
        output = project("output", context, bound=2)  # (batch, Tq, *output_shape)
        if want_scores:
            return LayerResult([output, weights], [query_mask, None])
        return LayerResult([output], [query_mask])

    return run


QKV = ("query", "value", "key")  # the tensors a call may pass by keyword


def _operands(layer: LayerSpec, ctx: Context, inputs: list[np.ndarray], masks: list[Mask], call: Call):
    """query, value, key and their Keras masks, wherever the saved call put them (tf.keras stores
    everything after the query as keywords; Keras 3 keeps positional ones positional, so
    `mha(query=q, value=v)` has no positional input at all)."""
    if inputs:
        query, query_mask = inputs[0], masks[0]
    elif "query" in call.tensors:
        query, query_mask = call.tensors["query"], call.tensor_masks.get("query")
    else:
        raise BadInputError(f"{where(ctx, layer)}: is called without a query tensor")
    if len(inputs) > 1:
        value, value_mask = inputs[1], masks[1]
    elif "value" in call.tensors:
        value, value_mask = call.tensors["value"], call.tensor_masks.get("value")
    else:
        raise BadInputError(f"{where(ctx, layer)}: is called without a value tensor")
    if len(inputs) > 2:
        key, key_mask = inputs[2], masks[2]
    elif "key" in call.tensors:
        key, key_mask = call.tensors["key"], call.tensor_masks.get("key")
    else:
        key, key_mask = value, None
    # Keras 3 takes explicit value_mask/key_mask arguments over the tensors' own masks (not query_mask).
    value_mask = call.tensors.get("value_mask", value_mask)
    key_mask = call.tensors.get("key_mask", key_mask)
    return query, value, key, query_mask, value_mask, key_mask


def _attention_keep(
    keras: KerasAttention,
    query: np.ndarray,
    value: np.ndarray,
    query_mask: Mask,
    value_mask: Mask,
    key_mask: Mask,
    call: Call,
    causal: bool,
    window: int | None,
) -> np.ndarray | None:
    """Which (query step, key step) pairs may attend: (batch, Tq, S), or None for all (where
    `keras.raw_attention_mask`, an attention_mask alone stays as given: see masked_softmax)."""
    tq, s = query.shape[1], value.shape[1]
    automatic = merge_masks(
        None if query_mask is None else np.expand_dims(query_mask.astype(bool), -1),  # (batch, Tq, 1)
        None if value_mask is None else np.expand_dims(value_mask.astype(bool), -2),  # (batch, 1, S)
        None if key_mask is None else np.expand_dims(key_mask.astype(bool), -2),  # (batch, 1, S)
        causal_mask(tq, s) if causal else None,  # (1, Tq, S)
        sliding_window_mask(tq, s, window) if window is not None else None,  # (1, Tq, S)
    )
    explicit = call.tensors.get("attention_mask")
    if explicit is None:
        return automatic
    if keras.raw_attention_mask and automatic is None:  # handed to the Softmax layer as it is
        return explicit if explicit.dtype == bool else explicit.astype(np.float64)
    return merge_masks(explicit.astype(bool), automatic)
