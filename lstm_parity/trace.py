"""`trace`: every timestep of every recurrent layer (LSTM i, f, c_hat, o, c, h; GRU z, r, h_hat, h;
SimpleRNN h) and every layer's output, for one sample, as flat named arrays a port can reproduce.

Keys: "<layer>/output<k>" -> the layer's k-th output for the sample (batch axis removed);
"<layer>/<gate>" -> (time, units) in processing order (reversed input order for go_backwards);
Bidirectional layers use "<layer>/forward/<gate>" and "<layer>/backward/<gate>".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import BadInputError
from .reference.forward import forward
from .spec import ModelSpec

GATE_ORDER = ("i", "f", "c_hat", "o", "z", "r", "h_hat", "c", "h")


def trace(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    *,
    sample: int = 0,
    layer: str | None = None,
    semantics: str | None = None,
    dtype: Any = np.float64,
) -> dict[str, np.ndarray]:
    """The trace of one sample (see the module docstring for keys); raises BadInputError for a bad
    sample index or layer name."""
    batch = inputs[0].shape[0]
    if not 0 <= sample < batch:
        raise BadInputError(f"--sample {sample}: the input has {batch} samples (0..{batch - 1})")
    names = [each.name for each in spec.layers]
    if layer is not None and layer not in names:
        raise BadInputError(f"--layer {layer!r}: no such layer (layers: {names})")
    one = [x[sample : sample + 1] for x in inputs]
    result = forward(spec, one, semantics=semantics, dtype=dtype, record=True)
    values: dict[str, np.ndarray] = {}
    for name in names:
        if layer is not None and name != layer:
            continue
        for k, out in enumerate(result.layer_outputs.get(name, [])):
            values[f"{name}/output{k}"] = out[0]
        for gate, array in sorted(result.traces.get(name, {}).items(), key=lambda kv: _gate_key(kv[0])):
            values[f"{name}/{gate}"] = array[0]  # (time, units)
    return values


def _gate_key(key: str) -> tuple:
    direction, _, gate = key.rpartition("/")
    return (direction, GATE_ORDER.index(gate) if gate in GATE_ORDER else len(GATE_ORDER), gate)


def first_divergence(
    ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], atol: float, rtol: float, order: list[str]
) -> dict[str, Any] | None:
    """Walk layers in model order, and within a recurrent layer timestep by timestep and gate by gate,
    to the first value outside |theirs - ours| <= atol + rtol*|ours|. None when all agree."""
    for layer in order:
        keys = [k for k in ours if k.startswith(layer + "/") and k in theirs]
        gate_keys = [k for k in keys if not k.rsplit("/", 1)[1].startswith("output")]
        steps = max((ours[k].shape[0] for k in gate_keys), default=0)
        for t in range(steps):
            for key in gate_keys:
                a, b = ours[key][t], np.asarray(theirs[key][t], dtype=np.float64)
                bad = _exceeds(a, b, atol, rtol)
                if bad is not None:
                    return {"layer": layer, "timestep": t, "gate": key[len(layer) + 1 :], "max_abs_diff": bad}
        for key in keys:
            if key not in gate_keys:
                bad = _exceeds(ours[key], np.asarray(theirs[key], dtype=np.float64), atol, rtol)
                if bad is not None:
                    return {"layer": layer, "timestep": None, "gate": key[len(layer) + 1 :], "max_abs_diff": bad}
    return None


def _exceeds(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> float | None:
    if a.shape != b.shape:
        return float("inf")
    diff = np.abs(a - b)
    return float(np.max(diff)) if np.any(~(diff <= atol + rtol * np.abs(a))) else None


def render_trace(values: dict[str, np.ndarray], max_units: int = 8) -> str:
    """A readable table: per recurrent layer, one row per timestep with each gate's values."""
    lines = []
    layers = sorted(
        {k.split("/", 1)[0] for k in values},
        key=lambda n: list(values).index(next(k for k in values if k.startswith(n + "/"))),
    )
    for layer in layers:
        gates = [k for k in values if k.startswith(layer + "/") and not k.rsplit("/", 1)[1].startswith("output")]
        outputs = [k for k in values if k.startswith(layer + "/") and k.rsplit("/", 1)[1].startswith("output")]
        if gates:
            lines.append(f"{layer}:")
            for t in range(values[gates[0]].shape[0]):
                cells = []
                for key in gates:
                    row = values[key][t].ravel()
                    shown = " ".join(f"{v:+.4f}" for v in row[:max_units]) + (" ..." if row.size > max_units else "")
                    cells.append(f"{key[len(layer) + 1 :]}=[{shown}]")
                lines.append(f"  t={t:<3} " + "  ".join(cells))
        for key in outputs:
            row = values[key].ravel()
            shown = " ".join(f"{v:+.4f}" for v in row[:max_units]) + (" ..." if row.size > max_units else "")
            lines.append(f"{key} {values[key].shape}: [{shown}]")
    return "\n".join(lines) + "\n"
