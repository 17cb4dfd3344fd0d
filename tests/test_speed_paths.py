"""The fast paths compute the same numbers as the plain ones: chunks and threads, fused gates, the
fast loop.

The reference splits a batch into row chunks run on threads (reference/parallel.py), stores gate
weights reordered and halved for one tanh pass, and runs LSTM/GRU/SimpleRNN through a fast loop
with preallocated buffers that computes only the valid rows of a masked step (reference/recurrent.py).
Here every such path is compared with the textbook loop, with a sample-by-sample loop written out
below from Keras' equations, and with Keras itself, on real models: float32 and float64, masks
(nested or not), go_backwards, initial states and stateful models.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import build_model, build_with, keras_predict, save_model
from lstm_parity.formats import open_model
from lstm_parity.reference import recurrent
from lstm_parity.reference.activations import hard_sigmoid_keras3, relu, sigmoid, tanh
from lstm_parity.reference.forward import forward
from lstm_parity.reference.parallel import map_chunks, plan_rows, rows_for_width, split_rows
from lstm_parity.reference.recurrent import GRUCell, LSTMCell, SimpleRNNCell, row_plan, run_sequence

MODELS = {
    "lstm-stack": [("LSTM", {"units": 12, "return_sequences": True}), ("LSTM", {"units": 7}), ("Dense", {"units": 3})],
    "gru-after": [("GRU", {"units": 9, "return_sequences": True, "reset_after": True}), ("Dense", {"units": 2})],
    "gru-before": [("GRU", {"units": 9, "reset_after": False, "go_backwards": True})],
    "simple-rnn": [("SimpleRNN", {"units": 6, "return_sequences": True})],
    "hard-sigmoid": [("LSTM", {"units": 5, "recurrent_activation": "hard_sigmoid", "activation": "relu"})],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speed")
    out = {}
    for name, layers in MODELS.items():
        model = build_model("k3-keras", 9, 4, layers, seed=3)
        out[name] = (model, open_model(str(save_model(model, "k3-keras", folder, name))))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunked_threads_equal_one_pass_and_keras(saved, name, dtype):
    model, spec = saved[name]
    x = np.random.default_rng(5).uniform(-1, 1, (203, 9, 4)).astype(np.float32)  # 203: chunks of 32 leave 11
    one = forward(spec, [x], dtype=dtype, chunk_rows=10_000, threads=1).outputs[0]
    chunked = forward(spec, [x], dtype=dtype, chunk_rows=32, threads=2).outputs[0]
    serial = forward(spec, [x], dtype=dtype, chunk_rows=32, threads=1).outputs[0]
    assert chunked.shape == one.shape and chunked.dtype == np.dtype(dtype)
    tight = 1e-12 if dtype == np.float64 else 1e-6  # BLAS may block a 32-column product differently
    np.testing.assert_allclose(chunked, one, rtol=0, atol=tight)
    np.testing.assert_array_equal(chunked, serial)  # threads change nothing for the same chunks
    np.testing.assert_allclose(chunked, keras_predict(model, x), rtol=1e-5, atol=1e-5)


def test_masked_bidirectional_chunked_matches_keras(tmp_path):
    def make(k):
        inp = k.Input((10, 3))
        x = k.layers.Masking(0.0)(inp)
        x = k.layers.Bidirectional(k.layers.LSTM(6, return_sequences=True))(x)
        return k.Model(inp, k.layers.Bidirectional(k.layers.GRU(4))(x))

    model = build_with("k3-keras", make, seed=4)
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (150, 10, 3)).astype(np.float32)
    for row, length in enumerate(rng.integers(1, 11, 150)):
        x[row, length:] = 0.0  # padding at the end, different per sample
    got = forward(spec, [x], dtype=np.float64, chunk_rows=32, threads=2).outputs[0]
    np.testing.assert_allclose(got, keras_predict(model, x), rtol=1e-5, atol=1e-5)


def test_map_chunks_reassembles_rows_in_order_with_every_output():
    x = np.arange(100 * 3, dtype=np.float64).reshape(100, 3)
    t = np.arange(100)
    seen = []

    def fn(parts):
        seen.append(parts[0].shape[0])
        return [parts[0] * 2, parts[1][:, None] + 1]

    doubled, shifted = map_chunks(fn, [x, t], rows=30, threads=2)
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(shifted[:, 0], t + 1)
    assert sorted(seen) == [10, 30, 30, 30]
    assert split_rows(5, 2) == [(0, 2), (2, 4), (4, 5)]


def test_chunk_rows_follow_gate_width():
    assert rows_for_width(512) == 1024  # LSTM of 128 units: 4h = 512
    assert rows_for_width(20) == 4096 and rows_for_width(10**6) == 32  # clamped both ways
    assert plan_rows(1000, 60, 256, threads=2) == 500  # worth splitting: each thread gets half
    assert plan_rows(10_000, 4, 20, threads=2) == 10_000  # tiny work: one pass
    assert plan_rows(100_000, 50, 512, threads=2) == 1021  # about cache-sized: 98 chunks, 49 per thread
    assert plan_rows(100_000, 50, 512, threads=1) == 1024
    assert plan_rows(2000, 100, 768, threads=2) == 500  # 4 chunks, not 3 of 682 (one thread idle at the end)


def test_stateful_model_is_not_chunked(tmp_path):
    def make(k):
        return k.Sequential([k.Input((5, 2), batch_size=4), k.layers.LSTM(3, stateful=True)])

    model = build_with("k3-keras", make)
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    x = np.random.default_rng(0).uniform(-1, 1, (4, 5, 2)).astype(np.float32)
    states: dict = {}
    first = forward(spec, [x], chunk_rows=1, threads=2, states=states).outputs[0]
    second = forward(spec, [x], chunk_rows=1, threads=2, states=states).outputs[0]
    assert not np.allclose(first, second)  # the states carried from the first call
    # Chunks of one row would leave one row's states behind (and race between threads): the
    # second call would then differ from Keras, which carries all 4 rows' states.
    np.testing.assert_allclose(first, model.predict(x, batch_size=4, verbose=0), atol=1e-5)
    np.testing.assert_allclose(second, model.predict(x, batch_size=4, verbose=0), atol=1e-5)


# ------------------------------------------------------------------ the fast loop against the textbook


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _by_hand(kind, weights, x, mask, go_backwards, initial, activation, recurrent_activation, reset_after=True):
    """One sample at a time, Keras' equations in Keras' gate order (LSTM i, f, c, o; GRU z, r, h), Keras'
    masking rule (states kept, previous output repeated, zeros before the first valid step).
    Returns (outputs (batch, time, units) in processing order, final states)."""
    kernel, recurrent_kernel, bias = weights
    units = recurrent_kernel.shape[0]
    outputs, finals = [], []
    for row in range(x.shape[0]):
        states = [np.array(s[row], dtype=np.float64) for s in initial] if initial else None
        if states is None:
            states = [np.zeros(units) for _ in range(2 if kind == "LSTM" else 1)]
        out, sequence = np.zeros(units), []
        steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
        for t in steps:
            if mask is not None and not mask[row, t]:
                sequence.append(out)
                continue
            x_t, h = x[row, t].astype(np.float64), states[0]
            if kind == "LSTM":
                z = x_t @ kernel + h @ recurrent_kernel + bias
                i, f, g, o = np.split(z, 4)
                c = recurrent_activation(f) * states[1] + recurrent_activation(i) * activation(g)
                h = recurrent_activation(o) * activation(c)
                states = [h, c]
            elif kind == "GRU":
                x_z, x_r, x_h = np.split(x_t @ kernel + (bias[0] if reset_after else bias), 3)
                u_z, u_r, u_h = np.split(recurrent_kernel, 3, axis=1)
                if reset_after:
                    r_z, r_r, r_h = np.split(h @ recurrent_kernel + bias[1], 3)
                    z, r = recurrent_activation(x_z + r_z), recurrent_activation(x_r + r_r)
                    h_hat = activation(x_h + r * r_h)
                else:
                    z, r = recurrent_activation(x_z + h @ u_z), recurrent_activation(x_r + h @ u_r)
                    h_hat = activation(x_h + (r * h) @ u_h)
                h = z * h + (1 - z) * h_hat
                states = [h]
            else:
                h = activation(x_t @ kernel + h @ recurrent_kernel + bias)
                states = [h]
            out = h
            sequence.append(out)
        outputs.append(sequence)
        finals.append(states)
    return np.array(outputs), [np.array([f[k] for f in finals]) for k in range(len(finals[0]))]


def _cell(kind, rng, features, units, dtype, activation, recurrent_activation, reset_after):
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    kernel = rng.standard_normal((features, gates * units)) * 0.6
    recurrent_kernel = rng.standard_normal((units, gates * units)) * 0.6
    bias = rng.standard_normal((2, gates * units) if kind == "GRU" and reset_after else (gates * units,)) * 0.5
    weights = (kernel, recurrent_kernel, bias)
    cast = [w.astype(dtype) for w in weights]
    if kind == "LSTM":
        cell = LSTMCell(*cast, activation, recurrent_activation)
    elif kind == "GRU":
        cell = GRUCell(*cast, activation, recurrent_activation, reset_after)
    else:
        cell = SimpleRNNCell(*cast, activation)
    return cell, [w.astype(dtype).astype(np.float64) for w in weights]


def _masks(batch, time, rng):
    lengths = rng.integers(0, time + 1, batch)
    lengths[0] = time  # one full row, one empty row
    lengths[1] = 0
    after = np.arange(time)[None, :] < lengths[:, None]  # padded after: nested
    before = np.arange(time)[None, :] >= time - lengths[:, None]  # padded before: nested
    holes = rng.random((batch, time)) > 0.3  # steps masked inside sequences: not nested
    assert row_plan(holes, batch, time) is None and row_plan(after, batch, time) is not None
    return {"none": None, "after": after, "before": before, "holes": holes}


CASES = [
    ("LSTM", tanh, sigmoid, True),
    ("LSTM", relu, hard_sigmoid_keras3, True),
    ("GRU", tanh, sigmoid, True),
    ("GRU", tanh, sigmoid, False),
    ("GRU", relu, hard_sigmoid_keras3, True),
    ("GRU", tanh, hard_sigmoid_keras3, False),
    ("SimpleRNN", tanh, None, True),
    ("SimpleRNN", relu, None, True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1].__name__}-{getattr(c[2], '__name__', '')}-{c[3]}")
def test_fast_loop_equals_textbook_loop_and_hand_written_equations(case, dtype, monkeypatch):
    kind, activation, recurrent_activation, reset_after = case
    rng = np.random.default_rng(11)
    batch, time, features, units = 23, 7, 4, 5
    cell, weights = _cell(kind, rng, features, units, dtype, activation, recurrent_activation, reset_after)
    x = rng.uniform(-1, 1, (batch, time, features)).astype(dtype)
    state_count = 2 if kind == "LSTM" else 1
    initial = tuple(rng.uniform(-1, 1, (batch, units)).astype(dtype) for _ in range(state_count))
    exact = 1e-12 if dtype == np.float64 else 2e-6
    for mask_name, mask in _masks(batch, time, rng).items():
        for go_backwards in (False, True):
            for states in (None, initial):
                expected, expected_states = _by_hand(
                    kind, weights, x, mask, go_backwards, states, activation, recurrent_activation, reset_after
                )
                for return_sequences in (True, False):
                    got = {}
                    for fast in (True, False):
                        monkeypatch.setattr(recurrent, "FAST_PATHS", fast)
                        got[fast] = run_sequence(
                            cell,
                            x,
                            return_sequences=return_sequences,
                            go_backwards=go_backwards,
                            mask=mask,
                            initial_states=states,
                        )
                    where = f"{mask_name} mask, go_backwards={go_backwards}, initial={states is not None}"
                    want = expected if return_sequences else expected[:, -1]
                    for fast, result in got.items():
                        loop = f"{'fast' if fast else 'textbook'} loop, {where}"
                        assert result.output.dtype == np.dtype(dtype), loop
                        np.testing.assert_allclose(result.output, want, rtol=0, atol=exact * 10, err_msg=loop)
                        for state, want_state in zip(result.states, expected_states, strict=True):
                            np.testing.assert_allclose(state, want_state, rtol=0, atol=exact * 10, err_msg=loop)
                    np.testing.assert_allclose(got[True].output, got[False].output, rtol=0, atol=exact, err_msg=where)


def test_zero_output_for_mask_emits_zeros_at_masked_steps(monkeypatch):
    rng = np.random.default_rng(2)
    cell, _ = _cell("GRU", rng, 3, 4, np.float64, tanh, sigmoid, True)
    x = rng.uniform(-1, 1, (9, 6, 3))
    mask = np.arange(6)[None, :] < rng.integers(0, 7, 9)[:, None]
    outs = []
    for fast in (True, False):
        monkeypatch.setattr(recurrent, "FAST_PATHS", fast)
        outs.append(run_sequence(cell, x, return_sequences=True, mask=mask, zero_output_for_mask=True).output)
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-13)
    assert np.all(outs[0][~mask] == 0) and np.all(outs[0][mask] != 0)


def test_row_plan_makes_valid_rows_a_prefix_or_declines():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)  # padded after
    plan = row_plan(mask, 4, 4)
    assert plan is not None and plan.order.tolist() == [1, 0, 3, 2]
    assert plan.counts == [3, 2, 1, 1] and plan.started == 3
    for t, n in enumerate(plan.counts):
        assert mask[plan.order, t].tolist() == [True] * n + [False] * (4 - n)
    before = mask[:, ::-1]  # padded before
    assert row_plan(before, 4, 4).counts == [1, 1, 2, 3]
    holes = np.array([[1, 0, 1], [1, 1, 1]], dtype=bool)  # a hole, inside the other row's valid steps
    assert row_plan(holes, 2, 3).counts == [2, 1, 2]
    assert row_plan(np.array([[1, 0, 1], [0, 1, 1]], dtype=bool), 2, 3) is None  # neither row within the other
    assert row_plan(np.ones((3, 2), dtype=bool), 3, 2).order is None  # already in order: no copy
    assert row_plan(None, 5, 3).counts == [5, 5, 5]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_loop_on_keras_models_masked_backwards_initial_states(tmp_path, dtype, monkeypatch):
    """Real Keras 3 models through forward(): the fast loop, the textbook loop and Keras agree."""

    def make(k):
        tokens = k.Input((8,), dtype="int32")
        h0 = k.Input((6,))
        x = k.layers.Embedding(10, 4, mask_zero=True)(tokens)
        x = k.layers.Bidirectional(k.layers.LSTM(5, return_sequences=True))(x)
        x = k.layers.GRU(6, return_sequences=True, reset_after=False, go_backwards=True)(x)
        x = k.layers.SimpleRNN(3, return_sequences=True)(x)
        # Keras 3 calls a layer given initial_state without the mask: masks with initial states are
        # covered above, against the hand-written loop
        x = k.layers.GRU(6, go_backwards=True)(x, initial_state=h0)
        return k.Model([tokens, h0], x)

    model = build_with("k3-keras", make, seed=8)
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    rng = np.random.default_rng(4)
    tokens = rng.integers(1, 10, (70, 8)).astype(np.int32)
    for row, length in enumerate(rng.integers(0, 9, 70)):
        tokens[row, length:] = 0  # padded after, one length per sample
    h0 = rng.uniform(-1, 1, (70, 6)).astype(np.float32)
    outs = {}
    for fast in (True, False):
        monkeypatch.setattr(recurrent, "FAST_PATHS", fast)
        outs[fast] = forward(spec, [tokens, h0], dtype=dtype, chunk_rows=32, threads=2).outputs[0]
    tight = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(outs[True], outs[False], rtol=0, atol=tight)
    keras_out = np.asarray(model.predict([tokens, h0], verbose=0, batch_size=32))
    np.testing.assert_allclose(outs[True], keras_out, rtol=1e-5, atol=1e-5)


def test_fast_loop_carries_stateful_states_like_keras(tmp_path, monkeypatch):
    def make(k):
        inputs = k.Input((5, 3), batch_size=6)
        x = k.layers.GRU(4, stateful=True, return_sequences=True)(inputs)
        return k.Model(inputs, k.layers.LSTM(3, stateful=True)(x))

    model = build_with("k3-keras", make, seed=5)
    spec = open_model(str(save_model(model, "k3-keras", tmp_path)))
    rng = np.random.default_rng(1)
    batches = [rng.uniform(-1, 1, (6, 5, 3)).astype(np.float32) for _ in range(3)]
    got = {}
    for fast in (True, False):
        monkeypatch.setattr(recurrent, "FAST_PATHS", fast)
        states: dict = {}
        got[fast] = [forward(spec, [x], states=states).outputs[0] for x in batches]
    want = [model.predict(x, batch_size=6, verbose=0) for x in batches]  # Keras carries states between calls
    for fast_out, slow_out, keras_out in zip(got[True], got[False], want, strict=True):
        np.testing.assert_allclose(fast_out, slow_out, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast_out, keras_out, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[True][0], got[True][1], atol=1e-3)  # the states really carried
