"""Models saved with a reduced-precision dtype policy: the reference computes the true math, and Keras,
which computes in float16 / bfloat16, is judged under that precision's profile (the report says so)."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from conftest import build_with, save_model
from lstm_parity.report.json_report import SCHEMA_PATH


def _model(policy: str):
    def make(k):
        k.mixed_precision.set_global_policy(policy)
        try:
            return k.Sequential(
                [
                    k.Input((12, 4)),
                    k.layers.LSTM(16, return_sequences=True, name="lstm"),
                    k.layers.GRU(8, name="gru"),
                    k.layers.Dense(3, activation="softmax", dtype="float32", name="scores"),
                ]
            )
        finally:
            k.mixed_precision.set_global_policy("float32")

    return make


@pytest.mark.parametrize(("policy", "profile"), [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_reduced_precision_policy_is_checked_under_its_profile(policy, profile, tmp_path, run_cli):
    path = save_model(build_with("k3-keras", _model(policy), seed=3), "k3-keras", tmp_path)
    x = np.random.default_rng(0).uniform(-1, 1, (64, 12, 4)).astype(np.float32)  # (batch, time, features)
    np.save(tmp_path / "x.npy", x)
    result = run_cli("check", path, tmp_path / "x.npy", "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    (keras_side,) = report["comparisons"]
    assert keras_side["profile"] == profile
    assert any(f"judged under the {profile} profile" in note for note in report["notes"])
    (out,) = keras_side["outputs"]
    assert out["max_abs_diff"] > 1e-5  # Keras really computed in reduced precision: atol/rtol would fail
    assert out["top1_agreement"] is not None  # softmax output: class scores
    # the same Keras outputs as a file of expected outputs, which --profile judges: float32 fails them
    assert run_cli("check", path, tmp_path / "x.npy", "-q", "--save-outputs", tmp_path / "out").exit_code == 0
    args = ("check", path, tmp_path / "x.npy", "--no-keras", "--expected", tmp_path / "out" / "keras.npy", "-q")
    assert run_cli(*args).exit_code == 1
    assert run_cli(*args, "--profile", profile).exit_code == 0


def test_a_weight_changed_in_a_float16_model_still_fails_its_profile(tmp_path, run_cli):
    model = build_with("k3-keras", _model("mixed_float16"), seed=4)
    path = save_model(model, "k3-keras", tmp_path)
    kernel = model.get_layer("lstm").weights[0]
    kernel.assign(kernel.numpy() * 1.5)  # a port (here Keras itself) with a wrong weight
    np.save(tmp_path / "port.npy", np.asarray(model.predict(np.zeros((4, 12, 4), np.float32) + 0.5, verbose=0)))
    np.save(tmp_path / "x.npy", np.zeros((4, 12, 4), np.float32) + 0.5)
    result = run_cli("check", path, tmp_path / "x.npy", "--no-keras", "--expected", tmp_path / "port.npy")
    assert result.exit_code == 1, result.output  # expected outputs default to float32: wrong anyway
    result = run_cli(
        "check", path, tmp_path / "x.npy", "--no-keras", "--expected", tmp_path / "port.npy", "--profile", "float16"
    )
    assert result.exit_code == 1 and "FAILED" in result.stdout
