"""Regenerate the shipped sample models (`make sample-models`).

The tutorial's model: 4 look-back steps of 3 features -> LSTM(5) -> Dense(1), trained briefly on
a small synthetic series, saved as:
  tutorial.keras           Keras 3 native zip
  tutorial_legacy.h5       Keras 3 legacy HDF5
  tutorial_keras2.h5       the same architecture saved by Keras 2 (tf_keras) with
                           recurrent_activation='hard_sigmoid' (Keras 2's clip(0.2x+0.5))
and for each an input `<stem>.input.npy` of shape (8, 4, 3): eight windows of the series.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before Keras is imported (inside the functions)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = Path(__file__).resolve().parent
LOOK_BACK, FEATURES, HIDDEN = 4, 3, 5


def series(n: int = 400) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return np.stack([np.sin(t / 5), np.cos(t / 7), 0.5 * np.sin(t / 11)], axis=1).astype(np.float32)  # (n, 3)


def windows(data: np.ndarray, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([data[i : i + LOOK_BACK] for i in range(start, start + count)])  # (count, 4, 3)
    y = data[start + LOOK_BACK : start + LOOK_BACK + count, :1]  # (count, 1): next value of feature 0
    return x, y


def train(module, recurrent_activation: str, seed: int):
    module.utils.set_random_seed(seed)
    layers = module.layers
    model = module.Sequential(
        [
            layers.InputLayer(input_shape=(LOOK_BACK, FEATURES))
            if module.__name__ == "tf_keras"
            else layers.Input(shape=(LOOK_BACK, FEATURES)),
            layers.LSTM(HIDDEN, recurrent_activation=recurrent_activation),
            layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    x, y = windows(series(), 0, 300)
    model.fit(x, y, epochs=15, batch_size=16, verbose=0, shuffle=False)
    return model


def main() -> None:
    import keras
    import tf_keras

    data = series()
    model3 = train(keras, "sigmoid", seed=1)
    model3.save(HERE / "tutorial.keras")
    model3.save(HERE / "tutorial_legacy.h5")
    model2 = train(tf_keras, "hard_sigmoid", seed=2)
    model2.save(HERE / "tutorial_keras2.h5")
    for stem, start in (("tutorial", 300), ("tutorial_legacy", 320), ("tutorial_keras2", 340)):
        x, _ = windows(data, start, 8)
        np.save(HERE / f"{stem}.input.npy", x)
    for path in sorted(HERE.iterdir()):
        if path.suffix in (".keras", ".h5", ".npy"):
            print(f"{path.name:32s} {path.stat().st_size:7d} bytes")


if __name__ == "__main__":
    main()
