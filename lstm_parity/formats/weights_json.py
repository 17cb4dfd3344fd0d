"""Read an lstm-parity JSON dump back into a ModelSpec (so `predict` runs from a dump alone).

Arrays come back with their recorded dtype and shape, bit-identical to what was dumped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError
from ..spec import LayerSpec, ModelSpec
from .safety import parse_json

SUPPORTED_SCHEMA = 1
SEMANTICS = ("keras2", "keras3")


def decode_array(values: Any, dtype: str, shape: list[int], where: str) -> np.ndarray:
    """Inverse of dump.encode_array; raises BadInputError when values do not fill the shape."""

    def fix(item: Any) -> Any:
        if isinstance(item, list):
            return [fix(v) for v in item]
        return float(item) if isinstance(item, str) else item

    try:
        kind = np.dtype(dtype)
        if kind.kind not in "fiub":
            raise TypeError(f"dtype {dtype} is not numeric")
        array = np.array(fix(values), dtype=np.float64 if kind.kind == "f" else kind).astype(kind)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{where}: unreadable values ({exc})") from None
    if list(array.shape) != list(shape):
        raise BadInputError(f"{where}: values have shape {array.shape}, the dump says {tuple(shape)}")
    return array


def read_dump(path: str) -> ModelSpec:
    """Read a dump written by `lstm-parity dump`; raises BadInputError for anything malformed."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    dump = parse_json(text, "JSON dump", path)
    if not isinstance(dump, dict) or "schema_version" not in dump or "layers" not in dump:
        raise BadInputError(f"{path}: JSON file is not an lstm-parity dump (no schema_version/layers)")
    if dump["schema_version"] != SUPPORTED_SCHEMA:
        raise BadInputError(
            f"{path}: dump schema_version {dump['schema_version']!r} is not supported "
            f"(this lstm-parity reads {SUPPORTED_SCHEMA})"
        )
    try:
        layers = tuple(_layer(entry, path) for entry in dump["layers"])
        inputs = tuple((item["name"], 0, 0) for item in dump["inputs"])
        shapes = tuple(tuple(item["shape"]) for item in dump["inputs"])
        outputs = tuple(tuple(item["tensor"]) for item in dump["outputs"])
        source = dump.get("source", {})
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{path}: malformed dump ({type(exc).__name__}: {exc})") from None
    if not isinstance(source, dict):
        raise BadInputError(f"{path}: malformed dump (source is not an object)")
    semantics = source.get("semantics", "keras3")
    if semantics not in SEMANTICS:
        raise BadInputError(
            f"{path}: dump source.semantics {semantics!r} is not supported (supported: {', '.join(SEMANTICS)})"
        )
    return ModelSpec(
        layers=layers,
        inputs=inputs,
        outputs=outputs,
        input_shapes=shapes,
        keras_version=str(source.get("keras_version", "")),
        semantics=semantics,
        source=path,
        file_format="dump-json",
        model_class=str(source.get("model_class", "")),
        sha256=str(source.get("sha256", "")),
    )


def _layer(entry: dict[str, Any], path: str) -> LayerSpec:
    where = f"{path}: layer {entry.get('name')!r}"
    weights = [
        decode_array(w["values"], w["dtype"], w["shape"], f"{where} weight {w.get('name')!r}")
        for w in entry.get("weights", [])
    ]
    return LayerSpec(
        name=entry["name"],
        class_name=entry["class_name"],
        config=dict(entry["config"]),
        weights=tuple(weights),
        weight_names=tuple(w["name"] for w in entry.get("weights", [])),
        stored_names=tuple(w.get("stored_name", "") for w in entry.get("weights", [])),
        inbound=tuple(tuple(tuple(ref) for ref in node) for node in entry["inbound"]),
        converted=str(entry.get("converted", "")),
        node_masks=tuple(bool(v) for v in entry.get("node_masks", [])),
        **_call_fields(entry, where),
    )


def _call_fields(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """The per-call fields `dump` writes when a layer's calls carried more than tensors (see dump._call_fields)."""
    kwargs = entry.get("node_kwargs", [])
    tensors = entry.get("node_tensors", [])
    args = entry.get("node_args", [])
    if not (
        isinstance(kwargs, list)
        and all(isinstance(k, dict) for k in kwargs)
        and isinstance(tensors, list)
        and all(isinstance(t, dict) and all(_is_ref(r) for r in t.values()) for t in tensors)
        and isinstance(args, list)
        and all(isinstance(a, list) for a in args)
        and isinstance(entry.get("module", ""), str)
        and isinstance(entry.get("registered_name", ""), str)
    ):
        raise BadInputError(f"{where}: malformed node_kwargs / node_tensors / node_args / module")
    return {
        "node_kwargs": tuple(dict(k) for k in kwargs),
        "node_tensors": tuple({name: (r[0], r[1], r[2]) for name, r in t.items()} for t in tensors),
        "node_args": tuple(tuple(a) for a in args),
        "module": entry.get("module", ""),
        "registered_name": entry.get("registered_name", ""),
    }


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )
