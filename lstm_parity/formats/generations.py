"""Bring every generation's layer configs and weight layouts to the modern (tf.keras 2 / Keras 3)
form the reference computes, as data: rename tables for Keras 1 configs, and the documented
weight conversions Keras itself applies when it loads old files.

- Keras 1 (keras_version "1.x" or none): options renamed (output_dim -> units, inner_activation ->
  recurrent_activation, Convolution1D -> Conv1D, ...); LSTM weights stored per gate in order
  i, c, f, o (12 arrays) are concatenated to kernel/recurrent_kernel/bias in order i, f, c, o; GRU's
  9 per-gate arrays (z, r, h) likewise; Conv1D kernels (k, 1, in, out) lose their dummy axis.
- CuDNNLSTM / CuDNNGRU (Keras 2.x): per gate block, kernel -> block.T.reshape(block.shape, order="F"),
  recurrent kernel -> block.T; LSTM bias (8u,) = input half + recurrent half -> (4u,); GRU bias (6u,)
  -> (2, 3u) with reset_after=True. The layer becomes a plain LSTM/GRU with tanh/sigmoid.
Every conversion is exact (concatenation, transposition, one float32 addition).
"""

from __future__ import annotations

from typing import Any

import numpy as np

KERAS1_CLASS_NAMES = {"Convolution1D": "Conv1D", "AtrousConvolution1D": "Conv1D", "Convolution2D": "Conv2D"}
KERAS1_RENAMES = {
    "*": {
        "inner_activation": "recurrent_activation",
        "bias": "use_bias",
        "dropout_W": "dropout",
        "dropout_U": "recurrent_dropout",
        "consume_less": "implementation",
        "border_mode": "padding",
        "dim_ordering": "data_format",
        "nb_filter": "filters",
        "filter_length": "kernel_size",
        "subsample_length": "strides",
        "subsample": "strides",
        "atrous_rate": "dilation_rate",
        "pool_length": "pool_size",
        "stride": "strides",
    },
    "Dropout": {"p": "rate"},
    "SpatialDropout1D": {"p": "rate"},
    "Dense": {"output_dim": "units"},
    "LSTM": {"output_dim": "units"},
    "GRU": {"output_dim": "units"},
    "SimpleRNN": {"output_dim": "units"},
}
DIM_ORDERING = {"tf": "channels_last", "th": "channels_first", "default": "channels_last"}
WRAPPERS = ("Bidirectional", "TimeDistributed")


def is_keras1(keras_version: str) -> bool:
    return keras_version.startswith("1") or not keras_version


def modernize_config(class_name: str, config: dict[str, Any], keras_version: str) -> tuple[str, dict[str, Any]]:
    """Rename a Keras 1 layer config to today's names (recursing into wrappers); others unchanged."""
    config = dict(config)
    if class_name in WRAPPERS and isinstance(config.get("layer"), dict):
        inner = config["layer"]
        inner_class, inner_config = modernize_config(
            inner.get("class_name", ""), inner.get("config") or {}, keras_version
        )
        config["layer"] = {**inner, "class_name": inner_class, "config": inner_config}
    if not is_keras1(keras_version):
        return class_name, config
    class_name = KERAS1_CLASS_NAMES.get(class_name, class_name)
    renames = {**KERAS1_RENAMES["*"], **KERAS1_RENAMES.get(class_name, {})}
    renamed = {renames.get(key, key): value for key, value in config.items()}
    if "nb_row" in renamed and "nb_col" in renamed:
        renamed["kernel_size"] = [renamed.pop("nb_row"), renamed.pop("nb_col")]
    if "data_format" in renamed:
        renamed["data_format"] = DIM_ORDERING.get(renamed["data_format"], renamed["data_format"])
    return class_name, renamed


def modernize_weights(
    class_name: str, config: dict[str, Any], arrays: list[np.ndarray], keras_version: str
) -> tuple[str, dict[str, Any], list[np.ndarray], str]:
    """Convert stored arrays (and CuDNN class names) to the modern layout.

    Returns (class name, config, arrays, note) where note says what was converted ("" if nothing).
    """
    if class_name == "Bidirectional" and isinstance(config.get("layer"), dict) and arrays:
        half = len(arrays) // 2
        inner = config["layer"]
        notes = []
        converted = []
        entries = {}
        for part, chunk in (("layer", arrays[:half]), ("backward_layer", arrays[half:])):
            backward = config.get("backward_layer")
            entry = backward if part == "backward_layer" and isinstance(backward, dict) else inner
            cls, cfg, new, note = modernize_weights(entry["class_name"], entry["config"], list(chunk), keras_version)
            entries[part] = {**entry, "class_name": cls, "config": cfg}
            converted += new
            notes.append(note)
        config = {**config, "layer": entries["layer"]}
        if config.get("backward_layer"):
            config["backward_layer"] = entries["backward_layer"]
        return class_name, config, converted, next((n for n in notes if n), "")
    if class_name == "TimeDistributed" and isinstance(config.get("layer"), dict):
        inner = config["layer"]
        cls, cfg, new, note = modernize_weights(inner["class_name"], inner["config"], arrays, keras_version)
        return class_name, {**config, "layer": {**inner, "class_name": cls, "config": cfg}}, new, note
    if class_name in ("CuDNNLSTM", "CuDNNGRU"):
        return _from_cudnn(class_name, config, arrays)
    if is_keras1(keras_version):
        if class_name == "LSTM" and len(arrays) == 12:
            order = (0, 2, 1, 3)  # stored i, c, f, o -> i, f, c, o
            return (
                class_name,
                config,
                [np.concatenate([arrays[3 * g + part] for g in order], axis=-1) for part in range(3)],
                "Keras 1 per-gate LSTM weights (i, c, f, o) concatenated",
            )
        if class_name == "GRU" and len(arrays) == 9:
            return (
                class_name,
                config,
                [np.concatenate([arrays[3 * g + part] for g in range(3)], axis=-1) for part in range(3)],
                "Keras 1 per-gate GRU weights concatenated",
            )
        if class_name == "Conv1D" and arrays and arrays[0].ndim == 4 and arrays[0].shape[1] == 1:
            return class_name, config, [arrays[0][:, 0]] + arrays[1:], "Keras 1 Conv1D kernel (k, 1, in, out) squeezed"
    return class_name, config, arrays, ""


def _blocks(array: np.ndarray, gates: int, fn) -> np.ndarray:
    return np.concatenate([fn(block) for block in np.split(array, gates, axis=-1)], axis=-1)


def _from_cudnn(
    class_name: str, config: dict[str, Any], arrays: list[np.ndarray]
) -> tuple[str, dict[str, Any], list[np.ndarray], str]:
    gates = 4 if class_name == "CuDNNLSTM" else 3
    new_config = {
        k: v
        for k, v in config.items()
        if k in ("name", "units", "return_sequences", "return_state", "go_backwards", "stateful", "trainable", "dtype")
    }
    new_config.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
    if len(arrays) != 3:
        return class_name, config, arrays, ""
    kernel = _blocks(arrays[0], gates, lambda b: b.T.reshape(b.shape, order="F"))
    recurrent_kernel = _blocks(arrays[1], gates, lambda b: b.T)
    bias = arrays[2]
    if gates == 4:
        input_half, recurrent_half = np.split(bias, 2)
        bias = input_half + recurrent_half  # (4*units,)
        new_class = "LSTM"
    else:
        bias = bias.reshape(2, -1)  # (2, 3*units)
        new_config["reset_after"] = True
        new_class = "GRU"
    return (
        new_class,
        new_config,
        [kernel, recurrent_kernel, bias],
        f"{class_name} weights converted to {new_class} layout",
    )
