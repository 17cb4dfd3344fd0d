"""Models and files for the TFLite Micro, OpenVINO and hls4ml runner tests, made in-process.

`tflm_recipe` writes a model by the library's TFLite Micro recipe (lstm_parity.export_recipes.tflm: batch
1, fixed timesteps, every recurrent layer unrolled, builtin ops only), the one `export` can use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conftest import build_with
from exports import FEATURES, TIME
from lstm_parity.export_recipes.tflm import write_tflm


def tflm_recipe(model: Any, path: Path, timesteps: int | None = None) -> Path:
    """Write `model` (tf_keras or Keras 3) as a .tflite that TFLite Micro runs correctly without a reset."""
    return Path(write_tflm(model, path, timesteps))


def plain_lstm(seed: int = 0) -> Any:
    """tf_keras Input((9, 3), name="feats") -> LSTM(6) -> Dense(2): dynamic batch, not unrolled (what
    people train and save)."""

    def make(k: Any) -> Any:
        inputs = k.Input((TIME, FEATURES), name="feats")
        return k.Model(inputs, k.layers.Dense(2, name="dense")(k.layers.LSTM(6, name="lstm")(inputs)))

    return build_with("k2-h5", make, seed=seed)


def small_lstm_k3(seed: int = 0) -> Any:
    """Keras 3 Input((9, 3)) -> LSTM(5) -> Dense(2) (the issue's OpenVINO case: a fused LSTM in ONNX)."""

    def make(k: Any) -> Any:
        return k.Sequential([k.Input((TIME, FEATURES)), k.layers.LSTM(5, name="lstm"), k.layers.Dense(2, name="dense")])

    return build_with("k3-keras", make, seed=seed)


def encoder_decoder_k3(seed: int = 5) -> Any:
    """Keras 3 LSTM(8, return_sequences) "encoder" -> LSTM(4) "decoder" -> Dense(2) "head": a sequence
    layer first, so a per-layer trace has timesteps to name."""

    def make(k: Any) -> Any:
        return k.Sequential(
            [
                k.Input((TIME, FEATURES)),
                k.layers.LSTM(8, return_sequences=True, name="encoder"),
                k.layers.LSTM(4, name="decoder"),
                k.layers.Dense(2, name="head"),
            ]
        )

    return build_with("k3-keras", make, seed=seed)


def masked_lstm_k3(seed: int = 2) -> Any:
    """Keras 3 Masking -> LSTM(5): its ONNX export is a Loop; hls4ml has no Masking layer."""

    def make(k: Any) -> Any:
        return k.Sequential([k.Input((None, FEATURES)), k.layers.Masking(0.0), k.layers.LSTM(5)])

    return build_with("k3-keras", make, seed=seed)


def openvino_ir(onnx_path: Path, xml_path: Path, compress_to_fp16: bool = False) -> Path:
    """The ONNX file saved as an OpenVINO IR (.xml + .bin); ov.save_model's own default compresses the
    weights to float16."""
    import openvino as ov

    ov.save_model(ov.Core().read_model(str(onnx_path)), str(xml_path), compress_to_fp16=compress_to_fp16)
    return xml_path


def external_data_onnx(folder: Path, location: str) -> Path:
    """x (batch, 9, 3) @ W (3, 2) with W's 24 bytes stored in `location` (relative to `folder`, where
    the model is written; the bytes are written at folder/inside.bin)."""
    from onnx import TensorProto, helper

    (folder / "inside.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    weights = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32).tolist())
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value=location)
    weights.external_data.add(key="length", value="24")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", TIME, FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", TIME, 2])],
        [weights],
    )
    path = folder / "external.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path
