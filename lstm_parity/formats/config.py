"""Turn a saved Keras model config (any generation's JSON) into layers and graph wiring.

Handles Sequential configs (a bare list in Keras 2.1/2.2.0, `{name, layers}` later, with or
without an InputLayer) and Functional configs (Keras 2 `[[name, node, tensor, kwargs]]` inbound
nodes and Keras 3 `{"args": [...], "kwargs": {...}}` nodes). Weights are attached by the readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInputError, UnsupportedError
from ..spec import MASK_KEYWORD, TENSOR_SLOT, TensorRef
from .keras3_masks import DerivedMasks

SEQUENTIAL_CLASSES = {"Sequential"}
FUNCTIONAL_CLASSES = {"Functional", "Model"}


@dataclass
class ParsedLayer:
    name: str
    class_name: str
    config: dict[str, Any]
    inbound: tuple[tuple[TensorRef, ...], ...]
    node_mask: tuple[Any, ...] = ()  # per call: its saved `mask=` (see ParsedNode.mask)
    node_masks: tuple[bool, ...] = ()  # Keras 3 functional: per call, was a mask passed at all?
    node_kwargs: tuple[dict[str, Any], ...] = ()  # per call: non-tensor keyword arguments
    node_tensors: tuple[dict[str, TensorRef], ...] = ()  # per call: tensor keyword arguments
    node_args: tuple[tuple[Any, ...], ...] = ()  # op layers, per call: positional args with tensor slots
    module: str = ""
    registered_name: str = ""


@dataclass
class ParsedNode:
    """One call of a layer: its positional input tensors (then any initial states), its `mask=`
    (None, one tensor, or a list holding one tensor or None per input), the other keyword arguments
    split into constants and tensors, and the positional arguments as saved with tensors replaced
    by `{"__input__": i}` slots."""

    refs: tuple[TensorRef, ...]
    mask: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    args: tuple[Any, ...] = ()


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
    for entry in entries:
        if entry["class_name"] == "Merge" and entry["config"].get("layers"):
            raise UnsupportedError(
                f"{source}: layer {_layer_name(entry, source)!r} (Merge) joins whole branch models inside a "
                f"Keras 1 Sequential; not supported (supported: Merge in a functional model)"
            )
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
        nodes = entry.get("inbound_nodes") or []
        if not isinstance(nodes, list):
            raise BadInputError(f"{source}: malformed inbound nodes of layer {name!r}")
        keras3_nodes = all(isinstance(node, dict) for node in nodes)
        layer_class = entry["class_name"]
        module = str(entry.get("module") or "")
        if module.startswith(OPS_MODULES) or (nodes and keras3_nodes and _unmarked_op(entry)):
            layer_class = f"ops.{layer_class}"  # a keras.ops call recorded in the graph, not a layer
        parsed_nodes = [_parse_node(node, source, name, layer_class) for node in nodes]
        registered = entry.get("registered_name")
        layers.append(
            ParsedLayer(
                name,
                layer_class,
                entry["config"],
                tuple(n.refs for n in parsed_nodes),
                tuple(n.mask for n in parsed_nodes),
                tuple(_has_mask(n.mask) for n in parsed_nodes) if keras3_nodes else (),
                tuple(n.kwargs for n in parsed_nodes),
                tuple(n.tensors for n in parsed_nodes),
                tuple(n.args for n in parsed_nodes) if is_op_class(layer_class) else (),
                module,
                registered if isinstance(registered, str) else "",
            )
        )
    _check_unique(layers, source)
    _place_masks(layers)
    inputs = _tensor_list(config.get("input_layers"), source, "input_layers")
    outputs = _tensor_list(config.get("output_layers"), source, "output_layers")
    layers = _reachable(layers, inputs, outputs)
    _check_op_operands(layers, source)
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
OP_LAYER_CLASSES = ("TFOpLambda", "SlicingOpLambda")  # tf.keras 2.4+: a TensorFlow function on Keras tensors


def is_op_class(class_name: str) -> bool:
    """Is `class_name` an op call recorded in the graph (tf.keras op layer or Keras 3 keras.ops node)?"""
    return class_name in OP_LAYER_CLASSES or class_name.startswith("ops.")


def _unmarked_op(entry: dict[str, Any]) -> bool:
    """A Keras 3 legacy `.h5` config drops `module`: a keras.ops node is then an entry named like a
    keras.ops operation without the `trainable` key every Keras 3 layer config has."""
    from ..reference.keras_classes import KERAS_OPS_CLASSES

    return entry["class_name"] in KERAS_OPS_CLASSES and "trainable" not in entry["config"]


def _reachable(
    layers: list[ParsedLayer], inputs: tuple[TensorRef, ...], outputs: tuple[TensorRef, ...]
) -> list[ParsedLayer]:
    """Keep the layers the outputs depend on through their inputs, initial states and tensor keywords
    (explicit masks included): the op nodes of the masks Keras 3 derived itself fall away here."""
    by_name = {layer.name: layer for layer in layers}
    needed = {ref[0] for ref in inputs}
    stack = [ref[0] for ref in outputs]
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        layer = by_name[name]
        stack.extend(ref[0] for node in layer.inbound for ref in node)
        stack.extend(ref[0] for node in layer.node_tensors for ref in node.values())
    return [layer for layer in layers if layer.name in needed]


def _check_op_operands(layers: list[ParsedLayer], source: str) -> None:
    """A tf.keras op layer whose call holds no tensor: tf.keras saved only its first argument (tf.einsum's
    equation; the tensors went to *args, which it does not save), so nothing in the file says what it
    computes on."""
    for layer in layers:
        empty = any(not refs and not tensors for refs, tensors in zip(layer.inbound, layer.node_tensors, strict=True))
        if layer.class_name in OP_LAYER_CLASSES and empty:
            raise UnsupportedError(
                f"{source}: layer {layer.name!r} ({layer.class_name}): tf.keras did not save the operands of "
                f"tf.{layer.config.get('function')} (only its first argument); the file cannot be computed"
            )


def _has_mask(mask: Any) -> bool:
    return mask is not None and (not isinstance(mask, list) or any(m is not None for m in mask))


def _place_masks(layers: list[ParsedLayer]) -> None:
    """Make each call's saved `mask=` tensor keywords (keys as in `spec.mask_input`): the forward pass
    computes them and gives them to the layer, as Keras does. Except, in Keras 3 graphs, the masks
    Keras derived itself (also op nodes) where the reference derives the same: see keras3_masks."""
    derived = DerivedMasks(layers) if any(layer.node_masks for layer in layers) else None
    for layer in layers:
        tensors = list(layer.node_tensors)
        for node, mask in enumerate(layer.node_mask):
            if not _has_mask(mask) or (derived is not None and layer.node_masks and derived.is_derived(layer, node)):
                continue
            if isinstance(mask, list):
                keywords = {f"{MASK_KEYWORD}[{i}]": ref for i, ref in enumerate(mask) if ref is not None}
            else:
                keywords = {MASK_KEYWORD: mask}
            tensors[node] = {**tensors[node], **keywords}
        layer.node_tensors = tuple(tensors)


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


CONSTANT = "_CONSTANT_VALUE"  # tf.keras: a constant in a call's first argument, [CONSTANT, -1, value, kwargs]


def _parse_node(node: Any, source: str, layer: str, class_name: str) -> ParsedNode:
    """One saved call of `layer`: see ParsedNode.

    Positional x then states is Keras 2's own layout for an RNN called with initial_state
    ([x, h0, c0]); a Keras 3 node's `initial_state` keyword is appended the same way. Tensors
    inside other keyword structures (a list of tensors as one keyword) are refused.
    """
    where = f"inbound nodes of layer {layer!r}"
    op = is_op_class(class_name)
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        refs: list[TensorRef] = []
        args = _keras3_walk(node.get("args", []), refs, source)
        kwargs = node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise BadInputError(f"{source}: malformed {where}")
        return _split_kwargs(kwargs, refs, tuple(args) if op else (), KERAS3, source, layer)
    if isinstance(node, list):  # Keras 2: [[name, node, tensor, kwargs], ...]; op layers may drop a level
        entries: list[list[Any]] = []
        template = _keras2_walk(node, entries, source, strict=True)
        refs = []
        for entry in entries:
            if entry[0] == CONSTANT:
                if not op:
                    raise UnsupportedError(
                        f"{source}: layer {layer!r} is called with a constant {entry[2]!r} as an input; not supported"
                    )
                continue
            refs.append(_ref(entry, source, where))
        kwargs = next((e[3] for e in entries if len(e) > 3), None) or {}
        if not isinstance(kwargs, dict):
            raise BadInputError(f"{source}: malformed {where}")
        return _split_kwargs(kwargs, refs, (template,) if op else (), KERAS2, source, layer)
    raise BadInputError(f"{source}: malformed {where}")


@dataclass(frozen=True)
class _Generation:
    """How one generation's node data holds tensors: `tensors(value)` lists those in a structure,
    `single(value)` is the reference when the value is one tensor (else None)."""

    tensors: Any
    single: Any


def _split_kwargs(
    kwargs: dict[str, Any], refs: list[TensorRef], args: tuple[Any, ...], gen: _Generation, source: str, layer: str
) -> ParsedNode:
    mask: Any = None
    constants: dict[str, Any] = {}
    tensors: dict[str, TensorRef] = {}
    states: list[TensorRef] = []
    for key, value in kwargs.items():
        found = gen.tensors(value, source)
        single = gen.single(value, source)
        if key == MASK_KEYWORD:
            mask = _mask_structure(value, single, gen, source, layer)
        elif key == "initial_state":
            states += found
        elif not found:
            constants[key] = value
        elif single is not None:
            tensors[key] = single
        else:
            raise UnsupportedError(
                f"{source}: layer {layer!r} is called with several tensors in keyword argument {key!r}; not supported"
            )
    return ParsedNode(tuple(refs + states), mask, constants, tensors, args)


def _mask_structure(value: Any, single: TensorRef | None, gen: _Generation, source: str, layer: str) -> Any:
    """A call's `mask=`: None, one tensor, or a list holding one tensor or None per input."""
    if value is None or single is not None:
        return single
    if isinstance(value, list):
        items = [None if item is None else gen.single(item, source) for item in value]
        if all(ref is not None or item is None for ref, item in zip(items, value, strict=True)):
            return items
    raise UnsupportedError(f"{source}: layer {layer!r} is called with a mask= structure that is not supported")


def _is_entry(value: Any) -> bool:
    """tf.keras node data: [layer name, node index, tensor index] or the same with a kwargs dict."""
    return (
        isinstance(value, list)
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and (len(value) == 3 or isinstance(value[3], dict))
    )


def _keras2_walk(value: Any, entries: list[list[Any]], source: str, strict: bool = False) -> Any:
    """Walk tf.keras node data (lists and dicts): collect its entries in order and return the structure
    with each tensor replaced by a slot and each constant by its value. A call's first argument holds
    nothing but entries (`strict`: anything else is malformed); keyword arguments hold any values."""
    if _is_entry(value):
        entries.append(value)
        if value[0] == CONSTANT:
            return value[2]
        return {TENSOR_SLOT: sum(1 for e in entries if e[0] != CONSTANT) - 1}
    if isinstance(value, list) and (value or not strict):
        return [_keras2_walk(item, entries, source, strict) for item in value]
    if strict:
        raise BadInputError(f"{source}: malformed tensor reference {value!r} in inbound nodes")
    if isinstance(value, dict):
        return {key: _keras2_walk(item, entries, source) for key, item in value.items()}
    return value


def _keras2_tensors(value: Any, source: str) -> list[TensorRef]:
    entries: list[list[Any]] = []
    _keras2_walk(value, entries, source)
    return [_ref(entry, source, "keyword arguments") for entry in entries if entry[0] != CONSTANT]


def _keras2_single(value: Any, source: str) -> TensorRef | None:
    return _ref(value, source, "keyword arguments") if _is_entry(value) and value[0] != CONSTANT else None


def _keras3_walk(value: Any, refs: list[TensorRef], source: str) -> Any:
    """A Keras 3 call's arguments with each `__keras_tensor__` replaced by a slot (collected in `refs`)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            refs.append(_ref((value.get("config") or {}).get("keras_history"), source, "keras_history"))
            return {TENSOR_SLOT: len(refs) - 1}
        return {key: _keras3_walk(item, refs, source) for key, item in value.items()}
    if isinstance(value, list):
        return [_keras3_walk(item, refs, source) for item in value]
    return value


def _keras3_tensors(value: Any, source: str) -> list[TensorRef]:
    refs: list[TensorRef] = []
    _keras3_walk(value, refs, source)
    return refs


def _keras3_single(value: Any, source: str) -> TensorRef | None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return _keras3_tensors(value, source)[0]
    return None


KERAS2 = _Generation(_keras2_tensors, _keras2_single)
KERAS3 = _Generation(_keras3_tensors, _keras3_single)
