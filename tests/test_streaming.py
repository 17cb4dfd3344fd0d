"""Inputs bigger than memory: `predict` and `check` read INPUT chunk by chunk (memory-mapped .npy,
stored or compressed .npz), give the numbers of the whole-array path, report indices in the
whole input, keep peak memory bounded, and never leave a partial output behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jsonschema
import numpy as np
import pytest

import lstm_parity
from conftest import ROOT, SAMPLES, build_with, save_model
from lstm_parity.chunked_io import open_rows
from lstm_parity.formats import open_model
from lstm_parity.reference.forward import predict_batches

TUTORIAL = ROOT / "sample_models" / "tutorial.keras"
SCHEMA = ROOT / "lstm_parity" / "report" / "check_report.schema.json"


@pytest.fixture(scope="module")
def two_in_two_out(tmp_path_factory):
    """A functional model with two sequence inputs and two outputs (one per timestep)."""

    def make(k):
        a, b = k.Input((7, 3), name="left"), k.Input((7, 2), name="right")
        seq = k.layers.LSTM(5, return_sequences=True)(k.layers.Concatenate()([a, b]))
        return k.Model(
            [a, b],
            [
                k.layers.Dense(2, name="last")(k.layers.GRU(4)(seq)),
                k.layers.TimeDistributed(k.layers.Dense(1), name="per_step")(seq),
            ],
        )

    model = build_with("k3-keras", make, seed=7)
    path = save_model(model, "k3-keras", tmp_path_factory.mktemp("two"))
    return model, path


def _inputs(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (rows, 7, 3)).astype(np.float32), rng.uniform(-1, 1, (rows, 7, 2)).astype(np.float32))


@pytest.mark.parametrize("container", ["stored-npz", "compressed-npz"])
def test_streamed_predict_equals_whole_array_predict(tmp_path, run_cli, two_in_two_out, container):
    model, path = two_in_two_out
    left, right = _inputs(301)
    source = tmp_path / "x.npz"
    (np.savez if container == "stored-npz" else np.savez_compressed)(source, left=left, right=right)
    result = run_cli("predict", path, source, "-o", tmp_path / "y.npz", "--chunk-size", 64)
    assert result.exit_code == 0, result.output
    streamed = np.load(tmp_path / "y.npz")
    assert sorted(streamed.files) == ["last", "per_step", "y0", "y1"]
    whole = predict_batches(open_model(str(path)), [left, right])
    for key, expected in zip(("y0", "y1"), whole, strict=True):
        assert streamed[key].shape == expected.shape
        np.testing.assert_allclose(streamed[key], expected, rtol=0, atol=1e-12)
    keras_out = model.predict([left, right], verbose=0)
    np.testing.assert_allclose(streamed["last"], keras_out[0], atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".lstm-parity")] == []


def test_mapped_npy_rows_read_the_same_after_their_pages_are_released(tmp_path):
    x = np.random.default_rng(1).uniform(-1, 1, (5000, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (reader,) = open_rows(str(tmp_path / "x.npy")).values()
    assert reader.shape == x.shape and reader.dtype == np.float32
    np.testing.assert_array_equal(reader.read(1200, 1300), x[1200:1300])
    reader.release(0, 1300)  # pages dropped: reading again still gives the file's values
    np.testing.assert_array_equal(reader.read(1200, 1300), x[1200:1300])
    reader.close()


def test_stateful_model_streams_whole_batches_with_states_carried(tmp_path, run_cli):
    def make(k):
        return k.Sequential([k.Input((5, 2), batch_size=4), k.layers.LSTM(3, stateful=True), k.layers.Dense(1)])

    model = build_with("k3-keras", make, seed=2)
    path = save_model(model, "k3-keras", tmp_path)
    x = np.random.default_rng(3).uniform(-1, 1, (40, 5, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run_cli("predict", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--chunk-size", 10)  # -> 8
    assert result.exit_code == 0, result.output
    whole = predict_batches(open_model(str(path)), [x], batch_size=4)[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(whole, model.predict(x, batch_size=4, verbose=0), atol=1e-5)


def test_streamed_check_against_keras_and_expected_reports_global_worst_index(tmp_path, run_cli):
    x = np.random.default_rng(4).uniform(-1, 1, (200, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run_cli("check", TUTORIAL, x_path := tmp_path / "x.npy", "--chunk-size", 64, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "streamed 200 samples" in result.output and "chunks of 64" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    (keras_side,) = report["comparisons"]
    assert keras_side["against"] == "keras" and keras_side["outputs"][0]["shape"] == [200, 1]
    assert report["weights"]["identical"] and report["input_shapes"] == [[200, 4, 3]]
    whole = run_cli("check", TUTORIAL, x_path, "--json", "-")  # the same check on the whole array
    assert json.loads(whole.stdout)["comparisons"][0]["outputs"][0]["max_abs_diff"] == pytest.approx(
        keras_side["outputs"][0]["max_abs_diff"], abs=1e-7
    )

    port = predict_batches(open_model(str(TUTORIAL)), [x])[0].astype(np.float32)
    port[150, 0] += 0.01  # a port that is wrong on one sample of the third chunk
    np.save(tmp_path / "port.npy", port)
    result = run_cli(
        "check", TUTORIAL, x_path, "--chunk-size", 64, "--no-keras", "--expected", tmp_path / "port.npy", "--json", "-"
    )
    assert result.exit_code == 1
    (against,) = json.loads(result.stdout)["comparisons"]
    worst = against["outputs"][0]
    assert against["against"] == "expected" and worst["worst_index"] == [150, 0]
    assert worst["max_abs_diff"] == pytest.approx(0.01, abs=1e-6) and not worst["passed"]
    np.save(tmp_path / "short.npy", port[:199])
    result = run_cli("check", TUTORIAL, x_path, "--chunk-size", 64, "--no-keras", "--expected", tmp_path / "short.npy")
    assert result.exit_code == 1 and "(199, 1)" in result.output


def test_nan_in_a_later_chunk_names_its_index_and_leaves_no_output(tmp_path, run_cli):
    x = np.random.default_rng(5).uniform(-1, 1, (300, 4, 3)).astype(np.float32)
    x[257, 2, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    result = run_cli("predict", TUTORIAL, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--chunk-size", 100)
    assert result.exit_code == 2
    assert "first at index (257, 2, 1)" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_streaming_refuses_options_that_need_whole_arrays(tmp_path, run_cli):
    np.save(tmp_path / "x.npy", np.zeros((10, 4, 3), np.float32))
    result = run_cli("check", TUTORIAL, tmp_path / "x.npy", "--chunk-size", 4, "--layerwise")
    assert result.exit_code == 2 and "--layerwise" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(
        "predict",
        TUTORIAL,
        tmp_path / "x.npy",
        "-o",
        tmp_path / "y.npy",
        "--chunk-size",
        4,
        "--save-inputs",
        tmp_path / "copy.npy",
    )
    assert result.exit_code == 2 and not (tmp_path / "y.npy").exists()


def test_forged_header_and_wrong_shape_are_refused_before_any_compute(tmp_path, run_cli):
    good = tmp_path / "x.npy"
    np.save(good, np.zeros((1000, 4, 3), np.float32))
    forged = tmp_path / "forged.npy"
    forged.write_bytes(good.read_bytes()[:5000])  # header promises 1000 rows, 5000 bytes follow
    result = run_cli("predict", TUTORIAL, forged, "-o", tmp_path / "y.npy", "--chunk-size", 10)
    assert result.exit_code == 2 and "truncated or forged" in result.stderr
    np.save(tmp_path / "wrong.npy", np.zeros((1000, 4, 5), np.float32))
    result = run_cli("predict", TUTORIAL, tmp_path / "wrong.npy", "-o", tmp_path / "y.npy", "--chunk-size", 10)
    assert result.exit_code == 2 and "axis 2 must be 3" in result.stderr
    assert not (tmp_path / "y.npy").exists()


def test_progress_bar_on_a_terminal_only(tmp_path):
    from test_ci_gate import _in_a_terminal

    np.save(tmp_path / "x.npy", np.zeros((4000, 4, 3), np.float32))
    args = ["predict", TUTORIAL, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--chunk-size", 500]
    shown, code = _in_a_terminal(args, {"TERM": "xterm-256color"})
    assert code == 0 and "predict" in shown and "samples" in shown
    piped = subprocess.run(
        [sys.executable, "-m", "lstm_parity", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == ""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
def test_peak_memory_stays_bounded_on_an_input_bigger_than_it(tmp_path):
    """400 MB of input through `predict` (float64, so 800 MB if it were loaded and cast whole):
    the process's own peak RSS stays under 400 MB."""
    rows = 400 * 1024**2 // (4 * 3 * 4)
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(rows, 4, 3))
    for start in range(0, rows, 1_000_000):
        big[start : start + 1_000_000] = 0.5
    big.flush()
    del big
    script = textwrap.dedent(f"""
        import sys
        from lstm_parity.cli import main
        sys.argv = ["lstm-parity", "predict", {str(TUTORIAL)!r}, {str(tmp_path / "big.npy")!r},
                    "-o", {str(tmp_path / "y.npy")!r}]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        # VmHWM: this process image's peak RSS (ru_maxrss would include the pre-exec copy of pytest)
        print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1])
    assert peak_mb < 400, f"peak RSS {peak_mb} MB streaming a 400 MB input"
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert y.shape == (rows, 1) and np.all(y[-5:] == y[0])  # same input row, same output, to the last row
    (tmp_path / "big.npy").unlink()


def test_python_api_streams_files(tmp_path):
    import lstm_parity

    x = np.random.default_rng(8).uniform(-1, 1, (90, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    spec = lstm_parity.load(str(TUTORIAL))
    lstm_parity.predict_file(spec, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), chunk_rows=25)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), lstm_parity.predict(spec, [x])[0], rtol=0, atol=1e-12)
    np.save(tmp_path / "port.npy", np.load(tmp_path / "y.npy"))
    report = lstm_parity.check_file(
        spec, str(tmp_path / "x.npy"), keras=False, chunk_rows=25, expected_path=str(tmp_path / "port.npy")
    )
    assert report.passed and report.expected.outputs[0].shape == (90, 1)


def test_the_api_functions_stay_functions_after_use():
    """Python sets a package attribute to a submodule on its first import: `lstm_parity.trace` once
    became the module `lstm_parity.trace` after the first call, and the next call failed."""
    spec = lstm_parity.load(str(TUTORIAL))
    x = np.load(SAMPLES / "tutorial.input.npy")
    for _ in range(2):
        lstm_parity.trace(spec, [x], sample=0)
        report = lstm_parity.check(spec, [x], keras=False)
        result = lstm_parity.compare(spec.output_names, list(report.reference_outputs), list(report.reference_outputs))
        assert result.passed
    assert all(callable(getattr(lstm_parity, name)) for name in ("check", "compare", "trace", "predict", "load"))


def test_streamed_expected_with_too_few_rows_is_a_shape_failure_not_a_crash(tmp_path, run_cli):
    """A compressed .npz of expected outputs with 30 of 40 rows: its whole shape is wrong, so no chunk of
    it is read (reading past its end crashed), and the report gives both whole shapes."""
    x = np.random.default_rng(5).uniform(-1, 1, (40, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ours = predict_batches(open_model(str(TUTORIAL)), [x])[0]
    np.savez_compressed(tmp_path / "short.npz", y0=ours[:30].astype(np.float32))
    result = run_cli(
        "check", TUTORIAL, tmp_path / "x.npy", "--no-keras", "--expected", tmp_path / "short.npz",
        "--chunk-size", "7", "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    (out,) = json.loads(result.stdout)["comparisons"][0]["outputs"]
    assert out["shape"] == [40, 1] and out["shape_mismatch"] == "reference (40, 1) vs other (30, 1)"
