"""The TFLite Micro recipe: the same model rebuilt with a fixed batch of 1, fixed timesteps and every
recurrent layer unrolled (unroll=True), its weights copied, converted with builtin ops only.

Why each part (measured with tflite-micro 0.dev2026-10, see runners/tflm.py):
- unrolled: the fused UNIDIRECTIONAL_SEQUENCE_LSTM keeps h and c in variable tensors, so each invoke()
  continues the last one's sequence (off by up to 4.7e-2) unless the app calls reset(); unrolled, the
  file has no variable tensors and needs no reset.
- batch 1 and fixed timesteps: TFLite Micro never resizes; a dynamic batch unrolls into ops of a runtime
  shape (FILL ...) that it cannot prepare, and an open time axis cannot be unrolled at all.
Result: exact (7e-8 off the float64 reference) on repeated invocations.

`tflm_config` is the pure config rewrite (no Keras); `tflm_model` rebuilds a Keras model object (Keras 3
or tf_keras: the model's own class, from its config) and `write_tflm` converts and writes it with
`export`'s TFLite converter. TensorFlow is imported only by those two, when called.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

from ..atomicio import atomic_write
from ..errors import UnsupportedError

TFLM_BATCH = 1
RECURRENT = ("LSTM", "GRU", "SimpleRNN")  # the layers that take unroll=True (inside wrappers too)
SHAPE_KEYS = ("batch_shape", "batch_input_shape")  # an InputLayer's shape: Keras 3, Keras 2


def tflm_config(config: Any, timesteps: int | None = None) -> Any:
    """A copy of `config` (a model's get_config(), walked recursively) with every InputLayer's batch set
    to 1, its open time axis (axis 1 of a rank >= 3 input) set to `timesteps` (a fixed one is kept unless
    `timesteps` is given), and every LSTM/GRU/SimpleRNN unrolled, wrapped ones (Bidirectional) included."""
    if isinstance(config, list):
        return [tflm_config(item, timesteps) for item in config]
    if not isinstance(config, dict):
        return config
    fixed = {key: tflm_config(value, timesteps) for key, value in config.items()}
    inner = fixed.get("config")
    if isinstance(inner, dict):
        if fixed.get("class_name") == "InputLayer":
            for key in SHAPE_KEYS:
                if inner.get(key) is not None:
                    shape = list(inner[key])
                    shape[0] = TFLM_BATCH
                    if timesteps is not None and len(shape) >= 3:
                        shape[1] = timesteps
                    inner[key] = shape
        if fixed.get("class_name") in RECURRENT:
            inner["unroll"] = True
    return fixed


def open_time_inputs(config: Any) -> list[str]:
    """The InputLayers of `config` whose time axis is open (None): unrolling needs it fixed."""
    if isinstance(config, list):
        return [name for item in config for name in open_time_inputs(item)]
    if not isinstance(config, dict):
        return []
    found = [name for value in config.values() for name in open_time_inputs(value)]
    inner = config.get("config")
    if config.get("class_name") == "InputLayer" and isinstance(inner, dict):
        shape = next((inner[key] for key in SHAPE_KEYS if inner.get(key) is not None), None)
        if shape is not None and len(shape) >= 3 and shape[1] is None:
            found.append(str(inner.get("name", "?")))
    return found


def tflm_model(model: Any, timesteps: int | None = None, source: str = "the model") -> Any:
    """`model` (a Keras 3 or tf_keras model object) rebuilt by the recipe, its weights copied.

    Raises UnsupportedError (exit 3) when an input's time axis is open and `timesteps` is not given."""
    config = tflm_config(model.get_config(), timesteps)
    open_inputs = open_time_inputs(config)
    if open_inputs:
        raise UnsupportedError(
            f"{source}: input {', '.join(open_inputs)} has an open time axis; TFLite Micro runs an unrolled "
            f"model of fixed timesteps: give the number of timesteps"
        )
    rebuilt = type(model).from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def write_tflm(model: Any, path: str | os.PathLike, timesteps: int | None = None) -> str:
    """Rebuild `model` by the recipe and write it to `path` as a builtin-ops .tflite (float32, through
    export's converter; atomically). Returns the path. Raises UnsupportedError as tflm_model does, and
    ConversionError (exit 4) when the converter fails."""
    from ..export.tflite_convert import convert_tflite

    path = os.fspath(path)
    rebuilt = tflm_model(model, timesteps, path)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras 3 prints a "Saved artifact" banner
        flatbuffer, _ = convert_tflite(rebuilt, "none", None, TFLM_BATCH, path)
    with atomic_write(path) as handle:
        handle.write(flatbuffer)
    return path
