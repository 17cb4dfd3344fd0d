"""Plain-text rendering of a CheckReport for a CI log or a pipe (no colour, fixed columns)."""

from __future__ import annotations

import numpy as np

from ..check import CheckReport
from ..compare import NAN_RULE, ComparisonResult, OutputComparison


def num(value: float) -> str:
    """A difference or tolerance as every view prints it: 3 significant digits; nan/inf spelled out."""
    return f"{value:.3g}" if np.isfinite(value) else str(value)


def semantics_line(report: CheckReport) -> str:
    why = "forced by --semantics" if report.semantics_forced else "the generation that saved the file"
    return f"NumPy {report.reference_dtype}, {report.semantics} semantics ({why})"


HEADER = (
    "output",
    "vs",
    "shape",
    "max abs",
    "max rel",
    "mean abs",
    "worst at",
    "other",
    "reference",
    "atol",
    "min atol",
    "result",
)
LAYERWISE_TITLE = "layerwise (reference vs Keras, each layer's output):"


def output_row(comparison: ComparisonResult, out: OutputComparison) -> tuple[str, ...]:
    if out.shape_mismatch:
        return (
            out.name,
            comparison.against,
            str(out.shape),
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            f"{out.atol:g}",
            "-",
            "FAIL (shape)",
        )
    return (
        out.name,
        comparison.against,
        str(out.shape),
        num(out.max_abs_diff),
        num(out.max_rel_diff),
        num(out.mean_abs_diff),
        str(out.worst_index),
        f"{out.other_at_worst:.7g}",
        f"{out.reference_at_worst:.7g}",
        f"{out.atol:g}",
        num(out.min_atol_to_pass),
        "PASS" if out.passed else "FAIL",
    )


def header_lines(report: CheckReport) -> list[tuple[str, str]]:
    """(label, text) pairs describing provenance, weights and rule; shared by the text and rich views."""
    spec = report.spec
    keras_side = (
        f"{report.keras_package} {report.keras_version}, model.predict (compile=False)"
        if report.keras_package
        else "not run (--no-keras)"
    )
    pairs = [
        (
            "saved by",
            f"Keras {spec.keras_version or '(unknown)'} ({spec.file_format}, {spec.model_class}, "
            f"{len(spec.layers)} layers)",
        ),
        ("keras side", keras_side),
        ("reference", semantics_line(report)),
        ("input", ", ".join(str(shape) for shape in report.input_shapes)),
    ]
    pairs += [("note", note) for note in report.notes]
    weights = report.weights
    if weights is not None:
        pairs.append(
            (
                "weights",
                f"bit-identical to model.get_weights(): {weights.arrays} arrays, {weights.values} values"
                if weights.identical
                else "DIFFER from model.get_weights(): " + "; ".join(weights.mismatches[:5]),
            )
        )
    if report.comparisons:
        first = report.comparisons[0]
        pairs.append(
            (
                "rule",
                f"{first.rule}  (atol={first.atol:g}, rtol={first.rtol:g}; per-output overrides in the atol column)",
            )
        )
        pairs.append(("nan", NAN_RULE))
    return pairs


def output_notes(out: OutputComparison) -> list[str]:
    """What no table column holds about one output: a shape mismatch, NaN on one side only."""
    notes = []
    if out.shape_mismatch:
        notes.append(f"shapes differ: {out.shape_mismatch}")
    if out.nan_mismatches:
        notes.append(f"{out.nan_mismatches} NaN values on one side only")
    return notes


def outputs_text(report: CheckReport) -> str:
    """When nothing was compared: each output's name and shape, and whether NaN/Inf came out."""
    shapes = ", ".join(
        f"{name} {out.shape}" for name, out in zip(report.spec.output_names, report.reference_outputs, strict=True)
    )
    finite = all(np.all(np.isfinite(out)) for out in report.reference_outputs)
    return shapes + ("" if finite else " (NaN/Inf present)")


def verdict(report: CheckReport) -> str:
    """One line: PASS/FAIL/RAN with the counts."""
    if not report.comparisons:
        return "RAN: reference computed; nothing compared"
    outputs = [o for c in report.comparisons for o in c.outputs]
    detail = f"{sum(o.passed for o in outputs)}/{len(outputs)} comparisons within tolerance"
    if report.weights is not None and not report.weights.identical:
        detail += "; weights read differ from Keras'"
    if report.first_layer_divergence is not None and not report.passed:
        detail += f"; first diverging layer {report.first_layer_divergence['layer']}"
    if report.trace_divergence is not None:
        d = report.trace_divergence
        detail += f"; trace departs at layer {d['layer']} gate {d['gate']}"
    return f"{'PASS' if report.passed else 'FAIL'}: {detail}"


def render_check(report: CheckReport) -> str:
    """The check report: provenance, weight verification, per-output numbers, verdict."""
    spec = report.spec
    lines = [f"lstm-parity check {spec.source}"]
    lines += [f"  {label:<11} {text}" for label, text in header_lines(report)]
    if not report.comparisons:
        lines.append(f"  outputs     {outputs_text(report)}")
    else:
        rows = [HEADER] + [output_row(c, o) for c in report.comparisons for o in c.outputs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        lines.append("")
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines += [
            f"  {out.name} vs {comparison.against}: {note}"
            for comparison in report.comparisons
            for out in comparison.outputs
            for note in output_notes(out)
        ]
    lines += layer_lines(report)
    lines += ["", verdict(report)]
    return "\n".join(lines) + "\n"


LAYERWISE_HEADER = ("layer", "shape", "max abs", "result", "first timestep")


def layerwise_cells(row: dict) -> tuple[str, ...]:
    """One --layerwise row as LAYERWISE_HEADER's cells, formatted once for the text and rich views."""
    return (
        f"{row['layer']}[{row['output']}]",
        str(tuple(row["shape"])),
        num(row["max_abs_diff"]),
        "ok" if row["passed"] else "EXCEEDS",
        "-" if row["first_timestep"] is None else str(row["first_timestep"]),
    )


def first_divergence_text(report: CheckReport) -> str:
    """The --layerwise conclusion: the first layer whose output exceeds the tolerance, or that none does."""
    first = report.first_layer_divergence
    if not first:
        return "every layer within tolerance"
    text = (
        f"first divergence: layer {first['layer']} output {first['output']}"
        + (f", timestep {first['first_timestep']}" if first["first_timestep"] is not None else "")
        + f": max abs diff {num(first['max_abs_diff'])}"
    )
    if report.passed:  # the outputs decide; an inner layer's float32 drift is shown, not failed
        text += " (above the output tolerance inside the model; the outputs are within it, so this is not a failure)"
    return text


def trace_text(report: CheckReport) -> str:
    """The --expected-trace conclusion: the first layer, timestep and gate a port's trace departs at."""
    d = report.trace_divergence
    if not d:
        return "expected trace: every layer, timestep and gate within tolerance"
    return (
        f"expected trace: layer {d['layer']}, "
        + (f"timestep {d['timestep']}, " if d["timestep"] is not None else "")
        + f"gate {d['gate']}: max abs diff {num(d['max_abs_diff'])} (first divergence)"
    )


def layer_lines(report: CheckReport) -> list[str]:
    """Per-layer localisation (--layerwise) and the first gate a port's trace departs at (--expected-trace)."""
    lines = []
    if report.layerwise is not None:
        lines.append("")
        lines.append("  " + LAYERWISE_TITLE)
        for row in report.layerwise:
            layer, shape, max_abs, result, first_timestep = layerwise_cells(row)
            where = f", first timestep {first_timestep}" if row["first_timestep"] is not None else ""
            lines.append(f"    {layer} {shape}: max abs {max_abs} {result}{where}")
        lines.append("  " + first_divergence_text(report))
    if report.trace_compared:
        lines.append("")
        lines.append("  " + trace_text(report))
    return lines
