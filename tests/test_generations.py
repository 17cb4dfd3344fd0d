"""Files from every Keras generation: Keras 1 configs and per-gate weights, Keras 2.0-2.2 schemas,
CuDNNLSTM/CuDNNGRU layouts, Windows-written .keras archives. Old files are crafted here from real
tf_keras / Keras 3 models exactly as those writers laid them out; tf_keras' own legacy loader
(`load_weights`, which converts Keras 1 and CuDNN weights) is the independent reference."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from conftest import build_with, keras_module, keras_predict, save_model
from lstm_parity.formats import open_model


def _write_legacy_h5(
    path, model_config: dict, layers: list[tuple[str, list[tuple[str, np.ndarray]]]], keras_version: str | None
) -> None:
    """An HDF5 file laid out like Keras 1/2 `model.save`: attrs, model_weights, per-layer weight_names."""
    with h5py.File(path, "w") as f:
        if keras_version is not None:
            f.attrs["keras_version"] = keras_version.encode()
            f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(model_config).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name, _ in layers]
        for name, weights in layers:
            layer_group = group.create_group(name)
            layer_group.attrs["weight_names"] = [w.encode() for w, _ in weights]
            for weight_name, value in weights:
                layer_group.create_dataset(weight_name, data=value)


def _tf_keras_model(layers, shape, seed=0):
    def make(k):
        return k.Sequential([k.Input(shape=shape), *[getattr(k.layers, c)(**kw) for c, kw in layers]])

    return build_with("k2-h5", make, seed=seed)


def _reference_load(layers, shape, path):
    """tf_keras' legacy loader on our crafted file: it applies Keras' own conversions."""
    module = keras_module("k2-h5")
    twin = module.Sequential([module.Input(shape=shape), *[getattr(module.layers, c)(**kw) for c, kw in layers]])
    twin.load_weights(path)
    return twin


def _to_cudnn(kernel, recurrent_kernel, bias, gates):
    """Inverse of Keras' CuDNN -> plain conversion, per gate block."""

    def blocks(array, fn):
        return np.concatenate([fn(b) for b in np.split(array, gates, axis=-1)], axis=-1)

    cudnn_kernel = blocks(kernel, lambda b: b.T.reshape(b.shape))  # C-order ravel of the transpose
    cudnn_recurrent = blocks(recurrent_kernel, lambda b: b.T)
    return cudnn_kernel, cudnn_recurrent, bias


@pytest.mark.parametrize("cls", ["CuDNNLSTM", "CuDNNGRU"])
def test_cudnn_weights_convert_like_keras(cls, tmp_path, run_cli):
    plain = "LSTM" if cls == "CuDNNLSTM" else "GRU"
    options = dict(units=4, return_sequences=True) | ({"reset_after": True} if plain == "GRU" else {})
    layers = [(plain, options), ("Dense", dict(units=2))]
    model = _tf_keras_model(layers, (6, 3), seed=3)
    kernel, recurrent_kernel, bias = model.layers[0].get_weights()
    gates = 4 if plain == "LSTM" else 3
    ck, cr, cb = _to_cudnn(kernel, recurrent_kernel, bias, gates)
    if plain == "LSTM":  # CuDNN keeps input and recurrent biases apart: 8u
        recurrent_half = np.random.default_rng(0).standard_normal(bias.shape).astype(np.float32)
        cb = np.concatenate([bias - recurrent_half, recurrent_half])
    else:
        cb = bias.reshape(-1)  # (2, 3u) -> 6u
    cudnn_config = {
        "name": "cudnn",
        "units": 4,
        "return_sequences": True,
        "return_state": False,
        "go_backwards": False,
        "stateful": False,
        "kernel_initializer": {"class_name": "GlorotUniform"},
    }
    dense_config = {**model.layers[1].get_config(), "name": "dense"}
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": cls, "config": {**cudnn_config, "batch_input_shape": [None, 6, 3]}},
                {"class_name": "Dense", "config": dense_config},
            ],
        },
    }
    path = tmp_path / "cudnn.h5"
    dense_weights = model.layers[1].get_weights()
    _write_legacy_h5(
        path,
        config,
        [
            ("cudnn", [("cudnn/kernel:0", ck), ("cudnn/recurrent_kernel:0", cr), ("cudnn/bias:0", cb)]),
            ("dense", [("dense/kernel:0", dense_weights[0]), ("dense/bias:0", dense_weights[1])]),
        ],
        "2.2.4",
    )
    spec = open_model(path)
    assert spec.layers[1].class_name == plain and "converted" in spec.layers[1].converted
    twin = _reference_load(layers, (6, 3), path)
    for ours, theirs in zip([w for layer in spec.layers for w in layer.weights], twin.get_weights(), strict=True):
        assert ours.tobytes() == theirs.tobytes()  # bit-identical to Keras' own conversion
    x = np.random.default_rng(1).standard_normal((5, 6, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run_cli("predict", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), keras_predict(model, x), atol=1e-5)
    result = run_cli("check", path, tmp_path / "x.npy")  # tf_keras has no CuDNN layers on a CPU
    assert result.exit_code == 4 and "cannot load the file" in result.stderr


def test_keras1_config_names_and_per_gate_weights(tmp_path, run_cli):
    layers = [
        ("Conv1D", dict(filters=5, kernel_size=2)),
        ("LSTM", dict(units=4, return_sequences=True, recurrent_activation="hard_sigmoid")),
        ("GRU", dict(units=3, reset_after=False, recurrent_activation="hard_sigmoid")),
        ("Dense", dict(units=2)),
    ]
    model = _tf_keras_model(layers, (7, 3), seed=5)
    conv_k, conv_b = model.layers[0].get_weights()
    lk, lr, lb = model.layers[1].get_weights()
    gk, gr, gb = model.layers[2].get_weights()
    dk, db = model.layers[3].get_weights()

    def gate(array, index, width):
        return array[..., index * width : (index + 1) * width]

    lstm_arrays = []
    for name, index in (("i", 0), ("c", 2), ("f", 1), ("o", 3)):  # Keras 1 stored i, c, f, o
        lstm_arrays += [
            (f"lstm_1_W_{name}:0", gate(lk, index, 4)),
            (f"lstm_1_U_{name}:0", gate(lr, index, 4)),
            (f"lstm_1_b_{name}:0", gate(lb, index, 4)),
        ]
    gru_arrays = []
    for name, index in (("z", 0), ("r", 1), ("h", 2)):
        gru_arrays += [
            (f"gru_1_W_{name}:0", gate(gk, index, 3)),
            (f"gru_1_U_{name}:0", gate(gr, index, 3)),
            (f"gru_1_b_{name}:0", gate(gb, index, 3)),
        ]
    config = {
        "class_name": "Sequential",
        "config": [
            {
                "class_name": "Convolution1D",
                "config": {
                    "name": "convolution1d_1",
                    "batch_input_shape": [None, 7, 3],
                    "nb_filter": 5,
                    "filter_length": 2,
                    "border_mode": "valid",
                    "subsample_length": 1,
                    "activation": "linear",
                    "bias": True,
                    "init": "uniform",
                    "input_dtype": "float32",
                },
            },
            {
                "class_name": "LSTM",
                "config": {
                    "name": "lstm_1",
                    "output_dim": 4,
                    "return_sequences": True,
                    "inner_activation": "hard_sigmoid",
                    "activation": "tanh",
                    "consume_less": "cpu",
                    "go_backwards": False,
                    "stateful": False,
                    "dropout_W": 0.0,
                    "dropout_U": 0.0,
                    "unroll": False,
                },
            },
            {
                "class_name": "GRU",
                "config": {
                    "name": "gru_1",
                    "output_dim": 3,
                    "return_sequences": False,
                    "inner_activation": "hard_sigmoid",
                    "activation": "tanh",
                    "consume_less": "gpu",
                    "go_backwards": False,
                    "stateful": False,
                },
            },
            {
                "class_name": "Dense",
                "config": {"name": "dense_1", "output_dim": 2, "activation": "linear", "bias": True},
            },
        ],
    }
    path = tmp_path / "keras1.h5"
    _write_legacy_h5(
        path,
        config,
        [
            ("convolution1d_1", [("convolution1d_1_W:0", conv_k[:, None]), ("convolution1d_1_b:0", conv_b)]),
            ("lstm_1", lstm_arrays),
            ("gru_1", gru_arrays),
            ("dense_1", [("dense_1_W:0", dk), ("dense_1_b:0", db)]),
        ],
        keras_version=None,
    )
    spec = open_model(path)
    assert spec.semantics == "keras2" and [layer.class_name for layer in spec.layers] == [
        "InputLayer",
        "Conv1D",
        "LSTM",
        "GRU",
        "Dense",
    ]
    twin = _reference_load(layers, (7, 3), path)  # tf_keras reads a file without keras_version as Keras 1
    ours = [w for layer in spec.layers for w in layer.weights]
    assert [w.tobytes() for w in ours] == [w.tobytes() for w in twin.get_weights()]
    x = np.random.default_rng(2).standard_normal((4, 7, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run_cli("predict", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), keras_predict(model, x), atol=1e-5)


def test_keras22_bare_list_schema_and_gru_without_reset_after(tmp_path, run_cli):
    """Keras 2.1/2.2.0: Sequential config is a bare list, no InputLayer, GRU has no reset_after key
    (so it is GRU(reset_after=False)); tf_keras cannot load such a GRU, the reference can."""
    layers = [
        ("GRU", dict(units=4, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True)),
        ("LSTM", dict(units=3)),
        ("Dense", dict(units=1, activation="sigmoid")),
    ]
    model = _tf_keras_model(layers, (5, 2), seed=7)
    entries = []
    for index, layer in enumerate(model.layers):
        cfg = {k: v for k, v in layer.get_config().items() if k not in ("reset_after", "time_major")}
        if index == 0:
            cfg["batch_input_shape"] = [None, 5, 2]
        entries.append({"class_name": layer.__class__.__name__, "config": cfg})
    path = tmp_path / "keras21.h5"
    _write_legacy_h5(
        path,
        {"class_name": "Sequential", "config": entries},
        [
            (
                layer.name,
                [
                    (f"{layer.name}/{n}:0", w)
                    for n, w in zip(("kernel", "recurrent_kernel", "bias"), layer.get_weights(), strict=False)
                ],
            )
            for layer in model.layers
        ],
        "2.1.6",
    )
    x = np.random.default_rng(3).standard_normal((6, 5, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run_cli("predict", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), keras_predict(model, x), atol=1e-5)
    result = run_cli("check", path, tmp_path / "x.npy")
    assert result.exit_code == 4 and "reset_after" in result.stderr


def test_windows_written_keras_archive(tmp_path, run_cli):
    """tf.keras 2.13-2.15 on Windows joined weight paths with backslashes inside model.weights.h5."""
    model = build_with("k3-keras", lambda k: k.Sequential([k.Input(shape=(4, 3)), k.layers.LSTM(3), k.layers.Dense(2)]))
    path = save_model(model, "k3-keras", tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    source = h5py.File(io.BytesIO(members["model.weights.h5"]), "r")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as out:

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                group_path, leaf = name.rsplit("/vars/", 1)
                out.require_group(group_path.replace("/", "\\")).require_group("vars").create_dataset(
                    leaf, data=obj[()]
                )

        source.visititems(copy)
    members["model.weights.h5"] = buffer.getvalue()
    windows = tmp_path / "windows.keras"
    with zipfile.ZipFile(windows, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as f:
        assert "layers\\lstm\\cell" in f
    x = np.random.default_rng(4).standard_normal((3, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run_cli("predict", windows, tmp_path / "x.npy", "-o", tmp_path / "y.npy").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), keras_predict(model, x), atol=1e-5)


@pytest.mark.parametrize("writer", ["k3-keras", "k2-h5"])
def test_conv_lstm2d(writer, tmp_path, run_cli):
    def make(k):
        return k.Sequential(
            [
                k.Input(shape=(3, 6, 6, 2)),
                k.layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True),
                k.layers.ConvLSTM2D(2, 2, strides=2, recurrent_activation="hard_sigmoid"),
                k.layers.Flatten(),
                k.layers.Dense(2),
            ]
        )

    model = build_with(writer, make, weight_scale=0.3)
    path = save_model(model, writer, tmp_path)
    result = run_cli("check", path, "--samples", "3")
    assert result.exit_code == 0, result.output


def test_semantics_tables_keyed_by_generation(tmp_path, run_cli):
    """The same hard_sigmoid GRU computed both ways: only the saving generation's math matches."""
    model = _tf_keras_model(
        [("GRU", dict(units=4, recurrent_activation="hard_sigmoid")), ("Dense", dict(units=1))], (6, 3), seed=9
    )
    path = save_model(model, "k2-h5", tmp_path)
    assert run_cli("check", path, "--samples", "8").exit_code == 0
    wrong = run_cli("check", path, "--samples", "8", "--semantics", "keras3")
    assert wrong.exit_code == 1 and "FAIL" in wrong.stdout
