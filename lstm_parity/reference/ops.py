"""Op layers: TensorFlow functions (tf.keras `TFOpLambda`, `SlicingOpLambda`) and Keras 3 keras.ops
calls recorded in a functional graph, computed from the table in ops_table.py.

Each call is replayed as saved: the positional arguments (tensors in place, constants as stored),
then the keyword arguments; a Keras 3 operation also gets its config (the constructor's arguments).
Saved constants are decoded first: slices, Ellipsis and arrays in either generation's encoding.
Op outputs carry no Keras mask (neither generation propagates masks through ops). Checked when the
model is built: an op outside the table, or an argument it does not take, exits 3; a malformed
argument (a constant of an unknown dtype, a missing argument) exits 2. Checked on each call: an op
that mixes samples across the batch axis exits 3 (op_batch.py), a result too large to hold exits 2.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..spec import LayerSpec
from .layers import Call, CallFn, Context, LayerResult, Mask, register, where
from .ops_table import DTYPES, KERAS_OPS, TF_OPS, Op, UndefinedResult, to_bfloat16

SUPPORTED = "README: Op layers lists the supported ops"


def decode(value: Any, dtype: np.dtype) -> Any:
    """A saved argument as Python/NumPy: slices, Ellipsis, arrays; float lists become `dtype` arrays.
    Raises ValueError for an array of a dtype outside ops_table.DTYPES."""
    if isinstance(value, dict):
        kind, config = value.get("class_name"), value.get("config") or {}
        if kind == "__slice__":
            return slice(config.get("start"), config.get("stop"), config.get("step"))
        if kind == "__ellipsis__":
            return Ellipsis
        if kind in ("__numpy__", "__tensor__"):
            return _array(config.get("value"), config.get("dtype"), dtype)
        if set(value) == {"start", "stop", "step"}:  # tf.keras SlicingOpLambda's slice
            return slice(value["start"], value["stop"], value["step"])
        return {key: decode(item, dtype) for key, item in value.items()}
    if isinstance(value, list):
        items = [decode(item, dtype) for item in value]
        if _all_numbers(items) and any(isinstance(item, float) for item in _flat(items)):
            return np.asarray(items, dtype=dtype)  # a float constant (tf.keras stores arrays as lists)
        return items
    return value


def _array(value: Any, saved: Any, dtype: np.dtype) -> np.ndarray:
    if saved is not None and (not isinstance(saved, str) or saved not in DTYPES):
        raise ValueError(f"a constant of dtype {saved!r} (supported: {', '.join(sorted(DTYPES))})")
    if saved == "bfloat16":
        return to_bfloat16(np.asarray(value, dtype=np.float32)).astype(dtype)
    array = np.asarray(value, dtype=saved)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"a constant holding {array.dtype} values")
    return array.astype(dtype) if array.dtype.kind == "f" else array


def _flat(items: list[Any]) -> list[Any]:
    return [leaf for item in items for leaf in (_flat(item) if isinstance(item, list) else [item])]


def _all_numbers(items: list[Any]) -> bool:
    return all(isinstance(leaf, (int, float)) and not isinstance(leaf, bool) for leaf in _flat(items))


def _checked(layer: LayerSpec, ctx: Context, op: Op, label: str, config: dict[str, Any]) -> None:
    """Refuse, before any compute, a call with arguments `op` does not take or takes only at defaults
    (exit 3), or with malformed ones: constants that do not decode, required ones missing (exit 2)."""
    if not (len(layer.node_args) == len(layer.node_kwargs) == len(layer.node_tensors) == len(layer.inbound)):
        raise UnsupportedError(f"{where(ctx, layer)}: {label}: the file does not hold the op's call arguments")
    signature = inspect.signature(op.fn)
    for node in range(len(layer.inbound)):
        kwargs = {**config, **layer.node_kwargs[node], **layer.node_tensors[node]}
        kwargs.pop("name", None)
        try:
            args = [decode(arg, ctx.dtype) for arg in layer.node_args[node]]
            kwargs = {key: decode(value, ctx.dtype) for key, value in kwargs.items()}
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"{where(ctx, layer)}: {label} is called with a malformed constant: {exc}") from None
        for key, value in list(kwargs.items()):
            if key in op.fixed:
                if not _same(value, op.fixed[key]):
                    raise UnsupportedError(
                        f"{where(ctx, layer)}: {label} with {key}={value!r} is not supported "
                        f"(supported: {key}={op.fixed[key]!r})"
                    )
                del kwargs[key]
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            if "missing" in str(exc):
                raise BadInputError(
                    f"{where(ctx, layer)}: {label} is called without an argument it needs ({exc})"
                ) from None
            raise UnsupportedError(
                f"{where(ctx, layer)}: {label} is called with arguments this reference does not take ({exc})"
            ) from None


def _same(value: Any, expected: Any) -> bool:
    return type(value) is type(expected) and value == expected if expected is not None else value is None


def _runner(layer: LayerSpec, op: Op, label: str, config: dict[str, Any], ctx: Context) -> CallFn:
    signature = inspect.signature(op.fn)

    def run(inputs: list[np.ndarray], masks: list[Mask], call: Call) -> LayerResult:
        args = [decode(arg, ctx.dtype) for arg in call.args]
        kwargs = {key: decode(value, ctx.dtype) for key, value in {**config, **call.kwargs}.items()}
        kwargs = {key: value for key, value in kwargs.items() if key not in op.fixed and key != "name"}
        kwargs.update(call.tensors)
        try:
            result = op.fn(*args, **kwargs)
        except UndefinedResult as exc:
            raise UnsupportedError(f"{where(ctx, layer)}: {label}: {exc}: Keras' own result is undefined") from None
        except (TypeError, MemoryError) as exc:
            raise BadInputError(
                f"{where(ctx, layer)}: {label} cannot be computed: {type(exc).__name__}: {exc}"
            ) from None
        if op.batch is not None:  # after computing: a malformed argument has failed there (exit 2)
            _refuse_batch_mixing(op, signature.bind(*args, **kwargs), inputs, call, f"{where(ctx, layer)}: {label}")
        outputs = [np.asarray(out) for out in (result if isinstance(result, (list, tuple)) else [result])]
        outputs = [
            out.astype(ctx.dtype) if out.dtype.kind == "f" and out.dtype != ctx.dtype else out for out in outputs
        ]
        return LayerResult(outputs, [None] * len(outputs))

    return run


def _refuse_batch_mixing(
    op: Op, bound: inspect.BoundArguments, inputs: list[np.ndarray], call: Call, label: str
) -> None:
    assert op.batch is not None
    bound.apply_defaults()
    tensors = {id(x) for x in inputs} | {id(x) for x in call.tensors.values()}
    reason = op.batch(dict(bound.arguments), lambda value: id(value) in tensors)
    if reason is not None:
        raise UnsupportedError(
            f"{label} works across the batch axis ({reason}): Keras' predict computes it per batch of samples, "
            f"so its result depends on the batch size; not supported"
        )


@register("TFOpLambda", "SlicingOpLambda", options=("function",), call_kwargs=True)
def build_tf_op(layer: LayerSpec, ctx: Context) -> CallFn:
    """A TensorFlow function applied to Keras tensors; config `function` is its API name."""
    name = layer.config.get("function")
    if not isinstance(name, str):
        raise BadInputError(f"{where(ctx, layer)}: the config names no TensorFlow function ({name!r})")
    op = TF_OPS.get(name)
    if op is None:
        raise UnsupportedError(f"{where(ctx, layer)}: the TensorFlow op tf.{name} is not supported ({SUPPORTED})")
    _checked(layer, ctx, op, f"tf.{name}", {})
    return _runner(layer, op, f"tf.{name}", {}, ctx)


@register(*(f"ops.{name}" for name in KERAS_OPS), call_kwargs=True)
def build_keras_op(layer: LayerSpec, ctx: Context) -> CallFn:
    """A keras.ops call recorded in a Keras 3 graph: the op's config holds its constructor arguments."""
    name = layer.class_name[len("ops.") :]
    op = KERAS_OPS[name]
    config = {key: value for key, value in layer.config.items() if key != "name"}
    _checked(layer, ctx, op, f"keras.ops {name}", config)
    return _runner(layer, op, f"keras.ops {name}", config, ctx)
