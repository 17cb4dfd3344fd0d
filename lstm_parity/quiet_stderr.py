"""Silence what native runtimes (TensorFlow, LiteRT, ONNX Runtime) print straight to file descriptor 2,
bypassing Python's logging, while they load and run: stderr holds our one-line errors only."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """fd 2 to /dev/null and Python warnings ignored for the block (runtime chatter, not our numbers)."""
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
