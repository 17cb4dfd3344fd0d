"""Small functional models that exercise Keras' attention layers, for tests/test_attention.py.

Each factory takes the Keras module (`keras` or `tf_keras`) and returns a model whose outputs are
named cases; `*_inputs()` give matching inputs with padding in every pattern that matters: none,
at the end, at the start (a causal row then sees only padding), and whole rows.
"""

from __future__ import annotations

import numpy as np

HUGE_SCALE = 40.0  # makes scores exceed float32's step near 1e9 (64), where fully masked rows show Keras' rounding


def dense_attention(k, names: list[str]):
    """Attention and AdditiveAttention in every option, on Embedding and Masking masks, and the
    layers after them that read their output masks. Appends the case names, in output order, to `names`."""
    tq, tv, tk = (k.Input(shape=(n,), dtype="int32") for n in (5, 6, 6))
    x = k.Input(shape=(6, 3))
    hq = k.layers.LSTM(4, return_sequences=True)(k.layers.Embedding(20, 4, mask_zero=True)(tq))  # masked (B, 5, 4)
    ev = k.layers.Embedding(20, 4, mask_zero=True)(tv)
    hv = k.layers.GRU(4, return_sequences=True)(ev)  # masked (B, 6, 4)
    key = k.layers.Embedding(20, 4, mask_zero=True)(tk)  # its own mask, which Keras does not use
    hx = k.layers.LSTM(4, return_sequences=True)(k.layers.Masking(0.0)(x))  # Masking's mask
    cases = {
        "dot": k.layers.Attention()([hq, hv]),
        "scale_key": k.layers.Attention(use_scale=True)([hq, hv, key]),
        "concat": k.layers.Attention(score_mode="concat")([hq, hv]),
        "concat_scale_dropout": k.layers.Attention(use_scale=True, score_mode="concat", dropout=0.3)([hq, hv]),
        "causal_self": k.layers.Attention()([hv, hv], use_causal_mask=True),
        "causal_cross": k.layers.Attention()([hq, hv], use_causal_mask=True),  # Tq 5, Tv 6
        "masking_self": k.layers.Attention()([hx, hx]),
        "huge_scores": k.layers.Attention(use_scale=True, name="huge")([hx, ev], use_causal_mask=True),
        "additive": k.layers.AdditiveAttention()([hq, hv]),
        "additive_plain_key": k.layers.AdditiveAttention(use_scale=False)([hq, hv, key]),
    }
    out, scores = k.layers.Attention()([hq, hv], return_attention_scores=True)
    cases["with_scores"], cases["scores"] = out, scores
    out, scores = k.layers.AdditiveAttention(dropout=0.2)([hv, hv], use_causal_mask=True, return_attention_scores=True)
    cases["additive_causal"], cases["additive_scores"] = out, scores
    cases["lstm_on_output"] = k.layers.LSTM(3)(cases["dot"])  # reads the query mask Attention passes on
    cases["lstm_on_scores"] = k.layers.LSTM(3)(cases["scores"])  # the scores carry no mask
    cases["masked_average"] = k.layers.GlobalAveragePooling1D()(cases["causal_self"])
    names.extend(cases)
    return k.Model([tq, tv, tk, x], list(cases.values()))


def make_huge(model) -> None:
    """Set the `huge` Attention's scale so that its fully masked rows depend on float32 rounding."""
    model.get_layer("huge").set_weights([np.float32(HUGE_SCALE)])


def dense_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    tq = np.array([[1, 2, 3, 4, 5], [3, 4, 0, 0, 0], [0, 0, 5, 6, 7], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], np.int32)
    tv = np.array(
        [[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0], [0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 0], [5, 5, 5, 5, 5, 5]], np.int32
    )
    tk = np.array(
        [[0, 2, 3, 4, 5, 0], [7, 8, 9, 9, 0, 0], [1, 1, 0, 1, 2, 3], [4, 4, 4, 4, 4, 4], [0, 0, 0, 0, 0, 0]], np.int32
    )
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    x[1, 4:] = 0  # padding at the end
    x[2, :2] = 0  # at the start
    x[3] = 0  # a whole row
    return [tq, tv, tk, x]


def multi_head_attention(k, keras3: bool, names: list[str]):
    """MultiHeadAttention in every option. Each masked call gets tensors of its own (a Dense after the
    shared masked LSTM output, which passes the mask on): Keras 3's MultiHeadAttention clears the Keras
    masks of the tensors it is given, so a later layer on the same tensors would see none (README limits)."""
    x, x2, x3 = k.Input(shape=(6, 3)), k.Input(shape=(6, 3)), k.Input(shape=(4, 3))
    allowed = k.Input(shape=(6, 6), dtype="int32")
    grid = k.Input(shape=(3, 4, 2))
    hx = k.layers.LSTM(4, return_sequences=True)(k.layers.Masking(0.0)(x))  # (B, 6, 4), masked
    hx2 = k.layers.LSTM(4, return_sequences=True)(k.layers.Masking(0.0)(x2))  # other padding
    hx3 = k.layers.LSTM(4, return_sequences=True)(k.layers.Masking(0.0)(x3))  # (B, 4, 4): fewer steps

    def h(source=hx):
        return k.layers.Dense(4)(source)  # a tensor of its own, with the source's mask

    def mha(**options):
        return k.layers.MultiHeadAttention(**options)

    cases = {}
    cases["self"] = mha(num_heads=2, key_dim=3)(*[h()] * 2)
    cases["dims_no_bias"] = mha(num_heads=2, key_dim=3, value_dim=2, output_shape=5, use_bias=False)(*[h()] * 3)
    cases["key_keyword"] = mha(num_heads=2, key_dim=2)(h(), h(hx2), key=h())  # value and key masks differ
    cases["query_keyword"] = mha(num_heads=2, key_dim=2)(query=h(), value=h(hx2))  # Keras 3: no positional input
    cases["short_value"] = mha(num_heads=2, key_dim=3)(h(), h(hx3))  # Tq 6, S 4
    cases["causal_short_value"] = mha(num_heads=1, key_dim=2)(h(), h(hx3), use_causal_mask=True)
    out, scores = mha(num_heads=1, key_dim=4, dropout=0.1)(*[h()] * 2, return_attention_scores=True)
    cases["dropout"], cases["dropout_scores"] = out, scores
    out, scores = mha(num_heads=2, key_dim=2)(h(), h(hx2), return_attention_scores=True)
    cases["cross"], cases["cross_scores"] = out, scores
    cases["causal"] = mha(num_heads=2, key_dim=2)(*[h()] * 2, use_causal_mask=True)
    cases["attention_mask"] = mha(num_heads=2, key_dim=2)(*[h()] * 2, attention_mask=allowed)
    cases["attention_mask_only"] = mha(num_heads=2, key_dim=2)(x, x, attention_mask=allowed)
    cases["axes_2"] = mha(num_heads=2, key_dim=2, attention_axes=(2,))(grid, grid)
    cases["axes_1"] = mha(num_heads=2, key_dim=2, attention_axes=(1,))(grid, grid)
    cases["axes_1_2"] = mha(num_heads=2, key_dim=2, attention_axes=(1, 2), output_shape=(2, 3))(grid, grid)
    cases["lstm_on_output"] = k.layers.LSTM(3)(cases["self"])  # reads the query mask MultiHeadAttention passes on
    if keras3:
        cases["gate"] = mha(num_heads=2, key_dim=2, use_gate=True)(*[h()] * 2)
        cases["sliding_window"] = mha(num_heads=2, key_dim=2, sliding_window=2)(*[h()] * 2)
    else:
        cases["robust_masking"] = mha(num_heads=2, key_dim=2, softmax_robust_masking=True)(*[h()] * 2)
    names.extend(cases)
    return k.Model([x, x2, x3, allowed, grid], list(cases.values()))


def multi_head_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    x, x2 = (rng.standard_normal((4, 6, 3)).astype(np.float32) for _ in range(2))
    x3 = rng.standard_normal((4, 4, 3)).astype(np.float32)
    x[1, 4:], x[2, :2], x[3] = 0, 0, 0  # end, start, whole row
    x2[0, 3:], x2[2, :4] = 0, 0
    x3[0, 2:], x3[1, :3] = 0, 0
    allowed = rng.integers(0, 3, size=(4, 6, 6)).astype(np.int32)  # Keras 3 keeps nonzero; tf.keras adds (1 - m) * -1e9
    allowed[0, 2] = 0  # a query step that may attend to nothing
    grid = rng.standard_normal((4, 3, 4, 2)).astype(np.float32)
    return [x, x2, x3, allowed, grid]


def float64_attention(k, names: list[str]):
    """The attention layers under a float64 dtype policy, where Keras computes `score - 1e9` in float64:
    a fully masked row keeps its scores' differences (in float32 it would be near uniform)."""
    f64 = {"dtype": "float64"}
    x = k.Input(shape=(6, 3), dtype="float64")
    h = k.layers.LSTM(4, return_sequences=True, **f64)(k.layers.Masking(0.0, **f64)(x))  # (B, 6, 4), masked

    count = iter(range(10))

    def d():  # a projection of its own, scaled up by make_big
        return k.layers.Dense(4, name=f"big_{next(count)}", **f64)(h)

    cases = {}
    cases["luong"], cases["luong_scores"] = k.layers.Attention(use_scale=True, name="huge", **f64)(
        [d(), h], use_causal_mask=True, return_attention_scores=True
    )
    cases["bahdanau"], cases["bahdanau_scores"] = k.layers.AdditiveAttention(**f64)(
        [d(), h], use_causal_mask=True, return_attention_scores=True
    )
    cases["mha"], cases["mha_scores"] = k.layers.MultiHeadAttention(1, 4, **f64)(
        d(), d(), use_causal_mask=True, return_attention_scores=True
    )
    cases["mha_fused"] = k.layers.MultiHeadAttention(1, 4, **f64)(d(), d(), use_causal_mask=True)
    names.extend(cases)
    return k.Model(x, list(cases.values()))


def make_big(model) -> None:
    """Scale the float64 model so that its fully masked rows depend on how Keras rounds them."""
    model.get_layer("huge").set_weights([np.float64(HUGE_SCALE)])
    for layer in model.layers:
        if layer.name.startswith("big_"):
            layer.set_weights([w * 8 for w in layer.get_weights()])


def padded_rows(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random rows (batch, time, features) padded with zeros at the end, at the start, and whole."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x[1, shape[1] - 2 :], x[2, :2], x[3] = 0, 0, 0
    return x


def masked_self_attention(k, masked: bool = True):
    """Masking (or not) -> Dense -> MultiHeadAttention, twice: plain, and with its scores returned and an
    attention_mask of 0, 1 and 2. Each MultiHeadAttention gets its own Dense output. Layers are named,
    so that a twin built without Masking (or by the other Keras) takes the same weights."""
    x = k.Input(shape=(6, 3))
    allowed = k.Input(shape=(6, 6), dtype="int32")
    h = k.layers.Masking(0.0)(x) if masked else k.layers.Activation("linear")(x)
    h1, h2 = k.layers.Dense(4, name="d1")(h), k.layers.Dense(4, name="d2")(h)
    plain = k.layers.MultiHeadAttention(2, 2, name="m1")(h1, h1)
    out, scores = k.layers.MultiHeadAttention(2, 2, name="m2")(
        h2, h2, attention_mask=allowed, return_attention_scores=True
    )
    pooled = k.layers.GlobalAveragePooling1D()(out)  # averages the steps the output's mask keeps
    return k.Model([x, allowed], [plain, out, scores, pooled])


def causal_attention(k, masked_value: bool = True):
    """A causal Attention whose query is masked (Masking -> Dense) and whose value is masked or not."""
    x = k.Input(shape=(6, 3))
    query = k.layers.Dense(4, name="dq")(k.layers.Masking(0.0)(x))
    source = k.layers.Masking(0.0)(x) if masked_value else k.layers.Activation("linear")(x)
    value = k.layers.Dense(4, name="dv")(source)
    return k.Model(x, k.layers.Attention(name="att")([query, value], use_causal_mask=True))


def copy_weights(source, target) -> None:
    """Give `target` the weights of `source`'s layers of the same names."""
    for layer in target.layers:
        if layer.get_weights():
            layer.set_weights(source.get_layer(layer.name).get_weights())
