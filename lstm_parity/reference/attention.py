"""Keras' attention layers: Attention (Luong, dot or concat scores) and AdditiveAttention (Bahdanau);
MultiHeadAttention lives in multi_head_attention.py and registers through this module.

    scores  = score(query, key)                       # (batch, Tq, Tv)
    weights = masked_softmax(scores, value_mask & causal)
    output  = weights @ value                         # (batch, Tq, dim), zero where the query is masked

The call is `layer([query, value])` or `layer([query, value, key])`; the masks are those of
query and value (a key's mask is not used); the output carries the query's mask, the scores
(`return_attention_scores=True`) none. Causal masking is the Keras 2 config option `causal`
(tf.keras <= 2.9) or the call argument `use_causal_mask`. Dropout does nothing at inference.
Before computing, the layer is checked to be Keras' own class (formats/provenance.py); the weights
it holds are formats/layout.py's; where Keras versions differ, attention_math.KERAS_ATTENTION says how.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..formats.layout import attention_weights
from ..spec import LayerSpec
from . import multi_head_attention  # noqa: F401 - imported for effect: registers MultiHeadAttention
from .attention_checks import (
    compute_dtype,
    flag,
    refuse_custom,
    refuse_training_dropout,
    saving_version,
    versions,
)
from .attention_math import (
    additive_scores,
    causal_mask,
    concat_scores,
    dense_rule,
    dot_scores,
    masked_softmax,
    merge_masks,
)
from .layers import Call, Context, LayerResult, Mask, register, take_weights, where


@register(
    "Attention",
    options=("use_scale", "score_mode", "causal", "dropout"),
    defaults={"use_scale": False, "score_mode": "dot", "dropout": 0.0},
    call_kwargs=True,
)
def build_attention(layer: LayerSpec, ctx: Context):
    """Keras' Attention: dot or concat scores, with `scale` (use_scale) and `concat_score_weight`
    (concat) scalars, in that order in the file."""
    config = layer.config
    score_mode = config.get("score_mode", "dot")
    use_scale = bool(config.get("use_scale", False))
    concat = score_mode == "concat"
    shapes = _weight_shapes(layer)
    refuse_custom(layer, ctx, shapes, (2, 3))
    if score_mode not in ("dot", "concat"):  # the only modes any Keras had: Keras refuses to build others
        raise BadInputError(f"{where(ctx, layer)}: option score_mode={score_mode!r} is not one of Keras' dot, concat")
    flag(layer, ctx, "use_scale", config.get("use_scale", False))
    weights = take_weights(layer, ctx, shapes)
    scale = weights[0] if use_scale else None  # ()
    concat_weight = weights[-1] if concat else None  # ()

    def scores(query: np.ndarray, key: np.ndarray) -> np.ndarray:  # -> (batch, Tq, Tv)
        if concat_weight is not None:
            return concat_scores(query, key, scale, concat_weight)
        return dot_scores(query, key, scale)

    return _dense_call(layer, ctx, scores)


@register(
    "AdditiveAttention",
    options=("use_scale", "causal", "dropout"),
    defaults={"use_scale": True, "dropout": 0.0},
    call_kwargs=True,
)
def build_additive_attention(layer: LayerSpec, ctx: Context):
    """Keras' AdditiveAttention: `sum(scale * tanh(q + k))`, `scale` of shape (dim,) when use_scale."""
    use_scale = bool(layer.config.get("use_scale", True))
    shapes = _weight_shapes(layer)
    refuse_custom(layer, ctx, shapes, (2, 3))
    flag(layer, ctx, "use_scale", layer.config.get("use_scale", True))
    weights = take_weights(layer, ctx, shapes)
    scale = weights[0] if use_scale else None  # (dim,)

    def scores(query: np.ndarray, key: np.ndarray) -> np.ndarray:  # -> (batch, Tq, Tv)
        if scale is not None and scale.shape[0] != query.shape[-1]:
            raise BadInputError(
                f"{where(ctx, layer)}: the query has {query.shape[-1]} features, the scale weight {scale.shape[0]}"
            )
        return additive_scores(query, key, scale)

    return _dense_call(layer, ctx, scores)


def _weight_shapes(layer: LayerSpec) -> list[tuple[int | None, ...]]:
    return [slot.shape for slot in attention_weights(layer.class_name, layer.config) or ()]


def _dense_call(layer: LayerSpec, ctx: Context, scores_of):
    """The shared call of Attention and AdditiveAttention around their score function."""
    config = layer.config
    causal_config = flag(layer, ctx, "causal", config.get("causal", False))
    dropout = float(config.get("dropout", 0.0) or 0.0)
    rule = dense_rule(compute_dtype(layer))
    keras = versions(ctx)

    def run(inputs: list[np.ndarray], masks: list[Mask], call: Call) -> LayerResult:
        refuse_training_dropout(layer, ctx, call, dropout)
        query, value = inputs[0], inputs[1]  # (batch, Tq, dim), (batch, Tv, dim_v)
        key = inputs[2] if len(inputs) > 2 else value  # (batch, Tv, dim)
        query_mask, value_mask = masks[0], masks[1]  # (batch, Tq), (batch, Tv)
        if value.shape[-2] != key.shape[-2]:
            raise BadInputError(f"{where(ctx, layer)}: value has {value.shape[-2]} steps, key {key.shape[-2]}")
        scores = scores_of(query, key)  # (batch, Tq, Tv)
        causal = causal_config or bool(call.kwargs.get("use_causal_mask", False))
        if causal and keras.causal_drops_value_mask:
            _refuse_keras_300_causal_without_mask(layer, ctx, value_mask)
            value_mask = None  # Keras 3.0.0-3.0.4 drop it
        keep = merge_masks(
            value_mask[..., None, :] if value_mask is not None else None,  # (batch, 1, Tv)
            causal_mask(scores.shape[-2], scores.shape[-1]) if causal else None,  # (1, Tq, Tv)
        )
        weights = masked_softmax(scores, keep, rule)  # (batch, Tq, Tv)
        output = weights @ value  # (batch, Tq, dim_v)
        if query_mask is not None:
            visible = query_mask[..., None]  # (batch, Tq, 1)
            selects = keras.query_mask_selects  # else a multiplication: they differ only on inf/NaN
            output = np.where(visible, output, 0.0) if selects else output * visible.astype(output.dtype)
        if call.kwargs.get("return_attention_scores"):
            return LayerResult([output, weights], [query_mask, None])
        return LayerResult([output], [query_mask])

    return run


def _refuse_keras_300_causal_without_mask(layer: LayerSpec, ctx: Context, value_mask: Mask) -> None:
    """Keras 3.0.0-3.0.4 build a causal call's mask as `causal if value_mask is not None else
    value_mask & causal`: the value mask is dropped, and a call without one fails in Keras."""
    if value_mask is None:
        raise UnsupportedError(
            f"{where(ctx, layer)}: Keras {saving_version(ctx)}, which saved this file, fails on a causal call "
            f"without a value mask (Keras 3.0.0-3.0.4 do; fixed in 3.0.5), so there is no Keras output to match"
        )
