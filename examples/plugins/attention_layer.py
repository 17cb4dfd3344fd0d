"""Plugin for `AttentionLayer`, the custom layer of corpus2 file 15.

Source: github.com/somi-oss/SQL-injection-Detection-Project at commit
834eb0109d97e72c2795dbfd9bfdaa62099ecf35, `attention_layer.py` (used by `model_builder.py` as
`AttentionLayer(name="attention")(lstm_out)`). Their layer, in words: a score per timestep
`e = tanh(x . W + b)` with `W (features, 1)` and one scalar bias `b (1,)`, attention weights
`a = softmax(e)` over the time axis, and the output `sum_t a_t * x_t`.

    lstm-parity predict attention_lstm_model.h5 -o y.npy --plugin examples/plugins/attention_layer.py
    lstm-parity check attention_lstm_model.h5 --plugin examples/plugins/attention_layer.py
"""

from __future__ import annotations

import numpy as np

from lstm_parity.plugins import layer


@layer("AttentionLayer")
def attention_layer(inputs: list[np.ndarray], weights: list[np.ndarray], config: dict) -> np.ndarray:
    """The reference: NumPy, in the reference's dtype."""
    (x,) = inputs  # (batch, time, features)
    kernel, bias = weights  # att_weight (features, 1), att_bias (1,): the file's order
    e = np.tanh(x @ kernel + bias)  # (batch, time, 1)
    e = e - e.max(axis=1, keepdims=True)  # softmax over time, shifted as Keras does
    a = np.exp(e)
    a = a / a.sum(axis=1, keepdims=True)  # (batch, time, 1)
    return (x * a).sum(axis=1)  # (batch, features)


def keras_objects() -> dict:
    """The Keras 3 class for the Keras side of `check` (the file was saved by Keras 3.13). A function, so that
    `predict` never imports Keras; lstm-parity calls it only when Keras loads the file."""
    import keras
    from keras import ops

    class AttentionLayer(keras.layers.Layer):
        """Equivalent to theirs (written with tf.keras.backend's dot/tanh/softmax/sum): same weights, same math."""

        def build(self, input_shape):
            self.W = self.add_weight(name="att_weight", shape=(input_shape[-1], 1), initializer="glorot_uniform")
            self.b = self.add_weight(name="att_bias", shape=(1,), initializer="zeros")

        def call(self, x):
            e = ops.tanh(ops.matmul(x, self.W) + self.b)  # (batch, time, 1)
            a = ops.softmax(e, axis=1)
            return ops.sum(x * a, axis=1)  # (batch, features)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], input_shape[-1])

    return {"AttentionLayer": AttentionLayer}
