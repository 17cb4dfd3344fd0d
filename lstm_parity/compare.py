"""Difference metrics between two sets of outputs and the pass rule |got - ref| <= atol + rtol*|ref|.

Nothing here renders or reads files: it turns arrays into a ComparisonResult.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

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


@dataclass(frozen=True)
class ComparisonResult:
    """`against` names the other side: "keras" or "expected"."""

    outputs: tuple[OutputComparison, ...]
    atol: float
    rtol: float
    against: str = "keras"
    rule: str = RULE

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)


class OutputAccumulator:
    """Compare one output chunk by chunk (rows of the batch in order) with bounded memory; a single
    chunk gives exactly compare_output's result. `result()` reports indices in the whole batch."""

    def __init__(self, name: str, atol: float, rtol: float):
        self.name, self.atol, self.rtol = name, atol, rtol
        self.rows = 0  # samples seen
        self.tail: tuple[int, ...] | None = None  # shape of one sample
        self.max_abs, self.ref_at, self.got_at = -1.0, 0.0, 0.0
        self.worst: tuple[int, ...] = ()
        self.max_rel = self.needed = self.sum_abs = 0.0
        self.count = self.nan_mismatches = 0
        self.ok, self.shape_mismatch = True, ""

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
            )
        if self.count == 0:
            return OutputComparison(
                self.name, shape, self.atol, self.rtol, 0.0, 0.0, 0.0, (), 0.0, 0.0, 0.0, 0, "", True
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
        )


def compare_output(name: str, reference: np.ndarray, other: np.ndarray, atol: float, rtol: float) -> OutputComparison:
    """Compare one output array of the reference with the same output from Keras (or a port)."""
    accumulator = OutputAccumulator(name, atol, rtol)
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
) -> ComparisonResult:
    """Compare each reference output with the other side's; raises ValueError if counts differ."""
    tolerance = tolerance or Tolerance()
    if len(reference) != len(other):
        raise ValueError(f"reference has {len(reference)} outputs, the other side {len(other)}")
    return ComparisonResult(
        tuple(compare_output(n, r, o, *tolerance.of(n)) for n, r, o in zip(names, reference, other, strict=True)),
        tolerance.atol,
        tolerance.rtol,
        against,
    )
