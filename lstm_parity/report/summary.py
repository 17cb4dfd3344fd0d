"""check-all: running the jobs (in parallel processes) and the summary table / JSON of their results."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from .. import __version__
from ..check_all import Job, run_job
from .json_report import check_to_dict
from .text import num

RESULT = {
    0: "PASS",
    1: "FAIL",
    2: "ERROR (bad input)",
    3: "ERROR (unsupported)",
    4: "ERROR (keras side)",
    5: "ERROR (internal)",
}


def run_all(jobs: list[Job], workers: int, show_progress: bool = False) -> list[tuple[str, Any, int, str | None]]:
    """Every job's (name, report, exit code, error), in the order given; `workers` processes at once."""
    results: dict[int, tuple] = {}
    progress = None
    if show_progress:
        from rich.progress import Progress

        progress = Progress(transient=True)
        task = progress.add_task("checking models", total=len(jobs))
        progress.start()
    try:
        if workers == 1:
            for index, job in enumerate(jobs):
                results[index] = run_job(job)
                if progress:
                    progress.advance(task)
        else:  # spawn: workers import TensorFlow themselves, nothing is inherited half-initialised
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(run_job, job): index for index, job in enumerate(jobs)}
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        results[index] = future.result()
                    except Exception as exc:  # a worker that died still reports
                        results[index] = (jobs[index].name, None, 5, f"worker failed: {type(exc).__name__}: {exc}")
                    if progress:
                        progress.advance(task)
    finally:
        if progress:
            progress.stop()
    return [results[i] for i in range(len(jobs))]


def _worst_diff(report: Any) -> str:
    diffs = [o.max_abs_diff for c in report.comparisons for o in c.outputs]
    return num(max(diffs)) if diffs else "-"


def render_summary(results: list[tuple[str, Any, int, str | None]], code: int, quiet: bool) -> str:
    passed = sum(r[2] == 0 for r in results)
    failed = sum(r[2] == 1 for r in results)
    errors = len(results) - passed - failed
    verdict = (
        f"{'PASS' if code == 0 else 'FAIL'}: {passed}/{len(results)} models passed, {failed} failed, "
        f"{errors} could not be checked (exit {code})"
    )
    if quiet:
        return verdict + "\n"
    rows = [("model", "result", "max abs diff", "detail")]
    for name, report, exit_code, error in results:
        detail = error or (
            ""
            if report is None
            else "; ".join(
                f"{o.name} vs {c.against}: needs atol {num(o.min_atol_to_pass)}"
                for c in report.comparisons
                for o in c.outputs
                if not o.passed
            )
        )
        rows.append(
            (
                name,
                RESULT.get(exit_code, f"exit {exit_code}"),
                _worst_diff(report) if report is not None else "-",
                detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]), row[3]]).rstrip()
        for row in rows
    ]
    return "\n".join(lines + ["", verdict]) + "\n"


def summary_json(results: list[tuple[str, Any, int, str | None]], code: int) -> str:
    models = [
        {
            "name": name,
            "path": report.spec.source if report is not None else name,
            "exit_code": exit_code,
            "error": error,
            "report": check_to_dict(report, exit_code) if report is not None else None,
        }
        for name, report, exit_code, error in results
    ]
    summary = {
        "total": len(results),
        "passed": sum(r[2] == 0 for r in results),
        "failed": sum(r[2] == 1 for r in results),
        "errors": sum(r[2] > 1 for r in results),
    }
    return (
        json.dumps(
            {
                "schema_version": 1,
                "tool": {"name": "lstm-parity", "version": __version__},
                "models": models,
                "summary": summary,
                "exit_code": code,
            },
            indent=2,
            allow_nan=False,
        )
        + "\n"
    )
