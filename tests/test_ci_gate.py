"""The CI gate: expected outputs from a port, per-output tolerances, NaN rules, JSON (validated
against its schema) and JUnit (parsed as XML), terminal vs plain output, and check-all over many
models in parallel."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import numpy as np
import pytest

from conftest import ROOT, SAMPLES, build_with, save_model
from lstm_parity.compare import compare_output
from lstm_parity.report.json_report import SCHEMA_PATH

SCHEMA = json.loads(SCHEMA_PATH.read_text())
TUTORIAL, TUTORIAL_X = SAMPLES / "tutorial.keras", SAMPLES / "tutorial.input.npy"


def test_port_simulated_by_perturbed_outputs_fails_with_the_numbers(tmp_path, run_cli):
    outputs = tmp_path / "outs"
    assert run_cli("check", TUTORIAL, TUTORIAL_X, "--save-outputs", outputs).exit_code == 0
    reference, keras = np.load(outputs / "reference.npy"), np.load(outputs / "keras.npy")
    assert np.max(np.abs(reference - keras)) < 1e-6
    port = reference.copy()
    port[3, 0] += 2e-3  # the port gets one element wrong
    np.save(tmp_path / "port.npy", port)
    report = tmp_path / "r.json"
    result = run_cli("check", TUTORIAL, TUTORIAL_X, "--expected", tmp_path / "port.npy", "--json", report)
    assert result.exit_code == 1
    assert "dense   expected" in result.stdout and "(3, 0)" in result.stdout and "FAIL" in result.stdout
    data = json.loads(report.read_text())
    jsonschema.validate(data, SCHEMA)
    keras_side, expected_side = data["comparisons"]
    assert keras_side["against"] == "keras" and keras_side["passed"]
    worst = expected_side["outputs"][0]
    assert expected_side["against"] == "expected" and not expected_side["passed"]
    assert worst["worst_index"] == [3, 0] and worst["max_abs_diff"] == pytest.approx(2e-3, rel=1e-3)
    assert worst["min_atol_to_pass"] == pytest.approx(2e-3 - 1e-5 * abs(reference[3, 0]), rel=1e-3)
    # the honest port passes
    np.save(tmp_path / "good.npy", reference)
    assert run_cli("check", TUTORIAL, TUTORIAL_X, "--expected", tmp_path / "good.npy", "--no-keras").exit_code == 0


def test_expected_with_no_keras_never_imports_tensorflow(tmp_path):
    out = tmp_path / "y.npy"
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
from lstm_parity.cli import cli
for args in (['predict', r'{TUTORIAL}', r'{TUTORIAL_X}', '-o', r'{out}'],
             ['check', r'{TUTORIAL}', r'{TUTORIAL_X}', '--no-keras', '--expected', r'{out}', '-q']):
    try:
        cli(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "PASS: 1/1 comparisons" in proc.stdout


def _two_outputs(k):
    inp = k.Input(shape=(5, 3))
    seq = k.layers.LSTM(4, return_sequences=True, name="seq")(inp)
    return k.Model(
        inp, [k.layers.Dense(2, name="head_a")(seq), k.layers.Dense(1, name="head_b")(k.layers.LSTM(3)(seq))]
    )


def test_per_output_tolerance_overrides(tmp_path, run_cli):
    model = build_with("k3-keras", _two_outputs)
    path = save_model(model, "k3-keras", tmp_path)
    outs = tmp_path / "outs"
    assert (
        run_cli("check", path, "--samples", "3", "--save-outputs", outs, "--save-inputs", tmp_path / "x.npy").exit_code
        == 0
    )
    ref = np.load(outs / "reference.npz")
    port = {"y0": ref["y0"], "y1": ref["y1"] + 5e-4}
    np.savez(tmp_path / "port.npz", **port)
    base = ("check", path, tmp_path / "x.npy", "--no-keras", "--expected", tmp_path / "port.npz")
    failing = run_cli(*base)
    assert failing.exit_code == 1 and "head_b" in failing.stdout
    assert run_cli(*base, "--atol", "head_b:1e-3").exit_code == 0
    assert run_cli(*base, "--atol", "1e-3").exit_code == 0
    result = run_cli(*base, "--atol", "nonsense:x")
    assert result.exit_code == 2 and "expected a number or OUTPUT:NUMBER" in result.stderr


def test_nan_and_inf_rules():
    ref = np.array([1.0, np.nan, np.inf, -np.inf, 2.0])
    same = compare_output("y", ref, ref.copy(), 0.0, 0.0)
    assert same.passed and same.nan_mismatches == 0 and same.max_abs_diff == 0.0
    other = ref.copy()
    other[0] = np.nan
    broken = compare_output("y", ref, other, 1.0, 1.0)
    assert not broken.passed and broken.nan_mismatches == 1 and broken.worst_index == (0,)
    flipped = ref.copy()
    flipped[2] = -np.inf
    assert not compare_output("y", ref, flipped, 1.0, 1.0).passed


def test_junit_and_json_for_check(tmp_path, run_cli):
    junit, report = tmp_path / "j.xml", tmp_path / "r.json"
    result = run_cli(
        "check",
        SAMPLES / "tutorial_keras2.h5",
        SAMPLES / "tutorial_keras2.input.npy",
        "--semantics",
        "keras3",
        "--junit",
        junit,
        "--json",
        report,
    )
    assert result.exit_code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1" and root.get("tests") == "2"
    failure = root.find(".//testcase[@name='dense vs keras']/failure")
    assert failure is not None and "max abs diff 0.0573" in failure.get("message")
    jsonschema.validate(json.loads(report.read_text()), SCHEMA)


def test_quiet_prints_only_the_verdict(run_cli):
    result = run_cli("check", TUTORIAL, TUTORIAL_X, "-q")
    assert result.stdout == "PASS: 1/1 comparisons within tolerance\n"


def _in_a_terminal(args, env_extra):
    """Run the CLI with stdout on a pseudo-terminal; returns what the terminal showed."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstm_parity", *map(str, args)], stdout=slave, stderr=slave, cwd=ROOT, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode(errors="replace"), proc.returncode


def test_terminal_gets_colour_and_no_color_or_pipes_get_plain_text(tmp_path):
    np.save(tmp_path / "y.npy", np.zeros((8, 1), np.float32))
    args = ["check", TUTORIAL, TUTORIAL_X, "--no-keras", "--expected", tmp_path / "y.npy"]
    coloured, code = _in_a_terminal(args, {"TERM": "xterm-256color"})
    assert code == 1 and "\x1b[" in coloured and "FAIL" in coloured
    plain, code = _in_a_terminal(args, {"NO_COLOR": "1", "TERM": "xterm-256color"})
    assert code == 1 and "\x1b[" not in plain and "FAIL: 0/1 comparisons" in plain
    piped = subprocess.run(
        [sys.executable, "-m", "lstm_parity", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert "\x1b[" not in piped.stdout and "FAIL: 0/1 comparisons" in piped.stdout


def test_check_all_mixed_models_in_parallel(tmp_path, run_cli):
    (tmp_path / "noise.h5").write_bytes(os.urandom(2048))
    config = tmp_path / "parity.toml"
    config.write_text(f"""
[tool.lstm-parity]
samples = 3

[[tool.lstm-parity.models]]
name = "tutorial"
path = "{TUTORIAL}"
input = "{TUTORIAL_X}"

[[tool.lstm-parity.models]]
name = "keras2-as-keras3"
path = "{SAMPLES / "tutorial_keras2.h5"}"
semantics = "keras3"

[[tool.lstm-parity.models]]
name = "noise"
path = "noise.h5"

[[tool.lstm-parity.models]]
name = "legacy"
path = "{SAMPLES / "tutorial_legacy.h5"}"
atol = ["1e-5", "dense:1e-4"]
""")
    junit, report = tmp_path / "all.xml", tmp_path / "all.json"
    result = run_cli("check-all", config, "--jobs", "2", "--junit", junit, "--json", report)
    assert result.exit_code == 2, result.output  # the worst: an unreadable model
    lines = result.stdout.splitlines()
    assert any(line.startswith("tutorial ") and "PASS" in line for line in lines)
    assert any(line.startswith("keras2-as-keras3") and "FAIL" in line for line in lines)
    assert any(line.startswith("noise") and line.rstrip().endswith("ERROR (bad input)  -") for line in lines)
    errors = lines[lines.index("errors:") + 1 :]  # the message in full, below the table
    assert any(line.startswith("  noise: ") and "not a Keras model file" in line for line in errors)
    assert any(line.startswith("legacy") and "PASS" in line for line in lines)
    assert "2/4 models passed, 1 failed, 1 could not be checked (exit 2)" in result.stdout
    data = json.loads(report.read_text())
    jsonschema.validate(data, SCHEMA)
    assert [m["exit_code"] for m in data["models"]] == [0, 1, 2, 0]
    root = ET.parse(junit).getroot()
    assert root.get("errors") == "1" and root.get("failures") == "1"
    assert run_cli("check-all", config, "-q").stdout.startswith("FAIL: 2/4 models passed")


def test_check_all_reads_pyproject_and_reports_bad_config(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("check-all")
    assert result.exit_code == 2 and "pyproject.toml: no such file" in result.stderr
    (tmp_path / "pyproject.toml").write_text(f'[[tool.lstm-parity.models]]\npath = "{TUTORIAL}"\nbogus = 1\n')
    result = run_cli("check-all")
    assert result.exit_code == 2 and "unknown keys ['bogus']" in result.stderr
    for key, value, fragment in [
        ("tflm_arena", '"lots"', "tflm_arena must be a positive whole number of bytes, not 'lots'"),
        ("tflm_arena", "65536.7", "not 65536.7"),
        ("tflm_arena", "0", "not 0"),
        ("openvino_precision", '"fp32"', "openvino_precision must be one of auto, f32, bf16, f16, not 'fp32'"),
    ]:
        (tmp_path / "pyproject.toml").write_text(f'[[tool.lstm-parity.models]]\npath = "{TUTORIAL}"\n{key} = {value}\n')
        result = run_cli("check-all")
        assert result.exit_code == 2 and fragment in result.stderr and len(result.stderr.splitlines()) == 1, key
    (tmp_path / "pyproject.toml").write_text(f'[[tool.lstm-parity.models]]\npath = "{TUTORIAL}"\n')
    assert run_cli("check-all").exit_code == 0


def test_repository_check_all_config_passes(run_cli, monkeypatch):
    """The [tool.lstm-parity] table in this repository's pyproject.toml is what the documented GitHub
    Actions job and pre-commit hook run."""
    monkeypatch.chdir(ROOT)
    result = run_cli("check-all", "-q")
    assert (
        result.exit_code == 0
        and result.stdout == "PASS: 3/3 models passed, 0 failed, 0 could not be checked (exit 0)\n"
    )
    workflow = (ROOT / ".github" / "workflows" / "parity.yml").read_text()
    assert (
        "lstm-parity check-all" in workflow
        and "lstm-parity check-all" in (ROOT / ".pre-commit-config.yaml").read_text()
    )
