"""The NumPy forward pass over a ModelSpec: layers in dependency order, every tensor kept.

`forward` returns the model outputs and, on request, every layer's outputs and every recurrent
layer's per-timestep gate values, for per-layer divergence reports and gate traces. It chooses how:
the graph pass (graph.py) per chunk of a large batch on several threads, once for recording and
stateful runs, and a program (program.py) for a small batch of shapes seen before; the model's build
is kept per spec (prepared.py). `forward_batches` runs stateful models batch by batch as predict does.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError
from ..spec import ModelSpec
from .graph import ForwardResult, build, run_graph, schedule, stateful_layers
from .parallel import default_threads, map_chunks, plan_rows
from .prepared import prepare
from .program import run_program

__all__ = ["ForwardResult", "build", "forward", "forward_batches", "predict_batches", "stateful_layers"]


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
    numbers are the same as in one pass. A batch of 1 to 16 rows whose input shapes this spec was
    given before in this dtype (among the 16 most recent) runs as a program instead, where the model
    qualifies (program.py: no masks, no stateful layers, buffers within budget; one thread, chunk
    options unused): the same numbers on every such call, which may differ from the first call's (the
    ordinary pass) in the last bit.
    Raises UnsupportedError for layers/options not implemented, BadInputError for bad shapes.
    """
    semantics = semantics or spec.semantics
    if record or states is not None:  # built per call: gate recorders and state stores are the call's
        fns = build(spec, semantics, dtype, record, states)
        _check_count(spec, inputs)
        return run_graph(spec, fns, schedule(spec), inputs, dtype, record)
    ready = prepare(spec, semantics, dtype)
    _check_count(spec, inputs)
    if len(inputs) != 1 or type(inputs[0]) is not np.ndarray:
        inputs = _arrays(spec, inputs)  # lists too, whichever path computes them
    if not ready.stateful:
        outputs = run_program(spec, ready, inputs)
        if outputs is not None:
            return ForwardResult(outputs)
    batches = {x.shape[0] if x.ndim else -1 for x in inputs}
    if ready.stateful or len(batches) != 1 or batches.pop() <= 0:  # no rows: one pass, no chunk would shape them
        return run_graph(spec, ready.fns, ready.schedule, inputs, dtype, False)
    threads = threads or default_threads()
    x = inputs[0]
    rows = chunk_rows or plan_rows(x.shape[0], x.shape[1] if x.ndim > 2 else 1, widest_gates(spec), threads)
    outputs = map_chunks(
        lambda part: run_graph(spec, ready.fns, ready.schedule, part, dtype, False).outputs, inputs, rows, threads
    )
    return ForwardResult(outputs=outputs)


def _arrays(spec: ModelSpec, inputs: list) -> list[np.ndarray]:
    arrays = []
    for index, x in enumerate(inputs):
        try:
            arrays.append(np.asarray(x))
        except (ValueError, TypeError) as exc:  # a ragged nested list
            raise BadInputError(f"{spec.source}: input {index} is not an array: {exc}") from None
    return arrays


def _check_count(spec: ModelSpec, inputs: list[np.ndarray]) -> None:
    if len(inputs) != len(spec.inputs):
        raise BadInputError(f"{spec.source}: the model takes {len(spec.inputs)} inputs, got {len(inputs)}")


def widest_gates(spec: ModelSpec) -> int:
    """The widest weight matrix's column count: for an LSTM of h units, 4h (its step pre-activations)."""
    return max((w.shape[-1] for layer in spec.layers for w in layer.weights if w.ndim), default=1)


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
