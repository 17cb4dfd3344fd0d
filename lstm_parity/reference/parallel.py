"""Run a batch-wise computation over row chunks of the batch, on several threads.

At inference no Keras layer mixes samples (stateful RNNs aside, which never come here), so the
forward pass over rows [a, b) of the batch is exactly those rows of the full pass. Chunks of a
few hundred rows keep each step's matrices in the core's cache; one thread per core works on its
own chunks while BLAS runs single-threaded inside each (NumPy releases the GIL in matmul and in
its elementwise loops), which also parallelises the elementwise gate math that BLAS threads
cannot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ChunkFn = Callable[[list[np.ndarray]], list[np.ndarray]]

STEP_VALUES = 512 * 1024  # pre-activation values of one step per chunk (measured here: see rows_for_width)
MIN_ROWS, MAX_ROWS = 32, 4096


def default_threads() -> int:
    """LSTM_PARITY_THREADS if set, else the cores this process may run on."""
    value = os.environ.get("LSTM_PARITY_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


PARALLEL_WORK = 4_000_000  # batch * time * gate width below which threads cost more than they save


def plan_rows(batch: int, time: int, gate_width: int, threads: int) -> int:
    """Rows per chunk: the whole batch when the work is small, else about cache-sized, in a number of
    equal chunks that is a multiple of the threads (5 chunks on 2 threads would leave one thread
    idle for a whole chunk at the end; 6 slightly smaller ones do not)."""
    if batch * time * gate_width < PARALLEL_WORK:
        return max(1, batch)  # one pass: cheaper than any split
    rows = rows_for_width(gate_width)
    if threads > 1:
        chunks = -(-batch // rows)
        chunks = -(-chunks // threads) * threads  # rounded up to a multiple of the threads
        rows = max(MIN_ROWS, -(-batch // chunks))
    return rows


def rows_for_width(gate_width: int) -> int:
    """Rows per chunk so that one step's (gate_width, rows) pre-activations hold STEP_VALUES values.

    2 MB in float32: big enough for BLAS to run near its peak on the step's products and for the
    per-step Python calls to cost little, small enough for a step's buffers to stay in cache (2-core
    AMD EPYC, 1 MB L2 per core, 32 MB L3, fast loop, float32, 2 threads: the 2-layer LSTM of
    make bench took 1.38x its matmul floor in chunks of 500 rows, 1.32x in 1,000 to 1,250, 1.42x in
    2,500, 1.90x in 5,000; GRU 256: 1.27x in 334 rows, 1.21x in 500, 1.19x in 1,000)."""
    rows = STEP_VALUES // max(1, gate_width)
    return int(min(MAX_ROWS, max(MIN_ROWS, rows)))


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread while our own threads share the cores (threadpoolctl if present)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def split_rows(total: int, rows: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most `rows` covering 0..total."""
    return [(start, min(total, start + rows)) for start in range(0, total, max(1, rows))]


def map_chunks(fn: ChunkFn, inputs: Sequence[np.ndarray], rows: int, threads: int) -> list[np.ndarray]:
    """fn over row chunks of `inputs` (all batch-first, same batch), outputs reassembled in order.

    Each output array is allocated once, from the first chunk's shapes, and filled in place.
    """
    total = inputs[0].shape[0]
    ranges = split_rows(total, rows)
    if len(ranges) == 1:
        return fn(list(inputs))
    outputs: list[np.ndarray] = []

    def place(start: int, stop: int, parts: list[np.ndarray]) -> None:
        if not outputs:
            outputs.extend(np.empty((total, *p.shape[1:]), dtype=p.dtype) for p in parts)  # (batch, ...)
        for out, part in zip(outputs, parts, strict=True):
            out[start:stop] = part

    def run(bounds: tuple[int, int]) -> list[np.ndarray]:
        return fn([x[bounds[0] : bounds[1]] for x in inputs])

    if threads <= 1:
        for bounds in ranges:
            place(*bounds, run(bounds))
        return outputs
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=threads) as pool:
        for bounds, parts in zip(ranges, pool.map(run, ranges), strict=True):
            place(*bounds, parts)
    return outputs
