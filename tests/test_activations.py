"""Every activation in our tables against the matching Keras generation's own function."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import keras_module
from lstm_parity.errors import UnsupportedError
from lstm_parity.reference.activations import ACTIVATIONS, get_activation

X = np.concatenate([np.linspace(-8, 8, 161), [-40.0, -3.0, -2.5, 0.0, 2.5, 3.0, 40.0]]).astype(np.float32)


@pytest.mark.parametrize("semantics,writer", [("keras2", "k2-h5"), ("keras3", "k3-keras")])
def test_table_matches_keras(semantics, writer):
    module = keras_module(writer)
    x2d = X.reshape(7, 24)  # softmax-like functions act on the last axis
    for name, ours in ACTIVATIONS[semantics].items():
        theirs = np.asarray(module.activations.get(name)(module.backend.constant(x2d) if writer == "k2-h5" else x2d))
        np.testing.assert_allclose(ours(x2d.astype(np.float64)), theirs, atol=2e-6, rtol=2e-6, err_msg=name)


def test_hard_sigmoid_differs_between_generations():
    k2 = get_activation("hard_sigmoid", "keras2", "test")
    k3 = get_activation("hard_sigmoid", "keras3", "test")
    assert k2(np.array([1.0]))[0] == pytest.approx(0.7)
    assert k3(np.array([1.0]))[0] == pytest.approx(4 / 6)
    assert k2(np.array([-2.5]))[0] == 0.0 and k3(np.array([-2.5]))[0] > 0.08


def test_keras3_serialized_activation_and_unknown_name():
    assert get_activation(
        {"module": "keras.activations", "class_name": "function", "config": "tanh", "registered_name": "function"},
        "keras3",
        "t",
    )(np.array([0.5]))[0] == np.tanh(0.5)
    with pytest.raises(UnsupportedError, match="'my_act' is not implemented.*supported:.*tanh"):
        get_activation("my_act", "keras3", "model.h5: layer 'lstm' (LSTM)")
