"""Which op calls mix samples across the batch axis.

Keras' `predict` runs a model on batches (32 samples by default) and joins the outputs on axis 0.
An op that reduces over, normalizes along, reorders, repeats or indexes axis 0 of a Keras tensor
(every Keras tensor is batch first) therefore gives results that depend on that batch size, which
the reference (the whole input at once, or chunks of its own size) cannot reproduce: such a call is
refused. Each rule reads one call's arguments, bound by parameter name (tensors as arrays), with
`batch(value)` telling whether a value is a Keras tensor; it returns what mixes the samples, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Rule = Callable[[dict[str, Any], Callable[[Any], bool]], "str | None"]


def _axes(value: Any) -> list[int] | None:
    """An axis argument as a list of ints; None when it is not one (the op itself then refuses it)."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(item, (int, np.integer)) and not isinstance(item, bool) for item in items):
        return None
    return [int(item) for item in items]


def _rank(value: Any) -> int:
    return int(np.ndim(value)) if value is not None else 0


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) and value else value


def along(
    axis: str | Callable[[dict[str, Any]], Any], tensor: str, all_if_none: bool = True, grows: bool = False
) -> Rule:
    """The call works along the axis argument `axis` (a parameter name, or a function of the bound
    arguments) of its argument `tensor` (a list of tensors: the first counts); None means all axes
    when `all_if_none`. `grows`: the axes count against the output, one axis longer per axis given
    (expand_dims, stack)."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        x = args.get(tensor)
        if not (batch(x) or (isinstance(x, (list, tuple)) and any(batch(item) for item in x))):
            return None
        value = axis(args) if callable(axis) else args.get(axis)
        if value is None:
            return "over all axes" if all_if_none else None
        axes = _axes(value)
        if axes is None:
            return None
        rank = _rank(_first(x)) + (len(axes) if grows else 0)
        return f"axis {value!r}" if rank and any(a % rank == 0 for a in axes if -rank <= a < rank) else None

    return rule


def indexing(tensor: str, key: str) -> Rule:
    """x[key]: the batch axis must be taken whole (`:`, or covered by `...`), with no new axis before it."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        x, index = args.get(tensor), args.get(key)
        if not batch(x):
            return None
        items = list(index) if isinstance(index, (list, tuple)) else [index]
        indexed = sum(1 for item in items if item is not None and item is not Ellipsis)
        for item in items:
            if item is Ellipsis:
                if _rank(x) > indexed:
                    return None  # the ellipsis covers axis 0
                continue
            whole = isinstance(item, slice) and item.start in (None, 0) and item.stop is None and item.step in (None, 1)
            return None if whole else f"index {item!r} on the batch axis"
        return None

    return rule


def permuting(tensor: str, perm: str) -> Rule:
    """transpose: axis 0 must stay first (no permutation reverses all axes)."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        x, order = args.get(tensor), args.get(perm)
        if not batch(x) or _rank(x) < 2:
            return None
        axes = _axes(order) if order is not None else None
        if order is None or (axes is not None and axes and axes[0] % _rank(x) != 0):
            return f"permutation {order!r}"
        return None

    return rule


def swapping(tensor: str, first: str, second: str) -> Rule:
    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        x = args.get(tensor)
        axes = _axes([args.get(first), args.get(second)])
        if not batch(x) or axes is None or not _rank(x):
            return None
        moved = [a % _rank(x) for a in axes]
        return f"axes {axes}" if moved.count(0) == 1 else None

    return rule


def reshaping(tensor: str, shape: str) -> Rule:
    """reshape: the new shape must keep the batch axis first (-1 or None first, and not a vector)."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        x, target = args.get(tensor), args.get(shape)
        if not batch(x) or not isinstance(target, (list, tuple)):
            return None
        keeps = bool(target) and target[0] in (-1, None) and (len(target) > 1 or _rank(x) == 1)
        return None if keeps else f"shape {list(target)!r}"

    return rule


def tiling(tensor: str, multiples: str) -> Rule:
    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        x, reps = args.get(tensor), _axes(args.get(multiples))
        if not batch(x) or reps is None or not reps:
            return None
        lead = reps[0] if len(reps) >= _rank(x) else 1
        return f"multiples {reps!r}" if lead != 1 or len(reps) > _rank(x) else None

    return rule


def matmul(first: str, second: str, transpose_first: str = "", transpose_second: str = "") -> Rule:
    """matmul: a Keras tensor contributes its batch axis only as a broadcast batch axis (rank 3 or
    more on both sides), or as the rows of the left matrix when the right one is a constant matrix."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        a, b = args.get(first), args.get(second)
        ta = bool(args.get(transpose_first)) if transpose_first else False
        mixes_a = batch(a) and (_rank(a) < 2 or (_rank(a) == 2 and (ta or _rank(b) > 2)))
        mixes_b = batch(b) and (_rank(b) <= 2 or _rank(a) < 2)
        return "the batch axis is contracted or moved" if mixes_a or mixes_b else None

    return rule


def dotting(first: str, second: str) -> Rule:
    """ops.dot: the right operand's axes follow the left one's, so a Keras tensor must be the left one."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        a, b = args.get(first), args.get(second)
        return "the batch axis is contracted or moved" if batch(b) or (batch(a) and _rank(a) < 2) else None

    return rule


def tensordot(first: str, second: str, axes: str) -> Rule:
    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        a, b, spec = args.get(first), args.get(second), args.get(axes)
        if batch(b):
            return "the batch axis is contracted or moved"
        if not batch(a):
            return None
        contracted: list[int] | None = None
        if isinstance(spec, int):
            contracted = list(range(_rank(a) - spec, _rank(a)))
        elif isinstance(spec, (list, tuple)) and len(spec) == 2:
            contracted = _axes(spec[0])
        if contracted is not None and any(axis % max(_rank(a), 1) == 0 for axis in contracted):
            return f"axes {spec!r}"
        return None

    return rule


def einsum(subscripts: str, operands: str) -> Rule:
    """einsum: every Keras tensor's first index must be one letter that also leads the output."""

    def rule(args: dict[str, Any], batch: Callable[[Any], bool]) -> str | None:
        equation, tensors = args.get(subscripts), args.get(operands) or ()
        if not isinstance(equation, str):
            return None
        equation = equation.replace(" ", "")
        inputs, _, output = equation.partition("->")
        terms = inputs.split(",")
        if not _:
            letters = [c for c in inputs if c.isalpha()]
            output = ("..." if "..." in inputs else "") + "".join(
                sorted(c for c in set(letters) if letters.count(c) == 1)
            )
        leads = {_lead(term) for term, x in zip(terms, tensors, strict=False) if batch(x)}
        if not leads:
            return None
        return None if len(leads) == 1 and _lead(output) in leads else f"subscripts {equation!r}"

    return rule


def _lead(term: str) -> str:
    return "..." if term.startswith("...") else term[:1]
