"""Build each supported layer from its spec into a ready-to-run NumPy function.

Building checks every option and weight shape first (so an unsupported model fails with exit 3
before any computing), casts the weights to the requested dtype and captures the activations
under the file's semantics. Running a built layer is pure math. Layer classes register
themselves with `register`, per family: core.py, rnn_layers.py, conv.py, merge.py.
Each built function also returns the Keras mask of every output (None where Keras has none).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..formats.config import is_op_class
from ..spec import LayerSpec, ModelSpec, mask_input
from .quiet import float_quiet

Mask = np.ndarray | None


@dataclass
class LayerResult:
    outputs: list[np.ndarray]
    masks: list[Mask]
    trace: dict[str, np.ndarray] = field(default_factory=dict)


LayerFn = Callable[[list[np.ndarray], list[Mask]], LayerResult]


@dataclass(frozen=True)
class Call:
    """What one call (node) of a layer was given besides its positional input tensors.

    `kwargs`: the non-tensor keyword arguments as saved (`training`, `use_causal_mask`,
    `return_attention_scores`, an op's `axis`, ...); `tensors`: the tensor keyword arguments
    (MultiHeadAttention's `value`/`key`/`attention_mask`, an op's `y`), computed; `tensor_masks`:
    their Keras masks; `args`: op layers only, the positional arguments as saved with the
    tensors in place (constants where the call had constants).
    """

    kwargs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    tensor_masks: dict[str, Mask] = field(default_factory=dict)
    args: tuple[Any, ...] = ()


NO_CALL = Call()
CallFn = Callable[[list[np.ndarray], list[Mask], Call], LayerResult]


@dataclass(frozen=True)
class Context:
    """What every builder needs: the math generation, precision, file name for messages,
    whether to record gate traces, the store that carries stateful RNN states across calls, and
    the version of the Keras that saved the file (for math that changed within a generation)."""

    semantics: str  # "keras2" | "keras3"
    dtype: np.dtype
    source: str
    record: bool = False
    states: dict[str, tuple[np.ndarray, ...]] | None = None
    keras_version: str = ""  # as saved, e.g. "2.13.1"; "" when the file does not say


@dataclass(frozen=True)
class LayerKind:
    build: Callable[[LayerSpec, Context], Any]  # -> LayerFn, or CallFn when call_kwargs
    options: tuple[str, ...]  # the config keys that change inference math
    defaults: dict[str, Any]
    call_kwargs: bool = False


REGISTRY: dict[str, LayerKind] = {}


def register(
    *class_names: str, options: tuple[str, ...] = (), defaults: dict[str, Any] | None = None, call_kwargs: bool = False
):
    """Decorator: make `build(layer, ctx)` the builder of these Keras class names.

    The builder returns `fn(inputs, masks) -> LayerResult`, or with `call_kwargs=True`
    `fn(inputs, masks, call: Call) -> LayerResult` (the call's keyword arguments, see Call).
    """

    def wrap(build: Callable[[LayerSpec, Context], Any]) -> Callable[[LayerSpec, Context], Any]:
        for name in class_names:
            REGISTRY[name] = LayerKind(build, options, dict(defaults or {}), call_kwargs)
        return build

    return wrap


def supported_classes() -> list[str]:
    """The layer classes the reference computes (keras.ops operations, `ops.*`, not included)."""
    _load_families()
    return sorted(name for name in REGISTRY if not name.startswith("ops.")) + ["InputLayer"]


def math_options(layer: LayerSpec) -> dict[str, Any]:
    """The options of `layer` that change its inference math, with Keras' defaults filled in."""
    _load_families()
    if layer.class_name == "InputLayer":
        return {k: layer.config[k] for k in ("batch_shape", "batch_input_shape", "dtype") if k in layer.config}
    kind = REGISTRY.get(layer.class_name)
    if kind is None:
        return {}
    return {
        name: layer.config.get(name, kind.defaults.get(name))
        for name in kind.options
        if name in layer.config or name in kind.defaults
    }


def where(ctx: Context, layer: LayerSpec) -> str:
    return f"{ctx.source}: layer {layer.name!r} ({layer.class_name})"


def unsupported_option(ctx: Context, layer: LayerSpec, option: str, value: Any, supported: str) -> UnsupportedError:
    return UnsupportedError(f"{where(ctx, layer)}: option {option}={value!r} is not supported (supported: {supported})")


# Reduced-precision policies: Keras computes in float16/bfloat16, the reference the true math (in
# ctx.dtype); the check judges Keras' side under the matching profile (see reduced_precision).
REDUCED_POLICIES = {
    "mixed_float16": "float16",
    "float16": "float16",
    "mixed_bfloat16": "bfloat16",
    "bfloat16": "bfloat16",
}


def dtype_policy(config: dict) -> str | None:
    """The layer's dtype policy name (a plain string in Keras 2, a DTypePolicy object in Keras 3)."""
    policy = config.get("dtype")
    if isinstance(policy, dict):
        policy = (policy.get("config") or {}).get("name")
    return policy if isinstance(policy, str) else None


def check_dtype_policy(layer: LayerSpec, ctx: Context) -> None:
    policy = dtype_policy(layer.config)
    if policy not in (None, "float32", "float64", "int32", "int64", *REDUCED_POLICIES):
        raise unsupported_option(ctx, layer, "dtype", policy, "float32, float64, " + ", ".join(REDUCED_POLICIES))


@float_quiet
def take_weights(layer: LayerSpec, ctx: Context, shapes: list[tuple[int | None, ...]]) -> list[np.ndarray]:
    """Check the stored arrays against the expected shapes (None = any) and cast them to ctx.dtype."""
    if not layer.weights and shapes:
        raise BadInputError(
            f"{where(ctx, layer)}: the file holds no weights for this layer "
            f"(the model was never built, or the weights were not saved)"
        )
    if len(layer.weights) != len(shapes):
        raise BadInputError(
            f"{where(ctx, layer)}: the file holds {len(layer.weights)} weight arrays, expected {len(shapes)}"
        )
    cast = []
    names = layer.weight_names or ("?",) * len(shapes)
    for array, shape, name in zip(layer.weights, shapes, names, strict=True):
        ok = array.ndim == len(shape) and all(e is None or e == a for e, a in zip(shape, array.shape, strict=True))
        if not ok:
            want = "(" + ", ".join("?" if e is None else str(e) for e in shape) + (",)" if len(shape) == 1 else ")")
            raise BadInputError(f"{where(ctx, layer)}: weight {name} has shape {array.shape}, expected {want}")
        cast.append(np.asarray(array, dtype=ctx.dtype))
    return cast


def check_width(layer: LayerSpec, ctx: Context, x: np.ndarray, expected: int, axis: int = -1) -> None:
    if x.shape[axis] != expected:
        raise BadInputError(
            f"{where(ctx, layer)}: input has {x.shape[axis]} features on axis {axis}, the weights expect {expected}"
        )


def child(layer: LayerSpec, suffix: str, entry: Any, weights: tuple[np.ndarray, ...], ctx: Context) -> LayerSpec:
    """A wrapped layer (Bidirectional's or TimeDistributed's) as a spec of its own."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("class_name"), str)
        or not isinstance(entry.get("config"), dict)
    ):
        raise BadInputError(f"{where(ctx, layer)}: the wrapped layer's config is malformed")
    from ..formats.layout import weight_names

    return LayerSpec(
        name=f"{layer.name}/{suffix}",
        class_name=entry["class_name"],
        config=entry["config"],
        weights=weights,
        weight_names=weight_names(entry["class_name"], len(weights), entry["config"]),
    )


PLUGIN_HINT = "if you have its code, compute it with --plugin FILE.py (README: Custom layers and Lambdas)"


def build_layer(layer: LayerSpec, ctx: Context) -> LayerFn:
    """Validate `layer` and return its NumPy function `fn(inputs, masks)` as called without keyword
    arguments (wrapped layers are); raises UnsupportedError / BadInputError."""
    fn = build_call(layer, ctx)
    return lambda inputs, masks: fn(inputs, masks, NO_CALL)


def build_call(layer: LayerSpec, ctx: Context) -> CallFn:
    """Validate `layer` and return `fn(inputs, masks, call)` for each of its calls (nodes).

    A layer whose builder does not take the call's keyword arguments is refused when one of its
    calls passes tensor keywords. Raises UnsupportedError / BadInputError.
    """
    _load_families()
    from ..plugins import build_plugin_layer

    plugged = build_plugin_layer(layer, ctx)  # the user's own code, named with --plugin, comes first
    if plugged is not None:
        return _without_call(layer, ctx, plugged)
    kind = REGISTRY.get(layer.class_name)
    if kind is None:
        raise UnsupportedError(unsupported_class(layer, ctx))
    if not is_op_class(layer.class_name):  # an op's `dtype` (ops.cast's target, an op layer's policy) is not a policy
        check_dtype_policy(layer, ctx)
    try:
        built = kind.build(layer, ctx)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadInputError(f"{where(ctx, layer)}: malformed layer config ({type(exc).__name__}: {exc})") from None
    return built if kind.call_kwargs else _without_call(layer, ctx, built)


def _without_call(layer: LayerSpec, ctx: Context, fn: LayerFn) -> CallFn:
    keywords = sorted({key for node in layer.node_tensors for key in node if mask_input(key) is None})
    if keywords:
        raise UnsupportedError(
            f"{where(ctx, layer)}: is called with tensor keyword arguments {keywords}; not supported for this class"
        )
    return lambda inputs, masks, call: fn(inputs, masks)


def unsupported_class(layer: LayerSpec, ctx: Context) -> str:
    """The one-line refusal for a class the reference does not implement."""
    from .keras_classes import KERAS_LAYER_CLASSES

    if layer.class_name.startswith("ops."):
        return (
            f"{ctx.source}: layer {layer.name!r}: the keras.ops operation {layer.class_name[4:]!r} is not "
            f"supported (README: Op layers lists the supported ops)"
        )
    if layer.class_name == "Lambda":
        return f"{where(ctx, layer)}: a Lambda is not supported (code from a file is never run); {PLUGIN_HINT}"
    if layer.class_name not in KERAS_LAYER_CLASSES:
        return f"{where(ctx, layer)}: {layer.class_name!r} is not a Keras layer lstm-parity implements; {PLUGIN_HINT}"
    return (
        f"{where(ctx, layer)}: layer class {layer.class_name!r} is not supported "
        f"(supported: {', '.join(supported_classes())})"
    )


@functools.cache
def _load_families() -> None:
    from . import conv, core, merge, ops, rnn_layers  # noqa: F401 - imported for effect: they register their classes

    if importlib.util.find_spec(f"{__package__}.attention") is not None:  # the attention family (issue 17)
        importlib.import_module(f"{__package__}.attention")


def reduced_precision(spec: ModelSpec) -> str | None:
    """ "float16" or "bfloat16" when some layer (or wrapped layer) computes in it under its Keras dtype
    policy (bfloat16 when both occur: the looser), else None."""
    found = set()
    for layer in spec.layers:
        if is_op_class(layer.class_name):
            continue
        for config in (layer.config, (layer.config.get("layer") or {}).get("config") or {}):
            policy = dtype_policy(config) if isinstance(config, dict) else None
            if policy in REDUCED_POLICIES:
                found.add(REDUCED_POLICIES[policy])
    return "bfloat16" if "bfloat16" in found else "float16" if found else None
