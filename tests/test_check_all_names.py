"""check-all names each model by its `name`, else by its path relative to the TOML file (never the absolute
path, which stays in the JSON), and its summary stays readable on many models: the plain table keeps within
120 columns for names of up to 40 characters, a model that could not be checked shows a short result in the
table and its message in full below it ("errors:"), and the terminal view fits a 120-column console.

Fast: the shipped tutorial models without Keras (`no_keras = true`) and a few paths that do not exist."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from conftest import SAMPLES
from lstm_parity.check_all import load_jobs
from lstm_parity.report.summary import (
    ERRORS_TITLE,
    PLAIN_WIDTH,
    render_summary,
    render_summary_rich,
    run_all,
    summary_json,
    summary_verdict,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TUTORIALS = ("tutorial.keras", "tutorial_keras2.h5", "tutorial_legacy.h5")
MISSING = (
    "exports/2024-06/encoder_v17_final.keras",
    "models/archive/decoder-with-attention.h5",
    "nowhere.h5",
)


def _entry(path: object, name: str | None = None, **extra: object) -> str:
    lines = ["[[tool.lstm-parity.models]]", f'path = "{path}"']
    lines += [f'name = "{name}"'] if name is not None else []
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def fleet(tmp_path):
    """A TOML of 30 models in its own folder: the tutorial models (copied beside it, and once by absolute
    path) under names of up to 40 characters, one compared with a wrong port (FAIL), and three paths that
    do not exist (one deep), named by their relative path."""
    folder = tmp_path / "ci"
    (folder / "models").mkdir(parents=True)
    for name in TUTORIALS:
        shutil.copy(SAMPLES / name, folder / "models" / name)
    np.save(folder / "zeros.npy", np.zeros((8, 1), np.float32))
    entries = ["[tool.lstm-parity]\nno_keras = true\nsamples = 2\n"]
    for index in range(25):
        name = f"team-{index:02d}/" + "speech-encoder-bidirectional-v2"[: 6 + index] + f"-{index}"
        entries.append(_entry(f"models/{TUTORIALS[index % 3]}", name[:40]))
    entries.append(_entry("models/tutorial.keras"))  # no name: "models/tutorial.keras"
    entries.append(
        _entry(
            "models/tutorial.keras",
            "tutorial vs a wrong port",
            input=SAMPLES / "tutorial.input.npy",
            expected="zeros.npy",
        )
    )
    entries += [_entry(path) for path in MISSING]
    config = folder / "parity.toml"
    config.write_text("\n".join(entries))
    return config


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a folder that is not the TOML's."""
    cwd = tmp_path / "somewhere" / "else"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return cwd


def test_names_are_relative_to_the_toml_file(tmp_path, elsewhere, run_cli):
    folder = tmp_path / "project" / "ci"
    (folder / "models").mkdir(parents=True)
    shutil.copy(SAMPLES / "tutorial.keras", folder / "models" / "encoder.keras")
    config = folder / "parity.toml"
    config.write_text(
        "no_keras = true\n"
        + _entry("models/encoder.keras")
        + _entry("./models/../models/encoder.keras")
        + _entry(str(folder / "models" / "encoder.keras"))  # absolute in the TOML: still named relative to it
        + _entry(str(SAMPLES / "tutorial.keras"), "tutorial")
        + _entry("../missing.h5")
    )
    jobs = load_jobs(os.path.relpath(config, elsewhere))
    assert [job.name for job in jobs] == [
        "models/encoder.keras",
        "models/encoder.keras",
        "models/encoder.keras",
        "tutorial",
        "../missing.h5",
    ]
    assert all(os.path.isabs(job.path) for job in jobs)

    result = run_cli("check-all", os.path.relpath(config, elsewhere), "--json", "-")
    assert result.exit_code == 2, result.output
    models = json.loads(result.stdout)["models"]
    assert [m["name"] for m in models] == [job.name for job in jobs]
    for model, job in zip(models, jobs, strict=True):
        assert os.path.isabs(model["path"]) and model["path"] == job.path
    assert "missing.h5: cannot read" in models[4]["error"]

    plain = run_cli("check-all", config).stdout
    assert str(tmp_path) not in plain.split(ERRORS_TITLE)[0]  # the table names no absolute path
    assert plain.splitlines()[1].startswith("models/encoder.keras  PASS")


def test_plain_table_fits_120_columns_and_errors_are_listed_in_full(fleet, elsewhere, run_cli):
    result = run_cli("check-all", fleet)
    assert result.exit_code == 2, result.output
    text = result.stdout
    table, _, rest = text.partition("\n\n" + ERRORS_TITLE + "\n")
    assert rest, text
    lines = table.splitlines()
    assert lines[0].startswith("model") and "max abs diff" in lines[0] and len(lines) == 1 + 30
    assert all(len(line) <= PLAIN_WIDTH for line in lines), max(lines, key=len)
    assert str(fleet.parent) not in table  # no absolute path in the table
    missing_rows = [line for line in lines if line.split()[0] in MISSING]
    assert len(missing_rows) == 3 and all(line.rstrip().endswith("ERROR (bad input)  -") for line in missing_rows)
    assert any(line.startswith("models/tutorial.keras  ") and "PASS" in line for line in lines)
    assert any(line.startswith("tutorial vs a wrong port") and "needs atol" in line for line in lines)

    models = json.loads(run_cli("check-all", fleet, "--json", "-").stdout)["models"]
    errors = [(m["name"], m["error"]) for m in models if m["error"]]
    assert [name for name, _ in errors] == list(MISSING)
    listed = rest.splitlines()
    for name, error in errors:
        assert "cannot read" in error and str(fleet.parent) in error  # the JSON's message, in full
        assert f"  {name}: {error}" in listed  # ... and below the table, one line each
    assert listed[-1] == "FAIL: 26/30 models passed, 1 failed, 3 could not be checked (exit 2)"
    assert run_cli("check-all", fleet, "-q").stdout == listed[-1] + "\n"


def test_a_long_detail_wraps_within_the_plain_table():
    """A model failing on many outputs: its `needs atol` parts wrap under the detail column, none cut."""

    def output(name: str, atol: float):
        return SimpleNamespace(name=name, passed=False, max_abs_diff=atol, min_atol_to_pass=atol)

    outputs = [output(f"dense_head_{i}", 10.0**-i) for i in range(1, 7)]
    report = SimpleNamespace(comparisons=[SimpleNamespace(against="expected", outputs=outputs)])
    results = [("x" * 40, report, 1, None), ("short", None, 2, "y" * 300)]
    text = render_summary(results, 2, quiet=False)
    table = text.split("\n\n")[0].splitlines()
    assert all(len(line) <= PLAIN_WIDTH for line in table) and len(table) > 3
    joined = " ".join(line.strip() for line in table)
    for out in outputs:
        assert f"{out.name} vs expected: needs atol" in joined
    assert f"  short: {'y' * 300}" in text.splitlines()


def test_rich_summary_at_120_columns(fleet, elsewhere):
    results = run_all(load_jobs(str(fleet)), 1)
    code = max(r[2] for r in results)
    console = Console(width=120, file=io.StringIO(), force_terminal=True, color_system=None)
    render_summary_rich(results, code, console)
    text = ANSI.sub("", console.file.getvalue())
    lines = text.splitlines()
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    assert "…" not in text and "..." not in text
    assert lines[0].split() == ["model", "result", "max", "abs", "diff", "detail"]  # one table, not row blocks
    assert ERRORS_TITLE in lines and lines[-1] == summary_verdict(results, code)
    errors_at = lines.index(ERRORS_TITLE)
    table, below = lines[:errors_at], "\n".join(lines[errors_at:])
    for name, _, _, error in results:
        assert any(line.startswith(f"  {name}  ") for line in table), name  # one line, unbroken
        if error:
            assert error not in "\n".join(table)
            assert f"  {name}:" in below
            # in full and in order (a path longer than a line, as pytest's tmp paths may be, folds)
            assert "".join(error.split()) in "".join(below.split())


def test_json_keeps_the_absolute_path_and_the_full_error(fleet, elsewhere):
    jobs = load_jobs(str(fleet))
    results = run_all(jobs, 1)
    data = json.loads(summary_json(results, max(r[2] for r in results)))
    for model, job, result in zip(data["models"], jobs, results, strict=True):
        assert model["name"] == job.name and model["path"] == job.path and model["error"] == result[3]


def test_cli_check_all_on_a_120_column_terminal(fleet):
    from test_ci_gate import _in_a_terminal

    shown, code = _in_a_terminal(["check-all", fleet], {"TERM": "xterm-256color", "COLUMNS": "120"})
    lines = re.split(r"\r\n|\r|\n", ANSI.sub("", shown))
    assert code == 2 and "FAIL: 26/30 models passed, 1 failed, 3 could not be checked (exit 2)" in lines
    assert "…" not in shown and all(len(line) <= 120 for line in lines), max(lines, key=len)
    assert ERRORS_TITLE in lines and any(re.match(r"  nowhere\.h5 +ERROR \(bad input\)", line) for line in lines)
