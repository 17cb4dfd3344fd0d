"""The converters `export` drives (TensorFlow's SavedModel and TFLite converter, tf2onnx, ONNX Runtime's
quantizer), imported only when an export runs, and kept quiet while they work.

Keras itself comes through keras_runner (the one place that imports it); TensorFlow and tf2onnx are
imported here by name at call time, so no module of the package imports them at load (the core runs
without TensorFlow). A converter's own failure becomes one ConversionError line, never its log.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from ..errors import KerasSideError, LstmParityError, first_line
from ..quiet_stderr import quiet_stderr

EXTRA = "pip install 'lstm-parity[export]'"
# Python loggers the converters write to (INFO banners, retracing warnings, "Using opset ...").
CHATTY_LOGGERS = ("tensorflow", "tf2onnx", "absl", "h5py", "onnxruntime", "keras")


class ConversionError(KerasSideError):
    """A converter (TensorFlow, tf2onnx, ONNX Runtime's quantizer) failed on the rebuilt model (exit 4)."""


def import_tool(module: str) -> Any:
    """Import `module` (tensorflow, tf2onnx, onnx, onnxruntime.quantization, ...) quietly.
    Raises KerasSideError (exit 4) naming the extra that installs the converters."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
            loaded = importlib.import_module(module)
    except ImportError as exc:
        raise KerasSideError(f"cannot import {module} ({exc}); export needs the converters: {EXTRA}") from None
    silence_loggers()
    return loaded


def silence_loggers() -> None:
    """Converters' Python loggers to ERROR (their INFO/WARNING chatter is not our report)."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def version_of(module: str) -> str:
    """`module.__version__` if it is imported, else ""."""
    return str(getattr(sys.modules.get(module), "__version__", ""))


def error_line(exc: BaseException) -> str:
    """The line of a converter's exception worth quoting: the first `error:` line of an MLIR dump
    (TFLite's ConverterError holds the whole log) without its source location, else the first line."""
    for line in str(exc).splitlines():
        if "error:" in line:
            text = strip_location(line.split("error:", 1)[1].strip())
            return f"{type(exc).__name__}: {text}"[:300]
    return first_line(exc)


def strip_location(text: str) -> str:
    """`loc(callsite("lstm/while@..." at ...)): 'tf.X' op ...` -> `'tf.X' op ...`: MLIR's location prefix
    (nested parentheses, quoted names) names graph nodes of the converter's own, not the user's layers."""
    if not text.startswith("loc("):
        return text
    depth, quoted = 0, False
    for index, char in enumerate(text):
        if char == '"' and text[index - 1] != "\\":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return text[index + 1 :].lstrip(": ").strip() or text
    return text


@contextlib.contextmanager
def converting(what: str, source: str) -> Iterator[None]:
    """Run a conversion step quietly (fd 2, stdout and the converters' loggers); any failure that is not
    already one of ours becomes ConversionError: `{source}: {what} failed: Type: the line that matters`."""
    silence_loggers()
    try:
        with quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
            yield
    except LstmParityError:
        raise
    except Exception as exc:
        raise ConversionError(f"{source}: {what} failed: {error_line(exc)}") from None
