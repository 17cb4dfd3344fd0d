"""What a layer written out for a Program (program.py) provides: its NumPy calls on the program's buffers.

An emitter, registered in EMITTERS by Keras class name, gets the layer, the build context, the values
one ordinary pass computed for the call's inputs and outputs (their shapes and dtypes are the
buffers'), `shared`, a dict kept per prepared model where it can keep weights it derives (one copy
for all the model's programs), and `budget`, the bytes its own buffers may take (it checks before
allocating). It returns an Emitted, or None to have the layer called as built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import LayerSpec
from .layers import Context

Op = tuple[Callable[..., Any], tuple[Any, ...]]  # a function and its positional arguments
Emitter = Callable[[LayerSpec, Context, list[np.ndarray], list[np.ndarray], dict, int], "Emitted | None"]


class Emitted:
    """A layer written out as calls: `ops(inputs, outputs)` gives them for the layer's buffers;
    `homes` maps an input's position to the view where the layer wants it (so a model input is copied
    straight there); `nbytes` counts the buffers it allocated for itself (weights shared between
    programs aside)."""

    homes: dict[int, np.ndarray]
    nbytes: int = 0

    def ops(self, inputs: list[np.ndarray], outputs: list[np.ndarray], skip: frozenset[int] = frozenset()) -> list[Op]:
        """The calls; outputs in `skip` need not be written (their one reader reads `halves` instead)."""
        raise NotImplementedError

    def halves(self, index: int) -> np.ndarray | None:
        """Output `index` as a (rows, 2*units) view v with output = 0.5 * (v[:, :units] + v[:, units:]),
        if the layer holds it so; None otherwise."""
        return None

    def read_halves(self, view: np.ndarray) -> bool:
        """Take the input from such a view instead of its buffer (saving its producer a call); False: not
        offered."""
        return False

    def final(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[list[Op], Op] | None:
        """For a layer whose one output is a model output and nothing else's input: the calls before,
        and a last call that returns the output as a new array (no copy out); None: not offered."""
        return None


EMITTERS: dict[str, Emitter] = {}
