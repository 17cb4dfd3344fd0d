"""Weight order per layer class: the documented mapping from Keras' stored order to names.

Readers attach arrays in the order Keras stores them (`layer.get_weights()` order, the same in
tf.keras 2.x legacy HDF5, Keras 3 HDF5 and Keras 3 `.keras` files), after generations.py has
brought old layouts to today's. This table gives each position its textbook name. Arrays are
matched by position and checked by shape, never by parsing the variable names a writer chose.
"""

from __future__ import annotations

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
    order = WEIGHT_ORDER.get(class_name, ())
    if count <= len(order):
        return order[:count]
    return tuple(f"w{i}" for i in range(count))
