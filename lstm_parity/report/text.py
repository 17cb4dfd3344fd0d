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
        f"{report.keras_package} {report.keras_version} on {report.keras_backend or 'tensorflow'}, "
        "model.predict (compile=False)"
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
    pairs += plugin_pairs(report)
    pairs += export_pairs(report)
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
        rules = {c.rule for c in report.comparisons}
        if len(rules) == 1:
            pairs.append(("rule", _rule_text(report.comparisons[0])))
        else:  # a quantized export, or Keras on a float16 model, judged under another profile
            pairs += [("rule", f"vs {c.against}: {_rule_text(c)}") for c in report.comparisons]
        pairs.append(("nan", NAN_RULE))
    return pairs


def _rule_text(comparison: ComparisonResult) -> str:
    """The pass rule of one comparison; the tolerances where the elementwise rule applies."""
    if comparison.profile != "float32":
        return comparison.rule
    return (
        f"{comparison.rule}  (atol={comparison.atol:g}, rtol={comparison.rtol:g}; "
        "per-output overrides in the atol column)"
    )


def output_notes(out: OutputComparison) -> list[str]:
    """What no table column holds about one output: a shape mismatch, NaN on one side only, the
    whole-output metrics, where along the sequence the error is largest, and failed profile rules."""
    notes = []
    if out.shape_mismatch:
        notes.append(f"shapes differ: {out.shape_mismatch}")
        return notes
    if out.nan_mismatches:
        notes.append(f"{out.nan_mismatches} NaN values on one side only")
    metrics = f"cosine {out.cosine:.6g}, SNR {num(out.snr_db)} dB, relative L2 {num(out.rel_l2)}"
    if out.top1_agreement is not None:
        metrics += f", top-1 agreement {100 * out.top1_agreement:.2f}% of {out.top1_rows} rows"
    notes.append(metrics)
    if len(out.timestep_max_abs) > 1:
        steps = np.asarray(out.timestep_max_abs)  # (time,)
        worst = int(np.argmax(np.where(np.isnan(steps), np.inf, steps)))
        notes.append(
            f"max abs by timestep: first {num(steps[0])}, last {num(steps[-1])}, largest {num(steps[worst])} "
            f"at timestep {worst} of {len(steps)}"
        )
    notes += [f"FAILED {rule}" for rule in out.failed_rules]
    return notes


def outputs_text(report: CheckReport) -> str:
    """When nothing was compared: each output's name and shape, and whether NaN/Inf came out."""
    shapes = ", ".join(
        f"{name} {out.shape}" for name, out in zip(report.spec.output_names, report.reference_outputs, strict=True)
    )
    finite = all(np.all(np.isfinite(out)) for out in report.reference_outputs)
    return shapes + ("" if finite else " (NaN/Inf present)")


def plugin_pairs(report: CheckReport) -> list[tuple[str, str]]:
    """Each plugin in force (your code, named with --plugin or installed) and the layers it computed."""
    pairs = []
    for use in report.plugins:
        computed = (
            "computed " + ", ".join(f"layer {layer!r} ({cls}) with {function}" for layer, cls, function in use.layers)
            if use.layers
            else "computed no layer of this model"
        )
        pairs.append(("plugin", f"{use.source}: {computed}"))
    return pairs


def export_pairs(report: CheckReport) -> list[tuple[str, str]]:
    """Who ran each export (runtime, version, file, how inputs were matched, what is inside), and
    what its second pass (same input again, same session, no reset) showed."""
    pairs = []
    for info in report.sides:
        runtime = f"{info.kind} {info.version}".strip()
        pairs.append(("export", "; ".join(part for part in (f"{info.label}: {runtime}", info.matching) if part)))
        if info.census:
            from ..runners.census import describe

            pairs.append(("inside", describe(info.census)))
    for second in report.independence:
        pairs.append(
            (
                "2nd pass",
                f"{second.label}: "
                + (
                    f"the same {second.rows} samples again, reversed, no reset: max diff {num(second.max_diff)}, "
                    f"no state carried between invocations"
                    if second.passed
                    else second.message
                ),
            )
        )
    return pairs


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
    for label, _ in report.export_layerwise:
        first = report.first_export_divergence(label)
        if first is not None and not report.passed:
            at = f" timestep {first['first_timestep']}" if first["first_timestep"] is not None else ""
            detail += f"; {label}: first layer over its share of the tolerance {first['layer']}{at}"
    if report.trace_divergence is not None:
        d = report.trace_divergence
        detail += f"; trace departs at layer {d['layer']} gate {d['gate']}"
    for second in report.independence:
        if not second.passed:
            detail += f"; {second.label} carries state between invocations"
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


def export_layerwise_title(label: str) -> str:
    """The title of an export's --layerwise table (an export that traces its own layers: hls4ml)."""
    return f"layerwise (reference vs {label}, its own per-layer trace):"


def export_divergence_text(report: CheckReport, label: str) -> str:
    """The first layer (and timestep) of export `label` over the tolerance, or that none is."""
    first = report.first_export_divergence(label)
    if not first:
        return "every layer within its share of the tolerance (the tolerance split evenly over the layers)"
    at = f", timestep {first['first_timestep']}" if first["first_timestep"] is not None else ""
    added = f"adds {num(first['added_max_abs'])}, " if "added_max_abs" in first else ""
    return (
        f"first layer over its share of the tolerance: {first['layer']}{at}: {added}"
        f"max abs diff {num(first['max_abs_diff'])}"
    )


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
    for label, rows in report.export_layerwise:
        lines.append("")
        lines.append("  " + export_layerwise_title(label))
        for row in rows:
            layer, shape, max_abs, result, first_timestep = layerwise_cells(row)
            where = f", first timestep {first_timestep}" if row["first_timestep"] is not None else ""
            lines.append(f"    {layer} {shape}: max abs {max_abs} {result}{where}")
        lines.append("  " + export_divergence_text(report, label))
    if report.trace_compared:
        lines.append("")
        lines.append("  " + trace_text(report))
    return lines
