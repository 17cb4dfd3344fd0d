"""The NumPy forward pass over a ModelSpec: layers in dependency order, every tensor kept.

`forward` returns the model outputs and, on request, every layer's outputs and every recurrent
layer's per-timestep gate values, for per-layer divergence reports and gate traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadInputError
from ..formats.keras3_masks import MASK_CONSUMERS
from ..spec import TENSOR_SLOT, LayerSpec, ModelSpec, TensorRef, mask_input
from .layers import NO_CALL, Call, CallFn, Context, build_call
from .parallel import default_threads, map_chunks, plan_rows
from .prepared import Node, prepare, schedule
from .program import run_program
from .quiet import float_quiet


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


def forward(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    *,
    semantics: str | None = None,
    dtype: np.dtype | type = np.float64,
    record: bool = False,
    states: dict | None = None,
    threads: int | None = None,
    chunk_rows: int | None = None,
) -> ForwardResult:
    """Compute the model on `inputs` (one array per model input, batch first) in `dtype`.

    `semantics` ("keras2"/"keras3") defaults to that of the Keras generation that saved the file.
    Unless recording or carrying states, the batch is computed in chunks of `chunk_rows` rows
    (default: sized to the cache) on `threads` threads (default: one per core); every sample's
    numbers are the same as in one pass.
    Raises UnsupportedError for layers/options not implemented, BadInputError for bad shapes.
    """
    semantics = semantics or spec.semantics
    if record or states is not None:  # built per call: gate recorders and state stores are the call's
        fns = build(spec, semantics, dtype, record, states)
        _check_count(spec, inputs)
        return _run_graph(spec, fns, schedule(spec), inputs, dtype, record)
    ready = prepare(spec, semantics, dtype)
    _check_count(spec, inputs)
    if not ready.stateful:
        outputs = run_program(spec, ready, inputs, dtype)
        if outputs is not None:
            return ForwardResult(outputs)
    if ready.stateful or len({np.shape(x)[0] for x in inputs}) != 1:
        return _run_graph(spec, ready.fns, ready.schedule, inputs, dtype, False)
    threads = threads or default_threads()
    x = np.asarray(inputs[0])
    rows = chunk_rows or plan_rows(x.shape[0], x.shape[1] if x.ndim > 2 else 1, widest_gates(spec), threads)
    outputs = map_chunks(
        lambda part: _run_graph(spec, ready.fns, ready.schedule, part, dtype, False).outputs, inputs, rows, threads
    )
    return ForwardResult(outputs=outputs)


def _check_count(spec: ModelSpec, inputs: list[np.ndarray]) -> None:
    if len(inputs) != len(spec.inputs):
        raise BadInputError(f"{spec.source}: the model takes {len(spec.inputs)} inputs, got {len(inputs)}")


def widest_gates(spec: ModelSpec) -> int:
    """The widest weight matrix's column count: for an LSTM of h units, 4h (its step pre-activations)."""
    return max((w.shape[-1] for layer in spec.layers for w in layer.weights if w.ndim), default=1)


@float_quiet
def _run_graph(
    spec: ModelSpec,
    fns: dict[str, CallFn],
    order: list[Node],
    inputs: list[np.ndarray],
    dtype: np.dtype | type,
    record: bool,
    values: dict[TensorRef, tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> ForwardResult:
    """One pass over the layer calls in `order` (prepared.schedule's); `values`, if given, receives
    every tensor computed with its Keras mask."""
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
        masks = _given_masks(layer, node_index, values) or masks
        call = _call(layer, node_index, args, values)
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
        raise BadInputError(f"{spec.source}: the model graph cannot be computed: no value for {missing[:5]}")


def _given_masks(layer: LayerSpec, node: int, values: dict[TensorRef, tuple]) -> list[np.ndarray | None]:
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


def _call(layer: LayerSpec, node: int, args: list[np.ndarray], values: dict[TensorRef, tuple]) -> Call:
    """The keyword arguments (and, for op layers, the positional arguments as saved) of call `node`;
    explicit masks are not keywords here (see `_given_masks`)."""
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
        args=tuple(_fill(item, args) for item in template),
    )


def _fill(item: Any, args: list[np.ndarray]) -> Any:
    """A saved argument with its `{"__input__": i}` slots replaced by the node's i-th input."""
    if isinstance(item, dict):
        if TENSOR_SLOT in item and len(item) == 1:
            return args[item[TENSOR_SLOT]]
        return {key: _fill(value, args) for key, value in item.items()}
    if isinstance(item, list):
        return [_fill(value, args) for value in item]
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


def fixed_batch_size(spec: ModelSpec) -> int | None:
    """The batch size the model's inputs declare (stateful models must), or None when free."""
    sizes = {shape[0] for shape in spec.input_shapes if shape and shape[0] is not None}
    return sizes.pop() if len(sizes) == 1 else None


def forward_batches(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    *,
    semantics: str | None = None,
    dtype: np.dtype | type = np.float64,
    batch_size: int = 32,
    states: dict | None = None,
    record: bool = False,
) -> ForwardResult:
    """The reference as `model.predict` runs it: stateful layers carry their states from one batch
    to the next (batches of the model's fixed batch size), starting from `states` (a dict this call
    updates, so that the next chunk of a stream continues from here) or zeros; other models are
    computed in one pass, which gives the same numbers. With `record`, every layer's outputs too,
    computed under the same protocol (batch-first arrays over the whole input)."""
    if not stateful_layers(spec):
        return forward(spec, inputs, semantics=semantics, dtype=dtype, record=record)
    step = fixed_batch_size(spec) or batch_size
    states = {} if states is None else states
    parts = [
        forward(
            spec,
            [x[start : start + step] for x in inputs],
            semantics=semantics,
            dtype=dtype,
            states=states,
            record=record,
        )
        for start in range(0, inputs[0].shape[0], step)
    ]
    return ForwardResult(
        outputs=join_batches([part.outputs for part in parts]),
        layer_outputs={
            name: join_batches([part.layer_outputs[name] for part in parts]) for name in parts[0].layer_outputs
        },
    )


def predict_batches(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    *,
    semantics: str | None = None,
    dtype: np.dtype | type = np.float64,
    batch_size: int = 32,
    states: dict | None = None,
) -> list[np.ndarray]:
    """forward_batches' outputs: what `model.predict` returns."""
    return forward_batches(spec, inputs, semantics=semantics, dtype=dtype, batch_size=batch_size, states=states).outputs


def join_batches(batches: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-batch lists of arrays -> one list of arrays over all batches (concatenated on axis 0); a
    single batch is returned as it is, without a copy."""
    if len(batches) == 1:
        return list(batches[0])
    return [np.concatenate(arrays, axis=0) for arrays in zip(*batches, strict=True)]
