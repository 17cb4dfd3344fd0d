"""`dump`: schema, gate views, the tutorial block, bit-exact float32 round trip, predict from a dump."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLES, WRITERS, build_model, keras_predict, save_model, write_npy
from lstm_parity.formats import open_model


@pytest.mark.parametrize("writer", WRITERS)
def test_dump_round_trips_bit_exactly_and_predicts(writer, tmp_path, run_cli):
    model = build_model(
        writer,
        6,
        3,
        [
            ("LSTM", dict(units=4, return_sequences=True)),
            ("LSTM", dict(units=5, recurrent_activation="hard_sigmoid")),
            ("Dense", dict(units=2)),
        ],
        seed=11,
    )
    path = save_model(model, writer, tmp_path)
    out = tmp_path / "dump.json"
    result = run_cli("dump", path, "-o", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1
    assert data["source"]["semantics"] == ("keras2" if writer == "k2-h5" else "keras3")
    assert len(data["source"]["sha256"]) == 64

    original, restored = open_model(path), open_model(out)
    assert restored.file_format == "dump-json" and restored.semantics == original.semantics
    keras_weights = model.get_weights()
    restored_weights = [w for layer in restored.layers for w in layer.weights]
    assert len(restored_weights) == len(keras_weights)
    for ours, theirs in zip(restored_weights, keras_weights, strict=True):
        assert ours.dtype == np.float32 and ours.tobytes() == theirs.tobytes()  # bit-identical

    x = np.random.default_rng(0).standard_normal((3, 6, 3)).astype(np.float32)
    x_path = write_npy(tmp_path, "x.npy", x)
    assert run_cli("predict", out, x_path, "-o", tmp_path / "from_dump.npy").exit_code == 0
    assert run_cli("predict", path, x_path, "-o", tmp_path / "from_model.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "from_dump.npy"), np.load(tmp_path / "from_model.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "from_dump.npy"), keras_predict(model, x), atol=1e-5)


def test_dump_lstm_gates_options_and_tutorial_block(run_cli):
    result = run_cli("dump", SAMPLES / "tutorial_keras2.h5")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    lstm = next(layer for layer in data["layers"] if layer["class_name"] == "LSTM")
    assert lstm["options"]["recurrent_activation"] == "hard_sigmoid" and lstm["options"]["units"] == 5
    assert [w["name"] for w in lstm["weights"]] == ["kernel", "recurrent_kernel", "bias"]
    assert [w["shape"] for w in lstm["weights"]] == [[3, 20], [5, 20], [20]]
    assert lstm["weights"][0]["stored_name"].endswith("kernel:0")
    kernel = np.array(lstm["weights"][0]["values"], dtype=np.float32)
    gates = lstm["gates"]
    assert gates["order"] == ["i", "f", "c", "o"] and gates["columns"]["f"] == [5, 10]
    for k, gate in enumerate("ifco"):
        np.testing.assert_array_equal(np.array(gates["kernel"][gate], np.float32), kernel[:, 5 * k : 5 * (k + 1)])
        np.testing.assert_array_equal(
            np.array(gates["bias"][gate], np.float32),
            np.array(lstm["weights"][2]["values"], np.float32)[5 * k : 5 * (k + 1)],
        )
    tutorial = data["tutorial"]
    assert np.array(tutorial["W"]).shape == (3, 20) and np.array(tutorial["U"]).shape == (5, 20)
    assert np.array(tutorial["b"]).shape == (20,) and np.array(tutorial["Wout"]).shape == (5, 1)
    assert np.array(tutorial["bout"]).shape == (1,) and tutorial["recurrent_activation"] == "hard_sigmoid"
    np.testing.assert_array_equal(np.array(tutorial["W"], np.float32), kernel)


def test_tutorial_block_recomputes_keras_prediction(tmp_path, run_cli):
    """A porter's forward pass written from the tutorial block alone reproduces the saved model."""
    result = run_cli("dump", SAMPLES / "tutorial.keras")
    t = json.loads(result.stdout)["tutorial"]
    W, U, b, Wout, bout = (np.array(t[k]) for k in ("W", "U", "b", "Wout", "bout"))
    x = np.load(SAMPLES / "tutorial.input.npy").astype(np.float64)
    h = np.zeros((x.shape[0], 5))
    c = np.zeros_like(h)
    for step in range(x.shape[1]):
        z = x[:, step] @ W + h @ U + b
        c = _sigmoid(z[:, 5:10]) * c + _sigmoid(z[:, :5]) * np.tanh(z[:, 10:15])
        h = _sigmoid(z[:, 15:]) * np.tanh(c)
    y = h @ Wout + bout
    out = tmp_path / "y.npy"
    assert run_cli("predict", SAMPLES / "tutorial.keras", SAMPLES / "tutorial.input.npy", "-o", out).exit_code == 0
    np.testing.assert_allclose(y, np.load(out), atol=1e-12)


def test_no_tutorial_block_for_stacked_models(tmp_path, run_cli):
    model = build_model(
        "k3-keras",
        3,
        2,
        [("LSTM", dict(units=2, return_sequences=True)), ("LSTM", dict(units=2)), ("Dense", dict(units=1))],
    )
    data = json.loads(run_cli("dump", save_model(model, "k3-keras", tmp_path)).stdout)
    assert "tutorial" not in data and sum(layer["class_name"] == "LSTM" for layer in data["layers"]) == 2


def test_non_finite_weights_round_trip(tmp_path, run_cli):
    model = build_model("k3-h5", 2, 2, [("Dense", dict(units=3))])
    weights = model.get_weights()
    weights[1][:] = [np.nan, np.inf, -np.inf]
    model.set_weights(weights)
    path = save_model(model, "k3-h5", tmp_path)
    out = tmp_path / "d.json"
    assert run_cli("dump", path, "-o", out).exit_code == 0
    json.loads(out.read_text())  # strict JSON: no bare NaN/Infinity
    bias = open_model(out).layers[-1].weights[1]
    assert np.isnan(bias[0]) and bias[1] == np.inf and bias[2] == -np.inf


def test_dump_refuses_to_overwrite_model(run_cli, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes((SAMPLES / "tutorial.keras").read_bytes())
    result = run_cli("dump", path, "-o", path)
    assert result.exit_code == 2 and path.read_bytes() == (SAMPLES / "tutorial.keras").read_bytes()


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))
