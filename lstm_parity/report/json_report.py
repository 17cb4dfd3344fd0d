"""The check report as JSON (schema documented in README.md, versioned by `schema_version`)."""
from __future__ import annotations

import json
import math
from typing import Any

from .. import __version__
from ..check import CheckReport

CHECK_SCHEMA_VERSION = 1


def _finite(value: float) -> float | str:
    """JSON has no NaN/Infinity: write those as the strings "nan", "inf", "-inf"."""
    return value if math.isfinite(value) else str(value)


def check_to_dict(report: CheckReport, exit_code: int) -> dict[str, Any]:
    spec = report.spec
    comparison = report.comparison
    if comparison is None or report.weights is None:
        return {
            "schema_version": CHECK_SCHEMA_VERSION,
            "tool": {"name": "lstm-parity", "version": __version__},
            "model": _model(report), "keras": None,
            "reference": _reference(report),
            "input_shapes": [list(shape) for shape in report.input_shapes],
            "notes": list(report.notes), "weights": None, "tolerance": None,
            "outputs": [{"name": name, "shape": list(out.shape), "passed": None}
                        for name, out in zip(spec.output_names, report.reference_outputs)],
            "passed": report.passed, "exit_code": exit_code,
        }
    return {
        "schema_version": CHECK_SCHEMA_VERSION,
        "tool": {"name": "lstm-parity", "version": __version__},
        "model": _model(report),
        "keras": {"package": report.keras_package, "version": report.keras_version},
        "reference": _reference(report),
        "input_shapes": [list(shape) for shape in report.input_shapes],
        "notes": list(report.notes),
        "weights": {"identical": report.weights.identical, "arrays": report.weights.arrays,
                    "values": report.weights.values, "mismatches": list(report.weights.mismatches)},
        "tolerance": {"atol": comparison.atol, "rtol": comparison.rtol, "rule": comparison.rule},
        "outputs": [{
            "name": out.name, "shape": list(out.shape), "passed": out.passed,
            "max_abs_diff": _finite(out.max_abs_diff), "max_rel_diff": _finite(out.max_rel_diff),
            "mean_abs_diff": _finite(out.mean_abs_diff), "worst_index": list(out.worst_index),
            "keras_at_worst": _finite(out.other_at_worst), "reference_at_worst": _finite(out.reference_at_worst),
            "min_atol_to_pass": _finite(out.min_atol_to_pass), "nan_mismatches": out.nan_mismatches,
            "shape_mismatch": out.shape_mismatch or None,
        } for out in comparison.outputs],
        "passed": report.passed,
        "exit_code": exit_code,
    }


def _model(report: CheckReport) -> dict[str, Any]:
    spec = report.spec
    return {"path": spec.source, "sha256": spec.sha256, "format": spec.file_format,
            "model_class": spec.model_class, "saved_by_keras": spec.keras_version,
            "inputs": spec.input_names, "outputs": spec.output_names}


def _reference(report: CheckReport) -> dict[str, Any]:
    return {"dtype": report.reference_dtype, "semantics": report.semantics,
            "semantics_source": "forced" if report.semantics_forced else "file"}


def render_check_json(report: CheckReport, exit_code: int) -> str:
    return json.dumps(check_to_dict(report, exit_code), indent=2, allow_nan=False) + "\n"
