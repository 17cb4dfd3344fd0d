"""Build each supported layer from its spec into a ready-to-run NumPy function.

Building checks every option and weight shape first (so an unsupported model fails with exit 3
before any computing), casts the weights to the requested dtype and captures the activations
under the file's semantics. Running a built layer is pure math. Layer classes register
themselves with `register`, per family: core.py, rnn_layers.py, conv.py, merge.py.
Each built function also returns the Keras mask of every output (None where Keras has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..spec import LayerSpec, ModelSpec
from .quiet import float_quiet

Mask = np.ndarray | None


@dataclass
class LayerResult:
    outputs: list[np.ndarray]
    masks: list[Mask]
    trace: dict[str, np.ndarray] = field(default_factory=dict)


LayerFn = Callable[[list[np.ndarray], list[Mask]], LayerResult]


@dataclass(frozen=True)
class Context:
    """What every builder needs: the math generation, precision, file name for messages,
    whether to record gate traces, and the store that carries stateful RNN states across calls."""

    semantics: str  # "keras2" | "keras3"
    dtype: np.dtype
    source: str
    record: bool = False
    states: dict[str, tuple[np.ndarray, ...]] | None = None


@dataclass(frozen=True)
class LayerKind:
    build: Callable[[LayerSpec, Context], LayerFn]
    options: tuple[str, ...]  # the config keys that change inference math
    defaults: dict[str, Any]


REGISTRY: dict[str, LayerKind] = {}


def register(*class_names: str, options: tuple[str, ...] = (), defaults: dict[str, Any] | None = None):
    """Decorator: make `build(layer, ctx) -> LayerFn` the builder of these Keras class names."""

    def wrap(build: Callable[[LayerSpec, Context], LayerFn]) -> Callable[[LayerSpec, Context], LayerFn]:
        for name in class_names:
            REGISTRY[name] = LayerKind(build, options, dict(defaults or {}))
        return build

    return wrap


def supported_classes() -> list[str]:
    _load_families()
    return sorted(REGISTRY) + ["InputLayer"]


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


def build_layer(layer: LayerSpec, ctx: Context) -> LayerFn:
    """Validate `layer` and return its NumPy function; raises UnsupportedError / BadInputError."""
    _load_families()
    kind = REGISTRY.get(layer.class_name)
    if kind is None:
        raise UnsupportedError(
            f"{where(ctx, layer)}: layer class {layer.class_name!r} is not supported "
            f"(supported: {', '.join(supported_classes())})"
        )
    check_dtype_policy(layer, ctx)
    try:
        return kind.build(layer, ctx)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadInputError(f"{where(ctx, layer)}: malformed layer config ({type(exc).__name__}: {exc})") from None


def _load_families() -> None:
    from . import conv, core, merge, rnn_layers  # noqa: F401 - imported for effect: they register their classes


def reduced_precision(spec: ModelSpec) -> str | None:
    """ "float16" or "bfloat16" when some layer (or wrapped layer) computes in it under its Keras dtype
    policy (bfloat16 when both occur: the looser), else None."""
    found = set()
    for layer in spec.layers:
        for config in (layer.config, (layer.config.get("layer") or {}).get("config") or {}):
            policy = dtype_policy(config) if isinstance(config, dict) else None
            if policy in REDUCED_POLICIES:
                found.add(REDUCED_POLICIES[policy])
    return "bfloat16" if "bfloat16" in found else "float16" if found else None
