"""The only module that imports TensorFlow / Keras / tf_keras, and only when a function is called.

Files saved by Keras 1/2 (and tf.keras 2.x) run through tf_keras with Keras 2 semantics; files
saved by Keras 3 run through Keras 3. Models are loaded with compile=False (Keras 3 cannot
reload some compiled legacy files) and predicted in Keras' default batches of 32.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import KerasSideError, first_line
from .quiet_stderr import quiet_stderr

PACKAGE_FOR_SEMANTICS = {"keras2": "tf_keras", "keras3": "keras"}
EXTENSION_FOR_FORMAT = {"legacy-h5": ".h5", "keras-zip": ".keras"}


def import_keras(package: str) -> Any:
    """Import `keras` or `tf_keras` quietly; raises KerasSideError naming the extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with quiet_stderr():
            if package == "tf_keras":
                import tf_keras as module
            else:
                import keras as module
    except ImportError as exc:
        if package == "tf_keras":
            hint = "files saved by Keras 1/2 need the keras2 extra: pip install 'lstm-parity[keras2]'"
        elif os.environ.get("KERAS_BACKEND") == "jax":
            hint = "Keras 3 on JAX needs the jax extra: pip install 'lstm-parity[jax]'"
        else:
            hint = "Keras 3 files need the keras extra: pip install 'lstm-parity[keras]'"
            if exc.name == "tensorflow":  # Keras 3 is there, its default backend is not
                hint += " (or, with the jax extra, set KERAS_BACKEND=jax)"
        raise KerasSideError(f"cannot import {package} ({exc}); {hint}") from None
    with contextlib.suppress(Exception):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return module


@contextlib.contextmanager
def _with_extension(path: str, file_format: str) -> Iterator[str]:
    """Keras picks a loader by file extension: give it a copy named for what the bytes really are."""
    wanted = EXTENSION_FOR_FORMAT.get(file_format, "")
    if path.lower().endswith(wanted) or not wanted:
        yield path
        return
    folder = tempfile.mkdtemp(prefix="lstm-parity-")
    try:
        link = os.path.join(folder, "model" + wanted)
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError:
            shutil.copyfile(path, link)
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def code_carrying_layers(layers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Names of Lambda layers (at any wrapper depth): loading them makes Keras run their bytecode."""
    found = []
    stack = list(layers)
    while stack:
        class_name, config = stack.pop()
        if class_name == "Lambda":
            found.append(str(config.get("name", "?")))
        for key in ("layer", "backward_layer"):
            inner = config.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
                stack.append((str(inner.get("class_name")), inner["config"]))
    return found


@dataclass
class KerasModel:
    """A model loaded by the Keras of the file's generation, ready to predict chunk after chunk."""

    package: str
    version: str
    module: Any
    model: Any
    where: str

    @property
    def backend(self) -> str:
        """The backend Keras computes on: tensorflow for tf_keras; Keras 3's as chosen at import
        (KERAS_BACKEND), so the report names what really ran."""
        if self.package != "keras":
            return "tensorflow"
        try:
            return str(self.module.backend.backend())
        except Exception:
            return "unknown"

    def layer_weights(self) -> dict[str, list[np.ndarray]]:
        try:
            return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in self.model.layers}
        except Exception as exc:
            raise KerasSideError(f"{self.where} cannot read its weights: {first_line(exc)}") from None

    def output_shapes(self, names: list[str]) -> dict[str, list[tuple[int | None, ...]]]:
        """The output shapes Keras computes for the layers `names` (batch first, None where free); a layer
        Keras cannot say one shape for (called several times) is left out."""
        shapes = {}
        for name in names:
            try:
                out = self.model.get_layer(name).output
                outs = list(out) if isinstance(out, (list, tuple)) else [out]
                shapes[name] = [tuple(None if d is None else int(d) for d in tuple(o.shape)) for o in outs]
            except Exception:  # no such layer, or no single output
                continue
        return shapes

    def predict(self, inputs: list[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """`model.predict` on float32 `inputs`; raises KerasSideError."""
        try:
            with quiet_stderr():
                return _as_list(self.model.predict(_feed(inputs), batch_size=batch_size, verbose=0))
        except Exception as exc:
            raise KerasSideError(f"{self.where} failed to predict: {first_line(exc)}") from None

    def layer_outputs(self, inputs: list[np.ndarray], batch_size: int = 32) -> dict[str, list[np.ndarray]]:
        """Every layer's outputs on `inputs`, from zero states: stateful layers are reset first (the
        model's own predict left its final states behind) and then carry them batch by batch, as a
        freshly loaded model's predict does."""
        if not any(getattr(layer, "stateful", False) for layer in self.model.layers):
            return _layer_outputs(self.module, self.model, _feed(inputs), batch_size, self.where)
        reset_states(self.model)
        return _stateful_layer_outputs(self.model, inputs, batch_size, self.where)


def reset_states(model: Any) -> None:
    """Zero the states of every stateful layer (and stateful wrapped layer) of `model`, in either
    Keras generation (Keras 3 models have no reset_states of their own)."""
    for layer in model.layers:
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_states"):
            layer.reset_states()


class KerasRunner:
    """A loaded Keras model as a check flow runner (runners/base.py): `predict` is `model.predict`
    on each chunk in turn, so a stateful model carries its states from chunk to chunk as it does
    from batch to batch."""

    def __init__(self, loaded: KerasModel, batch_size: int, stateful: bool, output_count: int):
        self.loaded, self.batch_size, self.output_count = loaded, batch_size, output_count
        from .runners.base import RunnerInfo

        self.info = RunnerInfo(kind="keras", label="keras", version=loaded.version, stateful_model=stateful)

    def predict(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        outputs = self.loaded.predict(inputs, self.batch_size)
        if len(outputs) != self.output_count:
            raise KerasSideError(
                f"{self.loaded.where}: Keras returned {len(outputs)} outputs, the config declares {self.output_count}"
            )
        return outputs

    def close(self) -> None:
        pass


def _feed(inputs: list[np.ndarray]) -> Any:
    return inputs[0] if len(inputs) == 1 else list(inputs)


def load_keras(
    path: str,
    file_format: str,
    semantics: str,
    layers: list[tuple[str, dict[str, Any]]] | None = None,
    trust_model_code: bool = False,
    custom_objects: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
) -> KerasModel:
    """Load `path` with the Keras of `semantics` (compile=False; Keras 3 in safe_mode unless trusted).

    `layers` ((class name, config) pairs from our reader) lets the runner refuse, before Keras
    sees the file, models whose Lambda layers carry Python bytecode, unless trust_model_code.
    `custom_objects` are the user's own classes for custom layers (plugins' keras_objects: code the
    user named, not code from the file, so safe_mode stays on), or a function returning them, called
    once Keras is imported (quietly).
    Raises KerasSideError (exit 4) when Keras is missing or cannot load the file.
    """
    lambdas = code_carrying_layers(layers or [])
    if lambdas and not trust_model_code:
        raise KerasSideError(
            f"{path}: refusing to let Keras load Lambda layer(s) {lambdas}: loading runs the "
            f"Python code stored in the file; pass --trust-model-code (check-all: trust_model_code = true) only "
            f"if you trust it, or compare without Keras (--no-keras)"
        )
    package = PACKAGE_FOR_SEMANTICS[semantics]
    module = import_keras(package)
    where = f"{path}: {package} {module.__version__}"
    with quiet_stderr():
        objects = custom_objects() if callable(custom_objects) else dict(custom_objects or {})
    with _with_extension(path, file_format) as loadable:
        try:
            with quiet_stderr():
                if package == "keras":
                    model = module.models.load_model(
                        loadable, compile=False, safe_mode=not trust_model_code, custom_objects=objects
                    )
                else:
                    model = module.models.load_model(loadable, compile=False, custom_objects=objects)
        except Exception as exc:
            raise KerasSideError(f"{where} cannot load the file: {first_line(exc)}") from None
    return KerasModel(package, module.__version__, module, model, where)


def _as_list(raw: Any) -> list[np.ndarray]:
    if isinstance(raw, dict):
        return [np.asarray(v) for v in raw.values()]
    return [np.asarray(o) for o in raw] if isinstance(raw, (list, tuple)) else [np.asarray(raw)]


def _layer_outputs(module: Any, model: Any, feed: Any, batch_size: int, where: str) -> dict[str, list[np.ndarray]]:
    """Every layer's output(s) as Keras computes them, from a model that exposes them all."""
    tensors, owners = [], []
    for layer in model.layers:
        try:
            out = layer.output
        except Exception:  # a layer called more than once has no single output
            continue
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        tensors += out
        owners.append((layer.name, len(out)))
    try:
        probe = module.Model(model.inputs, tensors)
        with quiet_stderr():
            values = _as_list(probe.predict(feed, batch_size=batch_size, verbose=0))
    except Exception as exc:
        raise KerasSideError(f"{where} could not expose per-layer outputs: {first_line(exc)}") from None
    result, start = {}, 0
    for name, count in owners:
        result[name] = values[start : start + count]
        start += count
    return result


def _stateful_layer_outputs(
    model: Any, inputs: list[np.ndarray], batch_size: int, where: str
) -> dict[str, list[np.ndarray]]:
    """A stateful Sequential's layer outputs, each layer called in turn on one batch after another,
    so that the layers carry their states as the model's predict does. (A functional model built on
    the same layers does not carry them in Keras 3.15: its second batch starts from the first's
    initial states.)"""
    if type(model).__name__ != "Sequential" or len(inputs) != 1:
        raise KerasSideError(
            f"{where}: --layerwise on a stateful model needs a Sequential model with one input "
            f"(per-layer outputs of other stateful graphs cannot be taken with their states carried)"
        )
    (x,) = inputs
    batches: list[list[np.ndarray]] = []
    try:
        with quiet_stderr():
            for start in range(0, x.shape[0], batch_size):
                h, row = x[start : start + batch_size], []  # (batch, time, features)
                for layer in model.layers:
                    h = layer(h, training=False)
                    row.append(np.asarray(h))
                batches.append(row)
    except Exception as exc:
        raise KerasSideError(f"{where} could not expose per-layer outputs: {first_line(exc)}") from None
    return {
        layer.name: [np.concatenate([row[index] for row in batches], axis=0)]
        for index, layer in enumerate(model.layers)
    }
