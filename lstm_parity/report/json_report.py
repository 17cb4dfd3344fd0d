"""The check report as JSON; the schema is `check_report.schema.json` beside this file (and README)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .. import __version__
from ..check import CheckReport
from ..compare import NAN_RULE, ComparisonResult
from ..runners.base import RunnerInfo

CHECK_SCHEMA_VERSION = 2  # 2: metrics, profiles, exports (--against) and their second passes; plugins (optional)
SCHEMA_PATH = Path(__file__).with_name("check_report.schema.json")


def _finite(value: float) -> float | str:
    """JSON has no NaN/Infinity: write those as the strings "nan", "inf", "-inf"."""
    return value if math.isfinite(value) else str(value)


def comparison_to_dict(comparison: ComparisonResult, runtime: RunnerInfo | None = None) -> dict[str, Any]:
    return {
        "against": comparison.against,
        "passed": comparison.passed,
        "profile": comparison.profile,
        "runtime": None if runtime is None else runtime_to_dict(runtime),
        "tolerance": {"atol": comparison.atol, "rtol": comparison.rtol, "rule": comparison.rule, "nan_rule": NAN_RULE},
        "outputs": [
            {
                "name": out.name,
                "shape": list(out.shape),
                "passed": out.passed,
                "atol": out.atol,
                "rtol": out.rtol,
                "max_abs_diff": _finite(out.max_abs_diff),
                "max_rel_diff": _finite(out.max_rel_diff),
                "mean_abs_diff": _finite(out.mean_abs_diff),
                "worst_index": list(out.worst_index),
                "other_at_worst": _finite(out.other_at_worst),
                "reference_at_worst": _finite(out.reference_at_worst),
                "min_atol_to_pass": _finite(out.min_atol_to_pass),
                "nan_mismatches": out.nan_mismatches,
                "shape_mismatch": out.shape_mismatch or None,
                "cosine": _finite(out.cosine),
                "snr_db": _finite(out.snr_db),
                "rel_l2": _finite(out.rel_l2),
                "timestep_max_abs": [_finite(v) for v in out.timestep_max_abs],
                "top1_agreement": out.top1_agreement,
                "failed_rules": list(out.failed_rules),
            }
            for out in comparison.outputs
        ],
    }


def runtime_to_dict(info: RunnerInfo) -> dict[str, Any]:
    return {
        "kind": info.kind,
        "version": info.version,
        "path": info.path,
        "matching": info.matching,
        "notes": list(info.notes),
        "census": info.census,
    }


def check_to_dict(report: CheckReport, exit_code: int) -> dict[str, Any]:
    spec = report.spec
    weights = report.weights
    return {
        "schema_version": CHECK_SCHEMA_VERSION,
        "tool": {"name": "lstm-parity", "version": __version__},
        "model": {
            "path": spec.source,
            "sha256": spec.sha256,
            "format": spec.file_format,
            "model_class": spec.model_class,
            "saved_by_keras": spec.keras_version,
            "inputs": spec.input_names,
            "outputs": spec.output_names,
        },
        "keras": {"package": report.keras_package, "version": report.keras_version, "backend": report.keras_backend}
        if report.keras_package
        else None,
        "reference": {
            "dtype": report.reference_dtype,
            "semantics": report.semantics,
            "semantics_source": "forced" if report.semantics_forced else "file",
        },
        "input_shapes": [list(shape) for shape in report.input_shapes],
        "notes": list(report.notes),
        "plugins": [
            {
                "source": use.source,
                "origin": use.origin,
                "sha256": use.sha256,
                "layers": [
                    {"layer": layer, "class_name": cls, "function": function} for layer, cls, function in use.layers
                ],
            }
            for use in report.plugins
        ],
        "weights": None
        if weights is None
        else {
            "identical": weights.identical,
            "arrays": weights.arrays,
            "values": weights.values,
            "mismatches": list(weights.mismatches),
        },
        "comparisons": [
            comparison_to_dict(c, runtime) for c, runtime in zip(report.comparisons, _runtimes(report), strict=True)
        ],
        "second_passes": [
            {
                "against": s.label,
                "rows": s.rows,
                "max_diff": _finite(s.max_diff),
                "passed": s.passed,
                "message": s.message,
            }
            for s in report.independence
        ],
        "layerwise": None
        if report.layerwise is None
        else [{**row, "max_abs_diff": _finite(row["max_abs_diff"])} for row in report.layerwise],
        "layerwise_exports": [
            {"against": label, "layers": [{**row, "max_abs_diff": _finite(row["max_abs_diff"])} for row in rows]}
            for label, rows in report.export_layerwise
        ],
        "trace_divergence": None
        if report.trace_divergence is None
        else {**report.trace_divergence, "max_abs_diff": _finite(report.trace_divergence["max_abs_diff"])},
        "passed": report.passed,
        "exit_code": exit_code,
    }


def render_check_json(report: CheckReport, exit_code: int) -> str:
    return json.dumps(check_to_dict(report, exit_code), indent=2, allow_nan=False) + "\n"


def _runtimes(report: CheckReport) -> list[RunnerInfo | None]:
    """Which runtime computed each comparison's other side: None for Keras and an expected file."""
    return [None] * (len(report.comparisons) - len(report.sides)) + list(report.sides)
