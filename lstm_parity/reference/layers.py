"""Build each supported layer from its spec into a ready-to-run NumPy function.

Building checks every option and weight shape first (so an unsupported model fails with exit 3
before any computing), casts the weights to the requested dtype and captures the activations
under the file's semantics. Running a built layer is pure math.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..spec import LayerSpec
from .activations import get_activation
from .recurrent import LSTMCell, run_sequence

Mask = np.ndarray | None


@dataclass
class LayerResult:
    outputs: list[np.ndarray]
    masks: list[Mask]
    trace: dict[str, np.ndarray] = field(default_factory=dict)


LayerFn = Callable[[list[np.ndarray], list[Mask]], LayerResult]


@dataclass(frozen=True)
class Context:
    semantics: str  # "keras2" | "keras3"
    dtype: np.dtype
    source: str
    record: bool = False


# Options that change what a layer computes at inference; everything else in a config
# (initializers, regularizers, constraints, dropout rates, implementation, unroll, ...) does not.
MATH_OPTIONS: dict[str, tuple[str, ...]] = {
    "LSTM": ("units", "activation", "recurrent_activation", "use_bias", "return_sequences",
             "return_state", "go_backwards", "stateful", "time_major", "zero_output_for_mask"),
    "Dense": ("units", "activation", "use_bias"),
    "Activation": ("activation",),
    "Dropout": (),
    "InputLayer": ("batch_shape", "batch_input_shape"),
}
SUPPORTED = tuple(sorted(MATH_OPTIONS))


def math_options(layer: LayerSpec) -> dict[str, Any]:
    """The options of `layer` that change its inference math, with Keras' defaults filled in."""
    defaults = {"use_bias": True, "return_sequences": False, "return_state": False, "go_backwards": False,
                "stateful": False, "time_major": False, "zero_output_for_mask": False}
    names = MATH_OPTIONS.get(layer.class_name, ())
    return {name: layer.config.get(name, defaults.get(name)) for name in names
            if name in layer.config or name in defaults}


def _where(ctx: Context, layer: LayerSpec) -> str:
    return f"{ctx.source}: layer {layer.name!r} ({layer.class_name})"


def _check_dtype_policy(layer: LayerSpec, ctx: Context) -> None:
    policy = layer.config.get("dtype")
    if isinstance(policy, dict):
        policy = (policy.get("config") or {}).get("name")
    if policy not in (None, "float32", "float64"):
        raise UnsupportedError(f"{_where(ctx, layer)}: dtype policy {policy!r} is not supported "
                               f"(supported: float32, float64)")


def _weights(layer: LayerSpec, ctx: Context, shapes: list[tuple[int | None, ...]]) -> list[np.ndarray]:
    """Check the stored arrays against the expected shapes (None = any) and cast them to ctx.dtype."""
    if not layer.weights and shapes:
        raise BadInputError(f"{_where(ctx, layer)}: the file holds no weights for this layer "
                            f"(the model was never built, or the weights were not saved)")
    if len(layer.weights) != len(shapes):
        raise BadInputError(f"{_where(ctx, layer)}: the file holds {len(layer.weights)} weight arrays, "
                            f"expected {len(shapes)}")
    cast = []
    for array, shape, name in zip(layer.weights, shapes, layer.weight_names or [""] * len(shapes)):
        ok = array.ndim == len(shape) and all(e is None or e == a for e, a in zip(shape, array.shape))
        if not ok:
            want = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ")"
            raise BadInputError(f"{_where(ctx, layer)}: weight {name or '?'} has shape {array.shape}, "
                                f"expected {want}")
        cast.append(np.asarray(array, dtype=ctx.dtype))
    return cast


def _check_input_width(layer: LayerSpec, ctx: Context, x: np.ndarray, kernel: np.ndarray) -> None:
    if x.shape[-1] != kernel.shape[0]:
        raise BadInputError(f"{_where(ctx, layer)}: input has {x.shape[-1]} features on its last axis, "
                            f"the kernel expects {kernel.shape[0]}")


def build_dense(layer: LayerSpec, ctx: Context) -> LayerFn:
    units = int(layer.config["units"])
    use_bias = layer.config.get("use_bias", True)
    activation = get_activation(layer.config.get("activation"), ctx.semantics, _where(ctx, layer))
    weights = _weights(layer, ctx, [(None, units)] + ([(units,)] if use_bias else []))
    kernel = weights[0]  # (features, units)
    bias = weights[1] if use_bias else None  # (units,)

    def run(inputs: list[np.ndarray], masks: list[Mask]) -> LayerResult:
        x = inputs[0]  # (..., features)
        _check_input_width(layer, ctx, x, kernel)
        y = x @ kernel  # (..., units)
        if bias is not None:
            y += bias
        return LayerResult([activation(y)], masks[:1])
    return run


def build_activation(layer: LayerSpec, ctx: Context) -> LayerFn:
    activation = get_activation(layer.config.get("activation"), ctx.semantics, _where(ctx, layer))
    return lambda inputs, masks: LayerResult([activation(inputs[0])], masks[:1])


def build_identity(layer: LayerSpec, ctx: Context) -> LayerFn:
    return lambda inputs, masks: LayerResult([inputs[0]], masks[:1])


def _initial_states(layer: LayerSpec, ctx: Context, given: list[np.ndarray], batch: int,
                    sizes: tuple[int, ...]) -> tuple[np.ndarray, ...] | None:
    """States passed in a functional graph (initial_state=...), checked against the cell's sizes."""
    if not given:
        return None
    if len(given) != len(sizes):
        raise BadInputError(f"{_where(ctx, layer)}: called with {len(given)} initial states, expected {len(sizes)}")
    for state, size in zip(given, sizes):
        if state.shape != (batch, size):
            raise BadInputError(f"{_where(ctx, layer)}: initial state has shape {state.shape}, expected {(batch, size)}")
    return tuple(np.asarray(s, dtype=ctx.dtype) for s in given)


def build_lstm(layer: LayerSpec, ctx: Context) -> LayerFn:
    options = math_options(layer)
    where = _where(ctx, layer)
    for name in ("stateful", "time_major"):
        if options.get(name):
            raise UnsupportedError(f"{where}: option {name}=True is not supported yet "
                                   f"(supported LSTM options: units, activation, recurrent_activation, "
                                   f"use_bias, return_sequences, return_state, go_backwards)")
    units = int(options["units"])
    cell_weights = _weights(layer, ctx, [(None, 4 * units), (units, 4 * units)]
                            + ([(4 * units,)] if options["use_bias"] else []))
    cell = LSTMCell(
        kernel=cell_weights[0], recurrent_kernel=cell_weights[1],
        bias=cell_weights[2] if options["use_bias"] else None,
        activation=get_activation(options.get("activation", "tanh"), ctx.semantics, where),
        recurrent_activation=get_activation(options.get("recurrent_activation", "sigmoid"), ctx.semantics, where),
    )

    def run(inputs: list[np.ndarray], masks: list[Mask]) -> LayerResult:
        x = inputs[0]  # (batch, time, features)
        if x.ndim != 3:
            raise BadInputError(f"{where}: expects a 3-D input (batch, time, features), got shape {x.shape}")
        _check_input_width(layer, ctx, x, cell.kernel)
        initial_states = _initial_states(layer, ctx, inputs[1:], x.shape[0], (units, units))
        result = run_sequence(cell, x, return_sequences=bool(options["return_sequences"]),
                              go_backwards=bool(options["go_backwards"]), mask=masks[0] if masks else None,
                              initial_states=initial_states, record=ctx.record)
        out_mask = masks[0] if options["return_sequences"] and masks else None
        outputs = [result.output]
        if options["return_state"]:
            outputs += list(result.states)
        return LayerResult(outputs, [out_mask] + [None] * (len(outputs) - 1), result.trace)
    return run


BUILDERS: dict[str, Callable[[LayerSpec, Context], LayerFn]] = {
    "Dense": build_dense,
    "Activation": build_activation,
    "Dropout": build_identity,
    "LSTM": build_lstm,
}


def build_layer(layer: LayerSpec, ctx: Context) -> LayerFn:
    """Validate `layer` and return its NumPy function; raises UnsupportedError / BadInputError."""
    builder = BUILDERS.get(layer.class_name)
    if builder is None:
        raise UnsupportedError(f"{_where(ctx, layer)}: layer class {layer.class_name!r} is not supported "
                               f"(supported: {', '.join(sorted(BUILDERS))}, InputLayer)")
    _check_dtype_policy(layer, ctx)
    try:
        return builder(layer, ctx)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{_where(ctx, layer)}: malformed layer config ({type(exc).__name__}: {exc})") from None
