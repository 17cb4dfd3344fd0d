"""The export report: what was built and how, what is inside the file, and the proof's numbers; as
plain text (a terminal or a CI log) and as JSON (`--json`). It computes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..check import CheckReport
from ..upgrade_config import DroppedKey, describe_dropped
from .options import TARGETS
from .strategy import Strategy

EXPORT_SCHEMA_VERSION = 1


@dataclass
class Gate:
    """One run of the check flow on the converted file: which inputs, and the check's report."""

    inputs: str  # "generated: 16 sequences (seed 0)" or "INPUT x.npy"
    report: CheckReport


@dataclass
class ExportReport:
    """Everything `export` did. `written` is True only when every gate passed and the file was moved
    into place. `strategy_taken` names the conversion as it came out (ONNX auto: fused, loop or both).
    `runtime` is the target the file is made for and proven in (options.TARGETS: onnxruntime, litert, tflm)."""

    source: str
    target: str
    format: str
    runtime: str
    keras_version: str
    semantics: str
    strategy: Strategy
    strategy_taken: str
    quantize: str
    profile: str
    versions: dict[str, str] = field(default_factory=dict)
    transformed: list[str] = field(default_factory=list)
    dropped: list[DroppedKey] = field(default_factory=list)
    size_float: int = 0
    size_final: int = 0
    notes: list[str] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    written: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.gates) and all(gate.report.passed for gate in self.gates)

    @property
    def runtime_version(self) -> str:
        """The target runtime's version, as the proof ran it ("" before any proof)."""
        for gate in self.gates:
            for side in gate.report.sides:
                return side.version
        return ""

    @property
    def census(self) -> dict[str, Any]:
        """What is inside the file, as the gate's runtime read it."""
        for gate in self.gates:
            for side in gate.report.sides:
                return side.census
        return {}

    @property
    def nonstandard_ops(self) -> list[str]:
        """Ops outside the format's standard set: ONNX ops of another domain (`com.microsoft::
        DynamicQuantizeLSTM`, which quantize_dynamic makes of a fused LSTM), TFLite Flex and custom ops."""
        census = self.census
        return sorted(
            [op for op in census.get("ops", {}) if "::" in op]
            + list(census.get("flex_ops", []))
            + list(census.get("custom_ops", []))
        )


def header_pairs(report: ExportReport) -> list[tuple[str, str]]:
    """(label, text) pairs: provenance, rebuild, strategy, converter, census, sizes, notes."""
    from ..runners.census import describe

    rebuilt = "; ".join(report.transformed) if report.transformed else "weights as read, none transformed"
    runtime = TARGETS[report.runtime][1] + (f" {report.runtime_version}" if report.runtime_version else "")
    pairs = [
        ("target", f"{runtime}: the file is made for it and proven in it"),
        (
            "saved by",
            f"Keras {report.keras_version or '(unknown)'}; proven against the reference's {report.semantics} "
            "semantics (NumPy float64)",
        ),
        ("rebuilt", f"with Keras {report.versions.get('keras', '')}: {rebuilt}"),
    ]
    pairs += [("dropped", line) for line in describe_dropped(report.dropped)]
    requested = report.strategy.requested
    taken = report.strategy_taken if requested == report.strategy_taken else f"{requested} -> {report.strategy_taken}"
    if report.nonstandard_ops and report.quantize != "none":
        taken += f", quantized to {', '.join(report.nonstandard_ops)}"
    pairs.append(("strategy", f"{taken}: {report.strategy.reason}"))
    shapes = ", ".join(_shape(shape) for shape in report.strategy.input_shapes)
    pairs.append(("inputs", f"{shapes} (? = any size)"))
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if k not in ("converter", "quantizer") and v)
    pairs.append(("converter", f"{report.versions.get('converter', '')} ({versions})"))
    if report.versions.get("quantizer"):
        pairs.append(("quantizer", report.versions["quantizer"]))
    if report.census:
        pairs.append(("inside", describe(report.census)))
    pairs.append(("size", _sizes(report)))
    pairs += [("note", note) for note in report.notes]
    return pairs


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _sizes(report: ExportReport) -> str:
    if report.quantize == "none":
        return f"{report.size_float:,} bytes (float32)"
    ratio = report.size_final / report.size_float if report.size_float else float("nan")
    return f"{report.size_float:,} bytes float32 -> {report.size_final:,} bytes {report.quantize} ({100 * ratio:.0f}%)"


def verdict(report: ExportReport) -> str:
    """The last line: written, or not written and why."""
    if report.written:
        return f"PASS: written {report.target}"
    failing = [gate.inputs for gate in report.gates if not gate.report.passed]
    return f"FAIL: not written ({report.target} untouched); the export differs on {', '.join(failing)}"


def gate_title(gate: Gate) -> str:
    check = gate.report
    return f"proof on {gate.inputs}, {', '.join(str(s) for s in check.input_shapes)}:"


def gate_pairs(gate: Gate, profile: str) -> list[tuple[str, str]]:
    """Under a gate's table: the pass rule, the second pass (same inputs again, no reset), the check's notes."""
    from ..report.text import export_pairs

    check = gate.report
    pairs = [("rule", comparison.rule) for comparison in check.exports]
    pairs += [(label, text) for label, text in export_pairs(check) if label == "2nd pass"]
    pairs += [("note", note) for note in top1_not_judged(gate, profile)]
    return pairs + [("note", note) for note in check.notes]


def top1_not_judged(gate: Gate, profile: str) -> list[str]:
    """For each output whose top-1 agreement the table shows over fewer rows than the profile's top-1 rule
    waits for: say that it was not judged."""
    from ..profiles import profile_named

    waits = [rule for rule in profile_named(profile).rules if rule.metric == "top1" and rule.min_rows]
    if not waits:
        return []
    return [
        f"{out.name}: top-1 agreement over {out.top1_rows} rows is shown, not judged (the {profile} profile "
        f"judges it from {waits[0].min_rows:,} rows: --samples {waits[0].min_rows})"
        for comparison in gate.report.exports
        for out in comparison.outputs
        if out.top1_agreement is not None and out.top1_rows < waits[0].min_rows
    ]


def gate_lines(gate: Gate, profile: str) -> list[str]:
    """One gate as plain text: its inputs, the comparison table, the whole-output metrics, the pairs."""
    from ..report.text import HEADER, output_notes, output_row

    check = gate.report
    rows = [HEADER] + [output_row(c, o) for c in check.exports for o in c.outputs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  " + gate_title(gate)]
    lines += ["    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"    {out.name}: {note}" for c in check.exports for out in c.outputs for note in output_notes(out)]
    return lines + [f"    {label}: {text}" for label, text in gate_pairs(gate, profile)]


def render_export(report: ExportReport) -> str:
    """The whole report as plain text."""
    lines = [f"lstm-parity export {report.source} -> {report.target}"]
    lines += [f"  {label:<10} {text}" for label, text in header_pairs(report)]
    for gate in report.gates:
        lines += [""] + gate_lines(gate, report.profile)
    return "\n".join(lines + ["", verdict(report)]) + "\n"


def render_export_rich(report: ExportReport, console: Any) -> None:
    """The same report on a terminal: laid out for its width, PASS/FAIL in colour (report/rich_report)."""
    from rich.text import Text

    from ..report.rich_report import (
        CHECK_TABLE,
        INDENT,
        comparison_rows,
        header_block,
        print_lines,
        result_style,
        table_block,
        title_block,
        wrap,
    )

    width = console.width
    lines = title_block(console, "lstm-parity export", f"{report.source} -> {report.target}", width)
    lines += header_block(console, header_pairs(report), width)
    for gate in report.gates:
        lines += [Text()] + wrap(console, Text(gate_title(gate)), width, INDENT)
        lines += table_block(console, CHECK_TABLE, comparison_rows(gate.report.exports), width)
        lines += header_block(console, gate_pairs(gate, report.profile), width)
    lines += [Text()] + wrap(console, Text(verdict(report), style=result_style(report.written)), width, 0)
    print_lines(console, lines)


def export_to_dict(report: ExportReport, exit_code: int) -> dict[str, Any]:
    """The report as JSON-ready data; each gate's check in the check report's own schema."""
    from ..report.json_report import check_to_dict

    return {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "tool": {"name": "lstm-parity", "version": __version__},
        "model": {"path": report.source, "saved_by_keras": report.keras_version, "semantics": report.semantics},
        "target": {
            "path": report.target,
            "format": report.format,
            "runtime": report.runtime,
            "runtime_version": report.runtime_version,
            "written": report.written,
        },
        "strategy": {
            "requested": report.strategy.requested,
            "taken": report.strategy_taken,
            "reason": report.strategy.reason,
            "input_shapes": [list(shape) for shape in report.strategy.input_shapes],
            "unroll": report.strategy.unroll,
            "nonstandard_ops": report.nonstandard_ops,
        },
        "converter": dict(report.versions),
        "rebuild": {
            "transformed": list(report.transformed),
            "dropped": [
                {"layer": d.layer, "key": d.key, "value": repr(d.value), "reason": d.reason} for d in report.dropped
            ],
        },
        "quantize": {
            "mode": report.quantize,
            "profile": report.profile,
            "bytes_float32": report.size_float,
            "bytes": report.size_final,
        },
        "census": report.census,
        "notes": list(report.notes),
        "gates": [
            {
                "inputs": gate.inputs,
                "notes": top1_not_judged(gate, report.profile),
                "check": check_to_dict(gate.report, exit_code),
            }
            for gate in report.gates
        ],
        "passed": report.passed,
        "exit_code": exit_code,
    }


def render_export_json(report: ExportReport, exit_code: int) -> str:
    return json.dumps(export_to_dict(report, exit_code), indent=2, allow_nan=False) + "\n"
