"""What reaches and leaves each layer, for people who port the model: the shape of every output, and
which recurrent layers are given a Keras mask (and by which layer)."""

from __future__ import annotations

from .inputs import InputPlan, generate_inputs
from .reference.forward import forward
from .spec import LayerSpec, ModelSpec, TensorRef, mask_input

Shape = tuple[int | None, ...]

# Layers that make a mask, and layers whose output keeps the mask of their input (Keras' supports_masking
# without a compute_mask of their own; merge layers combine their inputs' masks). Any other layer's output
# carries no mask. Recurrent layers keep it only with return_sequences.
PASSING = frozenset(
    {
        "Activation",
        "ActivityRegularization",
        "AlphaDropout",
        "BatchNormalization",
        "Dense",
        "Dropout",
        "ELU",
        "GaussianDropout",
        "GaussianNoise",
        "LayerNormalization",
        "LeakyReLU",
        "PReLU",
        "ReLU",
        "Softmax",
        "SpatialDropout1D",
        "ThresholdedReLU",
        "TimeDistributed",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
    }
)
RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "Bidirectional"})


def output_shapes(spec: ModelSpec) -> dict[str, list[Shape]]:
    """Every layer's output shapes (of its first call), batch first, None for an axis that changes with
    the batch size or the number of timesteps: the reference is run on two tiny generated inputs.
    Raises what `forward` raises (UnsupportedError for a layer the reference does not compute)."""
    runs = []
    for samples, timesteps in ((1, 2), (2, 3)):
        inputs = generate_inputs(spec, InputPlan(samples=samples, timesteps=timesteps))
        runs.append(forward(spec, inputs, record=True).layer_outputs)
    return {
        name: [
            tuple(a if a == b else None for a, b in zip(x.shape, y.shape, strict=True))
            for x, y in zip(outputs, runs[1][name], strict=True)
        ]
        for name, outputs in runs[0].items()
    }


def model_output_shapes(spec: ModelSpec) -> list[Shape]:
    """The shape of each model output (see `output_shapes`)."""
    shapes = output_shapes(spec)
    return [shapes[name][index] for name, _, index in spec.outputs]


def mask_sources(spec: ModelSpec) -> dict[str, str]:
    """Recurrent layer name -> the layer whose mask it is given (a Masking layer, an Embedding with
    mask_zero, or the layer computing a mask the call was given explicitly with `mask=`), following
    the graph as Keras passes masks on (PASSING; recurrent layers only with return_sequences; a
    Keras 3 call recorded without a mask gets none)."""
    calls: dict[tuple[str, int], _Masks] = {(name, node): _Masks(()) for name, node, _ in spec.inputs}
    received: dict[str, str] = {}
    pending = [
        (layer, node) for layer in spec.layers if layer.class_name != "InputLayer" for node in range(len(layer.inbound))
    ]
    while pending:
        ready = [(layer, node) for layer, node in pending if all(ref[:2] in calls for ref in layer.node_refs(node))]
        if not ready:
            break  # a graph the reference refuses anyway
        for layer, node in ready:
            pending.remove((layer, node))
            incoming = next((m for m in (calls[ref[:2]].of(ref) for ref in layer.inbound[node]) if m), None)
            if layer.class_name in RECURRENT and node < len(layer.node_masks) and not layer.node_masks[node]:
                incoming = None  # Keras 3 called it without a mask (e.g. with initial_state)
            keywords = layer.node_tensors[node] if node < len(layer.node_tensors) else {}
            given = [ref[0] for key, ref in keywords.items() if mask_input(key) == 0]
            incoming = given[0] if given else incoming
            if incoming and layer.class_name in RECURRENT:
                received.setdefault(layer.name, incoming)
            calls[(layer.name, node)] = _output_masks(layer, incoming)
    return received


class _Masks:
    """The mask source carried by each output of one call: `listed[k]` by output k, `others` by the rest."""

    def __init__(self, listed: tuple[str | None, ...], others: str | None = None) -> None:
        self.listed, self.others = listed, others

    def of(self, ref: TensorRef) -> str | None:
        return self.listed[ref[2]] if ref[2] < len(self.listed) else self.others


def _output_masks(layer: LayerSpec, incoming: str | None) -> _Masks:
    config = layer.config
    if layer.class_name == "Masking" or (layer.class_name == "Embedding" and config.get("mask_zero")):
        return _Masks((layer.name,))
    if layer.class_name in RECURRENT:
        inner = config.get("layer") if layer.class_name == "Bidirectional" else None
        inner_config = (inner.get("config") or {}) if isinstance(inner, dict) else config
        keeps = incoming if inner_config.get("return_sequences") else None
        both = layer.class_name == "Bidirectional" and config.get("merge_mode", "concat") is None
        return _Masks((keeps, keeps) if both else (keeps,))  # the states (return_state) carry none
    return _Masks((), incoming if layer.class_name in PASSING else None)
