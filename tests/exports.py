"""Real exports made in-process for the runner tests: Keras 3 / tf_keras models -> .onnx / .tflite.

ONNX goes through `lstm_parity.export.onnx_convert.convert_onnx`, the converter `export` uses: a SavedModel
and `tf2onnx.convert.from_function` on its serving_default signature (tf2onnx's from_keras fails on Keras 3
Sequential models; the CLI costs seconds of imports).
TFLite goes through `tf.lite.TFLiteConverter.from_keras_model` with builtin ops only.
The builders make small seeded tf_keras models with conftest's helpers. run_onnx / run_tflite / run_tflm
load a written file in the plain runtime (onnxruntime, ai_edge_litert, tflite_micro) and run it repeatedly
without any reset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import build_with

TIME, FEATURES, UNITS = 9, 3, 6


def to_onnx(model: Any, path: Path, opset: int = 17, batch_size: int | None = None) -> Path:
    """Write `model` (Keras 3 or tf_keras) as ONNX with `export`'s own converter (a SavedModel, then
    tf2onnx's from_function on its serving signature); `batch_size` fixes the batch axis (else dynamic).
    Inputs keep the Keras input names, in the model's order; outputs are named output_0, output_1, ...
    in the model's order."""
    from lstm_parity.export.onnx_convert import convert_onnx

    convert_onnx(model, str(path), opset, str(path), batch_size=batch_size)
    return path


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


# ------------------------------------------------------------------ files no Keras loads, and plain runtimes


def _to_cudnn_blocks(array: Any, gates: int, fn: Any) -> Any:
    import numpy as np

    return np.concatenate([fn(block) for block in np.split(array, gates, axis=-1)], axis=-1)


def cudnn_lstm_h5(path: Path, units: int = 4, time: int = 5, seed: int = 0) -> tuple[Path, Any]:
    """A Keras 2.2.4-style .h5 holding CuDNNLSTM(units) -> Dense(2), which neither tf_keras (no CuDNN
    kernel on a CPU) nor Keras 3 (no such class) loads; and the plain tf_keras LSTM model whose weights
    it stores in CuDNN's layout (the independent reference for what the file computes)."""
    import json

    import h5py
    import numpy as np

    def make(k: Any) -> Any:
        return k.Sequential([k.Input((time, FEATURES)), k.layers.LSTM(units), k.layers.Dense(2)])

    twin = build_with("k2-h5", make, seed=seed)
    kernel, recurrent_kernel, bias = twin.layers[0].get_weights()
    # inverse of Keras' CuDNN -> plain conversion, per gate block; the bias splits into two halves
    cudnn_kernel = _to_cudnn_blocks(kernel, 4, lambda b: b.T.reshape(b.shape))
    cudnn_recurrent = _to_cudnn_blocks(recurrent_kernel, 4, lambda b: b.T)
    recurrent_half = np.random.default_rng(seed).standard_normal(bias.shape).astype(np.float32)
    cudnn_bias = np.concatenate([bias - recurrent_half, recurrent_half])  # (8*units,)
    dense_kernel, dense_bias = twin.layers[1].get_weights()
    layer = {"name": "cudnn", "units": units, "return_sequences": False, "return_state": False, "stateful": False}
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "CuDNNLSTM", "config": {**layer, "batch_input_shape": [None, time, FEATURES]}},
                {"class_name": "Dense", "config": {**twin.layers[1].get_config(), "name": "dense"}},
            ],
        },
    }
    weights = {
        "cudnn": [
            ("cudnn/kernel:0", cudnn_kernel),
            ("cudnn/recurrent_kernel:0", cudnn_recurrent),
            ("cudnn/bias:0", cudnn_bias),
        ],
        "dense": [("dense/kernel:0", dense_kernel), ("dense/bias:0", dense_bias)],
    }
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in weights]
        for name, arrays in weights.items():
            layer_group = group.create_group(name)
            layer_group.attrs["weight_names"] = [w.encode() for w, _ in arrays]
            for weight_name, value in arrays:
                layer_group.create_dataset(weight_name, data=value)
    return path, twin


def run_onnx(path: Path, inputs: list[Any], times: int = 2) -> list[list[Any]]:
    """Plain onnxruntime: one session, `inputs` (model order, fed by position) run `times` times with
    nothing reset in between; the outputs of every run."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {port.name: x for port, x in zip(session.get_inputs(), inputs, strict=True)}
    return [session.run(None, feed) for _ in range(times)]


def run_tflite(path: Path, inputs: list[Any], times: int = 2) -> list[list[Any]]:
    """Plain ai_edge_litert: one interpreter resized to the inputs' shapes, invoked `times` times with no
    reset_all_variables() in between; the outputs of every invocation."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_input_details()
    for detail, x in zip(details, inputs, strict=True):
        if tuple(detail["shape"]) != x.shape:
            interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    runs = []
    for _ in range(times):
        for detail, x in zip(details, inputs, strict=True):
            interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        runs.append([interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()])
    return runs


def run_tflm(path: Path, x: Any, times: int = 2) -> list[Any]:
    """Plain tflite_micro: one interpreter on a single-input file of a fixed batch of 1, fed the rows of
    `x` one invoke() after another, the whole pass `times` times, never reset(); each pass's outputs
    stacked (rows, ...)."""
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(path))
    assert list(interpreter.get_input_details(0)["shape"])[0] == 1  # TFLite Micro runs the stored batch
    passes = []
    for _ in range(times):
        rows = []
        for row in x:
            interpreter.set_input(np.ascontiguousarray(row[None]), 0)  # (1, ...)
            interpreter.invoke()
            rows.append(np.array(interpreter.get_output(0)))  # (1, ...)
        passes.append(np.concatenate(rows))
    return passes
