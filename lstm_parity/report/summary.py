"""check-all: running the jobs (in parallel processes) and the summary table / JSON of their results."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from .. import __version__
from ..check_all import Job, run_job
from .json_report import CHECK_SCHEMA_VERSION, check_to_dict
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


SUMMARY_HEADER = ("model", "result", "max abs diff", "detail")


def summary_verdict(results: list[tuple[str, Any, int, str | None]], code: int) -> str:
    """One line: how many models passed, failed, could not be checked, and the exit code."""
    passed = sum(r[2] == 0 for r in results)
    failed = sum(r[2] == 1 for r in results)
    errors = len(results) - passed - failed
    return (
        f"{'PASS' if code == 0 else 'FAIL'}: {passed}/{len(results)} models passed, {failed} failed, "
        f"{errors} could not be checked (exit {code})"
    )


def summary_row(name: str, report: Any, exit_code: int, error: str | None) -> tuple[str, str, str, str]:
    """One model as SUMMARY_HEADER's cells: its name, result, worst max abs diff, and the error or the
    atol each failing output needs."""
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
    return (
        name,
        RESULT.get(exit_code, f"exit {exit_code}"),
        _worst_diff(report) if report is not None else "-",
        detail,
    )


def render_summary(results: list[tuple[str, Any, int, str | None]], code: int, quiet: bool) -> str:
    """The check-all summary as plain text: one line per model in fixed columns, then the verdict."""
    verdict = summary_verdict(results, code)
    if quiet:
        return verdict + "\n"
    rows = [SUMMARY_HEADER] + [summary_row(*result) for result in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]), row[3]]).rstrip()
        for row in rows
    ]
    return "\n".join(lines + ["", verdict]) + "\n"


def render_summary_rich(results: list[tuple[str, Any, int, str | None]], code: int, console: Any) -> None:
    """The check-all summary on a terminal, laid out for its width: model, result and max abs diff
    inline; the detail (an error, the atol a failing output needs) inline when it fits, else under its row."""
    from rich.text import Text

    from .rich_report import FAIL_STYLE, WARN_STYLE, TableRow, TableSpec, print_lines, result_style, table_block, wrap

    spec = TableSpec(
        header=SUMMARY_HEADER,
        essential=("model", "result", "max abs diff"),
        optional=(("detail",),),
        right=frozenset({"max abs diff"}),
        headline=("result",),
    )
    rows = [
        TableRow(
            cells=dict(zip(SUMMARY_HEADER, summary_row(*result), strict=True)),
            styles={"result": result_style(True) if result[2] == 0 else FAIL_STYLE if result[2] == 1 else WARN_STYLE},
            labels={"detail": ""},
        )
        for result in results
    ]
    width = console.width
    verdict = Text(summary_verdict(results, code), style=result_style(code == 0))
    print_lines(console, table_block(console, spec, rows, width) + [Text()] + wrap(console, verdict, width, 0))


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
                "schema_version": CHECK_SCHEMA_VERSION,
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
