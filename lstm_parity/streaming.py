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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeGuard

import numpy as np

from .arrays import check_batches, check_layout, check_values, select_inputs
from .chunked_io import ChunkWriter, as_loaded, close_all, input_bytes, open_rows
from .compare import ComparisonResult, OutputAccumulator, Tolerance
from .errors import BadInputError, KerasSideError
from .reference.forward import fixed_batch_size, predict_batches, stateful_layers
from .spec import ModelSpec

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
    *,
    semantics: str | None = None,
    dtype: str = "float64",
    tolerance: Tolerance | None = None,
    batch_size: int = 32,
    keras: bool = True,
    trust_model_code: bool = False,
    expected_path: str | None = None,
    chunk_rows: int | None = None,
    show_progress: bool = True,
):
    """`check` on INPUT chunk by chunk: reference and Keras on the same chunks, compared into running
    totals (worst index in the whole input), weights checked once. Returns a CheckReport without the
    output arrays. Stateful models are not streamed here (Keras would carry states between calls)."""
    from .check import CheckReport, check_weights, refuse_keras_on_dump, report_notes

    if stateful_layers(spec):
        raise BadInputError(f"{spec.source}: a stateful model is checked in one pass; omit --chunk-size")
    tolerance = tolerance or Tolerance()
    chosen = semantics or spec.semantics
    names = spec.output_names
    stream = open_stream(spec, input_path, chunk_rows, batch_size)
    expected_found: dict = {}
    expected_readers: list = []
    try:
        if expected_path:
            from .cli_support import select_outputs

            expected_found = open_rows(expected_path)
            expected_readers = select_outputs(spec, as_loaded(expected_found), expected_path)
        loaded = None
        if keras:
            refuse_keras_on_dump(spec)
            from .keras_runner import load_keras  # the only TensorFlow import, done late

            loaded = load_keras(
                spec.source,
                spec.file_format,
                spec.semantics,
                [(layer.class_name, layer.config) for layer in spec.layers],
                trust_model_code,
            )
        against_keras = [OutputAccumulator(n, *tolerance.of(n)) for n in names]
        against_expected = [OutputAccumulator(n, *tolerance.of(n)) for n in names]
        with progress(stream.total, stream.rows, "check", show_progress) as advance:
            for start, stop, inputs in stream.chunks():
                reference = predict_batches(spec, inputs, semantics=chosen, dtype=np.dtype(dtype))
                if loaded is not None:
                    theirs = loaded.predict(inputs, batch_size)
                    if len(theirs) != len(reference):
                        raise KerasSideError(
                            f"{spec.source}: Keras returned {len(theirs)} outputs, the config declares {len(reference)}"
                        )
                    for acc, ours, other in zip(against_keras, reference, theirs, strict=True):
                        acc.add(ours, other)
                if expected_readers:  # one per output (select_outputs checked)
                    for acc, ours, reader in zip(against_expected, reference, expected_readers, strict=True):
                        if tuple(reader.shape) == (stream.total, *ours.shape[1:]):
                            acc.add(ours, reader.read(start, stop))
                        else:
                            acc.shape_mismatch = (
                                f"reference {(stream.total, *ours.shape[1:])} vs other {tuple(reader.shape)}"
                            )
                advance(stop - start)
    finally:
        stream.close()
        close_all(expected_found)
    notes = report_notes(spec, batch_size) + [
        f"streamed {stream.total} samples from {input_path} in chunks of {stream.rows} (Keras fed the same chunks)"
    ]
    expected = None
    if expected_path:
        expected = ComparisonResult(
            tuple(a.result() for a in against_expected), tolerance.atol, tolerance.rtol, against="expected"
        )
    alone = CheckReport(  # the reference alone; the Keras side fills in the rest
        spec=spec,
        semantics=chosen,
        semantics_forced=semantics is not None,
        keras_package="",
        keras_version="",
        reference_dtype=str(np.dtype(dtype)),
        input_shapes=tuple(tuple(r.shape) for r in stream.readers),
        weights=None,
        comparison=None,
        expected=expected,
    )
    if loaded is None:
        if expected is None:
            notes.append("Keras not run (--no-keras): nothing compared")
        return replace(alone, notes=tuple(notes))
    comparison = ComparisonResult(tuple(a.result() for a in against_keras), tolerance.atol, tolerance.rtol)
    return replace(
        alone,
        keras_package=loaded.package,
        keras_version=loaded.version,
        weights=check_weights(spec, loaded.layer_weights()),
        comparison=comparison,
        notes=tuple(notes),
    )


def worth_streaming(path: str | None, chunk_rows: int | None) -> TypeGuard[str]:
    """Stream when asked to (--chunk-size) or when INPUT holds more than one default chunk of data
    (an .npz counted uncompressed); never without an INPUT file."""
    if path is None:
        return False
    return bool(chunk_rows) or input_bytes(path) > CHUNK_BYTES
