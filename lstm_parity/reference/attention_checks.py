"""Build-time and call-time checks shared by the attention layers: is this Keras' own class, which
Keras version's rules apply, which float type does Keras compute it in, and can its call be
computed at all."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..formats.provenance import custom_class_evidence
from ..spec import LayerSpec, semantics_for_version
from .attention_math import KerasAttention, version_rules
from .layers import PLUGIN_HINT, Call, Context, dtype_policy, where


def saving_version(ctx: Context) -> str:
    """The version of the Keras that saved the file ("" when unknown)."""
    return ctx.keras_version


def saving_generation(ctx: Context) -> str:
    """The generation that saved the file, "keras2" or "keras3" (whose config keys count), whatever
    `--semantics` computes it with; the semantics when the version is unknown."""
    version = saving_version(ctx)
    return semantics_for_version(version) if version else ctx.semantics


def versions(ctx: Context) -> KerasAttention:
    """The rules of the Keras versions that saved the file, under the semantics computed with."""
    return version_rules(ctx.semantics, saving_version(ctx))


def refuse_custom(
    layer: LayerSpec,
    ctx: Context,
    weight_shapes: list[tuple[int | None, ...]] | None,
    input_counts: tuple[int, ...] | None,
    input_keywords: tuple[str, ...] = (),
) -> None:
    """Raise UnsupportedError (exit 3) when the file says `layer` is a user's class with Keras' name
    (see formats.provenance.custom_class_evidence for the arguments)."""
    evidence = custom_class_evidence(layer, saving_generation(ctx), weight_shapes, input_counts, input_keywords)
    if evidence:
        raise UnsupportedError(
            f"{ctx.source}: layer {layer.name!r} is a custom layer with Keras' class name "
            f"{layer.class_name!r}, not Keras' {layer.class_name} ({'; '.join(evidence)}); {PLUGIN_HINT}"
        )


def compute_dtype(layer: LayerSpec) -> type:
    """The float type Keras computes the layer in under its dtype policy, where masking constants
    round: float16 (float16, mixed_float16), float64, else float32 (bfloat16 included: NumPy has no
    bfloat16, and the reduced-precision profile judges those models)."""
    policy = dtype_policy(layer.config)
    if policy in ("float16", "mixed_float16"):
        return np.float16
    return np.float64 if policy in ("float64", "double") else np.float32


def refuse_training_dropout(layer: LayerSpec, ctx: Context, call: Call, dropout: float) -> None:
    """A call saved with training=True keeps its dropout at predict time: random, so not computable."""
    if dropout > 0 and call.kwargs.get("training") is True:
        raise UnsupportedError(
            f"{where(ctx, layer)}: is called with training=True and dropout={dropout}: Keras drops "
            f"attention weights at random even at predict time, which no reference can reproduce"
        )


def flag(layer: LayerSpec, ctx: Context, name: str, value: Any) -> bool:
    """A boolean option's value; anything else is a malformed config (exit 2)."""
    if not isinstance(value, bool):
        raise BadInputError(f"{where(ctx, layer)}: option {name}={value!r} is not a boolean")
    return value
