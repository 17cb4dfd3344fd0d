"""Op layers (tf.keras TFOpLambda / SlicingOpLambda, Keras 3 keras.ops nodes), Keras 1 Merge, and the
call plumbing they and the attention layers stand on: each call's keyword arguments and tensor
keywords reach the layer's function, and tensor keywords are graph dependencies."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from conftest import build_with, save_model
from lstm_parity.formats import open_model
from lstm_parity.reference import layers as reference_layers
from lstm_parity.reference.forward import forward
from lstm_parity.reference.layers import Call, LayerKind, LayerResult, reduced_precision

# ---------------------------------------------------------------- call plumbing


def _recorder(monkeypatch, class_name: str) -> list[tuple[list, list, Call]]:
    """Register a stand-in builder for `class_name` that records every call and returns its first input."""
    calls: list[tuple[list, list, Call]] = []

    def build(layer, ctx):
        def run(inputs, masks, call):
            calls.append((inputs, masks, call))
            return LayerResult([inputs[0]], [masks[0]])

        return run

    reference_layers._load_families()
    monkeypatch.setitem(reference_layers.REGISTRY, class_name, LayerKind(build, (), {}, call_kwargs=True))
    return calls


def _mha_model(k):
    """MultiHeadAttention called with value positionally (Keras 3) or as a keyword (tf.keras),
    key always as a keyword, and a constant keyword; query/value/key are the model's inputs."""
    q, v, key = k.Input(shape=(4, 3)), k.Input(shape=(5, 3)), k.Input(shape=(5, 3))
    mha = k.layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")
    out = mha(q, v, key=key, return_attention_scores=False)
    return k.Model([q, v, key], k.layers.Dense(2)(out))


@pytest.mark.parametrize("writer", ["k2-h5", "k3-keras", "k3-h5"])
def test_tensor_keywords_reach_the_layer(writer, tmp_path, monkeypatch):
    path = save_model(build_with(writer, _mha_model), writer, tmp_path)
    spec = open_model(path)
    layer = spec.layer("mha")
    assert set(layer.node_tensors[0]) == ({"key"} if writer != "k2-h5" else {"key", "value"})
    calls = _recorder(monkeypatch, "MultiHeadAttention")
    rng = np.random.default_rng(0)
    xq, xv, xk = (rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 3), (2, 5, 3), (2, 5, 3)))
    forward(spec, [xq, xv, xk])
    [(inputs, masks, call)] = calls
    np.testing.assert_array_equal(inputs[0], xq)
    value = inputs[1] if writer != "k2-h5" else call.tensors["value"]  # Keras 3 keeps value positional
    np.testing.assert_array_equal(value, xv)
    np.testing.assert_array_equal(call.tensors["key"], xk)
    assert call.tensor_masks["key"] is None and call.kwargs["return_attention_scores"] is False


def _attention_list_model(k):
    """Attention called on a list holding one tensor twice, with Embedding masks, and a call keyword."""
    tokens_q, tokens_v = k.Input(shape=(4,), dtype="int32"), k.Input(shape=(6,), dtype="int32")
    q = k.layers.Embedding(10, 3, mask_zero=True)(tokens_q)
    v = k.layers.Embedding(10, 3, mask_zero=True)(tokens_v)
    out = k.layers.Attention(name="att")([q, v, v], use_causal_mask=False)
    return k.Model([tokens_q, tokens_v], out)


@pytest.mark.parametrize("writer", ["k2-h5", "k3-keras", "k3-h5"])
def test_list_arguments_arrive_in_order_with_their_masks(writer, tmp_path, monkeypatch):
    path = save_model(build_with(writer, _attention_list_model), writer, tmp_path)
    spec = open_model(path)
    calls = _recorder(monkeypatch, "Attention")
    tq = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], dtype=np.int32)
    tv = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 0, 0, 0, 0]], dtype=np.int32)
    forward(spec, [tq, tv])
    [(inputs, masks, call)] = calls
    assert len(inputs) == 3 and inputs[1] is inputs[2]
    assert [x.shape for x in inputs] == [(2, 4, 3), (2, 6, 3), (2, 6, 3)]
    np.testing.assert_array_equal(masks[0], tq != 0)
    np.testing.assert_array_equal(masks[1], tv != 0)
    assert call.kwargs["use_causal_mask"] is False and not call.tensors


def test_layers_without_call_support_refuse_tensor_keywords(tmp_path):
    """A class whose function takes no keywords is refused (exit 3) rather than computed without them."""
    from lstm_parity.errors import UnsupportedError

    def make(k):
        x, state = k.Input(shape=(5, 3)), k.Input(shape=(4,))
        cell = k.layers.LSTM(4, name="lstm")
        return k.Model([x, state], cell(x, initial_state=[state, state]))

    spec = open_model(save_model(build_with("k3-keras", make), "k3-keras", tmp_path))
    assert not spec.layer("lstm").node_tensors[0]  # initial_state stays positional: no refusal
    forward(spec, [np.zeros((1, 5, 3), np.float32), np.zeros((1, 4), np.float32)])
    from dataclasses import replace

    lstm = spec.layer("lstm")
    patched = replace(lstm, node_tensors=({"constants": lstm.inbound[0][1]},))
    bad = replace(spec, layers=tuple(patched if layer is lstm else layer for layer in spec.layers))
    with pytest.raises(UnsupportedError, match=r"layer 'lstm' \(LSTM\): is called with tensor keyword"):
        forward(bad, [np.zeros((1, 5, 3), np.float32), np.zeros((1, 4), np.float32)])


# ---------------------------------------------------------------- op layers

W = np.linspace(-1.0, 1.0, 8, dtype=np.float32).reshape(4, 2)  # a constant operand saved in the file


def _tf_ops(k, ellipsis: bool = True):
    """tf.keras: TensorFlow functions and Python operators on Keras tensors (TFOpLambda / SlicingOpLambda).
    tf_keras cannot write an Ellipsis into its .keras zip: `ellipsis=False` leaves that slice out."""
    import tensorflow as tf

    x, y = k.Input(shape=(5, 3)), k.Input(shape=(5, 2))
    h = k.layers.LSTM(4, return_sequences=True)(x)  # (batch, 5, 4)
    s = k.layers.Dense(4)(y)  # (batch, 5, 4): a second branch, for tensor keywords
    score = tf.nn.softmax(k.layers.Dense(1)(h), axis=1)  # (batch, 5, 1): attention from ops
    outs = {
        "softmax": tf.nn.softmax(h),
        "sigmoid_tanh_relu": tf.math.sigmoid(h) + tf.tanh(h) - tf.nn.relu(h),
        "exp_log_sqrt_square": tf.exp(h) + tf.math.log(h * h + 1.0) + tf.sqrt(tf.square(h)),
        "reduce_sum": tf.reduce_sum(h, axis=1),
        "reduce_mean": tf.reduce_mean(h, axis=[1, 2], keepdims=True),
        "reduce_max_min": tf.reduce_max(h, -1) - tf.math.reduce_min(h, axis=-1),
        "matmul_tensor": tf.matmul(h, s, transpose_b=True),
        "matmul_constant": tf.matmul(h, W),
        "arithmetic": (h * 2.0 + 1.0 - s) / 2.0 + tf.multiply(h, s) - tf.math.subtract(h, 0.5),
        "constant_first": 1.0 - h + 2.0 / (h + 3.0),
        "unary_operators": -h + abs(h) + h**2,
        "truediv": tf.math.truediv(h, s + 5.0),
        "expand_squeeze": tf.squeeze(tf.expand_dims(h, -1), -1) + tf.expand_dims(h[:, 0], 1),
        "reshape": tf.reshape(h, (-1, 20)),
        "transpose": tf.transpose(h, [0, 2, 1]),
        "concat": tf.concat([h, s], axis=-1),
        "stack": tf.stack([h, s], axis=1),
        "slices": h[:, 1:4, ::2],
        "ellipsis_newaxis": h[..., None, 0] if ellipsis else h[:, :, None, 0],
        "last_step_reversed": h[:, -1] + h[:, ::-1][:, 0],
        "cast_where_maximum": tf.cast(h > 0, tf.float32) + tf.where(h > s, h, 0.0) + tf.maximum(h, 0.1),
        "l2_normalize": tf.math.l2_normalize(h, axis=-1),
        "attention_context": k.layers.Dense(2)(tf.reduce_sum(h * score, axis=1)),
        "floordiv_mod": h // 0.3 + h % 0.3,  # saved as compat.v1.floor_div and math.floormod
        "integer_math": tf.cast(tf.cast(h * 10.0, tf.int32) // 3, tf.float32)
        + tf.cast(tf.reduce_mean(tf.cast(h > 0, tf.int32), axis=-1, keepdims=True), tf.float32),  # stays int
        "gelu_round": tf.nn.gelu(h) + tf.math.round(h * 3.0),
        "gather": tf.gather(h, [0, 2, 4], axis=1),
        "split_unstack": tf.split(h, [1, -1], axis=1)[1] + tf.unstack(h, axis=1)[2][:, None],
        "repeat_elements": k.backend.repeat_elements(h, 2, axis=2),  # tf.split, then tf.concat
        "logical_xor": tf.cast(tf.math.logical_xor(h > 0, s > 0), tf.float32),
        "v1_where_rows": tf.compat.v1.where(tf.reduce_sum(h, axis=[1, 2]) > 0, h, s),  # a vector picks rows
        "tile": tf.tile(h, [1, 2, 1]),
        "casts": tf.cast(tf.cast(h * 5.0, tf.int8), tf.float32)
        + tf.cast(tf.cast(tf.abs(h) * 50.0, tf.uint8), tf.float32)
        + tf.cast(tf.cast(h, tf.bool), tf.float32)
        + tf.cast(tf.cast(h * 3.0, tf.bfloat16), tf.float32)
        + tf.cast(tf.cast(h * 3.0, tf.float16), tf.float32),
    }
    return k.Model([x, y], list(outs.values()))


def _keras_ops(k):
    """Keras 3: keras.ops calls and Python operators, recorded in the graph as operations."""
    ops = k.ops
    x, y = k.Input(shape=(5, 3)), k.Input(shape=(5, 2))
    h = k.layers.LSTM(4, return_sequences=True)(x)
    s = k.layers.Dense(4)(y)
    score = ops.softmax(k.layers.Dense(1)(h), axis=1)
    outs = {
        "softmax": ops.softmax(h),
        "sigmoid_tanh_relu": ops.sigmoid(h) + ops.tanh(h) - ops.relu(h),
        "exp_log_sqrt_square": ops.exp(h) + ops.log(h * h + 1.0) + ops.sqrt(ops.square(h)),
        "sum": ops.sum(h, axis=1),
        "mean": ops.mean(h, axis=[1, 2], keepdims=True),
        "max_min": ops.max(h, -1) - ops.min(h, axis=-1),
        "matmul_tensor": ops.matmul(h, ops.transpose(s, (0, 2, 1))),
        "matmul_constant": ops.matmul(h, W),
        "arithmetic": (h * 2.0 + 1.0 - s) / 2.0 + ops.multiply(h, s) - ops.subtract(h, 0.5),
        "constant_first": 1.0 - h + 2.0 / (h + 3.0),
        "unary_operators": -h + ops.abs(h) + h**2,
        "divide": ops.divide(h, s + 5.0),
        "expand_squeeze": ops.squeeze(ops.expand_dims(h, -1), -1) + ops.expand_dims(h[:, 0], 1),
        "reshape": ops.reshape(h, (-1, 20)),
        "concatenate": ops.concatenate([h, s], axis=-1),
        "stack": ops.stack([h, s], axis=1),
        "slices": h[:, 1:4, ::2],
        "ellipsis_newaxis": h[..., None, 0],
        "last_step_reversed": h[:, -1] + h[:, ::-1][:, 0],
        "cast_where_maximum": ops.cast(h > 0, "float32") + ops.where(h > s, h, 0.0) + ops.maximum(h, 0.1),
        "einsum": ops.einsum("btd,bsd->bts", h, s),
        "attention_context": k.layers.Dense(2)(ops.sum(h * score, axis=1)),
        "mod_floordiv": h % 0.3 + h // 0.3,
        "gelu_round": ops.gelu(h) + ops.round(h * 3.0),
        "take": ops.take(h, [0, 2, 4], axis=1),
        "split_unstack": ops.split(h, [1, 3], axis=1)[1] + ops.unstack(h, axis=1)[2][:, None],
        "logical_xor": ops.cast(ops.logical_xor(h > 0, s > 0), "float32"),
        "swapaxes": ops.swapaxes(h, 1, 2),
        "argmax_argmin": ops.cast(ops.argmax(h, axis=-1) + 10 * ops.argmin(h, axis=-1), "float32"),
        "dot_tensordot": ops.dot(h, W) + ops.tensordot(h, W, axes=1),
        "normalize": ops.normalize(h, axis=-1),
        "repeat": ops.repeat(h, 2, axis=1),
        "convert_to_tensor": ops.convert_to_tensor(h) * 2.0,
        "casts": ops.cast(ops.cast(h * 5.0, "int8"), "float32")
        + ops.cast(ops.cast(ops.abs(h) * 50.0, "uint8"), "float32")
        + ops.cast(ops.cast(h, "bool"), "float32")
        + ops.cast(ops.cast(h * 5.0, "int16"), "float32")
        + ops.cast(ops.cast(h * 3.0, "bfloat16"), "float32")
        + ops.cast(ops.cast(h * 3.0, "float16"), "float32"),
    }
    return k.Model([x, y], list(outs.values()))


def _keras_outputs(model, xs) -> list[np.ndarray]:
    """The model's outputs as Keras computes them, called eagerly (predict's graph tracing costs seconds
    per model; `check` compares against predict itself)."""
    outputs = model(xs, training=False)
    return [np.asarray(y) for y in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


OP_MODELS = {
    "k2-h5": _tf_ops,
    "k2-keras": lambda k: _tf_ops(k, ellipsis=False),
    "k3-keras": _keras_ops,
    "k3-h5": _keras_ops,
}


@pytest.fixture(scope="module", params=sorted(OP_MODELS))
def op_model(request, tmp_path_factory):
    """Per writer ("k2-keras": tf_keras' own .keras zip), the saved op model, its spec, what Keras'
    predict gives, and the inputs."""
    writer = request.param
    model = build_with(writer.replace("k2-keras", "k2-h5"), OP_MODELS[writer], seed=3)
    folder = tmp_path_factory.mktemp(writer.replace("-", "_"))
    if writer == "k2-keras":
        path = folder / "model.keras"
        model.save(path)
    else:
        path = save_model(model, writer, folder)
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((6, 5, 3)).astype(np.float32), rng.standard_normal((6, 5, 2)).astype(np.float32)]
    return writer, open_model(path), _keras_outputs(model, xs), xs


def test_op_layers_match_keras_also_through_a_dump(op_model, tmp_path, run_cli):
    """Every op of the models computes as Keras does, in float64 and float32; the calls' constants and
    tensor keywords travel through `dump` JSON, so `predict dump.json` computes exactly the same."""
    writer, spec, expected, xs = op_model
    op_classes = {layer.class_name for layer in spec.layers if "Op" in layer.class_name or "ops." in layer.class_name}
    assert op_classes and writer.startswith("k2") == ("TFOpLambda" in op_classes)
    assert reduced_precision(spec) is None  # a cast to bfloat16 / float16 is not the model's dtype policy
    for dtype, tolerance in ((np.float64, 1e-6), (np.float32, 1e-5)):
        got = forward(spec, xs, dtype=dtype).outputs
        assert len(got) == len(expected)
        for index, (ours, theirs) in enumerate(zip(got, expected, strict=True)):
            assert ours.shape == theirs.shape, f"output {index}"
            message = f"output {index} ({writer}, {np.dtype(dtype)})"
            np.testing.assert_allclose(ours, theirs, atol=tolerance, rtol=tolerance, err_msg=message)
    out = tmp_path / "dump.json"
    result = run_cli("dump", spec.source, "-o", out)
    assert result.exit_code == 0, result.output
    restored = open_model(out)
    assert _calls(restored) == _calls(spec)
    for ours, theirs in zip(forward(restored, xs).outputs, forward(spec, xs).outputs, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def _calls(spec):
    """Per layer: its calls' positional constants, tensor keywords and keywords (no calls' worth = empty)."""
    return [
        (
            layer.node_args,
            *(tuple(per_node) if any(per_node) else () for per_node in (layer.node_tensors, layer.node_kwargs)),
        )
        for layer in spec.layers
    ]


def _unknown_tf_op(k):
    import tensorflow as tf

    x = k.Input(shape=(5, 3))
    h = k.layers.LSTM(4, return_sequences=True)(x)
    return k.Model(x, [tf.math.cumprod(h, axis=1), tf.matmul(h, h, adjoint_b=True)])


def _unknown_keras_op(k):
    x = k.Input(shape=(5, 3))
    return k.Model(x, k.ops.cumprod(k.layers.LSTM(4, return_sequences=True)(x), axis=1))


@pytest.mark.parametrize(
    "writer,make,fragment",
    [
        ("k2-h5", _unknown_tf_op, "(TFOpLambda): the TensorFlow op tf.math.cumprod is not supported"),
        ("k3-keras", _unknown_keras_op, "the keras.ops operation 'Cumprod' is not supported"),
        ("k3-h5", _unknown_keras_op, "the keras.ops operation 'Cumprod' is not supported"),
    ],
)
def test_ops_outside_the_table_exit_3_naming_the_op(writer, make, fragment, tmp_path, run_cli):
    path = save_model(build_with(writer, make), writer, tmp_path)
    result = run_cli("predict", path, "-o", tmp_path / "y.npy", "--samples", "2")
    line = result.stderr.strip()
    assert result.exit_code == 3 and fragment in line and len(line.splitlines()) == 1, result.output
    assert line.endswith("(README: Op layers lists the supported ops)")  # no count of the table's alias keys


def test_an_op_option_that_changes_the_math_is_refused(tmp_path, run_cli):
    import dataclasses

    spec = open_model(save_model(build_with("k2-h5", _unknown_tf_op), "k2-h5", tmp_path))
    kept = tuple(layer for layer in spec.layers if layer.config.get("function") != "math.cumprod")
    spec = dataclasses.replace(spec, layers=kept, outputs=spec.outputs[1:])
    from lstm_parity.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match=r"tf.linalg.matmul with adjoint_b=True is not supported"):
        forward(spec, [np.zeros((1, 5, 3), np.float32)])


def test_check_passes_on_an_op_layer_model(op_model, tmp_path, run_cli):
    """The whole check flow (Keras loads the file itself) on the op-layer models; Keras 3.15 cannot
    load its own legacy .h5 files holding keras.ops nodes, and `check` says so (exit 4)."""
    writer, spec, _, _ = op_model
    result = run_cli("check", spec.source, "--samples", "4")
    if writer == "k3-h5":
        assert result.exit_code == 4 and "cannot load the file" in result.stderr, result.output
    else:
        assert result.exit_code == 0, result.output


def _only(spec, index: int):
    """`spec` computing only its output `index`: the layers that output depends on (inputs kept)."""
    import dataclasses

    by_name = {layer.name: layer for layer in spec.layers}
    keep, stack = {ref[0] for ref in spec.inputs}, [spec.outputs[index][0]]
    while stack:
        layer = by_name[stack.pop()]
        if layer.name not in keep or layer.class_name != "InputLayer":
            keep.add(layer.name)
            stack += [
                ref[0] for node in range(len(layer.inbound)) for ref in layer.node_refs(node) if ref[0] not in keep
            ]
    kept = tuple(layer for layer in spec.layers if layer.name in keep)
    return dataclasses.replace(spec, layers=kept, outputs=(spec.outputs[index],))


def _tf_batch_mixers(k):
    """Each output: a TensorFlow op working across the batch axis (Keras' predict does it per batch)."""
    import tensorflow as tf

    x, y = k.Input(shape=(5, 3)), k.Input(shape=(5, 4))
    h = k.layers.LSTM(4, return_sequences=True)(x)
    outs = [
        tf.reduce_mean(h) + 0.0 * h,
        tf.nn.softmax(h, axis=0),
        tf.concat([h, y], axis=0),
        tf.stack([h, y]),
        h[0],
        tf.transpose(h, [1, 0, 2]),
        tf.math.l2_normalize(h, axis=0),
        tf.cumsum(h),
        tf.gather(h, [0]),
        tf.tile(h, [2, 1, 1]),
        tf.expand_dims(h, 0),
        tf.reshape(h, [1, -1]),
        tf.matmul(h[:, 0], h[:, 0], transpose_a=True),
    ]
    return k.Model([x, y], outs)


TF_MIXERS = [
    "tf.math.reduce_mean works across the batch axis (over all axes)",
    "tf.nn.softmax works across the batch axis (axis 0)",
    "tf.concat works across the batch axis (axis 0)",
    "tf.stack works across the batch axis (axis 0)",
    "tf.__operators__.getitem works across the batch axis (index 0 on the batch axis)",
    "tf.compat.v1.transpose works across the batch axis (permutation [1, 0, 2])",
    "tf.math.l2_normalize works across the batch axis (axis 0)",
    "tf.math.cumsum works across the batch axis (axis 0)",
    "tf.compat.v1.gather works across the batch axis (axis 0)",
    "tf.tile works across the batch axis (multiples [2, 1, 1])",
    "tf.expand_dims works across the batch axis (axis 0)",
    "tf.reshape works across the batch axis (shape [1, -1])",
    "tf.linalg.matmul works across the batch axis",
]


def _keras_batch_mixers(k):
    ops = k.ops
    x, y = k.Input(shape=(5, 3)), k.Input(shape=(5, 4))
    h = k.layers.LSTM(4, return_sequences=True)(x)
    outs = [
        ops.mean(h) + 0.0 * h,
        ops.softmax(h, axis=0),
        ops.concatenate([h, y]),
        ops.stack([h, y]),
        h[0],
        ops.transpose(h),
        ops.normalize(h, axis=0),
        ops.cumsum(h),
        ops.take(h, [0]),
        ops.argmax(h),
        ops.einsum("bij,cij->bc", h, y),
        ops.repeat(h, 2, axis=0),
        ops.swapaxes(h, 0, 1),
        ops.dot(h[:, 0], ops.transpose(h[:, 1])),
    ]
    return k.Model([x, y], outs)


KERAS_MIXERS = [
    "keras.ops Mean works across the batch axis (over all axes)",
    "keras.ops Softmax works across the batch axis (axis 0)",
    "keras.ops Concatenate works across the batch axis (axis 0)",
    "keras.ops Stack works across the batch axis (axis 0)",
    "keras.ops GetItem works across the batch axis (index 0 on the batch axis)",
    "keras.ops Transpose works across the batch axis (permutation None)",
    "keras.ops Normalize works across the batch axis (axis 0)",
    "keras.ops Cumsum works across the batch axis (over all axes)",
    "keras.ops Take works across the batch axis (over all axes)",
    "keras.ops Argmax works across the batch axis (over all axes)",
    "keras.ops Einsum works across the batch axis (subscripts 'bij,cij->bc')",
    "keras.ops Repeat works across the batch axis (axis 0)",
    "keras.ops Swapaxes works across the batch axis (axes [0, 1])",
    "keras.ops Transpose works across the batch axis (permutation None)",  # the 2-D transpose before dot
]


@pytest.mark.parametrize(
    "writer,make,fragments", [("k2-h5", _tf_batch_mixers, TF_MIXERS), ("k3-keras", _keras_batch_mixers, KERAS_MIXERS)]
)
def test_ops_across_the_batch_axis_are_refused(writer, make, fragments, tmp_path):
    """predict computes a model per batch of 32 samples: an op reducing, normalizing, joining, indexing,
    reordering or repeating along axis 0 depends on that batch size, so it exits 3 (it used to compute
    the whole input at once, 0.025 off Keras on 100 samples)."""
    from lstm_parity.errors import UnsupportedError

    spec = open_model(save_model(build_with(writer, make), writer, tmp_path))
    xs = [np.ones((3, 5, 3), np.float32), np.ones((3, 5, 4), np.float32)]
    assert len(spec.outputs) == len(fragments)
    for index, fragment in enumerate(fragments):
        with pytest.raises(UnsupportedError, match=re.escape(fragment)):
            forward(_only(spec, index), xs)


def _mutated(path, folder, change):
    """A copy of the saved model `path` whose config's layer list `change` edits in place."""
    import json
    import shutil
    import zipfile

    import h5py

    target = folder / path.name
    if path.suffix == ".h5":
        shutil.copy(path, target)
        with h5py.File(target, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            change(config["config"]["layers"])
            f.attrs["model_config"] = json.dumps(config)
        return target
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                change(config["config"]["layers"])
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return target


def _tf_call(layers, function):
    """The saved call (node data) of the first op layer computing `function`."""
    return next(layer for layer in layers if layer["config"].get("function") == function)["inbound_nodes"][0]


def _tf_slice(layers):
    """The first slice with a start among tf.keras' saved `x[...]` calls."""
    for layer in layers:
        if layer["config"].get("function") == "__operators__.getitem":
            spec = layer["inbound_nodes"][0][3]["slice_spec"]
            found = [item for item in spec if isinstance(item, dict) and item.get("start") is not None]
            if found:
                return found[0]
    raise AssertionError("no slice with a start")


def _keras_op(layers, class_name):
    return next(layer for layer in layers if layer["class_name"] == class_name)


def _keras_constant(layers):
    """The first `__numpy__` constant among the keras.ops calls' arguments."""
    for layer in layers:
        for node in layer.get("inbound_nodes") or []:
            for arg in node.get("args", []):
                if isinstance(arg, dict) and arg.get("class_name") == "__numpy__":
                    return arg["config"]
    raise AssertionError("no constant")


MALFORMED = {
    "slice start string": (
        "k2-h5",
        lambda ls: _tf_slice(ls).update(start="a"),
    ),
    "softmax axis string": ("k2-h5", lambda ls: _tf_call(ls, "nn.softmax")[3].update(axis="x")),
    "reshape shape string": ("k2-h5", lambda ls: _tf_call(ls, "reshape")[3].update(shape="abc")),
    "constant string": (
        "k2-h5",
        lambda ls: next(
            node
            for node in (layer["inbound_nodes"][0] for layer in ls if layer["inbound_nodes"])
            if node and node[0] == "_CONSTANT_VALUE"
        ).__setitem__(2, "hello"),
    ),
    "tile too large": ("k2-h5", lambda ls: _tf_call(ls, "tile")[3].update(multiples=[1, 100000, 100000])),
    "sum axis string": ("k3-keras", lambda ls: _keras_op(ls, "Sum")["config"].update(axis="z")),
    "concatenate axis string": ("k3-keras", lambda ls: _keras_op(ls, "Concatenate")["config"].update(axis="q")),
    "einsum subscripts int": ("k3-keras", lambda ls: _keras_op(ls, "Einsum")["config"].update(subscripts=5)),
    "constant dtype unknown": ("k3-keras", lambda ls: _keras_constant(ls).update(dtype="not_a_dtype")),
    "constant dtype object": ("k3-keras", lambda ls: _keras_constant(ls).update(dtype="object")),
    "repeat too large": ("k3-keras", lambda ls: _keras_op(ls, "Repeat")["config"].update(repeats=10**9)),
}


@pytest.mark.parametrize(
    "case,op_model",
    sorted(((case, writer) for case, (writer, _) in MALFORMED.items()), key=lambda item: item[::-1]),
    indirect=["op_model"],  # grouped by writer: each saved model is built once
)
def test_malformed_op_arguments_exit_2_naming_the_layer(case, op_model, tmp_path, run_cli):
    """A saved argument no Keras could have written (a string axis, shape, slice bound or constant, an
    unknown constant dtype, a result too large to hold) is bad input: exit 2 in one line naming the
    layer, never an internal error (exit 5)."""
    from pathlib import Path

    path = _mutated(Path(op_model[1].source), tmp_path, MALFORMED[case][1])
    result = run_cli("predict", path, "-o", tmp_path / "y.npz", "--samples", "2")
    line = result.stderr.strip()
    assert result.exit_code == 2 and len(line.splitlines()) == 1 and "layer '" in line, result.output


def test_tf_einsum_whose_operands_tf_keras_did_not_save_is_refused(tmp_path, run_cli):
    """tf.keras saves only tf.einsum's equation (the tensors go to *args, which it drops): exit 3 saying
    so, not exit 2 about weights of layers that seem unused."""
    import tensorflow as tf

    def make(k):
        x, y = k.Input(shape=(5, 3)), k.Input(shape=(5, 2))
        h, s = k.layers.LSTM(4, return_sequences=True)(x), k.layers.Dense(4)(y)
        return k.Model([x, y], tf.einsum("btd,bsd->bts", h, s))

    path = save_model(build_with("k2-h5", make), "k2-h5", tmp_path)
    result = run_cli("predict", path, "-o", tmp_path / "y.npy", "--samples", "2")
    assert result.exit_code == 3 and "tf.keras did not save the operands of tf.einsum" in result.stderr


# ---------------------------------------------------------------- Keras 1 Merge


# Per Keras 1 Merge in the test file: mode, options, the LSTM after it (to see its mask), its inputs.
# l1 (masked) and l2: (batch, 4, 4) sequences (square: axes 1 and 2 contract together); v1, v2: (batch, 3).
MERGES: list[tuple[str, dict[str, Any], str | None, tuple[str, ...]]] = [
    ("sum", {}, "after_sum", ("l1", "l2")),
    ("mul", {}, None, ("l1", "l2")),
    ("ave", {}, None, ("l1", "l2")),
    ("max", {}, "after_max", ("l1", "l2")),
    ("concat", {"concat_axis": 1}, "after_concat", ("l1", "l1")),  # both masked: Keras 2 cannot mix here
    ("concat", {}, None, ("v1", "v2")),
    ("sum", {}, None, ("l1", "l2", "l1")),
    ("ave", {}, None, ("l1", "l2", "l2")),
    ("dot", {"dot_axes": [2, 2]}, None, ("l1", "l2")),
    ("dot", {"dot_axes": -1}, None, ("v1", "v2")),
    ("dot", {"dot_axes": [1, 2]}, None, ("l1", "l2")),
    ("dot", {"dot_axes": [[1], [2]]}, None, ("l1", "l2")),  # Keras 0.x / 1.0 wrote the pair as axis lists
    ("cos", {"dot_axes": 1}, None, ("v1", "v2")),
    ("cos", {"dot_axes": [2, 2]}, None, ("l1", "l2")),
    ("cos", {"dot_axes": [1, 2]}, None, ("l1", "l2")),
]
SOURCES = {"l1": ("masking", 4, True), "l2": ("b", 4, True), "v1": ("a", 3, False), "v2": ("b", 3, False)}


def _dot_axes(options: dict, default: int = -1):
    axes = options.get("dot_axes", default)
    return [a[0] if isinstance(a, list) else a for a in axes] if isinstance(axes, list) else axes


def _merge_twin(k):
    """tf_keras' merge layers standing for each Keras 1 Merge of MERGES (same LSTM names and weights);
    a cos mode is given as its three batch dots: x.y, x.x and y.y over the same pair of axes."""
    L = k.layers
    inputs = {"a": k.Input(shape=(4, 3), name="a"), "b": k.Input(shape=(4, 3), name="b")}
    inputs["masking"] = L.Masking(name="masking")(inputs["a"])
    t = {
        name: L.LSTM(units, return_sequences=seq, name=name)(inputs[src]) for name, (src, units, seq) in SOURCES.items()
    }
    layer = {"sum": L.Add, "mul": L.Multiply, "ave": L.Average, "max": L.Maximum}
    outs = []
    for mode, options, after, sources in MERGES:
        xs = [t[name] for name in sources]
        if mode in layer:
            merged = layer[mode]()(xs)
        elif mode == "concat":
            merged = L.Concatenate(axis=options.get("concat_axis", -1))(xs)
        elif mode == "dot":
            merged = L.Dot(axes=_dot_axes(options))(xs)
        else:
            axes = _dot_axes(options)
            outs += [L.Dot(axes=axes)(xs), L.Dot(axes=axes)([xs[0], xs[0]]), L.Dot(axes=axes)([xs[1], xs[1]])]
            continue
        outs.append(L.LSTM(2, name=after)(merged) if after else merged)
    return k.Model([inputs["a"], inputs["b"]], outs)


def _keras1_lstm(name: str, units: int, return_sequences: bool, inbound: str) -> dict:
    config = {"name": name, "output_dim": units, "return_sequences": return_sequences, "activation": "tanh"}
    config |= {"inner_activation": "sigmoid", "go_backwards": False, "stateful": False, "consume_less": "cpu"}
    return {"class_name": "LSTM", "name": name, "config": config, "inbound_nodes": [[[inbound, 0, 0]]]}


def _keras1_lstm_weights(layer) -> list[tuple[str, np.ndarray]]:
    kernel, recurrent, bias = layer.get_weights()
    units = recurrent.shape[0]
    arrays = []
    for gate, index in (("i", 0), ("c", 2), ("f", 1), ("o", 3)):  # Keras 1 stored i, c, f, o
        part = slice(index * units, (index + 1) * units)
        arrays += [(f"W_{gate}", kernel[:, part]), (f"U_{gate}", recurrent[:, part]), (f"b_{gate}", bias[part])]
    return [(f"{layer.name}_{name}:0", value) for name, value in arrays]


def _write_keras1_merge_file(path, twin) -> None:
    import json

    import h5py

    def node(*names):
        return [[[name, 0, 0] for name in names]]

    inputs = [
        {"class_name": "InputLayer", "name": n, "config": {"batch_input_shape": [None, 4, 3], "name": n}}
        for n in ("a", "b")
    ]
    layers = [*({**entry, "inbound_nodes": []} for entry in inputs)]
    layers.append({"class_name": "Masking", "name": "masking", "config": {"name": "masking", "mask_value": 0.0}})
    layers[-1]["inbound_nodes"] = node("a")
    layers += [_keras1_lstm(name, units, seq, src) for name, (src, units, seq) in SOURCES.items()]
    outputs = []
    for index, (mode, options, after, sources) in enumerate(MERGES):
        name = f"merge_{index + 1}"
        config = {"name": name, "mode": mode, "mode_type": "raw", "concat_axis": -1, "dot_axes": -1} | options
        config |= {"output_shape": None, "output_shape_type": "raw", "output_mask": None, "arguments": {}}
        layers.append({"class_name": "Merge", "name": name, "config": config, "inbound_nodes": node(*sources)})
        if after:
            layers.append(_keras1_lstm(after, 2, False, name))
        outputs.append([after or name, 0, 0])
    model_config = {
        "class_name": "Model",
        "config": {"name": "m", "layers": layers, "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": outputs},
    }
    recurrent = [layer for layer in twin.layers if layer.__class__.__name__ == "LSTM"]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["model_config"] = json.dumps(model_config).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [layer.name.encode() for layer in recurrent]
        for layer in recurrent:
            weights = _keras1_lstm_weights(layer)
            sub = group.create_group(layer.name)
            sub.attrs["weight_names"] = [name.encode() for name, _ in weights]
            for name, value in weights:
                sub.create_dataset(name, data=value)


@pytest.fixture(scope="module")
def keras1_merge(tmp_path_factory):
    """A Keras 1 functional file with one Merge per mode, and what Keras 2's merge layers compute."""
    twin = build_with("k2-h5", _merge_twin, seed=11)
    path = tmp_path_factory.mktemp("keras1") / "keras1_merge.h5"
    _write_keras1_merge_file(path, twin)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((5, 4, 3)).astype(np.float32) for _ in range(2)]
    xs[0][0, 3:] = 0.0  # padding the Masking layer masks: the merged masks reach the LSTMs after sum and concat
    xs[0][1, :2] = 0.0
    outputs = iter(_keras_outputs(twin, xs))
    expected = []
    for mode, *_ in MERGES:
        if mode != "cos":
            expected.append(next(outputs))
            continue
        # Keras 1's cos: batch_dot(x, y) / max(sqrt(batch_dot(x, x) * batch_dot(y, y)), 1e-7) over the same
        # pair of axes, then a new axis 1. For vectors that is the normalized dot; for sequences the divisor
        # is a product of Gram matrices (NaN where it is negative), computed here from Keras' batch dots.
        xy, xx, yy = next(outputs), next(outputs), next(outputs)
        with np.errstate(invalid="ignore"):
            expected.append(np.expand_dims(xy / np.maximum(np.sqrt(xx * yy), 1e-7), 1))
    return open_model(path), xs, expected


def test_keras1_merge_modes_compute_like_the_keras2_merge_layers(keras1_merge):
    spec, xs, expected = keras1_merge
    assert [layer.class_name for layer in spec.layers].count("Merge") == len(MERGES)
    for dtype, tolerance in ((np.float64, 1e-6), (np.float32, 1e-5)):
        got = forward(spec, xs, dtype=dtype).outputs
        for (mode, options, _, _), ours, theirs in zip(MERGES, got, expected, strict=True):
            assert ours.shape == theirs.shape, (mode, options)
            gram = isinstance(options.get("dot_axes"), list) and mode == "cos"  # Gram entries cancel
            message = f"{mode} {options} {np.dtype(dtype)}"
            np.testing.assert_allclose(ours, theirs, atol=tolerance, rtol=1e-4 if gram else tolerance, err_msg=message)


def test_keras1_merge_refusals(keras1_merge, tmp_path):
    """A Merge whose mode is a Python function is code (exit 3, with the plugin hint); so is an unknown mode
    and a dot over several axes per input; a dot_axes no Keras wrote is bad input (exit 2), found when
    the model is built rather than when it computes."""
    import dataclasses

    from lstm_parity.errors import BadInputError, UnsupportedError
    from lstm_parity.reference.forward import build

    spec, xs, _ = keras1_merge
    merge = next(layer for layer in spec.layers if layer.class_name == "Merge")
    for config, error, fragment in (
        (
            {"mode": "<bytecode>", "mode_type": "lambda"},
            UnsupportedError,
            "Python function as its mode is code; if you",
        ),
        (
            {"mode": "outer"},
            UnsupportedError,
            "mode='outer' is not supported (supported: sum, mul, ave, max, concat, dot",
        ),
        ({"dot_axes": [[1, 2], [1, 2]]}, UnsupportedError, "option dot_axes=[[1, 2], [1, 2]] is not supported"),
        ({"dot_axes": [[1], "x"]}, BadInputError, "malformed dot_axes [[1], 'x']"),
    ):
        patched = dataclasses.replace(merge, config={**merge.config, **config})
        bad = dataclasses.replace(spec, layers=tuple(patched if layer is merge else layer for layer in spec.layers))
        with pytest.raises(error, match=re.escape(fragment)):
            build(bad, "keras2", np.float64)


def test_keras1_sequential_merging_branch_models_is_refused():
    from lstm_parity.errors import UnsupportedError
    from lstm_parity.formats.config import parse_model_config

    branch = {"class_name": "Sequential", "config": [{"class_name": "Dense", "config": {"name": "d"}}]}
    config = {
        "class_name": "Sequential",
        "config": [
            {"class_name": "Merge", "config": {"name": "merge_1", "mode": "concat", "layers": [branch, branch]}},
            {"class_name": "LSTM", "config": {"name": "lstm_1", "output_dim": 2}},
        ],
    }
    with pytest.raises(UnsupportedError, match="joins whole branch models inside a Keras 1 Sequential"):
        parse_model_config(config, "old.h5")


# ---------------------------------------------------------------- masks given with mask=, derived, dropped


def _masks_model(k):
    """An LSTM given an explicit mask built from ops (the first 2 tokens of each row only), one after an
    op (ops drop Keras masks), and a chain where Keras derives the masks itself."""
    tokens = k.Input(shape=(6,), dtype="int32")
    embedded = k.layers.Embedding(10, 3, mask_zero=True)(tokens)
    if hasattr(k, "ops"):
        ops = k.ops
        keep = ops.less(ops.cumsum(ops.cast(ops.not_equal(tokens, 0), "int32"), axis=1), 3)
    else:
        import tensorflow as tf

        keep = tf.less(tf.cumsum(tf.cast(tf.not_equal(tokens, 0), tf.int32), axis=1), 3)
    explicit = k.layers.LSTM(3, name="explicit")(embedded, mask=keep)
    after_op = k.layers.LSTM(3, name="after_op")(embedded * 2.0)
    derived = k.layers.LSTM(3, return_sequences=True, name="derived")(embedded)
    return k.Model(tokens, [explicit, after_op, k.layers.LSTM(2, name="derived_2")(derived)])


TOKENS = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 0, 0, 0], [0, 0, 8, 9, 1, 0], [3, 0, 0, 0, 0, 0]], np.int32)


@pytest.mark.parametrize("writer", ["k2-h5", "k3-keras", "k3-h5"])
def test_masks_given_explicitly_or_derived_or_dropped_by_ops_match_keras(writer, tmp_path, run_cli):
    """A `mask=` the user built with ops is the layer's mask, as in Keras (Keras 3 records it as op nodes
    exactly like the masks it derives itself: those were all dropped, 0.19 off; tf.keras files were
    refused); an op drops the mask. A dump keeps the explicit mask."""
    from lstm_parity.layer_io import mask_sources
    from lstm_parity.spec import mask_input

    model = build_with(writer, _masks_model, seed=5)
    spec = open_model(save_model(model, writer, tmp_path))
    given = [layer.name for layer in spec.layers for node in layer.node_tensors for key in node if mask_input(key) == 0]
    assert given == ["explicit"]  # the derived masks stay the reference's own
    sources = mask_sources(spec)
    assert spec.layer(sources["explicit"]).class_name in ("ops.Less", "TFOpLambda")
    assert spec.layer(sources["derived"]).class_name == "Embedding" and "after_op" not in sources
    expected = _keras_outputs(model, TOKENS)
    for ours, theirs in zip(forward(spec, [TOKENS]).outputs, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-6)
    assert run_cli("dump", spec.source, "-o", tmp_path / "dump.json").exit_code == 0
    restored = forward(open_model(tmp_path / "dump.json"), [TOKENS]).outputs
    np.testing.assert_array_equal(restored[0], forward(spec, [TOKENS]).outputs[0])


def _derived_masks_model(k):
    """Keras 3 derives masks through Embedding, Masking, passing layers, Add, Concatenate (of a masked and
    an unmasked input, on the last and on the time axis), Bidirectional and Attention; it records each as
    op nodes."""
    L = k.layers
    tokens, x = k.Input(shape=(6,), dtype="int32"), k.Input(shape=(6, 3))
    a = L.LSTM(3, return_sequences=True)(L.Embedding(8, 3, mask_zero=True)(tokens))
    b = L.LSTM(3, return_sequences=True)(L.Masking()(x))
    outs = [
        L.LSTM(2)(L.Add()([a, b])),
        L.LSTM(2)(L.Concatenate()([a, L.Dense(3)(x)])),
        L.LSTM(2)(L.Concatenate(axis=1)([a, b])),
        L.LSTM(2)(L.Bidirectional(L.LSTM(2, return_sequences=True))(L.Dropout(0.1)(L.Dense(3)(a)))),
        L.LSTM(2)(L.Attention()([a, b])),  # the query's mask, through ops.convert_to_tensor
    ]
    return k.Model([tokens, x], outs)


def test_keras3_derived_masks_are_derived_not_read(tmp_path):
    """The op nodes of the masks Keras 3 derives itself fall away (no op layer is left in the spec), and
    the reference's own masks give Keras' numbers."""
    model = build_with("k3-keras", _derived_masks_model, seed=2)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 8, (5, 6)).astype(np.int32)
    tokens[:, 4:] = 0
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    x[:, 3:] = 0.0
    x[0] = 0.0
    expected = _keras_outputs(model, [tokens, x])
    for stem, writer in (("keras", "k3-keras"), ("h5", "k3-h5")):
        spec = open_model(save_model(model, writer, tmp_path, stem))
        assert not [layer.class_name for layer in spec.layers if layer.class_name.startswith("ops.")]
        for ours, theirs in zip(forward(spec, [tokens, x]).outputs, expected, strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-6)


def test_a_cast_without_a_defined_result_exits_3(tmp_path, run_cli):
    """TensorFlow casts a float outside an integer type's range differently in its vectorized and its
    scalar code (-1.05 to uint8: 0 inside a model, 255 alone), so such a cast exits 3 instead of
    guessing; values in range cast as TensorFlow casts them (toward zero)."""
    from lstm_parity.reference.ops_table import cast

    np.testing.assert_array_equal(cast(np.array([2.7, -2.7, 0.5]), "int8"), [2, -2, 0])

    def make(k):
        x = k.Input(shape=(3,))
        return k.Model(x, k.ops.cast(k.ops.cast(x * 1.0, "uint8"), "float32"))

    path = save_model(build_with("k3-keras", make), "k3-keras", tmp_path)
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.array([[1.5, 2.0, 3.0]], np.float32))
    assert run_cli("predict", path, inputs, "-o", tmp_path / "y.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), [[1.0, 2.0, 3.0]])
    np.save(inputs, np.array([[1.5, -1.05, 3.0]], np.float32))
    result = run_cli("predict", path, inputs, "-o", tmp_path / "y.npy")
    assert result.exit_code == 3 and "cast to uint8 of values outside its range 0..255" in result.stderr
