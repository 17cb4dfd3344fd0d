"""Keras 3 model -> `.onnx`: `model.export(dir)` (a SavedModel), then tf2onnx's `from_function` on its
serving signature, in-process. (tf2onnx's `from_keras` fails on every Keras 3 Sequential model, and its
command line costs seconds of imports.) Quantization works on the float file: dynamic (int8 weights,
ONNX Runtime's `quantize_dynamic`), int8 (weights and activations calibrated, QDQ, `quantize_static`)
and float16 (weights stored in float16, cast to float32 where the graph starts)."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import numpy as np

from .toolchain import converting, import_tool, version_of

MIN_FLOAT16_ELEMENTS = 16  # smaller float32 constants (shapes, scalars) stay as they are


def convert_onnx(
    model: Any,
    path: str,
    opset: int,
    source: str,
    input_shapes: dict[str, tuple[int | None, ...]] | None = None,
    batch_size: int | None = None,
) -> dict[str, str]:
    """Write `model` (Keras 3, or tf_keras) to `path` as ONNX at `opset`. Its inputs come in the order of
    `input_shapes` (input name -> shape, batch first, None for an open axis), else in the model's order,
    each with that shape (else the model's own, with the batch fixed to `batch_size` if given); outputs
    are named output_0, output_1, ... in the model's order. Returns the converter and its versions;
    raises ConversionError (exit 4) with one line when a converter fails."""
    tf = import_tool("tensorflow")
    tf2onnx = import_tool("tf2onnx")
    folder = tempfile.mkdtemp(prefix="lstm-parity-savedmodel-")
    try:
        with converting("Keras SavedModel export", source):
            if type(model).__module__.startswith("tf_keras"):
                model.export(folder)
            else:
                model.export(folder, verbose=False)
            loaded = tf.saved_model.load(folder)  # kept referenced: the signature holds its variables weakly
            function = loaded.signatures["serving_default"]
        named = function.structured_input_signature[1]  # {input name: TensorSpec}, in the signature's order
        wanted = list(input_shapes) if input_shapes else _input_names(model)
        keys = wanted if sorted(wanted) == sorted(named) else list(named)  # the model's order where names match
        specs = [_spec(tf, key, named[key], (input_shapes or {}).get(key), batch_size) for key in keys]
        with converting(f"tf2onnx {version_of('tf2onnx')}", source):
            wrapped = tf.function(lambda *args: function(**dict(zip(keys, args, strict=True))), input_signature=specs)
            tf2onnx.convert.from_function(wrapped, input_signature=specs, opset=opset, output_path=path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "converter": "Keras 3 SavedModel + tf2onnx.convert.from_function",
        "tensorflow": version_of("tensorflow"),
        "keras": version_of("keras"),
        "tf2onnx": version_of("tf2onnx"),
        "onnx": version_of("onnx"),
    }


def _input_names(model: Any) -> list[str]:
    """The model's input names in its own order (Keras 3 and tf_keras)."""
    return [str(getattr(tensor, "name", "")).split(":")[0] for tensor in model.inputs]


def _spec(tf: Any, name: str, saved: Any, shape: tuple[int | None, ...] | None, batch_size: int | None) -> Any:
    """The input signature of input `name`: `shape` if given, else the saved one with `batch_size`."""
    if shape is None:
        shape = tuple(saved.shape) if batch_size is None else (batch_size, *tuple(saved.shape)[1:])
    return tf.TensorSpec(shape, saved.dtype, name=name)


def quantize_onnx(
    source_path: str, path: str, mode: str, calibration: dict[str, np.ndarray] | None, source: str
) -> dict[str, str]:
    """Quantize the float ONNX file `source_path` into `path`: "dynamic", "int8" (calibrated on
    `calibration`, one array per model input name) or "float16".
    Returns the quantizer's name and version; raises ConversionError on failure."""
    import_tool("onnx")
    ort_version = version_of("onnxruntime") or str(getattr(import_tool("onnxruntime"), "__version__", ""))
    if mode == "float16":
        onnx = import_tool("onnx")
        with converting("float16 weight conversion", source):
            model = onnx.load(source_path)
            stored = float16_weights(onnx, model.graph)
            onnx.save(model, path)
        return {
            "quantizer": f"lstm-parity: {stored} weight tensors stored as float16, cast to float32 at load",
            "onnxruntime": ort_version,
        }
    quantization = import_tool("onnxruntime.quantization")
    if mode == "dynamic":
        with converting("ONNX Runtime dynamic quantization", source):
            quantization.quantize_dynamic(
                source_path,
                path,
                weight_type=quantization.QuantType.QInt8,
                extra_options={"EnableSubgraph": True},
            )
        return {"quantizer": "onnxruntime.quantization.quantize_dynamic (int8 weights)", "onnxruntime": ort_version}
    assert calibration is not None
    with converting("ONNX Runtime static int8 quantization", source):
        reader = _reader(quantization, source_path, calibration)
        quantization.quantize_static(
            source_path,
            path,
            reader,
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QInt8,
            weight_type=quantization.QuantType.QInt8,
            extra_options={"EnableSubgraph": True},
        )
    return {"quantizer": "onnxruntime.quantization.quantize_static (int8 QDQ)", "onnxruntime": ort_version}


def float16_weights(onnx: Any, graph: Any) -> int:
    """Store `graph`'s float32 initializers of MIN_FLOAT16_ELEMENTS or more as float16, each followed
    by a Cast back to float32 under its old name, so every consumer (Loop bodies included) is
    unchanged and computes in float32: the file halves, the arithmetic stays that of the float model
    (ONNX Runtime's CPU LSTM and Loop kernels take float32 only; converting their arithmetic fails).
    Returns how many tensors were converted."""
    numpy_helper, helper = import_tool("onnx.numpy_helper"), import_tool("onnx.helper")
    kept, casts = [], []
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        if tensor.data_type != onnx.TensorProto.FLOAT or array.size < MIN_FLOAT16_ELEMENTS:
            kept.append(tensor)
            continue
        half = numpy_helper.from_array(array.astype(np.float16), tensor.name + "_float16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)


def _reader(quantization: Any, path: str, calibration: dict[str, np.ndarray]) -> Any:
    """A CalibrationDataReader feeding `calibration` one sample at a time, by the file's input names
    (the model's, which the conversion keeps), else by position."""
    onnx = import_tool("onnx")
    names = [value.name for value in onnx.load(path, load_external_data=False).graph.input]
    arrays = [calibration.get(name, list(calibration.values())[k]) for k, name in enumerate(names)]
    rows = arrays[0].shape[0]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.row = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.row >= rows:
                return None
            feed = {name: x[self.row : self.row + 1] for name, x in zip(names, arrays, strict=True)}
            self.row += 1
            return feed

    return Reader()
