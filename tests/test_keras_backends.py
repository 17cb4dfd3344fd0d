"""`keras:jax` and `keras:tensorflow`: Keras 3 on a chosen backend, in a child process, as a check runner.

Each model is loaded once per backend (module-scoped runners: a child's start-up costs seconds) and
predicted in two chunks, as the check flow feeds it; both backends must match the NumPy reference.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_parity
from conftest import build_with, save_model
from lstm_parity.errors import EXIT_BAD_INPUT, EXIT_KERAS_SIDE, BadInputError, KerasSideError
from lstm_parity.reference.forward import forward_batches
from lstm_parity.runners import keras_backend
from lstm_parity.runners.keras_backend import KerasBackendRunner, open_keras_backend
from lstm_parity.spec import ModelSpec

BACKENDS = ("jax", "tensorflow")
TIME, FEATURES, SAMPLES = 7, 3, 20
ATOL = 1e-5


def _lstm(k: Any) -> Any:
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.LSTM(5)])


def _gru(k: Any) -> Any:
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.GRU(5, reset_after=True, return_sequences=True)])


def _bidirectional(k: Any) -> Any:
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True))])


def _masked(k: Any) -> Any:
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.Masking(0.0), k.layers.LSTM(4)])


def _stateful(k: Any) -> Any:
    return k.Sequential([k.Input(batch_shape=(5, TIME, FEATURES)), k.layers.LSTM(4, stateful=True)])


MODELS: dict[str, Callable[[Any], Any]] = {
    "lstm": _lstm,
    "gru": _gru,
    "bidirectional": _bidirectional,
    "masked": _masked,
}


def _inputs(name: str) -> np.ndarray:
    """~20 seeded sequences; the masked model's are pre-padded (sample i starts with i % 5 zero steps)."""
    x = np.random.default_rng(1).standard_normal((SAMPLES, TIME, FEATURES)).astype(np.float32)  # (batch, time, feat)
    if name == "masked":
        for index in range(SAMPLES):
            x[index, : index % 5] = 0.0
    return x


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ModelSpec, np.ndarray]]:
    """Every model built with seeded weights, saved as .keras by Keras 3, read back as a spec."""
    folder = tmp_path_factory.mktemp("backends")
    models = {}
    for name, make in MODELS.items():
        path = save_model(build_with("k3-keras", make, seed=3), "k3-keras", folder, name)
        models[name] = (lstm_parity.load(str(path)), _inputs(name))
    return models


@pytest.fixture(scope="module", params=[(model, backend) for model in MODELS for backend in BACKENDS], ids=str)
def side(request: pytest.FixtureRequest, saved: dict) -> Iterator[tuple[str, KerasBackendRunner]]:
    """One runner per (model, backend), shared by the tests of this module, closed at the end."""
    model, backend = request.param
    runner = open_keras_backend(backend, saved[model][0])
    yield model, runner
    runner.close()
    assert runner.process.returncode == 0


def _two_chunks(runner: KerasBackendRunner, x: np.ndarray) -> np.ndarray:
    first = runner.predict([x[:10]], 0, 10)
    second = runner.predict([x[10:]], 10, SAMPLES)
    assert len(first) == len(second) == 1
    return np.concatenate([first[0], second[0]])


def test_backend_matches_the_reference_in_two_chunks(side, saved):
    model, runner = side
    spec, x = saved[model]
    reference = lstm_parity.predict(spec, [x])[0]
    theirs = _two_chunks(runner, x)
    assert theirs.shape == reference.shape
    np.testing.assert_allclose(theirs, reference, atol=ATOL, rtol=0)
    backend = runner.label.split(":")[1]
    assert runner.info.kind == "keras" and runner.info.label == f"keras:{backend}"
    assert runner.info.version.startswith("keras 3.") and f" / {backend} " in runner.info.version
    assert not runner.info.stateful_model


@pytest.mark.parametrize("side", [("lstm", backend) for backend in BACKENDS], indirect=True, ids=str)
def test_a_failed_request_is_one_line_and_the_child_serves_on(side, saved):
    model, runner = side
    spec, x = saved[model]
    with pytest.raises(KerasSideError) as caught:
        runner.predict([np.zeros((2, TIME, FEATURES + 2), np.float32)], 0, 2)
    assert caught.value.exit_code == EXIT_KERAS_SIDE and "\n" not in str(caught.value)
    assert runner.label in str(caught.value)
    np.testing.assert_allclose(runner.predict([x[:3]], 0, 3)[0], lstm_parity.predict(spec, [x[:3]])[0], atol=ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stateful_model_is_flagged_and_carries_states_across_chunks_on_tensorflow(backend, tmp_path):
    path = save_model(build_with("k3-keras", _stateful, seed=4), "k3-keras", tmp_path, "stateful")
    spec, x = lstm_parity.load(str(path)), _inputs("lstm")
    states: dict = {}
    reference = [forward_batches(spec, [part], batch_size=5, states=states).outputs[0] for part in (x[:10], x[10:])]
    with open_keras_backend(backend, spec) as runner:
        assert runner.info.stateful_model
        theirs = _two_chunks(runner, x)
    if backend == "tensorflow":
        assert runner.info.notes == ()
        np.testing.assert_allclose(theirs, np.concatenate(reference), atol=ATOL, rtol=0)
    else:  # Keras 3.15 on JAX starts every predict batch from zero states: the report says it may
        assert runner.info.notes == keras_backend.backend_notes("jax", stateful=True)


def test_jax_notes_that_stateful_layers_may_not_carry_states():
    assert keras_backend.backend_notes("jax", stateful=True)
    assert keras_backend.backend_notes("jax", stateful=False) == ()
    assert keras_backend.backend_notes("tensorflow", stateful=True) == ()


# ------------------------------------------------------------------------------ refusals and the child's life


def _refused(backend: str, spec: ModelSpec, **options: Any) -> str:
    with pytest.raises(KerasSideError) as caught:
        open_keras_backend(backend, spec, **options)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_KERAS_SIDE and "\n" not in message
    return message


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras2_file_is_refused_with_the_upgrade_command(backend, tmp_path):
    path = save_model(build_with("k2-h5", _lstm), "k2-h5", tmp_path, "old")
    spec = lstm_parity.load(str(path))
    assert spec.semantics == "keras2"
    message = _refused(backend, spec)
    assert "Keras 3 cannot load a Keras 1/2 file" in message and f"lstm-parity upgrade {path} NEW.keras" in message


@pytest.mark.parametrize(("backend", "why"), [("torch", "not supported yet"), ("numpy", "unknown backend 'numpy'")])
def test_unsupported_backend_is_refused(backend, why, saved):
    message = _refused(backend, saved["lstm"][0])
    assert why in message and "keras:tensorflow or keras:jax" in message


def test_json_dump_is_refused_as_for_any_keras_side(saved, run_cli, tmp_path):
    dump = tmp_path / "model.json"
    assert run_cli("dump", saved["lstm"][0].source, "-o", dump).exit_code == 0
    with pytest.raises(BadInputError) as caught:
        open_keras_backend("jax", lstm_parity.load(str(dump)))
    assert caught.value.exit_code == EXIT_BAD_INPUT and "JSON dump" in str(caught.value)


def test_missing_backend_package_names_the_extra(saved, monkeypatch):
    monkeypatch.setitem(keras_backend.BACKEND_PACKAGES, "jax", "lstm_parity_no_such_jax")
    message = _refused("jax", saved["lstm"][0])
    assert "lstm_parity_no_such_jax" in message and "pip install 'lstm-parity[jax]'" in message


def test_backend_that_fails_to_import_in_the_child_names_the_extra(saved, monkeypatch, tmp_path):
    fake = tmp_path / "fake" / "jax"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('jax simulated as missing')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    message = _refused("jax", saved["lstm"][0])
    assert "cannot import keras" in message and "pip install 'lstm-parity[jax]'" in message


def test_load_timeout_stops_the_child(saved):
    message = _refused("jax", saved["lstm"][0], load_timeout=0.01)
    assert "did not load the model within 0.01 s" in message


def test_close_ends_the_child_and_a_dead_child_is_one_line(saved):
    spec, x = saved["lstm"]
    runner = open_keras_backend("jax", spec)
    runner.predict([x[:2]], 0, 2)
    runner.close()
    assert runner.process.returncode == 0
    runner.close()  # twice is harmless

    runner = open_keras_backend("jax", spec)
    runner.process.kill()
    with pytest.raises(KerasSideError) as caught:
        runner.predict([x[:2]], 0, 2)
    assert "could not predict rows 0..2: the child was killed" in str(caught.value)
    runner.close()
    assert runner.process.returncode is not None


def test_messages_round_trip_and_never_carry_pickles():
    message = keras_backend.encode({"x0": np.arange(6, dtype=np.float32).reshape(2, 3), "error": np.array("no")})
    decoded = keras_backend.decode(message[keras_backend.HEADER.size :])
    assert decoded["x0"].dtype == np.float32 and decoded["x0"].shape == (2, 3) and str(decoded["error"]) == "no"
    with pytest.raises(ValueError, match="Python objects"):
        keras_backend.encode({"x0": np.array([object()])})
    pickled = io.BytesIO()
    np.savez(pickled, x0=np.array([{"a": 1}], dtype=object))  # what a hostile reply could hold
    with pytest.raises(ValueError, match="allow_pickle"):
        keras_backend.decode(pickled.getvalue())


def test_child_environment_fixes_the_backend_and_runs_this_lstm_parity(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    env = keras_backend.child_environment("jax")
    assert env["KERAS_BACKEND"] == "jax"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(lstm_parity.__file__).parent.parent)


def test_check_against_keras_jax_names_every_backend_in_one_report(tmp_path, run_cli):
    """`check --against keras:jax`: the in-process Keras side (TensorFlow), the JAX child and the
    reference in one report; the report names each backend."""

    def make(k):
        return k.Sequential([k.Input((6, 3)), k.layers.GRU(5, name="gru"), k.layers.Dense(2, name="dense")])

    path = save_model(build_with("k3-keras", make, seed=11), "k3-keras", tmp_path)
    result = run_cli("check", path, "--samples", "12", "--against", "keras:jax", "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["keras"]["backend"] == "tensorflow"
    assert [c["against"] for c in report["comparisons"]] == ["keras", "keras:jax"]
    assert report["comparisons"][1]["outputs"][0]["max_abs_diff"] < 1e-5
    text = run_cli("check", path, "--samples", "12", "--against", "keras:jax").stdout
    assert "on tensorflow" in text and "keras:jax" in text


def test_check_all_takes_keras_backends_in_against(tmp_path, run_cli):
    def make(k):
        return k.Sequential([k.Input((6, 3)), k.layers.LSTM(4, name="lstm"), k.layers.Dense(1, name="dense")])

    path = save_model(build_with("k3-keras", make, seed=12), "k3-keras", tmp_path)
    config = tmp_path / "p.toml"
    config.write_text(f'[[tool.lstm-parity.models]]\npath = "{path.name}"\nno_keras = true\nagainst = ["keras:jax"]\n')
    result = run_cli("check-all", config, "--json", "-")
    (model,) = json.loads(result.stdout)["models"]
    assert model["exit_code"] == 0, model["error"]
    assert [c["against"] for c in model["report"]["comparisons"]] == ["keras:jax"]
