"""Difference metrics between two sets of outputs and the pass rule |got - ref| <= atol + rtol*|ref|.

Nothing here renders or reads files: it turns arrays into a ComparisonResult.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
RULE = "|other - reference| <= atol + rtol * |reference|"
NAN_RULE = ("NaN on both sides at the same place counts as equal, equal infinities too; "
            "any other NaN or infinity fails")


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


def compare_output(name: str, reference: np.ndarray, other: np.ndarray, atol: float, rtol: float) -> OutputComparison:
    """Compare one output array of the reference with the same output from Keras (or a port)."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64)
    if ref.shape != got.shape:
        return OutputComparison(name, tuple(ref.shape), atol, rtol, float("inf"), float("inf"), float("inf"), (),
                                float("nan"), float("nan"), float("inf"), 0,
                                f"reference {ref.shape} vs other {got.shape}", False)
    nonfinite = ~np.isfinite(ref) | ~np.isfinite(got)
    equal_special = (np.isnan(ref) & np.isnan(got)) | (np.isinf(ref) & (ref == got))
    mismatch_special = nonfinite & ~equal_special  # NaN or an infinity on one side only, or +inf vs -inf
    with np.errstate(invalid="ignore"):
        diff = np.where(nonfinite, np.where(equal_special, 0.0, np.inf), np.abs(got - ref))  # (output shape)
    scale = np.where(nonfinite, 0.0, np.abs(ref))
    if diff.size == 0:
        return OutputComparison(name, tuple(ref.shape), atol, rtol, 0.0, 0.0, 0.0, (), 0.0, 0.0, 0.0, 0, "", True)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    nonzero = scale > 0
    rel = float(np.max(diff[nonzero] / scale[nonzero])) if np.any(nonzero) else 0.0
    needed = float(np.max(np.maximum(diff - rtol * scale, 0.0)))
    passed = bool(np.all(diff <= atol + rtol * scale)) and not np.any(mismatch_special)
    return OutputComparison(
        name=name, shape=tuple(ref.shape), atol=atol, rtol=rtol, max_abs_diff=float(diff[worst]), max_rel_diff=rel,
        mean_abs_diff=float(np.mean(diff)), worst_index=tuple(int(i) for i in worst),
        reference_at_worst=float(ref[worst]), other_at_worst=float(got[worst]), min_atol_to_pass=needed,
        nan_mismatches=int(np.sum(mismatch_special)), shape_mismatch="", passed=passed)


def compare_outputs(names: list[str], reference: list[np.ndarray], other: list[np.ndarray],
                    tolerance: Tolerance | None = None, against: str = "keras") -> ComparisonResult:
    """Compare each reference output with the other side's; raises ValueError if counts differ."""
    tolerance = tolerance or Tolerance()
    if len(reference) != len(other):
        raise ValueError(f"reference has {len(reference)} outputs, the other side {len(other)}")
    return ComparisonResult(
        tuple(compare_output(n, r, o, *tolerance.of(n)) for n, r, o in zip(names, reference, other)),
        tolerance.atol, tolerance.rtol, against)
