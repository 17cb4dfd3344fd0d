"""Keras activations in NumPy, looked up by name AND by the Keras generation whose math applies.

The same name can mean two functions: `hard_sigmoid` is clip(0.2x + 0.5, 0, 1) in Keras 1/2
(and tf.keras 2.x) but relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1) in Keras 3. Each table below is
verified against the matching Keras in tests/test_activations.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedError

Activation = Callable[[np.ndarray], np.ndarray]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf, otypes=[np.float64])


def linear(x: np.ndarray) -> np.ndarray:
    return x


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(x / 2)) is the logistic function without overflow for large |x|.
    return 0.5 * (1 + np.tanh(0.5 * x))


def softmax(x: np.ndarray, axis: int | tuple[int, ...] | None = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) over `axis` (an int, several axes jointly, or None: all axes), computed
    from x - max(x) so that large scores do not overflow."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x: np.ndarray) -> np.ndarray:
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x).astype(x.dtype, copy=False)


def softsign(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.abs(x))


def exponential(x: np.ndarray) -> np.ndarray:
    return np.exp(x)


def swish(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def gelu(x: np.ndarray, approximate: bool = False) -> np.ndarray:
    """x * Phi(x) with the normal CDF Phi from erf, or with its tanh approximation (`approximate`)."""
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return (0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype, copy=False)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    return np.clip(0.2 * x + 0.5, 0, 1)


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 3, 0, 6) / 6


def hard_silu(x: np.ndarray) -> np.ndarray:
    return x * hard_sigmoid_keras3(x)


def leaky_relu_keras3(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, 0.2 * x)


def log_softmax(x: np.ndarray, axis: int | tuple[int, ...] | None = -1) -> np.ndarray:
    """log(softmax(x)) over `axis` (as softmax), without forming the softmax."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(softplus(x))


_COMMON: dict[str, Activation] = {
    "linear": linear,
    "relu": relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softmax": softmax,
    "elu": elu,
    "selu": selu,
    "softplus": softplus,
    "softsign": softsign,
    "exponential": exponential,
    "swish": swish,
    "gelu": gelu,
}

ACTIVATIONS: dict[str, dict[str, Activation]] = {
    "keras2": {**_COMMON, "hard_sigmoid": hard_sigmoid_keras2, "relu6": relu6, "silu": swish, "mish": mish},
    "keras3": {
        **_COMMON,
        "hard_sigmoid": hard_sigmoid_keras3,
        "relu6": relu6,
        "silu": swish,
        "hard_silu": hard_silu,
        "hard_swish": hard_silu,
        "leaky_relu": leaky_relu_keras3,
        "log_softmax": log_softmax,
        "mish": mish,
    },
}


def activation_name(value: Any) -> str:
    """The activation's Keras name from a config value: "tanh", None, or a Keras 3 serialized dict."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        return value["config"]  # {"module": "keras.activations", "class_name": "function", "config": "tanh"}
    if isinstance(value, dict) and isinstance(value.get("class_name"), str):
        return value["class_name"]
    return repr(value)


def get_activation(value: Any, semantics: str, where: str) -> Activation:
    """Look up the NumPy function for a config's activation under `semantics` ("keras2"/"keras3").

    Raises UnsupportedError naming `where` (file and layer) and the supported names.
    """
    name = activation_name(value)
    table = ACTIVATIONS[semantics]
    if name not in table:
        raise UnsupportedError(
            f"{where}: activation {name!r} is not implemented under {semantics} semantics "
            f"(supported: {', '.join(sorted(table))})"
        )
    return table[name]
