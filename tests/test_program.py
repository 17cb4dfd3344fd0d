"""Small batches run as a Program (reference/program.py): one list of NumPy calls on buffers made once
per input shape, the LSTM written out in six calls per step (program_lstm.py), every other layer its
built function. The layers' builds are kept per spec (reference/prepared.py).

Every program is held to the textbook loop (FAST_PATHS off) and to Keras, in float32 and float64, at
batch 1 and at the largest batch a program takes: LSTMs returning sequences or not, go_backwards,
return_state, no bias, stacked, and layers the program only calls (GRU, Bidirectional, hard_sigmoid).
Masks, stateful models and plugins never take a program, an LSTM given initial states is called as
built, and all give the same numbers as the textbook loop.
"""

from __future__ import annotations

import gc
import threading
import warnings

import numpy as np
import pytest

from conftest import build_model, build_with, keras_predict, save_model
from lstm_parity.formats import open_model
from lstm_parity.plugins import plugins_in_use
from lstm_parity.reference import prepared as prepared_module
from lstm_parity.reference import recurrent
from lstm_parity.reference.forward import forward
from lstm_parity.reference.prepared import kept_count, prepare
from lstm_parity.reference.program import SMALL_BATCH, _call_layer

TIME, FEATURES = 7, 4
MODELS = {
    "stack": [
        ("LSTM", {"units": 6, "return_sequences": True}),
        ("LSTM", {"units": 5, "go_backwards": True}),
        ("Dense", {"units": 3, "activation": "tanh"}),
    ],
    "backwards-sequences": [
        ("LSTM", {"units": 4, "return_sequences": True, "go_backwards": True}),
        ("Dense", {"units": 2}),
    ],
    "no-bias": [("LSTM", {"units": 5, "use_bias": False}), ("Dense", {"units": 1, "use_bias": False})],
    "one-unit": [("LSTM", {"units": 1}), ("Dense", {"units": 1})],
    "wide": [("LSTM", {"units": 40, "return_sequences": True}), ("LSTM", {"units": 33}), ("Dense", {"units": 2})],
    "hard-sigmoid": [("LSTM", {"units": 5, "recurrent_activation": "hard_sigmoid"}), ("Dense", {"units": 2})],
    "gru-bidirectional": [
        ("GRU", {"units": 4, "return_sequences": True}),
        ("Bidirectional", {"layer": None}),
        ("Dense", {"units": 2, "activation": "softmax"}),
    ],
}
WRITTEN_OUT = {"stack", "backwards-sequences", "no-bias", "one-unit", "wide"}  # every LSTM in them is LSTMOps


def _layers(module, layers):
    made = []
    for cls, kwargs in layers:
        if cls == "Bidirectional":
            made.append(("Bidirectional", {"layer": module.layers.LSTM(3)}))
        else:
            made.append((cls, kwargs))
    return made


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from conftest import keras_module

    folder = tmp_path_factory.mktemp("program")
    out = {}
    for name, layers in MODELS.items():
        model = build_model("k3-keras", TIME, FEATURES, _layers(keras_module("k3-keras"), layers), seed=7)
        out[name] = (model, open_model(str(save_model(model, "k3-keras", folder, name))))
    return out


def _textbook(monkeypatch, spec, inputs, dtype):
    with monkeypatch.context() as patch:
        patch.setattr(recurrent, "FAST_PATHS", False)
        return forward(spec, inputs, dtype=dtype).outputs


def _programs(spec, dtype, shape=None):
    """The programs made for `spec` in `dtype` (for inputs of `shape` only, if given)."""
    pools = prepare(spec, spec.semantics, dtype).programs
    return [p for key, pool in pools.items() if isinstance(pool, list) for p in pool if shape in (None, key[0])]


def _warm(spec, x, dtype=np.float64):
    """Two calls: the first computes the ordinary way and remembers the shape, the second makes the program."""
    for _ in range(2):
        forward(spec, [x], dtype=dtype)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 3, SMALL_BATCH])
def test_program_equals_textbook_and_keras(saved, monkeypatch, name, dtype, batch):
    model, spec = saved[name]
    x = np.random.default_rng(batch).uniform(-2, 2, (batch, TIME, FEATURES)).astype(np.float32)
    first = forward(spec, [x], dtype=dtype).outputs[0]  # computed the ordinary way, the shape remembered
    got = forward(spec, [x], dtype=dtype).outputs[0]  # the program, made
    again = forward(spec, [x], dtype=dtype).outputs[0]  # and run again
    assert _programs(spec, dtype), "a small batch runs as a program"
    textbook = _textbook(monkeypatch, spec, [x], dtype)[0]
    assert got.dtype == np.dtype(dtype) and got.shape == textbook.shape
    tight = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, textbook, rtol=0, atol=tight)
    np.testing.assert_allclose(first, textbook, rtol=0, atol=tight)
    np.testing.assert_array_equal(again, got)
    np.testing.assert_allclose(got, keras_predict(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_lstms_are_written_out_where_they_qualify(saved, name):
    _, spec = saved[name]
    x = np.zeros((1, TIME, FEATURES), np.float32)
    _warm(spec, x, np.float32)
    (program,) = _programs(spec, np.float32, x.shape)
    called = [fn for fn, _ in program.ops if fn is _call_layer]  # layers run by their built function
    if name in WRITTEN_OUT:
        assert called == []  # every layer written out as NumPy calls
        assert len(program.ops) <= 6 * TIME * sum(c == "LSTM" for c, _ in MODELS[name]) + 8
    else:
        assert called, "a layer the program does not write out is called as built"


def test_wide_layers_at_larger_batches_write_h_each_step(saved):
    """The wide model's LSTMs keep h in halves at batch 1 (6 calls a step) and write it at 16 (7)."""
    _, spec = saved["wide"]
    steps = {}
    for batch in (1, SMALL_BATCH):
        x = np.zeros((batch, TIME, FEATURES), np.float32)
        _warm(spec, x, np.float32)
        (program,) = _programs(spec, np.float32, x.shape)
        steps[batch] = sum(fn is np.tanh for fn, _ in program.ops), len(program.ops)
    tanh_calls = 2 * 2 * TIME  # two LSTMs, two tanh calls a step
    assert steps[1][0] == steps[SMALL_BATCH][0] == tanh_calls
    # one call more a step; at batch 1 the Dense reads the last LSTM's h as its halves (no call for h), and
    # the first LSTM's sequence is halved in two calls where the unpaired one copies it in one
    assert steps[SMALL_BATCH][1] - steps[1][1] == 2 * TIME


def test_return_state_outputs_equal_textbook_and_keras(tmp_path, monkeypatch):
    def make(k):
        inp = k.Input((TIME, FEATURES))
        seq, h, c = k.layers.LSTM(5, return_sequences=True, return_state=True)(inp)
        last, h2, c2 = k.layers.LSTM(3, return_state=True, go_backwards=True)(seq)
        return k.Model(inp, [k.layers.Dense(2)(last), h, c, h2, c2, seq])

    model = build_with("k3-keras", make, seed=2)
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    x = np.random.default_rng(0).uniform(-1, 1, (2, TIME, FEATURES)).astype(np.float32)
    for dtype, tight in ((np.float64, 1e-12), (np.float32, 2e-6)):
        _warm(spec, x, dtype)
        got = forward(spec, [x], dtype=dtype).outputs
        assert _programs(spec, dtype)
        keras = model.predict(x, verbose=0)
        for ours, textbook, k in zip(got, _textbook(monkeypatch, spec, [x], dtype), keras, strict=True):
            np.testing.assert_allclose(ours, textbook, rtol=0, atol=tight)
            np.testing.assert_allclose(ours, k, rtol=1e-5, atol=1e-5)


def _masked(k):
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.Masking(0.0), k.layers.LSTM(4), k.layers.Dense(2)])


def _initial_state(k):
    inp, h0, c0 = k.Input((TIME, FEATURES)), k.Input((4,)), k.Input((4,))
    return k.Model([inp, h0, c0], k.layers.LSTM(4)(inp, initial_state=[h0, c0]))


def _embedding(k):
    return k.Sequential([k.Input((TIME,), dtype="int32"), k.layers.Embedding(9, 3, mask_zero=True), k.layers.LSTM(4)])


@pytest.mark.parametrize("make", [_masked, _initial_state, _embedding], ids=["masked", "initial-state", "mask-zero"])
def test_masks_take_no_program_initial_states_are_not_written_out(tmp_path, monkeypatch, make):
    model = build_with("k3-keras", make, seed=3)
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    rng = np.random.default_rng(1)
    if make is _embedding:
        inputs = [rng.integers(0, 9, (2, TIME)).astype(np.int32)]
        inputs[0][0, 4:] = 0  # padding: masked steps
    else:
        inputs = [rng.uniform(-1, 1, (2, TIME, FEATURES)).astype(np.float32)]
        inputs[0][1, 3:] = 0.0
        if make is _initial_state:
            inputs += [rng.uniform(-1, 1, (2, 4)).astype(np.float32) for _ in range(2)]
    forward(spec, inputs)
    got = forward(spec, inputs).outputs[0]
    if make is _initial_state:  # no mask: a program, which calls the LSTM as built (its initial states as given)
        (program,) = _programs(spec, np.float64)
        assert [fn for fn, _ in program.ops] == [_call_layer]
    else:
        assert _programs(spec, np.float64) == []
    np.testing.assert_allclose(got, _textbook(monkeypatch, spec, inputs, np.float64)[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, model.predict(inputs, verbose=0), rtol=1e-5, atol=1e-5)


def test_stateful_model_takes_no_program(tmp_path):
    def make(k):
        return k.Sequential([k.Input((5, 2), batch_size=1), k.layers.LSTM(3, stateful=True)])

    spec = open_model(str(save_model(build_with("k3-keras", make), "k3-keras", tmp_path)))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 5, 2)).astype(np.float32)
    states: dict = {}
    first = forward(spec, [x], states=states).outputs[0]
    second = forward(spec, [x], states=states).outputs[0]
    assert not np.allclose(first, second)  # states carried, as without programs
    np.testing.assert_array_equal(forward(spec, [x]).outputs[0], first)  # no store: starts from zeros
    assert _programs(spec, np.float64) == []


def test_new_arrays_every_call_and_new_shapes(saved, monkeypatch):
    _, spec = saved["stack"]
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (2, TIME, FEATURES)).astype(np.float32)
    _warm(spec, x)
    first = forward(spec, [x]).outputs[0]
    kept = first.copy()
    first[...] = 99.0  # the caller owns what it got
    second = forward(spec, [x]).outputs[0]
    np.testing.assert_array_equal(second, kept)
    assert not np.shares_memory(first, second)
    x[...] = 0.5  # the input is copied in: the last call's result does not follow it
    np.testing.assert_array_equal(second, kept)
    for shape in ((2, 3, FEATURES), (1, 11, FEATURES), (2, TIME, FEATURES)):  # other lengths: other programs
        z = rng.uniform(-1, 1, shape).astype(np.float32)
        for _ in range(3):  # ordinary, made, run
            got = forward(spec, [z]).outputs[0]
            np.testing.assert_allclose(got, _textbook(monkeypatch, spec, [z], np.float64)[0], rtol=0, atol=1e-12)
        assert len(_programs(spec, np.float64, shape)) == 1
    integer = np.arange(2 * TIME * FEATURES).reshape(2, TIME, FEATURES) % 3  # cast as the ordinary path casts
    for _ in range(3):
        got = forward(spec, [integer]).outputs[0]
        np.testing.assert_allclose(got, _textbook(monkeypatch, spec, [integer], np.float64)[0], atol=1e-12)


def test_threads_each_run_their_own_program(saved):
    _, spec = saved["stack"]
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-1, 1, (1, TIME, FEATURES)).astype(np.float32) for _ in range(8)]
    _warm(spec, xs[0], np.float32)
    expected = [forward(spec, [x], dtype=np.float32).outputs[0] for x in xs]
    failures = []

    def work(offset):
        for k in range(200):
            i = (k + offset) % len(xs)
            if not np.array_equal(forward(spec, [xs[i]], dtype=np.float32).outputs[0], expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]  # more threads than KEPT shapes
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    # one pool for the shape, a program per thread that ran it at the same time, none remade on eviction
    assert 1 <= len(_programs(spec, np.float32, xs[0].shape)) <= len(threads) + 1


def test_no_warnings_on_overflowing_input(saved):
    _, spec = saved["stack"]
    x = np.full((1, TIME, FEATURES), 3e38, dtype=np.float32)
    x[0, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (np.float32, np.float64):
            _warm(spec, x, dtype)
            out = forward(spec, [x], dtype=dtype).outputs[0]  # the program's run
    assert out.shape == (1, 3)


def test_prepared_builds_are_kept_per_spec_and_let_go(tmp_path):
    model = build_model("k3-keras", TIME, FEATURES, [("LSTM", {"units": 3})])
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    x = np.zeros((1, TIME, FEATURES), np.float32)
    forward(spec, [x])
    forward(spec, [x], dtype=np.float32)
    assert prepare(spec, spec.semantics, np.float32) is prepare(spec, spec.semantics, np.dtype("float32"))
    assert kept_count(spec) == 2  # float64 and float32
    held = len(prepared_module._cache)
    del spec
    gc.collect()
    assert len(prepared_module._cache) == held - 1  # nothing keeps a spec alive or its builds after it


def test_plugins_are_never_kept(tmp_path):
    model = build_model("k3-keras", TIME, FEATURES, [("LSTM", {"units": 3}), ("Dense", {"units": 2, "name": "head"})])
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    plugin = tmp_path / "zero_head.py"
    plugin.write_text(
        "import numpy as np\nfrom lstm_parity.plugins import layer\n\n"
        "@layer('Dense', name='head')\ndef head(inputs, weights, config):\n"
        "    return np.zeros((inputs[0].shape[0], 2))\n"
    )
    x = np.random.default_rng(0).uniform(-1, 1, (1, TIME, FEATURES)).astype(np.float32)
    _warm(spec, x)
    plain = forward(spec, [x]).outputs[0]  # the program's
    assert np.abs(plain).max() > 0
    with plugins_in_use([str(plugin)]):
        for _ in range(3):
            np.testing.assert_array_equal(forward(spec, [x]).outputs[0], 0.0)
    np.testing.assert_array_equal(forward(spec, [x]).outputs[0], plain)  # the plugin's build was not kept


def test_a_shape_seen_once_takes_no_program_and_dtype_spellings_share_one(saved):
    _, spec = saved["stack"]
    rng = np.random.default_rng(8)
    for time in range(20, 26):  # sequences of varying lengths: each new shape computed the ordinary way
        forward(spec, [rng.uniform(-1, 1, (1, time, FEATURES)).astype(np.float32)], dtype=np.float32)
        assert _programs(spec, np.float32, (1, time, FEATURES)) == []
    x = rng.uniform(-1, 1, (1, 5, FEATURES)).astype(np.float32)
    results = [forward(spec, [x], dtype=dtype).outputs[0] for dtype in (np.float32, "float32", np.dtype("f4"), "<f4")]
    assert len(_programs(spec, np.float32, x.shape)) == 1  # one program however the dtype is spelled
    np.testing.assert_array_equal(results[2], results[3])  # the program's, twice
    np.testing.assert_allclose(results[0], results[1], rtol=0, atol=2e-7)  # ordinary vs program: the last bit


def test_dense_on_sequences_is_one_2d_product(saved):
    _, spec = saved["backwards-sequences"]  # LSTM(return_sequences) -> Dense on (batch, time, 4)
    x = np.zeros((SMALL_BATCH, TIME, FEATURES), np.float32)
    _warm(spec, x, np.float32)
    (program,) = _programs(spec, np.float32, x.shape)
    dense = [args for fn, args in program.ops + program.finals if fn is np.dot and args[0].shape[-1] == 4]
    assert dense and all(a.ndim == 2 for args in dense for a in args[:2])  # BLAS: a 3-D np.dot is not


def test_long_sequences_are_not_written_out_and_weights_are_shared(saved, monkeypatch):
    _, spec = saved["wide"]
    long = np.random.default_rng(9).uniform(-1, 1, (SMALL_BATCH, 600, FEATURES)).astype(np.float32)
    for _ in range(3):  # the LSTMs' buffers would pass PROGRAM_BYTES: they are called as built
        got = forward(spec, [long]).outputs[0]
    for program in _programs(spec, np.float64, long.shape):
        assert sum(fn is _call_layer for fn, _ in program.ops) == 2
    np.testing.assert_allclose(got, _textbook(monkeypatch, spec, [long], np.float64)[0], rtol=0, atol=1e-12)
    ready = prepare(spec, spec.semantics, np.float64)
    products = []
    for batch in (2, 3):  # the 33-unit LSTM keeps h in halves at both: one weight array for both programs
        x = np.zeros((batch, TIME, FEATURES), np.float32)
        _warm(spec, x)
        (program,) = _programs(spec, np.float64, x.shape)
        products.append({id(args[0]) for fn, args in program.ops if fn is np.dot})
    second = [layer.name for layer in spec.layers if layer.class_name == "LSTM"][1]
    assert id(ready.derived[(second, "lstm", True)]) in products[0] & products[1]


def test_float_quiet_leaves_other_threads_error_state_alone():
    from lstm_parity.reference.quiet import float_quiet

    seen, barrier = {}, threading.Barrier(2)

    @float_quiet
    def inside():
        barrier.wait()
        barrier.wait()

    def thread(name, setting):
        with np.errstate(all=setting):
            inside()
            seen[name] = np.geterr()["over"]

    threads = [threading.Thread(target=thread, args=(n, s)) for n, s in (("a", "raise"), ("b", "warn"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": "raise", "b": "warn"}


def test_zero_rows_and_lists_give_the_same_on_every_call(saved, monkeypatch):
    _, spec = saved["stack"]
    empty = np.zeros((0, TIME, FEATURES), np.float32)
    for _ in range(3):
        (out,) = forward(spec, [empty]).outputs
        assert out.shape == (0, 3)
    nested = np.random.default_rng(10).uniform(-1, 1, (2, TIME, FEATURES)).round(3).tolist()
    expected = _textbook(monkeypatch, spec, [np.asarray(nested)], np.float64)[0]
    for _ in range(3):  # ordinary, made, program: a list of lists is an array on every path
        np.testing.assert_allclose(forward(spec, [nested]).outputs[0], expected, rtol=0, atol=1e-12)
    big = np.zeros((SMALL_BATCH + 1, TIME, FEATURES)).tolist()
    assert forward(spec, [big]).outputs[0].shape == (SMALL_BATCH + 1, 3)


def test_budget_is_checked_before_the_lstm_allocates(saved, monkeypatch):
    from lstm_parity.reference import program_lstm

    _, spec = saved["stack"]
    allocated = []
    real = program_lstm.LSTMOps.__init__

    def spy(self, *args, **kwargs):
        allocated.append(args[3:5])  # (batch, time)
        real(self, *args, **kwargs)

    monkeypatch.setattr(program_lstm.LSTMOps, "__init__", spy)
    long = np.zeros((SMALL_BATCH, 3000, FEATURES), np.float32)  # buffers of ~10 MB per LSTM: over budget
    for _ in range(3):
        forward(spec, [long])
    assert allocated == []  # nothing allocated for an LSTM that would not fit: it is called as built


def test_pools_keep_a_few_programs_and_wide_dense_reads_h(tmp_path):
    from lstm_parity.reference.program import POOL
    from lstm_parity.reference.program_dense import HALVES_KERNEL

    model = build_model("k3-keras", TIME, FEATURES, [("LSTM", {"units": 8}), ("Dense", {"units": HALVES_KERNEL})])
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    x = np.random.default_rng(11).uniform(-1, 1, (1, TIME, FEATURES)).astype(np.float32)
    _warm(spec, x)
    (program,) = _programs(spec, np.float64, x.shape)
    # kernel of 8 x 4096 values: too big to double, so the LSTM writes h and the Dense reads it
    assert any(fn is np.dot and args[0].shape == (1, 2) for fn, args in program.ops)
    np.testing.assert_allclose(forward(spec, [x]).outputs[0], keras_predict(model, x), rtol=1e-5, atol=1e-5)
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        for _ in range(30):
            forward(spec, [x])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(_programs(spec, np.float64, x.shape)) <= POOL
