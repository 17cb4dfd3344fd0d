"""lstm-parity: prove that a NumPy forward pass computes exactly what a saved Keras model computes.

Public API (none of it imports TensorFlow except `check`, which runs Keras):
    spec = lstm_parity.load("model.h5")             # read .h5 / .keras / dump JSON
    outputs = lstm_parity.predict(spec, [x])         # NumPy reference, list of arrays
    result = lstm_parity.compare(names, outputs, other_outputs, atol=1e-5, rtol=1e-5)
    report = lstm_parity.check(spec, [x])            # reference vs Keras model.predict
    lstm_parity.predict_file(spec, "x.npy", "y.npy")  # any size: memory-mapped, chunk by chunk
    report = lstm_parity.check_file(spec, "x.npy")   # the same for check (Keras fed the same chunks)
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

# The submodules named like the API functions below are imported here, first: Python sets a package
# attribute to a submodule when it is first imported, which would replace the function `check`,
# `compare` or `trace` by the module of that name on first use. None of them imports TensorFlow.
for _submodule in ("check", "compare", "trace"):
    importlib.import_module(f".{_submodule}", __name__)

if TYPE_CHECKING:
    from .check import CheckReport
    from .compare import ComparisonResult
    from .spec import ModelSpec


def load(path: str) -> ModelSpec:
    """Read a saved model (.h5, .keras or an lstm-parity dump) into a ModelSpec without TensorFlow.

    Raises BadInputError (unreadable) or UnsupportedError (structure not handled).
    """
    from .formats import open_model

    return open_model(path)


def predict(
    spec: ModelSpec, inputs: list[np.ndarray], *, dtype: Any = np.float64, semantics: str | None = None
) -> list[np.ndarray]:
    """Run the NumPy reference: one batch-first array per model input -> one array per output."""
    from .reference.forward import forward

    return forward(spec, inputs, semantics=semantics, dtype=dtype).outputs


def compare(
    names: list[str], reference: list[np.ndarray], other: list[np.ndarray], atol: float = 1e-5, rtol: float = 1e-5
) -> ComparisonResult:
    """Compare outputs elementwise under |other - reference| <= atol + rtol*|reference|."""
    from .compare import Tolerance, compare_outputs

    return compare_outputs(names, reference, other, Tolerance(atol, rtol))


def trace(spec: ModelSpec, inputs: list[np.ndarray], **options: Any) -> dict[str, np.ndarray]:
    """Gate values per timestep and every layer's output for one sample (see lstm_parity.trace)."""
    from .trace import trace as run_trace

    return run_trace(spec, inputs, **options)


def check(spec: ModelSpec, inputs: list[np.ndarray], **options: Any) -> CheckReport:
    """Reference vs Keras `model.predict` on the same inputs (imports Keras); see check.run_check."""
    from .check import run_check

    return run_check(spec, inputs, **options)


def predict_file(spec: ModelSpec, input_path: str, output_path: str, **options: Any) -> None:
    """The reference on an input file of any size, written to `output_path` (see streaming.stream_predict)."""
    from .streaming import stream_predict

    stream_predict(spec, input_path, output_path, show_progress=False, **options)


def check_file(spec: ModelSpec, input_path: str, **options: Any) -> CheckReport:
    """Reference vs Keras on an input file of any size, chunk by chunk (see streaming.stream_check)."""
    from .streaming import stream_check

    return stream_check(spec, input_path, show_progress=False, **options)
