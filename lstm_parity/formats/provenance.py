"""Is this layer Keras' own class, or a user's class that only shares its name?

A legacy `.h5` stores a layer's class name and config, never its code, so a user's
`class Attention(Layer)` is saved exactly like `keras.layers.Attention`. The file still tells them
apart: a `.keras` file names the class's module and registered name; Keras' classes save a fixed
set of config keys per generation (Keras 2 / Keras 3: every version of it, unioned); and their
weights have known counts and shapes (formats/layout.py). `custom_class_evidence` reads that
evidence; the builders refuse a layer when there is any (they never compute Keras' math for a
user's class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..spec import LayerSpec

# Keys the base Layer.get_config of some Keras generation saves for any layer.
BASE_KEYS = frozenset({"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "activity_regularizer"})


@dataclass(frozen=True)
class SavedForm:
    """What Keras' own class saves in one generation: keys every version writes, and keys some version writes."""

    required: frozenset[str]
    optional: frozenset[str]


_MHA_KEYS = frozenset(
    {
        "value_dim",
        "dropout",
        "use_bias",
        "output_shape",
        "attention_axes",
        "kernel_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "bias_regularizer",
        "kernel_constraint",
        "bias_constraint",
    }
)

# Per generation ("keras2": standalone Keras 2 and tf.keras / tf_keras; "keras3"), per class. Read from
# get_config in keras-team/keras (tags v2.6.0-v2.15.0, v3.0.0-v3.15.1) and keras-team/tf-keras (v2.15-v2.21).
SAVED_FORMS: dict[str, dict[str, SavedForm]] = {
    "keras2": {
        # `causal` up to 2.9 (2.10+ take use_causal_mask at call time, and still accept the key); score_mode 2.9+.
        "Attention": SavedForm(frozenset({"use_scale"}), frozenset({"score_mode", "dropout", "causal"})),
        "AdditiveAttention": SavedForm(frozenset({"use_scale"}), frozenset({"dropout", "causal"})),
        "MultiHeadAttention": SavedForm(
            frozenset({"num_heads", "key_dim"}),
            _MHA_KEYS
            | {"query_shape", "key_shape", "value_shape", "softmax_robust_masking"},  # the last: tf_keras 2.21+
        ),
    },
    "keras3": {
        "Attention": SavedForm(frozenset({"use_scale"}), frozenset({"score_mode", "dropout", "seed"})),  # seed: 3.15+
        "AdditiveAttention": SavedForm(frozenset({"use_scale"}), frozenset({"dropout", "seed"})),
        "MultiHeadAttention": SavedForm(
            frozenset({"num_heads", "key_dim"}),
            _MHA_KEYS | {"seed", "use_gate", "sliding_window"},  # seed 3.4+, use_gate 3.14+, sliding_window 3.15+
        ),
    },
}
GENERATION_NAMES = {"keras2": "Keras 2", "keras3": "Keras 3"}


def custom_class_evidence(
    layer: LayerSpec,
    generation: str,
    weight_shapes: Sequence[tuple[int | None, ...]] | None = None,
    input_counts: tuple[int, ...] | None = None,
    input_keywords: tuple[str, ...] = (),
) -> list[str]:
    """Why the file says `layer` is a user's class named like a Keras class: one sentence per piece
    of evidence, empty when nothing does.

    `generation`: the Keras generation that saved the file ("keras2" or "keras3"), whose config keys
    count. `weight_shapes`: the arrays Keras' class holds under this config (None = any size); a file
    with other arrays is a custom class (a file with no arrays at all is left to the weight check: a
    model saved before it was built). `input_counts`: how many input tensors a call of Keras' class
    takes, positional ones and those passed as one of `input_keywords` (MultiHeadAttention's query/value/key).
    """
    cls = layer.class_name
    evidence = []
    if layer.registered_name:
        evidence.append(f"the .keras file registers it as {layer.registered_name!r}")
    if layer.module and layer.module != "keras" and not layer.module.startswith("keras."):
        evidence.append(f"the .keras file says it comes from module {layer.module!r}")
    forms = SAVED_FORMS.get(generation, {})
    form = forms.get(cls)
    if form is not None:
        keys = set(layer.config)
        unknown = keys - form.required - form.optional - BASE_KEYS
        for name, other in SAVED_FORMS.items():  # keys of the same class in the other generation
            theirs = unknown & (other[cls].required | other[cls].optional) if name != generation else set()
            if theirs:
                evidence.append(
                    f"its config holds {', '.join(sorted(theirs))}, which only {GENERATION_NAMES[name]}'s {cls} "
                    f"saves, and the file was saved by {GENERATION_NAMES.get(generation, generation)}"
                )
                unknown -= theirs
        if unknown:
            evidence.append(f"its config holds {', '.join(sorted(unknown))}, which Keras' {cls} never saves")
        missing = sorted(form.required - keys)
        if missing:
            evidence.append(f"its config lacks {', '.join(missing)}, which Keras' {cls} always saves")
    counts = sorted(
        {_input_count(layer, i, input_keywords) for i in range(len(layer.inbound))} - set(input_counts or ())
    )
    if input_counts is not None and counts:
        takes = " or ".join(str(n) for n in input_counts)
        noun = "tensor" if counts[0] == 1 else "tensors"
        evidence.append(f"it is called on {counts[0]} {noun}, where Keras' {cls} takes {takes}")
    if weight_shapes is not None and layer.weights and not _shapes_fit(layer.weights, weight_shapes):
        held = ", ".join(_describe(name, array) for name, array in zip(_names(layer), layer.weights, strict=True))
        want = ", ".join(_shape_text(shape) for shape in weight_shapes) or "none"
        evidence.append(f"it holds weights {held}, where Keras' {cls} with this config holds {want}")
    return evidence


def _input_count(layer: LayerSpec, node: int, keywords: tuple[str, ...]) -> int:
    tensors = layer.node_tensors[node] if node < len(layer.node_tensors) else {}
    return len(layer.inbound[node]) + sum(1 for key in keywords if key in tensors)


def _shapes_fit(arrays: Sequence[np.ndarray], shapes: Sequence[tuple[int | None, ...]]) -> bool:
    if len(arrays) != len(shapes):
        return False
    return all(
        array.ndim == len(shape) and all(e is None or e == a for e, a in zip(shape, array.shape, strict=True))
        for array, shape in zip(arrays, shapes, strict=True)
    )


def _names(layer: LayerSpec) -> list[str]:
    """The writer's short names (`att/att_weight:0` -> `att_weight`); `w<i>` where it gave none (.keras `vars/<i>`)."""
    stored = layer.stored_names if len(layer.stored_names) == len(layer.weights) else ("",) * len(layer.weights)
    short = [name.rsplit("/", 1)[-1].split(":")[0] for name in stored]
    return [name if name and not name.isdigit() else f"w{i}" for i, name in enumerate(short)]


def _describe(name: str, array: np.ndarray) -> str:
    return f"{name} {_shape_text(array.shape)}"


def _shape_text(shape: Sequence[int | None]) -> str:
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
