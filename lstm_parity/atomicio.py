"""Write files so that a reader never sees a half-written file and a failure leaves nothing behind.

Every output goes to a temporary file in the target folder and is renamed into place, with the
permissions a plain `open()` would have given it: those of the file it replaces, or 0666 less the umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from .errors import BadInputError


def check_writable(path: str) -> None:
    """Raise BadInputError (exit 2) when `path` cannot be written as a file: it is a directory, or its
    folder is missing or not writable. Commands call it before long work whose result goes to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise BadInputError(f"{path}: is a directory; give a file name to write")
    if not os.path.isdir(folder):
        raise BadInputError(f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BadInputError(f"{path}: cannot write in {folder}")


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` only on success.

    Raises BadInputError when `path` cannot be written (check_writable) or the temporary file cannot be made.
    """
    check_writable(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lstm-parity-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot write in {folder} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def publish(temporary: str, path: str) -> None:
    """Rename the finished `temporary` onto `path`, first giving it the mode `open(path, "w")` would:
    the existing file's permission bits when replacing one, else 0666 less the process umask
    (mkstemp creates files 0600)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    os.chmod(temporary, mode)
    os.replace(temporary, path)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, without changing it for other threads where /proc tells it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: the only portable way is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def refuse_overwriting_inputs(output: str, inputs: list[str]) -> None:
    """Raise BadInputError if `output` is the same file as any of `inputs`."""
    if not os.path.exists(output):
        return
    for name in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(output, name):
                raise BadInputError(f"{output}: refusing to overwrite an input file")
