"""Weight order per layer class: the documented mapping from Keras' stored order to names.

Readers attach arrays in the order Keras stores them (`layer.get_weights()` order, the same in
tf.keras 2.x legacy HDF5, Keras 3 HDF5 and Keras 3 `.keras` files). This table gives each
position its textbook name. Arrays are matched by position and checked by shape, never by
parsing the variable names a writer chose.
"""
from __future__ import annotations

WEIGHT_ORDER: dict[str, tuple[str, ...]] = {
    "LSTM": ("kernel", "recurrent_kernel", "bias"),
    "Dense": ("kernel", "bias"),
}


def weight_names(class_name: str, count: int) -> tuple[str, ...]:
    """Names for the `count` arrays of a `class_name` layer; `w0, w1, ...` for unknown classes.

    An optional trailing array (bias with use_bias=False) is simply absent, so a prefix of the
    table names a shorter list.
    """
    order = WEIGHT_ORDER.get(class_name, ())
    if count <= len(order):
        return order[:count]
    return tuple(f"w{i}" for i in range(count))
