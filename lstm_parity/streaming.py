"""`predict` and `check` on inputs of any size: the same computation, one chunk of rows at a time.

The input file is memory-mapped (chunked_io), each chunk is checked, computed by the reference
(and by Keras, fed the same chunk), compared into running totals and written out, and its pages
are released before the next. Peak memory follows the chunk size, not the file size: about
3 x chunk bytes (the rows read, their float64 copy when computing in float64, the outputs) plus
each thread's working set (reference/parallel.py) plus the interpreter and libraries.
Stateful models carry their states from chunk to chunk, so chunks are whole batches.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from .arrays import check_batches, check_layout, check_values, select_inputs
from .chunked_io import ChunkWriter, as_loaded, close_all, input_bytes, open_rows
from .errors import BadInputError
from .reference.forward import fixed_batch_size, predict_batches, stateful_layers
from .spec import ModelSpec

if TYPE_CHECKING:
    from .check import CheckOptions, CheckReport
    from .runners.base import Runner

CHUNK_BYTES = 32 * 1024**2  # input bytes per chunk unless --chunk-size says otherwise


class ArrayRows:
    """An in-memory array behind the row-reader interface (a single sample given without batch axis)."""

    def __init__(self, array: np.ndarray):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    def release(self, start: int, stop: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Stream:
    """The model's inputs as row readers, in model order, and how they are cut into chunks."""

    path: str
    readers: list
    wheres: list[str]
    total: int
    rows: int
    opened: dict = field(default_factory=dict)  # every reader of the file, used or not

    def chunks(self) -> Iterator[tuple[int, int, list[np.ndarray]]]:
        """(start, stop, inputs) per chunk: values checked, floats as float32 (what Keras sees)."""
        for start in range(0, self.total, self.rows):
            stop = min(self.total, start + self.rows)
            inputs = []
            for reader, where in zip(self.readers, self.wheres, strict=True):
                part = reader.read(start, stop)
                check_values(part, where, start)
                inputs.append(part if part.dtype.kind in "iu" else part.astype(np.float32, copy=False))
            yield start, stop, inputs
            for reader in self.readers:
                reader.release(start, stop)

    def close(self) -> None:
        close_all(self.opened)


def open_stream(spec: ModelSpec, path: str, chunk_rows: int | None = None, batch_size: int = 32) -> Stream:
    """Open INPUT for chunked reading and check it against the model's inputs (no data read yet)."""
    found = open_rows(path)
    try:
        readers, wheres = [], []
        for reader, shape, where, tokens in select_inputs(spec, as_loaded(found), path):
            if reader.ndim == len(shape) - 1:  # one sample without its batch axis: small, read it
                reader = ArrayRows(reader.read(0, reader.shape[0])[None])
            readers.append(check_layout(reader, shape, where, tokens))
            wheres.append(where)
        check_batches(spec, readers, path)
    except BaseException:
        close_all(found)
        raise
    total = readers[0].shape[0]
    row_bytes = sum(int(np.prod(r.shape[1:], dtype=np.int64)) * r.dtype.itemsize for r in readers)
    rows = chunk_rows or max(1, CHUNK_BYTES // max(1, row_bytes))
    if stateful_layers(spec):  # states carry across batches: a chunk is whole batches
        step = fixed_batch_size(spec) or batch_size
        rows = max(step, rows - rows % step)
    return Stream(path, readers, wheres, total, min(rows, total), found)


@contextlib.contextmanager
def progress(total: int, rows: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal and there is more than one chunk."""
    if not enabled or total <= rows or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("samples"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def stream_predict(
    spec: ModelSpec,
    input_path: str,
    output: str,
    *,
    dtype: str = "float64",
    semantics: str | None = None,
    batch_size: int = 32,
    chunk_rows: int | None = None,
    show_progress: bool = True,
) -> None:
    """The reference on INPUT chunk by chunk, outputs written to `output` (.npy, or .npz for several)."""
    stream = open_stream(spec, input_path, chunk_rows, batch_size)
    writer = None
    try:
        writer = ChunkWriter(output, spec.output_names, stream.total)
        states: dict = {}
        with progress(stream.total, stream.rows, "predict", show_progress) as advance:
            for start, stop, inputs in stream.chunks():
                writer.write(
                    predict_batches(
                        spec, inputs, semantics=semantics, dtype=np.dtype(dtype), batch_size=batch_size, states=states
                    )
                )
                advance(stop - start)
        writer.finish()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        stream.close()


def stream_check(
    spec: ModelSpec,
    input_path: str,
    options: CheckOptions | None = None,
    *,
    expected_path: str | None = None,
    exports: Sequence[Runner] = (),
    chunk_rows: int | None = None,
    show_progress: bool = True,
    **settings: Any,
) -> CheckReport:
    """`check` on INPUT chunk by chunk (the check flow over a memory-mapped stream): the reference,
    Keras, the expected outputs and every export on the same chunks, compared into running totals
    (worst index in the whole input), weights checked once. Returns a CheckReport without the output
    arrays. `settings` are CheckOptions fields, over `options`. Stateful models are checked in one
    pass (omit --chunk-size)."""
    from .check import check_stream, with_settings
    from .runners.expected import expected_from_file

    options = with_settings(options, settings)
    if stateful_layers(spec):
        raise BadInputError(f"{spec.source}: a stateful model is checked in one pass; omit --chunk-size")
    stream = open_stream(spec, input_path, chunk_rows, options.batch_size)
    expected = None
    try:
        expected = expected_from_file(spec, expected_path) if expected_path else None
        report = check_stream(spec, stream, options, expected=expected, exports=exports, show_progress=show_progress)
    finally:
        stream.close()
        if expected is not None:
            expected.close()
    note = f"streamed {stream.total} samples from {input_path} in chunks of {stream.rows}"
    note += " (Keras fed the same chunks)" if options.keras else ""
    return replace(report, notes=(*report.notes, note))


def array_stream(inputs: list[np.ndarray]) -> Stream:
    """Arrays already in memory (batch first, validated) as a stream of one chunk."""
    readers = [ArrayRows(np.asarray(x)) for x in inputs]
    total = readers[0].shape[0]
    return Stream("(arrays)", readers, [f"input {i}" for i in range(len(readers))], total, total)


def worth_streaming(path: str | None, chunk_rows: int | None) -> TypeGuard[str]:
    """Stream when asked to (--chunk-size) or when INPUT holds more than one default chunk of data
    (an .npz counted uncompressed); never without an INPUT file."""
    if path is None:
        return False
    return bool(chunk_rows) or input_bytes(path) > CHUNK_BYTES
