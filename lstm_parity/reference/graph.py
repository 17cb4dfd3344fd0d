"""One pass over a model's layer graph: the layers built, their calls put in order, each call computed.

`build` validates every layer and casts its weights (UnsupportedError before any compute);
`schedule` orders the calls so that each comes after those computing its inputs; `run_graph` computes
them in that order, keeping every tensor with its Keras mask. forward.py runs it per chunk of a batch,
prepared.py keeps a model's build and schedule, program.py runs it once to learn a model's shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadInputError
from ..formats.keras3_masks import MASK_CONSUMERS
from ..spec import TENSOR_SLOT, LayerSpec, ModelSpec, TensorRef, mask_input
from .layers import NO_CALL, Call, CallFn, Context, build_call
from .quiet import float_quiet

Node = tuple[LayerSpec, int, tuple[TensorRef, ...]]  # a layer, which of its calls, the call's inputs


@dataclass
class ForwardResult:
    """`outputs` in the model's output order; `layer_outputs[name]` the tensors of the layer's
    first call and `traces[name]` its gate values (batch, time, units) when recording."""

    outputs: list[np.ndarray]
    layer_outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    traces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def build(
    spec: ModelSpec, semantics: str, dtype: np.dtype | type, record: bool = False, states: dict | None = None
) -> dict[str, CallFn]:
    """Validate and prepare every non-input layer; raises UnsupportedError before any compute.

    `states` is the store through which stateful recurrent layers carry their states from one
    call to the next (the batches of one `predict`); None keeps nothing.
    """
    return build_in_context(spec, semantics, dtype, record, states)[0]


@float_quiet
def build_in_context(
    spec: ModelSpec, semantics: str, dtype: np.dtype | type, record: bool = False, states: dict | None = None
) -> tuple[dict[str, CallFn], Context]:
    """build's functions, and the Context they were built in (plugins note per context what they computed)."""
    ctx = Context(
        semantics=semantics,
        dtype=np.dtype(dtype),
        source=spec.source,
        record=record,
        states=states,
        keras_version=spec.keras_version,
    )
    fns = {layer.name: build_call(layer, ctx) for layer in spec.layers if layer.class_name != "InputLayer"}
    return fns, ctx


def schedule(spec: ModelSpec) -> list[Node]:
    """Every call of every non-input layer, each after the calls that compute its inputs (file
    order among the ready ones). Raises BadInputError naming the layers whose outputs nothing computes."""
    pending = [
        (layer, node_index, refs)
        for layer in spec.layers
        if layer.class_name != "InputLayer"
        for node_index, refs in enumerate(layer.inbound)
    ]
    done = {(ref[0], ref[1]) for ref in spec.inputs}  # calls whose outputs exist: the model's inputs
    order: list[Node] = []
    while pending:
        ready = [item for item in pending if all((r[0], r[1]) in done for r in item[0].node_refs(item[1]))]
        if not ready:
            missing = sorted({r[0] for item in pending for r in item[0].node_refs(item[1]) if (r[0], r[1]) not in done})
            raise BadInputError(f"{spec.source}: the model graph cannot be computed: no value for {missing[:5]}")
        for item in ready:
            order.append(item)
            done.add((item[0].name, item[1]))
            pending.remove(item)
    return order


@float_quiet
def run_graph(
    spec: ModelSpec,
    fns: dict[str, CallFn],
    order: list[Node],
    inputs: list[np.ndarray],
    dtype: np.dtype | type,
    record: bool,
    values: dict[TensorRef, tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> ForwardResult:
    """One pass over the layer calls in `order` (`schedule`'s); `values`, if given, receives every
    tensor computed with its Keras mask."""
    values = {} if values is None else values
    for ref, x in zip(spec.inputs, inputs, strict=True):
        integer = np.asarray(x).dtype.kind in "iu"  # token ids stay integers
        values[ref] = (np.asarray(x) if integer else np.asarray(x, dtype=dtype), None)
    result = ForwardResult(outputs=[])
    for layer, node_index, refs in order:
        _require(spec, values, layer.node_refs(node_index))
        args = [values[r][0] for r in refs]
        masks = [values[r][1] for r in refs]
        if layer.node_masks and not layer.node_masks[node_index] and layer.class_name in MASK_CONSUMERS:
            masks = [None] * len(refs)  # Keras 3 called this layer without a mask
        masks = given_masks(layer, node_index, values) or masks
        call = node_call(layer, node_index, args, values)
        try:
            layer_result = fns[layer.name](args, masks, call)
        except (ValueError, IndexError) as exc:  # shapes that config, weights and input do not agree on
            shapes = ", ".join(str(a.shape) for a in args)
            raise BadInputError(
                f"{spec.source}: layer {layer.name!r} ({layer.class_name}) cannot be computed "
                f"on input shape(s) {shapes}: {exc}"
            ) from None
        for index, (out, mask) in enumerate(zip(layer_result.outputs, layer_result.masks, strict=True)):
            values[(layer.name, node_index, index)] = (out, mask)
        if record and node_index == 0:
            result.layer_outputs[layer.name] = layer_result.outputs
            if layer_result.trace:
                result.traces[layer.name] = layer_result.trace
    for ref in spec.outputs:
        if ref not in values:
            raise BadInputError(f"{spec.source}: model output {ref} is never computed")
        result.outputs.append(values[ref][0])
    return result


def _require(spec: ModelSpec, values: dict[TensorRef, tuple], refs: tuple[TensorRef, ...]) -> None:
    """Raise BadInputError when a tensor in `refs` was never computed (an output index its layer lacks)."""
    missing = [ref for ref in refs if ref not in values]
    if missing:
        names = sorted({ref[0] for ref in missing})  # as schedule names them
        raise BadInputError(f"{spec.source}: the model graph cannot be computed: no value for {names[:5]}")


def given_masks(layer: LayerSpec, node: int, values: dict[TensorRef, tuple]) -> list[np.ndarray | None]:
    """The masks call `node` was given explicitly (`mask=`), one per positional input (None where the
    call gave none), as booleans; an empty list when it was given none: Keras then derives them."""
    given = {
        mask_input(key): ref
        for key, ref in (layer.node_tensors[node] if node < len(layer.node_tensors) else {}).items()
        if mask_input(key) is not None
    }
    if not given:
        return []
    masks: list[np.ndarray | None] = [None] * len(layer.inbound[node])
    for index, ref in given.items():
        if index is not None and index < len(masks):
            masks[index] = np.asarray(values[ref][0]).astype(bool)
    return masks


def node_call(layer: LayerSpec, node: int, args: list[np.ndarray], values: dict[TensorRef, tuple]) -> Call:
    """The keyword arguments (and, for op layers, the positional arguments as saved) of call `node`;
    explicit masks are not keywords here (see `given_masks`)."""
    kwargs = layer.node_kwargs[node] if node < len(layer.node_kwargs) else {}
    tensors = layer.node_tensors[node] if node < len(layer.node_tensors) else {}
    tensors = {key: ref for key, ref in tensors.items() if mask_input(key) is None}
    template = layer.node_args[node] if node < len(layer.node_args) else ()
    if not kwargs and not tensors and not template:
        return NO_CALL
    return Call(
        kwargs=kwargs,
        tensors={key: values[ref][0] for key, ref in tensors.items()},
        tensor_masks={key: values[ref][1] for key, ref in tensors.items()},
        args=tuple(fill(item, args) for item in template),
    )


def fill(item: Any, args: list[np.ndarray]) -> Any:
    """A saved argument with its `{"__input__": i}` slots replaced by the node's i-th input."""
    if isinstance(item, dict):
        if TENSOR_SLOT in item and len(item) == 1:
            return args[item[TENSOR_SLOT]]
        return {key: fill(value, args) for key, value in item.items()}
    if isinstance(item, list):
        return [fill(value, args) for value in item]
    return item


def stateful_layers(spec: ModelSpec) -> list[str]:
    """Names of the layers (or wrappers) whose recurrent states persist across batches."""
    names = []
    for layer in spec.layers:
        inner = layer.config.get("layer")
        if not isinstance(inner, dict):
            inner = {}
        if layer.config.get("stateful") or (inner.get("config") or {}).get("stateful"):
            names.append(layer.name)
    return names
