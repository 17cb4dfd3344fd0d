"""Plain-text rendering of a CheckReport for a terminal or a CI log."""
from __future__ import annotations

import numpy as np

from ..check import CheckReport


def _num(value: float) -> str:
    return f"{value:.3g}" if value == value and abs(value) not in (float("inf"),) else str(value)


def _semantics_line(report: CheckReport) -> str:
    why = "forced by --semantics" if report.semantics_forced else "the generation that saved the file"
    return f"NumPy {report.reference_dtype}, {report.semantics} semantics ({why})"


def render_check(report: CheckReport) -> str:
    """The check report: provenance, weight verification, per-output numbers, verdict."""
    spec = report.spec
    weights = report.weights
    keras_side = (f"{report.keras_package} {report.keras_version}, model.predict (compile=False)"
                  if report.keras_package else "not run (--no-keras)")
    lines = [
        f"lstm-parity check {spec.source}",
        f"  saved by    Keras {spec.keras_version or '(unknown)'} ({spec.file_format}, {spec.model_class}, "
        f"{len(spec.layers)} layers)",
        f"  keras side  {keras_side}",
        f"  reference   {_semantics_line(report)}",
        f"  input       " + ", ".join(str(shape) for shape in report.input_shapes),
    ]
    lines += [f"  note        {note}" for note in report.notes]
    if weights is None or report.comparison is None:
        shapes = ", ".join(f"{name} {out.shape}" for name, out in zip(spec.output_names, report.reference_outputs))
        finite = all(np.all(np.isfinite(out)) for out in report.reference_outputs)
        lines += [f"  outputs     {shapes}" + ("" if finite else " (NaN/Inf present)"), "",
                  "RAN: reference computed; nothing compared"]
        return "\n".join(lines) + "\n"
    if weights.identical:
        lines.append(f"  weights     bit-identical to model.get_weights(): {weights.arrays} arrays, "
                     f"{weights.values} values")
    else:
        lines.append(f"  weights     DIFFER from model.get_weights(): " + "; ".join(weights.mismatches[:5]))
    comparison = report.comparison
    lines.append(f"  rule        {comparison.rule}  (atol={comparison.atol:g}, rtol={comparison.rtol:g})")
    header = ("output", "shape", "max abs", "max rel", "mean abs", "worst at", "keras", "reference",
              "min atol", "result")
    rows = [header]
    for out in comparison.outputs:
        if out.shape_mismatch:
            rows.append((out.name, str(out.shape), "-", "-", "-", "-", "-", "-", "-", "FAIL (shape)"))
            continue
        rows.append((out.name, str(out.shape), _num(out.max_abs_diff), _num(out.max_rel_diff),
                     _num(out.mean_abs_diff), str(out.worst_index), f"{out.other_at_worst:.7g}",
                     f"{out.reference_at_worst:.7g}", _num(out.min_atol_to_pass),
                     "PASS" if out.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines.append("")
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for out in comparison.outputs:
        if out.shape_mismatch:
            lines.append(f"  {out.name}: shapes differ: {out.shape_mismatch}")
        if out.nan_mismatches:
            lines.append(f"  {out.name}: {out.nan_mismatches} NaN values on one side only")
    passed = sum(o.passed for o in comparison.outputs)
    verdict = "PASS" if report.passed else "FAIL"
    detail = f"{passed}/{len(comparison.outputs)} outputs within tolerance"
    if not weights.identical:
        detail += "; weights read differ from Keras'"
    lines += ["", f"{verdict}: {detail}"]
    return "\n".join(lines) + "\n"
