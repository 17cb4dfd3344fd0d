"""The fast paths compute the same numbers as the plain ones: chunks and threads, fused gates.

The reference splits a batch into row chunks run on threads (reference/parallel.py) and stores
gate weights reordered and halved for one tanh pass (reference/recurrent.py). Here every such
path is compared with a one-chunk, one-thread pass and with Keras itself, on real models.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import build_model, build_with, keras_predict, save_model
from lstm_parity.formats import open_model
from lstm_parity.reference.forward import forward
from lstm_parity.reference.parallel import map_chunks, plan_rows, rows_for_width, split_rows

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
    assert rows_for_width(512) == 512  # LSTM of 128 units: 4h = 512
    assert rows_for_width(20) == 4096 and rows_for_width(10**6) == 32  # clamped both ways
    assert plan_rows(1000, 60, 256, threads=2) == 500  # worth splitting: each thread gets half
    assert plan_rows(10_000, 4, 20, threads=2) == 10_000  # tiny work: one pass
    assert plan_rows(100_000, 50, 512, threads=2) == 512  # cache-sized chunks shared by the threads


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
