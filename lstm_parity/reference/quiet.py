"""NumPy's floating-point warnings off where we compute: a value that overflows or turns NaN (a
signalling NaN from a corrupted file raises 'invalid value' on a mere cast) is part of the result,
judged by the comparison's NaN rules and shown in the report, never a warning on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np

P = ParamSpec("P")
R = TypeVar("R")


def float_quiet(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run under np.errstate(all="ignore"). NumPy's error state is per thread, so this wraps the
    work each thread does, not only the caller. (errstate as a decorator: half the cost of a `with`
    block per call in NumPy 2, which matters to the small-batch program.)"""
    return np.errstate(all="ignore")(fn)
