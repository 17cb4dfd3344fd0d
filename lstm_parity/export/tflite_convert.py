"""Keras 3 model -> `.tflite` with TensorFlow's TFLite converter, builtin ops only (never Flex: the pip
LiteRT interpreter cannot run them). Quantization is the converter's own: float16 (float16 weights,
dequantized at load), dynamic (int8 weights of 1,024 elements or more, float activations) and int8
(weights and activations, calibrated on a representative dataset; inputs and outputs stay float32)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .toolchain import converting, import_tool, version_of


def convert_tflite(
    model: Any, mode: str, calibration: dict[str, np.ndarray] | None, batch: int | None, source: str
) -> tuple[bytes, dict[str, str]]:
    """The flatbuffer of `model` quantized as `mode` (none, float16, dynamic, int8), and the converter's
    versions. int8 calibrates on `calibration` (an array per model input name: the serving signature's
    names) fed `batch` rows at a time (1 when the batch is open). Raises ConversionError (exit 4) with one
    line on failure."""
    tf = import_tool("tensorflow")
    with converting(f"the TFLite converter (tensorflow {version_of('tensorflow')})", source):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if mode != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif mode == "int8":
            assert calibration is not None
            converter.representative_dataset = lambda: _representative(calibration, batch or 1)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        flatbuffer = converter.convert()
    versions = {
        "converter": "Keras 3 model + tf.lite.TFLiteConverter.from_keras_model (builtin ops only)",
        "tensorflow": version_of("tensorflow"),
        "keras": version_of("keras"),
    }
    return bytes(flatbuffer), versions


def _representative(calibration: dict[str, np.ndarray], batch: int) -> Iterator[dict[str, np.ndarray]]:
    """The calibration rows, `batch` at a time (whole batches only), keyed by input name: the converter's
    input order need not be the model's."""
    rows = next(iter(calibration.values())).shape[0]
    for low in range(0, rows - batch + 1, batch):
        yield {name: x[low : low + batch] for name, x in calibration.items()}
