"""The check report for a person at a terminal: a rich table with PASS/FAIL colours.

Used only when stdout is a terminal and NO_COLOR is unset; the plain-text view says the same."""

from __future__ import annotations

from typing import Any

from ..check import CheckReport
from .text import HEADER, header_lines, layer_lines, output_row, verdict


def render_check_rich(report: CheckReport, console: Any) -> None:
    from rich.table import Table

    console.print(f"[bold]lstm-parity check[/bold] {report.spec.source}")
    for label, text in header_lines(report):
        console.print(f"  [dim]{label:<11}[/dim] {text}", highlight=False)
    if report.comparisons:
        table = Table(show_edge=False, pad_edge=False)
        for column in HEADER:
            table.add_column(column, justify="left" if column in ("output", "vs", "shape", "worst at") else "right")
        for comparison in report.comparisons:
            for out in comparison.outputs:
                row = list(output_row(comparison, out))
                row[-1] = f"[green]{row[-1]}[/green]" if out.passed else f"[bold red]{row[-1]}[/bold red]"
                table.add_row(*row)
        console.print(table)
    for text in layer_lines(report):
        console.print(text, highlight=False)
    line = verdict(report)
    colour = "green" if report.passed else "bold red"
    console.print(f"[{colour}]{line}[/{colour}]", highlight=False)
