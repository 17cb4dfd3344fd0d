"""Real Keras models across sizes, options and all three writers: `check` passes, `predict` matches.

Each case builds a seeded model with the writer's own Keras, saves it, runs `lstm-parity check`
(reference vs Keras model.predict on the saved file) and `lstm-parity predict` (reference only),
and compares the latter with the in-memory model's own predictions.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import WRITERS, build_model, keras_predict, save_model, write_npy

# name: (hidden/time/batch/features knobs, layers after the Input, functional?)
CASES = {
    "smallest": (1, 1, 1, [("LSTM", dict(units=1)), ("Dense", dict(units=1))], False),
    "tutorial": (4, 8, 3, [("LSTM", dict(units=5)), ("Dense", dict(units=1))], False),
    "long_wide": (300, 4, 16, [("LSTM", dict(units=64)), ("Dense", dict(units=2))], False),
    "big_batch_sequences": (
        20,
        64,
        8,
        [("LSTM", dict(units=16, return_sequences=True)), ("Dense", dict(units=3))],
        False,
    ),
    "go_backwards": (10, 5, 4, [("LSTM", dict(units=8, go_backwards=True)), ("Dense", dict(units=1))], False),
    "go_backwards_sequences": (
        10,
        5,
        4,
        [("LSTM", dict(units=8, go_backwards=True, return_sequences=True)), ("Dense", dict(units=2))],
        False,
    ),
    "no_bias": (6, 3, 2, [("LSTM", dict(units=4, use_bias=False)), ("Dense", dict(units=1, use_bias=False))], False),
    "relu": (6, 3, 3, [("LSTM", dict(units=7, activation="relu")), ("Dense", dict(units=1))], False),
    "hard_sigmoid": (
        12,
        6,
        5,
        [("LSTM", dict(units=6, recurrent_activation="hard_sigmoid")), ("Dense", dict(units=1))],
        False,
    ),
    "linear": (
        5,
        4,
        2,
        [
            ("LSTM", dict(units=3, activation="linear", recurrent_activation="linear")),
            ("Dense", dict(units=1, activation="linear")),
        ],
        False,
    ),
    "stacked": (
        15,
        7,
        6,
        [
            ("LSTM", dict(units=12, return_sequences=True)),
            ("Dropout", dict(rate=0.3)),
            ("LSTM", dict(units=9, recurrent_activation="hard_sigmoid")),
            ("Dense", dict(units=4)),
            ("Activation", dict(activation="softmax")),
        ],
        False,
    ),
    "functional_chain": (
        9,
        3,
        4,
        [
            ("LSTM", dict(units=6, return_sequences=True)),
            ("LSTM", dict(units=5)),
            ("Dense", dict(units=2, activation="tanh")),
        ],
        True,
    ),
}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_check_and_predict_match_keras(case, writer, tmp_path, run_cli):
    time, batch, features, layers, functional = CASES[case]
    model = build_model(writer, time, features, layers, seed=len(case), functional=functional)
    path = save_model(model, writer, tmp_path)
    x = np.random.default_rng(7).standard_normal((batch, time, features)).astype(np.float32)
    x_path = write_npy(tmp_path, "x.npy", x)

    result = run_cli("check", path, x_path, "--json", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout and "bit-identical" in result.stdout
    expected_semantics = "keras2" if writer == "k2-h5" else "keras3"
    assert f"{expected_semantics} semantics" in result.stdout

    out = tmp_path / "y.npy"
    result = run_cli("predict", path, x_path, "-o", out)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), keras_predict(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("writer", WRITERS)
def test_float32_reference_matches_keras(writer, tmp_path, run_cli):
    model = build_model(writer, 12, 4, [("LSTM", dict(units=8)), ("Dense", dict(units=2))], seed=3)
    path = save_model(model, writer, tmp_path)
    x = np.random.default_rng(1).standard_normal((6, 12, 4)).astype(np.float32)
    x_path = write_npy(tmp_path, "x.npy", x)
    result = run_cli("check", path, x_path, "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert "NumPy float32" in result.stdout
    out = tmp_path / "y.npy"
    assert run_cli("predict", path, x_path, "-o", out, "--dtype", "float32").exit_code == 0
    y = np.load(out)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, keras_predict(model, x), atol=1e-5)


def test_single_sample_without_batch_axis(tmp_path, run_cli):
    model = build_model("k3-keras", 4, 3, [("LSTM", dict(units=5)), ("Dense", dict(units=1))])
    path = save_model(model, "k3-keras", tmp_path)
    x = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)  # (time, features)
    x_path = write_npy(tmp_path, "x.npy", x)
    assert run_cli("check", path, x_path).exit_code == 0
    out = tmp_path / "y.npy"
    assert run_cli("predict", path, x_path, "-o", out).exit_code == 0
    np.testing.assert_allclose(np.load(out), keras_predict(model, x[None]), atol=1e-5)
