"""The NumPy side never needs TensorFlow (nor ONNX Runtime or LiteRT): prove it in fresh interpreters where
they cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from conftest import ROOT, SAMPLES

# Every runtime and converter a runner may import: the core never imports any of them.
RUNTIMES = (
    "tensorflow",
    "keras",
    "tf_keras",
    "onnxruntime",
    "onnx",
    "ai_edge_litert",
    "tf2onnx",
    "tflite_micro",
    "openvino",
    "hls4ml",
    "yaml",
)

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {RUNTIMES!r}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked by test: {{name}}")
    sys.meta_path.insert(0, Block())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_predict_and_dump_run_without_tensorflow(tmp_path):
    out, dump = tmp_path / "y.npy", tmp_path / "d.json"
    proc = _run(f"""
        import sys
        from lstm_parity.cli import cli
        for args in (["predict", r"{SAMPLES / "tutorial_keras2.h5"}", r"{SAMPLES / "tutorial_keras2.input.npy"}",
                      "-o", r"{out}"],
                     ["dump", r"{SAMPLES / "tutorial.keras"}", "-o", r"{dump}"],
                     ["predict", r"{dump}", r"{SAMPLES / "tutorial.input.npy"}", "-o", r"{out}.2.npy"],
                     ["predict", r"{SAMPLES / "tutorial.keras"}", r"{SAMPLES / "tutorial.input.npy"}",
                      "-o", r"{out}.3.npy", "--chunk-size", "3"]):
            try:
                cli(args, standalone_mode=False)
            except SystemExit as exc:
                assert not exc.code, exc.code
        # BLOCKED: defined in the child by BLOCKER
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("LOADED", loaded)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout
    assert np.load(out).shape == (8, 1) and json.loads(dump.read_text())["schema_version"] == 1


def test_every_module_but_the_runner_imports_without_tensorflow():
    proc = _run("""
        import pkgutil, importlib, sys, lstm_parity
        names = [m.name for m in pkgutil.walk_packages(lstm_parity.__path__, "lstm_parity.")]
        for name in names:
            importlib.import_module(name)  # keras_runner imports Keras lazily, so it imports too
        print("MODULES", len(names))
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout and "MODULES" in proc.stdout


def test_keras_imports_live_only_in_keras_runner():
    offenders = []
    for path in (ROOT / "lstm_parity").rglob("*.py"):
        if path.name == "keras_runner.py":
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                f" {pkg}" in stripped.replace(",", " ") for pkg in ("tensorflow", "keras", "tf_keras")
            ):
                offenders.append(f"{path.name}: {stripped}")
    assert offenders == []
