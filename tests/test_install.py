"""`pip install lstm-parity` (no extra) is enough for everything that does not run a runtime.

Proof: build the wheel from this tree, install it with its core dependencies only into a fresh virtual
environment, and run the reference-only commands there on a shipped sample model; a command that needs a
missing runtime exits 4 with one line naming the extra to install. Slow-ish (a venv and a pip install,
from the pip cache) but part of `make test`: it is the only test that sees the package as users get it.
The venv is built once per run, shared by the xdist workers.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SAMPLES

PYTHON311 = shutil.which("python3.11")
MODEL, MODEL_X = SAMPLES / "tutorial.keras", SAMPLES / "tutorial.input.npy"
SCHEMA = ROOT / "lstm_parity" / "report" / "check_report.schema.json"
KERAS2, KERAS2_X = SAMPLES / "tutorial_keras2.h5", SAMPLES / "tutorial_keras2.input.npy"
RUNTIMES = ("tensorflow", "tensorflow-cpu", "keras", "tf-keras", "jax", "jaxlib", "onnxruntime", "onnx")
RUNTIMES += ("ai-edge-litert", "tf2onnx")


@dataclass
class CoreInstall:
    wheel: Path
    bin: Path
    work: Path

    def run(self, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run `lstm-parity ARGS` from the fresh venv, in a folder outside the source tree."""
        return self.command(self.bin / "lstm-parity", *args, env=env)

    def command(self, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            cwd=self.work,
            env={**_clean_env(), **(env or {})},
            timeout=300,
        )


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would let the venv see this tree or the dev venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "KERAS_BACKEND", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def _build(root: Path) -> CoreInstall:
    """Copy the files a wheel is built from (so the build writes nothing into the tree), build the wheel,
    and install it with its core dependencies only into a fresh venv."""
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "lstm_parity", source / "lstm_parity", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    env = _clean_env()
    proc = subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    _check(proc, "pip wheel")
    (wheel,) = wheels.glob("lstm_parity-*.whl")
    venv = root / "venv"
    _check(subprocess.run([PYTHON311, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300), "venv")
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    _check(proc, "pip install WHEEL")
    work = root / "work"
    work.mkdir()
    return CoreInstall(wheel, venv / "bin", work)


@pytest.fixture(scope="session")
def core(tmp_path_factory) -> CoreInstall:
    if PYTHON311 is None or subprocess.run([PYTHON311, "-m", "venv", "--help"], capture_output=True).returncode:
        pytest.skip("python3.11 -m venv is not available")
    # Under xdist every worker has its own session: build once in the run's shared folder, under a lock.
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "core-install"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "done.json"
        if not done.exists():
            if (root / "failed").exists():
                pytest.fail("building the core install failed in another worker")
            try:
                install = _build(root)
            except BaseException:
                (root / "failed").touch()
                raise
            done.write_text(json.dumps({"wheel": str(install.wheel), "bin": str(install.bin)}))
        paths = json.loads(done.read_text())
    work = base / "core-work"
    work.mkdir(exist_ok=True)
    return CoreInstall(Path(paths["wheel"]), Path(paths["bin"]), work)


def test_wheel_carries_every_module_and_the_schema(core):
    names = set(zipfile.ZipFile(core.wheel).namelist())
    shipped = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "lstm_parity").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert "lstm_parity/report/check_report.schema.json" in shipped
    assert shipped <= names, sorted(shipped - names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(core.wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line and "python_version" not in line
    ]  # tomli is required on Python 3.10 only
    assert sorted(re.split(r"[<>=!~;\[ ]", r)[0] for r in requires) == [
        "click",
        "h5py",
        "numpy",
        "rich",
        "threadpoolctl",
    ]


def test_core_install_has_no_runtime_and_runs_the_installed_copy(core):
    listed = core.command(core.bin / "python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
    _check(listed, "pip list")
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "lstm-parity" in installed
    assert installed.isdisjoint(RUNTIMES), sorted(installed & set(RUNTIMES))
    where = core.command(core.bin / "python", "-c", "import lstm_parity; print(lstm_parity.__file__)")
    _check(where, "import lstm_parity")
    assert Path(where.stdout.strip()).is_relative_to(core.bin.parent), where.stdout
    schema = core.command(
        core.bin / "python",
        "-c",
        "from lstm_parity.report.json_report import SCHEMA_PATH; print(SCHEMA_PATH.read_text())",
    )
    _check(schema, "read the installed schema")
    assert json.loads(schema.stdout) == json.loads(SCHEMA.read_text())


def test_reference_commands_run_without_any_runtime(core):
    work = core.work
    _check(core.run("predict", MODEL, MODEL_X, "-o", work / "y.npy"), "predict")
    assert np.load(work / "y.npy").shape == (8, 1)

    _check(core.run("dump", MODEL, "-o", work / "dump.json"), "dump")
    assert json.loads((work / "dump.json").read_text())["schema_version"] == 1
    _check(core.run("predict", work / "dump.json", MODEL_X, "-o", work / "y_dump.npy"), "predict from a dump")
    np.testing.assert_array_equal(np.load(work / "y_dump.npy"), np.load(work / "y.npy"))

    inspected = core.run("inspect", MODEL, "--json")
    _check(inspected, "inspect")
    assert json.loads(inspected.stdout)
    _check(core.run("inspect", MODEL), "inspect (text)")

    _check(core.run("trace", MODEL, MODEL_X, "--sample", "1", "-o", work / "trace.npz"), "trace")
    with np.load(work / "trace.npz") as trace:
        assert any(key.endswith("/h") for key in trace.files), trace.files

    checked = core.run("check", MODEL, MODEL_X, "--no-keras", "--expected", work / "y.npy")
    _check(checked, "check --no-keras --expected")
    assert "PASS" in checked.stdout

    as_json = core.run("check", MODEL, MODEL_X, "--no-keras", "--expected", work / "y.npy", "--json", "-")
    _check(as_json, "check --json -")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(as_json.stdout), json.loads(SCHEMA.read_text()))


def _one_line_exit_4(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 4, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lstm-parity: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,extra",
    [
        (("check", MODEL, MODEL_X), "keras"),
        (("check", KERAS2, KERAS2_X), "keras2"),
        (("upgrade", KERAS2, "new.keras"), "keras"),
    ],
    ids=["check-keras3", "check-keras2", "upgrade"],
)
def test_a_missing_keras_exits_4_naming_the_extra(core, args, extra):
    _one_line_exit_4(core.run(*args), f"pip install 'lstm-parity[{extra}]'")
    assert not (core.work / "new.keras").exists()


def test_keras_backend_jax_names_the_jax_extra(core):
    _one_line_exit_4(core.run("check", MODEL, MODEL_X, env={"KERAS_BACKEND": "jax"}), "pip install 'lstm-parity[jax]'")


@pytest.mark.parametrize(
    "name,head,extra",
    [("model.onnx", b"\x08\x07\x12\x00", "onnx"), ("model.tflite", b"\x00\x00\x00\x00TFL3", "tflite")],
    ids=["onnx", "tflite"],
)
def test_a_missing_export_runtime_exits_4_naming_the_extra(core, tmp_path, name, head, extra):
    export = tmp_path / name  # starts like the format, so the runtime is what is missing
    export.write_bytes(head + bytes(24))
    proc = core.run("check", MODEL, MODEL_X, "--no-keras", "--against", export)
    _one_line_exit_4(proc, f"pip install 'lstm-parity[{extra}]'")
