"""The benchmark's models: built with Keras 3 (seeded), saved, and given inputs of their real size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MASKED, UNMASKED = "masked bilstm 64 t=60", "bilstm 64 t=60 no mask"  # the pair compared by a target


@dataclass
class Case:
    name: str
    path: Path
    x: np.ndarray  # (batch, time, features) float32
    keras_batch: int  # batch_size given to model.predict (large: Keras at its fastest)
    reps: int


def _save(model, folder: Path, name: str) -> Path:
    path = folder / f"{name}.keras"
    model.save(path)
    return path


def build_cases(folder: Path, scale: float = 1.0) -> list[Case]:
    """The issues' set: tutorial LSTM at batch 1 and 10,000; 2-layer LSTM 128->64 over 50 steps of 32
    features for 10,000 sequences; GRU of 256 units over 100 steps, with reset_after=True (Keras 3's
    default) and False (Keras 2.2's); a masked Bidirectional LSTM over sequences padded after varied
    lengths, and the same model and input without the Masking layer (every step computed).
    `scale` shrinks the batches (for a quick look); the defaults are the issues' sizes."""
    import keras

    rng = np.random.default_rng(0)

    def n(count: int) -> int:
        return max(1, int(count * scale))

    tutorial = ROOT / "sample_models" / "tutorial.keras"
    cases = [
        Case("tutorial b=1", tutorial, rng.uniform(-1, 1, (1, 4, 3)).astype(np.float32), 1, 20),
        Case("tutorial b=10000", tutorial, rng.uniform(-1, 1, (n(10_000), 4, 3)).astype(np.float32), 1024, 7),
    ]

    keras.utils.set_random_seed(1)
    two = keras.Sequential(
        [
            keras.Input((50, 32)),
            keras.layers.LSTM(128, return_sequences=True),
            keras.layers.LSTM(64),
            keras.layers.Dense(1),
        ]
    )
    cases.append(
        Case(
            "lstm 128->64 t=50",
            _save(two, folder, "lstm2"),
            rng.standard_normal((n(10_000), 50, 32)).astype(np.float32),
            1024,
            5,
        )
    )

    keras.utils.set_random_seed(2)
    gru = keras.Sequential([keras.Input((100, 32)), keras.layers.GRU(256), keras.layers.Dense(1)])
    x = rng.standard_normal((n(2_000), 100, 32)).astype(np.float32)
    cases.append(Case("gru 256 t=100", _save(gru, folder, "gru256"), x, 1024, 3))
    keras.utils.set_random_seed(2)
    gru_before = keras.Sequential(
        [keras.Input((100, 32)), keras.layers.GRU(256, reset_after=False), keras.layers.Dense(1)]
    )
    cases.append(Case("gru 256 before t=100", _save(gru_before, folder, "gru256_before"), x, 1024, 3))

    keras.utils.set_random_seed(3)
    bi = keras.Sequential(
        [
            keras.Input((60, 16)),
            keras.layers.Masking(0.0),
            keras.layers.Bidirectional(keras.layers.LSTM(64)),
            keras.layers.Dense(1),
        ]
    )
    x = rng.standard_normal((n(5_000), 60, 16)).astype(np.float32)
    for row, length in enumerate(rng.integers(10, 61, len(x))):
        x[row, length:] = 0.0  # padded at the end, a different length per sequence
    cases.append(Case(MASKED, _save(bi, folder, "bilstm"), x, 1024, 3))
    plain = keras.Sequential(
        [keras.Input((60, 16)), keras.layers.Bidirectional(keras.layers.LSTM(64)), keras.layers.Dense(1)]
    )
    plain.set_weights(bi.get_weights())  # the same weights: only the mask differs
    cases.append(Case(UNMASKED, _save(plain, folder, "bilstm_unmasked"), x, 1024, 3))
    return cases


def recurrent_flops(spec, x: np.ndarray) -> float:
    """Multiply-adds x2 of the recurrent layers' matrix products (kernel and recurrent kernel,
    every sample, every step); Dense heads are negligible here and not counted."""
    batch, time = x.shape[0], x.shape[1]
    matrices = sum(
        w.size
        for layer in spec.layers
        if layer.class_name in ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
        for w in layer.weights
        if w.ndim == 2
    )
    return 2.0 * batch * time * matrices
