"""`dump`: a model's weights and math-changing options as JSON (or its arrays as .npz), for porting to
another runtime. The C header form is `c_header.py`.

float32 values are written as the exact decimal of their float64 widening, so reading the JSON
back (`formats.weights_json.read_dump`) gives bit-identical float32 arrays. Schema: README.md.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np

from . import __version__
from .errors import BadInputError, UnsupportedError
from .gates import GATES, LSTM_GATES, gate_columns, width_key
from .reference.layers import Context, build_layer, math_options
from .reference.quiet import float_quiet
from .spec import LayerSpec, ModelSpec

DUMP_SCHEMA_VERSION = 1
TUTORIAL_ARRAYS = ("W", "U", "b", "Wout", "bout")
WRAPPER_KEYS = {"Bidirectional": ("layer", "backward_layer"), "TimeDistributed": ("layer",)}


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


def wrapped(layer: LayerSpec, key: str) -> LayerSpec | None:
    """The layer a wrapper holds under `key` ("layer", "backward_layer") as a spec of its own (config only,
    named as the wrapper), or None when the wrapper has none there."""
    entry = layer.config.get(key) if key in WRAPPER_KEYS.get(layer.class_name, ()) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        return None
    config = entry.get("config")
    return LayerSpec(name=layer.name, class_name=entry["class_name"], config=config if isinstance(config, dict) else {})


def check_layers(spec: ModelSpec) -> None:
    """Refuse a model whose layer options disagree with its weights, before anything is written from
    them: `units`/`filters` must be a positive integer (in wrapped layers too), and every layer the
    reference computes must pass the reference's own option and weight-shape checks (so an LSTM's
    kernel has 4 * units columns). Layers the reference does not compute are written as they are.
    Raises BadInputError naming the file and the layer."""
    ctx = Context(
        semantics=spec.semantics, dtype=np.dtype(np.float32), source=spec.source, keras_version=spec.keras_version
    )
    for layer in spec.layers:
        if layer.class_name == "InputLayer":
            continue
        for each in (layer, *(w for key in WRAPPER_KEYS.get(layer.class_name, ()) if (w := wrapped(layer, key)))):
            options = math_options(each)
            for key in ("units", "filters"):
                value = options.get(key)
                if key in options and (type(value) is not int or value < 1):
                    raise BadInputError(
                        f"{spec.source}: layer {layer.name!r} ({layer.class_name}): {key} {value!r} is not a "
                        "positive integer"
                    )
        try:
            build_layer(layer, ctx)
        except UnsupportedError:
            continue


def _gate_views(layer: LayerSpec) -> dict[str, Any]:
    """The gate column blocks (LSTM i, f, c, o; GRU z, r, h) of kernel, recurrent_kernel and bias."""
    columns = gate_columns(layer.class_name, int(layer.config[width_key(layer.class_name)]))
    views: dict[str, Any] = {"order": list(columns), "columns": {g: list(span) for g, span in columns.items()}}
    for name, array in zip(layer.weight_names, layer.weights, strict=True):
        views[name] = {g: array[..., start:stop] for g, (start, stop) in columns.items()}
    return views


def has_gate_views(layer: LayerSpec) -> bool:
    """Does the JSON dump split this layer's arrays into gate blocks? (LSTM and GRU: several gates,
    `units` wide.)"""
    return len(GATES.get(layer.class_name, ())) > 1 and width_key(layer.class_name) == "units" and bool(layer.weights)


def tutorial_block(spec: ModelSpec) -> dict[str, Any] | None:
    """W, U, b, Wout, bout when the model is exactly the tutorial's: one input (batch, time, features) into
    one LSTM whose last output (batch first, forward in time, states from zeros on every call) goes into one
    Dense, the model's only output; with the activations, the gate order and the equations. None for any
    other model, where those names would lie (time_major, go_backwards, stateful, return_sequences or
    return_state, another layer between). Dropout layers are skipped (they do nothing at inference). W, U
    and Wout are the layers' own arrays (the same objects); a missing bias is a new array of zeros."""
    computing = [layer for layer in spec.layers if layer.class_name not in ("InputLayer", "Dropout")]
    if [layer.class_name for layer in computing] != ["LSTM", "Dense"] or len(spec.outputs) != 1:
        return None
    lstm, dense = computing
    options = math_options(lstm)
    if any(options.get(k) for k in ("return_sequences", "return_state", "go_backwards", "stateful", "time_major")):
        return None
    if len(spec.inputs) != 1 or len(spec.input_shapes[0]) != 3 or spec.outputs[0][0] != dense.name:
        return None
    if len(lstm.weights) not in (2, 3) or len(dense.weights) not in (1, 2) or not _feeds(spec, lstm, dense):
        return None
    block = {
        "W": lstm.weights[0],
        "U": lstm.weights[1],
        "b": lstm.weights[2] if len(lstm.weights) > 2 else np.zeros(lstm.weights[0].shape[-1], lstm.weights[0].dtype),
        "Wout": dense.weights[0],
        "bout": dense.weights[1]
        if len(dense.weights) > 1
        else np.zeros(dense.weights[0].shape[1], dense.weights[0].dtype),
    }
    return {
        "layers": [lstm.name, dense.name],
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


def _feeds(spec: ModelSpec, lstm: LayerSpec, dense: LayerSpec) -> bool:
    """Is `dense` called once, on the output of `lstm` (through Dropout layers only), itself called once?"""
    if len(lstm.inbound) != 1 or len(dense.inbound) != 1 or len(dense.inbound[0]) != 1:
        return False
    ref, seen = dense.inbound[0][0], set()
    while ref[0] != lstm.name:
        if ref in seen:  # a cycle: no graph Keras saves
            return False
        seen.add(ref)
        layer = next((each for each in spec.layers if each.name == ref[0]), None)
        if layer is None or layer.class_name != "Dropout" or len(layer.inbound) != 1 or len(layer.inbound[0]) != 1:
            return False
        ref = layer.inbound[0][0]
    return ref == (lstm.name, 0, 0)


def build_dump(spec: ModelSpec) -> dict[str, Any]:
    """The dump as a JSON-ready dict with numpy arrays still in place (encoded by `render_dump`).
    Raises BadInputError for options that disagree with the weights (`check_layers`)."""
    check_layers(spec)
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
            **_call_fields(layer),
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
        if has_gate_views(layer):
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
    tutorial = tutorial_block(spec)
    if tutorial is not None:
        dump["tutorial"] = tutorial
    return dump


def dump_arrays(spec: ModelSpec) -> dict[str, np.ndarray]:
    """Every weight array keyed "<layer>/<weight name>" (kernel, recurrent_kernel, bias, ...) in model
    order, plus the tutorial's W, U, b, Wout, bout when `tutorial_block` applies. Raises BadInputError
    for options that disagree with the weights (`check_layers`)."""
    check_layers(spec)
    arrays = {
        f"{layer.name}/{name}": array
        for layer in spec.layers
        for name, array in zip(layer.weight_names, layer.weights, strict=True)
    }
    tutorial = tutorial_block(spec)
    if tutorial is not None:
        arrays.update({name: tutorial[name] for name in TUTORIAL_ARRAYS})
    return arrays


def render_npz(spec: ModelSpec) -> bytes:
    """`dump_arrays` as the bytes of an uncompressed .npz (arrays keep their dtype and bits)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **dump_arrays(spec))
    return buffer.getvalue()


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


def _call_fields(layer: LayerSpec) -> dict[str, Any]:
    """What the calls of `layer` carried besides their input tensors (attention's use_causal_mask, an op's
    constants and tensor keywords) and the class's origin in a `.keras` file: only the fields that are set,
    so a dump of a plain LSTM looks as it always did. `predict dump.json` needs them to compute the same."""
    fields: dict[str, Any] = {}
    every = bool(layer.node_args)  # an op layer: the three lists per call, together, even where empty
    if every or any(layer.node_kwargs):
        fields["node_kwargs"] = [dict(kwargs) for kwargs in layer.node_kwargs]
    if every or any(layer.node_tensors):
        fields["node_tensors"] = [{k: list(ref) for k, ref in node.items()} for node in layer.node_tensors]
    if every:
        fields["node_args"] = [list(args) for args in layer.node_args]
    if layer.module:
        fields["module"] = layer.module
    if layer.registered_name:
        fields["registered_name"] = layer.registered_name
    return fields
