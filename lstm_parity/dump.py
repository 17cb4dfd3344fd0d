"""`dump`: a model's weights and math-changing options as JSON, for porting to another runtime.

float32 values are written as the exact decimal of their float64 widening, so reading the JSON
back (`formats.weights_json.read_dump`) gives bit-identical float32 arrays. Schema: README.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from . import __version__
from .reference.layers import math_options
from .reference.quiet import float_quiet
from .spec import LayerSpec, ModelSpec

DUMP_SCHEMA_VERSION = 1
LSTM_GATES = ("i", "f", "c", "o")
GATES = {"LSTM": LSTM_GATES, "GRU": ("z", "r", "h")}


@float_quiet
def encode_array(array: np.ndarray) -> list | float | int | str:
    """Nested lists of exact values; NaN and infinities become the strings "nan", "inf", "-inf"."""
    values = array.astype(np.float64).tolist() if array.dtype.kind == "f" else array.tolist()
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):

        def fix(item: Any) -> Any:
            if isinstance(item, list):
                return [fix(v) for v in item]
            return item if math.isfinite(item) else str(item)

        values = fix(values)
    return values


def _gate_views(layer: LayerSpec) -> dict[str, Any]:
    """The gate column blocks (LSTM i, f, c, o; GRU z, r, h) of kernel, recurrent_kernel and bias."""
    gates = GATES[layer.class_name]
    units = int(layer.config["units"])
    views: dict[str, Any] = {
        "order": list(gates),
        "columns": {g: [k * units, (k + 1) * units] for k, g in enumerate(gates)},
    }
    for name, array in zip(layer.weight_names, layer.weights, strict=True):
        views[name] = {g: array[..., k * units : (k + 1) * units] for k, g in enumerate(gates)}
    return views


def _tutorial_block(spec: ModelSpec) -> dict[str, Any] | None:
    """W, U, b, Wout, bout when the model is exactly one LSTM (last output) followed by one Dense."""
    computing = [layer for layer in spec.layers if layer.class_name not in ("InputLayer", "Dropout")]
    if [layer.class_name for layer in computing] != ["LSTM", "Dense"] or len(spec.outputs) != 1:
        return None
    lstm, dense = computing
    options = math_options(lstm)
    if options.get("return_sequences") or options.get("return_state") or options.get("go_backwards"):
        return None
    units = int(options["units"])
    block = {
        "W": lstm.weights[0],
        "U": lstm.weights[1],
        "b": lstm.weights[2] if len(lstm.weights) > 2 else np.zeros(4 * units, lstm.weights[0].dtype),
        "Wout": dense.weights[0],
        "bout": dense.weights[1]
        if len(dense.weights) > 1
        else np.zeros(dense.weights[0].shape[1], dense.weights[0].dtype),
    }
    return {
        "gate_order": list(LSTM_GATES),
        "activation": options.get("activation"),
        "recurrent_activation": options.get("recurrent_activation"),
        "dense_activation": dense.config.get("activation"),
        "equations": [
            "z = x_t @ W + h_tm1 @ U + b  # (4*h,) split into i, f, c~, o",
            "c_t = recurrent_activation(f) * c_tm1 + recurrent_activation(i) * activation(c~)",
            "h_t = recurrent_activation(o) * activation(c_t)",
            "y = dense_activation(h_T @ Wout + bout)",
        ],
        **block,
    }


def build_dump(spec: ModelSpec) -> dict[str, Any]:
    """The dump as a JSON-ready dict with numpy arrays still in place (encoded by `render_dump`)."""
    layers = []
    for layer in spec.layers:
        entry: dict[str, Any] = {
            "name": layer.name,
            "class_name": layer.class_name,
            "inbound": [[list(ref) for ref in node] for node in layer.inbound],
            "options": math_options(layer),
            "config": layer.config,
            **({"converted": layer.converted} if layer.converted else {}),
            **({"node_masks": list(layer.node_masks)} if layer.node_masks else {}),
            "weights": [
                {
                    "name": name,
                    "stored_name": stored,
                    "shape": list(array.shape),
                    "dtype": str(array.dtype),
                    "values": array,
                }
                for name, stored, array in zip(
                    layer.weight_names, layer.stored_names or [""] * len(layer.weights), layer.weights, strict=True
                )
            ],
        }
        if layer.class_name in GATES and layer.weights:
            entry["gates"] = _gate_views(layer)
        layers.append(entry)
    dump: dict[str, Any] = {
        "schema_version": DUMP_SCHEMA_VERSION,
        "tool": {"name": "lstm-parity", "version": __version__},
        "source": {
            "path": spec.source,
            "sha256": spec.sha256,
            "format": spec.file_format,
            "keras_version": spec.keras_version,
            "semantics": spec.semantics,
            "model_class": spec.model_class,
        },
        "inputs": [
            {"name": ref[0], "shape": list(shape)} for ref, shape in zip(spec.inputs, spec.input_shapes, strict=True)
        ],
        "outputs": [
            {"name": name, "tensor": list(ref)} for name, ref in zip(spec.output_names, spec.outputs, strict=True)
        ],
        "layers": layers,
    }
    tutorial = _tutorial_block(spec)
    if tutorial is not None:
        dump["tutorial"] = tutorial
    return dump


def render_dump(spec: ModelSpec) -> str:
    """The dump as indented JSON text; arrays, shapes and other lists of plain values on one line."""
    compact: list[Any] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            compact.append(encode_array(value))
        elif isinstance(value, list) and not _holds_objects(value):
            compact.append(value)
        elif isinstance(value, dict):
            return {k: placeholder(v) for k, v in value.items()}
        elif isinstance(value, list):
            return [placeholder(v) for v in value]
        else:
            return value
        return f"@@compact{len(compact) - 1}@@"

    text = json.dumps(placeholder(build_dump(spec)), indent=2, allow_nan=False)
    for index, value in enumerate(compact):
        text = text.replace(f'"@@compact{index}@@"', json.dumps(value, separators=(",", ":"), allow_nan=False), 1)
    return text + "\n"


def _holds_objects(value: list) -> bool:
    return any(isinstance(v, dict) or (isinstance(v, list) and _holds_objects(v)) for v in value)
