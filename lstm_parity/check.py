"""`check`: the reference and Keras on the same input, weights verified, outputs compared.

Library entry point behind `lstm-parity check`; the CLI only renders the CheckReport.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .compare import ComparisonResult, Tolerance
from .errors import BadInputError
from .layer_budget import budget_rows
from .profiles import Rule, apply_profile, check_rule_outputs, profile_named, top1_outputs
from .reference.forward import build, fixed_batch_size, stateful_layers
from .reference.layers import reduced_precision
from .spec import ModelSpec

if TYPE_CHECKING:
    from .flow import Independence
    from .plugins import Computed, PluginUse
    from .runners.base import Runner, RunnerInfo
    from .streaming import Stream


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
    exports: tuple[ComparisonResult, ...] = ()  # reference vs each export's runtime (--against)
    sides: tuple[RunnerInfo, ...] = ()  # who computed each export's side: runtime, version, file, census
    independence: tuple[Independence, ...] = ()  # each export's second pass (state carried between runs?)
    keras_backend: str = ""  # what the Keras side computed on: tensorflow, or Keras 3's KERAS_BACKEND
    # --layerwise against exports with their own per-layer trace (hls4ml): (label, rows as `layerwise`)
    export_layerwise: tuple[tuple[str, tuple[dict, ...]], ...] = ()
    plugins: tuple[PluginUse, ...] = ()  # the user's plugins in force and the layers each computed

    @property
    def first_layer_divergence(self) -> dict | None:
        return next((row for row in self.layerwise or () if not row["passed"]), None)

    def first_export_divergence(self, label: str) -> dict | None:
        """The first layer row of export `label` (--layerwise on an export with its own trace) over its share of
        the tolerance (layer_budget.budget_rows)."""
        rows = dict(self.export_layerwise).get(label, ())
        return next((row for row in rows if not row["passed"]), None)

    @property
    def comparisons(self) -> list[ComparisonResult]:
        return [c for c in (self.comparison, self.expected) if c is not None] + list(self.exports)

    @property
    def passed(self) -> bool:
        """The outputs (and the weights read, and a port's trace) decide. --layerwise only localises:
        an inner layer may exceed the output tolerance by float32 drift that later layers shrink
        (a 128-unit stateful GRU over 48 carried steps: 6e-5 inside, 3e-6 at the output), and a
        check whose outputs pass is not failed for that."""
        if self.comparison is not None and not (self.weights and self.weights.identical):
            return False
        if self.trace_divergence is not None or not all(i.passed for i in self.independence):
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


@dataclass(frozen=True)
class CheckOptions:
    """How to check, whatever the input: the reference's math and precision, which Keras runs, and
    the pass rule. `semantics` defaults to the generation that saved the file; `keras=False` runs no
    Keras (no TensorFlow); `profile` (float32, float16, bfloat16, int8) defaults per side (see
    default_profile), `rules` are --require rules, `classes` asks for top-1 agreement (True: every
    output; or output names; softmax/sigmoid outputs get it anyway)."""

    semantics: str | None = None
    dtype: str = "float64"
    tolerance: Tolerance = Tolerance()  # frozen: one shared default is safe
    batch_size: int = 32
    keras: bool = True
    trust_model_code: bool = False
    profile: str | None = None
    rules: tuple[Rule, ...] = ()
    classes: bool | frozenset[str] = False

    def __post_init__(self) -> None:
        """Refuse what no check can do (check-all passes TOML values through unchecked)."""
        if self.dtype not in ("float64", "float32"):
            raise BadInputError(f"dtype {self.dtype!r}: the reference computes in float64 or float32")
        if self.profile is not None:
            profile_named(self.profile)  # raises BadInputError listing the profiles
        if self.semantics not in (None, "keras2", "keras3"):
            raise BadInputError(f"semantics {self.semantics!r}: keras2 or keras3")


def run_check(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    options: CheckOptions | None = None,
    *,
    expected: list[np.ndarray] | None = None,
    layerwise: bool = False,
    expected_trace: tuple[dict[str, np.ndarray], int] | None = None,
    exports: Sequence[Runner] = (),
    **settings: Any,
) -> CheckReport:
    """Compute `spec` with the reference and (unless keras=False) with Keras on `inputs`, and compare;
    with `expected` (outputs produced elsewhere, e.g. by a port) also compare the reference with those,
    and with `exports` (opened runners: ONNX Runtime, LiteRT) each export's outputs. `settings` are
    CheckOptions fields given one by one (`keras=False`, `tolerance=...`), over `options`.

    Float inputs are rounded to float32 first so both sides see the same numbers. The Keras side is
    the generation that saved the file (tf_keras for Keras 1/2, Keras 3 otherwise) whatever
    `semantics` says; forcing other semantics shows how far the other generation's math is.
    Raises UnsupportedError (3), BadInputError (2), KerasSideError (4).
    """
    from .runners.expected import expected_from_arrays
    from .streaming import array_stream

    inputs = [x if np.asarray(x).dtype.kind in "iu" else np.asarray(x, dtype=np.float32) for x in inputs]
    return check_stream(
        spec,
        array_stream(inputs),
        with_settings(options, settings),
        expected=expected_from_arrays(spec, expected) if expected is not None else None,
        exports=exports,
        inputs=inputs,
        layerwise=layerwise,
        expected_trace=expected_trace,
    )


def with_settings(options: CheckOptions | None, settings: dict[str, Any]) -> CheckOptions:
    """`options` (or the defaults) with `settings` applied; raises TypeError for an unknown name."""
    options = replace(options or CheckOptions(), **settings)
    if options.tolerance is None:  # accepted for backward compatibility: None meant the default
        options = replace(options, tolerance=Tolerance())
    return replace(options, rules=tuple(options.rules))


def check_stream(
    spec: ModelSpec,
    stream: Stream,
    options: CheckOptions,
    *,
    expected: Runner | None = None,
    exports: Sequence[Runner] = (),
    inputs: list[np.ndarray] | None = None,
    layerwise: bool = False,
    expected_trace: tuple[dict[str, np.ndarray], int] | None = None,
    show_progress: bool = False,
) -> CheckReport:
    """The check flow (flow.run_flow) over `stream` with Keras (unless keras=False), the expected
    outputs and the exports as runners, and the report built from its results. `inputs`, the whole
    arrays, are given for an in-memory check: outputs are then kept, and --layerwise and
    --expected-trace (which need whole arrays) can run. A layer that cannot take what a plugin computed
    is that plugin's failure (UnsupportedError naming it, see plugins.blame_plugins)."""
    from .flow import run_flow
    from .plugins import blame_plugins, expecting_shapes, plugin_notes, plugin_uses, recording

    with blame_plugins(spec):
        chosen = options.semantics or spec.semantics
        batch_size = fixed_batch_size(spec) or options.batch_size
        tolerance, dtype, profile, rules = options.tolerance, options.dtype, options.profile, options.rules
        notes = report_notes(spec, batch_size)
        check_rule_outputs(rules, spec.output_names)  # before anything runs, even when nothing will be compared
        with recording() as computed:  # the layers plugins compute, wrapped ones too (named as the reference does)
            build(spec, chosen, np.dtype(dtype))  # refuse what the reference cannot compute before any runtime loads
        loaded = None
        keras_shapes: dict[str, list[tuple[int | None, ...]]] = {}
        if options.keras:
            refuse_keras_on_dump(spec)
            loaded = _load_keras_side(spec, options, computed)
            # a plugin's outputs must have the shapes Keras computes for its layer: checked as the flow computes it
            plugged = {each.layer for each in computed} & {layer.name for layer in spec.layers}
            keras_shapes = loaded.output_shapes(sorted(plugged)) if plugged else {}
            from .keras_runner import KerasRunner

            keras_side = [KerasRunner(loaded, batch_size, bool(stateful_layers(spec)), len(spec.output_names))]
        else:
            keras_side = []
        runners: list[Runner] = [*keras_side, *([expected] if expected is not None else []), *exports]
        reduced = reduced_precision(spec)

        def judge(info: RunnerInfo, result: ComparisonResult) -> ComparisonResult:
            """`result` judged as the report judges that side: --profile judges exports and expected outputs,
            Keras is judged by the model's own precision, else the side's default profile; --require rules
            always. The flow judges its reset verdict and the runners' verdict notes by it too."""
            explicit = profile if info.kind != "keras" else None
            return apply_profile(result, explicit or default_profile(info, reduced), rules)

        with expecting_shapes(keras_shapes), recording() as ran:
            flow = run_flow(
                spec,
                stream,
                runners,
                semantics=chosen,
                dtype=dtype,
                tolerance=tolerance,
                batch_size=batch_size,
                record=inputs is not None,
                record_layers=layerwise and inputs is not None and (loaded is not None or bool(_traced(exports))),
                classes=top1_outputs(spec, rules, options.classes),
                second_pass=not stateful_layers(spec),  # a stateful model's exports should carry state, as Keras does
                show_progress=show_progress,
                judge=judge,
            )
        notes += plugin_notes(ran, installed=False)  # the report lists installed plugins itself
        judged = []
        for side, result in zip(runners, flow.comparisons, strict=True):
            verdict = judge(side.info, result)
            explicit = profile if side.info.kind != "keras" else None
            if explicit is None and verdict.profile != "float32":
                why = f"computes in {reduced} (the model's dtype policy)" if side.info.kind == "keras" else None
                why = why or "has quantized weights"
                notes.append(f"{side.info.label} {why}: judged under the {verdict.profile} profile")
            judged.append(verdict)
        results = iter(judged)
        comparison = next(results) if keras_side else None
        against_expected = replace(next(results), against="expected") if expected is not None else None
        for side in runners[len(keras_side) :]:
            notes += [f"{side.info.label}: {note}" for note in side.info.notes]
        trace_divergence = None
        if expected_trace is not None and inputs is not None:
            trace_divergence = _trace_divergence(spec, inputs, expected_trace, chosen, dtype, tolerance)
        export_layerwise: tuple[tuple[str, tuple[dict, ...]], ...] = ()
        if layerwise and inputs is not None:
            export_layerwise = tuple(
                (runner.info.label, tuple(budget_rows(spec, flow.layer_outputs, runner.layer_trace(inputs), tolerance)))
                for runner in _traced(exports)
            )
        rows = None
        if layerwise and loaded is not None and inputs is not None:
            rows = tuple(layerwise_rows(spec, flow.layer_outputs, loaded.layer_outputs(inputs, batch_size), tolerance))
        if not options.keras and against_expected is None and not exports:
            notes.append("Keras not run (--no-keras): nothing compared")
        return CheckReport(
            spec=spec,
            semantics=chosen,
            semantics_forced=options.semantics is not None,
            keras_package=loaded.package if loaded else "",
            keras_version=loaded.version if loaded else "",
            keras_backend=loaded.backend if loaded else "",
            reference_dtype=str(np.dtype(dtype)),
            input_shapes=tuple(tuple(reader.shape) for reader in stream.readers),
            weights=check_weights(spec, loaded.layer_weights()) if loaded else None,
            comparison=comparison,
            reference_outputs=tuple(flow.reference or ()),
            notes=tuple(notes),
            expected=against_expected,
            keras_outputs=tuple(flow.outputs[0] or ()) if keras_side else (),
            layerwise=rows,
            trace_divergence=trace_divergence,
            trace_compared=expected_trace is not None,
            exports=tuple(judged[len(runners) - len(exports) :]),
            sides=tuple(side.info for side in exports),
            independence=tuple(flow.independence),
            export_layerwise=export_layerwise,
            plugins=plugin_uses(computed),
        )


def _load_keras_side(spec: ModelSpec, options: CheckOptions, computed: Sequence[Computed]) -> Any:
    """The file loaded by its generation's Keras, with the plugins' Keras classes as custom objects
    (`computed`: the plugin-computed layers of the reference's build). When Keras, given those classes,
    cannot load it and a plugin computes a class they lack, the message says how to supply one."""
    from .errors import KerasSideError
    from .keras_runner import load_keras  # the only TensorFlow import, done late
    from .plugins import custom_objects_for

    custom_objects: dict[str, Any] = {}
    given: list[bool] = []  # whether Keras got as far as asking for the classes

    def objects() -> dict[str, Any]:  # called by load_keras once Keras is imported
        given.append(True)
        custom_objects.update(custom_objects_for(spec, computed))
        return custom_objects

    try:
        return load_keras(
            spec.source,
            spec.file_format,
            spec.semantics,
            [(layer.class_name, layer.config) for layer in spec.layers],
            options.trust_model_code,
            objects,
        )
    except KerasSideError as exc:
        missing = sorted({each.class_name for each in computed if each.class_name not in custom_objects} - {"Lambda"})
        if not given or not missing:
            raise
        raise KerasSideError(
            f"{exc.message}; plugins compute {', '.join(missing)} for the reference, but Keras needs the class "
            f"itself: add keras_objects = {{{', '.join(f'{c!r}: {c}' for c in missing)}}} to the plugin file "
            f"(a Keras layer class), or check with --no-keras"
        ) from exc


def _traced(exports: Sequence[Runner]) -> list[Any]:
    """The exports that give their own per-layer trace (`layer_trace`, e.g. hls4ml): --layerwise
    compares each of their layers with the reference's."""
    return [runner for runner in exports if callable(getattr(runner, "layer_trace", None))]


def _trace_divergence(
    spec: ModelSpec,
    inputs: list[np.ndarray],
    expected_trace: tuple[dict[str, np.ndarray], int],
    semantics: str,
    dtype: str,
    tolerance: Tolerance,
) -> dict | None:
    """Where a port's trace (--expected-trace) first departs from ours, or None."""
    from .trace import first_divergence, trace

    port, sample = expected_trace
    ours = trace(spec, inputs, sample=sample, semantics=semantics, dtype=np.dtype(dtype))
    if not any(k in port for k in ours):
        raise BadInputError(
            f"{spec.source}: the expected trace has none of the keys of this model's trace (e.g. {list(ours)[:3]})"
        )
    return first_divergence(ours, port, tolerance.atol, tolerance.rtol, [layer.name for layer in spec.layers])


def default_profile(side: RunnerInfo, reduced: str | None = None) -> str:
    """float32 (atol/rtol), except: an export whose weights are quantized, int8 (float16 when they are
    float16); Keras running a model whose dtype policy is mixed_float16/float16 (or bfloat16), that
    precision's profile (the reference computes the true math)."""
    if side.kind == "keras":
        return reduced or "float32"
    if not side.census.get("quantized"):
        return "float32"
    return "float16" if list(side.census.get("quantized_types") or []) == ["float16"] else "int8"


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
