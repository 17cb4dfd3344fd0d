"""Real saved models from public repositories (../shared/corpus): LSTM/Dense-only files must
`predict` within 1e-4 of what Keras computed (expected/NN.npz), and `check` must pass on them."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import CORPUS

FOUNDATION_LAYERS = {"InputLayer", "LSTM", "Dense", "Dropout", "Activation"}


def _rows():
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return []
    with open(manifest) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r for r in rows if set(r["layers"].split(">")) <= FOUNDATION_LAYERS
            and (CORPUS / "expected" / f"{r['id']}.npz").exists()]


ROWS = _rows()
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


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_corpus_predict_matches_expected(row, tmp_path, run_cli):
    data = np.load(CORPUS / "expected" / f"{row['id']}.npz")
    ys = sorted(k for k in data.files if k.startswith("y"))
    out = tmp_path / ("y.npy" if len(ys) == 1 else "y.npz")
    result = run_cli("predict", CORPUS / "models" / row["file"], _inputs(data, tmp_path), "-o", out)
    assert result.exit_code == 0, result.output
    got = np.load(out)
    preds = [got] if len(ys) == 1 else [got[k] for k in ys]
    for key, pred in zip(ys, preds):
        diff = np.max(np.abs(pred - data[key].astype(np.float64)))
        assert diff <= 1e-4, f"{row['id']} {key}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_corpus_check_passes(row, tmp_path, run_cli):
    data = np.load(CORPUS / "expected" / f"{row['id']}.npz")
    x_path = _inputs(data, tmp_path)
    result = run_cli("check", CORPUS / "models" / row["file"], x_path, "--atol", "1e-4")
    assert result.exit_code == 0, result.output
    assert "bit-identical" in result.stdout
