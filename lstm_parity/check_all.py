"""`check-all`: many models from a `[tool.lstm-parity]` table (pyproject.toml or a given TOML file),
checked in parallel processes; one failing model never hides the others; the exit code is the worst.

    [tool.lstm-parity]
    atol = 1e-5                      # defaults for every model (any `check` option below)
    [[tool.lstm-parity.models]]
    path = "models/encoder.keras"    # relative to the TOML file; the model's name unless `name` is given
    input = "data/x.npy"             # or samples/seed/timesteps/range to generate inputs
    expected = "port/y.npy"          # outputs of your port, compared with the reference
    atol = ["1e-4", "dense_1:1e-3"]  # per-output overrides as on the command line
    no_keras = false
    plugins = ["my_layers.py"]       # plugin files for custom layers (relative to the TOML file), as --plugin
    trust_model_code = false         # true: DANGEROUS, as --trust-model-code (Keras runs the file's Lambdas)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (a dependency there)
    import tomli as tomllib

from .errors import EXIT_PARITY_FAILURE, EXIT_PASS, BadInputError, LstmParityError

KNOWN_KEYS = {
    "path",
    "name",
    "input",
    "expected",
    "samples",
    "seed",
    "timesteps",
    "range",
    "atol",
    "rtol",
    "no_keras",
    "semantics",
    "dtype",
    "batch_size",
    "against",  # exported models to gate too (paths relative to the TOML file), as check --against
    "profile",
    "require",
    "classes",
    "allow_external_data",
    "tflm_arena",  # tensor arena bytes for tflm: exports, as check --tflm-arena
    "openvino_precision",  # auto, f32, bf16 or f16 for openvino: exports, as check --openvino-precision
    "plugins",  # plugin files (paths relative to the TOML file), as check --plugin
    "trust_model_code",  # TOML true only: let Keras load this model's Lambda layers, as check --trust-model-code
}


@dataclass(frozen=True)
class Job:
    name: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)


def load_jobs(config_path: str | None) -> list[Job]:
    """Read the model list; raises BadInputError naming the file and the problem."""
    path = config_path or "pyproject.toml"
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise BadInputError(
            f"{path}: no such file (check-all reads [tool.lstm-parity] from pyproject.toml or the TOML file you name)"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("tool", {}).get("lstm-parity", data.get("lstm-parity", data if "models" in data else None))
    if not isinstance(table, dict) or not isinstance(table.get("models"), list) or not table["models"]:
        raise BadInputError(f"{path}: no [[tool.lstm-parity.models]] entries")
    from .runners.open import relocate

    base = os.path.dirname(os.path.abspath(path))
    defaults = {k: v for k, v in table.items() if k != "models"}
    jobs = []
    for index, entry in enumerate(table["models"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise BadInputError(f"{path}: models[{index}] needs a path")
        merged = {**defaults, **entry}
        unknown = sorted(set(merged) - KNOWN_KEYS)
        if unknown:
            raise BadInputError(f"{path}: models[{index}] has unknown keys {unknown} (known: {sorted(KNOWN_KEYS)})")
        _check_runner_keys(merged, f"{path}: models[{index}]")
        for key in ("path", "input", "expected"):
            if isinstance(merged.get(key), str):
                merged[key] = os.path.join(base, merged[key])
        merged["against"] = [relocate(p, base) for p in _as_list(merged.get("against", []))]
        merged["plugins"] = [os.path.join(base, p) for p in _as_list(merged.get("plugins", []))]
        model_path = merged.pop("path")
        merged.pop("name", None)  # a top-level `name` would give every model the same one
        name = str(entry["name"]) if "name" in entry else job_name(model_path, base)
        jobs.append(Job(name=name, path=model_path, options=merged))
    return jobs


OPENVINO_PRECISIONS = ("auto", "f32", "bf16", "f16")  # as check --openvino-precision


def _check_runner_keys(entry: dict, where: str) -> None:
    """tflm_arena is a positive whole number of bytes, openvino_precision one of OPENVINO_PRECISIONS."""
    arena = entry.get("tflm_arena")
    if arena is not None and (isinstance(arena, bool) or not isinstance(arena, int) or arena < 1):
        raise BadInputError(f"{where}: tflm_arena must be a positive whole number of bytes, not {arena!r}")
    precision = entry.get("openvino_precision", "auto")
    if precision not in OPENVINO_PRECISIONS:
        raise BadInputError(
            f"{where}: openvino_precision must be one of {', '.join(OPENVINO_PRECISIONS)}, not {precision!r}"
        )


def job_name(model_path: str, base: str) -> str:
    """How check-all names a model that has no `name`: its path relative to the TOML file's folder (as the
    TOML usually writes it, `models/encoder.keras`), never the absolute path, which makes the summary table
    too wide; the absolute path stays in the JSON's `path`. A path on another drive keeps its own spelling."""
    try:
        return os.path.relpath(model_path, base)
    except ValueError:  # Windows: another drive has no relative path
        return model_path


def run_job(job: Job) -> tuple[str, Any, int, str | None]:
    """Check one model with its plugins in force; returns (name, CheckReport or None, exit code, one-line
    error or None)."""
    from .plugins import plugins_in_use

    exports: list[Any] = []
    try:
        with plugins_in_use(job.options.get("plugins", [])):
            return _check_job(job, exports)
    except LstmParityError as exc:
        return job.name, None, exc.exit_code, exc.message
    except Exception as exc:  # a bug of ours must not hide the other models
        return job.name, None, 5, f"internal error: {type(exc).__name__}: {exc}"
    finally:
        for runner in exports:
            runner.close()


def _check_job(job: Job, exports: list[Any]) -> tuple[str, Any, int, str | None]:
    """run_job's check, with the job's plugins in force; `exports` collects the opened runners (to close)."""
    from .check import CheckOptions, run_check
    from .cli_support import load_expected, make_inputs, parse_tolerance
    from .formats import open_model
    from .profiles import parse_require
    from .runners.open import fixed_timesteps, open_export

    options = job.options
    spec = open_model(job.path)
    for path in options.get("against", []):
        exports.append(
            open_export(
                path,
                spec,
                options.get("allow_external_data") is True,
                batch_size=int(options.get("batch_size", 32)),
                tflm_arena=options.get("tflm_arena"),
                openvino_precision=str(options.get("openvino_precision", "auto")),
                trust_model_code=options.get("trust_model_code") is True,
            )
        )
    inputs = make_inputs(
        spec,
        options.get("input"),
        int(options.get("samples", 4)),
        int(options.get("seed", 0)),
        fixed_timesteps(exports) or int(options.get("timesteps", 12)),
        str(options.get("range", "-1,1")),
    )
    expected = load_expected(spec, options["expected"]) if options.get("expected") else None
    tolerance = parse_tolerance(_as_list(options.get("atol", "1e-5")), _as_list(options.get("rtol", "1e-5")))
    settings = CheckOptions(
        semantics=options.get("semantics"),
        dtype=options.get("dtype", "float64"),
        tolerance=tolerance,
        batch_size=int(options.get("batch_size", 32)),
        keras=not options.get("no_keras", False),
        trust_model_code=options.get("trust_model_code") is True,  # TOML true only (never a string)
        profile=options.get("profile"),
        rules=tuple(parse_require(text) for text in _as_list(options.get("require", []))),
        classes=options.get("classes") is True,  # TOML true only (a string "false" is not true)
    )
    report = run_check(spec, inputs, settings, expected=expected, exports=exports)
    return job.name, report, EXIT_PASS if report.passed else EXIT_PARITY_FAILURE, None


def _as_list(value: object) -> list[str]:
    """A TOML value that may be one string or a list of them (tolerances, against, require)."""
    return [str(x) for x in value] if isinstance(value, list) else [str(value)]
