"""What the reference does not implement is refused with exit 3, naming layer, class and option,
and listing what is supported; a model with a config but no weights is exit 2 (never built)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import build_with, keras_module, save_model


def _lambda_model(k):
    inp = k.Input(shape=(4, 3))
    x = k.layers.LSTM(3, return_sequences=True)(inp)
    x = k.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    return k.Model(inp, k.layers.Dense(1)(x))


@pytest.mark.parametrize("writer", ["k3-keras", "k3-h5", "k2-h5"])
def test_lambda_layer_is_refused_without_running_it(writer, tmp_path, run_cli):
    model = build_with(writer, _lambda_model)
    path = save_model(model, writer, tmp_path)
    result = run_cli("predict", path, "-o", tmp_path / "y.npy")
    assert result.exit_code == 3
    line = result.stderr.strip()
    assert "layer 'double' (Lambda)" in line and "is not supported" in line and "--plugin FILE.py" in line
    assert len(line.splitlines()) == 1


def test_custom_layer_is_refused(tmp_path, run_cli):
    k = keras_module("k3-keras")

    @k.saving.register_keras_serializable(package="tests")
    class Scale(k.layers.Layer):
        def call(self, x):
            return x * 3.0

    model = build_with(
        "k3-keras",
        lambda m: m.Sequential(
            [m.Input(shape=(4, 2)), m.layers.GRU(2, return_sequences=True), Scale(name="scale"), m.layers.LSTM(1)]
        ),
    )
    path = save_model(model, "k3-keras", tmp_path)
    result = run_cli("check", path, "--samples", "2")
    line = result.stderr.strip()
    assert result.exit_code == 3 and "layer 'scale' (Scale)" in line and "'Scale' is not a Keras layer" in line
    assert "--plugin FILE.py (README: Custom layers and Lambdas)" in line and len(line.splitlines()) == 1


def _edit_config(path, old: str, new: str) -> None:
    with h5py.File(path, "r+") as f:
        text = f.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        assert old in text
        f.attrs["model_config"] = text.replace(old, new, 1)


@pytest.mark.parametrize(
    "old,new,fragment",
    [
        ('"time_major": false', '"time_major": true', "layer 'lstm' (LSTM): option time_major=True"),
        (
            '"data_format": "channels_last"',
            '"data_format": "channels_first"',
            "(Conv1D): option data_format='channels_first' is not supported (supported: channels_last)",
        ),
        ('"padding": "valid"', '"padding": "reflect"', "(Conv1D): option padding='reflect'"),
        ('"dtype": "float32", "filters"', '"dtype": "float8_e4m3fn", "filters"', "option dtype='float8_e4m3fn'"),
    ],
)
def test_unsupported_options_are_named(old, new, fragment, tmp_path, run_cli):
    model = build_with(
        "k2-h5",
        lambda k: k.Sequential(
            [k.Input(shape=(6, 3)), k.layers.Conv1D(2, 2, name="conv"), k.layers.LSTM(2, name="lstm")]
        ),
    )
    path = save_model(model, "k2-h5", tmp_path)
    _edit_config(path, old, new)
    result = run_cli("predict", path, "-o", tmp_path / "y.npy")
    assert result.exit_code == 3, result.output
    assert fragment in result.stderr


def test_model_without_weights_is_never_built(tmp_path, run_cli):
    model = build_with("k2-h5", lambda k: k.Sequential([k.Input(shape=(6, 3)), k.layers.LSTM(2)]))
    path = save_model(model, "k2-h5", tmp_path)
    with h5py.File(path, "r+") as f:  # what Keras writes for a model that was never built: empty groups
        for name in list(f["model_weights"]):
            group = f["model_weights"][name]
            for key in list(group):
                del group[key]
            group.attrs["weight_names"] = np.array([], dtype=np.float64)
    result = run_cli("predict", path, "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and "never built" in result.stderr


def test_the_keras_class_lists_cover_the_installed_keras(tmp_path):
    """keras_classes.py is generated: regenerating it from the installed Keras and tf_keras changes nothing
    (every installed layer and keras.ops class is listed, so none is taken for a user's class)."""
    pytest.importorskip("keras")
    from lstm_parity.reference import keras_classes

    assert keras_classes.installed_ops_classes() <= keras_classes.KERAS_OPS_CLASSES
    assert keras_classes.installed_layer_classes() <= keras_classes.KERAS_LAYER_CLASSES
    copy = tmp_path / "keras_classes.py"
    original = Path(keras_classes.__file__).read_text()
    copy.write_text(original)
    keras_classes.regenerate(copy)
    assert copy.read_text() == original
