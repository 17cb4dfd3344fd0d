"""`make bench`: the reference against Keras `predict`, measured in the same run on this machine.

For each model: Keras 3 predict warm (after one call), our reference in float32 and float64;
median of several repetitions; ratio reference/Keras; achieved GFLOP/s of the recurrent matrix
products and its fraction of numpy's matmul rate measured here; max abs difference to Keras, so
speed never silently costs correctness. Then the start-up of `predict`/`dump` on a sample model
and (unless --stream-gb 0) the peak memory of `predict` streaming a large input. Prints a table
and the issues' targets with PASS/MISS (SKIP: not measurable here); writes the same as JSON (--json).

Where the dev extra is installed, the same cases exported (not timed) and run in ONNX Runtime (tf2onnx)
and LiteRT (an unrolled clone), on the reference's threads in chunks of the Keras batch: their seconds,
our float32 time over theirs, and their max abs difference to our float64 reference ("exports"), and
the target that our float32 reference be at least as fast as ONNX Runtime on every case.
Run it as `make bench` does, with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset: they change numpy's
matmul kernels and so every number here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exports
from cases import MASKED, ROOT, UNMASKED, Case, build_cases, recurrent_flops

OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # change the matmul rate; make bench unsets them
TARGETS = {
    "f32_speedup_vs_keras": 1.3,
    "f32_vs_matmul_floor": 1.5,
    "f64_vs_keras": 2.0,
    "startup_s": 0.3,
    "gru_vs_matmul_floor": 1.3,  # every GRU case
    "masked_vs_unmasked": 1.5,  # the masked Bidirectional's float32 time over the same model's without the mask
    "f32_vs_onnxruntime": 1.0,  # our float32 time over ONNX Runtime's, every case
}


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(dtype, size: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of one large square numpy matmul (all cores, the default BLAS threads)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    a @ b
    return 2.0 * size**3 / median_time(lambda: a @ b, reps) / 1e9


def bench_model(case, rates: dict[str, float]) -> tuple[dict, np.ndarray]:
    """The case's row of the main table, and the float64 reference's output (the exports' yardstick)."""
    import keras

    from lstm_parity.formats import open_model
    from lstm_parity.reference.forward import forward

    spec = open_model(str(case.path))
    model = keras.models.load_model(case.path, compile=False)
    model.predict(case.x, batch_size=case.keras_batch, verbose=0)  # warm: graph traced, memory touched
    keras_out = np.asarray(model.predict(case.x, batch_size=case.keras_batch, verbose=0))
    row = {
        "model": case.name,
        "batch": int(case.x.shape[0]),
        "shape": list(case.x.shape),
        "keras_s": median_time(lambda: model.predict(case.x, batch_size=case.keras_batch, verbose=0), case.reps),
        "gflop": recurrent_flops(spec, case.x) / 1e9,
    }
    outputs = {}
    for name, dtype in (("f32", np.float32), ("f64", np.float64)):
        out = outputs[name] = forward(spec, [case.x], dtype=dtype).outputs[0]
        seconds = median_time(lambda dtype=dtype: forward(spec, [case.x], dtype=dtype), case.reps)
        gflops = row["gflop"] / seconds
        row.update(
            {
                f"{name}_s": seconds,
                f"{name}_vs_keras": seconds / row["keras_s"],
                f"{name}_gflops": gflops,
                f"{name}_of_matmul": gflops / rates[name],
                f"{name}_vs_floor": seconds / (row["gflop"] / rates[name]),
                f"{name}_max_abs_diff": float(np.max(np.abs(out - keras_out))),
            }
        )
    return row, outputs["f64"]


def export_model(case: Case, folder: Path, skipped: dict[str, str | None]) -> dict:
    """The case's model as ONNX (a file) and TFLite (bytes of the unrolled clone at the case's time
    length), each with its conversion seconds and op counts, or the reason it could not be made."""
    import keras

    model = keras.models.load_model(case.path, compile=False)
    made: dict = {}
    if skipped["onnxruntime"] is None:
        path = folder / f"{case.path.stem}.onnx"
        start = time.perf_counter()
        try:
            with exports.quiet():
                exports.to_onnx(model, path)
            made["onnxruntime"] = {"file": path, "export_s": time.perf_counter() - start, "ops": exports.onnx_ops(path)}
        except Exception as error:
            made["onnxruntime"] = {"error": f"export: {exports.short(error)}"}
    if skipped["litert"] is None:
        start = time.perf_counter()
        try:
            with exports.quiet():
                data = exports.to_tflite(exports.unrolled_clone(model, case.x.shape[1]))
            made["litert"] = {"data": data, "export_s": time.perf_counter() - start, "ops": exports.tflite_ops(data)}
        except Exception as error:
            made["litert"] = {"error": f"unrolled clone/convert: {exports.short(error)}"}
    return made


def bench_runtime(runtime: str, made: dict, case: Case, reference: np.ndarray, row: dict, threads: int) -> dict:
    """One runtime on one case: warm-up, then the median of the case's repetitions over the whole batch
    in chunks of the Keras batch size; its ratio to our float32 time and its distance to float64."""
    entry = {"seconds": None, "ratio_f32": None, "max_abs_diff": None, "ops": made.get("ops")}
    if runtime == "onnxruntime" and entry["ops"] is not None:
        entry["rnn_ops"] = exports.rnn_kind(entry["ops"])
    if "error" in made:
        return entry | {"error": made["error"]}
    entry["export_s"] = made["export_s"]
    try:
        with exports.quiet():  # LiteRT announces its XNNPACK delegate on stderr
            if runtime == "onnxruntime":
                runner = exports.OrtRunner(made["file"], threads)
            else:
                runner = exports.LiteRTRunner(made["data"], threads)
            out = runner(case.x, case.keras_batch)  # warm-up, and the numbers compared
        if out.shape != reference.shape:
            raise ValueError(f"output shape {out.shape}, the reference's {reference.shape}")
        seconds = median_time(lambda: runner(case.x, case.keras_batch), case.reps)
    except Exception as error:
        return entry | {"error": f"run: {exports.short(error)}"}
    entry.update(
        {
            "seconds": seconds,
            "ratio_f32": row["f32_s"] / seconds,
            "max_abs_diff": float(np.max(np.abs(out.astype(np.float64) - reference))),
        }
    )
    return entry


def bench_exports(report: dict, cases: list[Case], references: list[np.ndarray], folder: Path) -> None:
    """Add "onnxruntime" and "litert" (null when not installed) to every row, after all Keras and
    reference timings (so the exporters' memory and threads cannot touch those)."""
    skipped = {"onnxruntime": exports.missing(exports.ONNX_MODULES), "litert": exports.missing(exports.LITERT_MODULES)}
    report["exports"] = {
        runtime: {"skipped": reason, "versions": None if reason else exports.versions(runtime)}
        for runtime, reason in skipped.items()
    }
    made: dict[tuple[Path, int], dict] = {}  # the two tutorial cases share one model: exported once
    for case, reference, row in zip(cases, references, report["models"], strict=True):
        key = (case.path, case.x.shape[1])
        if key not in made:
            made[key] = export_model(case, folder, skipped)
        for runtime, reason in skipped.items():
            row[runtime] = (
                None if reason else bench_runtime(runtime, made[key][runtime], case, reference, row, report["threads"])
            )
        print(f"  exported and measured {case.name}", file=sys.stderr)


def startup(command: list[str], reps: int = 5) -> dict:
    """Median wall time of a whole `lstm-parity` process, and whether it imported TensorFlow/Keras."""
    seconds = median_time(lambda: subprocess.run(command, check=True, capture_output=True), reps)
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lstm_parity", *command[1:]],
        capture_output=True,
        text=True,
        check=True,
    )
    packages = {line.split("|")[-1].strip().split(".")[0] for line in probe.stderr.splitlines()}  # -X importtime
    heavy = sorted(packages & {"tensorflow", "keras", "tf_keras"})
    return {
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
        "seconds": seconds,
        "imports": heavy,
    }


def peak_rss(command: list[str]) -> dict:
    """Run `command` under /usr/bin/time -v: exit code, wall seconds, peak RSS in MB."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    peak_kb = next(
        (int(line.split(":")[1]) for line in done.stderr.splitlines() if "Maximum resident set size" in line), -1
    )
    return {"exit_code": done.returncode, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_kb / 1024}


def stream_memory(folder: Path, model_path: Path, gigabytes: float) -> dict:
    """`predict` and `check` streaming a .npy of `gigabytes` (2-layer LSTM rows): peak RSS of each, and of
    Keras alone (import, load, predict one default chunk 10 times: its steady state) as the floor
    `check` cannot go under."""
    rows = int(gigabytes * 1e9 // (50 * 32 * 4))
    big = folder / "big_input.npy"
    array = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(rows, 50, 32))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 20_000):
        stop = min(rows, start + 20_000)
        array[start:stop] = rng.standard_normal((stop - start, 50, 32), dtype=np.float32)
    array.flush()
    del array
    cli = str(Path(sys.executable).parent / "lstm-parity")
    out = folder / "big_output.npy"
    result = {
        "input_bytes": big.stat().st_size,
        "rows": rows,
        "predict": peak_rss([cli, "predict", str(model_path), str(big), "-o", str(out), "--dtype", "float32"]),
        "check": peak_rss(
            [cli, "check", str(model_path), str(big), "--dtype", "float32", "-q", "--batch-size", "1024"]
        ),
    }
    result["predict"]["command"] = (
        "/usr/bin/time -v lstm-parity predict lstm2.keras big_input.npy -o out.npy --dtype float32"
    )
    result["check"]["command"] = (
        "/usr/bin/time -v lstm-parity check lstm2.keras big_input.npy --dtype float32 -q --batch-size 1024"
    )
    if result["predict"]["exit_code"] == 0:
        result["output_shape"] = list(np.load(out, mmap_mode="r").shape)
    keras_alone = (
        f"import numpy as np, keras; m = keras.models.load_model({str(model_path)!r}, compile=False); "
        f"x = np.zeros(({32 * 1024**2 // 6400}, 50, 32), np.float32); "
        f"[m.predict(x, batch_size=1024, verbose=0) for _ in range(10)]"
    )
    result["keras_alone"] = peak_rss([sys.executable, "-c", keras_alone])
    result["keras_alone"]["command"] = "python -c 'import keras; load_model; predict a 32 MB chunk 10 times'"
    big.unlink()
    out.unlink(missing_ok=True)
    return result


def _floor(ratio: float, gflop: float) -> str:
    return f"{ratio:.2f}" if gflop >= 0.1 else "-"  # tiny models: call overhead, not arithmetic


def render(report: dict) -> str:
    rates = report["matmul_gflops"]
    lines = [
        f"lstm-parity bench  {report['machine']}",
        f"numpy matmul here: float32 {rates['f32']:.0f} GFLOP/s, float64 {rates['f64']:.0f} GFLOP/s "
        f"(2048x2048, {report['blas']}); reference threads: {report['threads']}",
        *(
            f"note: {name}={value} is set: numpy's matmul runs other kernels than without it (make bench unsets it)"
            for name, value in report.get("openblas_env", {}).items()
        ),
        "",
    ]
    head = (
        f"{'model':24} {'batch':>6} {'GFLOP':>6} {'keras s':>8} {'f32 s':>8} {'f32/k':>6} {'f32 GF/s':>8} "
        f"{'%mm':>4} {'xfloor':>6} {'f64 s':>8} {'f64/k':>6} {'f64 GF/s':>8} {'%mm':>4} "
        f"{'f32 maxdiff':>11} {'f64 maxdiff':>11}"
    )
    lines += [head, "-" * len(head)]
    for r in report["models"]:
        lines.append(
            f"{r['model']:24} {r['batch']:>6} {r['gflop']:>6.1f} {r['keras_s']:>8.4f} {r['f32_s']:>8.4f} "
            f"{r['f32_vs_keras']:>6.2f} {r['f32_gflops']:>8.1f} {100 * r['f32_of_matmul']:>4.0f} "
            f"{_floor(r['f32_vs_floor'], r['gflop']):>6} {r['f64_s']:>8.4f} {r['f64_vs_keras']:>6.2f} "
            f"{r['f64_gflops']:>8.1f} {100 * r['f64_of_matmul']:>4.0f} "
            f"{r['f32_max_abs_diff']:>11.2e} {r['f64_max_abs_diff']:>11.2e}"
        )
    lines += [
        "",
        "f32/k, f64/k: reference time / Keras warm predict time (below 1 = faster than Keras); "
        "%mm: achieved GFLOP/s as % of the matmul rate above; xfloor: time / (GFLOP / matmul rate).",
        "",
    ]
    if "exports" in report:
        lines += render_exports(report)
    for s in report["startup"]:
        lines.append(
            f"start-up: {s['command']}: {s['seconds']:.3f} s wall (median of 5), imports "
            f"{', '.join(s['imports']) or 'no TensorFlow/Keras'}"
        )
    if report.get("stream"):
        s = report["stream"]
        lines.append(f"streaming a {s['input_bytes'] / 1e9:.2f} GB input ({s['rows']} sequences of 50 x 32):")
        for key in ("predict", "check", "keras_alone"):
            r = s[key]
            lines.append(
                f"  {r['command']}: exit {r['exit_code']}, {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
            )
    lines += ["", "targets:"]
    for t in report["targets"]:
        verdict = "SKIP" if t["met"] is None else "PASS" if t["met"] else "MISS"
        lines.append(f"  {verdict}  {t['what']}: {t['measured']}")
    return "\n".join(lines) + "\n"


def _cell(entry: dict | None, key: str, form: str) -> str:
    return "-" if entry is None or entry.get(key) is None else format(entry[key], form)


def _seconds(seconds: float | None) -> str:
    """4 decimals like the main table, or 2 significant digits under a millisecond (batch 1)."""
    return "-" if seconds is None else f"{seconds:.4f}" if seconds >= 1e-3 else f"{seconds:.1e}"


def render_exports(report: dict) -> list[str]:
    """The "exports" section: ONNX Runtime and LiteRT beside our float32 reference, one line per case."""
    info = report["exports"]
    lines = [
        f"exports, run on the reference's {report['threads']} threads in chunks of the Keras batch "
        f"(conversion not timed in 's'):"
    ]
    for runtime, label in (("onnxruntime", "ONNX Runtime"), ("litert", "LiteRT")):
        detail = info[runtime]["skipped"] and f"skipped: {info[runtime]['skipped']}"
        lines.append(f"  {label}: {detail or info[runtime]['versions']}")
    if all(info[runtime]["skipped"] for runtime in info):
        return [*lines, ""]
    head = (
        f"{'model':24} {'f32 s':>8} {'ort s':>8} {'f32/ort':>7} {'ort maxdiff':>11} {'onnx RNN ops':>14} "
        f"{'litert s':>8} {'f32/lite':>8} {'lite maxdiff':>12} {'export s':>10}"
    )
    lines += [head, "-" * len(head)]
    failures = []
    for r in report["models"]:
        ort, lite = r["onnxruntime"], r["litert"]
        export = "/".join(_cell(e, "export_s", ".1f") for e in (ort, lite))
        lines.append(
            f"{r['model']:24} {_seconds(r['f32_s']):>8} {_seconds(ort and ort['seconds']):>8} "
            f"{_cell(ort, 'ratio_f32', '.2f'):>7} "
            f"{_cell(ort, 'max_abs_diff', '.2e'):>11} {_cell(ort, 'rnn_ops', ''):>14} "
            f"{_seconds(lite and lite['seconds']):>8} {_cell(lite, 'ratio_f32', '.2f'):>8} "
            f"{_cell(lite, 'max_abs_diff', '.2e'):>12} {export:>10}"
        )
        failures += [
            f"  {r['model']}: {name}: {e['error']}"
            for name, e in (("onnxruntime", ort), ("litert", lite))
            if e and "error" in e
        ]
    lines += [
        "",
        "f32/ort, f32/lite: our float32 reference time / their time (above 1 = they are faster than ours, "
        "below 1 = ours is faster);",
        "maxdiff: max abs difference to our float64 reference; onnx RNN ops: fused LSTM/GRU nodes, or Loop "
        "(a generic loop; op counts include Loop bodies);",
        "LiteRT runs the model cloned with unroll=True at the input's length; export s: ONNX / TFLite conversion "
        "seconds.",
        *(["not measured ('-'):", *failures] if failures else []),
        "",
    ]
    return lines


def targets(report: dict) -> list[dict]:
    two = next(r for r in report["models"] if r["model"].startswith("lstm 128"))
    out = [
        {
            "what": f"float32 reference >= {TARGETS['f32_speedup_vs_keras']}x faster than Keras warm predict "
            f"(2-layer LSTM)",
            "measured": f"{1 / two['f32_vs_keras']:.2f}x faster",
            "met": 1 / two["f32_vs_keras"] >= TARGETS["f32_speedup_vs_keras"],
        },
        {
            "what": f"float32 reference within {TARGETS['f32_vs_matmul_floor']}x of the matmul floor (2-layer LSTM)",
            "measured": f"{two['f32_vs_floor']:.2f}x the floor ({two['gflop']:.0f} GFLOP at "
            f"{report['matmul_gflops']['f32']:.0f} GFLOP/s = {two['gflop'] / report['matmul_gflops']['f32']:.3f} s)",
            "met": two["f32_vs_floor"] <= TARGETS["f32_vs_matmul_floor"],
        },
        {
            "what": f"float64 reference within {TARGETS['f64_vs_keras']}x of Keras (every model)",
            "measured": ", ".join(f"{r['model']}: {r['f64_vs_keras']:.2f}x" for r in report["models"]),
            "met": all(r["f64_vs_keras"] <= TARGETS["f64_vs_keras"] for r in report["models"]),
        },
    ]
    out += speed_targets(report)
    for s in report["startup"]:
        out.append(
            {
                "what": f"{s['command'].split()[1]} under {TARGETS['startup_s']} s wall, no TensorFlow import",
                "measured": f"{s['seconds']:.3f} s, imports {s['imports'] or 'none'}",
                "met": s["seconds"] < TARGETS["startup_s"] and not s["imports"],
            }
        )
    if report.get("stream"):
        s = report["stream"]
        p, c, k = s["predict"], s["check"], s["keras_alone"]
        out.append(
            {
                "what": f"streaming predict of a {s['input_bytes'] / 1e9:.1f} GB input under "
                f"{report['stream_budget_mb']} MB peak RSS",
                "measured": f"{p['peak_rss_mb']:.0f} MB",
                "met": p["exit_code"] == 0 and p["peak_rss_mb"] < report["stream_budget_mb"],
            }
        )
        out.append(
            {
                "what": f"streaming check of the same input within {report['stream_budget_mb']} MB of "
                f"Keras' own footprint predicting such chunks",
                "measured": f"{c['peak_rss_mb']:.0f} MB vs Keras alone {k['peak_rss_mb']:.0f} MB",
                "met": c["exit_code"] == 0 and c["peak_rss_mb"] - k["peak_rss_mb"] < report["stream_budget_mb"],
            }
        )
    return out


def speed_targets(report: dict) -> list[dict]:
    """The GRU against its matmul floor, the masked Bidirectional against the same model unmasked, and
    our float32 time against ONNX Runtime's on every case (met: None when ONNX Runtime was not run)."""
    rows = {r["model"]: r for r in report["models"]}
    grus = [r for r in report["models"] if r["model"].startswith("gru")]
    limit = TARGETS["gru_vs_matmul_floor"]
    out = [
        {
            "what": f"GRU float32 within {limit}x of the matmul floor",
            "measured": ", ".join(f"{r['model']}: {r['f32_vs_floor']:.2f}x" for r in grus),
            "met": all(r["f32_vs_floor"] <= limit for r in grus),
        }
    ]
    if MASKED in rows and UNMASKED in rows:
        ratio = rows[MASKED]["f32_s"] / rows[UNMASKED]["f32_s"]
        out.append(
            {
                "what": f"masked Bidirectional no slower than {TARGETS['masked_vs_unmasked']}x the same model "
                f"unmasked (float32)",
                "measured": f"{ratio:.2f}x ({rows[MASKED]['f32_s']:.4f} s / {rows[UNMASKED]['f32_s']:.4f} s)",
                "met": ratio <= TARGETS["masked_vs_unmasked"],
            }
        )
    ort = [(r["model"], (r.get("onnxruntime") or {}).get("ratio_f32")) for r in report["models"]]
    skipped = (report.get("exports") or {}).get("onnxruntime", {}).get("skipped")
    out.append(
        {
            "what": "float32 reference at least as fast as ONNX Runtime on every case (our time / theirs <= "
            f"{TARGETS['f32_vs_onnxruntime']})",
            "measured": f"not run ({skipped})"
            if skipped or "exports" not in report
            else ", ".join(f"{name}: {'-' if ratio is None else f'{ratio:.2f}'}" for name, ratio in ort),
            "met": None
            if skipped or "exports" not in report
            else all(ratio is not None and ratio <= TARGETS["f32_vs_onnxruntime"] for _, ratio in ort),
        }
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "build" / "bench.json"), help="where to write the JSON")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the batches (quick look)")
    parser.add_argument("--stream-gb", type=float, default=2.0, help="size of the streamed input (0: skip)")
    args = parser.parse_args()

    from threadpoolctl import threadpool_info

    from lstm_parity.reference.parallel import default_threads

    blas = next(
        (
            f"{i['internal_api']} {i['version']} {i.get('architecture', '')}, {i['num_threads']} threads"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ),
        "unknown BLAS",
    )
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}",
        "blas": blas,
        "openblas_env": {name: os.environ[name] for name in OPENBLAS_OVERRIDES if name in os.environ},
        "threads": default_threads(),
        "matmul_gflops": {"f32": matmul_rate(np.float32), "f64": matmul_rate(np.float64)},
        "stream_budget_mb": 600,
    }
    with tempfile.TemporaryDirectory(prefix="lstm-parity-bench-") as tmp:
        folder = Path(tmp)
        cases = build_cases(folder, args.scale)
        import keras

        report["keras"] = keras.__version__
        report["models"] = []
        references = []
        for case in cases:
            row, reference = bench_model(case, report["matmul_gflops"])
            report["models"].append(row)
            references.append(reference)
            print(f"  measured {case.name}", file=sys.stderr)
        bench_exports(report, cases, references, folder)
        cli = str(Path(sys.executable).parent / "lstm-parity")
        sample = ROOT / "sample_models"
        report["startup"] = [
            startup(
                [
                    cli,
                    "predict",
                    str(sample / "tutorial.keras"),
                    str(sample / "tutorial.input.npy"),
                    "-o",
                    str(folder / "y.npy"),
                ]
            ),
            startup([cli, "dump", str(sample / "tutorial.keras"), "-o", str(folder / "dump.json")]),
        ]
        if args.stream_gb > 0:
            report["stream"] = stream_memory(folder, folder / "lstm2.keras", args.stream_gb)
    report["targets"] = targets(report)
    text = render(report)
    print(text, end="")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
