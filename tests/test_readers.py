"""Readers: byte sniffing, chunked HDF5 attributes, weights-only and never-built files, link guards."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from conftest import SAMPLES, build_model, build_with, save_model, write_npy
from lstm_parity.errors import BadInputError
from lstm_parity.formats import open_model, sniff_format
from lstm_parity.formats.keras_zip import snake_case


def test_sniffs_bytes_not_extension(tmp_path, run_cli):
    h5_named_keras = tmp_path / "really_h5.keras"
    zip_named_h5 = tmp_path / "really_zip.h5"
    shutil.copy(SAMPLES / "tutorial_keras2.h5", h5_named_keras)
    shutil.copy(SAMPLES / "tutorial.keras", zip_named_h5)
    assert sniff_format(str(h5_named_keras)) == "legacy-h5"
    assert sniff_format(str(zip_named_h5)) == "keras-zip"
    # Keras itself picks a loader by extension; check must still run both sides.
    assert run_cli("check", h5_named_keras, SAMPLES / "tutorial_keras2.input.npy").exit_code == 0
    assert run_cli("check", zip_named_h5, SAMPLES / "tutorial.input.npy").exit_code == 0


def test_records_saving_keras_version():
    assert open_model(SAMPLES / "tutorial_keras2.h5").keras_version.startswith("2.")
    spec = open_model(SAMPLES / "tutorial.keras")
    assert spec.keras_version.startswith("3.") and spec.semantics == "keras3"
    assert [layer.class_name for layer in spec.layers] == ["InputLayer", "LSTM", "Dense"]


def _split_attr(obj, name, parts):
    """Rewrite attribute `name` as Keras does past 64 KB: name0, name1, ... chunks."""
    values = list(obj.attrs[name])
    del obj.attrs[name]
    for index, chunk in enumerate(np.array_split(np.array(values, dtype=object), parts)):
        obj.attrs[f"{name}{index}"] = [v.encode() if isinstance(v, str) else v for v in chunk]


def test_chunked_layer_and_weight_names(tmp_path, run_cli):
    model = build_model(
        "k2-h5",
        4,
        3,
        [("LSTM", dict(units=3, return_sequences=True)), ("LSTM", dict(units=2)), ("Dense", dict(units=1))],
    )
    path = save_model(model, "k2-h5", tmp_path)
    x_path = write_npy(tmp_path, "x.npy", np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32))
    before = tmp_path / "before.npy"
    assert run_cli("predict", path, x_path, "-o", before).exit_code == 0
    with h5py.File(path, "r+") as f:
        _split_attr(f["model_weights"], "layer_names", 2)
        lstm_group = f["model_weights"][model.layers[0].name]
        _split_attr(lstm_group, "weight_names", 3)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f["model_weights"].attrs and "layer_names1" in f["model_weights"].attrs
    after = tmp_path / "after.npy"
    assert run_cli("predict", path, x_path, "-o", after).exit_code == 0
    np.testing.assert_array_equal(np.load(before), np.load(after))
    assert [w.shape for layer in open_model(path).layers for w in layer.weights] == [
        w.shape for w in model.get_weights()
    ]


def test_weights_only_file_is_refused(tmp_path, run_cli):
    model = build_model("k2-h5", 4, 3, [("LSTM", dict(units=2)), ("Dense", dict(units=1))])
    path = tmp_path / "weights.h5"
    model.save_weights(path)
    result = run_cli("predict", path, SAMPLES / "tutorial.input.npy", "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and "weights-only file" in result.stderr


def test_never_built_model_is_refused(tmp_path):
    path = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "tutorial_keras2.h5", path)
    with h5py.File(path, "r+") as f:
        del f["model_weights"]
    with pytest.raises(BadInputError, match="never built"):
        open_model(path)


@pytest.mark.parametrize("kind", ["soft", "external"])
def test_links_in_weights_are_refused(tmp_path, kind):
    path = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "tutorial_keras2.h5", path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense/dense"]
        target = group["bias:0"].name
        del group["bias:0"]
        group["bias:0"] = h5py.SoftLink(target + "_gone") if kind == "soft" else h5py.ExternalLink("/etc/passwd", "/x")
    with pytest.raises(BadInputError, match=f"{kind} link"):
        open_model(path)


def test_shape_bomb_is_refused(tmp_path):
    path = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "tutorial_keras2.h5", path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense/dense"]
        del group["bias:0"]
        group.create_dataset("bias:0", shape=(10**6, 1000), dtype="f4", chunks=(1000, 1000))  # never written
    with pytest.raises(BadInputError, match="declares shape"):
        open_model(path)


def test_weight_shape_mismatch_names_layer(tmp_path, run_cli):
    path = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "tutorial_keras2.h5", path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights/lstm/lstm/lstm_cell"]
        del group["recurrent_kernel:0"]
        group["recurrent_kernel:0"] = np.zeros((5, 16), np.float32)
    result = run_cli("predict", path, SAMPLES / "tutorial.input.npy", "-o", tmp_path / "y.npy")
    assert result.exit_code == 2
    assert "layer 'lstm' (LSTM): weight recurrent_kernel has shape (5, 16), expected (5, 20)" in result.stderr


@pytest.mark.parametrize(
    "name,snake",
    [
        ("LSTM", "lstm"),
        ("SimpleRNN", "simple_rnn"),
        ("Conv1D", "conv1d"),
        ("TimeDistributed", "time_distributed"),
        ("InputLayer", "input_layer"),
        ("GRU", "gru"),
        ("BatchNormalization", "batch_normalization"),
    ],
)
def test_snake_case_matches_keras_naming(name, snake):
    assert snake_case(name) == snake


def test_keras_zip_counters_for_repeated_classes(tmp_path):
    """Keras 3 names list members lstm, lstm_1, dense, dense_1 whatever the user called them."""
    model = build_model(
        "k3-keras",
        3,
        2,
        [
            ("LSTM", dict(units=2, return_sequences=True, name="first")),
            ("LSTM", dict(units=3, name="second")),
            ("Dense", dict(units=2, name="d1")),
            ("Dense", dict(units=1, name="d2")),
        ],
        functional=True,
    )
    path = save_model(model, "k3-keras", tmp_path)
    spec = open_model(path)
    for layer in model.layers:
        ours = spec.layer(layer.name).weights
        assert [w.tobytes() for w in ours] == [w.tobytes() for w in layer.get_weights()]


@pytest.mark.parametrize("writer", ["k3-keras", "k3-h5", "k2-h5"])
def test_functional_model_class_is_not_its_last_layer(writer, tmp_path):
    """The layer loop once reused the model's class-name variable: a functional model read as 'Dense'."""

    def make(k):
        inputs = k.Input((4, 3))
        return k.Model(inputs, k.layers.Dense(1)(k.layers.LSTM(2)(inputs)))

    spec = open_model(str(save_model(build_with(writer, make), writer, tmp_path)))
    assert spec.model_class == "Functional"
