"""The bench's exports: a case's Keras 3 model as ONNX (run in ONNX Runtime) and as TFLite (run in LiteRT).

ONNX goes through a SavedModel and `tf2onnx.convert.from_function` on its serving_default signature,
in-process (tf2onnx's from_keras fails on Keras 3 Sequential models; its CLI costs seconds of imports).
TFLite with builtin ops only converts a recurrent layer only when it is unrolled over a fixed number
of steps, so the model is cloned with unroll=True at the case's time length, with the same weights.
The runners feed a batch in chunks of `batch` rows, like `model.predict(batch_size=batch)`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
RECURRENT = ("LSTM", "GRU", "SimpleRNN")
RNN_OPS = ("LSTM", "GRU", "RNN", "Loop", "Scan")  # ONNX: fused recurrent nodes, or a generic loop
ONNX_MODULES = ("onnxruntime", "tf2onnx", "onnx")
LITERT_MODULES = ("ai_edge_litert.interpreter",)


def missing(modules: tuple[str, ...]) -> str | None:
    """Why one of `modules` cannot be imported, or None when all can."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # ImportError, or a broken install raising anything else
            return f"{name} not importable ({type(error).__name__}: {error})"
    return None


def versions(runtime: str) -> str:
    """The installed versions behind a column, e.g. 'onnxruntime 1.32.0, tf2onnx 1.17.0, onnx 1.23.2, opset 17'."""
    from importlib.metadata import version

    if runtime == "onnxruntime":
        return ", ".join(f"{name} {version(name)}" for name in ONNX_MODULES) + f", opset {OPSET}"
    return f"ai-edge-litert {version('ai-edge-litert')}, builtin ops"


def short(error: BaseException) -> str:
    """One line for a report: the converter's own `error:` line when it has one, else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = next((x for x in lines if "error:" in x), lines[0] if lines else "")
    return f"{type(error).__name__}: {line}"[:200]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null: the exporters' banners and the converter's C++ logs."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


# ------------------------------------------------------------------------------------------ ONNX


def to_onnx(model: Any, path: Path) -> Path:
    """Write a Keras 3 model as ONNX with a dynamic batch axis; the input is fed by position."""
    import tensorflow as tf
    import tf2onnx

    folder = tempfile.mkdtemp(prefix="lstm-parity-bench-sm-")
    try:
        model.export(folder, verbose=False)
        loaded = tf.saved_model.load(folder)  # keep referenced: the signature holds its variables weakly
        function = loaded.signatures["serving_default"]
        named = function.structured_input_signature[1]  # {kwarg name: TensorSpec}
        keys, specs = list(named), list(named.values())
        wrapped = tf.function(lambda *args: function(**dict(zip(keys, args, strict=True))), input_signature=specs)
        tf2onnx.convert.from_function(wrapped, input_signature=specs, opset=OPSET, output_path=str(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


def onnx_ops(path: Path) -> dict[str, int]:
    """Node op types and their counts, the bodies of Loop/Scan/If included."""
    import onnx

    counts: Counter[str] = Counter()

    def walk(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    for body in attribute.graphs:
                        walk(body)

    walk(onnx.load(str(path)).graph)
    return dict(sorted(counts.items()))


def rnn_kind(ops: dict[str, int]) -> str:
    """'LSTM x2' (fused), 'Loop x1' (generic loop), ... or 'none' (plain ops)."""
    return ", ".join(f"{op} x{ops[op]}" for op in RNN_OPS if op in ops) or "none"


class OrtRunner:
    """An ONNX Runtime CPU session on `threads` intra-op threads."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        parts = [self.session.run(None, {self.input: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
        return np.concatenate(parts)


# ------------------------------------------------------------------------------------------ LiteRT


def unrolled_clone(model: Any, time: int) -> Any:
    """The Keras 3 model with every LSTM/GRU/SimpleRNN (also inside Bidirectional) unroll=True, its time
    axis fixed to `time` (the batch stays dynamic), and the same weights."""
    import keras

    def clone_layer(layer: Any) -> Any:
        config = layer.get_config()
        kind = type(layer).__name__
        if kind in RECURRENT:
            config["unroll"] = True
        elif kind == "Bidirectional":
            for key in ("layer", "backward_layer"):
                if key in config:
                    config[key]["config"]["unroll"] = True
        return type(layer).from_config(config)

    if len(model.inputs) != 1:
        raise ValueError("one input only")
    shape = tuple(model.inputs[0].shape[1:])
    inputs = keras.Input((time, *shape[1:]), dtype=model.inputs[0].dtype)
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def to_tflite(model: Any) -> bytes:
    """A TFLite flatbuffer with builtin ops only (a recurrent layer must be unrolled to convert)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def tflite_ops(data: bytes) -> dict[str, int]:
    """Operator names and their counts over every subgraph (the schema shipped inside ai_edge_litert)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        codes.append(f"CUSTOM:{(code.CustomCode() or b'').decode()}" if name == "CUSTOM" else name)
    counts: Counter[str] = Counter()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            counts[codes[graph.Operators(o).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


class LiteRTRunner:
    """LiteRT interpreters on `threads` threads, one per chunk size (the input resized to it once)."""

    def __init__(self, data: bytes, threads: int) -> None:
        self.data, self.threads = data, threads
        self.interpreters: dict[int, tuple[Any, int, int]] = {}  # rows -> (interpreter, input, output)

    def _interpreter(self, shape: tuple[int, ...]) -> tuple[Any, int, int]:
        if shape[0] not in self.interpreters:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=self.data, num_threads=self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, list(shape), strict=False)
            interpreter.allocate_tensors()
            self.interpreters[shape[0]] = (interpreter, index, interpreter.get_output_details()[0]["index"])
        return self.interpreters[shape[0]]

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        parts = []
        for i in range(0, len(x), batch):
            chunk = x[i : i + batch]
            interpreter, source, target = self._interpreter(chunk.shape)
            interpreter.set_tensor(source, chunk)
            interpreter.invoke()
            parts.append(interpreter.get_tensor(target))  # a copy
        return np.concatenate(parts)
