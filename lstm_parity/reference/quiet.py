"""NumPy's floating-point warnings off where we compute: a value that overflows or turns NaN (a
signalling NaN from a corrupted file raises 'invalid value' on a mere cast) is part of the result,
judged by the comparison's NaN rules and shown in the report, never a warning on stderr."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np

P = ParamSpec("P")
R = TypeVar("R")


def float_quiet(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run under np.errstate(all="ignore"). NumPy's error state is per thread, so this wraps the
    work each thread does, not only the caller."""

    @functools.wraps(fn)
    def quiet(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return quiet
