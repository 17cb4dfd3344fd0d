"""The export runners on real runtimes: ONNX Runtime and LiteRT against the NumPy reference, how
inputs/outputs are matched and cast, fixed batches, state kept between invocations, Flex ops, the
census, and hostile export files. (The `check --against` wiring is tested with the CLI.)

Every export is built once per test session (per xdist worker), lazily, under one tmp folder.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_parity
from conftest import ROOT, SAMPLES, build_with, save_model
from exports import TIME, flex_tflite, fused_fixed_batch_lstm, to_onnx, to_tflite, unrolled_lstm
from lstm_parity.errors import EXIT_BAD_INPUT, EXIT_KERAS_SIDE, BadInputError, KerasSideError, LstmParityError
from lstm_parity.runners import litert, onnx_runtime
from lstm_parity.runners.census import describe, onnx_census, tflite_census
from lstm_parity.runners.exports import Port, match_ports, plain_name
from lstm_parity.runners.litert import open_tflite
from lstm_parity.runners.onnx_runtime import open_onnx
from lstm_parity.spec import ModelSpec

ATOL = 1e-5


@dataclass
class Made:
    """A Keras model saved as `keras` and exported as `export`; `spec` is our reading of `keras`."""

    keras: Path
    export: Path
    spec: ModelSpec


# --------------------------------------------------------------------------------- model builders


def _lstm(k: Any) -> Any:
    return k.Sequential([k.Input((None, 3)), k.layers.LSTM(6), k.layers.Dense(2)])


def _gru(reset_after: bool):
    def make(k: Any) -> Any:
        return k.Sequential([k.Input((None, 3)), k.layers.GRU(5, reset_after=reset_after)])

    return make


def _bilstm_sequences(k: Any) -> Any:
    return k.Sequential([k.Input((None, 3)), k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True))])


def _masked_lstm(k: Any) -> Any:
    return k.Sequential([k.Input((None, 3)), k.layers.Masking(0.0), k.layers.LSTM(5)])


def _tokens_gru(k: Any) -> Any:
    tokens = k.Input((None,), dtype="int32", name="tokens")
    return k.Model(tokens, k.layers.GRU(5)(k.layers.Embedding(20, 4, mask_zero=True)(tokens)))


def _two_inputs(k: Any) -> Any:
    a, b = k.Input((TIME, 3), name="seq_a"), k.Input((TIME, 2), name="seq_b")
    joined = k.layers.Concatenate()([k.layers.LSTM(4)(a), k.layers.GRU(3)(b)])
    return k.Model([a, b], [k.layers.Dense(2, name="out_cls")(joined), k.layers.Dense(1, name="out_reg")(joined)])


def _fixed_time_lstm(k: Any) -> Any:
    inputs = k.Input((TIME, 3), name="feats")
    return k.Model(inputs, k.layers.Dense(2)(k.layers.LSTM(6)(inputs)))


def _hard_sigmoid_lstm(k: Any) -> Any:
    return k.Sequential([k.Input((None, 3)), k.layers.LSTM(6, recurrent_activation="hard_sigmoid")])


ONNX_MODELS = {  # name: (writer, builder, fixed batch size of the export)
    "lstm": ("k3-keras", _lstm, None),
    "gru_reset_after": ("k3-keras", _gru(True), None),
    "gru_reset_before": ("k3-keras", _gru(False), None),
    "bilstm_sequences": ("k3-keras", _bilstm_sequences, None),
    "masked_lstm": ("k3-keras", _masked_lstm, None),
    "tokens_gru": ("k3-keras", _tokens_gru, None),
    "two_inputs": ("k3-keras", _two_inputs, None),
    "fixed_batch": ("k3-keras", _fixed_time_lstm, 4),
    "k2_hard_sigmoid_lstm": ("k2-h5", _hard_sigmoid_lstm, None),  # tf_keras: Keras 2 hard_sigmoid
}
TFLITE_MODELS = {  # name: (tf_keras builder, quantize)
    "fused": (fused_fixed_batch_lstm, None),
    "unrolled": (unrolled_lstm, None),
    "unrolled_float16": (unrolled_lstm, "float16"),
    "unrolled_int8": (lambda: unrolled_lstm(units=32), "dynamic"),  # only weights of >= 1024 values become int8
}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """`exported(name)`: the Made for a model of ONNX_MODELS / TFLITE_MODELS (or "flex"), built once."""
    folder = tmp_path_factory.mktemp("exports")
    cache: dict[str, Made] = {}

    def get(name: str) -> Made:
        if name not in cache:
            cache[name] = _make(name, folder)
        return cache[name]

    return get


def _make(name: str, folder: Path) -> Made:
    if name == "flex":
        return Made(
            SAMPLES / "tutorial.keras",
            flex_tflite(folder / "flex.tflite"),
            lstm_parity.load(str(SAMPLES / "tutorial.keras")),
        )
    if name in ONNX_MODELS:
        writer, builder, batch = ONNX_MODELS[name]
        model = build_with(writer, builder)
        keras = save_model(model, writer, folder, name)
        export = to_onnx(model, folder / f"{name}.onnx", batch_size=batch)
    else:
        builder, quantize = TFLITE_MODELS[name]
        model = builder()
        keras = save_model(model, "k2-h5", folder, name)
        export = to_tflite(model, folder / f"{name}.tflite", quantize=quantize)
    return Made(keras, export, lstm_parity.load(str(keras)))


def _reference(made: Made, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return lstm_parity.predict(made.spec, inputs)


def _features(rows: int, time: int = TIME, features: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, time, features)).astype(np.float32)  # (rows, time, f)


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], atol: float = ATOL) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert np.abs(g.astype(np.float64) - w).max() <= atol


def _assert_one_line_error(exc: LstmParityError, path: Path | str, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message


# ---------------------------------------------------------------------------------- ONNX Runtime


@pytest.mark.parametrize(
    "name, recurrent",
    [
        ("lstm", {"fused": {"LSTM": 1}, "loops": {}}),
        ("gru_reset_after", {"fused": {}, "loops": {"Loop": 1}}),
        ("gru_reset_before", {"fused": {}, "loops": {"Loop": 1}}),
        ("bilstm_sequences", {"fused": {"LSTM": 1}, "loops": {}}),
        ("masked_lstm", {"fused": {}, "loops": {"Loop": 1}}),
        ("k2_hard_sigmoid_lstm", {"fused": {"LSTM": 1}, "loops": {}}),
    ],
)
def test_onnx_matches_the_reference(exported, name, recurrent):
    """Keras 3 LSTM/GRU/Bidirectional/masked exports and a tf_keras hard_sigmoid LSTM: within 1e-5
    at two batch sizes and time lengths."""
    made = exported(name)
    runner = open_onnx(str(made.export), made.spec)
    for rows, time in ((5, TIME), (7, 13)):
        x = _features(rows, time, seed=rows)  # (rows, time, 3)
        if name == "masked_lstm":
            for row in range(rows):
                x[row, :row] = 0.0  # pre-padded: row r starts with r masked steps
        _assert_close(runner.predict([x], 0, rows), _reference(made, [x]))
    census = runner.info.census
    assert {"fused": census["fused"], "loops": census["loops"]} == recurrent
    assert runner.info.kind == "onnxruntime" and runner.info.label == f"onnxruntime {name}.onnx"
    # An unnamed Keras 3 Input is keras_tensor in the export, input_layer once saved; tf_keras keeps input_1.
    inputs = "by name" if name.startswith("k2") else "by position"
    assert runner.info.matching == f"inputs {inputs}, outputs by position"  # outputs: output_0
    assert runner.input_shapes == [(None, None, 3)] and runner.info.notes == ()
    runner.close()


def _reordered_and_renamed(source: Path, target: Path, output_names: list[str]) -> Path:
    """The ONNX file with its inputs listed in reverse, its outputs renamed and listed in reverse."""
    import onnx

    proto = onnx.load(str(source))
    renames = {o.name: new for o, new in zip(proto.graph.output, output_names, strict=True)}
    for node in proto.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for output in proto.graph.output:
        output.name = renames[output.name]
    for field in (proto.graph.input, proto.graph.output):
        items = list(field)
        del field[:]
        field.extend(items[::-1])
    onnx.save(proto, str(target))
    return target


def test_onnx_matches_inputs_and_outputs_by_name_in_either_order(exported, tmp_path):
    """Two named inputs, two outputs: the export as tf2onnx writes it (inputs not necessarily in the
    model's order, outputs output_0/1) and a copy with everything reversed and the outputs named like
    the model's both give the right arrays in the model's order."""
    made = exported("two_inputs")
    renamed = _reordered_and_renamed(made.export, tmp_path / "renamed.onnx", ["out_cls", "out_reg"])
    xs = [_features(4, features=3), _features(4, features=2, seed=1)]  # seq_a (4, 9, 3), seq_b (4, 9, 2)
    want = _reference(made, xs)  # out_cls (4, 2), out_reg (4, 1)
    for path, matching in (
        (made.export, "inputs by name, outputs by position"),
        (renamed, "inputs by name, outputs by name"),
    ):
        runner = open_onnx(str(path), made.spec)
        assert runner.info.matching == matching
        assert runner.input_shapes == [(None, TIME, 3), (None, TIME, 2)]  # in the model's input order
        _assert_close(runner.predict(xs, 0, 4), want)


def test_onnx_partial_names_match_by_name_then_by_position_among_the_rest(exported, tmp_path):
    """Outputs [out_reg, out_cls_1] for the model's [out_cls, out_reg]: out_reg by name, out_cls to the
    port left (by position, a plain fallback would have given it out_reg's port)."""
    made = exported("two_inputs")
    renamed = _reordered_and_renamed(made.export, tmp_path / "partial.onnx", ["out_cls_1", "out_reg"])
    xs = [_features(4, features=3), _features(4, features=2, seed=1)]  # seq_a (4, 9, 3), seq_b (4, 9, 2)
    runner = open_onnx(str(renamed), made.spec)
    assert [port.name for port in runner.outputs] == ["out_reg", "out_cls_1"]
    assert runner.output_port == [1, 0]
    assert runner.info.matching == "inputs by name, outputs 1 by name, 1 by position"
    _assert_close(runner.predict(xs, 0, 4), _reference(made, xs))  # out_cls (4, 2), out_reg (4, 1)


def _port(name: str, signature_name: str = "") -> Port:
    return Port(name, np.dtype(np.float32), (None, 3), signature_name=signature_name)


@pytest.mark.parametrize(
    "model_names, export_names, ports, how",
    [
        (["zeta", "alpha"], ["alpha", "zeta"], [1, 0], "by name"),
        (["zeta", "alpha"], ["alpha", "zeta_1"], [1, 0], "1 by name, 1 by position"),
        (["zeta", "alpha"], ["output_1", "output_0"], [1, 0], "by position"),
        (["zeta", "alpha"], ["y", "x"], [0, 1], "by position"),
        (["a", "b", "c"], ["c", "q", "r"], [1, 2, 0], "1 by name, 2 by position"),
    ],
)
def test_match_ports_by_name_signature_index_then_position(model_names, export_names, ports, how):
    assert match_ports(model_names, [_port(n) for n in export_names], "outputs", "m.onnx") == (ports, how)


def test_match_ports_prefers_the_signature_name_and_refuses_a_crossed_name():
    """TFLite tensor names collide once undecorated; the signature's names decide. A port named like
    another model output is never taken by position."""
    tflite = [_port("StatefulPartitionedCall:1", "output_0"), _port("StatefulPartitionedCall:0", "output_1")]
    assert match_ports(["zeta", "alpha"], tflite, "outputs", "m.tflite") == ([0, 1], "by position")
    named = [_port("StatefulPartitionedCall:1", "alpha"), _port("StatefulPartitionedCall:0", "zeta")]
    assert match_ports(["zeta", "alpha"], named, "outputs", "m.tflite") == ([1, 0], "by name")
    with pytest.raises(BadInputError, match="cannot tell which"):
        match_ports(["zeta", "alpha"], [_port("zeta"), _port("zeta")], "outputs", "m.onnx")


def _quantized_onnx(path: Path, weight_type: str) -> Path:
    """x (batch, 4, 3) @ W (3, 2), W stored as int8 behind DequantizeLinear ("int8"), or as float16
    behind a Cast with a float16 input and output ("float16")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    if weight_type == "int8":
        dtype, nodes = TensorProto.FLOAT, [helper.make_node("DequantizeLinear", ["Wq", "scale", "zero"], ["W"])]
        stored = [
            helper.make_tensor("Wq", TensorProto.INT8, [3, 2], values.astype(np.int8).ravel().tolist()),
            helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("zero", TensorProto.INT8, [], [0]),
        ]
    else:
        dtype, nodes = TensorProto.FLOAT16, [helper.make_node("Identity", ["Wh"], ["W"])]
        stored = [numpy_helper.from_array(values.astype(np.float16), "Wh")]
    graph = helper.make_graph(
        [*nodes, helper.make_node("MatMul", ["x", "W"], ["y"])],
        "quantized",
        [helper.make_tensor_value_info("x", dtype, ["batch", 4, 3])],
        [helper.make_tensor_value_info("y", dtype, ["batch", 4, 2])],
        stored,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("weight_type", ["int8", "float16"])
def test_onnx_quantized_weights_are_in_the_census(weight_type, tmp_path):
    """A QDQ (int8 + DequantizeLinear) and a float16 graph: quantized, with the types the profile
    is chosen from; a float16 input near the float32 limit is cast to inf without a NumPy warning."""
    import warnings

    path = _quantized_onnx(tmp_path / f"{weight_type}.onnx", weight_type)
    census = onnx_census(str(path))
    assert census["quantized"] and census["quantized_types"] == [weight_type]
    assert describe(census).endswith(f"; quantized weights ({weight_type})")
    runner = _open(path)
    assert runner.info.census["quantized_types"] == [weight_type]
    x = _features(3, time=4)  # (3, 4, 3)
    x[0, 0, 0] = 3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (y,) = runner.predict([x], 0, 3)
    want = x[1:].astype(np.float64) @ np.arange(6).reshape(3, 2)  # (2, 4, 2)
    np.testing.assert_allclose(y[1:], want, atol=0.05, rtol=1e-2)


def test_onnx_session_threads_follow_the_environment(exported, monkeypatch):
    made = exported("lstm")
    monkeypatch.setenv("LSTM_PARITY_THREADS", "1")
    runner = open_onnx(str(made.export), made.spec)
    assert runner.session.get_session_options().intra_op_num_threads == 1


def test_onnx_token_inputs_are_cast_to_the_export_dtype(exported):
    """Embedding(mask_zero) + GRU with an int32 Input: int64 ids and float ids both run as int32."""
    made = exported("tokens_gru")
    runner = open_onnx(str(made.export), made.spec)
    assert runner.info.census["inputs"][0]["dtype"] == "int32" and made.spec.token_inputs() == [True]
    assert runner.info.matching == "inputs by name, outputs by position"
    ids = np.random.default_rng(3).integers(0, 20, size=(6, TIME))  # (rows, time) int64
    ids[:, :2] = 0  # masked steps
    want = _reference(made, [ids.astype(np.int32)])
    _assert_close(runner.predict([ids], 0, 6), want)
    _assert_close(runner.predict([ids.astype(np.float32)], 0, 6), want)


def test_onnx_fixed_batch_is_padded_and_the_padding_dropped(exported):
    """An export fixed to batch 4 runs 10 rows in 3 invocations; the 2 padded rows never come back."""
    made = exported("fixed_batch")
    runner = open_onnx(str(made.export), made.spec)
    assert runner.input_shapes == [(4, TIME, 3)]
    assert runner.info.notes == ("fixed batch 4: rows run 4 at a time, a short last batch padded",)
    x = _features(10)  # (10, 9, 3)
    out = runner.predict([x], 0, 10)
    _assert_close(out, _reference(made, [x]))
    note = "fixed batch 4: ran 3 invocations, last one padded with 2 rows"
    assert runner.info.notes == (note,)
    runner.predict([x[::-1]], 0, 10)  # the flow's second pass revisits rows: the note stays as it was
    assert runner.info.notes == (note,)
    runner.predict([x[:4]], 10, 14)
    assert runner.info.notes == ("fixed batch 4: ran 4 invocations, last one padded with 2 rows",)


def test_onnx_fixed_time_length_mismatch_is_bad_input(exported):
    made = exported("fixed_batch")
    runner = open_onnx(str(made.export), made.spec)
    with pytest.raises(BadInputError) as caught:
        runner.predict([_features(4, time=13)], 0, 4)
    _assert_one_line_error(caught.value, made.export, "fixes 9 timesteps", "has 13")


def test_onnx_runtime_failure_is_exit_4(exported, monkeypatch):
    """Whatever ORT raises at run time (its classes are not RuntimeError) becomes one exit-4 line."""
    made = exported("lstm")
    runner = open_onnx(str(made.export), made.spec)

    class Fail(Exception):  # stands in for onnxruntime_pybind11_state.Fail
        pass

    def boom(*args: Any) -> None:
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : something broke\nsecond line of a trace")

    monkeypatch.setattr(runner.session, "run", boom)
    with pytest.raises(KerasSideError) as caught:
        runner.predict([_features(2)], 0, 2)
    _assert_one_line_error(caught.value, made.export, "ONNX Runtime failed to run it: Fail:", "something broke")
    assert "second line" not in str(caught.value) and caught.value.exit_code == EXIT_KERAS_SIDE


# ---------------------------------------------------------------------------------------- LiteRT


def test_tflite_fused_fixed_batch_lstm_keeps_state_until_reset(exported):
    """The fused LSTM's variable tensors carry h/c into the next invoke: the runner never resets them
    (as an app calling invoke() in a loop would not), and reset() brings the first answer back."""
    made = exported("fused")
    runner = open_tflite(str(made.export), made.spec)
    x = _features(2)  # (2, 9, 3): exactly the fixed batch
    want = _reference(made, [x])
    first = runner.predict([x], 0, 2)
    _assert_close(first, want)
    second = runner.predict([x], 0, 2)
    assert np.abs(second[0] - first[0]).max() > 1e-3
    runner.reset()
    _assert_close(runner.predict([x], 0, 2), want)
    census = runner.info.census
    assert census["fused"] == {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1} and len(census["variable_tensors"]) == 2
    assert runner.info.matching == "inputs by name, outputs by name"  # the signature: feats, dense
    assert any("variable tensors keep state" in note for note in runner.info.notes)
    assert not runner.quantized


def test_tflite_unrolled_matches_on_repeated_calls_with_other_batch_sizes(exported):
    made = exported("unrolled")
    runner = open_tflite(str(made.export), made.spec)
    assert runner.input_shapes == [(None, TIME, 3)] and runner.info.census["variable_tensors"] == []
    for rows in (1, 5, 2, 5, 7):
        x = _features(rows, seed=rows)  # (rows, 9, 3)
        _assert_close(runner.predict([x], 0, rows), _reference(made, [x]))
    assert not any(note.startswith("fixed batch") for note in runner.info.notes)


def test_tflite_float16_weights_are_reported_as_quantized(exported):
    made = exported("unrolled_float16")
    runner = open_tflite(str(made.export), made.spec)
    assert runner.quantized and runner.info.census["quantized_types"] == ["float16"]
    assert runner.info.notes == ()  # the check says which profile judges it, the census which types
    x = _features(3)
    _assert_close(runner.predict([x], 0, 3), _reference(made, [x]), atol=1e-2)


def test_tflite_int8_weights_are_reported_as_quantized(exported):
    made = exported("unrolled_int8")
    runner = open_tflite(str(made.export), made.spec)
    assert runner.quantized and runner.info.census["quantized_types"] == ["int8"]
    assert runner.info.notes == ()  # the check says which profile judges it, the census which types
    assert describe(runner.info.census).endswith("; no Flex ops; quantized weights (int8)")
    x = _features(3)
    _assert_close(runner.predict([x], 0, 3), _reference(made, [x]), atol=0.1)


def _two_outputs(k: Any) -> Any:
    """feats (9, 3) -> LSTM -> zeta (3) and alpha (3): two outputs of one shape, so a swap shows."""
    inputs = k.Input((TIME, 3), name="feats")
    hidden = k.layers.LSTM(6, unroll=True, name="lstm")(inputs)
    return k.Model(inputs, [k.layers.Dense(3, name="zeta")(hidden), k.layers.Dense(3, name="alpha")(hidden)])


def _tflite_from_saved_model(model: Any, path: Path) -> Path:
    """`model` (tf_keras) exported as a SavedModel and converted from it: the signature names the
    outputs output_0/1, and the subgraph may list them in another order."""
    import contextlib
    import io
    import shutil
    import tempfile

    import tensorflow as tf

    folder = tempfile.mkdtemp(prefix="lstm-parity-sm-")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Saved artifact at ..."
            model.export(folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        path.write_bytes(converter.convert())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


def test_tflite_outputs_follow_the_signature_not_the_subgraph_order(tmp_path):
    """Two outputs of one shape: from_saved_model names them output_0/1 in the signature while the
    subgraph lists output_1 first; from_keras_model names them zeta/alpha. Both give the model's
    order, and the tensor names (StatefulPartitionedCall:1, :0) are not used."""
    model = build_with("k2-h5", _two_outputs, seed=11)
    keras = save_model(model, "k2-h5", tmp_path, "two")
    spec = lstm_parity.load(str(keras))
    x = _features(5)  # (5, 9, 3)
    want = lstm_parity.predict(spec, [x])  # zeta (5, 3), alpha (5, 3)
    for path, names, matching in (
        (
            _tflite_from_saved_model(model, tmp_path / "two_sm.tflite"),
            ["output_1", "output_0"],  # the subgraph's order is not the model's
            "inputs by name, outputs by position",
        ),
        (to_tflite(model, tmp_path / "two.tflite"), ["zeta", "alpha"], "inputs by name, outputs by name"),
    ):
        runner = open_tflite(str(path), spec)
        assert [entry["signature_name"] for entry in runner.info.census["outputs"]] == names
        assert len({plain_name(port.name) for port in runner.outputs}) == 1  # StatefulPartitionedCall(_1)
        assert runner.info.matching == matching
        _assert_close(runner.predict([x], 0, 5), want)
        runner.close()


def _int8_io_tflite(model: Any, path: Path) -> Path:
    """`model` fully integer-quantized, int8 inputs and outputs included."""
    import tensorflow as tf

    def representative() -> Any:
        for row in range(8):
            yield [_features(1, seed=row)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def test_tflite_int8_input_near_the_float_limit_quantizes_without_a_warning(tmp_path):
    """x / scale overflows to inf for inputs near 3e38: clipped to the int8 range, no NumPy warning."""
    import warnings

    model = unrolled_lstm()
    keras = save_model(model, "k2-h5", tmp_path, "unrolled")
    runner = open_tflite(str(_int8_io_tflite(model, tmp_path / "int8_io.tflite")), lstm_parity.load(str(keras)))
    assert runner.inputs[0].quantization is not None and runner.quantized
    x = np.full((2, TIME, 3), 3e38, dtype=np.float32)  # (2, 9, 3)
    x[1] = -3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (y,) = runner.predict([x], 0, 2)
    assert y.shape == (2, 2) and np.isfinite(y).all()


def test_tflite_flex_ops_are_refused_in_one_line(exported):
    made = exported("flex")
    with pytest.raises(KerasSideError) as caught:
        open_tflite(str(made.export), made.spec)
    _assert_one_line_error(
        caught.value, made.export, "needs TensorFlow Flex ops (FlexTensorListReserve", "unroll=True", "tf_keras"
    )
    assert "Node number" not in str(caught.value) and caught.value.exit_code == EXIT_KERAS_SIDE


# ---------------------------------------------------------------------------------------- census


def test_census_onnx_fused_lstm_versus_loop(exported):
    lstm, gru = onnx_census(str(exported("lstm").export)), onnx_census(str(exported("gru_reset_after").export))
    assert lstm["opset"] == 17 and lstm["fused"] == {"LSTM": 1} and lstm["loops"] == {}
    assert gru["loops"] == {"Loop": 1} and gru["fused"] == {}
    assert gru["ops"]["Sigmoid"] >= 1 and "Sigmoid" not in gru["ops_top_level"]  # counted inside the Loop body
    assert lstm["inputs"][0]["shape"] == [None, None, 3] and lstm["outputs"][0]["name"] == "output_0"
    assert lstm["external_data"] == [] and not lstm["quantized"] and lstm["quantized_types"] == []
    assert describe(lstm).startswith("ONNX opset 17: fused LSTM x1, ")
    assert describe(gru).startswith("ONNX opset 17: Loop x1, ")


def test_census_tflite_lists_builtin_ops(exported):
    fused = tflite_census(str(exported("fused").export))
    assert fused["builtin_ops"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1 and "FULLY_CONNECTED" in fused["builtin_ops"]
    assert fused["flex_ops"] == [] and fused["custom_ops"] == [] and not fused["quantized"]
    assert fused["inputs"][0]["shape"] == [2, TIME, 3]
    assert describe(fused).startswith("TFLite: builtin UNIDIRECTIONAL_SEQUENCE_LSTM x1, ")
    assert "; no Flex ops; float32 weights" in describe(fused)
    unrolled = tflite_census(str(exported("unrolled").export))
    assert unrolled["fused"] == {} and unrolled["builtin_ops"]["LOGISTIC"] >= TIME
    assert unrolled["inputs"][0]["shape"] == [None, TIME, 3]
    flex = tflite_census(str(exported("flex").export))
    assert "FlexTensorListReserve" in flex["flex_ops"] and flex["custom_ops"] == []
    assert "Flex ops FlexTensorList" in describe(flex)


# --------------------------------------------------------------------------- hostile export files


def _tiny_onnx(external: str | None = None) -> Any:
    """x (batch, 4, 3) @ W (3, 2): the tutorial sample's input shape; W stored externally if asked."""
    from onnx import TensorProto, helper

    weights = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32).tolist())
    if external is not None:
        weights.ClearField("float_data")
        weights.data_location = TensorProto.EXTERNAL
        weights.external_data.add(key="location", value=external)
        weights.external_data.add(key="length", value="24")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 2])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _write_external(folder: Path, location: str) -> Path:
    """A tiny model whose W lives in `location` (relative to `folder`), written with its 24 bytes."""
    model_dir = folder / "models"
    model_dir.mkdir(exist_ok=True)
    (folder / "outside.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    (model_dir / "inside.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    path = model_dir / "model.onnx"
    path.write_bytes(_tiny_onnx(external=location).SerializeToString())  # onnx.save would write the data
    return path


def _corrupt_root_table(data: bytes) -> bytes:
    """Point the Model table's "subgraphs" field far outside the table (its vtable entry)."""
    out = bytearray(data)
    root = struct.unpack_from("<I", out, 0)[0]
    vtable = root - struct.unpack_from("<i", out, root)[0]
    struct.pack_into("<H", out, vtable + 4 + 2 * 2, 0xFFF0)  # field 2 of Model = subgraphs
    return bytes(out)


def _random_bytes(size: int, start: bytes = b"") -> bytes:
    return start + np.random.default_rng(7).integers(0, 256, size=size, dtype=np.uint8).tobytes()


BAD_FILES = {  # name: (make(folder, exported) -> path, open kwargs, exit code, fragment of the message)
    "truncated_onnx": (
        lambda d, e: _write(d / "t.onnx", e("lstm").export.read_bytes()[:300]),
        {},
        EXIT_BAD_INPUT,
        "ONNX",
    ),
    "random_onnx": (lambda d, e: _write(d / "r.onnx", _random_bytes(2000, b"\x08")), {}, EXIT_BAD_INPUT, "ONNX"),
    "random_onnx_no_tag": (
        lambda d, e: _write(d / "r2.onnx", _random_bytes(2000, b"\xff")),
        {},
        EXIT_BAD_INPUT,
        "not an ONNX",
    ),
    "onnx_external_outside": (
        lambda d, e: _write_external(d, "../outside.bin"),
        {"allow_external_data": True},
        EXIT_BAD_INPUT,
        "outside the model's folder",
    ),
    "onnx_external_absolute": (
        lambda d, e: _write_external(d, str(d / "outside.bin")),
        {"allow_external_data": True},
        EXIT_BAD_INPUT,
        "outside the model's folder",
    ),
    "onnx_external_not_allowed": (
        lambda d, e: _write_external(d, "inside.bin"),
        {},
        EXIT_BAD_INPUT,
        "--allow-external-data",
    ),
    "onnx_external_missing": (
        lambda d, e: _write_external(d, "nope.bin"),
        {"allow_external_data": True},
        EXIT_BAD_INPUT,
        "does not exist",
    ),
    "truncated_tflite": (
        lambda d, e: _write(d / "t.tflite", e("unrolled").export.read_bytes()[:3000]),
        {},
        EXIT_BAD_INPUT,
        "not a valid TFLite model",
    ),
    "random_tflite": (lambda d, e: _write(d / "r.tflite", _random_bytes(3000)), {}, EXIT_BAD_INPUT, "TFL3"),
    "random_tflite_with_identifier": (
        lambda d, e: _write(d / "r2.tflite", _random_bytes(3000, b"\x1c\x00\x00\x00TFL3")),
        {},
        EXIT_BAD_INPUT,
        "not a valid TFLite model",
    ),
    "tflite_corrupt_table": (
        lambda d, e: _write(d / "c.tflite", _corrupt_root_table(e("unrolled").export.read_bytes())),
        {},
        EXIT_BAD_INPUT,
        "not a valid TFLite model",
    ),
    "empty_onnx": (lambda d, e: _write(d / "e.onnx", b""), {}, EXIT_BAD_INPUT, "empty"),
    "empty_tflite": (lambda d, e: _write(d / "e.tflite", b""), {}, EXIT_BAD_INPUT, "empty"),
    "directory_onnx": (lambda d, e: _mkdir(d / "folder.onnx"), {}, EXIT_BAD_INPUT, "is a directory"),
    "directory_tflite": (lambda d, e: _mkdir(d / "folder.tflite"), {}, EXIT_BAD_INPUT, "is a directory"),
    "missing_tflite": (lambda d, e: d / "missing.tflite", {}, EXIT_BAD_INPUT, "cannot read"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _open(path: Path, **kwargs: Any) -> Any:
    spec = lstm_parity.load(str(SAMPLES / "tutorial.keras"))
    opener = open_onnx if path.suffix == ".onnx" else open_tflite
    return opener(str(path), spec, **kwargs)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_export_file_is_one_line_error(case, exported, tmp_path, capfd):
    make, kwargs, code, fragment = BAD_FILES[case]
    path = make(tmp_path, exported)
    with pytest.raises(LstmParityError) as caught:
        _open(path, **kwargs)
    assert caught.value.exit_code == code, str(caught.value)
    _assert_one_line_error(caught.value, path, fragment)
    assert "Traceback" not in capfd.readouterr().err


def test_external_data_inside_the_folder_runs_when_allowed(tmp_path):
    path = _write_external(tmp_path, "inside.bin")
    runner = _open(path, allow_external_data=True)
    x = _features(3, time=4)  # (3, 4, 3)
    (y,) = runner.predict([x], 0, 3)
    np.testing.assert_allclose(y, x @ np.arange(6, dtype=np.float32).reshape(3, 2), rtol=1e-6)
    assert runner.info.notes == ("1 tensors loaded from external data",)
    assert runner.info.census["external_data"][0]["location"] == "inside.bin"


def test_a_runtime_crash_in_the_probe_is_contained(exported, monkeypatch):
    """A segfault while LiteRT loads a file (XNNPACK did that on a fuzzed file) kills only the child."""
    made = exported("unrolled")

    def crash(path: str) -> None:
        faulthandler.disable()  # pytest's handler would print the child's stack
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(litert, "_probe", crash)
    monkeypatch.delenv("LSTM_PARITY_NO_SANDBOX", raising=False)
    with pytest.raises(BadInputError) as caught:
        open_tflite(str(made.export), made.spec)
    _assert_one_line_error(caught.value, made.export, "LiteRT crashed", "signal 11")


@pytest.mark.parametrize(
    "module, opener, extra",
    [("onnxruntime", open_onnx, "onnx"), ("ai_edge_litert.interpreter", open_tflite, "tflite")],
)
def test_a_missing_runtime_names_the_extra(module, opener, extra, exported, monkeypatch):
    made = exported("lstm")
    path = made.export if extra == "onnx" else exported("unrolled").export
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(KerasSideError) as caught:
        opener(str(path), made.spec)
    _assert_one_line_error(caught.value, path, f"pip install 'lstm-parity[{extra}]'")


BLOCK_TENSORFLOW = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"blocked by test: {name}")
sys.meta_path.insert(0, Block())
"""


def test_census_and_runners_work_without_tensorflow(exported, tmp_path):
    """Importing census/runner modules, taking a census and running both runtimes never needs TF."""
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(_tiny_onnx().SerializeToString())
    tflite = exported("unrolled")
    code = BLOCK_TENSORFLOW + textwrap.dedent(f"""
        import numpy as np, lstm_parity
        from lstm_parity.runners.census import onnx_census, tflite_census
        from lstm_parity.runners.onnx_runtime import open_onnx
        from lstm_parity.runners.litert import open_tflite
        onnx_census(r"{onnx_path}"), tflite_census(r"{tflite.export}")
        open_onnx(r"{onnx_path}", lstm_parity.load(r"{SAMPLES / "tutorial.keras"}")).predict(
            [np.zeros((2, 4, 3), np.float32)], 0, 2)
        open_tflite(r"{tflite.export}", lstm_parity.load(r"{tflite.keras}")).predict(
            [np.zeros((2, {TIME}, 3), np.float32)], 0, 2)
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_runner_modules_do_not_import_a_runtime_at_import_time():
    for module in (onnx_runtime, litert):
        assert "onnxruntime" not in vars(module) and "Interpreter" not in vars(module)
