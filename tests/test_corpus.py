"""Real saved models from public repositories (../shared/corpus, skipped when absent).

Every file computes (or is refused precisely); every file with expected/NN.npz matches what Keras
computed within 1e-4; `check` passes on every file the matching Keras loads here."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import CORPUS


def _rows():
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return []
    with open(manifest) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _rows()
WITH_EXPECTED = [r for r in ROWS if (CORPUS / "expected" / f"{r['id']}.npz").exists()]
WITHOUT_EXPECTED = [r for r in ROWS if r not in WITH_EXPECTED]
NEVER_BUILT = {"55"}  # a config whose weight groups are empty: no model to compute
pytestmark = pytest.mark.skipif(not ROWS, reason="../shared/corpus is absent")


def _inputs(data, tmp_path):
    """One input as .npy, several as .npz keyed x0, x1, ... (the documented positional keys)."""
    xs = sorted(k for k in data.files if k.startswith("x"))
    if len(xs) == 1:
        path = tmp_path / "x.npy"
        np.save(path, data["x0"])
    else:
        path = tmp_path / "x.npz"
        np.savez(path, **{k: data[k] for k in xs})
    return path


@pytest.mark.parametrize("row", WITH_EXPECTED, ids=[r["id"] for r in WITH_EXPECTED])
def test_corpus_predict_matches_expected(row, tmp_path, run_cli):
    data = np.load(CORPUS / "expected" / f"{row['id']}.npz")
    ys = sorted(k for k in data.files if k.startswith("y"))
    out = tmp_path / ("y.npy" if len(ys) == 1 else "y.npz")
    result = run_cli("predict", CORPUS / "models" / row["file"], _inputs(data, tmp_path), "-o", out)
    assert result.exit_code == 0, result.output
    got = np.load(out)
    preds = [got] if len(ys) == 1 else [got[k] for k in ys]
    for key, pred in zip(ys, preds, strict=True):
        diff = np.max(np.abs(pred - data[key].astype(np.float64)))
        assert diff <= 1e-4, f"{row['id']} {key}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("row", WITH_EXPECTED, ids=[r["id"] for r in WITH_EXPECTED])
def test_corpus_check_passes(row, tmp_path, run_cli):
    data = np.load(CORPUS / "expected" / f"{row['id']}.npz")
    result = run_cli("check", CORPUS / "models" / row["file"], _inputs(data, tmp_path))
    assert result.exit_code == 0, result.output
    assert "bit-identical" in result.stdout
    expected_package = "tf_keras" if row["reference"].startswith("tf_keras") else "keras 3"
    assert expected_package in result.stdout


@pytest.mark.parametrize("row", WITHOUT_EXPECTED, ids=[r["id"] for r in WITHOUT_EXPECTED])
def test_corpus_files_no_keras_can_load_still_compute(row, tmp_path, run_cli):
    result = run_cli("predict", CORPUS / "models" / row["file"], "-o", tmp_path / "y.npz", "--samples", "2")
    if row["id"] in NEVER_BUILT:
        assert result.exit_code == 2 and "never built" in result.stderr
        return
    assert result.exit_code == 0, result.output
    outputs = np.load(tmp_path / "y.npz")
    assert all(np.all(np.isfinite(outputs[k])) for k in outputs.files)
