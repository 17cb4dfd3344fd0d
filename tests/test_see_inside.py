"""inspect, trace and per-layer localisation: values recomputed here from the equations, a port
simulated by perturbing one gate's bias, and --layerwise against Keras."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import CORPUS, SAMPLES, build_with, save_model


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _lstm_steps(x, W, U, b):
    u = U.shape[0]
    h, c, rows = np.zeros(u), np.zeros(u), []
    for x_t in x:
        z = x_t @ W + h @ U + b
        i, f, g, o = sigmoid(z[:u]), sigmoid(z[u : 2 * u]), np.tanh(z[2 * u : 3 * u]), sigmoid(z[3 * u :])
        c = f * c + i * g
        h = o * np.tanh(c)
        rows.append({"i": i, "f": f, "c_hat": g, "o": o, "c": c, "h": h})
    return rows


def _gru_steps(x, W, U, b):  # reset_after=True, bias (2, 3u)
    u = U.shape[0]
    h, rows = np.zeros(u), []
    for x_t in x:
        xz = x_t @ W + b[0]
        hz = h @ U + b[1]
        z = sigmoid(xz[:u] + hz[:u])
        r = sigmoid(xz[u : 2 * u] + hz[u : 2 * u])
        hh = np.tanh(xz[2 * u :] + r * hz[2 * u :])
        h = z * h + (1 - z) * hh
        rows.append({"z": z, "r": r, "h_hat": hh, "h": h})
    return rows


def test_trace_matches_equations_written_here(tmp_path, run_cli):
    model = build_with(
        "k3-keras",
        lambda k: k.Sequential(
            [
                k.Input(shape=(5, 3)),
                k.layers.LSTM(4, return_sequences=True, name="lstm"),
                k.layers.GRU(3, name="gru"),
                k.layers.Dense(1, name="out"),
            ]
        ),
    )
    path = save_model(model, "k3-keras", tmp_path)
    x = np.random.default_rng(0).standard_normal((3, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run_cli("trace", path, tmp_path / "x.npy", "--sample", "1", "-o", tmp_path / "t.npz").exit_code == 0
    got = np.load(tmp_path / "t.npz")
    W, U, b = (w.astype(np.float64) for w in model.get_layer("lstm").get_weights())
    lstm = _lstm_steps(x[1].astype(np.float64), W, U, b)
    for gate in ("i", "f", "c_hat", "o", "c", "h"):
        np.testing.assert_allclose(got[f"lstm/{gate}"], np.array([row[gate] for row in lstm]), atol=1e-12)
    W, U, b = (w.astype(np.float64) for w in model.get_layer("gru").get_weights())
    gru = _gru_steps(np.array([row["h"] for row in lstm]), W, U, b)
    for gate in ("z", "r", "h_hat", "h"):
        np.testing.assert_allclose(got[f"gru/{gate}"], np.array([row[gate] for row in gru]), atol=1e-12)
    np.testing.assert_allclose(got["gru/output0"], gru[-1]["h"], atol=1e-12)
    assert got["lstm/output0"].shape == (5, 4) and got["out/output0"].shape == (1,)
    table = run_cli("trace", path, tmp_path / "x.npy", "--layer", "gru").stdout
    assert table.startswith("gru:") and "t=4" in table and "h_hat=[" in table and "lstm" not in table
    as_json = tmp_path / "t.json"
    assert run_cli("trace", path, tmp_path / "x.npy", "--sample", "1", "-o", as_json).exit_code == 0
    np.testing.assert_array_equal(np.array(json.loads(as_json.read_text())["values"]["gru/z"]), got["gru/z"])


@pytest.mark.parametrize("writer", ["k3-h5", "k2-h5"])
def test_perturbed_gate_bias_is_localised(writer, tmp_path, run_cli):
    model = build_with(
        writer,
        lambda k: k.Sequential(
            [
                k.Input(shape=(6, 3)),
                k.layers.LSTM(4, return_sequences=True, name="first"),
                k.layers.LSTM(3, return_sequences=True, name="second"),
                k.layers.Dense(2, name="head"),
            ]
        ),
    )
    path = save_model(model, writer, tmp_path)
    x = np.random.default_rng(3).standard_normal((2, 6, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    port = tmp_path / "port.h5"
    port.write_bytes(path.read_bytes())
    with h5py.File(port, "r+") as f:  # the port got the forget gate's bias of layer "second" wrong
        names = []
        f["model_weights/second"].visit(names.append)
        bias = f["model_weights/second/" + next(n for n in names if n.endswith("bias") or n.endswith("bias:0"))]
        value = bias[()]
        value[3:6] += 0.5  # gate f occupies columns units..2*units
        bias[...] = value
    assert run_cli("trace", port, tmp_path / "x.npy", "--sample", "1", "-o", tmp_path / "port_trace.npz").exit_code == 0
    result = run_cli(
        "check", path, tmp_path / "x.npy", "--expected-trace", tmp_path / "port_trace.npz", "--sample", "1"
    )
    assert result.exit_code == 1
    assert "expected trace: layer second, timestep 0, gate f: max abs diff" in result.stdout
    clean = tmp_path / "clean.npz"
    assert run_cli("trace", path, tmp_path / "x.npy", "-o", clean).exit_code == 0
    ok = run_cli("check", path, tmp_path / "x.npy", "--expected-trace", clean)
    assert ok.exit_code == 0 and "every layer, timestep and gate within tolerance" in ok.stdout


@pytest.mark.parametrize("writer", ["k3-keras", "k2-h5"])
def test_layerwise_against_keras_on_stacked_and_bidirectional(writer, tmp_path, run_cli):
    model = build_with(
        writer,
        lambda k: k.Sequential(
            [
                k.Input(shape=(7, 3)),
                k.layers.LSTM(5, return_sequences=True),
                k.layers.Bidirectional(k.layers.GRU(3, return_sequences=True)),
                k.layers.Dropout(0.2),
                k.layers.Bidirectional(k.layers.LSTM(2), merge_mode="sum"),
                k.layers.Dense(2),
            ]
        ),
    )
    path = save_model(model, writer, tmp_path)
    report = tmp_path / "r.json"
    result = run_cli("check", path, "--samples", "5", "--layerwise", "--json", report)
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["layerwise"]
    assert len(rows) == 5 and all(row["passed"] for row in rows)
    assert "every layer within tolerance" in result.stdout


def test_layerwise_finds_the_first_diverging_layer_and_timestep(tmp_path, run_cli):
    model = build_with(
        "k2-h5",
        lambda k: k.Sequential(
            [
                k.Input(shape=(6, 3)),
                k.layers.LSTM(4, return_sequences=True, name="plain"),
                k.layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid", name="hard"),
                k.layers.Dense(1, name="head"),
            ]
        ),
        weight_scale=2.0,
    )
    path = save_model(model, "k2-h5", tmp_path)
    result = run_cli("check", path, "--samples", "4", "--layerwise", "--semantics", "keras3")
    assert result.exit_code == 1
    assert "first divergence: layer hard output 0, timestep 0" in result.stdout
    assert "plain[0] (4, 6, 4): max abs" in result.stdout and "ok" in result.stdout.split("plain[0]")[1].split("\n")[0]


@pytest.mark.parametrize("writer", ["k3-keras", "k2-h5"])
def test_layerwise_on_a_stateful_model_runs_the_protocol_check_runs(writer, tmp_path, run_cli):
    """Both sides start from zero states and carry them batch by batch (Keras' intermediate run used
    to start from the states its main predict left behind: max abs 2 at the first layer)."""
    model = build_with(
        writer,
        lambda k: k.Sequential(
            [
                k.Input(shape=(5, 3), batch_size=2),
                k.layers.GRU(4, stateful=True, return_sequences=True),
                k.layers.LSTM(3, stateful=True, return_sequences=True),
                k.layers.Dense(2),
            ]
        ),
        seed=5,
    )
    path = save_model(model, writer, tmp_path)
    plain = run_cli("check", path, "--samples", "6")
    assert plain.exit_code == 0, plain.output
    report = tmp_path / "r.json"
    result = run_cli("check", path, "--samples", "6", "--layerwise", "--json", report)
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["layerwise"]
    assert len(rows) == 3 and all(row["passed"] and row["max_abs_diff"] < 1e-5 for row in rows), rows
    assert "every layer within tolerance" in result.stdout


@pytest.mark.skipif(not (CORPUS / "models").is_dir(), reason="../shared/corpus is absent")
def test_layerwise_on_the_stateful_corpus_gru_agrees_with_check(run_cli):
    """Corpus file 37, a stateful GRU 128 -> GRU 128 poem generator: check passes, and so does
    --layerwise; inside, float32 drift grows along the carried states but stays small."""
    (path,) = (CORPUS / "models").glob("37_*")
    assert run_cli("check", path).exit_code == 0
    result = run_cli("check", path, "--layerwise", "--json", "-")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["layerwise"]
    assert [row["layer"] for row in rows] == ["gru_2", "gru_3", "time_distributed_1"]
    assert max(row["max_abs_diff"] for row in rows) < 1e-4, rows  # was 2 when the states differed


def test_inspect_explains_the_tutorial_model(run_cli):
    text = run_cli("inspect", SAMPLES / "tutorial_keras2.h5").stdout
    assert "kernel (3, 20) = [W_i | W_f | W_c | W_o], each (3, 5)" in text
    assert "recurrent_kernel (5, 20) = [U_i | U_f | U_c | U_o], each (5, 5)" in text
    assert "bias (20,) = [b_i | b_f | b_c | b_o], each (5,)" in text
    assert (
        "saved by Keras 2.21.0" in text and "keras2 semantics" in text and "recurrent_activation=hard_sigmoid" in text
    )
    data = json.loads(run_cli("inspect", SAMPLES / "tutorial.keras", "--json").stdout)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert layers["lstm"]["output_shapes"] == [[None, 5]] and layers["lstm"]["parameters"] == 3 * 20 + 5 * 20 + 20
    assert layers["dense"]["output_shapes"] == [[None, 1]] and data["parameters"] == 186 and data["supported"]


def test_inspect_names_unsupported_layers_and_gru_bias_rows(tmp_path, run_cli):
    model = build_with(
        "k3-keras",
        lambda k: k.Sequential(
            [
                k.Input(shape=(4, 2)),
                k.layers.GRU(3, return_sequences=True),
                k.layers.Conv1DTranspose(2, 2, name="deconv"),
            ]
        ),
    )
    path = save_model(model, "k3-keras", tmp_path)
    result = run_cli("inspect", path)
    assert result.exit_code == 0
    assert "bias (2, 9) = [b_z | b_r | b_h], each (2, 3) (row 0: input bias, row 1: recurrent bias)" in result.stdout
    assert "deconv" in result.stdout and "not supported: layer class 'Conv1DTranspose'" in result.stdout
