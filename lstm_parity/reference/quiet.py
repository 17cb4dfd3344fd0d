"""NumPy's floating-point warnings off where we compute: a value that overflows or turns NaN (a
signalling NaN from a corrupted file raises 'invalid value' on a mere cast) is part of the result,
judged by the comparison's NaN rules and shown in the report, never a warning on stderr."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np

_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
P = ParamSpec("P")
R = TypeVar("R")


def float_quiet(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run under np.errstate(all="ignore"). NumPy's error state is per thread, so this wraps the
    work each thread does, not only the caller. NumPy 2's errstate as a decorator keeps its state per
    call, at half the cost of a `with` block (which matters to the small-batch program); NumPy 1's keeps
    it on the shared object, so there each call enters its own."""
    if _NUMPY_2:
        return np.errstate(all="ignore")(fn)

    @functools.wraps(fn)
    def quiet(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return quiet
