"""What native runtimes (TensorFlow, LiteRT, ONNX Runtime, TFLite Micro, OpenVINO, hls4ml's compiler) print
straight to file descriptors 1 and 2, bypassing Python: silenced (`quiet_stderr`) or captured to be quoted
in our one-line errors (`native_output`). The one place that swaps those descriptors.

Swapping a file descriptor is process-wide: while a block runs, whatever any thread writes to fd 1/2 (or,
for `native_output`, to sys.stdout/sys.stderr) goes where the block sends it. Both context managers hold
one reentrant lock, so two threads of ours never swap the descriptors under each other; a thread that
writes without the lock (a rich progress display refreshing) is swallowed for the block's duration, and
`native_output` drops the lines that carry terminal control sequences, so a progress frame is never
quoted as a runtime's words. A nested `native_output` captures into its own file and restores the outer
capture when it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any

FD_LOCK = threading.RLock()  # held while fd 1/2 (and sys.stdout/sys.stderr) point elsewhere
TERMINAL_CONTROL = re.compile("\x1b")  # ANSI escape sequences: a progress frame, never a message


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """fd 2 to /dev/null and Python warnings ignored for the block (runtime chatter, not our numbers)."""
    with FD_LOCK:
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_depth = threading.local()  # this thread's nesting of native_output blocks


@contextlib.contextmanager
def native_output() -> Iterator[list[str]]:
    """Capture everything written to file descriptors 1 and 2 during the block (native runtimes print
    there, bypassing Python; Python's own prints and warnings are swallowed too). The yielded list holds
    the captured lines, stripped, without empty lines and without lines carrying terminal control
    sequences, once the block ends. See the module for what "process-wide" means here."""
    lines: list[str] = []
    with FD_LOCK:
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            with _captured(lines, depth):
                yield lines
        finally:
            _depth.value = depth
    lines[:] = [line.strip() for line in lines if line.strip() and not TERMINAL_CONTROL.search(line)]


@contextlib.contextmanager
def _captured(lines: list[str], depth: int) -> Iterator[None]:
    """fd 1 and 2 into this depth's capture file, sys.stdout/sys.stderr into a buffer; every line to `lines`."""
    _flush_all()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no fds to redirect (an embedded interpreter): Python's own output only
        with _python_output() as printed:
            try:
                yield
            finally:
                lines.extend(printed.getvalue().splitlines())
        return
    sink = _sink(depth)
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with _python_output() as printed:
            try:
                yield
            finally:
                lines.extend(printed.getvalue().splitlines())
    finally:
        _flush_all()  # C stdio buffers go to the sink, not to the restored terminal
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        sink.seek(0)
        lines[:0] = sink.read().decode("utf-8", "replace").splitlines()
        sink.seek(0)
        sink.truncate()


_SINKS: dict[tuple[int, int], Any] = {}  # (process id, nesting depth) -> capture file (a forked child makes its own)


def _sink(depth: int) -> Any:
    """This process' capture file for a block at `depth`, made once (a temporary file per call costs more
    than a TFLM invoke)."""
    key = (os.getpid(), depth)
    if key not in _SINKS:
        _SINKS[key] = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the process' lifetime)
    return _SINKS[key]


@contextlib.contextmanager
def _python_output() -> Iterator[io.StringIO]:
    """sys.stdout and sys.stderr into one buffer (they may not be fds 1 and 2, e.g. under pytest),
    Python warnings off."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield printed


def _flush_all() -> None:
    """Flush Python's and C's stdio buffers (fflush(NULL)), so output lands where it was written."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        _libc().fflush(None)


@functools.cache
def _libc() -> Any:
    """The C library already loaded in this process (for fflush)."""
    return ctypes.CDLL(None)
