"""Input and output array files: `.npy` for one tensor, `.npz` keyed by name or x0/y0... for several.

Loading never unpickles (`allow_pickle=False`) and every array is checked against the model's
declared input shapes, with one-line messages that name the expected shape.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from .atomicio import atomic_write
from .errors import BadInputError
from .spec import ModelSpec

MAX_RATIO = 1000  # an .npz member expanding more than this (and past 64 MiB) is refused as a zip bomb


def _check_npy_header(stream, available: int, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Refuse a .npy whose header declares more data than the bytes that follow it (or a pickle).

    Returns (shape, fortran_order, dtype); the stream is left at the first data byte."""
    try:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(stream)
    except Exception as exc:
        raise BadInputError(f"{where}: not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise BadInputError(f"{where}: holds Python objects (pickled data); refusing to load it")
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if declared > available - stream.tell():
        raise BadInputError(
            f"{where}: declares shape {shape} ({declared} bytes) but holds only "
            f"{available - stream.tell()} bytes of data (truncated or forged)"
        )
    return tuple(shape), bool(fortran), dtype


def _guard(path: str) -> None:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > 64 * 1024**2 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    raise BadInputError(
                        f"{path}: member {info.filename!r} expands {info.file_size} bytes from "
                        f"{info.compress_size}; refusing a likely zip bomb"
                    )
                with archive.open(info) as stream:
                    _check_npy_header(stream, info.file_size, f"{path}: member {info.filename!r}")
    else:
        with open(path, "rb") as stream:
            _check_npy_header(stream, os.fstat(stream.fileno()).st_size, path)


def load_arrays(path: str) -> dict[str, np.ndarray] | np.ndarray:
    """Load `.npy` (one array) or `.npz` (dict of arrays) without unpickling; raises BadInputError."""
    try:
        _guard(path)
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not an array file") from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInputError(f"{path}: holds Python objects (pickled data); refusing to load it") from None
        raise BadInputError(f"{path}: not a readable .npy/.npz array file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{path}: not a readable .npy/.npz array file ({exc})") from None
    except BadInputError:
        raise
    except Exception as exc:  # numpy/zipfile raise many types on corrupt files
        raise BadInputError(f"{path}: not a readable .npy/.npz array file ({type(exc).__name__}: {exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        try:
            with loaded:
                return {key: loaded[key] for key in loaded.files}
        except ValueError as exc:
            raise BadInputError(f"{path}: holds Python objects (pickled data); refusing to load it ({exc})") from None
        except Exception as exc:
            raise BadInputError(f"{path}: unreadable .npz member ({exc})") from None
    return loaded


def _describe(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("batch" if i == 0 else ("any" if d is None else str(d)) for i, d in enumerate(shape)) + ")"


def prepare_inputs(spec: ModelSpec, loaded: dict[str, np.ndarray] | np.ndarray, source: str) -> list[np.ndarray]:
    """Order and check user arrays against the model's inputs; returns one batch-first array each.

    A single array missing only the batch axis (e.g. (time, features)) is taken as one sample.
    Raises BadInputError naming the expected shape and dtype.
    """
    selected = select_inputs(spec, loaded, source)
    prepared = [check_layout(np.asarray(a), shape, where, tokens) for a, shape, where, tokens in selected]
    check_batches(spec, prepared, source)
    for array, (_, _, where, _) in zip(prepared, selected, strict=True):
        check_values(array, where)
    return prepared


def select_inputs(spec: ModelSpec, loaded, source: str) -> list[tuple]:
    """Match the file's arrays (or row readers) to the model's inputs by name, x0.., or position;
    returns (array, declared shape, where, feeds an Embedding) per model input. Raises BadInputError."""
    names = spec.input_names
    if isinstance(loaded, dict):
        if len(names) == 1 and len(loaded) == 1:
            arrays = list(loaded.values())
        elif all(name in loaded for name in names):
            arrays = [loaded[name] for name in names]
        elif all(f"x{i}" in loaded for i in range(len(names))):
            arrays = [loaded[f"x{i}"] for i in range(len(names))]
        else:
            raise BadInputError(
                f"{source}: the model's inputs are {names}; the .npz must have those keys "
                f"or x0..x{len(names) - 1}, it has {sorted(loaded)}"
            )
    else:
        if len(names) != 1:
            raise BadInputError(
                f"{source}: the model takes {len(names)} inputs {names}; pass an .npz "
                f"keyed by those names or x0..x{len(names) - 1}"
            )
        arrays = [loaded]
    return [
        (array, shape, f"{source}: input {name!r}", tokens)
        for name, array, shape, tokens in zip(names, arrays, spec.input_shapes, spec.token_inputs(), strict=True)
    ]


def check_batches(spec: ModelSpec, prepared: list, source: str) -> None:
    """All inputs have the same batch size, a multiple of the model's fixed batch size if it has one."""
    batches = {a.shape[0] for a in prepared}
    if len(batches) > 1:
        raise BadInputError(f"{source}: inputs have different batch sizes {sorted(batches)}")
    fixed = spec.input_shapes[0][0] if spec.input_shapes and spec.input_shapes[0] else None
    if fixed and prepared[0].shape[0] % fixed:
        raise BadInputError(
            f"{source}: the model has a fixed batch size of {fixed}; INPUT has "
            f"{prepared[0].shape[0]} samples, not a multiple of it"
        )


def check_layout(array, shape: tuple[int | None, ...], where: str, tokens: bool):
    """Dtype and shape of an input (an array, or anything with .shape/.ndim/.dtype such as a row
    reader) against the model's declared shape; adds the batch axis to a single sample."""
    expected = _describe(shape)
    if tokens and array.dtype.kind not in "iu":
        raise BadInputError(
            f"{where}: dtype {array.dtype}, but this input feeds an Embedding; expected integer "
            f"token ids of shape {expected}"
        )
    if not tokens and array.dtype.kind != "f":
        raise BadInputError(f"{where}: dtype {array.dtype}; expected float32 values of shape {expected}")
    if array.ndim == len(shape) - 1:
        array = np.asarray(array)[None]  # one sample without its batch axis
    if array.ndim != len(shape):
        raise BadInputError(f"{where}: has shape {array.shape}, expected {expected}")
    for axis, (want, got) in enumerate(zip(shape[1:], array.shape[1:], strict=True), start=1):
        if want is not None and want != got:
            raise BadInputError(f"{where}: has shape {array.shape}, expected {expected} (axis {axis} must be {want})")
    if array.shape[0] == 0:
        raise BadInputError(f"{where}: has zero samples")
    if any(d == 0 for d in array.shape[1:]):
        raise BadInputError(f"{where}: has an empty axis in shape {array.shape}")
    return array


def check_values(array: np.ndarray, where: str, offset: int = 0) -> None:
    """Refuse NaN/Inf in float inputs; `offset` is the first row's index in the whole input."""
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))
        first = (int(bad[0][0]) + offset, *bad[0][1:].tolist())
        raise BadInputError(
            f"{where}: holds {len(bad)} NaN/Inf values (first at index {first}); "
            f"parity is checked on finite inputs only"
        )


def save_inputs(path: str, inputs: list[np.ndarray], names: list[str]) -> None:
    """Write generated inputs: `.npy` for one, `.npz` keyed x0, x1, ... and by input name (atomically)."""
    write_arrays(path, inputs, names, "x")


def save_outputs(path: str, outputs: list[np.ndarray], names: list[str]) -> None:
    """Write one output as `.npy` or several as `.npz` keyed by output name and y0, y1, ... (atomically)."""
    write_arrays(path, outputs, names, "y")


def write_arrays(path: str, arrays: list[np.ndarray], names: list[str], prefix: str) -> None:
    """One array as `.npy`, several (or an `.npz` path) as `.npz` keyed {prefix}0.. and by name."""
    buffer = io.BytesIO()
    if len(arrays) == 1 and not path.endswith(".npz"):
        np.save(buffer, arrays[0], allow_pickle=False)
    else:
        keyed = {f"{prefix}{i}": out for i, out in enumerate(arrays)}
        keyed.update({name: out for name, out in zip(names, arrays, strict=True) if name not in keyed})
        np.savez(buffer, allow_pickle=False, **keyed)
    with atomic_write(os.fspath(path)) as handle:
        handle.write(buffer.getvalue())
