"""Keras' attention layers (Attention, AdditiveAttention, MultiHeadAttention) computed as the Keras
generation that saved the file computes them, every option against real seeded models of both
generations (tf_keras .h5, Keras 3 .h5 and .keras), masks and fully masked rows included; and a
user's class that only shares a Keras name is refused (exit 3), never computed as Keras' class."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from attention_models import (
    causal_attention,
    copy_weights,
    dense_attention,
    dense_inputs,
    float64_attention,
    make_big,
    make_huge,
    masked_self_attention,
    multi_head_attention,
    multi_head_inputs,
    padded_rows,
)
from conftest import ROOT, WRITERS, build_with, keras_module, save_model
from lstm_parity.errors import BadInputError, UnsupportedError
from lstm_parity.formats import open_model
from lstm_parity.formats.provenance import custom_class_evidence
from lstm_parity.reference.attention_math import KERAS_ATTENTION, MaskRule, masked_softmax, version_rules
from lstm_parity.reference.forward import forward
from lstm_parity.reference.layers import Context, build_call
from lstm_parity.spec import LayerSpec

CORPUS2 = ROOT.parent / "shared" / "corpus2"


def _outputs(model, xs):
    out = model.predict(xs, verbose=0)
    return out if isinstance(out, list) else [out]


@pytest.fixture(scope="module", params=WRITERS)
def dense_case(request, tmp_path_factory):
    """(writer, spec, inputs, Keras' outputs, case names) for the dense-attention model."""
    writer = request.param
    names: list[str] = []
    model = build_with(writer, lambda k: dense_attention(k, names), seed=3)
    make_huge(model)
    xs = dense_inputs()
    path = save_model(model, writer, tmp_path_factory.mktemp("dense"))
    return writer, open_model(path), xs, _outputs(model, xs), names


@pytest.fixture(scope="module", params=WRITERS)
def mha_case(request, tmp_path_factory):
    writer = request.param
    names: list[str] = []
    model = build_with(writer, lambda k: multi_head_attention(k, writer.startswith("k3"), names), seed=5)
    xs = multi_head_inputs()
    path = save_model(model, writer, tmp_path_factory.mktemp("mha"))
    return writer, open_model(path), xs, _outputs(model, xs), names


def _compare(case, dtypes=(np.float64, np.float32)):
    """The reference in float64 and float32 against Keras' outputs, case by case."""
    writer, spec, xs, want, names = case
    for dtype in dtypes:
        got = forward(spec, xs, dtype=dtype).outputs
        assert len(got) == len(want) == len(names)
        for name, ours, keras in zip(names, got, want, strict=True):
            assert ours.shape == keras.shape, name
            np.testing.assert_allclose(ours, keras, atol=1e-5, rtol=1e-5, err_msg=f"{writer} {dtype.__name__}: {name}")


def test_dense_attention_matches_keras(dense_case):
    _compare(dense_case)
    # The model holds what the comparison claims: fully masked rows, scores beyond float32's step at 1e9,
    # and the calls' options recorded in the file.
    _, spec, xs, want, names = dense_case
    assert np.all(xs[1][3] == 0) and np.all(xs[3][3] == 0)
    assert float(spec.layer("huge").weights[0]) == 40.0
    assert any(kw.get("use_causal_mask") for layer in spec.layers for kw in layer.node_kwargs)
    assert any(kw.get("return_attention_scores") for layer in spec.layers for kw in layer.node_kwargs)
    assert np.all(want[names.index("scores")][3] == pytest.approx(1 / 6, abs=1e-6))  # a fully masked value row


def test_multi_head_attention_matches_keras(mha_case):
    _compare(mha_case)
    _, spec, _, want, names = mha_case
    assert any("attention_mask" in tensors for layer in spec.layers for tensors in layer.node_tensors)
    dropout_scores = want[names.index("dropout_scores")]
    assert np.all(dropout_scores[3] == 0) != (spec.semantics == "keras2")  # Keras 3 zeroes fully masked rows there


def _assert_textbook_names(spec):
    """dump and inspect name the projections as Keras does (query_kernel, ...), not w0, w1, ..."""
    for layer in spec.layers:
        if layer.class_name == "MultiHeadAttention":
            names = layer.weight_names
            assert names[0] == "query_kernel" and names[-1].startswith("output_"), (layer.name, names)
            for name, array in zip(names, layer.weights, strict=True):  # kernels (dim, heads, size) and up
                assert array.ndim >= (3 if name.endswith("kernel") else 1), (layer.name, name, array.shape)
        elif layer.class_name in ("Attention", "AdditiveAttention") and layer.weights:
            assert layer.weight_names[0] in ("scale", "concat_score_weight"), layer.name


def test_dense_attention_weights_get_their_textbook_names(dense_case):
    _assert_textbook_names(dense_case[1])


def test_multi_head_attention_weights_get_their_textbook_names(mha_case):
    _assert_textbook_names(mha_case[1])


@pytest.mark.parametrize("writer", ["k3-keras", "k3-h5"])
def test_keras3_explicit_value_and_key_masks(writer, tmp_path):
    """Keras 3's MultiHeadAttention also takes `value_mask` / `key_mask` tensors as call arguments."""

    def make(k):
        x, vm, km = k.Input(shape=(6, 3)), k.Input(shape=(6,), dtype="bool"), k.Input(shape=(6,), dtype="bool")
        return k.Model([x, vm, km], k.layers.MultiHeadAttention(2, 2)(x, x, key=x, value_mask=vm, key_mask=km))

    model = build_with(writer, make, seed=4)
    x = np.random.default_rng(0).standard_normal((3, 6, 3)).astype(np.float32)
    vm, km = np.ones((3, 6), bool), np.ones((3, 6), bool)
    vm[0, 3:], vm[1, 0], km[1, 1:3], km[2, 5] = False, False, False, False
    want = model.predict([x, vm, km], verbose=0)
    spec = open_model(save_model(model, writer, tmp_path))
    [tensors] = [layer.node_tensors[0] for layer in spec.layers if layer.class_name == "MultiHeadAttention"]
    assert {"value_mask", "key_mask"} <= set(tensors)
    np.testing.assert_allclose(forward(spec, [x, vm, km]).outputs[0], want, atol=1e-5, rtol=1e-5)
    unmasked = forward(spec, [x, np.ones_like(vm), np.ones_like(km)]).outputs[0]
    assert np.max(np.abs(unmasked - want)) > 1e-3  # the masks change the numbers


def test_fully_masked_rows_follow_each_generations_rule():
    """The masked softmax rules on one fully masked row: Keras' float32 `score - 1e9` keeps only
    differences of 64 or more; replacing gives a uniform row; Keras 3's Softmax layer gives zeros."""
    scores = np.array([[[10.0, 100.0, 200.0, 201.0]]])  # (1, 1, 4)
    nothing = np.zeros((1, 1, 4), dtype=bool)
    shifted = masked_softmax(scores, nothing, MaskRule(fill=-1e9, shift=True))
    # 1e9 - 10 and 1e9 - 100 round to 1e9 and 1e9 - 128 in float32; 200 and 201 both to 1e9 - 192.
    assert shifted[0, 0, 0] < 1e-20 and shifted[0, 0, 2] == pytest.approx(0.5) == shifted[0, 0, 3]
    assert np.allclose(masked_softmax(scores, nothing, MaskRule(fill=-1e9)), 0.25)
    assert np.all(masked_softmax(scores, nothing, MaskRule(fill=-1e9, zero_masked=True)) == 0)
    some = np.array([[[True, False, True, False]]])
    for rule in (MaskRule(fill=-1e9, shift=True), MaskRule(fill=-2.4e38), MaskRule(fill=-1e9, zero_masked=True)):
        weights = masked_softmax(scores, some, rule)
        assert weights[0, 0, 1] == weights[0, 0, 3] == 0 and weights.sum() == pytest.approx(1.0)


def test_keras2_causal_config_is_applied(tmp_path):
    """tf.keras <= 2.9 saved `causal` in the config (2.10+ takes `use_causal_mask` at call time and no
    longer saves it), and <= 2.8 had no `score_mode`: a file written so computes causally with dot
    scores, as the in-memory layers do and as tf_keras itself reads it."""
    k = keras_module("k2-h5")

    def make(k, causal=True):
        x = k.Input(shape=(5, 3))
        h = k.layers.LSTM(4, return_sequences=True)(x)
        luong = k.layers.Attention(use_scale=True, causal=causal, name="luong")([h, h])
        return k.Model(x, [luong, k.layers.AdditiveAttention(causal=causal, name="bahdanau")([h, h])])

    model = build_with("k2-h5", make, seed=2)
    assert model.get_layer("luong").causal and "causal" not in model.get_layer("luong").get_config()
    path = save_model(model, "k2-h5", tmp_path)
    with h5py.File(path, "r+") as f:  # write the config as tf.keras 2.8 did
        config = json.loads(f.attrs["model_config"])
        for entry in config["config"]["layers"]:
            if entry["class_name"] in ("Attention", "AdditiveAttention"):
                entry["config"]["causal"] = True
                entry["config"].pop("score_mode", None)
        f.attrs["model_config"] = json.dumps(config)
    x = np.random.default_rng(0).standard_normal((3, 5, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    for ours, keras in zip(forward(open_model(path), [x]).outputs, want, strict=True):
        np.testing.assert_allclose(ours, keras, atol=1e-5, rtol=1e-5)
    for reread, keras in zip(k.models.load_model(path).predict(x, verbose=0), want, strict=True):
        np.testing.assert_allclose(reread, keras, atol=1e-6)  # tf_keras reads the file as we do
    plain = build_with("k2-h5", lambda k: make(k, causal=False), seed=2)
    for unmasked, keras in zip(plain.predict(x, verbose=0), want, strict=True):
        assert np.max(np.abs(unmasked - keras)) > 1e-3  # causal masking changes the numbers


def test_training_true_with_dropout_is_refused(tmp_path):
    """A call saved with training=True drops attention weights at random even in predict."""

    def make(k):
        x = k.Input(shape=(5, 3))
        h = k.layers.LSTM(4, return_sequences=True)(x)
        return k.Model(x, k.layers.Attention(dropout=0.5, name="att")([h, h], training=True))

    spec = open_model(save_model(build_with("k3-keras", make), "k3-keras", tmp_path))
    assert spec.layer("att").node_kwargs[0].get("training") is True
    with pytest.raises(UnsupportedError, match="training=True and dropout=0.5"):
        forward(spec, [np.zeros((1, 5, 3), np.float32)])


# ------------------------------------------------------------ a custom class named like a built-in


def _custom_attention_model(k, keras3: bool, registered: bool = False):
    """A user's `Attention`: one input and its own weights (registered under a package: a .keras file says so)."""

    total = k.ops.sum if keras3 else k.backend.sum

    class Attention(k.layers.Layer):
        def build(self, shape):
            self.att_weight = self.add_weight(name="att_weight", shape=(shape[-1], 1))

        def call(self, x):
            return total(x * k.activations.softmax(x @ self.att_weight, axis=1), axis=1)

    layer_class = k.utils.register_keras_serializable(package="Mine")(Attention) if registered else Attention
    x = k.Input(shape=(5, 3))
    h = k.layers.LSTM(4, return_sequences=True)(x)
    return k.Model(x, k.layers.Dense(2)(layer_class(name="att")(h)))


@pytest.mark.parametrize("writer", WRITERS)
def test_custom_attention_with_keras_name_is_refused(writer, tmp_path, run_cli):
    keras3 = writer.startswith("k3")
    model = build_with(writer, lambda k: _custom_attention_model(k, keras3, registered=writer == "k3-keras"))
    path = save_model(model, writer, tmp_path)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 5, 3), np.float32))
    result = run_cli("predict", path, x, "-o", tmp_path / "y.npy")
    assert result.exit_code == 3, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "is a custom layer with Keras' class name 'Attention', not Keras' Attention" in message
    assert "--plugin FILE.py" in message
    if writer == "k3-keras":
        assert "registers it as 'Mine>Attention'" in message
    assert "it is called on 1 tensor, where Keras' Attention takes 2 or 3" in message
    assert "it holds weights" in message and "(4, 1), where Keras' Attention with this config holds none" in message


def _spec(class_name: str, config: dict, weights=(), inbound=((("a", 0, 0), ("b", 0, 0)),), **extra) -> LayerSpec:
    return LayerSpec(
        name="att",
        class_name=class_name,
        config={"name": "att", **config},
        weights=tuple(weights),
        inbound=inbound,
        **extra,
    )


def _ctx(keras_version: str, semantics: str | None = None) -> Context:
    """A build context for a file saved by `keras_version`, computed with its generation's semantics."""
    semantics = semantics or ("keras3" if keras_version.startswith("3") else "keras2")
    return Context(semantics=semantics, dtype=np.dtype(np.float64), source="m.h5", keras_version=keras_version)


CTX = _ctx("3.15.1")


@pytest.mark.parametrize(
    ("layer", "evidence"),
    [
        (
            _spec("Attention", {"use_scale": False, "units": 8}),
            "its config holds units, which Keras' Attention never saves",
        ),
        (_spec("Attention", {"trainable": True}), "its config lacks use_scale"),
        (
            _spec("Attention", {"use_scale": False}, [np.ones((3, 1))]),
            "it holds weights w0 (3, 1), where Keras' Attention",
        ),
        (_spec("Attention", {"use_scale": True}, [np.ones(3)]), "with this config holds ()"),
        (_spec("AdditiveAttention", {"use_scale": True}, [np.ones((3, 3))]), "holds (?,)"),
        (_spec("Attention", {"use_scale": False}, module="my_layers"), "comes from module 'my_layers'"),
        (_spec("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "rate": 0.1}), "holds rate"),
        (_spec("MultiHeadAttention", {"num_heads": 2}), "lacks key_dim"),
        (
            _spec("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}, inbound=((("a", 0, 0),),)),
            "it is called on 1 tensor, where Keras' MultiHeadAttention takes 2 or 3",
        ),
        (
            _spec("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}, [np.ones((3, 4))] * 8),
            "it holds weights w0 (3, 4)",
        ),
    ],
)
def test_evidence_of_a_custom_class(layer, evidence):
    with pytest.raises(UnsupportedError, match="is a custom layer with Keras' class name") as caught:
        build_call(layer, CTX)
    assert evidence in str(caught.value)
    assert caught.value.exit_code == 3


def test_keras_own_configs_of_every_generation_are_accepted():
    """Config keys as tf.keras 2.6 (causal, no score_mode), 2.15 and tf_keras 2.21, and Keras 3.15 (seed,
    use_gate, sliding_window) saved them, each in its own generation."""
    old = _spec(
        "Attention", {"trainable": True, "dtype": "float32", "use_scale": False, "causal": True, "dropout": 0.0}
    )
    build_call(old, _ctx("2.6.0"))
    build_call(_spec("AdditiveAttention", {"use_scale": False, "dropout": 0.0, "causal": False}), _ctx("2.15.0"))
    robust = _spec("MultiHeadAttention", {"num_heads": 1, "key_dim": 2, "softmax_robust_masking": True})
    assert custom_class_evidence(robust, "keras2") == []
    new = _spec(
        "Attention", {"trainable": True, "use_scale": True, "score_mode": "concat", "dropout": 0.0, "seed": None}
    )
    build_call(dataclasses.replace(new, weights=(np.array(1.0), np.array(2.0))), CTX)
    build_call(_spec("AdditiveAttention", {"use_scale": False, "dropout": 0.0, "seed": 1}), CTX)
    gated = _spec("MultiHeadAttention", {"num_heads": 1, "key_dim": 2, "use_gate": False, "sliding_window": 2})
    assert custom_class_evidence(gated, "keras3") == []
    build_call(old, _ctx("2.6.0", semantics="keras3"))  # --semantics keras3 on a Keras 2 file: still Keras' class


@pytest.mark.parametrize(
    ("version", "config", "other"),
    [
        ("3.15.1", {"class_name": "Attention", "use_scale": False, "causal": True}, "Keras 2"),
        ("3.4.1", {"class_name": "AdditiveAttention", "use_scale": True, "causal": False}, "Keras 2"),
        ("3.15.1", {"class_name": "MultiHeadAttention", "num_heads": 1, "key_dim": 2, "query_shape": None}, "Keras 2"),
        ("2.21.0", {"class_name": "MultiHeadAttention", "num_heads": 1, "key_dim": 2, "use_gate": True}, "Keras 3"),
        ("2.15.0", {"class_name": "MultiHeadAttention", "num_heads": 1, "key_dim": 2, "sliding_window": 2}, "Keras 3"),
        ("2.13.1", {"class_name": "Attention", "use_scale": False, "seed": 3}, "Keras 3"),
    ],
)
def test_config_keys_of_the_other_generation_mean_a_custom_class(version, config, other):
    """Keras 3 refuses a `causal` keyword, and tf.keras never had a gate or a sliding window: a file of
    one generation whose config holds the other's keys holds a user's class."""
    config = dict(config)
    layer = _spec(config.pop("class_name"), config)
    with pytest.raises(UnsupportedError, match="is a custom layer with Keras' class name") as caught:
        build_call(layer, _ctx(version))
    saver = "Keras 3" if version.startswith("3") else "Keras 2"
    assert f"which only {other}'s {layer.class_name} saves, and the file was saved by {saver}" in str(caught.value)


def test_score_mode_outside_keras_is_malformed():
    """Every Keras refuses to build an Attention with a score_mode other than dot or concat: exit 2."""
    with pytest.raises(BadInputError, match="score_mode=5 is not one of Keras' dot, concat") as caught:
        build_call(_spec("Attention", {"use_scale": False, "score_mode": 5}), CTX)
    assert caught.value.exit_code == 2


def test_negative_attention_axes_are_refused():
    """Keras versions disagree on what a negative axis means (Python indexing, or counted from the input's end)."""
    layer = _spec("MultiHeadAttention", {"num_heads": 1, "key_dim": 2, "attention_axes": [-2]})
    with pytest.raises(UnsupportedError, match="attention_axes"):
        build_call(layer, CTX)


@pytest.mark.skipif(not CORPUS2.exists(), reason="../shared/corpus2 is absent")
def test_corpus2_custom_attention_named_attention_is_refused_with_its_evidence():
    [path] = CORPUS2.glob("models/01_*")
    spec = open_model(path)
    with pytest.raises(UnsupportedError) as caught:
        forward(spec, [np.zeros((1, *[d or 12 for d in spec.input_shapes[0][1:]]), np.float32)])
    message = str(caught.value)
    assert "layer 'attention' is a custom layer with Keras' class name 'Attention'" in message
    assert "lacks use_scale" in message and "att_weight (64, 1), att_bias (50, 1)" in message


@pytest.mark.skipif(not CORPUS2.exists(), reason="../shared/corpus2 is absent")
@pytest.mark.parametrize("number", ["03", "06", "09", "16", "26"])
def test_corpus2_keras_attention_files_match_keras_in_float32(number):
    """The files Keras 3.15 itself cannot reload (06, 16: Keras 3 .h5) included; float64 is in test_corpus2."""
    [path] = CORPUS2.glob(f"models/{number}_*")
    data = np.load(CORPUS2 / "expected" / f"{number}.npz")
    spec = open_model(path)
    got = forward(spec, [data["x0"]], dtype=np.float32).outputs
    assert got[0].shape == data["y0"].shape
    np.testing.assert_allclose(got[0], data["y0"], atol=1e-4)


# ------------------------------------------------------------ dtype policies and Keras versions


@pytest.fixture(scope="module", params=["k3-keras", "k2-h5"])
def float64_case(request, tmp_path_factory):
    writer = request.param
    names: list[str] = []
    model = build_with(writer, lambda k: float64_attention(k, names), seed=6)
    make_big(model)
    xs = [padded_rows((4, 6, 3), seed=8).astype(np.float64)]
    path = save_model(model, writer, tmp_path_factory.mktemp("f64"))
    return writer, open_model(path), xs, _outputs(model, xs), names


def test_float64_policy_masks_in_float64(float64_case):
    """Keras computes `score - 1e9` in the layer's dtype: under float64 a fully masked row keeps the
    differences of its scores, which float32 rounds away (a float32 reference of it matches too)."""
    _compare(float64_case)
    _, spec, _, want, names = float64_case
    for name in ("luong_scores", "bahdanau_scores"):  # causal row 0 of a row padded at the start: only a masked key
        assert np.ptp(want[names.index(name)][2, 0]) > 1e-3, name  # not uniform, as in float32
    mha_row = want[names.index("mha_scores")][2, 0, 0]
    assert np.ptp(mha_row) > 1e-2 if spec.semantics == "keras2" else np.all(mha_row == 0)  # Keras 3.10+ zeroes it


def _saved_by(path, version: str):
    """Rewrite the version of the Keras that saved an .h5 file; returns the file, re-read."""
    with h5py.File(path, "r+") as f:
        f.attrs["keras_version"] = version
    return open_model(path)


def _assert_outputs(spec, xs, want, what: str, pick=None) -> None:
    got = forward(spec, xs).outputs
    for index in pick if pick is not None else range(len(want)):
        assert got[index].shape == want[index].shape, (what, index)
        np.testing.assert_allclose(got[index], want[index], atol=1e-5, rtol=1e-5, err_msg=f"{what}: output {index}")


@pytest.fixture(scope="module")
def self_attention_models(tmp_path_factory):
    """masked_self_attention by both Kerases, masked and not (the same weights in all four), its inputs,
    and the Keras 3 files (.h5, whose version the tests rewrite)."""
    folder = tmp_path_factory.mktemp("versions")
    keras3 = build_with("k3-h5", masked_self_attention, seed=4)
    keras3.get_layer("d1").set_weights([w * 30 for w in keras3.get_layer("d1").get_weights()])  # large scores
    models = {"k3": keras3, "k3-unmasked": masked_self_attention(keras_module("k3-h5"), masked=False)}
    models["k2"] = masked_self_attention(keras_module("k2-h5"))
    models["k2-unmasked"] = masked_self_attention(keras_module("k2-h5"), masked=False)
    for name in ("k3-unmasked", "k2", "k2-unmasked"):
        copy_weights(keras3, models[name])
    allowed = np.random.default_rng(2).integers(0, 3, size=(4, 6, 6)).astype(np.int32)
    allowed[0, 2] = 0  # a query step that may attend to nothing
    xs = [padded_rows((4, 6, 3), seed=9), allowed]
    want = {name: _outputs(model, xs) for name, model in models.items()}
    paths = {
        "k3": save_model(keras3, "k3-h5", folder, "masked"),
        "k3-unmasked": save_model(models["k3-unmasked"], "k3-h5", folder, "unmasked"),
        "k2": save_model(models["k2"], "k2-h5", folder, "tf_keras"),
    }
    return xs, want, paths


def test_tf_keras_before_2_10_multi_head_attention_ignores_masks(self_attention_models):
    """tf.keras 2.4-2.9's MultiHeadAttention took no mask: it ignored its inputs' Keras masks (only
    attention_mask applied) and its output had none; 2.10 made it read them."""
    xs, want, paths = self_attention_models
    _assert_outputs(_saved_by(paths["k2"], "2.9.0"), xs, want["k2-unmasked"], "tf.keras 2.9")
    _assert_outputs(_saved_by(paths["k2"], "2.10.0"), xs, want["k2"], "tf.keras 2.10")
    assert np.max(np.abs(want["k2"][1] - want["k2-unmasked"][1])) > 1e-2  # the masks matter


def test_keras3_versions_mask_multi_head_attention_their_own_way(self_attention_models):
    """Keras 3.0-3.6: always the Softmax layer, which shifts masked scores by -1e9 and leaves fully masked
    rows near uniform (as tf.keras does); 3.7-3.9: the fused path where it applies, the Softmax layer
    (not zeroing) where scores are returned; 3.10+: that Softmax zeroes them. And before 3.7 an
    attention_mask that meets no Keras mask reaches the Softmax as it is (a 2 adds +1e9)."""
    xs, want, paths = self_attention_models
    plain, scores = [0], [1, 2, 3]  # outputs of the fused-path call, and of the call returning scores
    _assert_outputs(_saved_by(paths["k3"], "3.6.0"), xs, want["k2"], "Keras 3.6")
    _assert_outputs(_saved_by(paths["k3"], "3.9.2"), xs, want["k3"], "Keras 3.9 fused", plain)
    _assert_outputs(_saved_by(paths["k3"], "3.9.2"), xs, want["k2"], "Keras 3.9 Softmax", scores)
    _assert_outputs(_saved_by(paths["k3"], "3.10.0"), xs, want["k3"], "Keras 3.10")
    _assert_outputs(_saved_by(paths["k3-unmasked"], "3.6.0"), xs, want["k2-unmasked"], "Keras 3.6, raw mask")
    _assert_outputs(_saved_by(paths["k3-unmasked"], "3.15.1"), xs, want["k3-unmasked"], "Keras 3.15, bool mask")
    for index in (0, 2):  # what separates the versions shows in the numbers
        assert np.max(np.abs(want["k2"][index] - want["k3"][index])) > 1e-3, index
    assert np.max(np.abs(want["k2-unmasked"][1] - want["k3-unmasked"][1])) > 1e-3


def test_keras_3_0_4_causal_attention_drops_the_value_mask(tmp_path):
    """Keras 3.0.0-3.0.4 built a causal call's mask as `causal if value_mask is not None else
    value_mask & causal`: with a value mask it is ignored; without one Keras fails, so we refuse."""
    model = build_with("k3-h5", causal_attention, seed=5)
    twin = causal_attention(keras_module("k3-h5"), masked_value=False)
    copy_weights(model, twin)
    xs = [padded_rows((4, 6, 3), seed=10)]
    want, unmasked = _outputs(model, xs), _outputs(twin, xs)
    assert np.max(np.abs(want[0] - unmasked[0])) > 1e-3
    path = save_model(model, "k3-h5", tmp_path, "masked")
    _assert_outputs(_saved_by(path, "3.0.4"), xs, unmasked, "Keras 3.0.4")
    _assert_outputs(_saved_by(path, "3.0.5"), xs, want, "Keras 3.0.5")
    spec = _saved_by(save_model(twin, "k3-h5", tmp_path, "unmasked"), "3.0.4")
    with pytest.raises(UnsupportedError, match="Keras 3.0.4, which saved this file, fails on a causal call"):
        forward(spec, xs)


def test_version_table_rows():
    """The saving version picks its row; another generation's or an unreadable version the newest."""
    assert version_rules("keras2", "2.9.0").label == "tf.keras 2.4-2.9"
    assert version_rules("keras2", "2.2.4-tf").label == "tf.keras 2.4-2.9"
    assert version_rules("keras2", "2.10.0").label == "tf.keras 2.10-2.12"
    assert version_rules("keras3", "3.0.4").causal_drops_value_mask
    assert version_rules("keras3", "3.7.0").mha_fused and not version_rules("keras3", "3.6.0").mha_fused
    assert version_rules("keras3", "3.9.2").softmax_zeroes is False
    assert version_rules("keras3", "2.9.0") == version_rules("keras3", "") == KERAS_ATTENTION["keras3"][-1]
    assert version_rules("keras2", "3.15.1") == KERAS_ATTENTION["keras2"][-1]


@pytest.mark.parametrize("class_name", ["Attention", "MultiHeadAttention"])
def test_subclass_of_keras_attention_saved_as_keras_is_refused(class_name, tmp_path):
    """A user's subclass of Keras' class, even one that changes nothing, keeps Keras' class name; a
    .keras file registers it under the user's package, so it is not Keras' class."""
    k = keras_module("k3-keras")
    base = getattr(k.layers, class_name)
    subclass = k.utils.register_keras_serializable(package="Subclass")(type(class_name, (base,), {}))

    def make(k):
        x = k.Input(shape=(5, 3))
        layer = subclass() if class_name == "Attention" else subclass(num_heads=1, key_dim=2)
        return k.Model(x, layer([x, x]) if class_name == "Attention" else layer(x, x))

    spec = open_model(save_model(build_with("k3-keras", make), "k3-keras", tmp_path))
    with pytest.raises(UnsupportedError, match=f"registers it as 'Subclass>{class_name}'"):
        forward(spec, [np.zeros((1, 5, 3), np.float32)])
