"""Which `mask=` tensors of a Keras 3 graph are the masks Keras derived itself.

Keras 3 records each mask it attaches to a tensor as keras.ops nodes (Embedding's `ids != 0`,
Masking's `any(x != mask_value, axis=-1)`, a merge's `logical_or`, Concatenate's
`any(concatenate(...), axis=-1)`) and passes it to the next layer as `mask=`, exactly as it records
a mask the user's code built from the same ops. `DerivedMasks` replays, on tensor references, the
masks the reference itself gives each tensor (the output masks of reference/*.py): a call whose
saved mask is exactly that is computed with the reference's own masks, and those op nodes fall away;
any other saved mask (the user's, or one this replay does not name) is computed from the graph, as
Keras computes it. So the replay only has to be right where it names a mask, never complete.
"""

from __future__ import annotations

import json
from typing import Any

from ..spec import TENSOR_SLOT, TensorRef

UNKNOWN: TensorRef = ("", -1, -1)  # a mask the replay does not name: equal to no saved mask

# Classes whose masks the forward pass clears when a Keras 3 call was given none (an RNN called
# with initial_state gets no mask in Keras 3).
MASK_CONSUMERS = frozenset(
    {"LSTM", "GRU", "SimpleRNN", "ConvLSTM2D", "Bidirectional", "TimeDistributed", "GlobalAveragePooling1D"}
)
RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "ConvLSTM2D"})  # first output keeps the mask with return_sequences
# Reference layers whose first output keeps the first input's mask (reference/core.py's `_passing`
# and TimeDistributed).
PASSING = frozenset(
    {
        "Dense",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Softmax",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
        "ActivityRegularization",
        "Identity",
        "BatchNormalization",
        "LayerNormalization",
        "TimeDistributed",
    }
)
ATTENTION = frozenset({"Attention", "AdditiveAttention"})  # output 0 keeps the query's mask, through convert_to_tensor
ELEMENTWISE_MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


def _slot(index: int) -> dict[str, int]:
    return {TENSOR_SLOT: index}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class DerivedMasks:
    """The replay over one graph's parsed layers (objects with name, class_name, config, inbound,
    node_args, node_kwargs, node_mask and node_masks, as formats.config.ParsedLayer)."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = {layer.name: layer for layer in layers}
        self.ops: dict[tuple, TensorRef] = {}  # an op call's signature -> its first output, canonical
        self._canonical: dict[TensorRef, TensorRef] = {}
        self._masks: dict[TensorRef, TensorRef | None] = {}
        for layer in layers:
            if layer.class_name.startswith("ops."):
                for node in range(len(layer.inbound)):
                    self.canonical((layer.name, node, 0))

    def canonical(self, ref: TensorRef) -> TensorRef:
        """`ref`, or the first op output computed the same way from the same tensors (Keras 3 records
        one op node per mask it derives, so the same mask can be recorded several times)."""
        layer = self.layers.get(ref[0])
        if layer is None or not layer.class_name.startswith("ops.") or ref[1] >= len(layer.inbound) or ref[2]:
            return ref
        if ref not in self._canonical:
            self._canonical[ref] = ref  # while computing: a cycle (a malformed graph) stays itself
            node = ref[1]
            config = {key: value for key, value in layer.config.items() if key != "name"}
            args = layer.node_args[node] if node < len(layer.node_args) else ()
            kwargs = layer.node_kwargs[node] if node < len(layer.node_kwargs) else {}
            refs = tuple(self.canonical(r) for r in layer.inbound[node])
            key = (layer.class_name[4:], refs, _canonical(list(args)), _canonical(kwargs), _canonical(config))
            self._canonical[ref] = self.ops.setdefault(key, ref)
        return self._canonical[ref]

    def is_derived(self, layer: Any, node: int) -> bool:
        """Is call `node` of `layer` given, as `mask=`, the masks the reference derives itself?"""
        saved = self._saved(layer, node)
        return saved is not None and saved == self._default(layer, node)

    def mask_of(self, ref: TensorRef) -> TensorRef | None:
        """The op node output holding the mask the reference gives tensor `ref` (None: no mask)."""
        if ref not in self._masks:
            self._masks[ref] = UNKNOWN  # while computing: a cycle (a malformed graph) names nothing
            self._masks[ref] = self._output_mask(ref)
        return self._masks[ref]

    def _op(self, name: str, refs: list[TensorRef | None], args: list[Any], **config: Any) -> TensorRef:
        if any(ref is None or ref == UNKNOWN for ref in refs):
            return UNKNOWN
        key = (name, tuple(refs), _canonical(args), _canonical({}), _canonical(config))
        return self.ops.get(key, UNKNOWN)

    def _saved(self, layer: Any, node: int) -> list[TensorRef | None] | None:
        """The call's saved `mask=`, one entry per positional input; None when it has none."""
        mask = layer.node_mask[node] if node < len(layer.node_mask) else None
        if mask is None:
            return None
        count = len(layer.inbound[node])
        listed = [None if m is None else self.canonical(m) for m in (mask if isinstance(mask, list) else [mask])]
        return (listed + [None] * count)[: max(count, len(listed))]

    def _default(self, layer: Any, node: int) -> list[TensorRef | None]:
        """The masks the forward pass gives the call when no explicit mask is placed (forward.py)."""
        refs = layer.inbound[node]
        if layer.node_masks and not layer.node_masks[node] and layer.class_name in MASK_CONSUMERS:
            return [None] * len(refs)
        return [self.mask_of(ref) for ref in refs]

    def _incoming(self, layer: Any, node: int) -> list[TensorRef | None]:
        saved, default = self._saved(layer, node), self._default(layer, node)
        return default if saved is None or saved == default else saved

    def _output_mask(self, ref: TensorRef) -> TensorRef | None:
        name, node, index = ref
        layer = self.layers.get(name)
        if layer is not None and layer.class_name == "InputLayer":
            return None
        if layer is None or node >= len(layer.inbound):
            return UNKNOWN
        refs, cls, config = list(layer.inbound[node]), layer.class_name, layer.config
        if cls == "Embedding":
            return self._op("NotEqual", refs[:1], [_slot(0), 0]) if config.get("mask_zero") and index == 0 else None
        if cls == "Masking":
            differs = self._op("NotEqual", refs[:1], [_slot(0), config.get("mask_value", 0.0)])
            return self._op("Any", [differs], [_slot(0)], axis=-1, keepdims=False)
        if cls.startswith("ops.") or not refs:
            return None
        masks = self._incoming(layer, node)
        if cls in RECURRENT:
            return masks[0] if index == 0 and config.get("return_sequences") else None
        if cls == "Bidirectional":
            inner = (config.get("layer") or {}).get("config") or {}
            merged = 2 if "merge_mode" in config and config["merge_mode"] is None else 1
            return masks[0] if index < merged and inner.get("return_sequences") else None
        if cls in PASSING:
            return masks[0] if index == 0 else None
        if cls in ATTENTION:  # Keras 3 passes the query's mask on through ops.convert_to_tensor
            if index or masks[0] is None:
                return None
            return self._op("ConvertToTensor", masks[:1], [_slot(0)], dtype=None, sparse=None, ragged=None)
        if cls in ELEMENTWISE_MERGES and index == 0:
            return self._logical_or(masks)
        if cls == "Concatenate" and index == 0:
            return self._concatenated(refs, masks, config.get("axis", -1))
        return None

    def _logical_or(self, masks: list[TensorRef | None]) -> TensorRef | None:
        """Keras 3 merges: no mask unless every input has one, then logical_or folded from the left."""
        if any(mask is None for mask in masks):
            return None
        merged = masks[0]
        for mask in masks[1:]:
            merged = self._op("LogicalOr", [merged, mask], [_slot(0), _slot(1)])
        return merged

    def _concatenated(self, refs: list[TensorRef], masks: list[TensorRef | None], axis: Any) -> TensorRef | None:
        """Keras 3 Concatenate: each input's mask (all True where it has none; broadcast when it has
        fewer axes), concatenated on the layer's axis, then any() over the last axis."""
        if all(mask is None for mask in masks):
            return None
        parts: list[TensorRef | None] = []
        for x, mask in zip(refs, masks, strict=True):
            if mask is None:
                parts.append(self._op("OnesLike", [x], [_slot(0)], dtype="bool"))
                continue
            widened = self._op(
                "LogicalOr",
                [
                    self._op("ExpandDims", [mask], [_slot(0)], axis=-1),
                    self._op("ZerosLike", [x], [_slot(0)], dtype="bool"),
                ],
                [_slot(0), _slot(1)],
            )
            parts.append(mask if widened == UNKNOWN else widened)
        joined = self._op("Concatenate", parts, [[_slot(i) for i in range(len(parts))]], axis=axis)
        return self._op("Any", [joined], [_slot(0)], axis=-1, keepdims=False)
