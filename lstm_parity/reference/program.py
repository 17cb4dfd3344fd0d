"""Small batches as one straight list of NumPy calls on buffers allocated once per input shape.

At a batch of a few sequences the arithmetic is tiny and the time goes to Python: walking the
graph, each layer's checks, each step's views. A Program does all of that once: it runs the model
the ordinary way to learn every tensor's shape, allocates a buffer per tensor, and writes the whole
forward pass down as a list of (function, arguments) calls that read and write those buffers. A
run copies the inputs in, makes the calls, and returns the outputs as new arrays.

Most layers appear as one call of their built function (the same code as the ordinary path, its
result copied into the layer's buffer). Dense (program_dense.py) and the common LSTM
(program_lstm.py, six calls a step) are written out.

When: a batch of up to SMALL_BATCH rows whose input shapes the prepared model has been given before
(a shape seen once may never come back: sequences of varying lengths run the ordinary way), where
nothing is masked, no call passes tensors as keywords, no state is carried, no plugin computes a
layer, and the buffers fit in PROGRAM_BYTES. Every run of a shape's program gives the same numbers;
they may differ from the ordinary path's in the last bit (the LSTM groups its sums differently).
A shape's programs form a pool: a thread takes one, runs it and puts it back, so threads never share
buffers. tests/test_program.py holds programs to the textbook loop and to Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec import ModelSpec, TensorRef
from . import program_dense, program_lstm, recurrent  # noqa: F401 - the emitters' modules register them
from .graph import node_call, run_graph
from .layers import Call, CallFn, Context
from .program_emit import EMITTERS, Emitted, Op
from .quiet import float_quiet

if TYPE_CHECKING:
    from .graph import Node
    from .prepared import Prepared

SMALL_BATCH = 16  # rows up to which a program runs (measured: make bench, "tutorial b=1")
KEPT = 16  # input shapes remembered per prepared model (seen, refused, or their programs); least recent forgotten
POOL = 4  # programs kept per shape: more threads running one shape at once make theirs and drop them after
PROGRAM_BYTES = 8 * 2**20  # a program's buffers at most, checked before allocating: longer sequences stay ordinary
SEEN, REFUSED = "seen once", "refused"  # what a shape has come to, when not a pool of programs


class Program:
    """The forward pass at one set of input shapes: copy in, `ops`, then `finals` give the outputs."""

    def __init__(self, homes: list[np.ndarray], ops: list[Op], finals: list[Op]):
        self.homes, self.ops, self.finals = homes, ops, finals  # finals: one call per model output
        self.single = len(homes) == 1 and len(finals) == 1  # the common case, without loops around it

    @float_quiet
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for `inputs` (arrays of the shapes it was made for), new arrays."""
        if self.single:
            self.homes[0][...] = inputs[0]  # assignment casts as astype does, at half np.copyto's cost
            for fn, args in self.ops:
                fn(*args)
            fn, args = self.finals[0]
            return [fn(*args)]
        for home, x in zip(self.homes, inputs, strict=True):
            home[...] = x
        for fn, args in self.ops:
            fn(*args)
        return [fn(*args) for fn, args in self.finals]


def run_program(spec: ModelSpec, ready: Prepared, inputs: list[np.ndarray]) -> list[np.ndarray] | None:
    """The outputs for `inputs` (arrays: forward sees to it), computed by their shapes' program (or by
    the ordinary pass that found the shapes do not qualify); None when the ordinary path is to compute
    them (module: When)."""
    if not ready.kept or not recurrent.FAST_PATHS:
        return None
    key: tuple[Any, ...]
    if len(inputs) == 1:
        x = inputs[0]
        key = (x.shape, x.dtype)
        if not x.shape or not 0 < x.shape[0] <= SMALL_BATCH:
            return None
    else:
        key = tuple((x.shape, x.dtype) for x in inputs)
        if any(not x.shape or not 0 < x.shape[0] <= SMALL_BATCH for x in inputs):
            return None
    pool = ready.programs.get(key)
    if pool is None or pool is SEEN or pool is REFUSED:
        return _first_runs(spec, ready, inputs, key, pool)
    try:
        program = pool.pop()  # atomic: no two threads take the same program
    except IndexError:  # every program of this shape is running in another thread
        program, outputs = make_program(spec, ready, inputs)
        if program is None:
            return outputs
    try:  # noqa: SIM105 - contextlib.suppress costs a few times more per call
        ready.programs.move_to_end(key)  # recently used: the last to be forgotten
    except KeyError:  # forgotten meanwhile by another thread: this program still runs
        pass
    try:
        return program.run(inputs)
    finally:
        if len(pool) < POOL:
            pool.append(program)


def _first_runs(
    spec: ModelSpec, ready: Prepared, arrays: list[np.ndarray], key: tuple, state: Any
) -> list[np.ndarray] | None:
    """A shape new to the model is remembered and computed the ordinary way; on its second call its
    program is made (or the shape refused, until it is forgotten)."""
    if state is REFUSED:
        return None
    program, outputs = make_program(spec, ready, arrays) if state is SEEN else (None, None)
    pool: list[Program] = []
    _remember(ready, key, SEEN if state is None else pool if program is not None else REFUSED)
    if program is None:
        return outputs  # computed while making it, when it got that far
    try:
        return program.run(arrays)
    finally:
        pool.append(program)


def _remember(ready: Prepared, key: tuple, value: Any) -> None:
    with ready.lock:
        ready.programs[key] = value
        ready.programs.move_to_end(key)
        while len(ready.programs) > KEPT:
            ready.programs.popitem(last=False)


def make_program(
    spec: ModelSpec, ready: Prepared, inputs: list[np.ndarray]
) -> tuple[Program | None, list[np.ndarray] | None]:
    """The Program for inputs of these shapes, or None when the model does not qualify (see module);
    and, when it is refused after the ordinary pass that learns the shapes, that pass's outputs."""
    if not all(_plain(layer, node) for layer, node, _ in ready.schedule):
        return None, None
    values: dict[TensorRef, tuple[np.ndarray, np.ndarray | None]] = {}
    outputs = run_graph(spec, ready.fns, ready.schedule, inputs, ready.dtype, False, values).outputs
    if any(mask is not None for _, mask in values.values()):
        return None, outputs
    budget = PROGRAM_BYTES - sum(value.nbytes for value, _ in values.values())  # a buffer per tensor
    if budget < 0:
        return None, outputs
    consumers = _consumers(ready.schedule)
    ctx = Context(ready.semantics, ready.dtype, spec.source, keras_version=spec.keras_version)
    emitted = []
    for layer, node, refs in ready.schedule:
        made = _emit(layer, node, refs, values, ctx, ready.derived, budget)
        budget -= made.nbytes if made else 0
        emitted.append(made)
    buffers = _buffers(spec, ready.schedule, emitted, values, consumers)
    skips = _read_halves(spec, ready.schedule, emitted, consumers)
    ops: list[Op] = []
    finals: dict[TensorRef, Op] = {}
    for (layer, node, refs), made, skip in zip(ready.schedule, emitted, skips, strict=True):
        ins = [buffers[r] for r in refs]
        outs = [buffers[ref] for ref in _outputs(values, layer.name, node)]
        only = (layer.name, node, 0)
        last = made.final(ins, outs) if made and len(outs) == 1 and spec.outputs.count(only) == 1 else None
        if last is not None and only not in consumers:
            ops += last[0]
            finals[only] = last[1]
        elif made is not None:
            ops += made.ops(ins, outs, skip)
        else:
            call = node_call(layer, node, [], values)  # keywords only (`training`, ...): _plain saw to that
            ops.append((_call_layer, (ready.fns[layer.name], ins, outs, call)))
    copies = [finals.get(ref, (np.array, (buffers[ref],))) for ref in spec.outputs]  # buffers are reused
    return Program([buffers[ref] for ref in spec.inputs], ops, copies), None


def _read_halves(
    spec: ModelSpec, order: list[Node], emitted: list[Emitted | None], consumers: dict[TensorRef, int]
) -> list[frozenset[int]]:
    """Per call, the outputs it need not write: those its one reader takes as halves (an LSTM's last h
    read by a Dense at batch 1, see Emitted.halves)."""
    where = {(layer.name, node): k for k, (layer, node, _) in enumerate(order)}
    skips: list[set[int]] = [set() for _ in order]
    for (_, _, refs), made in zip(order, emitted, strict=True):
        if made is None or len(refs) != 1 or consumers[refs[0]] != 1 or refs[0] in spec.outputs:
            continue
        producer = where.get((refs[0][0], refs[0][1]), -1)  # -1: a model input
        source = emitted[producer] if producer >= 0 else None
        view = source.halves(refs[0][2]) if source is not None else None
        if view is not None and made.read_halves(view):
            skips[producer].add(refs[0][2])
    return [frozenset(skip) for skip in skips]


def _plain(layer: Any, node: int) -> bool:
    """Does call `node` pass no tensors as keywords (an explicit mask among them) or as op arguments?"""
    tensors = layer.node_tensors[node] if node < len(layer.node_tensors) else {}
    template = layer.node_args[node] if node < len(layer.node_args) else ()
    return not tensors and not template


def _consumers(order: list[Node]) -> dict[TensorRef, int]:
    """How many calls take each tensor."""
    counts: dict[TensorRef, int] = {}
    for _, _, refs in order:
        for ref in refs:
            counts[ref] = counts.get(ref, 0) + 1
    return counts


def _outputs(values: dict[TensorRef, tuple], name: str, node: int) -> list[TensorRef]:
    """The tensors call `node` of layer `name` produced, in order."""
    refs: list[TensorRef] = []
    while (name, node, len(refs)) in values:
        refs.append((name, node, len(refs)))
    return refs


def _emit(layer: Any, node: int, refs: tuple, values: dict, ctx: Context, shared: dict, budget: int) -> Emitted | None:
    emitter = EMITTERS.get(layer.class_name)
    if emitter is None:
        return None
    outs = [values[ref][0] for ref in _outputs(values, layer.name, node)]
    return emitter(layer, ctx, [values[r][0] for r in refs], outs, shared, budget)


def _buffers(
    spec: ModelSpec, order: list[Node], emitted: list[Emitted | None], values: dict, consumers: dict
) -> dict[TensorRef, np.ndarray]:
    """A buffer per tensor: C-contiguous, except a model input taken by one written-out layer only,
    which is copied straight to the view that layer reads (its `homes`)."""
    buffers: dict[TensorRef, np.ndarray] = {}
    for (_, _, refs), made in zip(order, emitted, strict=True):
        for index, home in (made.homes if made else {}).items():
            ref = refs[index]
            if ref in spec.inputs and consumers[ref] == 1 and ref not in spec.outputs and ref not in buffers:
                buffers[ref] = home
    for ref, (value, _) in values.items():
        buffers.setdefault(ref, np.empty_like(value, order="C"))
    return buffers


def _call_layer(fn: CallFn, inputs: list[np.ndarray], outputs: list[np.ndarray], call: Call) -> None:
    """A layer the program does not write out: its built function, its results copied into its buffers."""
    result = fn(inputs, [None] * len(inputs), call)
    for buffer, value in zip(outputs, result.outputs, strict=True):
        buffer[...] = value
