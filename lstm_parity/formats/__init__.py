"""Read saved models without TensorFlow: `open_model(path)` sniffs the bytes and picks a reader.

HDF5 (legacy `.h5`, whatever the file is called), zip (Keras 3 `.keras`), or JSON (our own dump).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
import zlib

import numpy as np

from ..errors import BadInputError, LstmParityError
from ..spec import LayerSpec, ModelSpec, semantics_for_version
from .config import ParsedModel, parse_model_config
from .generations import modernize_config, modernize_weights
from .keras_zip import read_keras_zip
from .layout import weight_names
from .legacy_h5 import read_legacy_h5

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"

__all__ = ["open_model", "sniff_format"]


def sniff_format(path: str) -> str:
    """Return "legacy-h5", "keras-zip" or "dump-json" from the file's first bytes.

    Raises BadInputError when the file is missing, unreadable or none of these.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
            if head.startswith(HDF5_SIGNATURE):
                return "legacy-h5"
            for offset in (512, 1024, 2048):  # HDF5 allows a user block before the superblock
                handle.seek(offset)
                if handle.read(8) == HDF5_SIGNATURE:
                    return "legacy-h5"
    except IsADirectoryError:
        raise BadInputError(
            f"{path}: is a directory, not a model file (SavedModel folders are not supported)"
        ) from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(ZIP_SIGNATURE):
        return "keras-zip"
    if head.lstrip()[:1] == b"{":
        return "dump-json"
    if not head:
        raise BadInputError(f"{path}: the file is empty")
    raise BadInputError(f"{path}: not a Keras model file (expected HDF5 .h5, a .keras zip or an lstm-parity JSON dump)")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_model(path: str | os.PathLike) -> ModelSpec:
    """Read a saved Keras model (or an lstm-parity dump) into a ModelSpec, without TensorFlow.

    Raises BadInputError (exit 2) for unreadable/invalid files and UnsupportedError (exit 3)
    for model structures the reader does not handle.
    """
    from .sandbox import run_isolated

    return run_isolated(_open_guarded, os.fspath(path))


def _open_guarded(path: str) -> ModelSpec:
    try:
        return _open(path)
    except LstmParityError:
        raise
    except (
        OSError,
        KeyError,
        ValueError,
        TypeError,
        RuntimeError,
        AttributeError,
        IndexError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        struct.error,
        RecursionError,
        OverflowError,
        MemoryError,
    ) as exc:
        # h5py, zipfile and json raise all of these on corrupt files; a reader's own checks raise ours.
        raise BadInputError(
            f"{path}: unreadable or corrupt model file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None


def _open(path: str) -> ModelSpec:
    source = path
    kind = sniff_format(path)
    if kind == "dump-json":
        from .weights_json import read_dump

        return read_dump(path)
    if kind == "legacy-h5":
        model_config, keras_version, weights = read_legacy_h5(path, source)
        parsed = parse_model_config(model_config, source)
    else:
        parsed, keras_version, weights = read_keras_zip(path, source)
    return assemble(parsed, weights, keras_version=keras_version, source=source, file_format=kind, sha256=_sha256(path))


def assemble(
    parsed: ParsedModel,
    weights: dict[str, tuple[list[str], list[np.ndarray]]],
    *,
    keras_version: str,
    source: str,
    file_format: str,
    sha256: str,
) -> ModelSpec:
    """Attach each layer's stored arrays to the parsed config and build the ModelSpec."""
    known = {layer.name for layer in parsed.layers}
    stray = [name for name, (_, arrays) in weights.items() if arrays and name not in known]
    if stray:
        raise BadInputError(f"{source}: the file holds weights for layers not in its config: {stray[:5]}")
    layers = []
    for layer in parsed.layers:
        stored_names, arrays = weights.get(layer.name, ([], []))
        class_name, config = modernize_config(layer.class_name, layer.config, keras_version)
        class_name, config, arrays, converted = modernize_weights(class_name, config, list(arrays), keras_version)
        layers.append(
            LayerSpec(
                name=layer.name,
                class_name=class_name,
                config=config,
                weights=tuple(arrays),
                weight_names=weight_names(class_name, len(arrays), config),
                stored_names=tuple(stored_names) if not converted else (),
                inbound=layer.inbound,
                converted=converted,
                node_masks=layer.node_masks,
                node_kwargs=layer.node_kwargs,
                node_tensors=layer.node_tensors,
                node_args=layer.node_args,
                module=layer.module,
                registered_name=layer.registered_name,
            )
        )
    return ModelSpec(
        layers=tuple(layers),
        inputs=parsed.inputs,
        outputs=parsed.outputs,
        input_shapes=parsed.input_shapes,
        keras_version=keras_version,
        semantics=semantics_for_version(keras_version),
        source=source,
        file_format=file_format,
        model_class=parsed.model_class,
        sha256=sha256,
    )
