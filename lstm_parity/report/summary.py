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


class JobResult(tuple):
    """One model's (name, report, exit code, error), unpacked like any 4-tuple, that also knows the model's
    absolute path (`.path`) for the JSON: a model that could not be read has no report to take it from."""

    path: str

    def __new__(cls, result: tuple[str, Any, int, str | None], path: str) -> JobResult:
        self = super().__new__(cls, result)
        self.path = path
        return self


def run_all(jobs: list[Job], workers: int, show_progress: bool = False) -> list[tuple[str, Any, int, str | None]]:
    """Every job's (name, report, exit code, error) as a JobResult, in the order given; `workers` processes
    at once."""
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
    return [JobResult(results[i], job.path) for i, job in enumerate(jobs)]


def _worst_diff(report: Any) -> str:
    diffs = [o.max_abs_diff for c in report.comparisons for o in c.outputs]
    return num(max(diffs)) if diffs else "-"


SUMMARY_HEADER = ("model", "result", "max abs diff", "detail")
PLAIN_WIDTH = 120  # the plain table (a pipe, a CI log) keeps to a 120-column terminal for names of <= 40 chars
MIN_DETAIL_WIDTH = 20  # a detail column narrower than this (very long names) is not wrapped at all
ERRORS_TITLE = "errors:"


def summary_verdict(results: list[tuple[str, Any, int, str | None]], code: int) -> str:
    """One line: how many models passed, failed, could not be checked, and the exit code."""
    passed = sum(r[2] == 0 for r in results)
    failed = sum(r[2] == 1 for r in results)
    errors = len(results) - passed - failed
    return (
        f"{'PASS' if code == 0 else 'FAIL'}: {passed}/{len(results)} models passed, {failed} failed, "
        f"{errors} could not be checked (exit {code})"
    )


def _detail_parts(report: Any, error: str | None) -> list[str]:
    """The error, or the atol each failing output needs (one part per output and comparison side)."""
    if error:
        return [error]
    if report is None:
        return []
    return [
        f"{o.name} vs {c.against}: needs atol {num(o.min_atol_to_pass)}"
        for c in report.comparisons
        for o in c.outputs
        if not o.passed
    ]


def summary_row(name: str, report: Any, exit_code: int, error: str | None) -> tuple[str, str, str, str]:
    """One model as SUMMARY_HEADER's cells: its name, result, worst max abs diff, and the error or the
    atol each failing output needs. The tables leave an error out of its cell (see table_row)."""
    return (
        name,
        RESULT.get(exit_code, f"exit {exit_code}"),
        _worst_diff(report) if report is not None else "-",
        "; ".join(_detail_parts(report, error)),
    )


def table_row(name: str, report: Any, exit_code: int, error: str | None) -> tuple[str, str, str, str]:
    """summary_row as the tables show it: a model that could not be checked says so in its result cell
    ("ERROR (bad input)"), and its message, often longer than a line, is listed in full below the table."""
    cells = summary_row(name, report, exit_code, error)
    return (*cells[:3], "") if error else cells


def summary_errors(results: list[tuple[str, Any, int, str | None]]) -> list[tuple[str, str]]:
    """(name, one-line message) of every model that could not be checked, in the table's order."""
    return [(name, error) for name, _, _, error in results if error]


def _pack_parts(parts: list[str], width: int) -> list[str]:
    """A detail's parts joined by "; " on lines of at most `width` characters (a part is never split);
    one line when the column is too narrow to wrap in."""
    if not parts:
        return [""]
    if width < MIN_DETAIL_WIDTH:
        return ["; ".join(parts)]
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "; " + part
        else:
            lines[-1] += ";"
            lines.append(part)
    return lines


def render_summary(results: list[tuple[str, Any, int, str | None]], code: int, quiet: bool) -> str:
    """The check-all summary as plain text: one line per model in fixed columns, a failing model's detail
    wrapped under itself to keep within PLAIN_WIDTH, then every error message in full ("errors:", one line
    per model, never cut), then the verdict."""
    verdict = summary_verdict(results, code)
    if quiet:
        return verdict + "\n"
    rows = [SUMMARY_HEADER] + [table_row(*result) for result in results]
    details = [[SUMMARY_HEADER[3]]] + [_detail_parts(report, None) for _, report, _, _ in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    start = sum(widths) + 2 * 3
    lines = []
    for row, parts in zip(rows, details, strict=True):
        first, *more = _pack_parts(parts, PLAIN_WIDTH - start)
        lines.append(
            "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]), first]).rstrip()
        )
        lines += [" " * start + line for line in more]
    errors = summary_errors(results)
    if errors:
        lines += ["", ERRORS_TITLE] + [f"  {name}: {error}" for name, error in errors]
    return "\n".join(lines + ["", verdict]) + "\n"


def render_summary_rich(results: list[tuple[str, Any, int, str | None]], code: int, console: Any) -> None:
    """The check-all summary on a terminal, laid out for its width: model, result and max abs diff
    inline; a failing model's detail (the atol it needs) inline when it fits, else under its row; then
    every error message in full, beside the model's name or under it, wrapped, never cut; then the verdict."""
    from rich.cells import cell_len
    from rich.text import Text

    from .rich_report import (
        DETAIL_INDENT,
        FAIL_STYLE,
        INDENT,
        WARN_STYLE,
        TableRow,
        TableSpec,
        labelled,
        print_lines,
        result_style,
        table_block,
        wrap,
    )

    spec = TableSpec(
        header=SUMMARY_HEADER,
        essential=("model", "result", "max abs diff"),
        optional=(("detail",),),
        right=frozenset({"max abs diff"}),
        headline=("result",),
    )
    rows = [
        TableRow(
            cells=dict(zip(SUMMARY_HEADER, table_row(*result), strict=True)),
            styles={"result": result_style(True) if result[2] == 0 else FAIL_STYLE if result[2] == 1 else WARN_STYLE},
            labels={"detail": ""},
        )
        for result in results
    ]
    width = console.width
    lines = table_block(console, spec, rows, width)
    errors = summary_errors(results)
    if errors:
        lines += [Text(), Text(ERRORS_TITLE, style="bold")]
        for name, error in errors:
            label = Text(f"{name}:", style=WARN_STYLE)
            room = width - INDENT - label.cell_len - 1
            if room >= width // 2 and all(cell_len(word) <= room for word in error.split()):
                lines += labelled(console, label, Text(error), width, INDENT)  # `name: message`, hanging indent
            else:  # a long name leaves too little room beside it (a path would fold): the message goes under it
                lines += wrap(console, label, width, INDENT) + wrap(console, Text(error), width, DETAIL_INDENT)
    verdict = Text(summary_verdict(results, code), style=result_style(code == 0))
    print_lines(console, lines + [Text()] + wrap(console, verdict, width, 0))


def model_json(result: tuple[str, Any, int, str | None]) -> dict[str, Any]:
    """One model in the JSON: its name, absolute path (the job's, kept by run_all's JobResult, else its
    report's), exit code, error message in full, and report."""
    name, report, exit_code, error = result
    return {
        "name": name,
        "path": getattr(result, "path", None) or (report.spec.source if report is not None else name),
        "exit_code": exit_code,
        "error": error,
        "report": check_to_dict(report, exit_code) if report is not None else None,
    }


def summary_json(results: list[tuple[str, Any, int, str | None]], code: int) -> str:
    models = [model_json(result) for result in results]
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
