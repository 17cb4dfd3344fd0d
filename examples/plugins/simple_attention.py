"""Plugin for `SimpleAttention`, the custom layer of corpus2 file 02.

Source: github.com/AdityaKumar1009/Dissolved-Oxygen-Prediction-for-Water-Quality-Monitoring at commit
86432317b3f642c3600345600da0747f1b1393d3, notebook `Dissolved_Oxygen_2.ipynb` (the cell that builds
`lstm_attention_model.h5`). Their layer, in words: a score per timestep `e = tanh(x . W + b)` with
`W (features, 1)` and `b (timesteps, 1)` (one bias per timestep: the model only takes its saved length),
attention weights `a = softmax(e)` over the time axis, and the output `sum_t a_t * x_t`.

    lstm-parity predict lstm_attention_model.h5 x.npy -o y.npy --plugin examples/plugins/simple_attention.py
    lstm-parity check lstm_attention_model.h5 --plugin examples/plugins/simple_attention.py
"""

from __future__ import annotations

import numpy as np

from lstm_parity.plugins import layer


@layer("SimpleAttention")
def simple_attention(inputs: list[np.ndarray], weights: list[np.ndarray], config: dict) -> np.ndarray:
    """The reference: NumPy, in the reference's dtype."""
    (x,) = inputs  # (batch, time, features)
    kernel, bias = weights  # att_weight (features, 1), att_bias (time, 1): the file's order
    e = np.tanh(x @ kernel + bias)  # (batch, time, 1)
    e = e - e.max(axis=1, keepdims=True)  # softmax over time, shifted as Keras does
    a = np.exp(e)
    a = a / a.sum(axis=1, keepdims=True)  # (batch, time, 1)
    return (x * a).sum(axis=1)  # (batch, features)


def keras_objects() -> dict:
    """The Keras 3 class for the Keras side of `check` (the file was saved by Keras 3.8). A function, so that
    `predict` never imports Keras; lstm-parity calls it only when Keras loads the file."""
    import keras
    from keras import ops

    class SimpleAttention(keras.layers.Layer):
        """Equivalent to the notebook's class (which used tf.tensordot/tf.nn ops): same weights, same math."""

        def build(self, input_shape):
            self.W = self.add_weight(name="att_weight", shape=(input_shape[-1], 1), initializer="random_normal")
            self.b = self.add_weight(name="att_bias", shape=(input_shape[1], 1), initializer="zeros")

        def call(self, x):
            e = ops.tanh(ops.tensordot(x, self.W, axes=1) + self.b)  # (batch, time, 1)
            a = ops.softmax(e, axis=1)
            return ops.sum(x * a, axis=1)  # (batch, features)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], input_shape[-1])

    return {"SimpleAttention": SimpleAttention}
