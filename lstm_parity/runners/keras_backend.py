"""Keras 3 on a chosen backend (`keras:tensorflow`, `keras:jax`) as a check flow runner.

Keras 3 fixes its backend when it is first imported (KERAS_BACKEND), so each backend runs in a child
process of its own: one child per runner, started with KERAS_BACKEND set, loads the model once
(keras_runner.load_keras: compile=False, safe_mode unless the model code is trusted) and then serves
predict requests over its stdin/stdout until its stdin closes.

Every message either way is an `.npz` archive (np.savez; read back with allow_pickle=False, so
nothing is ever unpickled) behind an 8-byte big-endian length:
    child -> parent, once loaded:  {"version": "keras X / jax Y"}
    parent -> child, per chunk:    {"x0": ..., "x1": ...}            (one array per model input)
    child -> parent, per chunk:    {"y0": ..., "y1": ...}            (one array per model output)
    child -> parent, on failure:   {"error": "<one line>"}
The child's stderr (runtime chatter) goes to a temp file; its last line explains a child that died.
Loading and each request are time-limited: past the limit the child is killed (KerasSideError, 4).
Nothing here imports Keras or a backend: only the child does, through keras_runner.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np

from ..errors import KerasSideError, LstmParityError, first_line
from ..spec import ModelSpec
from .base import RunnerInfo

BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax"}  # backend -> the package Keras imports for it
EXTRAS = {"tensorflow": "pip install 'lstm-parity[keras]'", "jax": "pip install 'lstm-parity[jax]'"}
NOT_YET = ("torch",)  # Keras 3 backends we know of but do not run yet
LOAD_TIMEOUT = 120.0  # seconds for the child to import Keras and load the model
PREDICT_TIMEOUT = 600.0  # seconds per predict request (the first one on JAX also compiles)
CLOSE_TIMEOUT = 10.0  # seconds for the child to exit once its stdin is closed
HEADER = struct.Struct(">Q")  # message length in bytes
MAX_MESSAGE_BYTES = 1 << 40  # a length beyond this is a corrupt stream, not a message
# The child: drop the script directory ('' = cwd) from sys.path so files there cannot shadow modules.
ENTRY_POINTS, NO_ENTRY_POINTS = "entry-points", "no-entry-points"  # the child's argument: load installed plugins?
CHILD_CODE = "import sys; del sys.path[0]; from lstm_parity.runners.keras_backend import serve; sys.exit(serve())"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _ChildGone(Exception):
    """The child closed its end of a pipe (it exited or crashed)."""


# ------------------------------------------------------------------------------ messages


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """One message: the length header, then `arrays` as an .npz archive. Raises ValueError for object
    arrays (they would need pickle)."""
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise ValueError(f"array {key!r} holds Python objects; only plain numeric/string arrays are sent")
    buffer = io.BytesIO()
    save: Callable[..., None] = np.savez  # no allow_pickle keyword before numpy 2.1: objects are refused above
    save(buffer, **arrays)
    payload = buffer.getvalue()
    return HEADER.pack(len(payload)) + payload


def decode(payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of one .npz message body (allow_pickle=False: object arrays are refused)."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def read_message(stream: IO[bytes]) -> dict[str, np.ndarray] | None:
    """The next message on `stream`; None at a clean end of stream (nothing more was sent).
    Raises _ChildGone when the stream ends inside a message, ValueError for an absurd length."""
    header = stream.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise _ChildGone("stream ended inside a message header")
    (length,) = HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {length} bytes announced; the stream is corrupt")
    payload = stream.read(length)
    if len(payload) < length:
        raise _ChildGone("stream ended inside a message")
    return decode(payload)


def write_message(stream: IO[bytes], message: bytes) -> None:
    """Send one encoded message and flush. Raises _ChildGone when the reader has gone."""
    try:
        stream.write(message)
        stream.flush()
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise _ChildGone(str(exc)) from None


def numbered(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """`prefix`0, `prefix`1, ... of a message, in order; KeyError if one is missing."""
    count = sum(1 for key in arrays if key.startswith(prefix) and key[len(prefix) :].isdigit())
    return [arrays[f"{prefix}{index}"] for index in range(count)]


# ------------------------------------------------------------------------------ the parent side


class KerasBackendRunner:
    """Keras 3 on one backend, in its own child process (see the module). `predict` sends a chunk and
    waits for the outputs. The same loaded model predicts every chunk, so a stateful model carries its
    states from chunk to chunk as `model.predict` does on that backend (see backend_notes for JAX).
    Use `close()` (or `with`) to end the child."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        log: IO[bytes],
        spec: ModelSpec,
        backend: str,
        predict_timeout: float = PREDICT_TIMEOUT,
    ):
        self.process, self.log, self.spec, self.backend = process, log, spec, backend
        self.predict_timeout = predict_timeout
        self.label = f"keras:{backend}"
        self.info = RunnerInfo(kind="keras", label=self.label, path=spec.source)

    def start(self, load_timeout: float, stateful: bool) -> None:
        """Wait for the child to load the model; then `info` carries its versions. Raises KerasSideError."""
        reply = self._exchange(None, load_timeout, "load the model")
        self.info = RunnerInfo(
            kind="keras",
            label=self.label,
            version=str(reply["version"]),
            path=self.spec.source,
            notes=backend_notes(self.backend, stateful),
            stateful_model=stateful,
        )

    def predict(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        """Outputs of rows [start, stop), one batch-first array per model output (Keras' own dtype).
        Raises KerasSideError when the child fails, dies or overruns the time limit."""
        request = {f"x{index}": np.ascontiguousarray(x) for index, x in enumerate(inputs)}
        outputs = numbered(self._exchange(request, self.predict_timeout, f"predict rows {start}..{stop}"), "y")
        if len(outputs) != len(self.spec.output_names):
            raise KerasSideError(
                f"{self.spec.source}: {self.label} returned {len(outputs)} outputs, "
                f"the config declares {len(self.spec.output_names)}"
            )
        return outputs

    def close(self) -> None:
        """End the child: close its stdin (it exits on end of input), kill it if it lingers, reap it."""
        if self.process.stdin and not self.process.stdin.closed:
            with contextlib.suppress(OSError):  # the child already went away with bytes unread
                self.process.stdin.close()
        try:
            self.process.wait(timeout=CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
        if self.process.stdout:
            self.process.stdout.close()
        self.log.close()

    def __enter__(self) -> KerasBackendRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _exchange(self, request: dict[str, np.ndarray] | None, timeout: float, doing: str) -> dict[str, np.ndarray]:
        """Send `request` (None: only wait) and read the reply within `timeout` seconds; a reply
        carrying "error" becomes KerasSideError, as do a dead child, a broken reply and a timeout
        (the child is then killed)."""
        message = encode(request) if request is not None else None  # object arrays fail here, in the caller
        outcome: dict[str, Any] = {}
        worker = threading.Thread(target=self._talk, args=(message, outcome), daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self._kill()  # closes the pipes' far ends: the worker's blocked read or write returns
            worker.join(CLOSE_TIMEOUT)
            raise KerasSideError(
                f"{self.spec.source}: {self.label} did not {doing} within {timeout:g} s; the child was stopped"
            )
        if "failure" in outcome:
            self._kill()
            raise KerasSideError(self._death_message(doing, outcome["failure"]))
        reply: dict[str, np.ndarray] = outcome["reply"]
        if "error" in reply:
            raise KerasSideError(f"{reply['error']} [{self.label}]")
        return reply

    def _talk(self, message: bytes | None, outcome: dict[str, Any]) -> None:
        """In a worker thread: the blocking write and read of one exchange; the reply or the failure
        goes to `outcome`."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            if message is not None:
                write_message(self.process.stdin, message)
            reply = read_message(self.process.stdout)
            if reply is None:
                raise _ChildGone("the child closed its output")
            outcome["reply"] = reply
        except Exception as exc:  # a dead child or a reply that is not one of ours
            outcome["failure"] = exc

    def _death_message(self, doing: str, failure: Exception) -> str:
        """One line for a child that went away: how it ended and the last line it wrote to stderr."""
        code = self.process.returncode
        how = f"exited with status {code}" if code is not None and code >= 0 else f"was killed (signal {-(code or 0)})"
        if not isinstance(failure, (_ChildGone, OSError)):
            how = f"sent a broken reply ({type(failure).__name__}: {failure}); it was stopped"
        last = last_line(self.log)
        return f"{self.spec.source}: {self.label} could not {doing}: the child {how}" + (f": {last}" if last else "")

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def backend_notes(backend: str, stateful: bool) -> tuple[str, ...]:
    """What a report must say about this backend's run. Keras 3 (3.15 measured) keeps a stateful RNN's
    states in variables it does not track, and JAX's predict is a pure function of the tracked ones:
    every batch then starts from zero states, unlike on TensorFlow."""
    if backend == "jax" and stateful:
        return (
            "stateful layers on JAX: Keras' predict may start every batch from zero states instead of carrying them",
        )
    return ()


def last_line(log: IO[bytes], tail: int = 4096) -> str:
    """The last non-empty line of the child's stderr log (at most 200 characters), or ""."""
    try:
        log.flush()
        size = log.seek(0, os.SEEK_END)
        log.seek(max(0, size - tail))
        text = log.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def refuse(backend: str, spec: ModelSpec, trust_model_code: bool) -> None:
    """What no child is started for, each a one-line KerasSideError (exit 4): an unknown or not yet
    supported backend, a Keras 1/2 file, Lambda layers carrying code (unless trusted), and a backend
    or Keras that is not installed. A JSON dump is refused as for any Keras side (BadInputError, 2)."""
    from ..check import refuse_keras_on_dump  # late: check imports the flow, which imports runners
    from ..keras_runner import code_carrying_layers  # no Keras import: only its helpers

    label = f"keras:{backend}"
    if backend not in BACKEND_PACKAGES:
        known = " or ".join(f"keras:{name}" for name in BACKEND_PACKAGES)
        why = f"the {backend} backend is not supported yet" if backend in NOT_YET else f"unknown backend '{backend}'"
        raise KerasSideError(f"{label}: {why}; use {known}")
    refuse_keras_on_dump(spec)
    if spec.semantics == "keras2":
        raise KerasSideError(
            f"{spec.source}: Keras 3 cannot load a Keras 1/2 file on any backend; "
            f"`lstm-parity upgrade {spec.source} NEW.keras` rewrites it for Keras 3"
        )
    lambdas = code_carrying_layers([(layer.class_name, layer.config) for layer in spec.layers])
    if lambdas and not trust_model_code:
        raise KerasSideError(
            f"{spec.source}: refusing to let Keras load Lambda layer(s) {lambdas}: loading runs the "
            f"Python code stored in the file; pass --trust-model-code (check-all: trust_model_code = true) only "
            f"if you trust it, or compare without Keras (--no-keras)"
        )
    for package in ("keras", BACKEND_PACKAGES[backend]):
        if importlib.util.find_spec(package) is None:
            raise KerasSideError(f"{spec.source}: {label} needs {package}, which is not installed; {EXTRAS[backend]}")


def child_environment(backend: str) -> dict[str, str]:
    """os.environ with KERAS_BACKEND set, native logging quietened, and this lstm_parity first on the path."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def open_keras_backend(
    backend: str,
    spec: ModelSpec,
    batch_size: int = 32,
    trust_model_code: bool = False,
    *,
    load_timeout: float = LOAD_TIMEOUT,
    predict_timeout: float = PREDICT_TIMEOUT,
) -> KerasBackendRunner:
    """A runner for `spec.source` on Keras 3 with `backend` ("tensorflow" or "jax"), loaded in a
    child process that predicts in batches of `batch_size` (the model's own fixed batch size wins).

    Raises KerasSideError (exit 4) for the refusals of `refuse`, and when the child cannot import Keras,
    load the file, or does not finish loading within `load_timeout` seconds; BadInputError (2) for a
    JSON dump. Close the runner to end the child.
    """
    from ..plugins import computed_layers, plugin_files, uses_entry_points
    from ..reference.forward import fixed_batch_size, stateful_layers

    refuse(backend, spec, trust_model_code)
    batch = fixed_batch_size(spec) or batch_size
    arguments = [os.path.abspath(spec.source), spec.file_format, str(batch), "trust" if trust_model_code else "safe"]
    # installed packages' plugins: the child loads them only when one computes a layer of this model
    arguments.append(ENTRY_POINTS if uses_entry_points(computed_layers(spec)) else NO_ENTRY_POINTS)
    arguments += plugin_files()  # the user's plugin files: the child gives their Keras classes to Keras too
    log = tempfile.TemporaryFile(prefix="lstm-parity-keras-")  # noqa: SIM115 (the runner closes it)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_environment(backend),
        )
    except OSError as exc:
        log.close()
        raise KerasSideError(f"{spec.source}: cannot start the keras:{backend} child ({exc})") from None
    runner = KerasBackendRunner(process, log, spec, backend, predict_timeout)
    try:
        runner.start(load_timeout, bool(stateful_layers(spec)))
    except BaseException:
        runner.close()
        raise
    return runner


# ------------------------------------------------------------------------------ the child side


def claim_protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """The child's protocol pipes (its original stdin/stdout), after pointing fd 0 at /dev/null and fd 1
    at stderr, so that nothing Keras or a backend prints can corrupt a message."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    with open(os.devnull, "rb") as devnull:
        os.dup2(devnull.fileno(), 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return requests, replies


def load_in_child(
    path: str, file_format: str, trust_model_code: bool, plugins: Sequence[str] = (), entry_points: bool = False
) -> tuple[Any, str]:
    """Load `path` with Keras 3 on KERAS_BACKEND (keras_runner.load_keras), with the Keras classes of the
    plugin files `plugins` (and of installed packages' plugins when `entry_points`) as custom objects;
    returns the KerasModel and "keras X / <backend> Y".
    Raises KerasSideError, BadInputError for a plugin that cannot be loaded."""
    from ..keras_runner import load_keras
    from ..plugins import PluginSet, installed_plugins, load_plugins

    files = load_plugins(list(plugins)).plugins
    given = PluginSet(files + (installed_plugins() if entry_points else ()))
    loaded = load_keras(path, file_format, "keras3", None, trust_model_code, given.keras_objects)
    wanted = os.environ.get("KERAS_BACKEND", "tensorflow")
    actual = str(loaded.module.backend.backend())
    if actual != wanted:
        raise KerasSideError(f"{path}: Keras runs on {actual}, not {wanted} (KERAS_BACKEND is fixed at import)")
    backend_module = sys.modules.get(BACKEND_PACKAGES.get(actual, actual))
    loaded.where = f"{loaded.where} on {actual}"
    return loaded, f"keras {loaded.version} / {actual} {getattr(backend_module, '__version__', '?')}"


def guarded(action: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`action()`'s reply, or {"error": one line} for any exception it raises."""
    try:
        return action()
    except LstmParityError as exc:
        return {"error": np.array(exc.message)}
    except Exception as exc:
        return {"error": np.array(first_line(exc))}


class ModelServer:
    """The child's model: loaded once, then predicting request after request in batches of `batch_size`.
    After a failed request the model is loaded again before the next one: Keras on JAX leaves a
    model whose predict raised with its variables purged (every later predict fails)."""

    def __init__(
        self,
        path: str,
        file_format: str,
        batch_size: int,
        trust_model_code: bool,
        plugins: Sequence[str] = (),
        entry_points: bool = False,
    ):
        self.path, self.file_format, self.batch_size = path, file_format, batch_size
        self.trust_model_code, self.plugins, self.entry_points = trust_model_code, list(plugins), entry_points
        self.model: Any = None

    def load(self) -> dict[str, np.ndarray]:
        """Load the model; the reply {"version": "keras X / <backend> Y"}. Raises KerasSideError."""
        self.model, version = load_in_child(
            self.path, self.file_format, self.trust_model_code, self.plugins, self.entry_points
        )
        return {"version": np.array(version)}

    def predict(self, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The reply {"y0": ..., ...} to a request {"x0": ..., ...}. Raises what Keras raises."""
        if self.model is None:
            self.load()
        try:
            outputs = self.model.predict(numbered(request, "x"), self.batch_size)
        except Exception:
            self.model = None
            raise
        return {f"y{index}": np.asarray(y) for index, y in enumerate(outputs)}


def serve(argv: list[str] | None = None) -> int:
    """The child's main: argv is PATH FILE_FORMAT BATCH_SIZE trust|safe entry-points|no-entry-points
    [PLUGIN_FILE ...]. Load, say "version", then answer each request with the model's outputs until stdin
    ends. Returns the exit status."""
    path, file_format, batch_text, trust, installed, *plugins = argv if argv is not None else sys.argv[1:]
    requests, replies = claim_protocol_streams()
    server = ModelServer(path, file_format, int(batch_text), trust == "trust", plugins, installed == ENTRY_POINTS)
    reply = guarded(server.load)
    try:
        write_message(replies, encode(reply))
        while "error" not in reply and (request := read_message(requests)) is not None:
            write_message(replies, encode(guarded(functools.partial(server.predict, request))))
    except _ChildGone:  # the parent went away: nobody to answer
        return 1
    return 0
