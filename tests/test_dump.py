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


def _edited_dump(tmp_path, run_cli, edit, name: str):
    """The sample model's JSON dump with `edit(data)` applied, written as `name`."""
    data = json.loads(run_cli("dump", SAMPLES / "tutorial_keras2.h5").stdout)
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("units", [4, "x", 5.0, True, 0], ids=repr)
def test_units_that_disagree_with_the_weights_are_bad_input_in_every_format(units, tmp_path, run_cli):
    def set_units(data):
        next(layer for layer in data["layers"] if layer["name"] == "lstm")["config"]["units"] = units

    path = _edited_dump(tmp_path, run_cli, set_units, "bad_units.json")
    for fmt in ("json", "c", "npz"):
        result = run_cli("dump", path, "--format", fmt, "-o", tmp_path / f"out.{fmt}")
        assert result.exit_code == 2, (fmt, result.output)
        assert result.stderr.startswith(f"lstm-parity: error: {path}: layer 'lstm' (LSTM): ")
        assert len(result.stderr.splitlines()) == 1 and not (tmp_path / f"out.{fmt}").exists()
    if units == 4:  # the reference's own shape check says what is wrong
        assert "weight kernel has shape (3, 20), expected (?, 16)" in result.stderr
    elif isinstance(units, int) and not isinstance(units, bool):
        assert "units 0 is not a positive integer" in result.stderr
    else:
        assert f"units {units!r} is not a positive integer" in result.stderr


def test_units_of_a_wrapped_layer_are_checked_too(tmp_path, run_cli):
    model = build_model("k3-keras", 4, 3, [("Bidirectional", dict(layer=_lstm(2)))], seed=1)
    data = json.loads(run_cli("dump", save_model(model, "k3-keras", tmp_path)).stdout)
    data["layers"][-1]["config"]["layer"]["config"]["units"] = "two"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = run_cli("dump", path, "--format", "c")
    assert result.exit_code == 2 and "(Bidirectional): units 'two' is not a positive integer" in result.stderr


def _lstm(units):
    from conftest import keras_module

    return keras_module("k3-keras").layers.LSTM(units)


def test_a_dump_with_unknown_semantics_is_refused(tmp_path, run_cli):
    path = _edited_dump(tmp_path, run_cli, lambda data: data["source"].update(semantics="keras4"), "k4.json")
    x = SAMPLES / "tutorial_keras2.input.npy"
    for args in (("dump", path, "--format", "c"), ("predict", path, x, "-o", tmp_path / "y.npy")):
        result = run_cli(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            f"lstm-parity: error: {path}: dump source.semantics 'keras4' is not supported (supported: keras2, keras3)\n"
        )


def test_no_tutorial_block_where_its_names_would_lie(tmp_path, run_cli):
    """time_major (tf.keras) reads x as (time, batch, features); a stateful LSTM starts from the last
    call's states, not zeros; a Dense that does not read the LSTM is not its head."""
    from dataclasses import replace

    from lstm_parity.dump import tutorial_block

    model = build_model("k2-h5", 4, 3, [("LSTM", dict(units=2, time_major=True)), ("Dense", dict(units=1))])
    path = save_model(model, "k2-h5", tmp_path)
    assert open_model(path).layers[1].config["time_major"] is True
    assert "tutorial" not in json.loads(run_cli("dump", path).stdout)
    assert "TUTORIAL_" not in run_cli("dump", path, "--format", "c").stdout
    spec = open_model(SAMPLES / "tutorial_keras2.h5")
    assert tutorial_block(spec) is not None
    lstm = next(layer for layer in spec.layers if layer.class_name == "LSTM")
    stateful = replace(lstm, config={**lstm.config, "stateful": True})
    assert tutorial_block(replace(spec, layers=tuple(stateful if x is lstm else x for x in spec.layers))) is None
    dense = spec.layers[-1]
    elsewhere = replace(dense, inbound=((spec.inputs[0],),))  # reads the model's input
    assert tutorial_block(replace(spec, layers=(*spec.layers[:-1], elsewhere))) is None
