"""What is inside an export, read from the file alone (no TensorFlow, no runtime session).

`onnx_census` parses an `.onnx` protobuf with the `onnx` package (external data is never read);
`tflite_census` walks a `.tflite` flatbuffer with the schema module that `ai_edge_litert` (or
`tflite_micro`) ships; `openvino_census` lists the graph OpenVINO read (ONNX or IR), before it is
compiled. All return plain dicts (str/int/bool/list/dict only, so they pickle and print), and
`describe` turns any of them (and the hls4ml runner's) into the one line a report shows.

Run them on untrusted files only where a crash or a garbage answer is contained (the runners call
them inside their sandboxed probe): a corrupt flatbuffer can make the census raise anything.
"""

from __future__ import annotations

import importlib
from collections import Counter
from typing import Any

FUSED_ONNX = ("LSTM", "GRU", "RNN")  # ONNX's own recurrent ops
LOOP_ONNX = ("Loop", "Scan")  # a recurrent layer spelled out as a loop over a body graph
FUSED_TFLITE = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN",
    "LSTM",
    "RNN",
)
LOOP_TFLITE = ("WHILE",)
FUSED_OPENVINO = ("LSTMSequence", "GRUSequence", "RNNSequence", "LSTMCell", "GRUCell", "RNNCell")
LOOP_OPENVINO = ("TensorIterator", "Loop")
LITERT_SCHEMA = "ai_edge_litert.schema_py_generated"
TFLM_SCHEMA = "tflite_micro.tensorflow.lite.micro.python.schema_py_generated"  # the same schema, shipped by TFLM
# OpenVINO element type names (ov.Type.to_string()) as numpy spells them
OPENVINO_TYPES = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "i4": "int4",
    "u64": "uint64",
    "u32": "uint32",
    "u16": "uint16",
    "u8": "uint8",
    "u4": "uint4",
    "u1": "uint1",
    "boolean": "bool",
}
# Weight dtypes that mean the export was quantized (float16 included: it is a precision change too).
QUANTIZED_TYPES = ("int8", "uint8", "int16", "int4", "uint4", "int2", "float16")
# ONNX ops that only a quantized graph has (QLinear* too, in ai.onnx or com.microsoft).
QUANTIZED_ONNX_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QGemm",
        "QAttention",
    }
)
DESCRIBE_OPS = 6  # ops named in a one-line description before "N more"

# --------------------------------------------------------------------------------------------- ONNX


def _onnx_value_info(value: Any) -> dict[str, Any]:
    """Name, numpy dtype name and shape (ints, None where dynamic; None for an unknown rank)."""
    import onnx
    from onnx import helper

    tensor_type = value.type.tensor_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    except (KeyError, ValueError, TypeError):
        dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type).lower()
    shape: list[int | None] | None = None
    if tensor_type.HasField("shape"):
        shape = [int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return {"name": value.name, "dtype": dtype, "shape": shape}


def _onnx_subgraphs(node: Any) -> list[Any]:
    """The body graphs of a Loop/Scan/If (GRAPH and GRAPHS attributes)."""
    from onnx import AttributeProto

    graphs = []
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            graphs.append(attribute.g)
        elif attribute.type == AttributeProto.GRAPHS:
            graphs.extend(attribute.graphs)
    return graphs


def _onnx_type_name(data_type: int) -> str:
    """ "float", "float16", "int8", ... for a TensorProto data type; "unknown" for a number it lacks."""
    from onnx import TensorProto

    try:
        return str(TensorProto.DataType.Name(data_type)).lower()
    except ValueError:
        return "unknown"


def _onnx_walk(graph: Any, ops: Counter, external: list[dict[str, Any]], weights: Counter) -> None:
    """Count every node of `graph` and its nested bodies, and the dtypes of their stored tensors
    (initializers and Constant values: the weights); collect tensors stored outside the file."""
    from onnx import AttributeProto, TensorProto

    tensors = list(graph.initializer)
    for node in graph.node:
        ops[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"] += 1
        tensors += [a.t for a in node.attribute if a.type == AttributeProto.TENSOR]
        tensors += [t for a in node.attribute if a.type == AttributeProto.TENSORS for t in a.tensors]
        for body in _onnx_subgraphs(node):
            _onnx_walk(body, ops, external, weights)
    for tensor in tensors:
        weights[_onnx_type_name(tensor.data_type)] += 1
        if tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL:
            entry = {item.key: item.value for item in tensor.external_data}
            external.append({"tensor": tensor.name, **entry})


def onnx_census(path: str) -> dict[str, Any]:
    """The census of an `.onnx` file, parsed without loading external data.

    Returns {"format": "onnx", "ir_version", "producer", "opset" (the ai.onnx opset), "opsets"
    {domain: version}, "ops" {op type: count, nested Loop/Scan/If bodies included}, "ops_top_level",
    "fused" {LSTM/GRU/RNN: count}, "loops" {Loop/Scan: count}, "inputs"/"outputs" [{"name", "dtype"
    (numpy name), "shape" (None for dynamic dims)}] (initializers are not inputs), "external_data"
    [{"tensor", "location", ...}], "weight_types" {dtype: count of stored tensors}, "quantized" (any
    float16/int8/... weight or a quantization op such as DequantizeLinear, MatMulInteger, QLinear*),
    "quantized_types" (as tflite_census': ["float16"] for float16 weights only; "int8" added when a
    quantization op has no integer weight beside it)}.
    Raises whatever `onnx.load` raises on a file it cannot parse.
    """
    import onnx

    model = onnx.load(path, load_external_data=False)  # reads `path` only
    ops: Counter = Counter()
    external: list[dict[str, Any]] = []
    weights: Counter = Counter()
    _onnx_walk(model.graph, ops, external, weights)
    quantized_types = _onnx_quantized_types(ops, weights)
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    initializers = {t.name for t in model.graph.initializer}
    return {
        "format": "onnx",
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": opsets.get("ai.onnx"),
        "opsets": opsets,
        "ops": dict(ops),
        "ops_top_level": dict(Counter(node.op_type for node in model.graph.node)),
        "fused": {op: ops[op] for op in FUSED_ONNX if ops[op]},
        "loops": {op: ops[op] for op in LOOP_ONNX if ops[op]},
        "inputs": [_onnx_value_info(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [_onnx_value_info(v) for v in model.graph.output],
        "external_data": external,
        "weight_types": dict(weights),
        "quantized": bool(quantized_types),
        "quantized_types": quantized_types,
    }


def _onnx_quantized_types(ops: Counter, weights: Counter) -> list[str]:
    """The quantized weight dtypes, sorted; "int8" stands for a quantization op's integers when no
    integer weight is stored (e.g. QuantizeLinear of activations). [] for a float32 graph."""
    types = sorted(t for t in weights if t in QUANTIZED_TYPES)
    quant_ops = any((base := op.rsplit("::", 1)[-1]) in QUANTIZED_ONNX_OPS or base.startswith("QLinear") for op in ops)
    if quant_ops and not [t for t in types if t != "float16"]:
        types = sorted([*types, "int8"])
    return types


# ------------------------------------------------------------------------------------------- TFLite


def _enum_names(enum: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def _tflite_opcodes(model: Any, schema: Any) -> list[str]:
    """One name per operator code: the builtin's name, or "CUSTOM:<custom code>"."""
    builtin = _enum_names(schema.BuiltinOperator)
    names = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        # since schema 3a the real code is BuiltinCode(); DeprecatedBuiltinCode() is capped at 127
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = builtin.get(number, f"BUILTIN_{number}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (code.CustomCode() or b"").decode("utf-8", "replace")
        names.append(name)
    return names


def _tflite_tensor_info(tensor: Any, type_names: dict[int, str]) -> dict[str, Any]:
    """Name, dtype, shape (None where the signature is dynamic) and (scale, zero point) if quantized."""
    dims = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy()
    shape = [None if int(d) < 0 else int(d) for d in (dims if not isinstance(dims, int) else [])]
    info: dict[str, Any] = {
        "name": (tensor.Name() or b"").decode("utf-8", "replace"),
        "dtype": type_names.get(tensor.Type(), "unknown"),
        "shape": shape,
    }
    quantization = tensor.Quantization()
    if quantization is not None and quantization.ScaleLength() == 1:
        zero_point = int(quantization.ZeroPoint(0)) if quantization.ZeroPointLength() else 0
        info["quantization"] = [float(quantization.Scale(0)), zero_point]
    return info


def _tflite_is_constant(model: Any, tensor: Any) -> bool:
    """Does the tensor hold stored data (a weight), inline or at an offset past the flatbuffer?"""
    index = tensor.Buffer()
    if index <= 0 or index >= model.BuffersLength():
        return False
    buffer = model.Buffers(index)
    return buffer.DataLength() > 0 or buffer.Offset() > 1


def _tflite_tally(model: Any, opcodes: list[str], type_names: dict[int, str]) -> dict[str, Any]:
    """Op uses, tensor dtypes, weight (constant) dtypes and variable tensors over every subgraph."""
    ops: Counter = Counter()
    tensor_types: Counter = Counter()
    weight_types: Counter = Counter()
    variables: list[str] = []
    for sub_index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(sub_index)
        for op_index in range(subgraph.OperatorsLength()):
            ops[opcodes[subgraph.Operators(op_index).OpcodeIndex()]] += 1
        for tensor_index in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(tensor_index)
            dtype = type_names.get(tensor.Type(), "unknown")
            tensor_types[dtype] += 1
            if _tflite_is_constant(model, tensor):
                weight_types[dtype] += 1
            if tensor.IsVariable():
                variables.append((tensor.Name() or b"").decode("utf-8", "replace"))
    return {"ops": ops, "tensor_types": tensor_types, "weight_types": weight_types, "variables": variables}


def tflite_census(path: str, schema_module: str = LITERT_SCHEMA) -> dict[str, Any]:
    """The census of a `.tflite` flatbuffer, over every subgraph (WHILE bodies included), read with
    `schema_module` (LITERT_SCHEMA, or TFLM_SCHEMA where only tflite_micro is installed).

    Returns {"format": "tflite", "version", "subgraphs", "ops" {name: count}, "builtin_ops",
    "flex_ops" [custom ops run by TensorFlow's Flex delegate, e.g. "FlexTensorListReserve"],
    "custom_ops" [the other custom ops], "fused" / "loops" {op: count}, "tensor_types" {dtype: count},
    "weight_types" {dtype: count of constant tensors}, "quantized" (any weight int8/float16/...),
    "quantized_types", "variable_tensors" [names of state kept between invocations],
    "inputs"/"outputs" [{"name", "dtype", "shape" (None where dynamic), "quantization": [scale,
    zero_point] when quantized, "signature_name" when the main subgraph's signature names it}] of
    the main subgraph}.
    Raises ValueError without the TFL3 identifier; a corrupt buffer may raise anything.
    """
    schema = importlib.import_module(schema_module)  # ships no type hints
    with open(path, "rb") as handle:
        data = handle.read()
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.Model.GetRootAs(data, 0)
    type_names = {k: v.lower() for k, v in _enum_names(schema.TensorType).items()}
    tally = _tflite_tally(model, _tflite_opcodes(model, schema), type_names)
    ops = tally["ops"]
    custom = sorted(op[len("CUSTOM:") :] for op in ops if op.startswith("CUSTOM:"))
    quantized_types = sorted(t for t in tally["weight_types"] if t in QUANTIZED_TYPES)
    main = model.Subgraphs(0) if model.SubgraphsLength() else None
    signature = _tflite_signature(model)
    return {
        "format": "tflite",
        "version": int(model.Version()),
        "subgraphs": int(model.SubgraphsLength()),
        "ops": dict(ops),
        "builtin_ops": {op: n for op, n in ops.items() if not op.startswith("CUSTOM:")},
        "flex_ops": [op for op in custom if op.startswith("Flex")],
        "custom_ops": [op for op in custom if not op.startswith("Flex")],
        "fused": {op: ops[op] for op in FUSED_TFLITE if ops[op]},
        "loops": {op: ops[op] for op in LOOP_TFLITE if ops[op]},
        "tensor_types": dict(tally["tensor_types"]),
        "weight_types": dict(tally["weight_types"]),
        "quantized": bool(quantized_types),
        "quantized_types": quantized_types,
        "variable_tensors": tally["variables"],
        "inputs": _tflite_ports(main, "Inputs", type_names, signature["Inputs"]),
        "outputs": _tflite_ports(main, "Outputs", type_names, signature["Outputs"]),
    }


def _tflite_signature(model: Any) -> dict[str, dict[int, str]]:
    """{"Inputs"/"Outputs": {tensor index: signature name}} of the main subgraph's signature
    ("serving_default" when there are several); empty maps when the file has none."""
    found: dict[str, dict[int, str]] = {"Inputs": {}, "Outputs": {}}
    signatures = [model.SignatureDefs(i) for i in range(model.SignatureDefsLength())]
    signatures = [sig for sig in signatures if sig.SubgraphIndex() == 0]
    if not signatures:
        return found
    keys = [(sig.SignatureKey() or b"").decode("utf-8", "replace") for sig in signatures]
    chosen = signatures[keys.index("serving_default")] if "serving_default" in keys else signatures[0]
    for which, names in found.items():
        for i in range(getattr(chosen, which + "Length")()):
            entry = getattr(chosen, which)(i)
            names[int(entry.TensorIndex())] = (entry.Name() or b"").decode("utf-8", "replace")
    return found


def _tflite_ports(
    subgraph: Any, which: str, type_names: dict[int, str], signature: dict[int, str]
) -> list[dict[str, Any]]:
    """The subgraph's "Inputs" or "Outputs" tensors ([] without a subgraph), with the name the
    signature gives each (`signature`: tensor index -> name)."""
    if subgraph is None:
        return []
    indices = [int(getattr(subgraph, which)(i)) for i in range(getattr(subgraph, which + "Length")())]
    ports = []
    for index in indices:
        info = _tflite_tensor_info(subgraph.Tensors(index), type_names)
        if signature.get(index):
            info["signature_name"] = signature[index]
        ports.append(info)
    return ports


# ----------------------------------------------------------------------------------------- OpenVINO


def openvino_type(element_type: Any) -> str:
    """An OpenVINO element type as numpy names it ("f32" -> "float32"); unknown names as OpenVINO's."""
    name = str(element_type.to_string())
    return OPENVINO_TYPES.get(name, name)


def _openvino_port(port: Any) -> dict[str, Any]:
    """Name, numpy dtype name and shape (None for dynamic dims; None for a dynamic rank) of a port."""
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else [None if d.is_dynamic else int(d.get_length()) for d in shape]
    try:
        name = str(port.get_any_name())
    except RuntimeError:  # a port without a tensor name
        name = ""
    return {"name": name, "dtype": openvino_type(port.get_element_type()), "shape": dims}


def openvino_census(model: Any, source_format: str) -> dict[str, Any]:
    """The census of a graph OpenVINO has read (an `ov.Model`, before compiling) from an "onnx" or "ir"
    file: {"format": "openvino", "source_format", "ops" {OpenVINO op type: count}, "fused"
    {LSTMSequence/GRUSequence/...: count}, "loops" {TensorIterator/Loop: count}, "weight_types"
    {dtype: count of Constant tensors of floating type}, "quantized", "quantized_types" (an IR saved
    with ov.save_model's default compress_to_fp16 stores float16 weights), "inputs"/"outputs" [{"name",
    "dtype", "shape"}]}. The runner adds how it was compiled (see openvino.py)."""
    ops: Counter = Counter(op.get_type_name() for op in model.get_ordered_ops())
    weights: Counter = Counter(
        openvino_type(op.get_element_type())
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant" and op.get_element_type().is_real()
    )
    weights += Counter(  # integer weights only count as quantized when something dequantizes them
        openvino_type(op.get_element_type())
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant"
        and not op.get_element_type().is_real()
        and any(t.get_node().get_type_name() == "Convert" for t in op.output(0).get_target_inputs())
    )
    quantized_types = sorted(t for t in weights if t in QUANTIZED_TYPES)
    return {
        "format": "openvino",
        "source_format": source_format,
        "ops": dict(ops),
        "fused": {op: ops[op] for op in FUSED_OPENVINO if ops[op]},
        "loops": {op: ops[op] for op in LOOP_OPENVINO if ops[op]},
        "weight_types": dict(weights),
        "quantized": bool(quantized_types),
        "quantized_types": quantized_types,
        "inputs": [_openvino_port(port) for port in model.inputs],
        "outputs": [_openvino_port(port) for port in model.outputs],
    }


# ------------------------------------------------------------------------------------------ describe


def _counted(ops: dict[str, int], limit: int = DESCRIBE_OPS) -> str:
    """ "A x2, B x1, ... (N more)", most used first."""
    ranked = sorted(ops.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{name} x{count}" for name, count in ranked[:limit])
    rest = len(ranked) - limit
    return shown + (f", ... ({rest} more)" if rest > 0 else "")


def _recurrent_first(ops: dict[str, int], census: dict[str, Any], fused_label: str) -> str:
    """The recurrent ops (fused ones labelled, then loops), then the other `ops`, most used first."""
    fused, loops = census.get("fused", {}), census.get("loops", {})
    recurrent = {fused_label + op: n for op, n in fused.items()} | dict(loops)
    others = {op: n for op, n in ops.items() if op not in fused and op not in loops}
    parts = [_counted(recurrent, limit=len(recurrent))] if recurrent else []
    if others:
        parts.append(_counted(others))
    return ", ".join(parts)


def _describe_onnx(census: dict[str, Any]) -> str:
    ops = _recurrent_first(census.get("ops_top_level", {}), census, "fused ")
    text = f"ONNX opset {census.get('opset')}: {ops or 'no ops'}"
    if census.get("quantized_types"):
        text += f"; quantized weights ({', '.join(census['quantized_types'])})"
    if census.get("external_data"):
        text += f"; {len(census['external_data'])} tensors in external data"
    return text


def _describe_tflite(census: dict[str, Any]) -> str:
    builtin = _recurrent_first(census.get("builtin_ops", {}), census, "")
    parts = [f"TFLite: builtin {builtin}" if builtin else "TFLite: no builtin ops"]
    flex = census.get("flex_ops", [])
    parts.append(f"Flex ops {', '.join(flex)}" if flex else "no Flex ops")
    if census.get("custom_ops"):
        parts.append(f"custom ops {', '.join(census['custom_ops'])}")
    quantized = census.get("quantized_types", [])
    parts.append(f"quantized weights ({', '.join(quantized)})" if quantized else "float32 weights")
    variables = census.get("variable_tensors", [])
    if variables:
        parts.append(f"{len(variables)} variable tensors (state kept between invocations)")
    arena = census.get("arena")
    if arena:  # TFLite Micro
        how = "sized automatically" if arena.get("automatic") else "as given"
        used = f"{arena['used']:,} bytes used of " if arena.get("used") is not None else ""
        parts.append(f"tensor arena {used}{arena['size']:,} bytes ({how})")
    return "; ".join(parts)


_SOURCE_FORMATS = {"onnx": "ONNX", "ir": "IR"}


def _describe_openvino(census: dict[str, Any]) -> str:
    ops = {op: n for op, n in census.get("ops", {}).items() if op not in ("Parameter", "Result", "Constant")}
    source = _SOURCE_FORMATS.get(census.get("source_format", ""), census.get("source_format", ""))
    parts = [f"OpenVINO from {source}: {_recurrent_first(ops, census, 'fused ') or 'no ops'}"]
    quantized = census.get("quantized_types", [])
    parts.append(f"{', '.join(quantized)} weights" if quantized else "float32 weights")
    return "; ".join(parts)


def _describe_hls4ml(census: dict[str, Any]) -> str:
    layers = census.get("precisions", {})
    shown = ", ".join(f"{name} {text}" for name, text in layers.items())
    return (
        f"hls4ml {census.get('backend', '')} C++ emulation ({census.get('compiler', 'g++')}), "
        f"{census.get('io_type', '')}; config: {census.get('config', '')}; precision: {shown or 'none'}"
    )


def describe(census: dict[str, Any]) -> str:
    """One line for a report, e.g. "ONNX opset 17: fused LSTM x1, MatMul x1, ...",
    "TFLite: builtin UNIDIRECTIONAL_SEQUENCE_LSTM x1, ...; no Flex ops; float32 weights",
    "OpenVINO from ONNX: fused LSTMSequence x1, ...; CPU inference precision bfloat16 (auto); ..." or
    "hls4ml Vivado C++ emulation (g++ 12.2.0), io_parallel; config: ...; precision: lstm fixed<16,6>, ..."."""
    describers = {
        "onnx": _describe_onnx,
        "tflite": _describe_tflite,
        "openvino": _describe_openvino,
        "hls4ml": _describe_hls4ml,
    }
    describer = describers.get(census.get("format", ""))
    return describer(census) if describer else ""
