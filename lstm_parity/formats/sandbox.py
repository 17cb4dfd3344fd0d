"""Parse untrusted files in a child process, so a file that makes the HDF5 C library loop forever
or crash cannot hang or kill us: the parent waits a bounded time and turns either into one of
our errors. (Fuzzing found both kinds of HDF5 file.) The child sends back our own ModelSpec,
pickled over a private pipe; nothing from the file is ever unpickled.

LSTM_PARITY_READ_TIMEOUT (seconds, default 60) bounds the wait; LSTM_PARITY_NO_SANDBOX=1 reads
in-process (for debugging). Where os.fork does not exist the read is in-process.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from .. import errors
from ..errors import BadInputError, LstmParityError


class ChildDied(BadInputError):
    """The child crashed (`how`: "signal 11", "status 3") or overran the timeout (`how`: "timeout") without
    answering. A BadInputError (exit 2: a file that kills its reader is corrupt) unless the caller knows
    better: the TFLite Micro runner retries with another arena to tell a too-small arena from a bad file."""

    def __init__(self, message: str, how: str):
        super().__init__(message)
        self.how = how


def read_timeout() -> float:
    try:
        return float(os.environ.get("LSTM_PARITY_READ_TIMEOUT", "60"))
    except ValueError:
        return 60.0


def run_isolated(fn: Callable[[str], Any], path: str, what: str = "the HDF5/zip library") -> Any:
    """`fn(path)` in a forked child; its result, or its LstmParityError re-raised here.

    Raises ChildDied (a BadInputError) when the child overruns the timeout or dies without answering;
    `what` names the library that crashed in that message.
    """
    if not hasattr(os, "fork") or os.environ.get("LSTM_PARITY_NO_SANDBOX") == "1":
        return fn(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        os.close(read_end)
        faulthandler.disable()  # a crash here is an answer the parent reads, not a stack to print
        try:
            try:
                payload: tuple[Any, ...] = ("ok", fn(path))
            except LstmParityError as exc:
                payload = ("error", type(exc).__name__, exc.message)
            except BaseException as exc:  # anything at all: the parent decides what it means
                payload = ("crash", f"{type(exc).__name__}: {exc}")
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + read_timeout()
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(remaining, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise ChildDied(
                    f"{path}: reading did not finish within {read_timeout():g} s; the file is "
                    f"probably corrupt (set LSTM_PARITY_READ_TIMEOUT to wait longer)",
                    "timeout",
                )
            chunk = os.read(pipe.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        how = (
            f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.waitstatus_to_exitcode(status)}"
        )
        raise ChildDied(f"{path}: {what} crashed reading the file ({how}); it is corrupt", how)
    payload = pickle.loads(b"".join(chunks))  # our own child's answer, not file content
    if payload[0] == "ok":
        return payload[1]
    if payload[0] == "error":
        raise getattr(errors, payload[1], BadInputError)(payload[2])
    raise BadInputError(f"{path}: unreadable or corrupt model file ({payload[1][:200]})")
