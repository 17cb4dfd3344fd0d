"""Files we write get the permissions a plain open() would give them: 0666 less the umask for a new
file, the existing mode when replacing one (the temp-file-and-rename write must not keep mkstemp's 0600)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from lstm_parity.atomicio import current_umask

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MODEL = SAMPLES / "tutorial.keras"
INPUT = SAMPLES / "tutorial.input.npy"


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# Every command that writes a file, as (arguments, the file it writes), relative to a tmp folder.
WRITERS = {
    "predict -o .npy": (["predict", MODEL, INPUT, "-o", "{out}/y.npy"], "y.npy"),
    "predict -o .npz": (["predict", MODEL, INPUT, "-o", "{out}/y.npz"], "y.npz"),
    "predict streamed": (["predict", MODEL, INPUT, "-o", "{out}/s.npy", "--chunk-size", "3"], "s.npy"),
    "dump -o": (["dump", MODEL, "-o", "{out}/d.json"], "d.json"),
    "check --json": (["check", MODEL, INPUT, "--no-keras", "-q", "--json", "{out}/r.json"], "r.json"),
    "check --junit": (["check", MODEL, INPUT, "--no-keras", "-q", "--junit", "{out}/r.xml"], "r.xml"),
    "check --save-outputs": (["check", MODEL, INPUT, "--no-keras", "-q", "--save-outputs", "{out}"], "reference.npy"),
    "trace -o": (["trace", MODEL, INPUT, "-o", "{out}/t.npz"], "t.npz"),
    "upgrade": (["upgrade", SAMPLES / "tutorial_keras2.h5", "{out}/up.keras"], "up.keras"),
    "check-all --json": (["check-all", "{out}/models.toml", "-q", "--json", "{out}/all.json"], "all.json"),
}


def _run(run_cli, name: str, folder: Path) -> Path:
    args, written = WRITERS[name]
    (folder / "models.toml").write_text(f'[[tool.lstm-parity.models]]\npath = "{MODEL}"\nno_keras = true\n')
    result = run_cli(*[str(a).format(out=folder) for a in args])
    assert result.exit_code == 0, result.output
    return folder / written


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_new_file_gets_0666_less_the_umask(tmp_path, run_cli, name):
    with umask(0o022):
        assert current_umask() == 0o022
        assert mode_of(_run(run_cli, name, tmp_path)) == 0o644


@pytest.mark.parametrize("name", ["predict -o .npy", "predict streamed", "dump -o", "check --json"])
def test_private_umask_gives_a_private_file(tmp_path, run_cli, name):
    with umask(0o077):
        assert mode_of(_run(run_cli, name, tmp_path)) == 0o600


@pytest.mark.parametrize(
    "name", ["predict -o .npy", "predict streamed", "dump -o", "check --json", "trace -o", "upgrade"]
)
def test_replaced_file_keeps_its_mode(tmp_path, run_cli, name):
    target = tmp_path / WRITERS[name][1]
    target.write_bytes(b"old")
    target.chmod(0o640)
    with umask(0o022):
        assert mode_of(_run(run_cli, name, tmp_path)) == 0o640
    assert target.read_bytes() != b"old"


def test_no_temporary_file_is_left_behind(tmp_path, run_cli):
    for name in WRITERS:
        _run(run_cli, name, tmp_path)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".lstm-parity-")]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.load(tmp_path / "s.npy"), rtol=0, atol=1e-12)
