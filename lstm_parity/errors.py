"""User-facing errors: one root class carrying a one-line message and the CLI exit code.

Internal bugs are plain Python exceptions; only these reach the user as a one-line message.
Exit codes: 0 pass, 1 parity failure, 2 bad usage or unreadable input,
3 model uses something the reference does not implement, 4 the Keras side could not load or run it.
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_PARITY_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_UNSUPPORTED = 3
EXIT_KERAS_SIDE = 4


class LstmParityError(Exception):
    """Root of every error meant for the user: `str(err)` is a one-line message."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line

    @property
    def message(self) -> str:
        return self.args[0]


class BadInputError(LstmParityError):
    """The model file, input array or command-line usage is unreadable or invalid (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class UnsupportedError(LstmParityError):
    """The model uses a layer or option the NumPy reference does not implement (exit 3)."""

    exit_code = EXIT_UNSUPPORTED


class KerasSideError(LstmParityError):
    """Keras could not be imported, could not load the file, or failed to predict (exit 4)."""

    exit_code = EXIT_KERAS_SIDE


def first_line(exc: BaseException) -> str:
    """`Type: first non-empty line of the message`, at most 300 characters: how a runtime's own
    exception (Keras, ONNX Runtime, LiteRT) is quoted in one of our one-line errors, never a traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
