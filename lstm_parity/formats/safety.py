"""Guards for reading files from strangers: HDF5 links and storage, JSON size and depth.

Every read of a weight array or config attribute goes through here, so a hostile file can make
us raise BadInputError but never follow a link out of the file, allocate a declared-but-absent
gigabyte array, or recurse without bound.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from ..errors import BadInputError

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a config JSON or attribute larger than this is refused
MAX_JSON_DEPTH = 200  # nesting deeper than any real Keras config
MAX_ARRAY_BYTES = 8 * 1024**3  # one weight array of more than 8 GiB is refused outright
MAX_COMPRESSION_RATIO = 1000  # declared bytes / stored bytes for filtered (compressed) datasets


def _depth_ok(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_json(text: str | bytes, what: str, source: str) -> Any:
    """Parse a config JSON bounded in size and depth; raises BadInputError naming `source`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise BadInputError(f"{source}: {what} is {len(text)} bytes, over the {MAX_CONFIG_BYTES} byte limit")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{source}: {what} is not UTF-8 text ({exc.reason})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadInputError(f"{source}: {what} is nested too deeply") from None
    except ValueError as exc:
        raise BadInputError(f"{source}: {what} is not valid JSON ({exc})") from None
    if not _depth_ok(value, MAX_JSON_DEPTH):
        raise BadInputError(f"{source}: {what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def read_text_attr(obj: h5py.HLObject, name: str, source: str) -> str | None:
    """Return a string attribute of an HDF5 object, or None when absent; bounded in size."""
    if name not in obj.attrs:
        return None
    try:
        size = _attr_storage(obj, name)
    except Exception as exc:  # h5py raises many types on corrupt files
        raise BadInputError(f"{source}: attribute {name!r} is unreadable ({exc})") from None
    if size > MAX_CONFIG_BYTES:
        raise BadInputError(f"{source}: attribute {name!r} is {size} bytes, over the limit")
    try:
        value = obj.attrs[name]
    except Exception as exc:
        raise BadInputError(f"{source}: attribute {name!r} is unreadable ({exc})") from None
    return _as_text(value, name, source)


def _attr_storage(obj: h5py.HLObject, name: str) -> int:
    """Bytes an attribute occupies in the file (HDF5 reports an error, not 0, for empty ones)."""
    attr_id = h5py.h5a.open(obj.id, name.encode())
    try:
        return attr_id.get_storage_size()
    except RuntimeError:
        return 0


def _as_text(value: Any, name: str, source: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "SUO":
        return _as_text(value.item(), name, source)
    raise BadInputError(f"{source}: attribute {name!r} is not text")


def read_name_list_attr(obj: h5py.HLObject, name: str, source: str) -> list[str] | None:
    """Read a list-of-names attribute such as `layer_names`, joining Keras' chunks `name0, name1, ...`.

    Keras splits attributes over 64 KB into numbered chunks; returns None when neither form exists.
    """
    if name in obj.attrs:
        chunks = [_attr_array(obj, name, source)]
    elif f"{name}0" in obj.attrs:
        chunks, index = [], 0
        while f"{name}{index}" in obj.attrs:
            chunks.append(_attr_array(obj, f"{name}{index}", source))
            index += 1
    else:
        return None
    names: list[str] = []
    for chunk in chunks:
        for item in np.atleast_1d(chunk).tolist():
            names.append(item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item))
    return names


def _attr_array(obj: h5py.HLObject, name: str, source: str) -> np.ndarray:
    try:
        if _attr_storage(obj, name) > MAX_CONFIG_BYTES:
            raise BadInputError(f"{source}: attribute {name!r} is over {MAX_CONFIG_BYTES} bytes; refusing")
        value = obj.attrs[name]
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"{source}: attribute {name!r} is unreadable ({exc})") from None
    value = np.asarray(value)
    if value.size == 0:  # Keras writes an empty float array for a layer without weights
        return np.array([], dtype=object)
    if value.dtype.kind not in "SUO":
        raise BadInputError(f"{source}: attribute {name!r} is not a list of names")
    return value


def resolve(group: h5py.Group, path: str, source: str) -> h5py.HLObject:
    """Follow `path` inside `group` one hard link at a time; refuse soft and external links."""
    node: h5py.HLObject = group
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, h5py.Group):
            raise BadInputError(f"{source}: {path!r} does not name an object in the file")
        try:
            link = node.get(part, getlink=True)
        except Exception as exc:
            raise BadInputError(f"{source}: {path!r} is unreadable ({exc})") from None
        if link is None:
            raise BadInputError(f"{source}: {path!r} is missing from the file")
        if not isinstance(link, h5py.HardLink):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise BadInputError(f"{source}: {path!r} is {kind}; refusing to follow links in model files")
        try:
            node = node[part]
        except Exception as exc:
            raise BadInputError(f"{source}: {path!r} is unreadable ({exc})") from None
    return node


def read_dataset(dataset: h5py.HLObject, where: str, source: str) -> np.ndarray:
    """Read a numeric weight dataset after checking its storage is local and its size is honest.

    Refuses external and virtual datasets, non-numeric dtypes, and declared sizes that the bytes
    stored in the file cannot account for (shape bombs). Raises BadInputError naming `where`.
    """
    if not isinstance(dataset, h5py.Dataset):
        raise BadInputError(f"{source}: {where} is not an array")
    try:
        if dataset.external:
            raise BadInputError(f"{source}: {where} stores its data in an external file; refusing")
        if dataset.is_virtual:
            raise BadInputError(f"{source}: {where} is a virtual dataset; refusing")
        dtype = dataset.dtype
        shape = dataset.shape
        declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape is not None else 0
        stored = dataset.id.get_storage_size()
        filtered = dataset.id.get_create_plist().get_nfilters() > 0
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"{source}: {where} is unreadable ({exc})") from None
    if dtype.kind not in "fiub":
        raise BadInputError(f"{source}: {where} has dtype {dtype}, not a numeric array")
    if declared > MAX_ARRAY_BYTES:
        raise BadInputError(f"{source}: {where} declares {declared} bytes, over the {MAX_ARRAY_BYTES} limit")
    if declared > 0:
        limit = stored * (MAX_COMPRESSION_RATIO if filtered else 1)
        if declared > limit and declared > 4096:
            raise BadInputError(
                f"{source}: {where} declares shape {shape} ({declared} bytes) but the file stores "
                f"{stored} bytes for it (truncated or forged)"
            )
    try:
        return np.asarray(dataset[()])
    except Exception as exc:
        raise BadInputError(f"{source}: {where} is unreadable ({exc})") from None
