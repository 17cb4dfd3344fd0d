"""`check`: the reference and Keras on the same input, weights verified, outputs compared.

Library entry point behind `lstm-parity check`; the CLI only renders the CheckReport.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError, KerasSideError
from .compare import DEFAULT_ATOL, DEFAULT_RTOL, ComparisonResult, compare_outputs
from .reference.forward import forward
from .spec import ModelSpec


@dataclass(frozen=True)
class WeightCheck:
    """Our reader's arrays vs `model.get_weights()` per layer: identical means same dtype, shape, bits."""

    identical: bool
    arrays: int
    values: int
    mismatches: tuple[str, ...]


@dataclass(frozen=True)
class CheckReport:
    spec: ModelSpec
    semantics: str  # what the reference computed with
    semantics_forced: bool
    keras_package: str
    keras_version: str
    reference_dtype: str
    input_shapes: tuple[tuple[int, ...], ...]
    weights: WeightCheck
    comparison: ComparisonResult

    @property
    def passed(self) -> bool:
        return self.weights.identical and self.comparison.passed


def check_weights(spec: ModelSpec, keras_weights: dict[str, list[np.ndarray]]) -> WeightCheck:
    """Compare every layer's stored arrays with what Keras loaded, bit for bit."""
    mismatches = []
    arrays = values = 0
    for layer in spec.layers:
        if layer.class_name == "InputLayer" and not layer.weights:
            continue
        theirs = keras_weights.get(layer.name)
        if theirs is None:
            if layer.weights:
                mismatches.append(f"{layer.name}: Keras has no layer of that name")
            continue
        if len(theirs) != len(layer.weights):
            mismatches.append(f"{layer.name}: {len(layer.weights)} arrays read, Keras holds {len(theirs)}")
            continue
        for name, ours, keras_array in zip(layer.weight_names, layer.weights, theirs):
            arrays += 1
            values += ours.size
            if ours.dtype != keras_array.dtype or ours.shape != keras_array.shape \
                    or ours.tobytes() != keras_array.tobytes():
                mismatches.append(f"{layer.name}.{name}: {ours.dtype}{ours.shape} read vs "
                                  f"{keras_array.dtype}{keras_array.shape} in Keras, values differ")
    return WeightCheck(not mismatches, arrays, values, tuple(mismatches))


def run_check(spec: ModelSpec, inputs: list[np.ndarray], *, semantics: str | None = None,
              dtype: str = "float64", atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
              batch_size: int = 32) -> CheckReport:
    """Compute `spec` with the reference and with Keras on `inputs` and compare.

    Inputs are rounded to float32 first so both sides see the same numbers. The Keras side is the
    generation that saved the file (tf_keras for Keras 1/2, Keras 3 otherwise) whatever `semantics`
    says; forcing other semantics shows how far the other generation's math is.
    Raises UnsupportedError (3), BadInputError (2), KerasSideError (4).
    """
    from .keras_runner import run_keras  # the only TensorFlow import, done late

    if spec.file_format == "dump-json":
        raise BadInputError(f"{spec.source}: a JSON dump has no Keras model to check against; "
                            f"use `lstm-parity predict` on it, or `check` on the .h5/.keras file")
    inputs = [np.asarray(x, dtype=np.float32) for x in inputs]
    reference = forward(spec, inputs, semantics=semantics or spec.semantics, dtype=np.dtype(dtype))
    run = run_keras(spec.source, spec.file_format, spec.semantics, inputs, batch_size=batch_size)
    names = spec.output_names
    if len(run.outputs) != len(reference.outputs):
        raise KerasSideError(f"{spec.source}: Keras returned {len(run.outputs)} outputs, the config "
                             f"declares {len(reference.outputs)}")
    comparison = compare_outputs(names, reference.outputs, run.outputs, atol=atol, rtol=rtol)
    return CheckReport(
        spec=spec, semantics=semantics or spec.semantics, semantics_forced=semantics is not None, keras_package=run.package, keras_version=run.version,
        reference_dtype=str(np.dtype(dtype)), input_shapes=tuple(x.shape for x in inputs),
        weights=check_weights(spec, run.layer_weights), comparison=comparison)
