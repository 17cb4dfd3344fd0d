"""Every exit code of the CLI, with the one-line messages users see."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import SAMPLES, build_model, save_model, write_npy

TUTORIAL = SAMPLES / "tutorial.keras"
TUTORIAL_X = SAMPLES / "tutorial.input.npy"
KERAS2 = SAMPLES / "tutorial_keras2.h5"
KERAS2_X = SAMPLES / "tutorial_keras2.input.npy"


def _one_line_error(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lstm-parity: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_exit_0_pass_with_numbers(run_cli):
    result = run_cli("check", TUTORIAL, TUTORIAL_X)
    assert result.exit_code == 0
    for text in ("keras 3.15", "keras3 semantics", "bit-identical", "max abs", "min atol", "PASS: 1/1"):
        assert text in result.stdout


def test_exit_1_forced_wrong_semantics(run_cli):
    result = run_cli("check", KERAS2, KERAS2_X, "--semantics", "keras3")
    assert result.exit_code == 1, result.output
    assert "tf_keras" in result.stdout and "keras3 semantics (forced by --semantics)" in result.stdout
    assert "FAIL" in result.stdout


def test_exit_1_tolerance_too_tight_reports_needed_atol(run_cli, tmp_path):
    report = tmp_path / "r.json"
    result = run_cli("check", TUTORIAL, TUTORIAL_X, "--atol", "0", "--rtol", "0", "--json", report)
    data = json.loads(report.read_text())
    needed = data["comparisons"][0]["outputs"][0]["min_atol_to_pass"]
    assert needed > 0 and result.exit_code == 1 and data["exit_code"] == 1 and data["passed"] is False
    assert run_cli("check", TUTORIAL, TUTORIAL_X, "--atol", repr(needed), "--rtol", "0").exit_code == 0


def test_json_to_stdout(run_cli):
    result = run_cli("check", KERAS2, KERAS2_X, "--json", "-")
    data = json.loads(result.stdout)
    assert data["schema_version"] == 2 and data["passed"] is True and data["exit_code"] == 0
    assert data["keras"]["package"] == "tf_keras"
    assert data["reference"] == {"dtype": "float64", "semantics": "keras2", "semantics_source": "file"}
    assert data["weights"]["identical"] is True and data["weights"]["arrays"] == 5
    assert data["comparisons"][0]["against"] == "keras"
    out = data["comparisons"][0]["outputs"][0]
    assert out["max_abs_diff"] < 1e-6 and out["shape"] == [8, 1] and len(out["worst_index"]) == 2


@pytest.mark.parametrize(
    "content,fragment",
    [
        (b"", "empty"),
        (b"hello, not a model", "not a Keras model file"),
        (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "not a readable HDF5 file"),
        (b"PK\x03\x04garbage", "not a readable zip archive"),
    ],
)
def test_exit_2_unreadable_model(run_cli, tmp_path, content, fragment):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(content)
    result = run_cli("check", bad, TUTORIAL_X)
    assert result.exit_code == 2
    _one_line_error(result, str(bad), fragment)


def test_exit_2_missing_files(run_cli, tmp_path):
    result = run_cli("predict", tmp_path / "nope.h5", TUTORIAL_X, "-o", tmp_path / "y.npy")
    assert result.exit_code == 2
    _one_line_error(result, "nope.h5", "cannot read")
    result = run_cli("check", TUTORIAL, tmp_path / "nope.npy")
    assert result.exit_code == 2
    _one_line_error(result, "nope.npy", "no such file")


@pytest.mark.parametrize(
    "array,fragment",
    [
        (np.zeros((2, 4, 7), np.float32), "expected (batch, 4, 3)"),
        (np.zeros((2, 5, 3), np.float32), "axis 1 must be 4"),
        (np.zeros((0, 4, 3), np.float32), "zero samples"),
        (np.zeros((2, 2, 4, 3), np.float32), "expected (batch, 4, 3)"),
        (np.full((2, 4, 3), np.nan, np.float32), "NaN/Inf"),
        (np.zeros((2, 4, 3), np.complex64), "dtype complex64; expected float32 values of shape (batch, 4, 3)"),
    ],
)
def test_exit_2_bad_input_arrays(run_cli, tmp_path, array, fragment):
    x_path = write_npy(tmp_path, "x.npy", array)
    result = run_cli("check", TUTORIAL, x_path)
    assert result.exit_code == 2
    _one_line_error(result, str(x_path), fragment)


def test_exit_2_pickled_input_is_never_loaded(run_cli, tmp_path):
    x_path = tmp_path / "x.npy"
    np.save(x_path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    result = run_cli("predict", TUTORIAL, x_path, "-o", tmp_path / "y.npy")
    assert result.exit_code == 2
    _one_line_error(result, "pickled")
    assert not (tmp_path / "y.npy").exists()


def test_exit_2_refuses_to_overwrite_input(run_cli, tmp_path):
    x_path = write_npy(tmp_path, "x.npy", np.load(TUTORIAL_X))
    before = x_path.read_bytes()
    result = run_cli("predict", TUTORIAL, x_path, "-o", x_path)
    assert result.exit_code == 2
    _one_line_error(result, "refusing to overwrite an input file")
    assert x_path.read_bytes() == before


def test_exit_2_click_usage(run_cli):
    assert run_cli("check").exit_code == 2
    assert run_cli("check", TUTORIAL, TUTORIAL_X, "--dtype", "float16").exit_code == 2


def test_exit_3_unsupported_layer(run_cli, tmp_path):
    model = build_model(
        "k3-keras",
        5,
        2,
        [
            ("Conv1DTranspose", dict(filters=3, kernel_size=2, name="conv1d_transpose")),
            ("LSTM", dict(units=2)),
            ("Dense", dict(units=1)),
        ],
    )
    path = save_model(model, "k3-keras", tmp_path)
    x_path = write_npy(tmp_path, "x.npy", np.zeros((1, 5, 2), np.float32))
    for args in (("check", path, x_path), ("predict", path, x_path, "-o", tmp_path / "y.npy")):
        result = run_cli(*args)
        assert result.exit_code == 3
        _one_line_error(
            result,
            str(path),
            "layer 'conv1d_transpose' (Conv1DTranspose)",
            "is not supported",
            "supported: ",
            "LSTM",
            "GRU",
        )


def test_exit_3_unsupported_option(run_cli, tmp_path):
    model = build_model(
        "k2-h5",
        5,
        2,
        [
            ("LSTM", dict(units=3, recurrent_activation="hard_sigmoid")),
            ("Dense", dict(units=1, activation="selu", name="dense")),
        ],
    )
    path = save_model(model, "k2-h5", tmp_path)
    import h5py

    with h5py.File(path, "r+") as f:  # an activation no Keras generation ships
        f.attrs["model_config"] = f.attrs["model_config"].replace('"selu"', '"fancy_act"')
    x_path = write_npy(tmp_path, "x.npy", np.zeros((1, 5, 2), np.float32))
    result = run_cli("predict", path, x_path, "-o", tmp_path / "y.npy")
    assert result.exit_code == 3
    _one_line_error(result, "layer 'dense' (Dense)", "activation 'fancy_act'", "keras2 semantics", "supported:")


def test_exit_4_keras2_extra_missing(run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # import tf_keras now raises ImportError
    result = run_cli("check", KERAS2, KERAS2_X)
    assert result.exit_code == 4
    _one_line_error(result, "cannot import tf_keras", "pip install 'lstm-parity[keras2]'")


def test_exit_4_keras_cannot_load(run_cli, tmp_path):
    """A file our reader computes but Keras 3 refuses: an LSTM config key it does not know."""
    model = build_model("k3-h5", 4, 3, [("LSTM", dict(units=2)), ("Dense", dict(units=1))])
    path = save_model(model, "k3-h5", tmp_path)
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = f.attrs["model_config"].replace('"units": 2,', '"units": 2, "time_major": false,')
    x_path = write_npy(tmp_path, "x.npy", np.zeros((1, 4, 3), np.float32))
    assert run_cli("predict", path, x_path, "-o", tmp_path / "y.npy").exit_code == 0
    result = run_cli("check", path, x_path)
    assert result.exit_code == 4
    _one_line_error(result, str(path), "keras 3.", "cannot load the file", "time_major")


def test_help_documents_exit_codes_and_examples(run_cli):
    top = run_cli("--help").stdout
    for code in (
        "0  pass",
        "1  parity failure",
        "2  bad usage",
        "3  the model uses",
        "4  Keras or an export's runtime",
    ):
        assert code in top
    for command in ("check", "dump", "predict", "check-all", "inspect", "trace", "upgrade"):
        text = run_cli(command, "--help").stdout
        assert "Examples:" in text and f"lstm-parity {command}" in text


def test_debug_shows_traceback(run_cli, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"junk")
    result = run_cli("--debug", "predict", bad, TUTORIAL_X, "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_exit_5_internal_error_is_one_line(run_cli, tmp_path, monkeypatch):
    import lstm_parity.reference.forward as forward_module

    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(forward_module, "forward", broken)
    result = run_cli("predict", TUTORIAL, TUTORIAL_X, "-o", tmp_path / "y.npy")
    assert result.exit_code == 5
    lines = result.stderr.strip().splitlines()
    assert lines == ["lstm-parity: internal error: RuntimeError: a bug of ours (re-run with --debug for the traceback)"]


def test_generated_inputs_follow_seed_range_and_timesteps(run_cli, tmp_path):
    from conftest import build_model, save_model

    model = build_model("k3-keras", None, 3, [("LSTM", dict(units=2))])  # open time axis
    path = save_model(model, "k3-keras", tmp_path)

    def generate(name, *options):
        assert (
            run_cli("predict", path, "-o", tmp_path / "y.npy", "--save-inputs", tmp_path / name, *options).exit_code
            == 0
        )
        return np.load(tmp_path / name)

    a = generate("a.npy", "--samples", "5", "--seed", "3", "--timesteps", "9", "--range", "2,3")
    b = generate("b.npy", "--samples", "5", "--seed", "3", "--timesteps", "9", "--range", "2,3")
    c = generate("c.npy", "--samples", "5", "--seed", "4", "--timesteps", "9", "--range", "2,3")
    assert a.shape == (5, 9, 3) and a.dtype == np.float32 and a.min() >= 2 and a.max() < 3
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    result = run_cli("predict", path, "-o", tmp_path / "y.npy", "--range", "3,1")
    assert result.exit_code == 2 and "LO must be below HI" in result.stderr
