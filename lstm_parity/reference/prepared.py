"""A model made ready to compute, once per spec: its built layers and the order of its calls.

Building a layer checks its options and weights and casts them (graph.build); ordering the graph
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

from ..plugins import any_in_force, built_with_plugins
from ..spec import ModelSpec
from .graph import Node, build_in_context, schedule, stateful_layers

if TYPE_CHECKING:
    from .layers import CallFn


@dataclass
class Prepared:
    """`fns` by layer name (graph.build's, under `semantics`, in `dtype`), `schedule` every call in an
    order where each call's inputs come before it, `stateful` the layers that carry states across
    batches, `kept` whether it is kept for the next call. For reference/program.py: `programs` by
    input shapes (what each shape has come to: seen once, refused, or a pool of programs),
    `derived` weights its programs share (by layer), `lock` for adding to `programs` and forgetting
    (a program's use only moves its shape to the end, an atomic step)."""

    fns: dict[str, CallFn]
    schedule: list[Node]
    stateful: list[str]
    semantics: str
    dtype: np.dtype
    kept: bool = False
    programs: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    derived: dict[Any, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_cache: dict[int, dict[tuple[str, Any], Prepared]] = {}  # id(spec) -> (semantics, dtype) -> Prepared
_cache_lock = threading.Lock()


def prepare(spec: ModelSpec, semantics: str, dtype: np.dtype | type) -> Prepared:
    """The spec's Prepared for `semantics` and `dtype`: kept from an earlier call, or built now (and
    kept unless a plugin takes part). Raises UnsupportedError / BadInputError as graph.build does."""
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
    fns, ctx = build_in_context(spec, semantics, dtype)
    return Prepared(fns, schedule(spec), stateful_layers(spec), semantics, np.dtype(dtype)), ctx


def kept_count(spec: ModelSpec) -> int:
    """How many Prepared are kept for `spec` (tests: the cache lets go of a spec that is gone)."""
    return len({id(prepared) for prepared in _cache.get(id(spec), {}).values()})
