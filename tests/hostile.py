"""Crafted hostile and broken inputs, built at test time from the shipped sample models.

Each maker writes its files under `folder` and returns (CLI args, expected exit code, message
fragment). Nothing here is committed as a blob."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
H5 = SAMPLES / "tutorial_keras2.h5"
KERAS = SAMPLES / "tutorial.keras"
X = SAMPLES / "tutorial.input.npy"


def _predict(folder: Path, model: Path, x: Path = X) -> list:
    return ["predict", model, x, "-o", folder / "out.npy"]


def _copy(src: Path, folder: Path, name: str) -> Path:
    path = folder / name
    shutil.copy(src, path)
    return path


def _bytes(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _rezip(folder: Path, name: str, edit) -> Path:
    """Rewrite the sample .keras archive through `edit(members: dict) -> dict`."""
    with zipfile.ZipFile(KERAS) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in edit(members).items():
            archive.writestr(member, data)
    return path


def _edit_h5(folder: Path, name: str, edit) -> Path:
    path = _copy(H5, folder, name)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace_dataset(f, where: str, **create) -> None:
    group_path, leaf = where.rsplit("/", 1)
    del f[where]
    f[group_path].create_dataset(leaf, **create)


def _config(f, text: str) -> None:
    f.attrs["model_config"] = text


def _npy(folder: Path, name: str, array: np.ndarray, **save) -> Path:
    path = folder / name
    np.save(path, array, **save)
    return path


def truncated_h5(d):
    data = H5.read_bytes()
    return _predict(d, _bytes(d, "trunc.h5", data[: len(data) // 2])), 2, "not a readable HDF5 file (Unable"


def truncated_keras(d):
    data = KERAS.read_bytes()
    return _predict(d, _bytes(d, "trunc.keras", data[: len(data) // 2])), 2, "not a readable zip archive"


def flipped_h5_superblock(d):
    data = bytearray(H5.read_bytes())
    for i in range(8, 40):
        data[i] ^= 0xFF
    return _predict(d, _bytes(d, "flip.h5", bytes(data))), 2, "not a readable HDF5 file"


def flipped_keras_payload(d):
    data = bytearray(KERAS.read_bytes())
    with zipfile.ZipFile(KERAS) as archive:
        info = archive.getinfo("config.json")
    start = info.header_offset + 30 + len(info.filename) + 10
    for i in range(start, start + 40):
        data[i] ^= 0x5A
    return _predict(d, _bytes(d, "flip.keras", bytes(data))), 2, "config.json"


def random_bytes_h5(d):
    return _predict(d, _bytes(d, "noise.h5", np.random.default_rng(0).bytes(4096))), 2, "not a Keras model file"


def random_bytes_keras(d):
    return _predict(d, _bytes(d, "noise.keras", np.random.default_rng(1).bytes(4096))), 2, "not a Keras model file"


def random_bytes_npy(d):
    return _predict(d, KERAS, _bytes(d, "noise.npy", np.random.default_rng(2).bytes(512))), 2, "not a readable .npy"


def empty_model(d):
    return _predict(d, _bytes(d, "empty.h5", b"")), 2, "the file is empty"


def directory_model(d):
    (d / "dir.keras").mkdir()
    return _predict(d, d / "dir.keras"), 2, "directory"


def zip_missing_config(d):
    return (
        _predict(d, _rezip(d, "noconfig.keras", lambda m: {k: v for k, v in m.items() if k != "config.json"})),
        2,
        "no config.json",
    )


def zip_missing_weights(d):
    return (
        _predict(d, _rezip(d, "noweights.keras", lambda m: {k: v for k, v in m.items() if k != "model.weights.h5"})),
        2,
        "never built",
    )


def zip_traversal(d):
    return (
        _predict(d, _rezip(d, "traversal.keras", lambda m: {**m, "../evil.py": b"print(1)"})),
        2,
        "points outside the archive",
    )


def zip_absolute(d):
    return _predict(d, _rezip(d, "absolute.keras", lambda m: {**m, "/etc/evil": b"x"})), 2, "points outside"


def zip_unexpected_member(d):
    return (
        _predict(d, _rezip(d, "extra.keras", lambda m: {**m, "payload.pkl": b"\x80\x04"})),
        2,
        "unexpected archive member 'payload.pkl'",
    )


def zip_bomb(d):
    return (
        _predict(d, _rezip(d, "bomb.keras", lambda m: {**m, "model.weights.h5": bytes(16 * 1024 * 1024)})),
        2,
        "zip bomb",
    )


def h5_external_link(d):
    def edit(f):
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense/dense"]["bias:0"] = h5py.ExternalLink("/etc/passwd", "/x")

    return _predict(d, _edit_h5(d, "extlink.h5", edit)), 2, "external link"


def h5_soft_link(d):
    def edit(f):
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense/dense"]["bias:0"] = h5py.SoftLink("/model_weights/lstm/lstm/lstm_cell/bias:0")

    return _predict(d, _edit_h5(d, "softlink.h5", edit)), 2, "soft link"


def h5_external_dataset(d):
    raw = d / "outside.bin"
    raw.write_bytes(np.zeros(1, np.float32).tobytes())
    return (
        _predict(
            d,
            _edit_h5(
                d,
                "extdata.h5",
                lambda f: _replace_dataset(
                    f, "model_weights/dense/dense/bias:0", shape=(1,), dtype="f4", external=[(str(raw), 0, 4)]
                ),
            ),
        ),
        2,
        "external file",
    )


def h5_virtual_dataset(d):
    def edit(f):
        layout = h5py.VirtualLayout(shape=(1,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(d / "elsewhere.h5"), "data", shape=(1,))
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense/dense"].create_virtual_dataset("bias:0", layout, fillvalue=0)

    return _predict(d, _edit_h5(d, "virtual.h5", edit)), 2, "virtual dataset"


def h5_shape_bomb(d):
    return (
        _predict(
            d,
            _edit_h5(
                d,
                "bomb.h5",
                lambda f: _replace_dataset(
                    f, "model_weights/dense/dense/bias:0", shape=(10**6, 10**3), dtype="f4", chunks=(1000, 1000)
                ),
            ),
        ),
        2,
        "declares shape",
    )


def config_invalid_json(d):
    return _predict(d, _edit_h5(d, "badjson.h5", lambda f: _config(f, "{not json"))), 2, "not valid JSON"


def config_deeply_nested(d):
    return _predict(d, _edit_h5(d, "deep.h5", lambda f: _config(f, "[" * 100000 + "]" * 100000))), 2, "nested"


def config_wrong_type(d):
    return _predict(d, _edit_h5(d, "list.h5", lambda f: _config(f, "[1, 2, 3]"))), 2, "no 'class_name'"


def config_unknown_top_class(d):
    return (
        _predict(d, _edit_h5(d, "top.h5", lambda f: _config(f, json.dumps({"class_name": "Pipeline", "config": {}})))),
        3,
        "'Pipeline'",
    )


def weight_count_mismatch(d):
    def edit(f):
        group = f["model_weights/lstm"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        group.attrs["weight_names"] = [n.encode() for n in names if "bias" not in n]

    return _predict(d, _edit_h5(d, "count.h5", edit)), 2, "holds 2 weight arrays, expected 3"


def weight_shape_mismatch(d):
    return (
        _predict(
            d,
            _edit_h5(
                d,
                "shape.h5",
                lambda f: _replace_dataset(f, "model_weights/dense/dense/bias:0", data=np.zeros((2,), np.float32)),
            ),
        ),
        2,
        "layer 'dense' (Dense): weight bias has shape (2,), expected (1,)",
    )


def dense_width_mismatch(d):
    return (
        _predict(
            d,
            _edit_h5(
                d,
                "width.h5",
                lambda f: _replace_dataset(f, "model_weights/dense/dense/kernel:0", data=np.zeros((4, 1), np.float32)),
            ),
        ),
        2,
        "layer 'dense' (Dense): input has 5 features on axis -1, the weights expect 4",
    )


def weights_only_file(d):
    def edit(f):  # what model.save_weights writes: the weight attributes at the root, no model_config
        del f.attrs["model_config"]
        f.attrs["layer_names"] = f["model_weights"].attrs["layer_names"]

    return _predict(d, _edit_h5(d, "weights.h5", edit)), 2, "weights-only file"


def pickled_npy(d):
    return (
        _predict(d, KERAS, _npy(d, "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)),
        2,
        "pickled",
    )


def object_npz(d):
    path = d / "objects.npz"
    np.savez(path, x0=np.array([None, 1], dtype=object))
    return _predict(d, KERAS, path), 2, "pickled"


def string_npy(d):
    return _predict(d, KERAS, _npy(d, "s.npy", np.full((2, 4, 3), "a"))), 2, "dtype <U1"


def complex_npy(d):
    return _predict(d, KERAS, _npy(d, "c.npy", np.zeros((2, 4, 3), np.complex128))), 2, "dtype complex128"


def wrong_rank(d):
    return _predict(d, KERAS, _npy(d, "r.npy", np.zeros((2, 2, 4, 3), np.float32))), 2, "expected (batch, 4, 3)"


def wrong_features(d):
    return _predict(d, KERAS, _npy(d, "f.npy", np.zeros((2, 4, 5), np.float32))), 2, "axis 2 must be 3"


def zero_samples(d):
    return _predict(d, KERAS, _npy(d, "z.npy", np.zeros((0, 4, 3), np.float32))), 2, "zero samples"


def zero_timesteps(d):
    from conftest import build_model, save_model  # a model with an open time axis

    model = build_model("k3-keras", None, 3, [("LSTM", dict(units=2))])
    path = save_model(model, "k3-keras", d, "open_time")
    return _predict(d, path, _npy(d, "t.npy", np.zeros((2, 0, 3), np.float32))), 2, "empty axis"


def nan_input(d):
    x = np.zeros((2, 4, 3), np.float32)
    x[1, 2, 0] = np.nan
    return _predict(d, KERAS, _npy(d, "nan.npy", x)), 2, "NaN/Inf values (first at index (1, 2, 0))"


def inf_input(d):
    return _predict(d, KERAS, _npy(d, "inf.npy", np.full((2, 4, 3), np.inf, np.float32))), 2, "NaN/Inf"


def integer_to_float_model(d):
    return _predict(d, KERAS, _npy(d, "i.npy", np.ones((2, 4, 3), np.int64))), 2, "dtype int64; expected float32"


def float_to_embedding(d):
    from conftest import build_with, save_model

    emb = build_with(
        "k3-keras",
        lambda k: k.Sequential([k.Input(shape=(5,), dtype="int32"), k.layers.Embedding(10, 2), k.layers.LSTM(2)]),
    )
    path = save_model(emb, "k3-keras", d, "embedding")
    return _predict(d, path, _npy(d, "e.npy", np.ones((2, 5), np.float32))), 2, "feeds an Embedding"


def forged_npy_header(d):
    path = d / "forged.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 4, 3)})
        handle.write(bytes(64))
    return _predict(d, KERAS, path), 2, "declares shape (1000000000, 4, 3)"


def npz_bomb(d):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((6 * 1024 * 1024, 4, 3), np.float32))
    path = d / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x0.npy", buffer.getvalue())
    return _predict(d, KERAS, path), 2, "zip bomb"


def output_is_input(d):
    x = _npy(d, "x.npy", np.load(X))
    return ["predict", KERAS, x, "-o", x], 2, "refusing to overwrite an input file"


def output_folder_missing(d):
    return ["predict", KERAS, X, "-o", d / "nowhere" / "y.npy"], 2, "does not exist"


def output_is_directory(d):
    (d / "out_dir").mkdir()
    return ["predict", KERAS, X, "-o", d / "out_dir"], 2, "is a directory"


def npz_wrong_keys(d):
    path = d / "keys.npz"
    np.savez(path, a=np.zeros((1, 4, 3), np.float32), b=np.zeros((1, 4, 3), np.float32))
    return _predict(d, KERAS, path), 2, "the model's inputs are ['input_layer']"


CASES = [
    truncated_h5,
    truncated_keras,
    flipped_h5_superblock,
    flipped_keras_payload,
    random_bytes_h5,
    random_bytes_keras,
    random_bytes_npy,
    empty_model,
    directory_model,
    zip_missing_config,
    zip_missing_weights,
    zip_traversal,
    zip_absolute,
    zip_unexpected_member,
    zip_bomb,
    h5_external_link,
    h5_soft_link,
    h5_external_dataset,
    h5_virtual_dataset,
    h5_shape_bomb,
    config_invalid_json,
    config_deeply_nested,
    config_wrong_type,
    config_unknown_top_class,
    weight_count_mismatch,
    weight_shape_mismatch,
    dense_width_mismatch,
    weights_only_file,
    output_is_directory,
    pickled_npy,
    object_npz,
    string_npy,
    complex_npy,
    wrong_rank,
    wrong_features,
    zero_samples,
    zero_timesteps,
    nan_input,
    inf_input,
    integer_to_float_model,
    float_to_embedding,
    forged_npy_header,
    npz_bomb,
    output_is_input,
    output_folder_missing,
    npz_wrong_keys,
]
