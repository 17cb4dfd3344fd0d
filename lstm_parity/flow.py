"""The one check flow: inputs in chunks (an array in memory is one chunk) -> the reference -> every
runner (Keras, an export's runtime, a file of expected outputs) -> running comparisons -> results.

`check` on an array, `check` on a file bigger than memory and `check --against` all go through
`run_flow`; what differs is only where the chunks come from and which runners take part.

Exports are also run a second time: the first chunk again, its rows in reverse order, through the
same session or interpreter with no reset in between. An export whose outputs for the same input
change from one invocation to the next keeps state it should not (LiteRT's fused LSTM keeps its
states as variables), unless the Keras model is itself stateful.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from .compare import ComparisonResult, OutputAccumulator, Tolerance
from .reference.forward import predict_batches
from .reference.quiet import float_quiet
from .runners.base import Runner
from .spec import ModelSpec
from .streaming import Stream, progress

FILE_SIDES = ("keras", "expected")  # sides that are not an export's runtime: no second pass
LEAK_HINTS = {
    "litert": "the export keeps LSTM states as variables; call interpreter.reset_all_variables() before "
    "each invoke, or export unrolled",
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
    reference's, and each runner's), and the second-pass results of the exports."""

    comparisons: list[ComparisonResult]
    reference: list[np.ndarray] | None = None
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
    classes: Collection[str] = (),
    second_pass: bool = True,
    show_progress: bool = False,
) -> FlowResult:
    """Compare the reference with every runner over `stream`, chunk after chunk.

    Stateful layers carry their states from chunk to chunk (chunks are whole batches). With
    `record`, the whole outputs are kept (for --save-outputs and --layerwise; an array check).
    Outputs named in `classes` also track top-1 agreement over their last axis. `second_pass` runs each
    export's independence check (off for a stateful model, whose exports should carry state).
    Raises what the runners raise (KerasSideError for a runtime failure), BadInputError for bad input.
    """
    tolerance = tolerance or Tolerance()
    names = spec.output_names
    sides = [_Side(runner, names, tolerance, record, classes) for runner in runners]
    reference_chunks: list[list[np.ndarray]] = []
    first_inputs: list[np.ndarray] | None = None
    states: dict = {}
    with progress(stream.total, stream.rows, "check", show_progress) as advance:
        for start, stop, inputs in stream.chunks():
            reference = predict_batches(
                spec, inputs, semantics=semantics, dtype=np.dtype(dtype), batch_size=batch_size, states=states
            )
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
                    side.first, first_inputs = theirs, inputs
            advance(stop - start)
    independence = [
        _second_pass(side, first_inputs, names, tolerance)
        for side in sides
        if side.first is not None and first_inputs is not None
    ]
    return FlowResult(
        comparisons=[side.result(tolerance) for side in sides],
        reference=_joined(reference_chunks) if record else None,
        outputs=[_joined(side.chunks) if side.chunks is not None else None for side in sides],
        independence=independence,
    )


def _second_pass_applies(runner: Runner) -> bool:
    return runner.info.kind not in FILE_SIDES and not runner.info.stateful_model


@float_quiet
def _second_pass(side: _Side, inputs: list[np.ndarray], names: list[str], tolerance: Tolerance) -> Independence:
    """Run the first chunk again, rows reversed (other batches, other invocation order), and compare
    every sample's outputs with its first-pass outputs under the check's own tolerance."""
    rows = inputs[0].shape[0]
    again = side.runner.predict([x[::-1] for x in inputs], 0, rows)
    worst, passed = 0.0, True
    for name, first, second in zip(names, side.first or [], again, strict=True):
        second = np.asarray(second)[::-1]  # back to the first pass's row order
        atol, rtol = tolerance.of(name)
        first64, second64 = np.asarray(first, dtype=np.float64), second.astype(np.float64)
        same_special = (np.isnan(first64) & np.isnan(second64)) | (first64 == second64)
        with np.errstate(invalid="ignore"):
            diff = np.where(same_special, 0.0, np.abs(second64 - first64))  # (rows, ...)
        diff = np.where(np.isnan(diff), np.inf, diff)
        if diff.size:
            worst = max(worst, float(diff.max()))
            passed = passed and bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(first64))))
    label = side.runner.info.label
    message = ""
    if not passed:
        hint = LEAK_HINTS.get(side.runner.info.kind, DEFAULT_LEAK_HINT)
        message = (
            f"state carried between invocations: the same input differs by {worst:.2g} on the second pass ({hint})"
        )
    return Independence(label, rows, worst, passed, message)


def _joined(chunks: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-chunk lists of arrays -> whole arrays (one chunk is returned as it is)."""
    if len(chunks) == 1:
        return list(chunks[0])
    return [np.concatenate(parts, axis=0) for parts in zip(*chunks, strict=True)]
