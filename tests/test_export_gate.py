"""`check --against`: real exports, made in the suite, gated through the CLI with the real runtimes.

One session-scoped folder of small seeded models and their exports (tests/exports.py makes them
in-process); each test runs the CLI on them and reads the JSON report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, build_with, save_model
from exports import FEATURES, TIME, flex_tflite, fused_fixed_batch_lstm, to_onnx, to_tflite, unrolled_lstm

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tf2onnx")


@dataclass
class Gate:
    folder: Path

    def __getitem__(self, name: str) -> Path:
        return self.folder / name


# Layers are named: Keras numbers unnamed ones per process, and the rules below name the output.
def _lstm(k):
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.LSTM(6), k.layers.Dense(2, name="dense")])


def _gru_sequences(k):
    return k.Sequential(
        [
            k.Input((TIME, FEATURES)),
            k.layers.GRU(5, reset_after=False, return_sequences=True),
            k.layers.Dense(2, name="dense"),
        ]
    )


def _classifier(k):
    return k.Sequential(
        [k.Input((TIME, FEATURES)), k.layers.LSTM(16, unroll=True), k.layers.Dense(4, "softmax", name="scores")]
    )


@pytest.fixture(scope="session")
def gate(tmp_path_factory) -> Gate:
    folder = tmp_path_factory.mktemp("gate")
    lstm = build_with("k3-keras", _lstm, seed=1)
    save_model(lstm, "k3-keras", folder, "lstm")
    to_onnx(lstm, folder / "lstm.onnx")
    gru = build_with("k3-keras", _gru_sequences, seed=2)
    save_model(gru, "k3-keras", folder, "gru")
    to_onnx(gru, folder / "gru.onnx")
    fused = fused_fixed_batch_lstm(batch=2, seed=3)
    save_model(fused, "k2-h5", folder, "fused")
    to_tflite(fused, folder / "fused.tflite")
    unrolled = unrolled_lstm(seed=4)
    save_model(unrolled, "k2-h5", folder, "unrolled")
    to_tflite(unrolled, folder / "unrolled.tflite")
    classifier = build_with("k2-h5", _classifier, seed=5, weight_scale=1.0)
    save_model(classifier, "k2-h5", folder, "classifier")
    to_tflite(classifier, folder / "classifier_int8.tflite", quantize="dynamic")
    to_onnx(classifier, folder / "classifier.onnx")
    flex_tflite(folder / "flex.tflite", seed=6)
    x = np.random.default_rng(7).uniform(-1, 1, (40, TIME, FEATURES)).astype(np.float32)  # (batch, time, features)
    np.save(folder / "x.npy", x)
    return Gate(folder)


def _report(run_cli, *args) -> tuple[int, dict, str]:
    result = run_cli("check", *args, "--json", "-")
    return result.exit_code, json.loads(result.stdout) if result.stdout.startswith("{") else {}, result.stderr


def _side(report: dict, suffix: str) -> dict:
    (comparison,) = [c for c in report["comparisons"] if c["against"].endswith(suffix)]
    return comparison


def test_onnx_export_passes_with_keras_and_runs_twice(gate, run_cli):
    code, report, err = _report(run_cli, gate["lstm.keras"], gate["x.npy"], "--against", gate["lstm.onnx"])
    assert code == 0, err
    assert [c["against"] for c in report["comparisons"]] == ["keras", "onnxruntime lstm.onnx"]
    onnx = _side(report, "lstm.onnx")
    assert onnx["passed"] and onnx["profile"] == "float32" and onnx["runtime"]["kind"] == "onnxruntime"
    assert onnx["outputs"][0]["max_abs_diff"] < 1e-5 and onnx["outputs"][0]["cosine"] > 0.999999
    (second,) = report["second_passes"]
    assert second["passed"] and second["rows"] == 40 and second["max_diff"] < 1e-5
    assert "LSTM" in json.dumps(onnx["runtime"]["census"])


def test_onnx_loop_export_of_a_sequence_model_reports_per_timestep_error(gate, run_cli):
    code, report, err = _report(run_cli, gate["gru.keras"], gate["x.npy"], "--against", gate["gru.onnx"], "--no-keras")
    assert code == 0, err
    (out,) = _side(report, "gru.onnx")["outputs"]
    assert len(out["timestep_max_abs"]) == TIME and max(out["timestep_max_abs"]) == out["max_abs_diff"]
    assert "Loop" in json.dumps(_side(report, "gru.onnx")["runtime"]["census"])


def test_a_nudged_onnx_initializer_fails_naming_the_output(gate, run_cli, tmp_path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(gate["lstm.onnx"]))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(largest).copy()
    values += 1e-3  # every weight of the largest initializer
    largest.CopyFrom(numpy_helper.from_array(values, largest.name))
    nudged = tmp_path / "nudged.onnx"
    onnx.save(model, str(nudged))
    result = run_cli("check", gate["lstm.keras"], gate["x.npy"], "--against", nudged, "--no-keras")
    assert result.exit_code == 1, result.output
    assert "onnxruntime nudged.onnx" in result.stdout and "FAIL" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.rstrip().endswith("FAIL")]
    assert [row[:3] for row in rows] == [["dense", "onnxruntime", "nudged.onnx"]]  # the output and the export


def test_fused_tflite_lstm_state_leak_is_caught_by_default(gate, run_cli):
    code, report, _ = _report(run_cli, gate["fused.h5"], gate["x.npy"], "--against", gate["fused.tflite"])
    assert code == 1
    (second,) = report["second_passes"]
    assert not second["passed"] and second["max_diff"] > 1e-3
    assert second["message"].startswith("state carried between invocations: the same input differs by")
    assert "reset_all_variables()" in second["message"]
    result = run_cli("check", gate["fused.h5"], gate["x.npy"], "--against", gate["fused.tflite"])
    assert "carries state between invocations" in result.stdout.splitlines()[-1]


def test_unrolled_tflite_passes_on_repeated_invocations(gate, run_cli):
    code, report, err = _report(run_cli, gate["unrolled.h5"], gate["x.npy"], "--against", gate["unrolled.tflite"])
    assert code == 0, err
    assert _side(report, "unrolled.tflite")["runtime"]["kind"] == "litert"
    assert report["second_passes"][0]["passed"]


def test_quantized_tflite_passes_under_int8_and_fails_under_float32(gate, run_cli):
    args = (gate["classifier.h5"], "--samples", "64", "--no-keras", "--against", gate["classifier_int8.tflite"])
    code, report, err = _report(run_cli, *args)
    assert code == 0, err
    side = _side(report, "classifier_int8.tflite")
    assert side["profile"] == "int8" and side["outputs"][0]["top1_agreement"] is not None
    assert any("judged under the int8 profile" in note for note in report["notes"])
    code, report, _ = _report(run_cli, *args, "--profile", "float32")
    assert code == 1 and _side(report, "classifier_int8.tflite")["profile"] == "float32"


def test_require_adds_a_rule_that_can_fail(gate, run_cli):
    args = (gate["lstm.keras"], gate["x.npy"], "--no-keras", "--against", gate["lstm.onnx"])
    assert run_cli("check", *args, "--require", "dense:snr_db>=60").exit_code == 0
    result = run_cli("check", *args, "--require", "dense:max_abs<=1e-12")
    assert result.exit_code == 1 and "FAILED" in result.stdout and "max_abs" in result.stdout


def test_flex_tflite_is_refused_in_one_line(gate, run_cli):
    result = run_cli("check", gate["lstm.keras"], gate["x.npy"], "--no-keras", "--against", gate["flex.tflite"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 4 and len(lines) == 1 and "Flex" in lines[0] and "Traceback" not in result.output


def test_legacy_keras2_hard_sigmoid_h5_against_its_onnx_export(tmp_path, run_cli):
    from conftest import keras_module

    old = SAMPLES / "tutorial_keras2.h5"
    model = keras_module("k2-h5").models.load_model(old, compile=False)
    onnx_path = to_onnx(model, tmp_path / "tutorial_keras2.onnx")
    code, report, err = _report(run_cli, old, SAMPLES / "tutorial_keras2.input.npy", "--against", onnx_path)
    assert code == 0, err
    assert report["reference"]["semantics"] == "keras2" and _side(report, ".onnx")["passed"]


def test_two_exports_in_one_command_and_junit(gate, run_cli, tmp_path):
    junit = tmp_path / "r.xml"
    result = run_cli(
        "check",
        gate["unrolled.h5"],
        gate["x.npy"],
        "--against",
        gate["unrolled.tflite"],
        "--against",
        to_onnx(unrolled_lstm(seed=4), tmp_path / "unrolled.onnx"),
        "--junit",
        junit,
    )
    assert result.exit_code == 0, result.output
    assert "litert unrolled.tflite" in result.stdout and "onnxruntime unrolled.onnx" in result.stdout
    assert junit.read_text().count("second pass, no reset") == 2


def test_streamed_check_gates_an_export_too(gate, run_cli):
    code, report, err = _report(
        run_cli, gate["lstm.keras"], gate["x.npy"], "--against", gate["lstm.onnx"], "--chunk-size", "16"
    )
    assert code == 0, err
    assert any("streamed 40 samples" in note for note in report["notes"])
    assert _side(report, "lstm.onnx")["outputs"][0]["shape"] == [40, 2]


def test_check_all_takes_against(gate, run_cli, tmp_path):
    config = tmp_path / "parity.toml"
    config.write_text(
        f'[[tool.lstm-parity.models]]\nname = "leaky"\npath = "{gate["fused.h5"]}"\n'
        f'against = ["{gate["fused.tflite"]}"]\n'
        f'[[tool.lstm-parity.models]]\nname = "clean"\npath = "{gate["unrolled.h5"]}"\n'
        f'against = "{gate["unrolled.tflite"]}"\n'
    )
    result = run_cli("check-all", config, "--json", tmp_path / "all.json")
    assert result.exit_code == 1, result.output
    models = {m["name"]: m for m in json.loads((tmp_path / "all.json").read_text())["models"]}
    assert models["leaky"]["exit_code"] == 1 and models["clean"]["exit_code"] == 0
    assert not models["leaky"]["report"]["second_passes"][0]["passed"]


def test_against_a_file_of_another_kind_is_bad_usage(gate, run_cli):
    result = run_cli("check", gate["lstm.keras"], "--against", gate["x.npy"])
    assert result.exit_code == 2 and ".onnx (ONNX Runtime), .tflite (LiteRT)" in result.stderr


def test_a_stateful_model_export_carries_state_the_way_keras_does(tmp_path, run_cli):
    """stateful=True: Keras carries the states from batch to batch, and so must the export; the fused
    TFLite LSTM does, so it passes, and no second pass is run (carrying state is the point)."""

    def make(k):
        inputs = k.Input((TIME, FEATURES), batch_size=2, name="feats")
        return k.Model(inputs, k.layers.Dense(2)(k.layers.LSTM(8, stateful=True)(inputs)))

    model = build_with("k2-h5", make, seed=8)
    path = save_model(model, "k2-h5", tmp_path, "stateful")
    export = to_tflite(model, tmp_path / "stateful.tflite")
    x = np.random.default_rng(9).uniform(-1, 1, (8, TIME, FEATURES)).astype(np.float32)  # (batch, time, features)
    np.save(tmp_path / "x.npy", x)
    code, report, err = _report(run_cli, path, tmp_path / "x.npy", "--against", export)
    assert code == 0, err
    assert report["second_passes"] == [] and _side(report, "stateful.tflite")["passed"]
    assert any("states carried across predict batches" in note for note in report["notes"])


def test_check_all_reports_never_overwrite_an_export_or_an_input(gate, run_cli, tmp_path):
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(gate["lstm.onnx"].read_bytes())
    config = tmp_path / "p.toml"
    config.write_text(
        f'[[tool.lstm-parity.models]]\npath = "{gate["lstm.keras"]}"\ninput = "{gate["x.npy"]}"\n'
        f'against = "{victim}"\nno_keras = true\n'
    )
    for option, target in (("--json", victim), ("--junit", gate["x.npy"])):
        result = run_cli("check-all", config, "-q", option, target)
        assert result.exit_code == 2 and "refusing to overwrite an input file" in result.stderr
    assert victim.read_bytes() == gate["lstm.onnx"].read_bytes()


def test_junit_names_the_failed_profile_rule(gate, run_cli, tmp_path):
    junit = tmp_path / "r.xml"
    args = (gate["lstm.keras"], gate["x.npy"], "--no-keras", "--against", gate["lstm.onnx"], "--profile", "int8")
    result = run_cli("check", *args, "--require", "dense:snr_db>=500", "--junit", junit)
    assert result.exit_code == 1
    assert "snr_db" in junit.read_text() and "needs atol" not in junit.read_text()


def test_rules_and_options_are_checked_before_anything_runs(gate, run_cli, tmp_path):
    result = run_cli("check", gate["lstm.keras"], "--no-keras", "--require", "nope:snr_db>=1")
    assert result.exit_code == 2 and "no output named 'nope'" in result.stderr
    result = run_cli("check", gate["lstm.keras"], "--no-keras", "--atol", "inf")
    assert result.exit_code == 2 and "finite" in result.stderr
    config = tmp_path / "p.toml"
    config.write_text(
        f'[[tool.lstm-parity.models]]\npath = "{gate["lstm.keras"]}"\nno_keras = true\nprofile = "int4"\n'
    )
    result = run_cli("check-all", config, "--json", "-")
    (model,) = json.loads(result.stdout)["models"]
    assert model["exit_code"] == 2 and "int4" in model["error"]
