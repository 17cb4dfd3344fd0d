"""`make bench`: the reference against Keras `predict`, measured in the same run on this machine.

For each model: Keras 3 predict warm (after one call), our reference in float32 and float64;
median of several repetitions; ratio reference/Keras; achieved GFLOP/s of the recurrent matrix
products and its fraction of numpy's matmul rate measured here; max abs difference to Keras, so
speed never silently costs correctness. Then the start-up of `predict`/`dump` on a sample model
and (unless --no-stream) the peak memory of `predict` streaming a large input. Prints a table
and the issue's targets with PASS/MISS; writes the same as JSON (--json).
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
from cases import ROOT, build_cases, recurrent_flops

TARGETS = {"f32_speedup_vs_keras": 1.3, "f32_vs_matmul_floor": 1.5, "f64_vs_keras": 2.0, "startup_s": 0.3}


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


def bench_model(case, rates: dict[str, float]) -> dict:
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
    for name, dtype in (("f32", np.float32), ("f64", np.float64)):
        out = forward(spec, [case.x], dtype=dtype).outputs[0]
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
    return row


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
        lines.append(f"  {'PASS' if t['met'] else 'MISS'}  {t['what']}: {t['measured']}")
    return "\n".join(lines) + "\n"


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
        for case in cases:
            report["models"].append(bench_model(case, report["matmul_gflops"]))
            print(f"  measured {case.name}", file=sys.stderr)
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
