"""`lstm-parity export MODEL OUT.tflite --target tflm`: each file written is loaded here in the plain
tflite_micro interpreter, fed several sequences one invoke() after another, the whole pass twice, never
reset(), and compared with Keras' own predict on the source model; what TFLite Micro cannot run is refused
(exit 3, one line) and leaves nothing behind. Models are tiny; each test converts only what it checks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import SAMPLES, build_with, keras_module, keras_predict, save_model
from exports import FEATURES, run_tflm
from lstm_parity.runners.census import tflite_census

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")  # the [export] extra: the converters come with it

TIME = 5


def _stack(k):
    """LSTM -> GRU -> Dense over an open time axis: TFLite Micro needs --timesteps."""
    inputs = k.Input((None, FEATURES), name="feats")
    x = k.layers.LSTM(4, return_sequences=True)(inputs)
    return k.Model(inputs, k.layers.Dense(2)(k.layers.GRU(3)(x)))


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".lstm-parity-")]


def _assert_runs_like(path, expected: np.ndarray, x: np.ndarray, atol: float = 1e-5) -> None:
    """The file in plain TFLite Micro, every row its own invoke(), two passes without reset: Keras' numbers
    both times, and the same both times (no state carried from one sequence to the next)."""
    first, second = run_tflm(path, x)
    assert first.shape == expected.shape
    np.testing.assert_allclose(first, expected, atol=atol)
    np.testing.assert_array_equal(second, first)


def test_a_keras3_stack_needs_timesteps_then_runs_exactly_in_tflite_micro(tmp_path, run_cli):
    model = build_with("k3-keras", _stack, seed=1)
    source = save_model(model, "k3-keras", tmp_path, "stack")
    out, report = tmp_path / "stack.tflite", tmp_path / "report.json"
    refused = run_cli("export", source, out, "--target", "tflm")
    assert refused.exit_code == 3 and len(refused.stderr.splitlines()) == 1, refused.output
    assert "input 'feats' has an open time axis" in refused.stderr and "pass --timesteps T" in refused.stderr
    assert not out.exists()
    result = run_cli("export", source, out, "--target", "tflm", "--timesteps", TIME, "--json", report)
    assert result.exit_code == 0, result.output
    assert f"PASS: written {out}" in result.stdout and _leftovers(tmp_path) == []
    assert "target     TFLite Micro" in result.stdout and "tflm stack.tflite" in result.stdout
    assert "strategy   auto -> unrolled: unroll=True at 5 timesteps (--timesteps), a fixed batch of 1" in result.stdout
    data = json.loads(report.read_text())
    assert data["target"]["runtime"] == "tflm" and data["target"]["runtime_version"] and data["target"]["written"]
    assert data["strategy"]["input_shapes"] == [[1, TIME, FEATURES]] and data["census"]["arena"]["used"] > 0
    assert data["gates"][0]["check"]["second_passes"][0]["passed"]
    census = tflite_census(str(out))
    assert census["loops"] == {} and census["fused"] == {} and census["variable_tensors"] == []
    x = np.random.default_rng(2).uniform(-1, 1, (6, TIME, FEATURES)).astype(np.float32)  # (6, time, features)
    _assert_runs_like(out, keras_predict(model, x), x)


def test_the_keras2_hard_sigmoid_sample_runs_exactly_in_tflite_micro(tmp_path, run_cli):
    source, inputs = SAMPLES / "tutorial_keras2.h5", SAMPLES / "tutorial_keras2.input.npy"
    out = tmp_path / "tutorial.tflite"
    result = run_cli("export", source, out, inputs, "--target", "tflm")
    assert result.exit_code == 0, result.output
    assert "lstm.kernel (gates f, i, o x1.2)" in result.stdout and "proof on INPUT" in result.stdout
    assert "no state carried between invocations" in result.stdout
    x = np.load(inputs).astype(np.float32)  # (8, 4, 3)
    tf_keras_model = keras_module("k2-h5").models.load_model(source, compile=False)
    _assert_runs_like(out, keras_predict(tf_keras_model, x), x)


def test_a_stateful_model_becomes_a_loop_whose_states_tflite_micro_carries(tmp_path, run_cli):
    def make(k):
        inputs = k.Input((TIME, FEATURES), batch_size=1)
        return k.Model(inputs, k.layers.Dense(2)(k.layers.GRU(3, stateful=True)(inputs)))

    model = build_with("k3-keras", make, seed=3)
    source = save_model(model, "k3-keras", tmp_path, "stateful")
    out = tmp_path / "stateful.tflite"
    result = run_cli("export", source, out, "--target", "tflm")
    assert result.exit_code == 0, result.output
    assert "strategy   auto -> loop: a WHILE loop at 5 timesteps (the model's), a fixed batch of 1" in result.stdout
    x = np.random.default_rng(4).uniform(-1, 1, (4, TIME, FEATURES)).astype(np.float32)
    expected = model.predict(x, batch_size=1, verbose=0)  # Keras carries the states from batch to batch
    first, second = run_tflm(out, x)  # an app feeding consecutive sequences, never resetting
    np.testing.assert_allclose(first, expected, atol=1e-5)
    assert np.max(np.abs(second - first)) > 1e-4  # the second pass continues from the first one's states


def _rel_l2(other: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(other - reference) / np.linalg.norm(reference))


def test_int8_is_proven_in_tflite_micro_under_the_int8_profile(tmp_path, run_cli):
    def make(k):  # LSTM(16): big enough for full int8 to pass the int8 profile
        return k.Sequential([k.Input((TIME, FEATURES)), k.layers.LSTM(16), k.layers.Dense(4, activation="softmax")])

    model = build_with("k3-keras", make, seed=5)
    source = save_model(model, "k3-keras", tmp_path, "softmax")
    out, report = tmp_path / "int8.tflite", tmp_path / "report.json"
    result = run_cli(
        "export", source, out, "--target", "tflm", "--quantize", "int8", "--samples", "64", "--json", report
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["quantize"]["profile"] == "int8" and "int8" in data["census"]["quantized_types"]
    assert data["gates"][0]["check"]["comparisons"][0]["profile"] == "int8" and data["target"]["runtime"] == "tflm"
    x = np.random.default_rng(6).uniform(-1, 1, (32, TIME, FEATURES)).astype(np.float32)
    first, second = run_tflm(out, x)
    np.testing.assert_array_equal(second, first)
    expected = keras_predict(model, x)
    assert _rel_l2(first, expected) <= 0.0316  # the int8 profile's rule
    assert np.max(np.abs(first - expected)) > 1e-6  # really quantized


def test_what_tflite_micro_cannot_run_is_refused_in_one_line(tmp_path, run_cli):
    keras3 = keras_module("k3-keras")
    plain = tmp_path / "plain.keras"
    keras3.Sequential([keras3.Input((TIME, FEATURES)), keras3.layers.LSTM(3), keras3.layers.Dense(2)]).save(plain)
    masked = tmp_path / "masked.keras"
    keras3.Sequential(
        [keras3.Input((TIME, FEATURES)), keras3.layers.Masking(), keras3.layers.LSTM(3), keras3.layers.Dense(2)]
    ).save(masked)
    conv = tmp_path / "conv.keras"  # Keras 3 cannot unroll ConvLSTM2D; its loop slices 5-D tensors
    keras3.Sequential(
        [keras3.Input((3, 4, 4, 1)), keras3.layers.ConvLSTM2D(2, 3, padding="same"), keras3.layers.Flatten()]
    ).save(conv)
    cases = [
        ((masked,), "TFLite Micro has no kernels for the ops masks convert to (REDUCE_ANY, SELECT)"),
        ((plain, "--quantize", "float16"), "DEQUANTIZE takes no float16 weights"),
        ((plain, "--quantize", "dynamic"), "FULLY_CONNECTED takes no int8 weights with float32 inputs"),
        ((plain, "--strategy", "fused"), "keeps h and c in variable tensors"),
        ((conv,), "TFLite Micro cannot run the converted file: "),  # converted, then refused by TFLite Micro
    ]
    out = tmp_path / "out.tflite"
    for args, reason in cases:
        result = run_cli("export", args[0], out, "--target", "tflm", *args[1:])
        assert result.exit_code == 3, (args, result.output)
        assert reason in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert "STRIDED_SLICE" in result.stderr  # TFLite Micro's own words, the kernel named
    result = run_cli("export", plain, tmp_path / "out.onnx", "--target", "tflm")
    assert result.exit_code == 2 and "--target tflm runs .tflite files" in result.stderr
    assert not out.exists() and not (tmp_path / "out.onnx").exists() and _leftovers(tmp_path) == []


def test_without_tflite_micro_it_exits_4_naming_the_extra(tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import fails, as when it is not installed
    out = tmp_path / "m.tflite"
    result = run_cli("export", SAMPLES / "tutorial_keras2.h5", out, "--target", "tflm")
    assert result.exit_code == 4 and len(result.stderr.splitlines()) == 1, result.output
    assert "pip install 'lstm-parity[tflm]'" in result.stderr and not out.exists()
