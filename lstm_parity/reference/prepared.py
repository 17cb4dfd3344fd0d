"""A model made ready to compute, once per spec: its built layers and the order of its calls.

Building a layer checks its options and weights and casts them (forward.build); ordering the graph
finds, call by call, one whose inputs are all computed. Neither depends on the input, so `prepare`
does both once per (spec, semantics, dtype) and keeps the result while the spec lives: a model
computed again (a stream's next chunk, a server's next request, one sequence at a time) starts at
its first layer. A ModelSpec is frozen; its weight arrays are taken to be too (nothing in the
package writes them).

Not kept: a build that a plugin took part in (plugins record what they compute per build, and the
files in force may change between calls), and builds that record gates or carry stateful states
(forward builds those per call).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadInputError
from ..plugins import any_in_force, built_with_plugins
from ..spec import LayerSpec, ModelSpec, TensorRef

if TYPE_CHECKING:
    from .layers import CallFn

Node = tuple[LayerSpec, int, tuple[TensorRef, ...]]  # a layer, which of its calls, the call's inputs


@dataclass
class Prepared:
    """`fns` by layer name (forward.build's, under `semantics`), `schedule` every call in an order
    where each call's inputs come before it, `stateful` the layers that carry states across batches,
    `kept` whether it is kept for the next call, `programs` the small-batch programs made for it
    (reference/program.py), by input shapes."""

    fns: dict[str, CallFn]
    schedule: list[Node]
    stateful: list[str]
    semantics: str
    kept: bool = False
    programs: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def schedule(spec: ModelSpec) -> list[Node]:
    """Every call of every non-input layer, each after the calls that compute its inputs (file
    order among the ready ones). Raises BadInputError naming the tensors nothing computes."""
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


_cache: dict[int, dict[tuple[str, Any], Prepared]] = {}  # id(spec) -> (semantics, dtype) -> Prepared
_cache_lock = threading.Lock()


def prepare(spec: ModelSpec, semantics: str, dtype: np.dtype | type) -> Prepared:
    """The spec's Prepared for `semantics` and `dtype`: kept from an earlier call, or built now (and
    kept unless a plugin takes part). Raises UnsupportedError / BadInputError as forward.build does."""
    if any_in_force():  # the user's code may compute any layer: built for this call only
        return _build(spec, semantics, dtype)[0]
    kept = _cache.get(id(spec))
    if kept is not None and (semantics, dtype) in kept:
        return kept[(semantics, dtype)]  # a dtype keyed as given (np.float32 or np.dtype("float32")): no conversion
    key = (semantics, np.dtype(dtype))
    if kept is not None and key in kept:
        return kept[key]
    prepared, ctx = _build(spec, semantics, dtype)
    if built_with_plugins(ctx):  # an installed package's plugin computes a layer: not kept either
        return prepared
    prepared.kept = True
    with _cache_lock:
        if id(spec) not in _cache:
            _cache[id(spec)] = {}
            weakref.finalize(spec, _cache.pop, id(spec), None)
        prepared = _cache[id(spec)].setdefault(key, prepared)
        _cache[id(spec)][(semantics, dtype)] = prepared
        return prepared


def _build(spec: ModelSpec, semantics: str, dtype: np.dtype | type) -> tuple[Prepared, Any]:
    from .forward import build_in_context, stateful_layers

    fns, ctx = build_in_context(spec, semantics, dtype)
    return Prepared(fns, schedule(spec), stateful_layers(spec), semantics), ctx


def kept_count(spec: ModelSpec) -> int:
    """How many Prepared are kept for `spec` (tests: the cache lets go of a spec that is gone)."""
    return len({id(prepared) for prepared in _cache.get(id(spec), {}).values()})
