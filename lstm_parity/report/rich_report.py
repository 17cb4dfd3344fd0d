"""The reports for a person at a terminal: PASS/FAIL colours, laid out for the console's width.

Used only when stdout is a terminal and NO_COLOR is unset; the plain-text view says the same. Nothing is
ever cut or elided: a table keeps its essential columns inline, every cell in full and on one line; the
columns that do not fit the width move to a detail line under their row; when even the essential
columns are wider than the terminal, each row becomes a block of `label value` pairs. Free text
(provenance, notes, paths, error messages) wraps at word boundaries with a hanging indent, and a word
longer than a line (a long path) is folded onto the next one, never cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text

from ..check import CheckReport
from ..compare import ComparisonResult
from .text import (
    HEADER,
    LAYERWISE_HEADER,
    LAYERWISE_TITLE,
    export_divergence_text,
    export_layerwise_title,
    first_divergence_text,
    header_lines,
    layerwise_cells,
    output_notes,
    output_row,
    outputs_text,
    trace_text,
    verdict,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ..upgrade import UpgradeReport

INDENT = 2  # table rows and header lines start here, as in the plain-text view
GAP = 2  # spaces between two columns, and between two `label value` pairs of a detail line
DETAIL_INDENT = 4  # detail lines and notes sit under their row
LABEL_WIDTH = 11  # header labels ("saved by", "keras side", ...) are padded to this, as in plain text
MIN_TEXT_WIDTH = 20  # narrower than this beside its label, a header text goes on lines of its own
EMPTY = ("", "-")  # cells that say nothing; a detail line leaves them out
PASS_STYLE, FAIL_STYLE, WARN_STYLE = "green", "bold red", "bold yellow"


@dataclass(frozen=True)
class TableSpec:
    """A table's columns in display order: which always stay inline, which may join them (groups, by
    priority, added while the table fits), which are right-justified (numbers), and which join the first
    cell, unlabelled, on the first line of a row's block when the terminal is too narrow for the table."""

    header: tuple[str, ...]
    essential: tuple[str, ...]
    optional: tuple[tuple[str, ...], ...] = ()
    right: frozenset[str] = frozenset()
    headline: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableRow:
    """One row: cell text by column title (formatted exactly as the plain-text view does), a rich style
    by column title, the label a cell takes on a detail line when it is not the title ("" for none), and
    sentences printed under the row."""

    cells: dict[str, str]
    styles: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


CHECK_TABLE = TableSpec(
    header=HEADER,
    essential=("output", "vs", "max abs", "max rel", "atol", "min atol", "result"),
    optional=(("shape",), ("mean abs",), ("worst at", "other", "reference")),
    right=frozenset({"max abs", "max rel", "mean abs", "other", "reference", "atol", "min atol"}),
    headline=("vs", "result"),
)
LAYERWISE_TABLE = TableSpec(
    header=LAYERWISE_HEADER,
    essential=("layer", "max abs", "result"),
    optional=(("shape",), ("first timestep",)),
    right=frozenset({"max abs", "first timestep"}),
    headline=("result",),
)


def result_style(passed: bool) -> str:
    """Green for a pass, bold red for anything else."""
    return PASS_STYLE if passed else FAIL_STYLE


# ---- free text ------------------------------------------------------------------------------------


def wrap(console: Console, text: Text, width: int, indent: int) -> list[Text]:
    """`text` word-wrapped into lines of at most `width` cells, each starting with `indent` spaces.

    A word longer than a line is folded (split across lines), never elided."""
    available = max(width - indent, 1)
    lines = _rstripped(text).wrap(console, available, overflow="fold")
    return [Text(" " * indent) + _rstripped(line) for line in lines]


def _rstripped(text: Text) -> Text:
    copy = text.copy()
    copy.rstrip()
    return copy


def labelled(console: Console, label: Text, text: Text, width: int, indent: int = INDENT) -> list[Text]:
    """`label` then `text`, the text wrapped with a hanging indent under itself; when the label leaves
    less than MIN_TEXT_WIDTH cells, the label stands on its own line and the text wraps under it."""
    prefix = Text(" " * indent) + label + " "
    if prefix.cell_len + MIN_TEXT_WIDTH > width:
        return wrap(console, label, width, indent) + wrap(console, text, width, indent + GAP)
    lines = wrap(console, text, width, prefix.cell_len) or [Text(" " * prefix.cell_len)]
    lines[0] = _rstripped(prefix + lines[0][prefix.cell_len :])
    return lines


def header_block(console: Console, pairs: Iterable[tuple[str, str]], width: int) -> list[Text]:
    """Provenance lines: a dim label padded to LABEL_WIDTH, then its text, wrapped under itself."""
    lines = []
    for label, text in pairs:
        lines += labelled(console, Text(f"{label:<{LABEL_WIDTH}}", style="dim"), Text(text), width)
    return lines


def title_block(console: Console, command: str, subject: str, width: int) -> list[Text]:
    """The first line: the command in bold and what it ran on (a path may fold, never be cut)."""
    return labelled(console, Text(command, style="bold"), Text(subject), width, indent=0)


# ---- tables ---------------------------------------------------------------------------------------


def column_width(title: str, rows: Sequence[TableRow]) -> int:
    """Cells the widest of the title and every row's cell in that column take."""
    return max([cell_len(title)] + [cell_len(row.cells.get(title, "")) for row in rows])


def table_width(columns: Sequence[str], rows: Sequence[TableRow]) -> int:
    """Width of a table showing `columns`, indent included."""
    return INDENT + sum(column_width(c, rows) for c in columns) + GAP * (len(columns) - 1)


def choose_columns(spec: TableSpec, rows: Sequence[TableRow], width: int) -> tuple[str, ...] | None:
    """The columns shown inline at `width`: the essential ones, then optional groups in priority order
    while the table still fits. None when the essential columns alone are too wide."""

    def ordered(names: set[str]) -> tuple[str, ...]:
        return tuple(c for c in spec.header if c in names)

    shown = set(spec.essential)
    if table_width(ordered(shown), rows) > width:
        return None
    for group in spec.optional:
        if table_width(ordered(shown | set(group)), rows) > width:
            break
        shown |= set(group)
    return ordered(shown)


def cells_line(spec: TableSpec, columns: Sequence[str], widths: Sequence[int], cells: Sequence[Text]) -> Text:
    """One table line: every cell padded to its column's width (numbers to the right), GAP apart."""
    line = Text(" " * INDENT)
    for index, (column, column_cells, cell) in enumerate(zip(columns, widths, cells, strict=True)):
        pad = " " * (column_cells - cell.cell_len)
        line += Text(" " * GAP) if index else Text()
        line += Text(pad) + cell if column in spec.right else cell + Text(pad)
    return _rstripped(line)


def segment(row: TableRow, column: str, style: str = "") -> Text:
    """`label value` for a cell shown outside the table; the value keeps the row's style for it."""
    label = row.labels.get(column, column)
    value = Text(row.cells[column], style=row.styles.get(column, ""))
    return Text(f"{label} ", style=style) + value if label else value


def pack(console: Console, segments: Sequence[Text], width: int, indent: int) -> list[Text]:
    """Segments side by side, GAP apart, on as few lines of at most `width` cells as they fit; a segment
    is never split unless it alone is wider than a line, and then only at its spaces."""
    lines: list[Text] = []
    line: Text | None = None
    for piece in segments:
        if line is not None and line.cell_len + GAP + piece.cell_len <= width:
            line += Text(" " * GAP) + piece
            continue
        if line is not None:
            lines.append(line)
        line = None
        if indent + piece.cell_len <= width:
            line = Text(" " * indent) + piece
        else:
            lines += wrap(console, piece, width, indent)
    return lines + ([line] if line is not None else [])


def moved_segments(row: TableRow, columns: Iterable[str], style: str = "") -> list[Text]:
    """The row's non-empty cells of `columns` as `label value` segments."""
    return [segment(row, c, style) for c in columns if row.cells.get(c, "") not in EMPTY]


def notes_block(console: Console, row: TableRow, width: int) -> list[Text]:
    """The row's notes, each wrapped under the row."""
    lines = []
    for note in row.notes:
        lines += wrap(console, Text(note, style="dim"), width, DETAIL_INDENT)
    return lines


def table_block(console: Console, spec: TableSpec, rows: Sequence[TableRow], width: int) -> list[Text]:
    """The table laid out for `width`: essential columns (and the optional ones that fit) inline, the
    rest as `label value` pairs (dim labels) on detail lines under each row; one block per row when the
    essential columns do not fit."""
    columns = choose_columns(spec, rows, width)
    if columns is None:
        return vertical_block(console, spec, rows, width)
    widths = [column_width(c, rows) for c in columns]
    hidden = [c for c in spec.header if c not in columns]
    lines = [
        cells_line(spec, columns, widths, [Text(c, style="bold") for c in columns]),
        Text(" " * INDENT + "─" * (table_width(columns, rows) - INDENT), style="dim"),
    ]
    for row in rows:
        cells = [Text(row.cells.get(c, ""), style=row.styles.get(c, "")) for c in columns]
        lines.append(cells_line(spec, columns, widths, cells))
        lines += pack(console, moved_segments(row, hidden, style="dim"), width, DETAIL_INDENT)
        lines += notes_block(console, row, width)
    return lines


def vertical_block(console: Console, spec: TableSpec, rows: Sequence[TableRow], width: int) -> list[Text]:
    """For a terminal too narrow for the table: each row's first cell in bold and its headline cells,
    then its other cells as `label value` pairs packed under it."""
    first = spec.header[0]
    rest = [c for c in spec.header[1:] if c not in spec.headline]
    lines = []
    for row in rows:
        headline = [Text(row.cells.get(first, ""), style="bold")]
        headline += [Text(row.cells[c], style=row.styles.get(c, "")) for c in spec.headline if row.cells.get(c)]
        lines += pack(console, headline, width, INDENT)
        lines += pack(console, moved_segments(row, rest), width, DETAIL_INDENT)
        lines += notes_block(console, row, width)
    return lines


def print_lines(console: Console, lines: Iterable[Text]) -> None:
    """Print lines already fitted to the console's width (rich would not need to wrap them)."""
    for line in lines:
        console.print(line, highlight=False)


# ---- check ----------------------------------------------------------------------------------------


def comparison_rows(comparisons: Iterable[ComparisonResult]) -> list[TableRow]:
    """One row per output and comparison; the `other` cell is labelled with the side (keras, expected)."""
    return [
        TableRow(
            cells=dict(zip(HEADER, output_row(comparison, out), strict=True)),
            styles={"result": result_style(out.passed)},
            labels={"other": comparison.against},
            notes=tuple(output_notes(out)),
        )
        for comparison in comparisons
        for out in comparison.outputs
    ]


def layerwise_rows(rows: tuple[dict, ...]) -> list[TableRow]:
    """One row per layer output compared (--layerwise: with Keras, or with an export's own trace)."""
    return [
        TableRow(
            cells=dict(zip(LAYERWISE_HEADER, layerwise_cells(row), strict=True)),
            styles={"result": result_style(row["passed"])},
        )
        for row in rows
    ]


def layer_block(console: Console, report: CheckReport, width: int) -> list[Text]:
    """--layerwise table and conclusion; --expected-trace conclusion."""
    lines: list[Text] = []
    if report.layerwise is not None:
        lines += [Text()] + wrap(console, Text(LAYERWISE_TITLE), width, INDENT)
        lines += table_block(console, LAYERWISE_TABLE, layerwise_rows(report.layerwise), width)
        style = result_style(report.first_layer_divergence is None)
        lines += wrap(console, Text(first_divergence_text(report), style=style), width, INDENT)
    for label, rows in report.export_layerwise:
        lines += [Text()] + wrap(console, Text(export_layerwise_title(label)), width, INDENT)
        lines += table_block(console, LAYERWISE_TABLE, layerwise_rows(rows), width)
        style = result_style(report.first_export_divergence(label) is None)
        lines += wrap(console, Text(export_divergence_text(report, label), style=style), width, INDENT)
    if report.trace_compared:
        style = result_style(report.trace_divergence is None)
        lines += [Text()] + wrap(console, Text(trace_text(report), style=style), width, INDENT)
    return lines


def check_lines(console: Console, report: CheckReport, width: int) -> list[Text]:
    """The whole check report as lines of at most `width` cells."""
    lines = title_block(console, "lstm-parity check", report.spec.source, width)
    lines += header_block(console, header_lines(report), width)
    if report.comparisons:
        lines += [Text()] + table_block(console, CHECK_TABLE, comparison_rows(report.comparisons), width)
    else:
        lines += header_block(console, [("outputs", outputs_text(report))], width)
    lines += layer_block(console, report, width)
    return lines + [Text()] + wrap(console, Text(verdict(report), style=result_style(report.passed)), width, 0)


def render_check_rich(report: CheckReport, console: Console) -> None:
    """Print the check report on `console`, laid out for its width (see the module docstring)."""
    print_lines(console, check_lines(console, report, console.width))


# ---- upgrade --------------------------------------------------------------------------------------


def upgrade_lines(console: Console, report: UpgradeReport, width: int) -> list[Text]:
    """The upgrade report (provenance, proof table, hints, verdict) as lines of at most `width` cells."""
    from ..upgrade import PROOF_TITLE, upgrade_header, upgrade_verdict

    lines = title_block(console, "lstm-parity upgrade", f"{report.source} -> {report.target}", width)
    lines += header_block(console, upgrade_header(report), width)
    lines += wrap(console, Text(PROOF_TITLE), width, 2)
    lines += table_block(console, CHECK_TABLE, comparison_rows([report.comparison]), width)
    lines += header_block(console, [("hint", hint) for hint in report.hints], width)
    style = result_style(report.comparison.passed) if report.comparison.passed or not report.written else WARN_STYLE
    return lines + [Text()] + wrap(console, Text(upgrade_verdict(report), style=style), width, 0)


def render_upgrade_rich(report: UpgradeReport, console: Console) -> None:
    """Print the upgrade report on `console`, laid out for its width; says what upgrade.render_upgrade says."""
    print_lines(console, upgrade_lines(console, report, console.width))
