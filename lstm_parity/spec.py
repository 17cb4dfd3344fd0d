"""A framework-free description of a saved Keras model: layers, options, weights and wiring.

Readers in `lstm_parity.formats` build a ModelSpec; the reference in `lstm_parity.reference`
computes it. Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# (layer name, node index, tensor index): Keras' own address of a tensor in a functional graph.
TensorRef = tuple[str, int, int]
# In `LayerSpec.node_args`, `{TENSOR_SLOT: i}` stands where the call had its i-th input tensor.
TENSOR_SLOT = "__input__"
# In `LayerSpec.node_tensors`, a `mask=` the call was given explicitly: "mask" for a single tensor (the
# mask of the first input), "mask[i]" for the i-th entry of a list (the mask of the i-th input).
MASK_KEYWORD = "mask"


def mask_input(keyword: str) -> int | None:
    """The positional input whose mask tensor keyword `keyword` holds ("mask" -> 0, "mask[2]" -> 2);
    None when `keyword` is not a mask."""
    if keyword == MASK_KEYWORD:
        return 0
    if keyword.startswith(MASK_KEYWORD + "[") and keyword.endswith("]") and keyword[5:-1].isdigit():
        return int(keyword[5:-1])
    return None


@dataclass(frozen=True)
class LayerSpec:
    """One layer as saved.

    `config` is the layer's Keras config dict as stored in the file (options by Keras name);
    `weights` are the arrays in Keras' own order (the order of `layer.get_weights()`), exactly as
    stored, with their textbook `weight_names` ("kernel", ...) and the `stored_names` the writer
    gave them (for reports only: those differ between writers and are never parsed).
    `inbound` lists, per call of the layer (node), the tensors it consumes positionally.
    Per node too: `node_kwargs` the call's non-tensor keyword arguments as saved (e.g. `training`,
    `use_causal_mask`, `return_attention_scores`, an op's `axis`), `node_tensors` its tensor keyword
    arguments (MultiHeadAttention's `value`, an op's `y`; a `mask=` passed explicitly, under the keys
    of `mask_input`, which the forward pass uses as the inputs' masks) and, for op layers only, `node_args` the
    positional arguments as saved with each tensor replaced by `{"__input__": i}` (i indexes the
    node's `inbound`), so constants keep their places. `module`/`registered_name` are what a `.keras`
    file says about the class ("" when the file does not say).
    """

    name: str
    class_name: str
    config: dict[str, Any]
    weights: tuple[np.ndarray, ...] = ()
    weight_names: tuple[str, ...] = ()
    stored_names: tuple[str, ...] = ()
    inbound: tuple[tuple[TensorRef, ...], ...] = ()
    converted: str = ""  # what the reader changed to reach today's layout (Keras 1, CuDNN), if anything
    # Keras 3 functional graphs record, per call, whether the layer was given a mask; Keras 3 gives
    # none to an RNN called with initial_state. Empty: masks reach every call (Keras 2, Sequential).
    node_masks: tuple[bool, ...] = ()
    node_kwargs: tuple[dict[str, Any], ...] = ()
    node_tensors: tuple[dict[str, TensorRef], ...] = ()
    node_args: tuple[tuple[Any, ...], ...] = ()
    module: str = ""
    registered_name: str = ""

    def node_refs(self, node: int) -> tuple[TensorRef, ...]:
        """Every tensor call `node` depends on: its positional inputs, then its tensor keywords."""
        keywords = self.node_tensors[node] if node < len(self.node_tensors) else {}
        return self.inbound[node] + tuple(keywords.values())


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: layers in file order, the graph's input and output tensors, provenance.

    `keras_version` is the version string of the Keras that saved the file ("" when unknown),
    `semantics` the Keras major whose math the file must be computed with ("keras2" or "keras3").
    `input_shapes` are per-input shapes with None for unknown dimensions (batch first).
    """

    layers: tuple[LayerSpec, ...]
    inputs: tuple[TensorRef, ...]
    outputs: tuple[TensorRef, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]
    keras_version: str
    semantics: str
    source: str
    file_format: str
    model_class: str = "Sequential"
    sha256: str = ""

    def layer(self, name: str) -> LayerSpec:
        """Return the layer called `name`; raises KeyError if there is none."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def consumers(self, name: str) -> list[LayerSpec]:
        """The layers that take an output of layer `name` as input."""
        return [
            layer
            for layer in self.layers
            if any(ref[0] == name for node in range(len(layer.inbound)) for ref in layer.node_refs(node))
        ]

    def token_inputs(self) -> list[bool]:
        """Per model input: does it feed an Embedding (so it holds integer token ids)?"""
        return [any(c.class_name == "Embedding" for c in self.consumers(name)) for name in self.input_names]

    @property
    def input_names(self) -> list[str]:
        return [ref[0] for ref in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [ref[0] if ref[2] == 0 else f"{ref[0]}_{ref[2]}" for ref in self.outputs]


def semantics_for_version(keras_version: str) -> str:
    """Map the saving Keras' version string to the semantics we compute it with.

    "1.x"/"2.x" (standalone Keras and tf.keras, e.g. "2.3.0-tf") -> "keras2"; "3.x" -> "keras3".
    An unknown or empty version is treated as Keras 2 only if it does not start with 3.
    """
    major = keras_version.strip().split(".", 1)[0]
    return "keras3" if major == "3" else "keras2"
