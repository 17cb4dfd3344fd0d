"""The arithmetic of Keras' attention layers, as pure NumPy functions, and how each range of Keras
versions does it (`KERAS_ATTENTION`, a table keyed by the saving Keras' version).

Scores (Attention's dot and concat, AdditiveAttention's), the causal and sliding-window masks, and
the masked softmax. How a masked position is kept out of the softmax differs between Keras
versions and code paths, and only shows where a whole row is masked (a padded query, or a causal
row whose only visible key is padding); `MaskRule` holds each way as data:

- Attention / AdditiveAttention (every version), MultiHeadAttention in tf.keras and in Keras
  3.0-3.9 (its `Softmax` layer): the masked score becomes `score - 1e9`, computed in the layer's
  dtype. Near 1e9 a float32 step is 64, so in float32 a fully masked row keeps only differences of
  64 or more (in practice a uniform distribution); in float64 it is the softmax of the scores.
  (tf_keras' `softmax_robust_masking=True`: the masked score is replaced by -1e9.)
- Keras 3.7+ MultiHeadAttention, fused path (`ops.dot_product_attention`, taken when there is no
  dropout, no returned scores and a 3-D query): the masked score is replaced by -0.7 * 3.38953e38;
  a fully masked row is uniform.
- Keras 3.10+ MultiHeadAttention, explicit path (its `Softmax` layer, taken with dropout > 0,
  returned scores, or a query of rank > 3): masked probabilities are set to 0 after the softmax
  (3.13+ also replaces the masked score by -1e9 instead of shifting it); a fully masked row is all zeros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .activations import softmax

Version = tuple[int, int, int]


@dataclass(frozen=True)
class KerasAttention:
    """How the Keras versions from `since` up to the next row's compute their attention layers.

    `mha_input_masks`: MultiHeadAttention combines its query's, value's and key's Keras masks and
    passes the query's on (tf.keras 2.4-2.9 ignored them and its output had no mask).
    `mha_fused`: Keras 3.7+ takes `ops.dot_product_attention` when it can (see the module docstring).
    `softmax_replaces` / `softmax_zeroes`: MultiHeadAttention's Softmax layer replaces masked scores
    (else shifts them) / zeroes masked probabilities after the softmax.
    `raw_attention_mask`: an `attention_mask` that meets no automatic mask reaches that Softmax as
    given (a 0/1/2 mask adds `(1 - m) * -1e9`), else it is cast to bool first (Keras 3.7+).
    `float16_fill`: that Softmax's large negative number under float16.
    `causal_drops_value_mask`: Keras 3.0.0-3.0.4's Attention / AdditiveAttention with
    use_causal_mask ignores the value mask (and fails without one).
    `query_mask_selects`: Attention zeroes masked query steps by selection (Keras 3.15+), else by a
    multiplication (the two differ only on inf/NaN).
    """

    since: Version
    label: str
    mha_input_masks: bool = True
    mha_fused: bool = False
    softmax_replaces: bool = False
    softmax_zeroes: bool = False
    raw_attention_mask: bool = True
    float16_fill: float = -3.0e4
    causal_drops_value_mask: bool = False
    query_mask_selects: bool = False


def _history(*changes: tuple[Version, str, dict]) -> tuple[KerasAttention, ...]:
    """Rows from (first version, label, what changed from the row before)."""
    rows: list[KerasAttention] = []
    for since, label, changed in changes:
        rows.append(replace(rows[-1] if rows else KerasAttention(since, label), since=since, label=label, **changed))
    return tuple(rows)


# Read from keras-team/keras (tf.keras v2.6.0-v2.15.0, Keras v3.0.0-v3.15.1: layers/attention/*.py,
# layers/activations/softmax.py, backend/tensorflow/nn.py) and keras-team/tf-keras (v2.15.0-v2.21.0).
# A file whose version is unknown, or of the other generation (`--semantics`), gets its generation's last row.
KERAS_ATTENTION: dict[str, tuple[KerasAttention, ...]] = {
    "keras2": _history(
        ((2, 0, 0), "tf.keras 2.4-2.9", {"mha_input_masks": False, "float16_fill": -65504.0}),
        ((2, 10, 0), "tf.keras 2.10-2.12", {"mha_input_masks": True}),  # MultiHeadAttention reads the Keras masks
        ((2, 13, 0), "tf.keras 2.13+", {"float16_fill": -32752.0}),  # float16.min / 2
    ),
    "keras3": _history(
        ((3, 0, 0), "Keras 3.0.0-3.0.4", {"causal_drops_value_mask": True}),
        ((3, 0, 5), "Keras 3.0.5-3.6", {"causal_drops_value_mask": False}),
        ((3, 7, 0), "Keras 3.7-3.9", {"mha_fused": True, "raw_attention_mask": False}),
        ((3, 10, 0), "Keras 3.10-3.12", {"softmax_zeroes": True}),
        ((3, 13, 0), "Keras 3.13-3.14", {"softmax_replaces": True}),
        ((3, 15, 0), "Keras 3.15+", {"query_mask_selects": True}),
    ),
}


def parse_version(text: str) -> Version | None:
    """`"2.9.0"` -> (2, 9, 0), `"2.2.4-tf"` -> (2, 2, 4), `"3.7"` -> (3, 7, 0); None when unreadable."""
    found = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if found is None:
        return None
    return int(found[1]), int(found[2]), int(found[3] or 0)


def version_rules(semantics: str, keras_version: str) -> KerasAttention:
    """The row of KERAS_ATTENTION for a file saved by `keras_version`, computed with `semantics`."""
    rows = KERAS_ATTENTION[semantics]
    version = parse_version(keras_version)
    if version is None or version[0] != rows[0].since[0]:
        return rows[-1]
    return [row for row in rows if row.since <= version][-1]


@dataclass(frozen=True)
class MaskRule:
    """How masked scores are kept out of a softmax.

    `fill`: the large negative number; `shift`: the masked score becomes `score + fill` computed in
    `dtype` (the layer's compute dtype), else it is replaced by `fill`; `zero_masked`: masked
    probabilities are set to 0 after the softmax.
    """

    fill: float
    shift: bool = False
    zero_masked: bool = False
    dtype: type = np.float32


def dense_rule(dtype: type) -> MaskRule:
    """Attention / AdditiveAttention in every version: `score - 1e9` (65504 under float16) in `dtype`."""
    return MaskRule(fill=-65504.0 if dtype == np.float16 else -1.0e9, shift=True, dtype=dtype)


def mha_rule(keras: KerasAttention, dtype: type, robust: bool, fused: bool) -> MaskRule:
    """MultiHeadAttention's rule in the versions of `keras`, computing in `dtype`; `robust`: tf_keras'
    softmax_robust_masking; `fused`: Keras 3 takes its `dot_product_attention` path."""
    float16 = dtype == np.float16
    if fused:  # the masked logit is replaced; the softmax runs in float32 at least
        return MaskRule(fill=-0.7 * (65500.0 if float16 else 3.38953e38))
    replace = robust or keras.softmax_replaces
    fill = keras.float16_fill if float16 else -1.0e9
    return MaskRule(fill=fill, shift=not replace, zero_masked=keras.softmax_zeroes, dtype=dtype)


def masked_softmax(scores: np.ndarray, keep: np.ndarray | None, rule: MaskRule, axes: tuple[int, ...] = (-1,)):
    """Softmax of `scores` over `axes` where positions with `keep == False` (broadcast) do not count,
    by `rule`. Returns an array of the scores' shape and dtype.

    The softmax runs in the wider of the scores' dtype and `rule.dtype`, so that a float64 layer's
    fully masked rows come out as Keras computes them even in a float32 reference. A non-boolean
    `keep` is a raw attention_mask as the Softmax layer takes it: with a shift rule `(1 - keep) * fill`
    is added to every score, else positions with `keep > 0.5` are kept.
    """
    if keep is None:
        return softmax(scores, axes)
    keep = np.broadcast_to(keep, scores.shape)
    if keep.dtype != bool and not rule.shift:
        keep = keep > 0.5
    wide = np.promote_types(scores.dtype, rule.dtype)
    if keep.dtype != bool:
        adder = (1 - keep.astype(rule.dtype)) * rule.dtype(rule.fill)
        shifted = (scores.astype(rule.dtype) + adder).astype(wide)
        return softmax(np.where(keep == 1, scores.astype(wide), shifted), axes).astype(scores.dtype)
    if rule.shift:
        shifted = (scores.astype(rule.dtype) + rule.dtype(rule.fill)).astype(wide)
        filled = np.where(keep, scores.astype(wide), shifted)
    else:
        filled = np.where(keep, scores, scores.dtype.type(rule.fill)).astype(wide)
    weights = softmax(filled, axes).astype(scores.dtype)
    return np.where(keep, weights, 0.0).astype(scores.dtype) if rule.zero_masked else weights


def dot_scores(query: np.ndarray, key: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Luong scores `query . key` per (query step, key step), times `scale` when given.

    (..., Tq, dim), (..., Tv, dim) -> (..., Tq, Tv)."""
    scores = query @ np.swapaxes(key, -1, -2)  # (..., Tq, Tv)
    return scores * scale if scale is not None else scores


def concat_scores(
    query: np.ndarray, key: np.ndarray, scale: np.ndarray | None, concat_score_weight: np.ndarray
) -> np.ndarray:
    """Attention(score_mode="concat"): `w * sum(tanh(scale * (q + k)))` over features.

    (..., Tq, dim), (..., Tv, dim) -> (..., Tq, Tv)."""
    summed = query[..., :, None, :] + key[..., None, :, :]  # (..., Tq, Tv, dim)
    if scale is not None:
        summed = scale * summed
    return concat_score_weight * np.sum(np.tanh(summed), axis=-1)  # (..., Tq, Tv)


def additive_scores(query: np.ndarray, key: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Bahdanau scores `sum(scale * tanh(q + k))` over features (scale of shape (dim,), or 1).

    (..., Tq, dim), (..., Tv, dim) -> (..., Tq, Tv)."""
    hidden = np.tanh(query[..., :, None, :] + key[..., None, :, :])  # (..., Tq, Tv, dim)
    return np.sum(hidden * scale if scale is not None else hidden, axis=-1)  # (..., Tq, Tv)


def causal_mask(tq: int, tv: int) -> np.ndarray:
    """(1, Tq, Tv): query step i sees key steps j <= i."""
    return (np.arange(tq)[:, None] >= np.arange(tv)[None, :])[None]


def sliding_window_mask(tq: int, tv: int, window: int) -> np.ndarray:
    """(1, Tq, Tv): query step i sees key steps j with |i - j| < window."""
    return (np.abs(np.arange(tq)[:, None] - np.arange(tv)[None, :]) < window)[None]


def merge_masks(*masks: np.ndarray | None) -> np.ndarray | None:
    """Logical AND of the masks that are given (None when none is)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    merged = present[0]
    for mask in present[1:]:
        merged = np.logical_and(merged, mask)
    return merged
