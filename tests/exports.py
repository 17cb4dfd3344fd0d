"""Real exports made in-process for the runner tests: Keras 3 / tf_keras models -> .onnx / .tflite.

ONNX goes through a SavedModel and `tf2onnx.convert.from_function` on its serving_default signature
(tf2onnx's from_keras fails on Keras 3 Sequential models; the CLI costs seconds of imports).
TFLite goes through `tf.lite.TFLiteConverter.from_keras_model` with builtin ops only.
The builders make small seeded tf_keras models with conftest's helpers.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from conftest import build_with

TIME, FEATURES, UNITS = 9, 3, 6


def to_onnx(model: Any, path: Path, opset: int = 17, batch_size: int | None = None) -> Path:
    """Write `model` (Keras 3 or tf_keras) as ONNX; `batch_size` fixes the batch axis (else dynamic).

    Inputs keep the Keras input names but not necessarily the model's order (the signature's order);
    outputs are named output_0, output_1, ... in the model's order."""
    import tensorflow as tf
    import tf2onnx

    folder = tempfile.mkdtemp(prefix="lstm-parity-sm-")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # tf_keras prints a "Saved artifact" banner
            if type(model).__module__.startswith("tf_keras"):
                model.export(folder)
            else:
                model.export(folder, verbose=False)
        loaded = tf.saved_model.load(folder)  # keep referenced: the signature holds its variables weakly
        function = loaded.signatures["serving_default"]
        named = function.structured_input_signature[1]  # {kwarg name: TensorSpec}
        keys = list(named)
        specs = [_with_batch(tf, spec, batch_size) for spec in named.values()]
        wrapped = tf.function(lambda *args: function(**dict(zip(keys, args, strict=True))), input_signature=specs)
        tf2onnx.convert.from_function(wrapped, input_signature=specs, opset=opset, output_path=str(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


def _with_batch(tf: Any, spec: Any, batch_size: int | None) -> Any:
    if batch_size is None:
        return spec
    return tf.TensorSpec((batch_size, *spec.shape[1:]), spec.dtype, name=spec.name)


def to_tflite(model: Any, path: Path, quantize: str | None = None) -> Path:
    """Write a tf_keras (or unrolled Keras 3) model as a builtin-ops-only .tflite.

    `quantize`: None (float32), "dynamic" (dynamic-range int8 weights, legacy quantizer, which also
    quantizes a fused LSTM) or "float16"."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.experimental_new_dynamic_range_quantizer = False
    elif quantize is not None:
        raise ValueError(f"quantize must be None, 'dynamic' or 'float16', not {quantize!r}")
    path.write_bytes(converter.convert())
    return path


def fused_fixed_batch_lstm(batch: int = 2, units: int = 8, seed: int = 0) -> Any:
    """tf_keras Input((9, 3), batch_size=batch) -> LSTM -> Dense(2): TFLite makes it one fused
    UNIDIRECTIONAL_SEQUENCE_LSTM whose h/c are variable tensors (state leaks between invocations)."""

    def make(k: Any) -> Any:
        inputs = k.Input((TIME, FEATURES), batch_size=batch, name="feats")
        return k.Model(inputs, k.layers.Dense(2)(k.layers.LSTM(units)(inputs)))

    return build_with("k2-h5", make, seed=seed)


def unrolled_lstm(units: int = UNITS, seed: int = 0) -> Any:
    """tf_keras Input((9, 3)) -> LSTM(unroll=True) -> Dense(2): builtin ops, dynamic batch, no state."""

    def make(k: Any) -> Any:
        inputs = k.Input((TIME, FEATURES), name="feats")
        return k.Model(inputs, k.layers.Dense(2)(k.layers.LSTM(units, unroll=True)(inputs)))

    return build_with("k2-h5", make, seed=seed)


def flex_tflite(path: Path, seed: int = 0) -> Path:
    """A .tflite that needs Flex ops (FlexTensorListReserve, ...): Keras 3's export(format="litert")
    of a LSTM that is not unrolled."""

    def make(k: Any) -> Any:
        return k.Sequential([k.Input((TIME, FEATURES)), k.layers.LSTM(4)])

    build_with("k3-keras", make, seed=seed).export(str(path), format="litert", verbose=False)
    return path
