"""Small batches as one straight list of NumPy calls on buffers allocated once per input shape.

At a batch of a few sequences the arithmetic is tiny and the time goes to Python: building arrays,
walking the graph, each layer's checks, each step's views. A Program does all of that once, on the
first call with a given batch size and input shapes: it runs the model the ordinary way to learn
every tensor's shape, allocates a buffer per tensor, and writes the whole forward pass down as a
list of (function, arguments) calls that read and write those buffers. Later calls with the same
shapes copy the inputs in, make the calls, and copy the outputs out.

Most layers appear as one call of their built function (the same code as the ordinary path, its
result copied into the layer's buffer). Dense and the common LSTM (tanh, logistic sigmoid) are
written out (program_lstm.py): the LSTM in six calls per step.

Only where nothing is masked, no call passes tensors as keywords, no state is carried and no plugin
computes a layer; a model that does not qualify runs the ordinary way. Each thread gets its own
programs (their buffers are never shared). tests/test_program.py holds programs to the textbook loop.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import get_ident
from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec import LayerSpec, ModelSpec, TensorRef
from . import recurrent
from .activations import linear
from .layers import Call, CallFn, Context
from .quiet import float_quiet

if TYPE_CHECKING:
    from .prepared import Prepared

SMALL_BATCH = 16  # rows up to which a program runs (measured: make bench, "tutorial b=1")
KEPT = 16  # programs kept per prepared model (per thread and input shapes), the most recently made
Op = tuple[Callable[..., Any], tuple[Any, ...]]
Emitter = Callable[[LayerSpec, Context, list[np.ndarray], list[np.ndarray]], "Emitted | None"]


class Emitted:
    """A layer written out as calls: `ops(inputs, outputs)` gives them for the layer's buffers;
    `homes` maps an input's position to the view where the layer wants it (so a model input is
    copied straight there)."""

    homes: dict[int, np.ndarray]

    def ops(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[Op]:
        raise NotImplementedError

    def final(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[list[Op], Op] | None:
        """For a layer whose one output is a model output and nothing else's input: the calls before,
        and a last call that returns the output as a new array (no copy out); None: not offered."""
        return None


EMITTERS: dict[str, Emitter] = {}


class Program:
    """The forward pass at one set of input shapes: copy in, `ops`, then `finals` give the outputs."""

    def __init__(self, homes: list[np.ndarray], ops: list[Op], finals: list[Op]):
        self.homes, self.ops, self.finals = homes, ops, finals  # finals: one call per model output

    @float_quiet
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for `inputs` (arrays of the shapes it was made for), new arrays."""
        for home, x in zip(self.homes, inputs, strict=True):
            home[...] = x  # assignment casts as astype does, at half np.copyto's cost per call
        for fn, args in self.ops:
            fn(*args)
        return [fn(*args) for fn, args in self.finals]


def run_program(
    spec: ModelSpec, ready: Prepared, inputs: list[np.ndarray], dtype: np.dtype | type
) -> list[np.ndarray] | None:
    """The outputs computed by the program for these inputs' shapes, made on first use; None when the
    batch is not small or the model does not qualify."""
    if not ready.kept or not recurrent.FAST_PATHS:
        return None
    thread = get_ident()  # a program per thread: its buffers are never shared
    key: tuple[Any, ...]
    if len(inputs) == 1:
        x = inputs[0] if type(inputs[0]) is np.ndarray else np.asarray(inputs[0])
        arrays, key = [x], (thread, dtype, x.shape, x.dtype)
    else:
        arrays = [np.asarray(x) for x in inputs]
        key = (thread, dtype, *[(x.shape, x.dtype) for x in arrays])
    if not arrays[0].shape or arrays[0].shape[0] > SMALL_BATCH:
        return None
    program = ready.programs.get(key, MISSING)
    if program is MISSING:
        program, outputs = make_program(spec, ready, arrays, dtype)
        with ready.lock:
            ready.programs[key] = program
            while len(ready.programs) > KEPT:
                ready.programs.popitem(last=False)
        return outputs
    return None if program is None else program.run(arrays)


MISSING = object()


def make_program(
    spec: ModelSpec, ready: Prepared, inputs: list[np.ndarray], dtype: np.dtype | type
) -> tuple[Program | None, list[np.ndarray] | None]:
    """The Program for inputs of these shapes (None when the model does not qualify, see module), and
    the outputs for `inputs`, computed the ordinary way to learn every tensor's shape and mask (None
    when a call's tensor keywords or op arguments rule the program out before that)."""
    from .forward import _call, _run_graph

    for layer, node, _ in ready.schedule:
        if (node < len(layer.node_tensors) and layer.node_tensors[node]) or (
            node < len(layer.node_args) and layer.node_args[node]
        ):
            return None, None  # tensors passed as keywords (an explicit mask among them) or as op arguments
    values: dict[TensorRef, tuple[np.ndarray, np.ndarray | None]] = {}
    outputs = _run_graph(spec, ready.fns, ready.schedule, inputs, dtype, False, values).outputs
    if any(mask is not None for _, mask in values.values()):
        return None, outputs
    calls = [_call(layer, node, [], values) for layer, node, _ in ready.schedule]  # keywords only: `training`...
    ctx = Context(ready.semantics, np.dtype(dtype), spec.source, keras_version=spec.keras_version)
    consumers: dict[TensorRef, int] = {}
    for _, _, refs in ready.schedule:
        for ref in refs:
            consumers[ref] = consumers.get(ref, 0) + 1
    emitted: list[Emitted | None] = []
    buffers: dict[TensorRef, np.ndarray] = {}
    for layer, node, refs in ready.schedule:
        outs = [values[(layer.name, node, k)][0] for k in range(_count(values, layer.name, node))]
        emitter = EMITTERS.get(layer.class_name)
        made = emitter(layer, ctx, [values[r][0] for r in refs], outs) if emitter else None
        emitted.append(made)
        for index, home in (made.homes if made else {}).items():
            ref = refs[index]
            if ref in spec.inputs and consumers[ref] == 1 and ref not in spec.outputs and ref not in buffers:
                buffers[ref] = home  # the model input is copied straight to where the layer reads it
    for ref, (value, _) in values.items():
        buffers.setdefault(ref, np.empty_like(value, order="C"))
    ops: list[Op] = []
    finals: dict[TensorRef, Op] = {}
    for (layer, node, refs), made, call in zip(ready.schedule, emitted, calls, strict=True):
        ins = [buffers[r] for r in refs]
        outs = [buffers[(layer.name, node, k)] for k in range(_count(values, layer.name, node))]
        only = (layer.name, node, 0)
        last = made.final(ins, outs) if made and len(outs) == 1 and spec.outputs.count(only) == 1 else None
        if last is not None and only not in consumers:
            ops += last[0]
            finals[only] = last[1]
        else:
            ops += made.ops(ins, outs) if made else [(_call_layer, (ready.fns[layer.name], ins, outs, call))]
    copies = [finals.get(ref, (buffers[ref].copy, ())) for ref in spec.outputs]  # new arrays: buffers are reused
    return Program([buffers[ref] for ref in spec.inputs], ops, copies), outputs


def _count(values: dict[TensorRef, tuple], name: str, node: int) -> int:
    """How many outputs call `node` of layer `name` produced."""
    count = 0
    while (name, node, count) in values:
        count += 1
    return count


def _call_layer(fn: CallFn, inputs: list[np.ndarray], outputs: list[np.ndarray], call: Call) -> None:
    """A layer the program does not write out: its built function, its results copied into its buffers."""
    result = fn(inputs, [None] * len(inputs), call)
    for buffer, value in zip(outputs, result.outputs, strict=True):
        np.copyto(buffer, value, casting="unsafe")


# --------------------------------------------------------------------------------------------- Dense


class DenseOps(Emitted):
    """y = act(x @ kernel + bias) into the output buffer: two calls, and the activation's unless linear."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None, activation: Callable[[np.ndarray], np.ndarray]):
        self.kernel, self.bias, self.activation = kernel, bias, activation  # (features, units), (units,)
        self.homes = {}

    def final(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[list[Op], Op]:
        ops = self.ops(inputs, outputs)
        last = ops.pop()  # the one that writes y: instead, the same computation returning a new array
        if self.activation is not linear:
            return ops, (self.activation, (outputs[0],))
        return ops, (last[0], last[1][:2])  # np.dot(x, kernel) or np.add(product, bias)

    def ops(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[Op]:
        (x,), (y,) = inputs, outputs  # (..., features), (..., units)
        if self.bias is None:
            ops: list[Op] = [(np.dot, (x, self.kernel, y))]
        else:
            product = np.empty_like(y)  # (..., units); not y itself: NumPy is slow in place on one element
            bias = np.empty_like(y)  # (..., units): the bias repeated, so no call broadcasts
            bias[...] = self.bias
            ops = [(np.dot, (x, self.kernel, product)), (np.add, (product, bias, y))]
        if self.activation is not linear:
            ops.append((_apply, (self.activation, y)))
        return ops


def _apply(activation: Callable[[np.ndarray], np.ndarray], y: np.ndarray) -> None:
    np.copyto(y, activation(y), casting="unsafe")


def emit_dense(layer: LayerSpec, ctx: Context, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> Emitted | None:
    from .core import dense_parts

    if len(inputs) != 1 or inputs[0].dtype != ctx.dtype or outputs[0].dtype != ctx.dtype:
        return None
    return DenseOps(*dense_parts(layer, ctx))


EMITTERS["Dense"] = emit_dense


def _load_emitters() -> None:
    from . import program_lstm  # noqa: F401 - imported for effect: it registers the LSTM


_load_emitters()
