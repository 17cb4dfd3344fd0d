"""Hostile and broken input: every crafted case gets its documented exit code and a one-line message
naming the problem; nothing crashes, nothing from a file runs, no user file is lost."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import hostile
from conftest import build_with, save_model


@pytest.mark.parametrize("make", hostile.CASES, ids=[c.__name__ for c in hostile.CASES])
def test_crafted_case(make, tmp_path, run_cli):
    args, code, fragment = make(tmp_path)
    result = run_cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("lstm-parity: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.npy").exists()  # nothing half-written on failure


def test_at_least_thirty_cases():
    assert len(hostile.CASES) >= 30


def _lambda_with_marker(marker):
    code = f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]"
    return lambda k: k.Sequential(
        [
            k.Input(shape=(4, 3)),
            k.layers.Lambda(eval(code), name="evil"),  # eval on purpose: the file must carry bytecode
            k.layers.LSTM(2),
        ]
    )


@pytest.mark.parametrize("writer", ["k3-keras", "k3-h5", "k2-h5"])
def test_lambda_payload_never_runs(writer, tmp_path, run_cli):
    marker = tmp_path / "MARKER"
    model = build_with(writer, _lambda_with_marker(marker))
    path = save_model(model, writer, tmp_path)
    marker.unlink()  # building the model ran it once, in this test, on purpose
    for args in (
        ("predict", path, "-o", tmp_path / "y.npy"),
        ("check", path),
        ("dump", path, "-o", tmp_path / "d.json"),
        ("check", path, "--no-keras"),
    ):
        result = run_cli(*args)
        if args[0] == "dump":
            assert result.exit_code == 0  # dumping reads the config as data; the bytecode stays a string
        else:
            assert result.exit_code == 3 and "layer 'evil' (Lambda)" in result.stderr
        assert not marker.exists()


def test_keras_side_refuses_lambda_bytecode_without_trust(tmp_path):
    from lstm_parity.errors import KerasSideError
    from lstm_parity.formats import open_model
    from lstm_parity.keras_runner import load_keras

    marker = tmp_path / "MARKER"
    model = build_with("k2-h5", _lambda_with_marker(marker))
    path = save_model(model, "k2-h5", tmp_path)
    marker.unlink()
    spec = open_model(path)
    layers = [(layer.class_name, layer.config) for layer in spec.layers]
    x = [np.zeros((1, 4, 3), np.float32)]
    with pytest.raises(KerasSideError, match="--trust-model-code"):
        load_keras(str(path), spec.file_format, spec.semantics, layers).predict(x)
    assert not marker.exists()
    load_keras(str(path), spec.file_format, spec.semantics, layers, trust_model_code=True).predict(x)
    assert marker.exists()  # what the flag is documented to allow, and why it is dangerous


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    from lstm_parity.atomicio import atomic_write

    target = tmp_path / "y.npy"
    target.write_bytes(b"precious")
    with pytest.raises(RuntimeError), atomic_write(str(target)) as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["y.npy"]


def test_existing_output_survives_a_failing_command(tmp_path, run_cli):
    out = tmp_path / "y.npy"
    out.write_bytes(b"previous result")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 9, 9), np.float32))
    result = run_cli("predict", hostile.KERAS, bad, "-o", out)
    assert result.exit_code == 2 and out.read_bytes() == b"previous result"


def _spin(path):
    while True:
        pass


def _segfault(path):
    import faulthandler
    import signal

    faulthandler.disable()  # the crash is the point; keep pytest's crash report out of the log
    os.kill(os.getpid(), signal.SIGSEGV)


def _fail(path):
    from lstm_parity.errors import UnsupportedError

    raise UnsupportedError(f"{path}: nope")


def test_sandbox_bounds_hangs_and_survives_crashes(monkeypatch):
    from lstm_parity.errors import BadInputError, UnsupportedError
    from lstm_parity.formats.sandbox import run_isolated

    monkeypatch.setenv("LSTM_PARITY_READ_TIMEOUT", "1")
    with pytest.raises(BadInputError, match="did not finish within 1 s"):
        run_isolated(_spin, "spin.h5")
    with pytest.raises(BadInputError, match="crashed reading the file"):
        run_isolated(_segfault, "crash.h5")
    with pytest.raises(UnsupportedError, match="spin.h5: nope"):
        run_isolated(_fail, "spin.h5")
    assert run_isolated(len, "abc") == 3


@pytest.mark.parametrize("make", hostile.CASES, ids=[c.__name__ for c in hostile.CASES])
def test_crafted_case_prints_no_python_warning(make, tmp_path):
    """The real console script under `python -W error`: any warning our computation (or a library it
    calls) raises would turn into an internal error here; a warning shown would break the one-line rule."""
    args, code, _ = make(tmp_path)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "lstm_parity", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Warning" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{model}", "{x}", "-o", "{dir}/y.npy", "--dtype", "float32"],
        ["trace", "{model}", "{x}", "--dtype", "float32"],
        ["check", "{model}", "{x}", "--no-keras", "--expected", "{x_out}", "--dtype", "float32", "-q"],
        ["inspect", "{model}"],
    ],
    ids=lambda c: c[0],
)
def test_overflowing_values_are_reported_not_warned(command, tmp_path):
    """Finite inputs near float32's limit overflow inside the gates: the numbers (inf, NaN) are the
    result and the report's business; stderr stays empty under `python -W error`."""
    x = np.full((2, 4, 3), 3e38, dtype=np.float32)  # (batch, time, features)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x_out.npy", np.zeros((2, 1), dtype=np.float32))
    fill = {"model": hostile.KERAS, "x": tmp_path / "x.npy", "x_out": tmp_path / "x_out.npy", "dir": tmp_path}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "lstm_parity", *(a.format(**fill) for a in command)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    assert result.stderr == "", result.stderr


@pytest.mark.parametrize(
    "command",
    [["predict", "-o", "y.npy"], ["predict", "-o", "y.npy", "--dtype", "float32"], ["trace"], ["check", "--no-keras"]]
    + [["dump", "-o", "d.json"], ["inspect"]],
    ids=" ".join,
)
def test_signalling_nan_weight_is_computed_not_warned(command, tmp_path):
    """Corrupted bytes can make a signalling NaN, whose mere cast to float64 raises NumPy's 'invalid
    value encountered in cast'. The NaN is the answer (the report's NaN rules judge it); stderr is empty."""
    snan = np.array([0x7F800001], dtype=np.uint32).view(np.float32)[0]

    def poison(f):
        bias = np.array(f["model_weights/dense/dense/bias:0"])
        bias[0] = snan
        hostile._replace_dataset(f, "model_weights/dense/dense/bias:0", data=bias)

    model = str(hostile._edit_h5(tmp_path, "snan.h5", poison))
    args = [command[0], model] + ([] if command[0] in ("dump", "inspect") else [str(hostile.X)]) + command[1:]
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "lstm_parity", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    if command[0] == "predict":
        assert np.isnan(np.load(tmp_path / "y.npy")).all()


def test_signalling_nan_in_expected_outputs_is_a_failure_not_a_warning(tmp_path):
    """An sNaN in a port's outputs: the cast to float64 in the comparison raised NumPy's warning."""
    snan = np.array([0x7F800001], dtype=np.uint32).view(np.float32)[0]
    port = np.zeros((8, 1), dtype=np.float32)
    port[3, 0] = snan
    np.save(tmp_path / "port.npy", port)
    args = ["check", str(hostile.KERAS), str(hostile.X), "--no-keras", "--expected", "port.npy", "-q"]
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "lstm_parity", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (1, "")
