"""Which keys of a saved layer config `upgrade` builds the Keras 3 layer with, and what becomes of the rest.

Keras 2 wrote keys into its configs that Keras 3 constructors refuse (`SpatialDropout1D(trainable=...)`,
`LSTM(time_major=...)`, Keras 1's `init`, ...). A key is passed on only when the Keras 3 class accepts it:
the named parameters of its `__init__` and of each base class `__init__` it forwards `**kwargs` to, down
to `keras.layers.Layer` (name, dtype, trainable, autocast, activity_regularizer), plus the few keys Keras
3.15 takes through `**kwargs` without naming them (KWARGS_KEYS). Layer also pops `input_dim` and
`input_shape` from `**kwargs`; those are deliberately not passed (the rebuilt model's Input sets shapes).

A key that is not passed on is dropped only when dropping it cannot change inference numbers:
- it is in HARMLESS_KEYS or ends with one of HARMLESS_SUFFIXES (training-only, initialization-only,
  dropout and shape keys), or
- it is an option the reference computes with (reference.layers.math_options) and holds that option's
  default value (`time_major=False`), which is what Keras 3 computes without it.
Any other key is refused (exit 3) naming the layer and the key. Dropped keys are reported; keys holding
None are dropped without a word, since None is what Keras 3 assumes for every one of them.
A few values Keras 2 wrote in a form the Keras 3 constructor refuses are converted (CONVERT_VALUES).
Initializers, regularizers and constraints are dropped even where Keras 3 accepts them: the weights come
from the file, and Keras 2's serialized objects are not Keras 3's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedError

TRAINING = "training only"
INITIALIZATION = "initialization only"
DROPOUT = "dropout: off at inference"
ORDER = "computation order only"
SHAPE = "shape: set by the model's Input"
DEFAULT = "default value"

# Keys whose value cannot change what a layer computes at inference, and why.
HARMLESS_KEYS: dict[str, str] = {
    "trainable": TRAINING,
    "dropout": DROPOUT,
    "recurrent_dropout": DROPOUT,
    "rate": DROPOUT,
    "noise_shape": DROPOUT,
    "seed": DROPOUT,
    "implementation": ORDER,  # LSTM/GRU 1 vs 2 (Keras 1 consume_less 'cpu', 'mem', 'gpu')
    "unroll": ORDER,
    "fused": ORDER,  # BatchNormalization's kernel choice
    "unit_forget_bias": INITIALIZATION,
    "init": INITIALIZATION,  # Keras 1
    "batch_input_shape": SHAPE,
    "batch_size": SHAPE,
    "input_shape": SHAPE,
    "input_dim": SHAPE,  # Keras 1 on any layer (Embedding's own input_dim is accepted, so never dropped)
    "input_length": SHAPE,
    "input_dtype": SHAPE,  # Keras 1
}
HARMLESS_SUFFIXES: dict[str, str] = {
    "_initializer": INITIALIZATION,
    "_init": INITIALIZATION,  # Keras 1: inner_init, forget_bias_init
    "_regularizer": TRAINING,  # activity_regularizer too; Keras 1: W_regularizer, U_regularizer, b_regularizer
    "_constraint": TRAINING,
}
ALWAYS_DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# Keys Keras 3.15 takes through **kwargs, which its signatures do not show.
KWARGS_KEYS: dict[str, tuple[str, ...]] = {"LeakyReLU": ("alpha",), "LayerNormalization": ("rms_scaling",)}


def _one_axis(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


# Values Keras 2 wrote in a form the Keras 3 constructor refuses: (class, key) -> the Keras 3 form.
CONVERT_VALUES: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("BatchNormalization", "axis"): _one_axis,  # tf.keras writes axis=-1 as [rank - 1]; Keras 3 takes an int
}
# Keys make_layer builds itself (wrapped layers) or that never come from a config.
NOT_FROM_CONFIG = frozenset({"self", "layer", "backward_layer", "cell", "weights"})
INPUT_DTYPES = ("int", "uint", "bool")


@dataclass(frozen=True)
class DroppedKey:
    layer: str  # layer name; "outer/inner" inside Bidirectional and TimeDistributed
    key: str
    value: Any
    reason: str


def accepted_keys(keras: Any, class_name: str, cls: type) -> set[str]:
    """The keyword arguments `cls(...)` accepts, following **kwargs up the base classes to Layer."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if klass is keras.layers.Layer or not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return (names | set(KWARGS_KEYS.get(class_name, ()))) - NOT_FROM_CONFIG


def harmless_reason(key: str) -> str | None:
    if key in HARMLESS_KEYS:
        return HARMLESS_KEYS[key]
    return next((reason for suffix, reason in HARMLESS_SUFFIXES.items() if key.endswith(suffix)), None)


def reference_defaults(class_name: str) -> dict[str, Any]:
    """The default of each option the reference computes `class_name` with (none for unknown classes)."""
    from .reference.layers import math_options
    from .spec import LayerSpec

    return math_options(LayerSpec("", class_name, {}))


def _dtype_name(value: Any) -> Any:
    if isinstance(value, dict):  # a dtype policy: {"class_name": "DTypePolicy", "config": {"name": ...}}
        return (value.get("config") or {}).get("name")
    return value


def layer_kwargs(keras: Any, class_name: str, config: dict[str, Any], where: str) -> tuple[dict, list[DroppedKey]]:
    """The keyword arguments to build Keras 3's `class_name` from `config` with, and the keys dropped.
    Raises UnsupportedError naming the layer and the key when a dropped key may change the numbers."""
    cls = getattr(keras.layers, class_name, None)
    if cls is None:
        raise UnsupportedError(f"layer {where!r}: Keras 3 has no layer class {class_name!r}; cannot rebuild it")
    accepted = accepted_keys(keras, class_name, cls)
    defaults = reference_defaults(class_name)
    kwargs: dict[str, Any] = {}
    dropped: list[DroppedKey] = []
    for key, value in config.items():
        if key in NOT_FROM_CONFIG:
            continue
        if key == "dtype":
            name = _dtype_name(value)
            if isinstance(name, str) and name.startswith(INPUT_DTYPES):
                # Keras 2.0 gave Embedding the int32 of its input here: not a weight dtype
                dropped.append(DroppedKey(where, key, value, SHAPE))
            elif name is not None:
                kwargs[key] = name
            continue
        if key in accepted and not key.endswith(ALWAYS_DROPPED_SUFFIXES):
            convert = CONVERT_VALUES.get((class_name, key))
            kwargs[key] = convert(value) if convert else value
            continue
        reason = harmless_reason(key)
        if reason is None and key in defaults and value == defaults[key]:
            reason = DEFAULT
        if reason is None:
            raise UnsupportedError(
                f"layer {where!r} ({class_name}): Keras 3's {class_name} takes no {key!r} (here {value!r}), "
                f"and dropping it may change the numbers; cannot rebuild it"
            )
        if value is not None:
            dropped.append(DroppedKey(where, key, value, reason))
    return kwargs, dropped


def describe_dropped(dropped: list[DroppedKey]) -> list[str]:
    """One line per layer: `lstm: kernel_initializer, recurrent_initializer (initialization only); ...`."""
    by_layer: dict[str, dict[str, list[str]]] = {}
    for item in dropped:
        shown = f"{item.key}={item.value!r}" if item.reason == DEFAULT else item.key
        by_layer.setdefault(item.layer, {}).setdefault(item.reason, []).append(shown)
    return [
        f"{layer}: " + "; ".join(f"{', '.join(keys)} ({reason})" for reason, keys in reasons.items())
        for layer, reasons in by_layer.items()
    ]
