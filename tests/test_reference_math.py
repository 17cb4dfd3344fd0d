"""The reference against equations written out here by hand (NumPy only, no Keras)."""

from __future__ import annotations

import numpy as np

from lstm_parity.reference.activations import hard_sigmoid_keras2, sigmoid
from lstm_parity.reference.recurrent import LSTMCell, run_sequence


def _textbook_lstm(x, W, U, b, reverse=False):
    """One sample at a time, gate by gate, the way the tutorial writes it."""
    units = U.shape[0]
    outs = []
    for sample in x:
        h = np.zeros(units)
        c = np.zeros(units)
        steps = []
        for x_t in sample[::-1] if reverse else sample:
            z = x_t @ W + h @ U + b
            i = 1 / (1 + np.exp(-z[:units]))
            f = 1 / (1 + np.exp(-z[units : 2 * units]))
            g = np.tanh(z[2 * units : 3 * units])
            o = 1 / (1 + np.exp(-z[3 * units :]))
            c = f * c + i * g
            h = o * np.tanh(c)
            steps.append(h)
        outs.append(steps)
    return np.array(outs)  # (batch, time, units)


def _cell(rng, features, units):
    W = rng.standard_normal((features, 4 * units))
    U = rng.standard_normal((units, 4 * units))
    b = rng.standard_normal(4 * units)
    return W, U, b, LSTMCell(W, U, b, np.tanh, sigmoid)


def test_lstm_matches_textbook_forward_and_backward():
    rng = np.random.default_rng(0)
    W, U, b, cell = _cell(rng, 3, 5)
    x = rng.standard_normal((4, 6, 3))
    seq = run_sequence(cell, x, return_sequences=True).output
    np.testing.assert_allclose(seq, _textbook_lstm(x, W, U, b), rtol=1e-12, atol=1e-12)
    last = run_sequence(cell, x, return_sequences=False).output
    np.testing.assert_allclose(last, seq[:, -1], rtol=0, atol=0)
    back = run_sequence(cell, x, return_sequences=True, go_backwards=True).output
    np.testing.assert_allclose(back, _textbook_lstm(x, W, U, b, reverse=True), rtol=1e-12, atol=1e-12)


def test_gate_trace_and_final_states():
    rng = np.random.default_rng(1)
    W, U, b, cell = _cell(rng, 2, 3)
    x = rng.standard_normal((2, 4, 2))
    result = run_sequence(cell, x, return_sequences=False, record=True)
    assert set(result.trace) == {"i", "f", "c_hat", "o", "c", "h"}
    assert result.trace["i"].shape == (2, 4, 3)
    h, c = result.states
    np.testing.assert_array_equal(h, result.output)
    np.testing.assert_array_equal(c, result.trace["c"][:, -1])
    z0 = x[:, 0] @ W + b  # first step: h_tm1 = 0
    np.testing.assert_allclose(result.trace["f"][:, 0], 1 / (1 + np.exp(-z0[:, 3:6])), rtol=1e-12)


def test_mask_carries_state_and_repeats_output():
    rng = np.random.default_rng(2)
    W, U, b, cell = _cell(rng, 2, 3)
    x = rng.standard_normal((3, 5, 2))
    mask = np.array([[True] * 5, [False, True, True, False, True], [False] * 5])
    out = run_sequence(cell, x, return_sequences=True, mask=mask).output
    full = _textbook_lstm(x[:1], W, U, b)
    np.testing.assert_allclose(out[0], full[0], atol=1e-12)
    # row 1: step 0 masked -> zeros; steps 1,2 see x[1] and x[2]; step 3 repeats step 2; step 4 continues
    valid = _textbook_lstm(x[1:2, [1, 2, 4]], W, U, b)[0]
    np.testing.assert_array_equal(out[1, 0], np.zeros(3))
    np.testing.assert_allclose(out[1, [1, 2, 4]], valid, atol=1e-12)
    np.testing.assert_array_equal(out[1, 3], out[1, 2])
    np.testing.assert_array_equal(out[2], np.zeros((5, 3)))  # fully masked row


def test_keras2_hard_sigmoid_formula():
    x = np.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_allclose(hard_sigmoid_keras2(x), np.clip(0.2 * x + 0.5, 0, 1))
