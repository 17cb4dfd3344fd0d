"""`check`: the reference and Keras on the same input, weights verified, outputs compared.

Library entry point behind `lstm-parity check`; the CLI only renders the CheckReport.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .compare import ComparisonResult, Tolerance, compare_outputs
from .errors import BadInputError, KerasSideError
from .reference.forward import fixed_batch_size, forward_batches, stateful_layers
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
    """Everything `check` found. Without Keras (`keras=False`) keras_package is "", weights and
    comparison are None and the report says the reference ran alone."""

    spec: ModelSpec
    semantics: str  # what the reference computed with
    semantics_forced: bool
    keras_package: str
    keras_version: str
    reference_dtype: str
    input_shapes: tuple[tuple[int, ...], ...]
    weights: WeightCheck | None
    comparison: ComparisonResult | None  # reference vs Keras
    reference_outputs: tuple[np.ndarray, ...] = ()
    notes: tuple[str, ...] = ()
    expected: ComparisonResult | None = None  # reference vs outputs produced elsewhere (--expected)
    keras_outputs: tuple[np.ndarray, ...] = ()
    layerwise: tuple[dict, ...] | None = None  # per layer output vs Keras (--layerwise)
    trace_divergence: dict | None = None  # first gate/timestep where a port's trace departs (--expected-trace)
    trace_compared: bool = False

    @property
    def first_layer_divergence(self) -> dict | None:
        return next((row for row in self.layerwise or () if not row["passed"]), None)

    @property
    def comparisons(self) -> list[ComparisonResult]:
        return [c for c in (self.comparison, self.expected) if c is not None]

    @property
    def passed(self) -> bool:
        """The outputs (and the weights read, and a port's trace) decide. --layerwise only localises:
        an inner layer may exceed the output tolerance by float32 drift that later layers shrink
        (a 128-unit stateful GRU over 48 carried steps: 6e-5 inside, 3e-6 at the output), and a
        check whose outputs pass is not failed for that."""
        if self.comparison is not None and not (self.weights and self.weights.identical):
            return False
        if self.trace_divergence is not None:
            return False
        return all(c.passed for c in self.comparisons)


def check_weights(spec: ModelSpec, keras_weights: dict[str, list[np.ndarray]]) -> WeightCheck:
    """Compare every layer's arrays with what Keras loaded, bit for bit."""
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
        for name, ours, keras_array in zip(layer.weight_names, layer.weights, theirs, strict=True):
            arrays += 1
            values += ours.size
            if (
                ours.dtype != keras_array.dtype
                or ours.shape != keras_array.shape
                or ours.tobytes() != keras_array.tobytes()
            ):
                mismatches.append(
                    f"{layer.name}.{name}: {ours.dtype}{ours.shape} read vs "
                    f"{keras_array.dtype}{keras_array.shape} in Keras, values differ"
                )
    return WeightCheck(not mismatches, arrays, values, tuple(mismatches))


def run_check(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    *,
    semantics: str | None = None,
    dtype: str = "float64",
    tolerance: Tolerance | None = None,
    batch_size: int = 32,
    keras: bool = True,
    trust_model_code: bool = False,
    expected: list[np.ndarray] | None = None,
    layerwise: bool = False,
    expected_trace: tuple[dict[str, np.ndarray], int] | None = None,
) -> CheckReport:
    """Compute `spec` with the reference and (unless keras=False) with Keras on `inputs`, and compare;
    with `expected` (outputs produced elsewhere, e.g. by a port) also compare the reference with those.

    Float inputs are rounded to float32 first so both sides see the same numbers. The Keras side is
    the generation that saved the file (tf_keras for Keras 1/2, Keras 3 otherwise) whatever
    `semantics` says; forcing other semantics shows how far the other generation's math is.
    Raises UnsupportedError (3), BadInputError (2), KerasSideError (4).
    """
    inputs = [x if np.asarray(x).dtype.kind in "iu" else np.asarray(x, dtype=np.float32) for x in inputs]
    chosen = semantics or spec.semantics
    batch_size = fixed_batch_size(spec) or batch_size
    # one run gives the outputs and, for --layerwise, every layer's outputs, with stateful layers'
    # states carried batch by batch exactly as the Keras side's predict carries them
    recorded = forward_batches(
        spec, inputs, semantics=chosen, dtype=np.dtype(dtype), batch_size=batch_size, record=layerwise
    )
    reference = recorded.outputs
    notes = report_notes(spec, batch_size)
    tolerance = tolerance or Tolerance()
    against_expected = None
    if expected is not None:
        if len(expected) != len(reference):
            raise BadInputError(
                f"{spec.source}: the expected outputs are {len(expected)} arrays, the model has "
                f"{len(reference)} outputs {spec.output_names}"
            )
        against_expected = compare_outputs(spec.output_names, reference, expected, tolerance, against="expected")
    trace_divergence = None
    if expected_trace is not None:
        from .trace import first_divergence, trace

        port, sample = expected_trace
        ours = trace(spec, inputs, sample=sample, semantics=chosen, dtype=np.dtype(dtype))
        shared = [k for k in ours if k in port]
        if not shared:
            raise BadInputError(
                f"{spec.source}: the expected trace has none of the keys of this model's trace (e.g. {list(ours)[:3]})"
            )
        trace_divergence = first_divergence(
            ours, port, tolerance.atol, tolerance.rtol, [layer.name for layer in spec.layers]
        )
    alone = CheckReport(  # the reference alone; the Keras side fills in the rest
        spec=spec,
        semantics=chosen,
        semantics_forced=semantics is not None,
        keras_package="",
        keras_version="",
        reference_dtype=str(np.dtype(dtype)),
        input_shapes=tuple(x.shape for x in inputs),
        weights=None,
        comparison=None,
        reference_outputs=tuple(reference),
        expected=against_expected,
        trace_divergence=trace_divergence,
        trace_compared=expected_trace is not None,
    )
    if not keras:
        if against_expected is None:
            notes.append("Keras not run (--no-keras): nothing compared")
        return replace(alone, notes=tuple(notes))
    refuse_keras_on_dump(spec)
    from .keras_runner import run_keras  # the only TensorFlow import, done late

    run = run_keras(
        spec.source,
        spec.file_format,
        spec.semantics,
        inputs,
        batch_size=batch_size,
        layers=[(layer.class_name, layer.config) for layer in spec.layers],
        trust_model_code=trust_model_code,
        layer_outputs=layerwise,
    )
    if len(run.outputs) != len(reference):
        raise KerasSideError(
            f"{spec.source}: Keras returned {len(run.outputs)} outputs, the config declares {len(reference)}"
        )
    comparison = compare_outputs(spec.output_names, reference, run.outputs, tolerance)
    rows = None
    if layerwise:
        rows = tuple(layerwise_rows(spec, recorded.layer_outputs, run.layer_outputs or {}, tolerance))
    return replace(
        alone,
        keras_package=run.package,
        keras_version=run.version,
        weights=check_weights(spec, run.layer_weights),
        comparison=comparison,
        notes=tuple(notes),
        keras_outputs=tuple(run.outputs),
        layerwise=rows,
    )


def refuse_keras_on_dump(spec: ModelSpec) -> None:
    """A JSON dump holds weights, not a model Keras can load: say what to do instead."""
    if spec.file_format == "dump-json":
        raise BadInputError(
            f"{spec.source}: a JSON dump has no Keras model to check against; "
            f"use --no-keras, `lstm-parity predict`, or `check` on the .h5/.keras file"
        )


def report_notes(spec: ModelSpec, batch_size: int) -> list[str]:
    """What the report must say about how the model was computed: stateful batches, converted layers."""
    notes = []
    if stateful_layers(spec):
        notes.append(
            f"stateful layers {stateful_layers(spec)}: states carried across predict batches of "
            f"{batch_size}, starting from zeros, as Keras does"
        )
    notes += [f"{layer.name}: {layer.converted}" for layer in spec.layers if layer.converted]
    return notes


def layerwise_rows(
    spec: ModelSpec, ours: dict[str, list[np.ndarray]], theirs: dict[str, list[np.ndarray]], tolerance: Tolerance
) -> list[dict]:
    """Each layer's outputs vs Keras', in model order: max abs diff, pass, and for sequence outputs
    the first timestep where the difference exceeds the tolerance."""
    rows = []
    for layer in spec.layers:
        if layer.name not in ours or layer.name not in theirs:
            continue
        for index, (a, b) in enumerate(zip(ours[layer.name], theirs[layer.name], strict=True)):
            b = np.asarray(b, dtype=np.float64)
            if a.shape != b.shape:
                rows.append(
                    {
                        "layer": layer.name,
                        "output": index,
                        "max_abs_diff": float("inf"),
                        "passed": False,
                        "first_timestep": None,
                        "shape": list(a.shape),
                    }
                )
                continue
            atol, rtol = tolerance.atol, tolerance.rtol
            with np.errstate(invalid="ignore"):
                bad = ~(np.abs(a - b) <= atol + rtol * np.abs(a))
            first = None
            if bad.any() and a.ndim >= 3:
                first = int(np.argmax(bad.reshape(bad.shape[0], bad.shape[1], -1).any(axis=(0, 2))))
            rows.append(
                {
                    "layer": layer.name,
                    "output": index,
                    "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
                    "passed": not bool(bad.any()),
                    "first_timestep": first,
                    "shape": list(a.shape),
                }
            )
    return rows
