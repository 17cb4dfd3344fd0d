"""Arrays too big for memory: read input rows chunk by chunk, write outputs chunk by chunk.

Inputs: a `.npy` is memory-mapped and each chunk's pages are handed back to the kernel once the
chunk is done (madvise DONTNEED), so resident memory stays at about one chunk whatever the file
size. An `.npz` member stored uncompressed (np.savez) is mapped the same way; a compressed one
(np.savez_compressed) is decompressed as a stream, in order. The same guards as arrays.py apply
(no pickles, no header promising more bytes than the file holds, no zip bombs).

Outputs: each output's rows go to a temporary `.npy` in the destination folder as they come; at
the end it is renamed onto the target, or the members are copied into the `.npz`. A failure
leaves nothing behind and never a half-written target.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
import zipfile
from typing import IO, Literal

import numpy as np

from .arrays import _check_npy_header, _guard
from .atomicio import atomic_write, publish
from .errors import BadInputError


class MappedRows:
    """Rows of an array stored at `offset` in `path`, read through a read-only memory map."""

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool):
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)
        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        order: Literal["F", "C"] = "F" if fortran else "C"
        self._array: np.ndarray | None = np.ndarray(shape, dtype=dtype, buffer=self._map, offset=offset, order=order)
        self._offset, self._fortran = offset, fortran
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._array is None:
            raise ValueError("MappedRows.read after close()")
        return np.array(self._array[start:stop])  # a copy: the mapped pages can then be dropped

    def release(self, start: int, stop: int) -> None:
        """Drop the pages of rows [start, stop) (all pages for a Fortran-ordered array) from memory."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        first = 0 if self._fortran else self._offset + start * self._row_bytes
        last = len(self._map) if self._fortran else self._offset + stop * self._row_bytes
        first -= first % mmap.PAGESIZE
        with contextlib.suppress(OSError, ValueError):
            self._map.madvise(mmap.MADV_DONTNEED, first, max(0, min(last, len(self._map)) - first))

    def close(self) -> None:
        self._array = None
        with contextlib.suppress(BufferError):
            self._map.close()


class StreamedRows:
    """Rows of a compressed .npz member, decompressed in order (chunks must be read in order)."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
        self._stream = archive.open(info)
        self.shape, fortran, self.dtype = _check_npy_header(self._stream, info.file_size, where)
        self.ndim = len(self.shape)
        if fortran and self.ndim > 1:
            raise BadInputError(
                f"{where}: a compressed Fortran-ordered array cannot be streamed; save it with "
                f"np.save or np.savez (C order)"
            )
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._next = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        if start != self._next:
            raise ValueError("compressed members are read in order")
        data = self._stream.read((stop - start) * self._row_bytes)
        self._next = stop
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start, *self.shape[1:])).copy()

    def release(self, start: int, stop: int) -> None:
        pass

    def close(self) -> None:
        self._stream.close()


def _member_data_offset(path: str, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header, name and extra field."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise BadInputError(f"{path}: member {info.filename!r} has a damaged local header")
    name_length = int.from_bytes(local[26:28], "little")
    extra_length = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


def open_rows(path: str) -> dict:
    """Row readers for an input file: {"": reader} for a .npy, {key: reader} for an .npz.

    Raises BadInputError for what load_arrays refuses (missing file, pickles, forged headers, bombs)."""
    try:
        _guard(path)
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as handle:
                shape, fortran, dtype = _check_npy_header(handle, os.fstat(handle.fileno()).st_size, path)
                offset = handle.tell()
            return {"": MappedRows(path, offset, shape, dtype, fortran)}
        readers: dict[str, MappedRows | StreamedRows] = {}
        archive = zipfile.ZipFile(path)
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            where = f"{path}: member {info.filename!r}"
            if info.compress_type == zipfile.ZIP_STORED:
                offset = _member_data_offset(path, info)
                with archive.open(info) as stream:
                    shape, fortran, dtype = _check_npy_header(stream, info.file_size, where)
                    header = stream.tell()
                readers[key] = MappedRows(path, offset + header, shape, dtype, fortran)
            else:
                readers[key] = StreamedRows(archive, info, where)
        if not any(isinstance(r, StreamedRows) for r in readers.values()):
            archive.close()  # mapped members need only the file; streamed ones keep the archive open
        return readers
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not an array file") from None
    except BadInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{path}: not a readable .npy/.npz array file ({type(exc).__name__}: {exc})") from None


def as_loaded(found: dict):
    """Readers shaped like load_arrays' result: the one reader of a .npy, the dict of an .npz."""
    return found[""] if list(found) == [""] else found


def close_all(found: dict) -> None:
    for reader in found.values():
        reader.close()


def input_bytes(path: str) -> int:
    """Bytes of array data in an input file (an .npz's members uncompressed), 0 if it cannot be read
    (the readers then say why)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return sum(info.file_size for info in archive.infolist())
        return os.path.getsize(path)
    except (OSError, zipfile.BadZipFile):
        return 0


class ChunkWriter:
    """Write outputs row chunk by row chunk; `finish()` puts the file in place.

    One output and a path not ending in .npz gives a .npy; otherwise an .npz keyed y0, y1, ... and by
    output name (as arrays.save_outputs writes). `total` is the number of rows that will come."""

    def __init__(self, path: str, names: list[str], total: int, prefix: str = "y"):
        self.path, self.names, self.total, self.prefix = os.fspath(path), names, total, prefix
        self.folder = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(self.path):
            raise BadInputError(f"{self.path}: is a directory; give a file name to write")
        if not os.path.isdir(self.folder):
            raise BadInputError(f"{self.path}: the folder {self.folder} does not exist")
        self.parts: list[tuple[str, IO]] = []
        self.written = 0

    def write(self, outputs: list[np.ndarray]) -> None:
        if not self.parts:
            for out in outputs:
                fd, tmp = tempfile.mkstemp(prefix=".lstm-parity-", suffix=".npy", dir=self.folder)
                handle = os.fdopen(fd, "wb")
                self.parts.append((tmp, handle))
                header = np.lib.format.header_data_from_array_1_0(np.ascontiguousarray(out))
                header["shape"] = (self.total, *out.shape[1:])
                np.lib.format.write_array_header_2_0(handle, header)
        for (_, part), out in zip(self.parts, outputs, strict=True):
            part.write(np.ascontiguousarray(out).tobytes())
        self.written += outputs[0].shape[0]

    def finish(self) -> None:
        if self.written != self.total:
            raise ValueError(f"wrote {self.written} rows of {self.total}")
        for _, handle in self.parts:
            handle.close()
        if len(self.parts) == 1 and not self.path.endswith(".npz"):
            publish(self.parts[0][0], self.path)
            return
        keyed = [(f"{self.prefix}{i}", tmp) for i, (tmp, _) in enumerate(self.parts)]
        keyed += [(name, tmp) for name, (tmp, _) in zip(self.names, self.parts, strict=True) if name not in dict(keyed)]
        with (
            atomic_write(self.path) as target,
            zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
        ):
            for key, tmp in keyed:
                with open(tmp, "rb") as source, archive.open(key + ".npy", "w", force_zip64=True) as member:
                    shutil.copyfileobj(source, member, 1 << 20)
        self.discard()

    def discard(self) -> None:
        for tmp, handle in self.parts:
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
