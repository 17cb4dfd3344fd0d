"""Turn a saved Keras model config (any generation's JSON) into layers and graph wiring.

Handles Sequential configs (a bare list in Keras 2.1/2.2.0, `{name, layers}` later, with or
without an InputLayer) and Functional configs (Keras 2 `[[name, node, tensor, kwargs]]` inbound
nodes and Keras 3 `{"args": [...], "kwargs": {...}}` nodes). Weights are attached by the readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadInputError, UnsupportedError
from ..spec import TensorRef

SEQUENTIAL_CLASSES = {"Sequential"}
FUNCTIONAL_CLASSES = {"Functional", "Model"}


@dataclass
class ParsedLayer:
    name: str
    class_name: str
    config: dict[str, Any]
    inbound: tuple[tuple[TensorRef, ...], ...]
    mask_refs: tuple[TensorRef, ...] = ()  # Keras 3: masks passed explicitly to the layer's calls
    node_masks: tuple[bool, ...] = ()  # Keras 3 functional: per call, was a mask passed at all?


@dataclass
class ParsedModel:
    model_class: str
    layers: list[ParsedLayer]  # in config order, InputLayers included (synthesized if absent)
    inputs: tuple[TensorRef, ...]
    outputs: tuple[TensorRef, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]


def parse_model_config(model_config: Any, source: str) -> ParsedModel:
    """Parse the top-level `{"class_name", "config"}` object; raises BadInputError/UnsupportedError."""
    if not isinstance(model_config, dict) or "class_name" not in model_config:
        raise BadInputError(f"{source}: model config has no 'class_name'; not a saved Keras model")
    class_name = model_config["class_name"]
    config = model_config.get("config")
    if class_name in SEQUENTIAL_CLASSES:
        return _parse_sequential(config, source)
    if class_name in FUNCTIONAL_CLASSES:
        return _parse_functional(config, source, class_name)
    raise UnsupportedError(
        f"{source}: top-level model class {class_name!r} is not supported (supported: Sequential, Functional/Model)"
    )


def _layer_entries(config: Any, source: str) -> list[dict[str, Any]]:
    layers = config if isinstance(config, list) else (config or {}).get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list) or not layers:
        raise BadInputError(f"{source}: model config lists no layers")
    for entry in layers:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("class_name"), str)
            or not isinstance(entry.get("config"), dict)
        ):
            raise BadInputError(f"{source}: model config has a malformed layer entry")
    return layers


def _layer_name(entry: dict[str, Any], source: str) -> str:
    name = entry.get("name") or entry["config"].get("name")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{source}: a {entry['class_name']} layer in the config has no name")
    return name


def _shape(value: Any, source: str, name: str) -> tuple[int | None, ...]:
    if not isinstance(value, list) or not all(v is None or (isinstance(v, int) and v >= 0) for v in value):
        raise BadInputError(f"{source}: layer {name!r} has an invalid input shape {value!r}")
    return tuple(value)


def input_shape_of(config: dict[str, Any], source: str, name: str) -> tuple[int | None, ...] | None:
    """The batch-first input shape an InputLayer (or a Keras 2 first layer) declares, if any."""
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return _shape(config[key], source, name)
    if config.get("input_shape") is not None:  # Keras 1 style, no batch dimension
        return (None, *_shape(config["input_shape"], source, name))
    return None


def _parse_sequential(config: Any, source: str) -> ParsedModel:
    entries = _layer_entries(config, source)
    layers: list[ParsedLayer] = []
    first = entries[0]
    if first["class_name"] == "InputLayer":
        input_name = _layer_name(first, source)
        shape = input_shape_of(first["config"], source, input_name)
        entries = entries[1:]
    else:  # Keras 2 style: the first layer carries batch_input_shape
        input_name = f"{_layer_name(first, source)}_input"
        shape = input_shape_of(first["config"], source, input_name)
    if shape is None:
        build = config.get("build_input_shape") if isinstance(config, dict) else None
        shape = _shape(build, source, input_name) if build is not None else None
    if shape is None:
        raise BadInputError(f"{source}: the Sequential model declares no input shape (it was never built)")
    layers.append(ParsedLayer(input_name, "InputLayer", {"name": input_name, "batch_shape": list(shape)}, ()))
    previous: TensorRef = (input_name, 0, 0)
    for entry in entries:
        name = _layer_name(entry, source)
        layers.append(ParsedLayer(name, entry["class_name"], entry["config"], ((previous,),)))
        previous = (name, 0, 0)
    _check_unique(layers, source)
    return ParsedModel("Sequential", layers, ((input_name, 0, 0),), (previous,), (shape,))


def _parse_functional(config: Any, source: str, class_name: str) -> ParsedModel:
    if not isinstance(config, dict):
        raise BadInputError(f"{source}: functional model config is not an object")
    entries = _layer_entries(config, source)
    layers = []
    for entry in entries:
        name = _layer_name(entry, source)
        parsed_nodes = [_parse_node(node, source, name) for node in entry.get("inbound_nodes") or []]
        layer_class = entry["class_name"]
        if str(entry.get("module", "")).startswith(OPS_MODULES):
            layer_class = f"ops.{layer_class}"  # a keras.ops call recorded in the graph, not a layer
        keras3_nodes = all(isinstance(node, dict) for node in entry.get("inbound_nodes") or [])
        layers.append(
            ParsedLayer(
                name,
                layer_class,
                entry["config"],
                tuple(n[0] for n in parsed_nodes),
                tuple(ref for n in parsed_nodes for ref in n[1]),
                tuple(bool(n[1]) for n in parsed_nodes) if keras3_nodes else (),
            )
        )
    _check_unique(layers, source)
    inputs = _tensor_list(config.get("input_layers"), source, "input_layers")
    outputs = _tensor_list(config.get("output_layers"), source, "output_layers")
    layers = _reachable(layers, inputs, outputs, source)
    by_name = {layer.name: layer for layer in layers}
    shapes = []
    for ref in inputs:
        layer = by_name.get(ref[0])
        if layer is None or layer.class_name != "InputLayer":
            raise BadInputError(f"{source}: model input {ref[0]!r} is not an InputLayer in the config")
        shape = input_shape_of(layer.config, source, ref[0])
        if shape is None:
            raise BadInputError(f"{source}: input layer {ref[0]!r} declares no shape")
        shapes.append(shape)
    for ref in outputs:
        if ref[0] not in by_name:
            raise BadInputError(f"{source}: model output names unknown layer {ref[0]!r}")
    return ParsedModel(class_name, layers, inputs, outputs, tuple(shapes))


OPS_MODULES = ("keras.src.ops", "keras.ops")


def _reachable(
    layers: list[ParsedLayer], inputs: tuple[TensorRef, ...], outputs: tuple[TensorRef, ...], source: str
) -> list[ParsedLayer]:
    """Keep the layers the outputs depend on through their inputs and initial states.

    Keras 3 records the masks it derives (Embedding's ids != 0, merged masks, ...) as keras.ops
    nodes passed to the next layer as `mask=`; the reference derives the same masks itself
    (tested against model.predict), so those nodes fall away here. A mask coming from anything
    but such an ops node was passed by the user's code and is refused.
    """
    by_name = {layer.name: layer for layer in layers}
    needed = {ref[0] for ref in inputs}
    stack = [ref[0] for ref in outputs]
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        stack.extend(ref[0] for node in by_name[name].inbound for ref in node)
    for layer in layers:
        if layer.name not in needed:
            continue
        for ref in layer.mask_refs:
            producer = by_name.get(ref[0])
            if producer is None or not _is_op(producer):
                raise UnsupportedError(
                    f"{source}: layer {layer.name!r} is called with an explicit mask= tensor "
                    f"from {ref[0]!r}; only the masks Keras derives itself are supported"
                )
    return [layer for layer in layers if layer.name in needed]


def _is_op(layer: ParsedLayer) -> bool:
    """A keras.ops node: named by module in .keras configs; in legacy .h5 configs (no module) the
    one kind of entry without the `trainable` key every Keras 3 layer config has."""
    return layer.class_name.startswith("ops.") or (layer.class_name != "InputLayer" and "trainable" not in layer.config)


def _check_unique(layers: list[ParsedLayer], source: str) -> None:
    seen = set()
    for layer in layers:
        if layer.name in seen:
            raise BadInputError(f"{source}: two layers are named {layer.name!r}")
        seen.add(layer.name)


def _ref(value: Any, source: str, where: str) -> TensorRef:
    if (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    ):
        return (value[0], value[1], value[2])
    raise BadInputError(f"{source}: malformed tensor reference {value!r} in {where}")


def _tensor_list(value: Any, source: str, where: str) -> tuple[TensorRef, ...]:
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str):
        return (_ref(value, source, where),)  # a single bare [name, node, tensor] triple
    if not isinstance(value, list) or not value:
        raise BadInputError(f"{source}: functional model config has no {where}")
    return tuple(_ref(v, source, where) for v in value)


def _parse_node(node: Any, source: str, layer: str) -> tuple[tuple[TensorRef, ...], tuple[TensorRef, ...]]:
    """A call's input tensors, positionally (the input(s) first, then any initial states), and the
    tensors passed as `mask=`.

    Positional x then states is Keras 2's own layout for an RNN called with initial_state
    ([x, h0, c0]); a Keras 3 node's `initial_state` keyword is appended the same way. Other tensor
    keywords are refused.
    """
    where = f"inbound nodes of layer {layer!r}"
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        refs = _keras3_tensors(node.get("args", []), source)
        kwargs = node.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise BadInputError(f"{source}: malformed {where}")
        refs += _keras3_tensors(kwargs.get("initial_state"), source)
        masks = _keras3_tensors(kwargs.get("mask"), source)
        others = sorted(
            k for k, v in kwargs.items() if k not in ("initial_state", "mask") and _keras3_tensors(v, source)
        )
        if others:
            raise UnsupportedError(
                f"{source}: layer {layer!r} is called with tensor keyword arguments "
                f"{others}; not supported (supported: initial_state, mask)"
            )
        return tuple(refs), tuple(masks)
    if isinstance(node, list):  # Keras 2: [[name, node, tensor, kwargs], ...]
        return tuple(_ref(item, source, where) for item in node), ()
    raise BadInputError(f"{source}: malformed {where}")


def _keras3_tensors(value: Any, source: str) -> list[TensorRef]:
    found: list[TensorRef] = []
    stack = [value]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                history = (item.get("config") or {}).get("keras_history")
                found.append(_ref(history, source, "keras_history"))
            else:
                stack[0:0] = list(item.values())
        elif isinstance(item, list):
            stack[0:0] = item
    return found
