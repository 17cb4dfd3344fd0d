"""Difference metrics between two sets of outputs and the pass rule |got - ref| <= atol + rtol*|ref|.

Besides the elementwise numbers, every output gets the scale-free metrics that judge reduced-precision
exports (r = reference, o = other, sums over the finite elements of the whole output):

    cosine = sum(r*o) / sqrt(sum(r*r) * sum(o*o))
    snr_db = 10 * log10(sum(r*r) / sum((o-r)**2))
    rel_l2 = sqrt(sum((o-r)**2)) / sqrt(sum(r*r))          (so snr_db = -20 * log10(rel_l2))

plus the max |o-r| per timestep of sequence outputs and, when asked, top-1 (argmax) agreement.
The pass rules built on those live in `profiles.py`. Nothing here renders or reads files: it turns
arrays into a ComparisonResult.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace

import numpy as np

from .reference.quiet import float_quiet

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
RULE = "|other - reference| <= atol + rtol * |reference|"
NAN_RULE = "NaN on both sides at the same place counts as equal, equal infinities too; any other NaN or infinity fails"


@dataclass(frozen=True)
class Tolerance:
    """Default atol/rtol plus per-output overrides {output name: value}."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    atol_for: dict[str, float] = field(default_factory=dict)
    rtol_for: dict[str, float] = field(default_factory=dict)

    def of(self, name: str) -> tuple[float, float]:
        return self.atol_for.get(name, self.atol), self.rtol_for.get(name, self.rtol)


@dataclass(frozen=True)
class OutputComparison:
    """One output compared elementwise.

    max_rel_diff is max |got-ref|/|ref| over elements with ref != 0 (0 when there are none);
    min_atol_to_pass is the smallest atol that passes with the same rtol; worst_index is where
    |got-ref| is largest. NaN at the same place on both sides counts as equal; anywhere else it
    is a mismatch (nan_mismatches, which also counts unequal infinities) and fails.

    Scale-free metrics over the whole flattened output, from running sums over the elements finite
    on both sides (non-finite ones are left to the NaN rule): `cosine` (see `cosine_similarity`),
    `snr_db` (`snr_db`), `rel_l2` (`relative_l2`); all three are NaN when the shapes differ.
    `timestep_max_abs[t]` is max |got-ref| over every element at timestep t of an output of ndim >= 3,
    read as (batch, time, ...), with the same NaN rule as max_abs_diff (so its max is max_abs_diff);
    empty for other outputs. `top1_agreement` is the fraction of rows (every leading index, the last
    axis holding class scores) whose argmax agrees, over the `top1_rows` rows finite on both sides;
    None unless asked for (`classes`) on an output whose last axis has at least 2 entries.
    `within_tolerance` is the atol/rtol verdict with the NaN rule as measured (None on hand-built
    comparisons, where `passed` stands for it); `passed` is the verdict of the profile applied
    (`profiles.apply_profile`; the atol/rtol one until then) and `failed_rules` says why it failed.
    """

    name: str
    shape: tuple[int, ...]
    atol: float
    rtol: float
    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float
    worst_index: tuple[int, ...]
    reference_at_worst: float
    other_at_worst: float
    min_atol_to_pass: float
    nan_mismatches: int
    shape_mismatch: str
    passed: bool
    cosine: float = 1.0
    snr_db: float = math.inf
    rel_l2: float = 0.0
    timestep_max_abs: tuple[float, ...] = ()
    top1_agreement: float | None = None
    top1_rows: int = 0
    within_tolerance: bool | None = None
    failed_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComparisonResult:
    """`against` names the other side: "keras" or "expected"; `profile` the pass rule set the outputs
    were judged by ("float32": atol/rtol; see `profiles.PROFILES`) and `rule` describes it."""

    outputs: tuple[OutputComparison, ...]
    atol: float
    rtol: float
    against: str = "keras"
    rule: str = RULE
    profile: str = "float32"

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)


def cosine_similarity(sum_ro: float, sum_rr: float, sum_oo: float) -> float:
    """cos = sum(r*o) / (sqrt(sum(r*r)) * sqrt(sum(o*o))), clipped to [-1, 1] against rounding.

    1.0 when both sides are all zeros (they agree), 0.0 when only one is (no direction in common).
    """
    if sum_rr == 0.0 or sum_oo == 0.0:
        return 1.0 if sum_rr == sum_oo else 0.0
    return min(1.0, max(-1.0, sum_ro / (math.sqrt(sum_rr) * math.sqrt(sum_oo))))


def snr_db(sum_rr: float, sum_err2: float) -> float:
    """Signal-to-noise ratio in dB: 10 * log10(sum(r*r) / sum((o-r)**2)).

    +inf when the error is zero; -inf when the reference is all zeros and the other side is not
    (the same case where relative_l2 is inf); finite otherwise.
    """
    if sum_err2 == 0.0:
        return math.inf
    if sum_rr == 0.0:
        return -math.inf
    return 10.0 * math.log10(sum_rr / sum_err2)


def relative_l2(sum_rr: float, sum_err2: float) -> float:
    """||o - r||_2 / ||r||_2 = sqrt(sum((o-r)**2)) / sqrt(sum(r*r)); 0 when equal, inf when r is all
    zeros and o is not."""
    if sum_err2 == 0.0:
        return 0.0
    if sum_rr == 0.0:
        return math.inf
    return math.sqrt(sum_err2) / math.sqrt(sum_rr)


class OutputAccumulator:
    """Compare one output chunk by chunk (rows of the batch in order) with bounded memory; a single
    chunk gives exactly compare_output's result. `result()` reports indices in the whole batch.

    Memory stays bounded: running sums, plus a (time,) vector of per-timestep max |other-ref| for
    outputs of ndim >= 3. `classes=True` also counts rows whose argmax over the last axis agrees.
    """

    def __init__(self, name: str, atol: float, rtol: float, classes: bool = False):
        self.name, self.atol, self.rtol, self.classes = name, atol, rtol, classes
        self.rows = 0  # samples seen
        self.tail: tuple[int, ...] | None = None  # shape of one sample
        self.max_abs, self.ref_at, self.got_at = -1.0, 0.0, 0.0
        self.worst: tuple[int, ...] = ()
        self.max_rel = self.needed = self.sum_abs = 0.0
        self.count = self.nan_mismatches = 0
        self.ok, self.shape_mismatch = True, ""
        # sum(r*o), sum(r*r), sum(o*o), sum((o-r)**2) over elements finite on both sides
        self.sum_ro = self.sum_rr = self.sum_oo = self.sum_err2 = 0.0
        self.step_max: np.ndarray | None = None  # (time,) max |o-r| per timestep, ndim >= 3 only
        self.top1_agree = self.top1_rows = 0

    @float_quiet
    def add(self, reference: np.ndarray, other: np.ndarray) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        got = np.asarray(other, dtype=np.float64)
        offset = self.rows
        self.rows += ref.shape[0] if ref.ndim else 1
        self.tail = tuple(ref.shape[1:])
        if ref.shape != got.shape:
            self.shape_mismatch = self.shape_mismatch or f"reference {ref.shape} vs other {got.shape}"
            return
        nonfinite = ~np.isfinite(ref) | ~np.isfinite(got)
        equal_special = (np.isnan(ref) & np.isnan(got)) | (np.isinf(ref) & (ref == got))
        mismatch_special = nonfinite & ~equal_special  # NaN or an infinity on one side only, or +inf vs -inf
        with np.errstate(invalid="ignore"):
            diff = np.where(nonfinite, np.where(equal_special, 0.0, np.inf), np.abs(got - ref))  # (chunk shape)
        if diff.size == 0:
            return
        scale = np.where(nonfinite, 0.0, np.abs(ref))
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        if diff[worst] > self.max_abs:
            self.max_abs = float(diff[worst])
            self.worst = tuple(int(i) + (offset if axis == 0 else 0) for axis, i in enumerate(worst))
            self.ref_at, self.got_at = float(ref[worst]), float(got[worst])
        nonzero = scale > 0
        if np.any(nonzero):
            self.max_rel = max(self.max_rel, float(np.max(diff[nonzero] / scale[nonzero])))
        self.needed = max(self.needed, float(np.max(np.maximum(diff - self.rtol * scale, 0.0))))
        self.sum_abs += float(np.sum(diff))
        self.count += diff.size
        self.ok = self.ok and bool(np.all(diff <= self.atol + self.rtol * scale)) and not np.any(mismatch_special)
        self.nan_mismatches += int(np.sum(mismatch_special))
        self._add_sums(np.where(nonfinite, 0.0, ref), np.where(nonfinite, 0.0, got))
        if diff.ndim >= 3:
            self._add_steps(diff)
        if self.classes and ref.ndim >= 2 and ref.shape[-1] >= 2:
            self._add_top1(ref, got, nonfinite)

    def _add_sums(self, r: np.ndarray, o: np.ndarray) -> None:
        """Running sums for cosine / SNR / relative L2; r and o have their non-finite elements zeroed."""
        with np.errstate(over="ignore", invalid="ignore"):
            self.sum_ro += float(np.sum(r * o))
            self.sum_rr += float(np.sum(r * r))
            self.sum_oo += float(np.sum(o * o))
            self.sum_err2 += float(np.sum(np.square(o - r)))  # directly, not rr + oo - 2ro (cancellation)

    def _add_steps(self, diff: np.ndarray) -> None:
        """Fold a (batch, time, ...) chunk of |o-r| into the per-timestep max."""
        steps = np.max(np.moveaxis(diff, 1, 0).reshape(diff.shape[1], -1), axis=1)  # (time,)
        if self.step_max is None:
            self.step_max = steps
        else:  # chunks of one output share their time axis; pad defensively if they do not
            longer = max(len(steps), len(self.step_max))
            self.step_max = np.maximum(
                np.pad(self.step_max, (0, longer - len(self.step_max))), np.pad(steps, (0, longer - len(steps)))
            )

    def _add_top1(self, ref: np.ndarray, got: np.ndarray, nonfinite: np.ndarray) -> None:
        """Count rows (all leading indices) whose argmax over the last axis agrees; rows holding a
        non-finite value on either side are left out (the NaN rule judges them)."""
        classes = ref.shape[-1]
        finite_rows = ~np.any(nonfinite.reshape(-1, classes), axis=1)  # (rows,)
        ref_rows, got_rows = ref.reshape(-1, classes)[finite_rows], got.reshape(-1, classes)[finite_rows]
        self.top1_agree += int(np.sum(np.argmax(ref_rows, axis=1) == np.argmax(got_rows, axis=1)))
        self.top1_rows += int(ref_rows.shape[0])

    def _top1(self) -> float | None:
        if not self.classes or not self.tail or self.tail[-1] < 2:
            return None
        return self.top1_agree / self.top1_rows if self.top1_rows else 1.0

    def result(self) -> OutputComparison:
        shape = (self.rows, *self.tail) if self.tail is not None else ()
        if self.shape_mismatch:
            return OutputComparison(
                self.name,
                shape,
                self.atol,
                self.rtol,
                float("inf"),
                float("inf"),
                float("inf"),
                (),
                float("nan"),
                float("nan"),
                float("inf"),
                0,
                self.shape_mismatch,
                False,
                cosine=math.nan,
                snr_db=math.nan,
                rel_l2=math.nan,
                within_tolerance=False,
            )
        if self.count == 0:
            return OutputComparison(
                self.name,
                shape,
                self.atol,
                self.rtol,
                0.0,
                0.0,
                0.0,
                (),
                0.0,
                0.0,
                0.0,
                0,
                "",
                True,
                top1_agreement=self._top1(),
                within_tolerance=True,
            )
        return OutputComparison(
            name=self.name,
            shape=shape,
            atol=self.atol,
            rtol=self.rtol,
            max_abs_diff=self.max_abs,
            max_rel_diff=self.max_rel,
            mean_abs_diff=self.sum_abs / self.count,
            worst_index=self.worst,
            reference_at_worst=self.ref_at,
            other_at_worst=self.got_at,
            min_atol_to_pass=self.needed,
            nan_mismatches=self.nan_mismatches,
            shape_mismatch="",
            passed=self.ok,
            cosine=cosine_similarity(self.sum_ro, self.sum_rr, self.sum_oo),
            snr_db=snr_db(self.sum_rr, self.sum_err2),
            rel_l2=relative_l2(self.sum_rr, self.sum_err2),
            timestep_max_abs=() if self.step_max is None else tuple(float(v) for v in self.step_max),
            top1_agreement=self._top1(),
            top1_rows=self.top1_rows,
            within_tolerance=self.ok,
        )


def wants_classes(classes: bool | Collection[str], name: str) -> bool:
    """Whether top-1 agreement is tracked for output `name`: `classes` is a flag for every output
    or the set of output names that hold class scores."""
    return classes if isinstance(classes, bool) else name in classes


def compare_output(
    name: str, reference: np.ndarray, other: np.ndarray, atol: float, rtol: float, classes: bool = False
) -> OutputComparison:
    """Compare one output array of the reference with the same output from Keras (or a port);
    `classes=True` adds top-1 agreement over the last axis."""
    accumulator = OutputAccumulator(name, atol, rtol, classes)
    accumulator.add(reference, other)
    result = accumulator.result()
    ref_shape = tuple(np.shape(reference))
    return result if result.shape == ref_shape else replace(result, shape=ref_shape)


def compare_outputs(
    names: list[str],
    reference: list[np.ndarray],
    other: list[np.ndarray],
    tolerance: Tolerance | None = None,
    against: str = "keras",
    classes: bool | Collection[str] = False,
) -> ComparisonResult:
    """Compare each reference output with the other side's; raises ValueError if counts differ.

    `classes`: True for top-1 agreement on every output, or the names of the outputs whose last axis
    holds class scores (see `profiles.top1_outputs`).
    """
    tolerance = tolerance or Tolerance()
    if len(reference) != len(other):
        raise ValueError(f"reference has {len(reference)} outputs, the other side {len(other)}")
    return ComparisonResult(
        tuple(
            compare_output(n, r, o, *tolerance.of(n), classes=wants_classes(classes, n))
            for n, r, o in zip(names, reference, other, strict=True)
        ),
        tolerance.atol,
        tolerance.rtol,
        against,
    )
