"""The ops users apply to Keras tensors, in NumPy, keyed by the names files save them under.

- tf.keras 2.4+ op layers (`TFOpLambda`, `SlicingOpLambda`) save the TensorFlow function's API name
  ("nn.softmax", "math.reduce_sum", "__operators__.getitem") and call it with the saved arguments,
  named as in TensorFlow's signature (`input_tensor`, `axis`, `keepdims`, `y`, ...): TF_OPS.
- Keras 3 functional graphs save each keras.ops call as an operation whose config holds the
  constructor's arguments (`Sum(axis, keepdims)`) and whose node holds the call's (`x`, `key`):
  KERAS_OPS, keyed by class name; a function takes the call's arguments, then the config's.
Each Op lists the arguments accepted only at the value that changes nothing (`fixed`), such as
`conjugate=False`; any other value is refused when the model is built; and, as `batch`, the rule
saying when a call mixes samples across the batch axis (op_batch.py). Arrays are batch first.
An op returning several tensors (split, unstack) returns a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import activations as act
from . import op_batch as batch
from .op_batch import Rule

FLOAT_DTYPES = {"float16", "bfloat16", "float32", "float64"}
INTEGER_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
DTYPES = FLOAT_DTYPES | INTEGER_DTYPES | {"bool"}
MAX_ELEMENTS = 1 << 32  # a tile/repeat/reshape asked to make more elements than this is a malformed file


class UndefinedResult(Exception):
    """Keras' own result is not defined for these values (it differs between TensorFlow's code paths)."""


@dataclass(frozen=True)
class Op:
    fn: Callable[..., Any]
    fixed: dict[str, Any] = field(default_factory=dict)  # argument -> the only value supported
    batch: Rule | None = None  # does a call mix samples across the batch axis? (op_batch)


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


def _sized(shape: Any) -> None:
    if int(np.prod([max(int(d), 0) for d in shape], dtype=np.float64)) > MAX_ELEMENTS:
        raise ValueError(
            f"the result would hold more than {MAX_ELEMENTS} elements (shape {tuple(int(d) for d in shape)})"
        )


def logsumexp(x: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    peak = np.max(x, axis=_axis(axis), keepdims=True)
    out = np.log(np.sum(np.exp(x - peak), axis=_axis(axis), keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=_axis(axis))


def l2_normalize(x: np.ndarray, axis: Any = None, epsilon: float = 1e-12) -> np.ndarray:
    """TensorFlow's: x / sqrt(max(sum(x^2), epsilon)); axis None normalizes over all axes."""
    square_sum = np.sum(x * x, axis=_axis(axis), keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, epsilon))


def normalize(x: np.ndarray, axis: Any = -1, order: int = 2, epsilon: float | None = None) -> np.ndarray:
    """keras.ops.normalize: x * min(1/sqrt(sum(x^2)), 1/epsilon) for order 2 (epsilon: Keras' 1e-7),
    x / max(norm, epsilon) for other orders."""
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ValueError(f"normalize order must be an int >= 1, got {order!r}")
    epsilon = 1e-7 if epsilon is None else float(epsilon)
    x = np.asarray(x)
    if order == 2:
        return x * np.minimum(1 / np.sqrt(np.sum(np.square(x), axis=_axis(axis), keepdims=True)), 1 / epsilon)
    norm = np.sum(np.abs(x) ** order, axis=_axis(axis), keepdims=True) ** (1 / order)
    return x / np.maximum(norm, epsilon)


def divide_no_nan(x: Any, y: Any) -> np.ndarray:
    y = np.asarray(y)
    return np.where(y == 0, 0, np.asarray(x) / np.where(y == 0, 1, y))


def cumsum(x: np.ndarray, axis: Any = 0, exclusive: bool = False, reverse: bool = False) -> np.ndarray:
    if axis is None:
        x, axis = np.ravel(x), 0
    x = np.flip(x, axis) if reverse else x
    out = np.cumsum(x, axis=axis)
    if exclusive:
        out = out - x
    return np.flip(out, axis) if reverse else out


def where(condition: Any, x: Any = None, y: Any = None) -> np.ndarray:
    if x is None or y is None:
        raise ValueError("where() without x and y (coordinates of true elements) is not supported")
    return np.where(condition, x, y)


def where_v1(condition: Any, x: Any = None, y: Any = None) -> np.ndarray:
    """tf.compat.v1.where: a vector condition picks whole rows (its first axis) of x and y."""
    if x is None or y is None:
        raise ValueError("where() without x and y (coordinates of true elements) is not supported")
    condition = np.asarray(condition)
    if condition.ndim == 1 and np.ndim(x) > 1:
        condition = condition.reshape(condition.shape + (1,) * (np.ndim(x) - 1))  # (rows, 1, ...)
    return np.where(condition, x, y)


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    return np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a, np.swapaxes(b, -1, -2) if transpose_b else b)


def getitem(x: np.ndarray, key: Any) -> np.ndarray:
    """x[key] with a saved key: a list is a tuple of per-axis indices (TensorFlow and Keras both
    store the tuple as a list), holding ints, slices, Ellipsis and None (new axes)."""
    return x[tuple(key) if isinstance(key, list) else key]


def cast(x: Any, dtype: Any) -> np.ndarray:
    """tf.cast / keras.ops.cast. bfloat16 keeps float32's top 16 bits, rounded to nearest even (as
    TensorFlow rounds). A float outside an integer type's range (or NaN) has no defined result in
    TensorFlow (it differs between its vectorized and scalar code): refused, never guessed."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"cast to dtype {dtype!r} is not supported (supported: {', '.join(sorted(DTYPES))})")
    x = np.asarray(x)
    if dtype == "bfloat16":
        return to_bfloat16(x)
    if dtype in INTEGER_DTYPES and x.dtype.kind == "f":
        info = np.iinfo(dtype)
        whole = np.trunc(x)
        if not np.all((whole >= info.min) & (whole <= info.max)):  # NaN fails both
            raise UndefinedResult(f"cast to {dtype} of values outside its range {info.min}..{info.max} (or NaN)")
    return x.astype(dtype)


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """The bfloat16 values of x (as float32): float32's bits rounded to the top 16, ties to even."""
    single = np.asarray(x, dtype=np.float32)
    bits = single.view(np.uint32).astype(np.uint64)  # (...), room for the carry
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(single), single, out)


def tile(x: Any, multiples: Any) -> np.ndarray:
    x = np.asarray(x)
    reps = [int(m) for m in multiples]
    width = max(len(reps), x.ndim)
    _sized(np.multiply([1] * (width - x.ndim) + list(x.shape), [1] * (width - len(reps)) + reps))
    return np.tile(x, reps)


def repeat(x: Any, repeats: Any, axis: Any = None) -> np.ndarray:
    x = np.asarray(x)
    along = x.size if axis is None else x.shape[axis]
    _sized([np.sum(repeats) if np.ndim(repeats) else int(repeats) * along, x.size // max(along, 1)])
    return np.repeat(x, repeats, axis=axis)


def reshape(x: Any, shape: Any) -> np.ndarray:
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, (int, np.integer)) or d is None for d in shape):
        raise ValueError(f"reshape to {shape!r}: the shape must be a list of ints")
    return np.reshape(x, [-1 if d is None else int(d) for d in shape])


def split(value: Any, num_or_size_splits: Any, axis: Any = 0) -> list[np.ndarray]:
    """tf.split: equal parts (an int), or parts of the given sizes (one of them may be -1)."""
    value = np.asarray(value)
    if isinstance(num_or_size_splits, int):
        return list(np.split(value, num_or_size_splits, axis=axis))
    sizes = [int(s) for s in num_or_size_splits]
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = value.shape[axis] - (sum(sizes) + 1)
    if sum(sizes) != value.shape[axis] or min(sizes) < 0:
        raise ValueError(f"split sizes {sizes} do not add up to the axis' length {value.shape[axis]}")
    return list(np.split(value, np.cumsum(sizes)[:-1], axis=axis))


def unstack(value: Any, axis: Any = 0) -> list[np.ndarray]:
    value = np.asarray(value)
    return [np.take(value, index, axis=axis) for index in range(value.shape[axis])]


def _reduce(fn: Callable[..., Any], integer_mean: bool = False) -> Callable[..., Any]:
    """A TensorFlow reduction (v2 and compat.v1 argument names). `integer_mean`: TensorFlow's mean
    of an integer tensor stays an integer, the sum divided with truncation toward zero."""

    def reduce(
        input_tensor: Any, axis: Any = None, keepdims: Any = None, reduction_indices: Any = None, keep_dims: Any = None
    ) -> np.ndarray:
        x = np.asarray(input_tensor)
        axis = _axis(reduction_indices if axis is None else axis)
        keep = bool(keep_dims if keepdims is None else keepdims)
        if integer_mean and x.dtype.kind in "iu":
            total = np.sum(x, axis=axis, keepdims=keep)
            count = x.size // max(total.size, 1)
            return (np.sign(total) * (np.abs(total) // count)).astype(x.dtype)
        return fn(x, axis=axis, keepdims=keep)

    return reduce


def _tf_axis(args: dict[str, Any]) -> Any:
    return args.get("reduction_indices") if args.get("axis") is None else args.get("axis")


def _euclidean_norm(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


REDUCTIONS: dict[str, Callable[..., Any]] = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    "prod": np.prod,
    "std": np.std,
    "variance": np.var,
    "any": np.any,
    "all": np.all,
    "euclidean_norm": _euclidean_norm,
    "logsumexp": logsumexp,
}
BINARY: dict[str, Callable[..., Any]] = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "truediv": np.true_divide,
    "divide": np.true_divide,
    "floordiv": np.floor_divide,
    "floormod": np.mod,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "squared_difference": lambda x, y: np.square(np.subtract(x, y)),
    "divide_no_nan": divide_no_nan,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}
UNARY: dict[str, Callable[..., Any]] = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "square": np.square,
    "abs": np.abs,
    "negative": np.negative,
    "reciprocal": lambda x: 1 / x,
    "sign": np.sign,
    "round": np.round,  # half to even, as TensorFlow rounds
    "sigmoid": act.sigmoid,
    "tanh": np.tanh,
    "logical_not": np.logical_not,
}
NN_UNARY: dict[str, Callable[..., Any]] = {
    "relu": act.relu,
    "relu6": act.relu6,
    "elu": act.elu,
    "selu": act.selu,
    "softplus": act.softplus,
    "sigmoid": act.sigmoid,
    "tanh": np.tanh,
}


def _tf_table() -> dict[str, Op]:
    """TensorFlow API names (as TFOpLambda saves them) -> Op, parameters named as in TensorFlow."""
    table: dict[str, Op] = {}
    for name, fn in REDUCTIONS.items():
        op = Op(_reduce(fn, integer_mean=name == "mean"), batch=batch.along(_tf_axis, "input_tensor"))
        for prefix in ("math.reduce_", "reduce_", "compat.v1.reduce_", "compat.v1.math.reduce_"):
            table[prefix + name] = op
    for name, fn in BINARY.items():
        table[f"math.{name}"] = table[name] = Op(lambda x, y, fn=fn: fn(x, y))
    table["compat.v1.floor_div"] = table["floordiv"]  # Python's `//` on a tf.keras tensor
    table["math.mod"] = table["mod"] = table["floormod"]  # `%` saves math.floormod
    for name, fn in UNARY.items():
        table[f"math.{name}"] = table[name] = Op(lambda x, fn=fn: fn(np.asarray(x)))
    for name, fn in NN_UNARY.items():
        table[f"nn.{name}"] = Op(lambda features, fn=fn: fn(np.asarray(features)))
    table["math.softplus"] = table["nn.softplus"]
    table["nn.leaky_relu"] = Op(lambda features, alpha=0.2: np.where(features > 0, features, alpha * features))
    table["nn.silu"] = table["nn.swish"] = Op(lambda features, beta=1.0: features * act.sigmoid(beta * features))
    table["nn.gelu"] = Op(lambda features, approximate=False: act.gelu(np.asarray(features), bool(approximate)))
    softmax_axis = batch.along(lambda a: _or(a["axis"], a["dim"], -1), "logits")
    for prefix in ("nn.", "math.", "compat.v1.nn."):
        table[f"{prefix}softmax"] = Op(
            lambda logits, axis=None, dim=None: act.softmax(logits, _axis(_or(axis, dim, -1))), batch=softmax_axis
        )
        table[f"{prefix}log_softmax"] = Op(
            lambda logits, axis=None, dim=None: act.log_softmax(logits, _axis(_or(axis, dim, -1))), batch=softmax_axis
        )
    table["__operators__.add"] = table["math.add"]
    table["__operators__.eq"] = Op(lambda self, other: np.equal(self, other))
    table["__operators__.ne"] = Op(lambda self, other: np.not_equal(self, other))
    table["__operators__.getitem"] = Op(
        lambda tensor, slice_spec: getitem(tensor, slice_spec), {"var": None}, batch.indexing("tensor", "slice_spec")
    )
    table["math.add_n"] = table["add_n"] = Op(lambda inputs: np.sum(np.broadcast_arrays(*inputs), axis=0))
    unused = {"adjoint_a": False, "adjoint_b": False, "a_is_sparse": False, "b_is_sparse": False}
    table["linalg.matmul"] = table["matmul"] = Op(
        matmul,
        {**unused, "output_type": None, "grad_a": False, "grad_b": False},
        batch.matmul("a", "b", "transpose_a", "transpose_b"),
    )
    table["expand_dims"] = Op(
        lambda input, axis: np.expand_dims(input, axis), batch=batch.along("axis", "input", grows=True)
    )
    table["compat.v1.expand_dims"] = Op(
        lambda input, axis=None, dim=None: np.expand_dims(input, _or(axis, dim)),
        batch=batch.along(lambda a: _pick(a, "dim"), "input", grows=True),
    )
    table["squeeze"] = Op(
        lambda input, axis=None: np.squeeze(input, _axis(axis)), batch=batch.along("axis", "input", False)
    )
    table["compat.v1.squeeze"] = Op(
        lambda input, axis=None, squeeze_dims=None: np.squeeze(input, _axis(_or(axis, squeeze_dims))),
        batch=batch.along(lambda a: _pick(a, "squeeze_dims"), "input", all_if_none=False),
    )
    table["reshape"] = table["compat.v1.reshape"] = Op(
        lambda tensor, shape: reshape(tensor, shape), batch=batch.reshaping("tensor", "shape")
    )
    transpose = Op(lambda a, perm=None: np.transpose(a, perm), {"conjugate": False}, batch.permuting("a", "perm"))
    table["transpose"] = table["compat.v1.transpose"] = transpose
    table["linalg.matrix_transpose"] = Op(
        lambda a: np.swapaxes(a, -1, -2), {"conjugate": False}, batch.along(lambda a: [-1, -2], "a")
    )
    table["concat"] = table["compat.v1.concat"] = Op(
        lambda values, axis: np.concatenate(values, axis=axis), batch=batch.along("axis", "values")
    )
    table["stack"] = Op(
        lambda values, axis=0: np.stack(values, axis=axis), batch=batch.along("axis", "values", grows=True)
    )
    table["unstack"] = Op(lambda value, num=None, axis=0: unstack(value, axis), batch=batch.along("axis", "value"))
    table["split"] = Op(
        lambda value, num_or_size_splits, axis=0, num=None: split(value, num_or_size_splits, axis),
        batch=batch.along("axis", "value"),
    )
    table["gather"] = table["compat.v1.gather"] = Op(
        lambda params, indices, validate_indices=None, axis=None, batch_dims=0: np.take(
            params, indices, axis=_or(axis, 0)
        ),
        {"batch_dims": 0},
        batch.along(lambda a: _or(a["axis"], 0), "params"),
    )
    table["cast"] = table["dtypes.cast"] = Op(cast)
    table["where"] = table["where_v2"] = Op(where)
    table["compat.v1.where"] = Op(where_v1)
    table["tile"] = Op(lambda input, multiples: tile(input, multiples), batch=batch.tiling("input", "multiples"))
    table["math.l2_normalize"] = table["nn.l2_normalize"] = table["linalg.l2_normalize"] = Op(
        lambda x, axis=None, epsilon=1e-12, dim=None: l2_normalize(x, _or(axis, dim), epsilon),
        batch=batch.along(lambda a: _pick(a, "dim"), "x"),
    )
    table["clip_by_value"] = Op(lambda t, clip_value_min, clip_value_max: np.clip(t, clip_value_min, clip_value_max))
    table["identity"] = Op(lambda input: np.asarray(input))
    table["math.cumsum"] = table["cumsum"] = Op(cumsum, batch=batch.along("axis", "x"))
    table["ones_like"] = Op(lambda input, dtype=None: np.ones_like(input, dtype=dtype))
    table["zeros_like"] = Op(lambda input, dtype=None: np.zeros_like(input, dtype=dtype))
    return table


def _or(value: Any, alias: Any, default: Any = None) -> Any:
    """A TensorFlow argument given under its name or its deprecated alias (`dim`, `squeeze_dims`)."""
    return value if value is not None else alias if alias is not None else default


def _pick(args: dict[str, Any], alias: str) -> Any:
    return _or(args.get("axis"), args.get(alias))


def _keras_table() -> dict[str, Op]:
    """Keras 3 keras.ops class names -> Op: the call's arguments first, then the config's."""
    table: dict[str, Op] = {}
    reductions = {"Sum": "sum", "Mean": "mean", "Prod": "prod", "Std": "std", "Var": "variance"}
    reductions |= {"Any": "any", "All": "all", "Logsumexp": "logsumexp"}
    for cls, name in reductions.items():
        table[cls] = Op(
            lambda x, axis=None, keepdims=False, fn=REDUCTIONS[name]: fn(
                np.asarray(x), axis=_axis(axis), keepdims=bool(keepdims)
            ),
            {"dtype": None},
            batch.along("axis", "x"),
        )
    for cls, fn in (("Max", np.max), ("Min", np.min)):
        table[cls] = Op(
            lambda x, axis=None, keepdims=False, initial=None, fn=fn: _extreme(fn, x, axis, keepdims, initial),
            batch=batch.along("axis", "x"),
        )
    indices: tuple[tuple[str, Callable[..., Any]], ...] = (("Argmax", np.argmax), ("Argmin", np.argmin))
    for cls, fn in indices:
        table[cls] = Op(
            lambda x, axis=None, keepdims=False, fn=fn: fn(np.asarray(x), axis=axis, keepdims=bool(keepdims)),
            batch=batch.along("axis", "x"),
        )
    binary = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide"}
    binary |= {"TrueDivide": "truediv", "FloorDivide": "floordiv", "Mod": "floormod", "Power": "pow"}
    binary |= {"Maximum": "maximum", "Minimum": "minimum", "Greater": "greater", "GreaterEqual": "greater_equal"}
    binary |= {"Less": "less", "LessEqual": "less_equal", "Equal": "equal", "NotEqual": "not_equal"}
    binary |= {"LogicalAnd": "logical_and", "LogicalOr": "logical_or", "LogicalXor": "logical_xor"}
    for cls, name in binary.items():
        table[cls] = Op(lambda x1, x2, fn=BINARY[name]: fn(x1, x2))
    unary = {"Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Square": "square", "Abs": "abs"}
    unary |= {"Absolute": "abs", "Negative": "negative", "Reciprocal": "reciprocal", "Sign": "sign", "Tanh": "tanh"}
    unary |= {"LogicalNot": "logical_not"}
    for cls, name in unary.items():
        table[cls] = Op(lambda x, fn=UNARY[name]: fn(np.asarray(x)))
    for cls, name in {"Relu": "relu", "Relu6": "relu6", "Selu": "selu", "Softplus": "softplus"}.items():
        table[cls] = Op(lambda x, fn=NN_UNARY[name]: fn(np.asarray(x)))
    table["Round"] = Op(lambda x, decimals=0: np.round(np.asarray(x), decimals))
    table["Sigmoid"] = Op(lambda x: act.sigmoid(np.asarray(x)))
    table["Silu"] = Op(lambda x: act.swish(np.asarray(x)))
    table["Elu"] = Op(lambda x, alpha=1.0: act.elu(np.asarray(x), alpha))
    table["Gelu"] = Op(lambda x, approximate=True: act.gelu(np.asarray(x), bool(approximate)))
    table["LeakyRelu"] = Op(lambda x, negative_slope=0.2: np.where(x > 0, x, negative_slope * x))
    table["Softmax"] = Op(lambda x, axis=-1: act.softmax(x, _axis(axis)), batch=batch.along("axis", "x"))
    table["LogSoftmax"] = Op(lambda x, axis=-1: act.log_softmax(x, _axis(axis)), batch=batch.along("axis", "x"))
    table["Normalize"] = Op(normalize, batch=batch.along("axis", "x"))
    table["Matmul"] = Op(lambda x1, x2: np.matmul(x1, x2), batch=batch.matmul("x1", "x2"))
    table["Dot"] = Op(lambda x1, x2: np.dot(x1, x2), batch=batch.dotting("x1", "x2"))
    table["Tensordot"] = Op(
        lambda x1, x2, axes=2: np.tensordot(x1, x2, axes=axes), batch=batch.tensordot("x1", "x2", "axes")
    )
    table["GetItem"] = Op(getitem, batch=batch.indexing("x", "key"))
    table["ExpandDims"] = Op(lambda x, axis: np.expand_dims(x, _axis(axis)), batch=batch.along("axis", "x", grows=True))
    table["Squeeze"] = Op(lambda x, axis=None: np.squeeze(x, _axis(axis)), batch=batch.along("axis", "x", False))
    table["Reshape"] = Op(lambda x, newshape: reshape(x, newshape), batch=batch.reshaping("x", "newshape"))
    table["Transpose"] = Op(lambda x, axes=None: np.transpose(x, axes), batch=batch.permuting("x", "axes"))
    table["Swapaxes"] = Op(
        lambda x, axis1, axis2: np.swapaxes(x, axis1, axis2), batch=batch.swapping("x", "axis1", "axis2")
    )
    table["Concatenate"] = Op(lambda xs, axis=0: np.concatenate(xs, axis=axis), batch=batch.along("axis", "xs"))
    table["Stack"] = Op(lambda x, axis=0: np.stack(x, axis=axis), batch=batch.along("axis", "x", grows=True))
    table["Split"] = Op(
        lambda x, indices_or_sections, axis=0: np.split(x, indices_or_sections, axis=axis),
        batch=batch.along("axis", "x"),
    )
    table["Unstack"] = Op(lambda x, num=None, axis=0: unstack(x, axis), batch=batch.along("axis", "x"))
    table["Take"] = Op(lambda x, indices, axis=None: np.take(x, indices, axis=axis), batch=batch.along("axis", "x"))
    table["Cast"] = Op(cast)
    table["Where"] = Op(lambda condition, x1=None, x2=None: where(condition, x1, x2))
    table["Tile"] = Op(lambda x, repeats: tile(x, repeats), batch=batch.tiling("x", "repeats"))
    table["Repeat"] = Op(repeat, batch=batch.along("axis", "x"))
    table["Clip"] = Op(lambda x, x_min, x_max: np.clip(x, x_min, x_max))
    table["Cumsum"] = Op(lambda x, axis=None: cumsum(x, axis), {"dtype": None}, batch.along("axis", "x"))
    table["Einsum"] = Op(
        lambda *operands, subscripts: np.einsum(subscripts, *operands), batch=batch.einsum("subscripts", "operands")
    )
    table["ConvertToTensor"] = Op(
        lambda x, dtype=None: np.asarray(x) if dtype is None else cast(x, dtype), {"sparse": None, "ragged": None}
    )
    table["OnesLike"] = Op(lambda x, dtype=None: np.ones_like(x, dtype=dtype))
    table["ZerosLike"] = Op(lambda x, dtype=None: np.zeros_like(x, dtype=dtype))
    return table


def _extreme(fn: Callable[..., Any], x: Any, axis: Any, keepdims: bool, initial: Any) -> np.ndarray:
    extra = {} if initial is None else {"initial": initial}
    return fn(np.asarray(x), axis=_axis(axis), keepdims=bool(keepdims), **extra)


TF_OPS = _tf_table()
KERAS_OPS = _keras_table()
