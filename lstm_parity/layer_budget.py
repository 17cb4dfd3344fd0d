"""Which layer, and which timestep, uses up the tolerance: --layerwise against a runtime that computes every
layer with error by design (hls4ml's fixed point), from its own per-layer trace.

Judging every layer against the whole output tolerance says little there: under a float32 atol every
layer exceeds it from the first timestep on, and under an atol the outputs meet, none does. So each
layer gets a share of the tolerance: the elementwise allowance atol + rtol*|reference| split evenly over
the N layers compared. A layer exceeds its share where the error it adds, its own error minus the
largest error it received, is above allowance / N:

    added[t] = |theirs - ours|[t] - received[t]        received: the largest error of its inputs
    over     = added > (atol + rtol*|ours|) / N

`received[t]` is what the layer's inputs (the nearest compared layers upstream; a model input brings
none) carried: for a forward recurrent layer (LSTM, GRU, SimpleRNN) the largest input error at steps
<= t (its output at t has seen them all); for any other layer on sequences, the largest over every step
(a backward layer has seen the later ones, a convolution its neighbours). Errors that only pass through a
layer are not counted against it; a layer that amplifies what it received is.
"""

from __future__ import annotations

import numpy as np

from .compare import Tolerance
from .spec import LayerSpec, ModelSpec

FORWARD_RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def budget_rows(
    spec: ModelSpec, ours: dict[str, list[np.ndarray]], theirs: dict[str, list[np.ndarray]], tolerance: Tolerance
) -> list[dict]:
    """One row per output of each layer both sides have, in model order, as check.layerwise_rows makes
    them ("layer", "output", "max_abs_diff", "passed", "first_timestep", "shape") but judged against the
    layer's share of the tolerance (see the module): `passed` is False where the error it adds exceeds
    its share, `first_timestep` the first step where it does (sequence outputs). Each row also has
    "added_max_abs" (the largest error the layer adds) and "share" (1/N)."""
    compared = {layer.name for layer in spec.layers if layer.name in ours and layer.name in theirs}
    share = 1.0 / max(len(compared), 1)
    errors: dict[str, np.ndarray] = {}  # layer -> its error per timestep (time,), or a scalar as shape ()
    rows = []
    for layer in spec.layers:
        received = _received(spec, layer, errors)
        if layer.name not in compared:
            errors[layer.name] = received
            continue
        profiles = []
        for index, (a, b) in enumerate(zip(ours[layer.name], theirs[layer.name], strict=True)):
            b = np.asarray(b, dtype=np.float64)
            if a.shape != b.shape:
                rows.append(_row(layer.name, index, a.shape, float("inf"), float("inf"), share, False, None))
                profiles.append(np.asarray(np.inf))
                continue
            with np.errstate(invalid="ignore"):
                diff = np.abs(a - b)  # (batch, ...) or (batch, time, ...)
            profile = _per_step(diff)  # (time,) or ()
            before = _received_at(received, profile.shape, layer)  # (time,) or ()
            added = diff - _broadcast(before, diff)  # (batch, ...)
            with np.errstate(invalid="ignore"):
                over = ~(added <= share * (tolerance.atol + tolerance.rtol * np.abs(a)))
            first = None
            if over.any() and a.ndim >= 3:
                first = int(np.argmax(over.reshape(over.shape[0], over.shape[1], -1).any(axis=(0, 2))))
            worst = float(np.max(diff)) if diff.size else 0.0
            most_added = max(0.0, float(np.max(profile - before))) if diff.size else 0.0
            rows.append(_row(layer.name, index, a.shape, worst, most_added, share, not over.any(), first))
            profiles.append(profile)
        errors[layer.name] = _largest(profiles)
    return rows


def _row(
    layer: str,
    output: int,
    shape: tuple[int, ...],
    worst: float,
    added: float,
    share: float,
    passed: bool,
    first: int | None,
) -> dict:
    return {
        "layer": layer,
        "output": output,
        "max_abs_diff": worst,
        "passed": passed,
        "first_timestep": first,
        "shape": list(shape),
        "added_max_abs": added,
        "share": share,
    }


def _per_step(diff: np.ndarray) -> np.ndarray:
    """The largest difference per timestep (time,) of a sequence output (batch, time, ...), else a scalar."""
    if diff.ndim >= 3:
        return diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=(0, 2)) if diff.size else np.zeros(diff.shape[1])
    return np.asarray(diff.max() if diff.size else 0.0)


def _largest(profiles: list[np.ndarray]) -> np.ndarray:
    """One profile for several outputs (or inputs): per step when all are per step of one length, else
    the largest value of all."""
    if not profiles:
        return np.asarray(0.0)
    shapes = {p.shape for p in profiles}
    if len(shapes) == 1:
        return np.max(np.stack(profiles), axis=0)
    return np.asarray(max(float(np.max(p)) if p.size else 0.0 for p in profiles))


def _received(spec: ModelSpec, layer: LayerSpec, errors: dict[str, np.ndarray]) -> np.ndarray:
    """The largest error among the tensors `layer` consumes (0 for model inputs, nothing traced upstream)."""
    sources = [ref[0] for node in range(len(layer.inbound)) for ref in layer.node_refs(node)]
    return _largest([errors[name] for name in sources if name in errors])


def _received_at(received: np.ndarray, shape: tuple[int, ...], layer: LayerSpec) -> np.ndarray:
    """`received` as seen by `layer`'s output of per-step `shape`: up to each step for a forward recurrent
    layer, the largest of all steps otherwise (see the module)."""
    if shape and received.shape == shape and _forward_recurrent(layer):
        return np.maximum.accumulate(received)  # (time,)
    largest = float(np.max(received)) if received.size else 0.0
    return np.full(shape, largest) if shape else np.asarray(largest)


def _forward_recurrent(layer: LayerSpec) -> bool:
    return layer.class_name in FORWARD_RECURRENT and not layer.config.get("go_backwards")


def _broadcast(before: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Per-step `before` (time,) shaped to broadcast over `diff` (batch, time, ...); a scalar as it is."""
    if before.ndim == 0:
        return before
    return before.reshape(1, -1, *([1] * (diff.ndim - 2)))
