"""Reader for Keras 3 `.keras` zip archives: config.json, metadata.json, model.weights.h5.

Only those three members are read. Member names are checked for traversal and compression
ratios for bombs before anything is decompressed. Weights live at
`layers/<snake_case(ClassName)>[_N]/.../vars/<i>`; the path is derived from the config with
Keras' own naming rule, and cross-checked against the `vars` group's `name` attribute (3.6+).
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import h5py
import numpy as np

from ..errors import BadInputError, UnsupportedError
from .config import ParsedModel, parse_model_config
from .safety import MAX_ARRAY_BYTES, parse_json, read_dataset, resolve

KNOWN_MEMBERS = {"config.json", "metadata.json", "model.weights.h5", "model.weights.npz"}
MAX_RATIO = 200  # uncompressed / compressed size beyond which a member counts as a zip bomb
MAX_MEMBER_BYTES = MAX_ARRAY_BYTES
# Sub-objects whose variables belong to the layer, in the order Keras creates (and returns) them.
# Sub-layers whose variables belong to their parent, in Keras' get_weights order: an RNN's cell, a
# wrapper's layer(s), and MultiHeadAttention's EinsumDense projections (Keras 3.0.0-3.0.2 named them
# with a leading underscore; gate_dense exists only with use_gate=True, Keras >= 3.14).
MHA_CHILDREN = tuple(
    name for part in ("query", "key", "gate", "value", "output") for name in (f"{part}_dense", f"_{part}_dense")
)
CHILD_ORDER = ("cell", "forward_layer", "backward_layer", "layer") + MHA_CHILDREN


def snake_case(class_name: str) -> str:
    """Keras' rule for naming list members in a weights file: `SimpleRNN` -> `simple_rnn`."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(?<=.)([A-Z][a-z]+)", r"_\1", name)
    return re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name).lower()


def read_keras_zip(path: str, source: str) -> tuple[ParsedModel, str, dict[str, tuple[list[str], list[np.ndarray]]]]:
    """Read (parsed model, keras_version, {layer name: (weight paths, arrays)}) from a `.keras` archive."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadInputError(f"{source}: not a readable zip archive ({exc})") from None
    with archive:
        members = _check_members(archive, source)
        if "config.json" not in members:
            raise BadInputError(f"{source}: the archive has no config.json; not a Keras model file")
        config = parse_json(_read_member(archive, members["config.json"], source), "config.json", source)
        metadata: Any = {}
        if "metadata.json" in members:
            metadata = parse_json(_read_member(archive, members["metadata.json"], source), "metadata.json", source)
        keras_version = str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""
        parsed = parse_model_config(config, source)
        if "model.weights.h5" not in members:
            if "model.weights.npz" in members:
                raise UnsupportedError(
                    f"{source}: weights stored as model.weights.npz are not supported (supported: model.weights.h5)"
                )
            raise BadInputError(f"{source}: the model was never built: the archive has no model.weights.h5")
        blob = _read_member(archive, members["model.weights.h5"], source)
    try:
        weights_file = h5py.File(io.BytesIO(blob), "r")
    except Exception as exc:
        raise BadInputError(f"{source}: model.weights.h5 inside the archive is not readable HDF5 ({exc})") from None
    with weights_file:
        weights = _collect_weights(weights_file, parsed, source)
    return parsed, keras_version, weights


def _check_members(archive: zipfile.ZipFile, source: str) -> dict[str, zipfile.ZipInfo]:
    members = {}
    for info in archive.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name) or ":" in name.split("/")[0]:
            raise BadInputError(f"{source}: archive member {name!r} points outside the archive; refusing")
        if name not in KNOWN_MEMBERS and not name.startswith("assets/") and not name.endswith("/"):
            raise BadInputError(
                f"{source}: unexpected archive member {name!r} (a .keras file holds "
                f"config.json, metadata.json, model.weights.h5 and assets/)"
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise BadInputError(f"{source}: archive member {name!r} declares {info.file_size} bytes; refusing")
        if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise BadInputError(
                f"{source}: archive member {name!r} expands {info.file_size // max(info.compress_size, 1)}"
                f"x; refusing a likely zip bomb"
            )
        members[name] = info
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    try:
        with archive.open(info) as stream:
            data = stream.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise BadInputError(f"{source}: archive member {info.filename!r} is unreadable ({exc})") from None
    except Exception as exc:  # zlib.error and friends on corrupt data
        raise BadInputError(f"{source}: archive member {info.filename!r} is corrupt ({exc})") from None
    if len(data) != info.file_size:
        raise BadInputError(f"{source}: archive member {info.filename!r} is not the size it declares")
    return data


def container_paths(parsed: ParsedModel) -> dict[str, str]:
    """Where each layer's weights live: `layers/<snake_case(class)>[_N]` by Keras' counter rule.

    Sequential's list skips the InputLayer (ours may be synthesized); Functional's includes it.
    keras.ops nodes are operations, not layers: they hold no weights and take no place in the list.
    """
    used: dict[str, int] = {}
    paths = {}
    for index, layer in enumerate(parsed.layers):
        if (parsed.model_class == "Sequential" and index == 0) or layer.class_name.startswith("ops."):
            continue
        name = snake_case(layer.class_name)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        paths[layer.name] = f"layers/{name}"
    return paths


def _collect_weights(
    root: h5py.File, parsed: ParsedModel, source: str
) -> dict[str, tuple[list[str], list[np.ndarray]]]:
    # Files saved on Windows by tf.keras 2.13-2.15 joined the object path with backslashes, so the
    # group for `layers/lstm/cell` is a single root member named `layers\lstm\cell`.
    windows = any("\\" in key for key in root)
    weights = {}
    for layer_name, path in container_paths(parsed).items():
        path = path.replace("/", "\\") if windows else path
        group = resolve(root, path, source) if path in root else None
        vars_group = group.get("vars") if isinstance(group, h5py.Group) else None
        stored_name = vars_group.attrs.get("name") if vars_group is not None else None
        if isinstance(stored_name, bytes):
            stored_name = stored_name.decode("utf-8", "replace")
        if isinstance(stored_name, str) and stored_name != layer_name:
            raise BadInputError(
                f"{source}: weights at {path!r} belong to layer {stored_name!r}, "
                f"expected {layer_name!r}; the archive does not match its config"
            )
        names: list[str] = []
        arrays: list[np.ndarray] = []
        _collect_vars(group, path, names, arrays, source, depth=0, root=root if windows else None)
        weights[layer_name] = (names, arrays)
    return weights


def _collect_vars(
    group: Any, path: str, names: list[str], arrays: list[np.ndarray], source: str, depth: int, root: Any = None
) -> None:
    if depth > 8:
        return
    if isinstance(group, h5py.Group) and "vars" in group:
        vars_group = resolve(group, "vars", source)
        keys = list(vars_group)
        if not all(k.isdigit() for k in keys):
            raise BadInputError(f"{source}: {path}/vars holds non-numbered entries {keys[:5]}")
        for key in sorted(keys, key=int):
            where = f"{path}/vars/{key}"
            names.append(where)
            arrays.append(read_dataset(resolve(vars_group, key, source), where, source))
    for child in CHILD_ORDER:
        if isinstance(group, h5py.Group) and child in group:
            _collect_vars(resolve(group, child, source), f"{path}/{child}", names, arrays, source, depth + 1, root)
        elif root is not None and f"{path}\\{child}" in root:  # Windows-joined path (see above)
            _collect_vars(
                resolve(root, f"{path}\\{child}", source), f"{path}\\{child}", names, arrays, source, depth + 1, root
            )
