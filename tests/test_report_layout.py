"""The terminal (rich) reports laid out for the terminal's width: every number in full, no line wider than
the terminal, nothing elided, at 80, 100 and 160 columns (and a narrow 40 where tables become blocks).

Reports are real: the shipped tutorial model checked with and without Keras, against a port's outputs
(one wrong element, a wrong shape, a NaN), a two-output model, --layerwise on a diverging model, a
check-all summary with an unreadable model, and an upgrade proof."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console

from conftest import SAMPLES, build_with, save_model
from lstm_parity.check import CheckReport, run_check
from lstm_parity.check_all import Job, run_job
from lstm_parity.compare import ComparisonResult
from lstm_parity.formats import open_model
from lstm_parity.report.rich_report import render_check_rich, render_upgrade_rich
from lstm_parity.report.summary import render_summary, render_summary_rich, summary_row, summary_verdict
from lstm_parity.report.text import (
    first_divergence_text,
    header_lines,
    layerwise_cells,
    output_notes,
    output_row,
    render_check,
    verdict,
)
from lstm_parity.upgrade import UpgradeReport, upgrade_header, upgrade_verdict

WIDTHS = (80, 100, 160)
TUTORIAL, TUTORIAL_X = SAMPLES / "tutorial.keras", SAMPLES / "tutorial.input.npy"
KERAS2, KERAS2_X = SAMPLES / "tutorial_keras2.h5", SAMPLES / "tutorial_keras2.input.npy"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def rendered(render, width: int) -> str:
    """What `render(console)` shows on a `width`-column terminal, without colour codes."""
    console = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    render(console)
    return ANSI.sub("", console.file.getvalue())


def assert_fits(text: str, width: int, cells: list[str], prose: list[str] = ()) -> None:
    """No line wider than the terminal, nothing elided, every table cell unbroken, every word of prose
    present (prose may wrap between words, never inside one)."""
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"
    assert "…" not in text and "..." not in text
    for cell in cells:
        assert cell in text, f"{cell!r} missing or broken at width {width}:\n{text}"
    words = set(text.split())
    for sentence in prose:
        for word in sentence.split():
            assert word in words, f"{word!r} of {sentence!r} broken at width {width}:\n{text}"


def check_cells(report: CheckReport) -> list[str]:
    """Every cell of the per-output table, formatted as the renderers format them."""
    return [cell for c in report.comparisons for o in c.outputs for cell in output_row(c, o)]


def check_prose(report: CheckReport) -> list[str]:
    notes = [note for c in report.comparisons for o in c.outputs for note in output_notes(o)]
    return [text for _, text in header_lines(report)] + notes + [verdict(report), report.spec.source]


# ---- real reports -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tutorial():
    return open_model(str(TUTORIAL)), [np.load(TUTORIAL_X)]


@pytest.fixture(scope="module")
def reference(tutorial) -> np.ndarray:
    spec, inputs = tutorial
    return run_check(spec, inputs, keras=False).reference_outputs[0]  # (8, 1)


@pytest.fixture(scope="module")
def passing_no_keras(tutorial, reference) -> CheckReport:
    spec, inputs = tutorial
    return run_check(spec, inputs, keras=False, expected=[reference.copy()])


@pytest.fixture(scope="module")
def keras_and_port(tutorial, reference) -> CheckReport:
    """Two comparisons: Keras (passes) and a port with one element wrong (fails)."""
    spec, inputs = tutorial
    port = reference.copy()
    port[3, 0] += 2e-3
    return run_check(spec, inputs, expected=[port])


@pytest.fixture(scope="module")
def shape_mismatch(tutorial) -> CheckReport:
    spec, inputs = tutorial
    return run_check(spec, inputs, keras=False, expected=[np.zeros((8, 2), np.float32)])


@pytest.fixture(scope="module")
def nan_port(tutorial, reference) -> CheckReport:
    spec, inputs = tutorial
    port = reference.copy()
    port[5, 0] = np.nan
    return run_check(spec, inputs, keras=False, expected=[port])


def _two_outputs(k):
    inp = k.Input(shape=(5, 3))
    seq = k.layers.LSTM(4, return_sequences=True, name="sequence_features")(inp)
    head_a = k.layers.Dense(2, name="per_timestep_head")(seq)
    head_b = k.layers.Dense(1, name="summary_head")(k.layers.LSTM(3, name="summary_lstm")(seq))
    return k.Model(inp, [head_a, head_b])


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory) -> CheckReport:
    """A two-output model against Keras and against a port off by 5e-4 on the second output."""
    folder = tmp_path_factory.mktemp("two")
    spec = open_model(str(save_model(build_with("k3-keras", _two_outputs), "k3-keras", folder)))
    inputs = [np.random.default_rng(0).uniform(-1, 1, (3, 5, 3)).astype(np.float32)]
    ours = run_check(spec, inputs, keras=False).reference_outputs
    return run_check(spec, inputs, expected=[ours[0], ours[1] + 5e-4])


@pytest.fixture(scope="module")
def layerwise_failing() -> CheckReport:
    """A Keras 2 hard_sigmoid model computed with Keras 3 math: layers diverge from the first LSTM on."""
    return run_check(open_model(str(KERAS2)), [np.load(KERAS2_X)], semantics="keras3", layerwise=True)


@pytest.fixture(scope="module")
def layerwise_passing(tutorial) -> CheckReport:
    spec, inputs = tutorial
    return run_check(spec, inputs, layerwise=True)


REPORTS = ("passing_no_keras", "keras_and_port", "shape_mismatch", "nan_port", "two_outputs")


# ---- check ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", REPORTS)
def test_check_report_every_number_in_full(name, width, request):
    report = request.getfixturevalue(name)
    text = rendered(lambda console: render_check_rich(report, console), width)
    assert_fits(text, width, check_cells(report), check_prose(report))
    assert text.rstrip().splitlines()[-1] == verdict(report)


@pytest.mark.parametrize("width", WIDTHS)
def test_check_table_keeps_the_essential_columns_inline(keras_and_port, width):
    text = rendered(lambda console: render_check_rich(keras_and_port, console), width)
    header = next(line for line in text.splitlines() if line.lstrip().startswith("output"))
    for column in ("output", "vs", "max abs", "max rel", "atol", "min atol", "result"):
        assert column in header
    for comparison in keras_and_port.comparisons:
        out = comparison.outputs[0]
        row = next(line for line in text.splitlines() if line.split()[:2] == [out.name, comparison.against])
        cells = output_row(comparison, out)
        for cell in (cells[3], cells[4], cells[9], cells[10], cells[11]):  # max abs, max rel, atol, min atol, result
            assert cell in row.split()
    if width >= 160:  # wide: everything inline, no detail lines
        assert "worst at" in header and "reference" in header
    else:  # the worst element's values move under the row, labelled with the side
        assert "worst at (3, 0)" in text and "expected " in text


def test_shape_mismatch_says_why_under_its_row(shape_mismatch):
    text = rendered(lambda console: render_check_rich(shape_mismatch, console), 80)
    assert "FAIL (shape)" in text and "shapes differ" in text


def test_report_without_comparisons_lists_the_outputs(tutorial):
    spec, inputs = tutorial
    report = run_check(spec, inputs, keras=False)
    for width in WIDTHS:
        text = rendered(lambda console, r=report: render_check_rich(r, console), width)
        assert_fits(text, width, ["dense (8, 1)"], check_prose(report))


def test_long_paths_and_narrow_terminals_fold_rather_than_cut(passing_no_keras):
    long_name = "a_very_long_output_name_that_no_terminal_table_can_hold_beside_the_numbers"
    comparison = passing_no_keras.expected
    outputs = tuple(replace(o, name=long_name) for o in comparison.outputs)
    spec = replace(passing_no_keras.spec, source="/models/" + "deeply/nested/" * 8 + "tutorial.keras")
    report = replace(passing_no_keras, spec=spec, expected=replace(comparison, outputs=outputs))
    for width in (40, 80):
        text = rendered(lambda console: render_check_rich(report, console), width)
        cells = [c for c in check_cells(report) if c != long_name]  # a name wider than the screen may fold
        assert_fits(text, width, cells, [t for _, t in header_lines(report)])
        joined = "".join(line.strip() for line in text.splitlines())
        assert long_name in joined and spec.source in joined  # folded at 40 columns, never cut
    assert long_name in rendered(lambda console: render_check_rich(report, console), 80)


def test_plain_text_is_unchanged_by_the_layout(keras_and_port):
    text = render_check(keras_and_port)
    assert "  output  vs        shape   max abs" in text and "worst at" in text  # one fixed-column table
    assert all(cell in text for cell in check_cells(keras_and_port))


# ---- layerwise --------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ("layerwise_failing", "layerwise_passing"))
def test_layerwise_rows_every_number_in_full(name, width, request):
    report = request.getfixturevalue(name)
    text = rendered(lambda console: render_check_rich(report, console), width)
    cells = [cell for row in report.layerwise for cell in layerwise_cells(row) if cell != "-"]
    assert cells and report.layerwise
    assert_fits(text, width, cells + check_cells(report), check_prose(report) + [first_divergence_text(report)])


def test_layerwise_failing_names_the_first_diverging_layer(layerwise_failing):
    assert layerwise_failing.first_layer_divergence is not None
    text = rendered(lambda console: render_check_rich(layerwise_failing, console), 80)
    assert "EXCEEDS" in text and "first divergence: layer" in text


# ---- check-all --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def summary_results(tmp_path_factory, passing_no_keras, keras_and_port, layerwise_failing, two_outputs):
    noise = tmp_path_factory.mktemp("noise") / "noise.h5"
    noise.write_bytes(np.random.default_rng(1).bytes(2048))
    unreadable = run_job(Job("noise", str(noise)))
    assert unreadable[2] == 2 and unreadable[3]
    return [
        ("tutorial (no keras)", passing_no_keras, 0, None),
        ("tutorial vs a port", keras_and_port, 1, None),
        ("keras2 as keras3 with a rather long model name", layerwise_failing, 1, None),
        ("two outputs", two_outputs, 1, None),
        unreadable,
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_check_all_summary_every_number_in_full(summary_results, width):
    code = max(r[2] for r in summary_results)
    text = rendered(lambda console: render_summary_rich(summary_results, code, console), width)
    cells = [cell for result in summary_results for cell in summary_row(*result)[:3]]
    details = [summary_row(*result)[3] for result in summary_results]
    assert_fits(text, width, cells, details + [summary_verdict(summary_results, code)])
    assert "needs atol" in text and "ERROR (bad input)" in text


def test_check_all_plain_summary_is_unchanged(summary_results):
    text = render_summary(summary_results, 2, quiet=False)
    assert text.splitlines()[0].startswith("model") and "max abs diff" in text.splitlines()[0]
    assert any(line.startswith("noise") and "ERROR (bad input)" in line for line in text.splitlines())


# ---- upgrade ----------------------------------------------------------------------------------------


def upgrade_report(comparison: ComparisonResult, written: bool, change: float | None) -> UpgradeReport:
    return UpgradeReport(
        source=str(KERAS2),
        target="/tmp/upgraded/tutorial_keras2_as_keras3.keras",
        keras_version="2.21.0",
        semantics="keras2",
        transformed=["lstm: kernel, recurrent_kernel, bias columns i, f, o scaled by 1.2"],
        untouched_identical=True,
        comparison=comparison,
        semantic_change=change,
        written=written,
        hints=["lstm: called with initial_state on masked input; Keras 2 masks it, Keras 3 does not"],
    )


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ("pass", "fail", "allowed"))
def test_upgrade_proof_every_number_in_full(keras_and_port, which, width):
    comparison = keras_and_port.comparison if which == "pass" else keras_and_port.expected
    report = upgrade_report(comparison, which != "fail", 0.0123 if which == "allowed" else None)
    text = rendered(lambda console: render_upgrade_rich(report, console), width)
    cells = [cell for o in comparison.outputs for cell in output_row(comparison, o)]
    prose = [t for _, t in upgrade_header(report)] + report.hints + [upgrade_verdict(report)]
    assert_fits(text, width, cells, prose)


# ---- the real terminal ------------------------------------------------------------------------------


def test_cli_check_on_an_80_column_terminal(tmp_path):
    from test_ci_gate import _in_a_terminal

    port = np.zeros((8, 1), np.float32)
    np.save(tmp_path / "y.npy", port)
    args = ["check", TUTORIAL, TUTORIAL_X, "--no-keras", "--expected", tmp_path / "y.npy"]
    shown, code = _in_a_terminal(args, {"TERM": "xterm-256color", "COLUMNS": "80"})
    text = ANSI.sub("", shown).replace("\r", "")
    assert code == 1 and "FAIL: 0/1 comparisons" in text
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
