"""Weight order per layer class: the documented mapping from Keras' stored order to names.

Readers attach arrays in the order Keras stores them (`layer.get_weights()` order, the same in
tf.keras 2.x legacy HDF5, Keras 3 HDF5 and Keras 3 `.keras` files), after generations.py has
brought old layouts to today's. This table gives each position its textbook name. Arrays are
matched by position and checked by shape, never by parsing the variable names a writer chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECURRENT = ("kernel", "recurrent_kernel", "bias")
WEIGHT_ORDER: dict[str, tuple[str, ...]] = {
    "LSTM": RECURRENT,
    "GRU": RECURRENT,
    "SimpleRNN": RECURRENT,
    "ConvLSTM2D": RECURRENT,
    "Dense": ("kernel", "bias"),
    "Conv1D": ("kernel", "bias"),
    "Conv2D": ("kernel", "bias"),
    "Embedding": ("embeddings",),
    "PReLU": ("alpha",),
}


def weight_names(class_name: str, count: int, config: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Names for the `count` arrays of a `class_name` layer; `w0, w1, ...` where unknown.

    An optional trailing array (bias with use_bias=False) is simply absent, so a prefix of the
    table names a shorter list. Wrappers name their inner layer's arrays.
    """
    config = config or {}
    inner = config.get("layer") if isinstance(config.get("layer"), dict) else None
    if class_name == "Bidirectional" and inner is not None:
        half = weight_names(inner.get("class_name", ""), count // 2, inner.get("config"))
        return tuple(f"forward_{n}" for n in half) + tuple(f"backward_{n}" for n in half)
    if class_name == "TimeDistributed" and inner is not None:
        return weight_names(inner.get("class_name", ""), count, inner.get("config"))
    if class_name in ("BatchNormalization", "LayerNormalization"):
        order = (("gamma",) if config.get("scale", True) else ()) + (("beta",) if config.get("center", True) else ())
        if class_name == "BatchNormalization":
            order += ("moving_mean", "moving_variance")
        return order if len(order) == count else tuple(f"w{i}" for i in range(count))
    slots = attention_weights(class_name, config)
    if slots is not None:
        names = tuple(slot.name for slot in slots)
        return names if len(names) == count else tuple(f"w{i}" for i in range(count))  # w*: a custom class
    order = WEIGHT_ORDER.get(class_name, ())
    if count <= len(order):
        return order[:count]
    return tuple(f"w{i}" for i in range(count))


@dataclass(frozen=True)
class WeightSlot:
    """One array a layer holds: its textbook name and shape (None: any size, set by the input)."""

    name: str
    shape: tuple[int | None, ...]


ATTENTION_CLASSES = ("Attention", "AdditiveAttention", "MultiHeadAttention")


def attention_weights(class_name: str, config: dict[str, Any]) -> tuple[WeightSlot, ...] | None:
    """The arrays Keras' attention layers hold under `config`, in the file's order (the same in tf.keras
    and Keras 3, .h5 and .keras); None for any other class. Never raises: a malformed dimension is None.

    - Attention: `scale` () when use_scale, then `concat_score_weight` () when score_mode is concat;
    - AdditiveAttention: `scale` (dim,) when use_scale (Keras' default: True);
    - MultiHeadAttention: per projection query, key, [gate: Keras 3.14+ use_gate], value a kernel
      (features, heads, size) and a bias (heads, size), then the output kernel (heads, value_dim,
      *output_shape) and bias output_shape (the query's features when output_shape is unset); no biases
      when use_bias is False.
    """
    if class_name == "Attention":
        names = (("scale",) if config.get("use_scale") else ()) + (
            ("concat_score_weight",) if config.get("score_mode") == "concat" else ()
        )
        return tuple(WeightSlot(name, ()) for name in names)
    if class_name == "AdditiveAttention":
        return (WeightSlot("scale", (None,)),) if config.get("use_scale", True) else ()
    if class_name != "MultiHeadAttention":
        return None
    heads, key_dim = _dim(config.get("num_heads")), _dim(config.get("key_dim"))
    value_dim = _dim(config.get("value_dim")) or key_dim
    output = config.get("output_shape")
    output_dims = (
        tuple(_dim(d) for d in (output if isinstance(output, list | tuple) else [output])) if output else (None,)
    )
    biased = config.get("use_bias", True) is not False
    slots: list[WeightSlot] = []
    for part, size in (("query", key_dim), ("key", key_dim), ("gate", value_dim), ("value", value_dim)):
        if part == "gate" and not config.get("use_gate"):
            continue
        slots.append(WeightSlot(f"{part}_kernel", (None, heads, size)))
        slots += [WeightSlot(f"{part}_bias", (heads, size))] if biased else []
    slots.append(WeightSlot("output_kernel", (heads, value_dim, *output_dims)))
    slots += [WeightSlot("output_bias", output_dims)] if biased else []
    return tuple(slots)


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
