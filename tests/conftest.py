"""Shared fixtures: small seeded Keras models built for real and saved by every writer.

Writers: "k3-keras" (Keras 3 .keras zip), "k3-h5" (Keras 3 legacy HDF5), "k2-h5" (tf_keras HDF5).
A model is described as a list of (class name, kwargs) after an Input of shape (time, features).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_parity.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
SAMPLES = ROOT / "sample_models"
WRITERS = ("k3-keras", "k3-h5", "k2-h5")


def keras_module(writer: str):
    from lstm_parity.keras_runner import import_keras

    return import_keras("tf_keras" if writer.startswith("k2") else "keras")


def build_model(
    writer: str,
    time: int | None,
    features: int,
    layers: list[tuple[str, dict]],
    seed: int = 0,
    functional: bool = False,
    weight_scale: float = 0.5,
):
    """Build a Keras model with `writer`'s Keras and give it seeded random weights (biases too)."""
    module = keras_module(writer)
    module.utils.set_random_seed(seed)
    inp = module.Input(shape=(time, features))
    made = [getattr(module.layers, cls)(**kwargs) for cls, kwargs in layers]
    if functional:
        x = inp
        for layer in made:
            x = layer(x)
        model = module.Model(inp, x)
    else:
        model = module.Sequential([inp, *made])
    return randomize(model, seed, weight_scale)


def randomize(model, seed: int = 0, weight_scale: float = 0.5):
    """Seeded random weights for every array (biases included); variances stay positive."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.weights:
        value = rng.standard_normal(tuple(variable.shape)) * weight_scale
        if "variance" in variable.name:
            value = np.abs(value) + 0.5
        values.append(value.astype(np.float32))
    model.set_weights(values)
    return model


def build_with(writer: str, make, seed: int = 0, weight_scale: float = 0.5):
    """Build any model: `make(keras_module)` returns it; weights are then randomized."""
    module = keras_module(writer)
    module.utils.set_random_seed(seed)
    return randomize(make(module), seed, weight_scale)


def save_model(model, writer: str, folder: Path, stem: str = "model") -> Path:
    path = folder / (stem + (".keras" if writer == "k3-keras" else ".h5"))
    model.save(path)
    return path


def keras_predict(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0, batch_size=32))


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def write_npy(folder: Path, name: str, array: np.ndarray) -> Path:
    path = folder / name
    np.save(path, array)
    return path
