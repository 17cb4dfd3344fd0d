"""The one check flow: inputs in chunks (an array in memory is one chunk) -> the reference -> every
runner (Keras, an export's runtime, a file of expected outputs) -> running comparisons -> results.

`check` on an array, `check` on a file bigger than memory and `check --against` all go through
`run_flow`; what differs is only where the chunks come from and which runners take part.

Exports are also run a second time: the first chunk again, its rows in reverse order, through the
same session or interpreter with no reset in between. An export whose outputs for the same input
change from one invocation to the next keeps state it should not (LiteRT's fused LSTM keeps its
states as variables), unless the Keras model is itself stateful. When the runtime can reset its state
(`reset_call`, `predict_reset`), the first chunk is run once more with a reset before every invocation
and judged as that side is judged, to say whether a reset would make it pass.

`judge` (from check: the profile and --require rules each side is judged by) is how the flow's own
verdicts (that reset verdict, and `runner.explain`, the notes a runner gives once it knows whether it
passed) agree with the report's; without it they use the plain atol/rtol rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from .compare import ComparisonResult, OutputAccumulator, Tolerance
from .errors import LstmParityError
from .reference.forward import forward_batches, join_batches
from .reference.quiet import float_quiet
from .runners.base import Runner, RunnerInfo
from .spec import ModelSpec
from .streaming import Stream, progress

Judge = Callable[[RunnerInfo, ComparisonResult], ComparisonResult]  # a side's result as the report judges it

FILE_SIDES = ("keras", "expected")  # sides that are not an export's runtime: no second pass
LEAK_HINTS = {
    "litert": "the export keeps LSTM states as variables; call interpreter.reset_all_variables() before "
    "each invoke, or export unrolled",
    "tflm": "the export keeps LSTM states as variables; call the interpreter's reset() before each invoke, "
    "or export unrolled with a fixed batch of 1",
}
DEFAULT_LEAK_HINT = "the runtime keeps state from one run to the next"


@dataclass(frozen=True)
class Independence:
    """The second pass of one export: `rows` of the first chunk again in reverse order, same session,
    no reset. `max_diff` is the largest |second - first| over every output element."""

    label: str
    rows: int
    max_diff: float
    passed: bool
    message: str = ""


@dataclass
class FlowResult:
    """One ComparisonResult per runner (in runner order), the whole outputs when recorded (the
    reference's, and each runner's), every layer's reference outputs when asked for (--layerwise),
    and the second-pass results of the exports."""

    comparisons: list[ComparisonResult]
    reference: list[np.ndarray] | None = None
    layer_outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    outputs: list[list[np.ndarray] | None] = field(default_factory=list)
    independence: list[Independence] = field(default_factory=list)


class _Side:
    """One runner's accumulators (one per output) and, when recording, its output chunks."""

    def __init__(self, runner: Runner, names: list[str], tolerance: Tolerance, record: bool, classes: Collection[str]):
        self.runner = runner
        self.accumulators = [OutputAccumulator(n, *tolerance.of(n), classes=n in classes) for n in names]
        self.chunks: list[list[np.ndarray]] | None = [] if record else None
        self.skip = [False] * len(names)  # outputs whose whole shapes already disagree
        self.first: list[np.ndarray] | None = None  # first chunk's outputs, for the second pass

    def check_whole_shapes(self, reference: list[np.ndarray], total: int) -> None:
        """A file's outputs must have the reference's shape over the whole input, not just per chunk."""
        shapes = getattr(self.runner, "shapes", None)  # only a file of outputs knows its whole shapes
        if shapes is None:
            return
        for index, (acc, ours, shape) in enumerate(zip(self.accumulators, reference, shapes, strict=True)):
            want = (total, *ours.shape[1:])
            if tuple(shape) != want:
                acc.shape_mismatch = f"reference {want} vs other {tuple(shape)}"
                acc.rows, acc.tail = total, tuple(ours.shape[1:])  # report the reference's shape
                self.skip[index] = True

    @float_quiet
    def add(self, reference: list[np.ndarray], theirs: list[np.ndarray]) -> None:
        for acc, ours, other, skip in zip(self.accumulators, reference, theirs, self.skip, strict=True):
            if not skip:
                acc.add(ours, other)
        if self.chunks is not None:
            self.chunks.append(theirs)

    def result(self, tolerance: Tolerance) -> ComparisonResult:
        return ComparisonResult(
            tuple(acc.result() for acc in self.accumulators), tolerance.atol, tolerance.rtol, self.runner.info.label
        )


def run_flow(
    spec: ModelSpec,
    stream: Stream,
    runners: Sequence[Runner],
    *,
    semantics: str | None = None,
    dtype: str = "float64",
    tolerance: Tolerance | None = None,
    batch_size: int = 32,
    record: bool = False,
    record_layers: bool = False,
    classes: Collection[str] = (),
    second_pass: bool = True,
    show_progress: bool = False,
    judge: Judge | None = None,
) -> FlowResult:
    """Compare the reference with every runner over `stream`, chunk after chunk.

    Stateful layers carry their states from chunk to chunk (chunks are whole batches). With
    `record`, the whole outputs are kept (for --save-outputs; an array check); with `record_layers`,
    every layer's reference outputs too, from the same computation (--layerwise).
    Outputs named in `classes` also track top-1 agreement over their last axis. `second_pass` runs each
    export's independence check (off for a stateful model, whose exports should carry state). `judge`
    judges a side's result as the report will (see the module); each runner with `explain(result)` is
    given its judged result at the end.
    Raises what the runners raise (KerasSideError for a runtime failure), BadInputError for bad input.
    """
    tolerance = tolerance or Tolerance()
    names = spec.output_names
    sides = [_Side(runner, names, tolerance, record, classes) for runner in runners]
    reference_chunks: list[list[np.ndarray]] = []
    layer_chunks: list[dict[str, list[np.ndarray]]] = []
    first_inputs: list[np.ndarray] | None = None
    first_reference: list[np.ndarray] = []  # the reference of the first chunk, for the second pass' reset run
    states: dict = {}
    with progress(stream.total, stream.rows, "check", show_progress) as advance:
        for start, stop, inputs in stream.chunks():
            computed = forward_batches(
                spec,
                inputs,
                semantics=semantics,
                dtype=np.dtype(dtype),
                batch_size=batch_size,
                states=states,
                record=record_layers,
            )
            reference = computed.outputs
            if record_layers:
                layer_chunks.append(computed.layer_outputs)
            if record:
                reference_chunks.append(reference)
            for side in sides:
                if start == 0:
                    side.check_whole_shapes(reference, stream.total)
                if all(side.skip):  # nothing to compare: never read rows a mismatched file lacks
                    continue
                theirs = side.runner.predict(inputs, start, stop)
                side.add(reference, theirs)
                if start == 0 and second_pass and _second_pass_applies(side.runner):
                    side.first, first_inputs, first_reference = theirs, inputs, reference
            advance(stop - start)
    verdict = _Verdict(names, tolerance, classes, judge)
    independence = [
        _second_pass(side, first_inputs, first_reference, verdict)
        for side in sides
        if side.first is not None and first_inputs is not None
    ]
    comparisons = [side.result(tolerance) for side in sides]
    for side, result in zip(sides, comparisons, strict=True):
        explain = getattr(side.runner, "explain", None)
        if callable(explain):
            explain(verdict.judged(side.runner.info, result))
    return FlowResult(
        comparisons=comparisons,
        reference=join_batches(reference_chunks) if record else None,
        layer_outputs={name: join_batches([chunk[name] for chunk in layer_chunks]) for name in layer_chunks[0]}
        if layer_chunks
        else {},
        outputs=[join_batches(side.chunks) if side.chunks is not None else None for side in sides],
        independence=independence,
    )


def _second_pass_applies(runner: Runner) -> bool:
    return runner.info.kind not in FILE_SIDES


@dataclass(frozen=True)
class _Verdict:
    """How the flow judges outputs it compares after the main pass: the check's tolerance, NaN rule and
    top-1 outputs, then `judge` (the side's profile and rules) when given."""

    names: list[str]
    tolerance: Tolerance
    classes: Collection[str]
    judge: Judge | None

    def compare(self, label: str, ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> ComparisonResult:
        """`theirs` against `ours`, output by output, under the tolerance alone (no profile yet)."""
        results = []
        for name, a, b in zip(self.names, ours, theirs, strict=True):
            accumulator = OutputAccumulator(name, *self.tolerance.of(name), classes=name in self.classes)
            accumulator.add(a, np.asarray(b))
            results.append(accumulator.result())
        return ComparisonResult(tuple(results), self.tolerance.atol, self.tolerance.rtol, label)

    def judged(self, info: RunnerInfo, result: ComparisonResult) -> ComparisonResult:
        return self.judge(info, result) if self.judge is not None else result


def _second_pass(side: _Side, inputs: list[np.ndarray], reference: list[np.ndarray], verdict: _Verdict) -> Independence:
    """Run the first chunk again, rows reversed (other batches, other invocation order), and compare
    every sample's outputs with its first-pass outputs under the check's own tolerance and NaN rule.
    When that fails and the runtime can reset its state, say whether a reset before each invocation
    would make the export pass (the first chunk run that way, compared with `reference`)."""
    rows = inputs[0].shape[0]
    again = side.runner.predict([x[::-1] for x in inputs], 0, rows)
    results = []
    for name, first, second in zip(verdict.names, side.first or [], again, strict=True):
        accumulator = OutputAccumulator(name, *verdict.tolerance.of(name))
        accumulator.add(first, np.asarray(second)[::-1])  # back to the first pass's row order
        results.append(accumulator.result())
    worst = max((r.max_abs_diff for r in results), default=0.0)
    message = ""
    if not all(r.passed for r in results):
        hint = LEAK_HINTS.get(side.runner.info.kind, DEFAULT_LEAK_HINT)
        message = (
            f"state carried between invocations: the same input differs by {worst:.2g} on the second pass ({hint})"
        )
        if callable(getattr(side.runner, "reset", None)) and callable(getattr(side.runner, "predict_reset", None)):
            message += "; " + _reset_verdict(side.runner, inputs, reference, verdict)
    return Independence(side.runner.info.label, rows, worst, not message, message)


def _reset_verdict(runner: Runner, inputs: list[np.ndarray], reference: list[np.ndarray], verdict: _Verdict) -> str:
    """Whether the first chunk, run with the runtime's state reset before each invocation, passes as this
    side is judged: "with the interpreter's reset() before each invocation it passes (max abs diff 8.3e-08
    to the reference)", "... it still fails under the float16 profile (...)", or why it could not be tried."""
    call = getattr(runner, "reset_call", "") or "a reset"
    rows = inputs[0].shape[0]
    try:
        outputs = runner.predict_reset(inputs, 0, rows)  # type: ignore[attr-defined]  # checked by the caller
    except LstmParityError as exc:
        return f"{call} before each invocation not possible: {exc.message}"
    judged = verdict.judged(runner.info, verdict.compare(runner.info.label, reference, outputs))
    worst = max((out.max_abs_diff for out in judged.outputs), default=0.0)
    outcome = "passes" if judged.passed else "still fails"
    under = f" under the {judged.profile} profile" if judged.profile != "float32" else ""
    return f"with {call} before each invocation it {outcome}{under} (max abs diff {worst:.2g} to the reference)"
