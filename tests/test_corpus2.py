"""The attention corpus: real LSTM/GRU models with attention next to them (../shared/corpus2, skipped
when absent). Every manifest line's `expect` holds: `match` files are within 1e-4 of the Keras outputs
in expected/NN.npz; `refuse3:CLASS` files exit 3 naming CLASS in one line (never exit 2, never a number);
`run` files compute."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import ROOT

CORPUS2 = ROOT.parent / "shared" / "corpus2"


def _rows() -> list[dict[str, str]]:
    manifest = CORPUS2 / "manifest.tsv"
    if not manifest.exists():
        return []
    with open(manifest) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _rows()
pytestmark = pytest.mark.skipif(not ROWS, reason="../shared/corpus2 is absent")


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


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['id']}-{r['expect']}" for r in ROWS])
def test_corpus2_expectation_holds(row, tmp_path, run_cli):
    path = CORPUS2 / "models" / row["file"]
    kind, _, cls = row["expect"].partition(":")
    if kind == "match":
        data = np.load(CORPUS2 / "expected" / f"{row['id']}.npz")
        ys = sorted(k for k in data.files if k.startswith("y"))
        out = tmp_path / ("y.npy" if len(ys) == 1 else "y.npz")
        result = run_cli("predict", path, _inputs(data, tmp_path), "-o", out)
        assert result.exit_code == 0, result.output
        got = np.load(out)
        preds = [got] if len(ys) == 1 else [got[k] for k in ys]
        for key, pred in zip(ys, preds, strict=True):
            diff = np.max(np.abs(pred.reshape(data[key].shape) - data[key].astype(np.float64)))
            assert diff <= 1e-4, f"{row['id']} {key}: max abs diff {diff:.3g}"
    elif kind == "refuse3":
        result = run_cli("predict", path, "-o", tmp_path / "y.npy", "--samples", "2")
        line = result.stderr.strip()
        assert result.exit_code == 3, result.output
        assert cls in line and len(line.splitlines()) == 1 and "Traceback" not in line
        assert not (tmp_path / "y.npy").exists()
    else:
        assert kind == "run", f"unknown expectation {row['expect']!r}"
        result = run_cli("predict", path, "-o", tmp_path / "y.npz", "--samples", "2")
        assert result.exit_code == 0, result.output
