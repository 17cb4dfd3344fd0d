"""TFLite Micro, OpenVINO and hls4ml as `check --against` runners, on real runtimes and small seeded models:
the fused LSTM's state leak under TFLM and the batch-1 unrolled file passing; OpenVINO exact with f32
pinned, bf16 named and failing float32, a Loop refused in one line; hls4ml failing float32, passing a
stated tolerance, and its per-layer trace naming the layer and timestep that use up their share of the
tolerance. Around them: the reset verdict judged as the side is, a too-small TFLM arena, bad IR files,
hls4ml configs, the compiler, the capture of native output.

Every model and file is built once per module (lazily). hls4ml compiles twice, in two tests: a Keras 3
encoder/decoder with its default config (every check of its numbers in one test), and a tf_keras
Bidirectional/GRU model with a YAML config in the one-report CLI test (--layerwise included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_parity
from conftest import ROOT, build_with, save_model
from exports import FEATURES, TIME, flex_tflite, fused_fixed_batch_lstm, to_onnx, to_tflite, unrolled_lstm
from lstm_parity.check import default_profile, layerwise_rows, run_check
from lstm_parity.compare import ComparisonResult, OutputAccumulator, Tolerance
from lstm_parity.errors import (
    EXIT_BAD_INPUT,
    EXIT_KERAS_SIDE,
    BadInputError,
    KerasSideError,
    LstmParityError,
    UnsupportedError,
)
from lstm_parity.export_recipes.tflm import open_time_inputs, tflm_config, tflm_model
from lstm_parity.flow import run_flow
from lstm_parity.layer_budget import budget_rows
from lstm_parity.profiles import apply_profile
from lstm_parity.quiet_stderr import native_output
from lstm_parity.reference.forward import forward_batches
from lstm_parity.runners.census import describe
from lstm_parity.runners.exports import Port
from lstm_parity.runners.hls4ml import failure_note
from lstm_parity.runners.open import (
    export_file,
    export_files,
    open_export,
    refuse_unused_settings,
    relocate,
    split_target,
)
from lstm_parity.runners.openvino import failure_notes, precision_notes
from lstm_parity.runners.tflite_io import dequantize, quantize, refuse_unrunnable
from lstm_parity.streaming import array_stream
from runner_models import (
    encoder_decoder_k3,
    external_data_onnx,
    masked_lstm_k3,
    openvino_ir,
    plain_lstm,
    small_lstm_k3,
    tflm_recipe,
)

pytest.importorskip("tflite_micro")
pytest.importorskip("openvino")
pytest.importorskip("hls4ml")
pytest.importorskip("tf2onnx")

HLS4ML_ATOL = 0.05  # fixed<16,6> on these LSTMs: 1e-2 to 3e-2 off the float64 reference (measured)


@dataclass
class Files:
    folder: Path
    made: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        """The file `name` (e.g. "fused.tflite"), made on first use with the others of its model."""
        if name not in self.made:
            for path in MAKERS[name.split(".")[0].split("_")[0]](self.folder):
                self.made[path.name] = path
        return self.made[name]

    def spec(self, name: str) -> Any:
        return lstm_parity.load(str(self[name]))


def _fused(folder: Path) -> list[Path]:
    """The fused fixed-batch LSTM (state leaks between invocations), as float32 and float16 .tflite."""
    model = fused_fixed_batch_lstm(batch=2, seed=3)
    return [
        save_model(model, "k2-h5", folder, "fused"),
        to_tflite(model, folder / "fused.tflite"),
        to_tflite(model, folder / "fused_f16.tflite", quantize="float16"),
    ]


def _plain(folder: Path) -> list[Path]:
    """The tf_keras model people save, its TFLM recipe file, and a dynamic-batch unrolled .tflite (what
    the LiteRT gate passes, and TFLM cannot allocate)."""
    model = plain_lstm(seed=4)
    return [
        save_model(model, "k2-h5", folder, "plain"),
        tflm_recipe(model, folder / "plain_tflm.tflite"),
        to_tflite(unrolled_lstm(seed=4), folder / "plain_dynamic.tflite"),
    ]


def _bigru(folder: Path) -> list[Path]:
    """tf_keras Bidirectional(LSTM, return_sequences) -> GRU -> Dense: its TFLM recipe file and its ONNX."""

    def make(k: Any) -> Any:
        inputs = k.Input((TIME, FEATURES), name="feats")
        states = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True), name="bi")(inputs)
        return k.Model(inputs, k.layers.Dense(2, name="dense")(k.layers.GRU(3, name="gru")(states)))

    model = build_with("k2-h5", make, seed=4)
    return [
        save_model(model, "k2-h5", folder, "bigru"),
        tflm_recipe(model, folder / "bigru_tflm.tflite"),
        to_onnx(model, folder / "bigru.onnx"),
    ]


def _lstm(folder: Path) -> list[Path]:
    model = small_lstm_k3(seed=1)
    onnx_path = to_onnx(model, folder / "lstm.onnx")
    return [
        save_model(model, "k3-keras", folder, "lstm"),
        onnx_path,
        openvino_ir(onnx_path, folder / "lstm_ir.xml"),
        openvino_ir(onnx_path, folder / "lstm_fp16.xml", compress_to_fp16=True),
    ]


def _masked(folder: Path) -> list[Path]:
    model = masked_lstm_k3()
    return [save_model(model, "k3-keras", folder, "masked"), to_onnx(model, folder / "masked.onnx")]


def _seq(folder: Path) -> list[Path]:
    return [save_model(encoder_decoder_k3(), "k3-keras", folder, "seq")]


def _flex(folder: Path) -> list[Path]:
    return [flex_tflite(folder / "flex.tflite")]


MAKERS = {
    "fused": _fused,
    "plain": _plain,
    "bigru": _bigru,
    "lstm": _lstm,
    "masked": _masked,
    "seq": _seq,
    "flex": _flex,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    folder = tmp_path_factory.mktemp("more_runners")
    x = np.random.default_rng(7).uniform(-1, 1, (24, TIME, FEATURES)).astype(np.float32)  # (batch, time, features)
    np.save(folder / "x.npy", x)
    return Files(folder, {"x.npy": folder / "x.npy"})


def _open(against: str, spec: Any, **settings: Any) -> Any:
    """open_export, typed loosely: the tests use each runner's own attributes (predict_reset, ...)."""
    return open_export(against, spec, **settings)


def _x(rows: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (rows, TIME, FEATURES)).astype(np.float32)  # (rows, t, f)


def _max_diff(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.abs(g.astype(np.float64) - w).max()) for g, w in zip(got, want, strict=True))


def _one_line(exc: LstmParityError, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def _report(run_cli, *args) -> tuple[int, dict, str]:
    result = run_cli("check", *args, "--json", "-")
    return result.exit_code, json.loads(result.stdout) if result.stdout.startswith("{") else {}, result.stderr


def _side(report: dict, label: str) -> dict:
    (comparison,) = [c for c in report["comparisons"] if c["against"] == label]
    return comparison


def _schema() -> dict:
    from lstm_parity.report.json_report import SCHEMA_PATH

    return json.loads(SCHEMA_PATH.read_text())


def _judge_by_default_profile(info: Any, result: ComparisonResult) -> ComparisonResult:
    """What check judges an export by when no --profile is given: its default profile."""
    return apply_profile(result, default_profile(info))


def _flow(spec: Any, x: np.ndarray, runner: Any, judge: Any = None) -> Any:
    """The check flow on `x` with `runner` alone (no Keras), judged by `judge` as check would pass it."""
    return run_flow(spec, array_stream([x]), [runner], judge=judge)


# ------------------------------------------------------------------------------------ TFLite Micro


@pytest.mark.parametrize("target", ["tflm:", ""])  # TFLite Micro, and LiteRT (predict_reset is shared)
def test_fused_lstm_leaks_state_between_invokes_and_reset_fixes_it(files, target):
    """The fused fixed-batch LSTM (batch 2): the first invocation is right, the next ones start from the
    last one's h and c; the same input differs on the second pass; a reset before every invocation
    gives the reference's numbers. The note says the check never resets, and how an app would."""
    spec = files.spec("fused.h5")
    runner = _open(target + str(files["fused.tflite"]), spec)
    x = _x(8)  # 4 invocations of 2 rows
    want = lstm_parity.predict(spec, [x])
    (first,) = runner.predict([x], 0, 8)
    errors = np.abs(first - want[0]).max(axis=1)  # (8,): per row
    assert errors[:2].max() < 1e-5 and errors[2:].max() > 1e-3
    (second,) = runner.predict([x], 0, 8)
    assert np.abs(second - first).max() > 1e-3
    assert _max_diff(runner.predict_reset([x], 0, 8), want) < 1e-5
    call = "the interpreter's reset()" if target else "interpreter.reset_all_variables()"
    assert runner.reset_call == call
    assert f"2 variable tensors keep state between invocations; the check's two passes never reset them ({call})" in (
        runner.info.notes
    )
    if target:
        assert runner.info.kind == "tflm" and runner.input_shapes == [(2, TIME, FEATURES)]
        arena = runner.info.census["arena"]
        assert arena["automatic"] and 0 < arena["used"] <= arena["size"]
        assert f"tensor arena {arena['used']:,} bytes used of {arena['size']:,} bytes (sized automatically)" in (
            describe(runner.info.census)
        )
    runner.close()


def test_tflm_leak_is_caught_by_check(files, run_cli):
    code, report, err = _report(
        run_cli, files["fused.h5"], files["x.npy"], "--no-keras", "--against", f"tflm:{files['fused.tflite']}"
    )
    assert code == 1, err
    assert _side(report, "tflm fused.tflite")["runtime"]["kind"] == "tflm"
    (second,) = report["second_passes"]
    assert not second["passed"] and second["max_diff"] > 1e-3
    assert second["message"].startswith("state carried between invocations: the same input differs by")
    assert "call the interpreter's reset() before each invoke" in second["message"]
    assert "; with the interpreter's reset() before each invocation it passes (max abs diff" in second["message"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(report, _schema())


def test_the_reset_verdict_is_judged_as_the_side_is(files):
    """The float16 fused file through LiteRT: reset before every invocation, it is within the float16
    profile it is judged by (8.7e-5 off: it "still fails" only the float32 rule, which is what the flow
    says without the check's judge); and a reset that cannot run is said, not raised."""
    spec = files.spec("fused.h5")
    runner = _open(str(files["fused_f16.tflite"]), spec)
    x = _x(8)
    assert default_profile(runner.info) == "float16"
    (judged,) = _flow(spec, x, runner, _judge_by_default_profile).independence
    assert not judged.passed  # the leak itself is still caught
    assert "; with interpreter.reset_all_variables() before each invocation it passes under the float16 profile" in (
        judged.message
    )
    (plain,) = _flow(spec, x, runner).independence
    assert "before each invocation it still fails (max abs diff" in plain.message

    def broken() -> None:
        raise KerasSideError("LiteRT failed to reset its variables: gone")

    runner.reset = broken
    (refused,) = _flow(spec, x, runner).independence
    assert refused.message.endswith(
        "; interpreter.reset_all_variables() before each invocation not possible: LiteRT failed to reset its "
        "variables: gone"
    )


def test_tflm_recipe_file_passes_on_repeated_invocations(files):
    """The plain tf_keras LSTM through the recipe (batch 1, unrolled, fixed T): builtin ops, no state,
    exact against the reference in the check flow, second pass included."""
    spec = files.spec("plain.h5")
    runner = _open(f"tflm:{files['plain_tflm.tflite']}", spec)
    census = runner.info.census
    assert runner.input_shapes == [(1, TIME, FEATURES)] and census["variable_tensors"] == []
    assert census["fused"] == {} and census["flex_ops"] == []
    report = run_check(spec, [_x(10)], keras=False, exports=[runner])
    assert report.passed and report.independence[0].passed and report.independence[0].max_diff == 0.0
    assert report.exports[0].outputs[0].max_abs_diff < 1e-6
    assert "fixed batch 1: ran 10 invocations, none padded" in runner.info.notes


def test_tflm_recipe_config_fixes_batch_and_time_and_unrolls_wrapped_layers():
    """The recipe's config rewrite, without Keras: batch 1, the open time axis fixed, every recurrent
    layer unrolled, the one inside Bidirectional too; an open time axis without timesteps is refused."""
    lstm = {"class_name": "LSTM", "config": {"name": "inner", "units": 4, "unroll": False}}
    config = {
        "name": "m",
        "layers": [
            {"class_name": "InputLayer", "config": {"name": "feats", "batch_shape": [None, None, FEATURES]}},
            {"class_name": "Bidirectional", "config": {"name": "bi", "layer": lstm}},
            {"class_name": "GRU", "config": {"name": "gru", "units": 3}},
            {"class_name": "Dense", "config": {"name": "dense", "units": 2}},
        ],
    }
    fixed = tflm_config(config, timesteps=TIME)
    layers = fixed["layers"]
    assert layers[0]["config"]["batch_shape"] == [1, TIME, FEATURES]
    assert layers[1]["config"]["layer"]["config"]["unroll"] is True and layers[2]["config"]["unroll"] is True
    assert "unroll" not in layers[3]["config"] and config["layers"][0]["config"]["batch_shape"][0] is None  # a copy
    assert open_time_inputs(fixed) == [] and open_time_inputs(tflm_config(config)) == ["feats"]

    class Unbuilt:
        def get_config(self) -> dict:
            return config

    with pytest.raises(UnsupportedError, match="input feats has an open time axis"):
        tflm_model(Unbuilt(), source="m.h5")


def test_tflm_cannot_prepare_a_dynamic_batch_file(files):
    """The dynamic-batch unrolled file (fine in LiteRT) needs FILL of a runtime shape: exit 4, one line
    quoting TFLM and saying what to export instead."""
    with pytest.raises(KerasSideError) as caught:
        open_export(f"tflm:{files['plain_dynamic.tflite']}", files.spec("plain.h5"))
    _one_line(caught.value, "TFLite Micro cannot prepare it", "FILL", "batch_size=1", "unroll=True")
    assert caught.value.exit_code == EXIT_KERAS_SIDE


def test_tflm_arena_as_given(files, tmp_path):
    """Too small, TFLM says so (1,000 bytes) or crashes on it (100 bytes: a segfault in the probe): both
    are exit 4 saying to give more bytes; a corrupt file with the same tiny arena stays exit 2."""
    spec, path = files.spec("fused.h5"), f"tflm:{files['fused.tflite']}"
    with pytest.raises(KerasSideError) as caught:
        open_export(path, spec, tflm_arena=1000)
    _one_line(caught.value, "a tensor arena of 1,000 bytes is too small", "missing:")
    with pytest.raises(KerasSideError) as crashed:
        open_export(path, spec, tflm_arena=100)
    assert crashed.value.exit_code == EXIT_KERAS_SIDE
    _one_line(crashed.value, "TFLite Micro crashed (signal", "with a tensor arena of 100 bytes", "give more bytes")
    garbage = tmp_path / "g.tflite"
    garbage.write_bytes(b"\x1c\x00\x00\x00TFL3" + np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes())
    with pytest.raises(BadInputError) as bad:
        open_export(f"tflm:{garbage}", spec, tflm_arena=100)
    assert bad.value.exit_code == EXIT_BAD_INPUT
    runner = _open(path, spec, tflm_arena=8192)
    arena = runner.info.census["arena"]
    assert arena["size"] == 8192 and not arena["automatic"] and arena["used"] <= 8192
    assert "(as given)" in describe(runner.info.census)
    with pytest.raises(BadInputError, match="positive number of bytes"):
        open_export(path, spec, tflm_arena=0)


def test_tflm_refuses_flex_ops_and_corrupt_files(files, tmp_path):
    with pytest.raises(KerasSideError) as caught:
        open_export(f"tflm:{files['flex.tflite']}", files.spec("fused.h5"))
    _one_line(caught.value, "Flex ops", "that TFLite Micro does not have", "unroll=True")
    data = files["plain_tflm.tflite"].read_bytes()
    truncated = tmp_path / "t.tflite"
    truncated.write_bytes(data[:2000])
    with pytest.raises(BadInputError) as bad:
        open_export(f"tflm:{truncated}", files.spec("plain.h5"))
    assert bad.value.exit_code == EXIT_BAD_INPUT
    _one_line(bad.value, str(truncated))


def test_tflite_runners_share_the_int8_rule_and_the_refusals():
    port = Port("x", np.dtype(np.float32), (1, 2), (0.5, 3, np.dtype(np.int8)))
    stored = quantize(np.array([[1.0, 1e30]], np.float32), port)
    assert stored.dtype == np.int8 and stored.tolist() == [[5, 127]]
    np.testing.assert_array_equal(dequantize(stored, port), np.array([[1.0, 62.0]], np.float32))
    census = {"flex_ops": ["FlexTensorListReserve"], "custom_ops": []}
    with pytest.raises(KerasSideError, match="that TFLite Micro does not have; unroll it"):
        refuse_unrunnable("m.tflite", census, "TFLite Micro", "unroll it")
    with pytest.raises(KerasSideError, match=r"custom ops \(MyOp\) that LiteRT does not have; export with builtin"):
        refuse_unrunnable("m.tflite", {"flex_ops": [], "custom_ops": ["MyOp"]}, "LiteRT", "unroll it")


# ---------------------------------------------------------------------------------------- OpenVINO


def _cpu_facts() -> dict:
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return {"bf16": "BF16" in capabilities, "fp16": "FP16" in capabilities}


def _result(diff: float, profile: str | None = None) -> ComparisonResult:
    """A comparison of one (64, 4) output off the reference by `diff` everywhere, judged by `profile`."""
    reference = np.random.default_rng(0).uniform(1, 2, (64, 4))  # (rows, units)
    accumulator = OutputAccumulator("y", 1e-5, 0.0)
    accumulator.add(reference, reference + diff)
    result = ComparisonResult((accumulator.result(),), 1e-5, 0.0, "openvino m.onnx")
    return apply_profile(result, profile) if profile else result


def test_openvino_notes_name_the_precision_and_explain_a_failure_only():
    """On synthetic compile facts (so every CPU tests it): the precision that ran is always named, a
    precision the CPU lacks is said, and the bf16 advice comes only with a failure it explains."""
    facts = {"requested": "auto", "inference_precision": "bf16", "cpu_bf16": True, "cpu_fp16": False}
    assert precision_notes(facts) == (
        "CPU inference precision bfloat16 (OpenVINO's default on this CPU; the CPU has bf16 yes, fp16 no)",
    )
    fell_back = {**facts, "requested": "f16"}
    assert precision_notes(fell_back)[1] == "asked for f16, OpenVINO compiled bf16 (the CPU lacks f16 arithmetic)"
    exact = {**facts, "requested": "f32", "inference_precision": "f32"}
    assert precision_notes(exact) == ("CPU inference precision float32 (f32 asked; the CPU has bf16 yes, fp16 no)",)
    rounding, larger = _result(2e-3), _result(0.5)
    assert failure_notes(facts, _result(0.0)) == [] and failure_notes(exact, rounding) == []
    (note,) = failure_notes(facts, rounding)
    assert note.startswith("computed in bfloat16: failing the float32 profile is expected from that rounding")
    assert "--openvino-precision f32" in note and "--profile bfloat16" in note
    assert failure_notes(facts, apply_profile(rounding, "bfloat16")) == []  # within bfloat16's rules
    (worse,) = failure_notes(facts, apply_profile(larger, "bfloat16"))
    assert worse.startswith("computed in bfloat16, and it fails even the bfloat16 profile: more than that rounding")


def test_openvino_f32_pinned_is_exact(files):
    spec = files.spec("lstm.keras")
    runner = _open(f"openvino:{files['lstm.onnx']}", spec, openvino_precision="f32")
    assert runner.inference_precision == "f32"
    x = _x(12)
    assert _max_diff(runner.predict([x], 0, 12), lstm_parity.predict(spec, [x])) < 1e-6
    assert runner.info.notes[0].startswith("CPU inference precision float32 (f32 asked; the CPU has bf16 ")
    assert runner.info.census["fused"] == {"LSTMSequence": 1} and runner.info.census["loops"] == {}
    assert describe(runner.info.census).startswith("OpenVINO from ONNX: fused LSTMSequence x1, ")


def test_openvino_bf16_pinned_is_named_and_fails_float32(files):
    spec = files.spec("lstm.keras")
    runner = _open(f"openvino:{files['lstm.onnx']}", spec, openvino_precision="bf16")
    if runner.inference_precision != "bf16":
        assert not _cpu_facts()["bf16"]
        pytest.skip(f"this CPU cannot compute in bf16 (OpenVINO compiled {runner.inference_precision})")
    assert runner.info.notes == ("CPU inference precision bfloat16 (bf16 asked; the CPU has bf16 yes, fp16 no)",)
    x = _x(24, seed=3)
    report = run_check(spec, [x], keras=False, exports=[runner])
    assert not report.passed and report.exports[0].outputs[0].max_abs_diff > 1e-4
    advice = [note for note in report.notes if "failing the float32 profile is expected" in note]
    assert advice and "--openvino-precision f32" in advice[0]
    assert run_check(spec, [x], keras=False, exports=[runner], profile="bfloat16").passed
    _flow(spec, x, runner, lambda info, result: apply_profile(result, "bfloat16"))
    assert not any("failing the float32 profile" in note for note in runner.info.notes)  # passed: no advice


@pytest.mark.parametrize("precision", ["auto", "f16"])
def test_openvino_reports_the_precision_that_ran(files, precision):
    """auto: what this CPU gets (bf16 where the CPU has it); f16 on a CPU without fp16 is not what runs.
    Either way the note names what did, and the numbers agree with it."""
    spec, cpu = files.spec("lstm.keras"), _cpu_facts()
    runner = _open(f"openvino:{files['lstm.onnx']}", spec, openvino_precision=precision)
    ran = runner.inference_precision
    if precision == "auto":
        assert ran == ("bf16" if cpu["bf16"] else "f32")
        assert "(OpenVINO's default on this CPU;" in runner.info.notes[0]
    elif not cpu["fp16"]:
        assert ran != "f16" and f"asked for f16, OpenVINO compiled {ran}" in runner.info.notes[1]
    names = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
    assert runner.info.notes[0].startswith(f"CPU inference precision {names[ran]} ")
    x = _x(12)
    exact = _max_diff(runner.predict([x], 0, 12), lstm_parity.predict(spec, [x])) < 1e-6
    assert exact == (ran == "f32")


def test_openvino_ir_files(files, tmp_path):
    """An IR saved with float32 weights is exact with f32; one saved with ov.save_model's default
    (weights compressed to float16) is reported so and judged under the float16 profile; an IR whose .bin
    is missing or truncated, or whose XML is no model, is a bad file (exit 2)."""
    spec = files.spec("lstm.keras")
    x = _x(12)
    runner = _open(f"openvino:{files['lstm_ir.xml']}", spec, openvino_precision="f32")
    assert runner.info.census["source_format"] == "ir" and not runner.info.census["quantized"]
    assert _max_diff(runner.predict([x], 0, 12), lstm_parity.predict(spec, [x])) < 1e-6
    compressed = _open(f"openvino:{files['lstm_fp16.xml']}", spec, openvino_precision="f32")
    assert compressed.info.census["quantized_types"] == ["float16"]
    assert "; float16 weights" in describe(compressed.info.census)
    report = run_check(spec, [x], keras=False, exports=[compressed])
    assert report.exports[0].profile == "float16" and report.passed
    assert report.exports[0].outputs[0].max_abs_diff > 1e-6  # the float16 weights do change the numbers
    xml = files["lstm_ir.xml"].read_text()
    (tmp_path / "nobin.xml").write_text(xml)
    (tmp_path / "short.xml").write_text(xml)
    (tmp_path / "short.bin").write_bytes(files["lstm_ir.xml"].with_suffix(".bin").read_bytes()[:100])
    (tmp_path / "empty.xml").write_text("<net name='x'></net>")
    expected = {
        "nobin.xml": f"its weights file {tmp_path / 'nobin.bin'} is missing",
        "short.xml": "not a readable OpenVINO IR",
        "empty.xml": "not a readable OpenVINO IR",
    }
    for name, fragment in expected.items():
        with pytest.raises(BadInputError) as bad:
            open_export(f"openvino:{tmp_path / name}", spec)
        assert bad.value.exit_code == EXIT_BAD_INPUT
        _one_line(bad.value, fragment)


def test_openvino_loop_is_refused_in_one_line(files, run_cli):
    with pytest.raises(KerasSideError) as caught:
        open_export(f"openvino:{files['masked.onnx']}", files.spec("masked.keras"))
    _one_line(caught.value, "OpenVINO", "cannot convert it", "Conversion is failed for: Loop")
    result = run_cli("check", files["masked.keras"], "--no-keras", "--against", f"openvino:{files['masked.onnx']}")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == EXIT_KERAS_SIDE and len(lines) == 1 and "Loop" in lines[0]
    assert "Traceback" not in result.output and "Exception from" not in result.output


def test_openvino_follows_the_external_data_rules(files, tmp_path):
    spec = lstm_parity.load(str(files["lstm.keras"]))
    (tmp_path / "m").mkdir()
    inside = external_data_onnx(tmp_path / "m", "inside.bin")
    with pytest.raises(BadInputError, match="--allow-external-data"):
        open_export(f"openvino:{inside}", spec)
    outside = external_data_onnx(tmp_path, "../outside.bin")
    with pytest.raises(BadInputError, match="outside the model's folder"):
        open_export(f"openvino:{outside}", spec, allow_external_data=True)


def test_openvino_refuses_other_files_and_precisions(files, tmp_path):
    spec = files.spec("lstm.keras")
    with pytest.raises(BadInputError, match="one of auto, f32, bf16, f16"):
        open_export(f"openvino:{files['lstm.onnx']}", spec, openvino_precision="fp32")
    not_ir = tmp_path / "page.xml"
    not_ir.write_text("<html></html>")
    with pytest.raises(BadInputError, match="not an OpenVINO IR"):
        open_export(f"openvino:{not_ir}", spec)
    with pytest.raises(BadInputError, match=r"an \.onnx file or an IR \.xml"):
        open_export(f"openvino:{files['fused.tflite']}", spec)


# ------------------------------------------------------------------------------------------ hls4ml


def test_hls4ml_default_config_on_a_sequence_model(files):
    """One compile (hls4ml's default config) for everything about its numbers: see the three parts."""
    runner = _open("hls4ml", files.spec("seq.keras"))
    try:
        _fails_float32_and_passes_a_stated_tolerance(files, runner)
        _trace_names_the_first_layer_and_timestep_over_the_tolerance(files, runner)
        _trace_names_the_layer_and_timestep_over_its_share(files, runner)
    finally:
        folder = runner.folder
        runner.close()
    assert not os.path.exists(folder)  # close() removes the project


def _fails_float32_and_passes_a_stated_tolerance(files: Files, runner: Any) -> None:
    """hls4ml's default fixed<16,6>: off by about 1e-2 (fails the float32 rule, with a note saying it is
    fixed point and what atol these inputs need), within HLS4ML_ATOL (no note); the report names the
    precision config, every layer's precision, the input's included; running twice changes nothing."""
    spec = files.spec("seq.keras")
    x = _x(16)
    strict = run_check(spec, [x], keras=False, exports=[runner])
    assert not strict.passed and strict.exports[0].outputs[0].max_abs_diff > 1e-3
    assert strict.independence[0].passed and strict.independence[0].max_diff == 0.0
    (note,) = [n for n in strict.notes if "fixed-point arithmetic" in n]
    needed = strict.exports[0].outputs[0].min_atol_to_pass
    atol = float(note.split("--atol ")[1].split()[0])
    assert needed <= atol <= needed * 1.1 and "--layerwise" in note
    loose = run_check(spec, [x], keras=False, exports=[runner], tolerance=Tolerance(HLS4ML_ATOL, 0.0))
    assert loose.passed and not any("fixed-point arithmetic" in n for n in loose.notes)
    census = runner.info.census
    assert census["config"] == "hls4ml's default (Model precision fixed<16,6>)"
    assert census["precisions"]["encoder"] == "fixed<16,6> (table fixed<18,8>)"
    inputs = [name for name, kind in census["layers"].items() if kind == "Input"]
    assert [census["precisions"][name] for name in inputs] == ["fixed<16,6>"]  # what the inputs are quantized to
    assert describe(census).startswith("hls4ml Vivado C++ emulation (g++")
    assert runner.info.label == "hls4ml seq.keras" and runner.input_shapes == [(None, TIME, FEATURES)]


def _trace_names_the_first_layer_and_timestep_over_the_tolerance(files: Files, runner: Any) -> None:
    """hls4ml's own per-layer trace, keyed like the reference's layer outputs, through check's
    layerwise rule: the first layer over the tolerance and, for the sequence layer, the first timestep."""
    spec = files.spec("seq.keras")
    x = _x(16)
    trace = runner.layer_trace([x])
    assert sorted(trace) == ["decoder", "encoder", "head"]
    np.testing.assert_array_equal(trace["head"][0], runner.predict([x], 0, 16)[0])  # the trace is the run
    ours = forward_batches(spec, [x], record=True).layer_outputs
    encoder = np.abs(trace["encoder"][0] - ours["encoder"][0]).max(axis=(0, 2))  # (time,): per-timestep error
    tolerance = (encoder[0] + encoder.max()) / 2  # exceeded inside the sequence, not at its start
    rows = layerwise_rows(spec, ours, trace, Tolerance(float(tolerance), 0.0))
    first = next(row for row in rows if not row["passed"])
    assert first["layer"] == "encoder" and first["first_timestep"] == int(np.argmax(encoder > tolerance)) > 0


def _trace_names_the_layer_and_timestep_over_its_share(files: Files, runner: Any) -> None:
    """On hls4ml's own trace: under HLS4ML_ATOL, which the outputs meet, the encoder still uses more than
    its third of it, from a timestep inside the sequence; the layers after it add nothing; under the
    float32 atol the encoder is over from the first step."""
    spec = files.spec("seq.keras")
    x = _x(16)
    trace = runner.layer_trace([x])
    ours = forward_batches(spec, [x], record=True).layer_outputs
    rows = budget_rows(spec, ours, trace, Tolerance(HLS4ML_ATOL, 0.0))
    assert [row["layer"] for row in rows] == ["encoder", "decoder", "head"]
    encoder = rows[0]
    error = np.abs(trace["encoder"][0] - ours["encoder"][0]).max(axis=(0, 2))  # (time,)
    assert not encoder["passed"] and encoder["first_timestep"] == int(np.argmax(error > HLS4ML_ATOL / 3)) > 0
    assert rows[1]["passed"] and rows[2]["passed"]
    strict = budget_rows(spec, ours, trace, Tolerance())
    assert (strict[0]["layer"], strict[0]["passed"], strict[0]["first_timestep"]) == ("encoder", False, 0)


def test_hls4ml_failure_note_only_after_a_failure():
    assert failure_note("c.yml (Model precision fixed<8,3>)", _result(0.0)) == ""
    note = failure_note("c.yml (Model precision fixed<8,3>)", _result(0.01472))
    assert note.startswith("fixed-point arithmetic with c.yml (Model precision fixed<8,3>) differs from the float")
    assert "--atol 0.015 (what these inputs need)" in note


def test_each_layer_is_judged_by_its_share_of_the_tolerance(files):
    """budget_rows on errors made to order (encoder/decoder/head, 3 layers: a third of atol 0.03 each):
    the encoder's error grows 0.0023 per step and passes its 0.01 share at step 4; the decoder adds
    0.0143 to the 0.0207 it received; the head shrinks what it got and adds nothing."""
    spec = files.spec("seq.keras")
    x = _x(4)
    ours = forward_batches(spec, [x], record=True).layer_outputs
    steps = 0.0023 * np.arange(1, TIME + 1)  # (time,)
    theirs = {
        "encoder": [ours["encoder"][0] + steps[None, :, None]],  # (batch, time, units)
        "decoder": [ours["decoder"][0] + 0.035],
        "head": [ours["head"][0] - 0.01],
    }
    rows = {row["layer"]: row for row in budget_rows(spec, ours, theirs, Tolerance(0.03, 0.0))}
    encoder, decoder, head = rows["encoder"], rows["decoder"], rows["head"]
    assert not encoder["passed"] and encoder["first_timestep"] == 4 and encoder["share"] == pytest.approx(1 / 3)
    assert not decoder["passed"] and decoder["added_max_abs"] == pytest.approx(0.0143)
    assert head["passed"] and head["added_max_abs"] == 0.0 and head["max_abs_diff"] == pytest.approx(0.01)
    whole = {row["layer"]: row["passed"] for row in layerwise_rows(spec, ours, theirs, Tolerance(0.03, 0.0))}
    assert whole == {"encoder": True, "decoder": False, "head": True}  # the whole tolerance misses the encoder


def test_hls4ml_unconvertible_layer_is_one_quiet_line(files, capfd):
    with pytest.raises(KerasSideError) as caught:
        open_export("hls4ml", files.spec("masked.keras"))
    _one_line(caught.value, "hls4ml", "cannot convert it", "Masking")
    out, err = capfd.readouterr()
    assert "da4ml" not in out + err and "Interpreting" not in out + err


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("- just\n- a list\n", "a YAML mapping"),
        ("Model: [unclosed\n", "not a valid YAML"),
        ("Part: x\n", "HLSConfig"),
        ('HLSConfig:\n  Model: "fixed<16,6>"\n', "Model must be a mapping"),
        ("HLSConfig:\n  Model: {Precision: garbage<1>}\n", "Model.Precision: 'garbage<1>' is not a precision"),
        (
            "Model: {Precision: fixed<16,6>}\n",
            "'fixed<16' is not a precision hls4ml reads, e.g. fixed<16,6>, ap_fixed<8,3>, int<8>, float, auto (quote",
        ),
        ("LayerName:\n  encoder: {Precision: {table: fixed<16>}}\n", "LayerName.encoder.Precision.table"),
        ("LayerType:\n  LSTM: {table_t: fixed<a,b>}\n", "LayerType.LSTM.table_t"),
        ("Model: {Precision: {default: 16}}\n", "Model.Precision must be a type"),
        ("LayerName: [encoder]\n", "LayerName must map names to settings"),
        ("LayerName:\n  encoder: fixed<8,3>\n", "LayerName.encoder must be a mapping"),
        ("HLSConfig: {Model: {}}\nBackend: Nope\n", "hls4ml has no backend 'Nope' (backends: vivado"),
        ("HLSConfig: {Model: {}}\nIOType: io_serial\n", "IOType 'io_serial': one of io_parallel, io_stream"),
    ],
)
def test_hls4ml_bad_config_is_bad_input(files, tmp_path, text, fragment):
    """Wrong shapes and values are exit 2, before any conversion (not hls4ml's late Python errors)."""
    config = tmp_path / "bad.yml"
    config.write_text(text)
    with pytest.raises(BadInputError) as caught:
        open_export(f"hls4ml:{config}", files.spec("seq.keras"))
    _one_line(caught.value, fragment)


@pytest.mark.parametrize("backend", ["Vivado", "Quartus"])
def test_hls4ml_without_gpp_says_so(files, tmp_path, monkeypatch, backend):
    """Every backend whose build script calls g++ checks for it first (Quartus too)."""
    config = tmp_path / "c.yml"
    config.write_text(f"HLSConfig: {{Model: {{Precision: 'fixed<16,6>'}}}}\nBackend: {backend}\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ there
    with pytest.raises(KerasSideError) as caught:
        open_export(f"hls4ml:{config}", files.spec("seq.keras"))
    _one_line(caught.value, "compiles its C++ emulation with g++, which is not on PATH")


FAILING_GPP = """#!/bin/sh
if [ "$1" = "-dumpfullversion" ]; then echo 0.1; exit 0; fi
echo "lstm_parity.cpp:1:1: error: this compiler refuses everything" >&2
exit 1
"""


def test_hls4ml_compile_failure_quotes_the_compiler_and_removes_the_project(files, tmp_path, monkeypatch):
    import tempfile

    tools, scratch = tmp_path / "bin", tmp_path / "scratch"
    tools.mkdir()
    scratch.mkdir()
    (tools / "g++").write_text(FAILING_GPP)
    (tools / "g++").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(KerasSideError) as caught:
        open_export("hls4ml", files.spec("seq.keras"))
    _one_line(caught.value, "could not compile its C++ emulation", "error: this compiler refuses everything")
    assert list(scratch.iterdir()) == []  # the project folder went with the failure


def test_hls4ml_default_config_is_config_from_keras_models(monkeypatch):
    """For a Keras 3 model the default is what hls4ml.utils.config_from_keras_model gives for it."""
    import types

    import hls4ml

    from lstm_parity.runners import hls4ml as runner
    from lstm_parity.runners.hls4ml_config import Hls4mlConfig

    calls = []

    def config_from_keras_model(model: Any, **settings: Any) -> dict:
        calls.append((model, settings))
        return {"Model": {"Precision": {"default": "fixed<20,8>"}}}

    monkeypatch.setattr(hls4ml.utils, "config_from_keras_model", config_from_keras_model)
    model = object()
    made = runner._hls_config(hls4ml, types.SimpleNamespace(package="keras", model=model), Hls4mlConfig(None))
    assert made == {"Model": {"Precision": {"default": "fixed<20,8>"}}}
    assert calls == [(model, {"granularity": "model", "backend": "Vivado"})]


# ------------------------------------------------------------------------- all three, one report


HLS4ML_YAML = """
KerasH5: elsewhere.h5
OutputDir: build/hls
Backend: Vivado
IOType: io_parallel
HLSConfig:
  Model: {Precision: "fixed<24,8>", ReuseFactor: 1, ReuseFact: 2}
  LayerType:
    Bidirectional: {table_size: 8192}
    GRU: {table_size: 8192}
  LayerName:
    no_such_layer: {Precision: "fixed<8,2>"}
    dense: {TableSize: 64, Precision: {weight: "fixed<24,8>", gate: "fixed<8,2>"}}
  Bogus: 3
"""


def test_one_report_runs_all_three(files, run_cli, tmp_path, monkeypatch):
    """The issue's command on a tf_keras Bidirectional LSTM -> GRU model: TFLite Micro (the recipe
    file), OpenVINO (its ONNX, precision auto) and hls4ml (its Keras 2 converter, with a YAML raising the
    precision and the tables, and mistakes hls4ml would silently ignore, each named), beside Keras, in one
    report that follows the schema, with --layerwise from hls4ml's own trace (the text on stdout, the JSON
    in a file: one compile); the hls4ml project folder is gone once the check ends."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    config, report_path = tmp_path / "hls.yml", tmp_path / "report.json"
    config.write_text(HLS4ML_YAML)
    model, tflm, onnx, x = (files[name] for name in ("bigru.h5", "bigru_tflm.tflite", "bigru.onnx", "x.npy"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    against = ("--against", f"tflm:{tflm}", "--against", f"openvino:{onnx}", "--against", f"hls4ml:{config}")
    result = run_cli("check", model, x, *against, "--layerwise", "--json", report_path)
    assert result.exit_code == 1, result.output
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("lstm-parity-hls4ml-")]
    report = json.loads(report_path.read_text())
    labels = ["keras", "tflm bigru_tflm.tflite", "openvino bigru.onnx", "hls4ml hls.yml"]
    assert [c["against"] for c in report["comparisons"]] == labels
    assert _side(report, "keras")["passed"] and _side(report, "tflm bigru_tflm.tflite")["passed"]
    openvino = _side(report, "openvino bigru.onnx")
    ran = openvino["runtime"]["census"]["compiled"]["inference_precision"]
    assert openvino["passed"] == (ran == "f32")  # exact in float32; this CPU's bf16 fails the float32 rule
    assert any(note.startswith("openvino bigru.onnx: CPU inference precision") for note in report["notes"])
    advice = any("failing the float32 profile is expected" in note for note in openvino["runtime"]["notes"])
    assert advice == (ran != "f32")
    hls = _side(report, "hls4ml hls.yml")
    census = hls["runtime"]["census"]
    assert census["config"] == "hls.yml (Model precision fixed<24,8>)"
    assert census["precisions"]["gru"] == "fixed<24,8> (table fixed<18,8>)"
    assert census["layers"]["bi"] == "Bidirectional" and census["layers"]["gru"] == "GRU"
    notes = hls["runtime"]["notes"]
    assert notes[:3] == [
        "keys of the YAML not used: KerasH5, OutputDir (MODEL itself is converted)",
        "HLSConfig keys hls4ml does not read, ignored: Bogus",
        "Model keys hls4ml does not read, ignored: ReuseFact (it reads Precision, ReuseFactor, Strategy, "
        "BramFactor, ...)",
    ]
    assert notes[3].startswith("LayerName.no_such_layer names no layer of the converted model (feats, bi, ")
    assert notes[4] == "LayerName.dense: settings the layer does not have: TableSize, Precision.gate"
    assert notes[5].startswith("fixed-point arithmetic with hls.yml (Model precision fixed<24,8>) differs from the")
    assert not hls["passed"] and 1e-6 < hls["outputs"][0]["max_abs_diff"] < 1e-2  # fixed point, much closer
    assert [s["passed"] for s in report["second_passes"]] == [True, True, True]
    ((label, rows),) = [(entry["against"], entry["layers"]) for entry in report["layerwise_exports"]]
    assert label == "hls4ml hls.yml" and [row["layer"] for row in rows] == ["bi", "gru", "dense"]
    first = next(row for row in rows if not row["passed"])
    assert first["layer"] == "bi" and first["first_timestep"] == 0  # fixed point: off from the first step
    assert "layerwise (reference vs hls4ml hls.yml, its own per-layer trace):" in result.stdout
    assert "hls4ml hls.yml: first layer over its share of the tolerance bi timestep 0" in result.stdout.splitlines()[-1]
    assert "first layer over its share of the tolerance: bi, timestep 0: adds " in result.stdout
    assert all(row["share"] == pytest.approx(1 / 3) and "added_max_abs" in row for row in rows)
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    jsonschema.validate(report, schema)
    rows[0]["passed"] = "no"  # the schema types the layerwise rows
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema)


# ------------------------------------------------------------------------------ targets and extras


def test_targets_are_parsed_from_the_against_value():
    assert split_target("tflm:m.tflite") == ("tflm", "m.tflite")
    assert split_target("openvino:/a/m.xml") == ("openvino", "/a/m.xml")
    assert split_target("hls4ml") == ("hls4ml", "") and split_target("hls4ml:c.yml") == ("hls4ml", "c.yml")
    assert split_target("keras:jax") == ("keras", "jax") and split_target("m.onnx") == (None, "m.onnx")
    assert split_target(r"C:\m.onnx") == (None, r"C:\m.onnx")
    assert [export_file(a) for a in ("tflm:m.tflite", "hls4ml", "keras:jax", "m.onnx")] == [
        "m.tflite",
        None,
        None,
        "m.onnx",
    ]
    assert export_files("openvino:/a/m.xml") == ["/a/m.xml", "/a/m.bin"]  # the IR's weights are read too
    assert export_files("openvino:m.onnx") == ["m.onnx"] and export_files("hls4ml") == []
    assert relocate("tflm:m.tflite", "/cfg") == "tflm:/cfg/m.tflite" and relocate("m.onnx", "/cfg") == "/cfg/m.onnx"
    assert relocate("hls4ml", "/cfg") == "hls4ml" and relocate("keras:jax", "/cfg") == "keras:jax"


def test_a_target_without_its_file_is_bad_input(files):
    with pytest.raises(BadInputError, match="needs a file after 'tflm:'"):
        open_export("tflm:", files.spec("fused.h5"))
    with pytest.raises(BadInputError, match=r"give a config after 'hls4ml:' \(hls4ml:CONFIG.yml\), or hls4ml alone"):
        open_export("hls4ml:", files.spec("fused.h5"))


def test_a_runtime_setting_without_its_runtime_is_refused():
    refuse_unused_settings(["tflm:m.tflite", "openvino:m.onnx"], 4096, "f32")
    refuse_unused_settings(["m.onnx"], None, "auto")
    with pytest.raises(BadInputError, match="--tflm-arena 4096: applies to --against tflm:FILE.tflite"):
        refuse_unused_settings(["m.tflite"], 4096, "auto")
    with pytest.raises(BadInputError, match="--openvino-precision f32: applies to --against openvino:FILE"):
        refuse_unused_settings(["m.onnx", "hls4ml"], None, "f32")


@pytest.mark.parametrize(
    "module, target, extra",
    [
        ("tflite_micro", "tflm:fused.tflite", "tflm"),
        ("openvino", "openvino:lstm.onnx", "openvino"),
        ("hls4ml", "hls4ml", "hls4ml"),
    ],
)
def test_a_missing_runtime_names_its_extra(files, monkeypatch, module, target, extra):
    prefix, _, name = target.partition(":")
    against = f"{prefix}:{files[name]}" if name else prefix
    spec = files.spec("lstm.keras")
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(KerasSideError) as caught:
        open_export(against, spec)
    _one_line(caught.value, f"cannot import {module}", f"pip install 'lstm-parity[{extra}]'")


BLOCK_TENSORFLOW = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"blocked by test: {name}")
sys.meta_path.insert(0, Block())
"""


def test_tflm_and_openvino_run_without_tensorflow_and_import_lazily(files):
    """No runtime is imported by importing the runner modules (nor TensorFlow by the TFLM recipe's);
    TFLM and OpenVINO then run with TensorFlow and Keras unimportable."""
    code = BLOCK_TENSORFLOW + textwrap.dedent(f"""
        import numpy as np, lstm_parity
        import lstm_parity.runners.tflm, lstm_parity.runners.openvino, lstm_parity.runners.hls4ml
        import lstm_parity.export_recipes.tflm
        from lstm_parity.runners.open import open_export
        print("EAGER", sorted(m for m in sys.modules if m.split(".")[0] in ("tflite_micro", "openvino", "hls4ml")))
        x = np.zeros((3, {TIME}, {FEATURES}), np.float32)
        open_export(r"tflm:{files["plain_tflm.tflite"]}", lstm_parity.load(r"{files["plain.h5"]}")).predict([x], 0, 3)
        open_export(r"openvino:{files["lstm.onnx"]}", lstm_parity.load(r"{files["lstm.keras"]}")).predict([x], 0, 3)
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "EAGER []" in proc.stdout and "LOADED []" in proc.stdout


# ------------------------------------------------------------------------- native output capture


def test_native_output_nests_and_drops_progress_frames():
    """A block inside a block gets its own lines and gives the outer one its capture back; a line with
    terminal control sequences (a progress display's frame) is never kept to be quoted."""
    with native_output() as outer:
        os.write(1, b"outer one\n")
        with native_output() as inner:
            os.write(2, b"inner\n")
            print("\x1b[2K\x1b[1A  check ---- 3/9 samples")
        os.write(2, b"outer two\n")
    assert inner == ["inner"] and outer == ["outer one", "outer two"]


def test_native_output_of_two_threads_does_not_mix():
    """fd 1/2 are process-wide: two threads capturing at once must not swap them under each other."""
    got: dict[str, list[list[str]]] = {"a": [], "b": []}

    def capture(marker: str) -> None:
        for _ in range(15):
            with native_output() as lines:
                os.write(1, f"{marker}1\n".encode())
                time.sleep(0.002)
                os.write(2, f"{marker}2\n".encode())
            got[marker].append(list(lines))

    threads = [threading.Thread(target=capture, args=(marker,)) for marker in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for marker, blocks in got.items():
        assert blocks == [[f"{marker}1", f"{marker}2"]] * 15


# ------------------------------------------------------------ the check command's wiring (lead's patch)


def test_check_openvino_precision_and_tflm_arena_options(files, run_cli):
    args = (files["lstm.keras"], files["x.npy"], "--no-keras", "--against", f"openvino:{files['lstm.onnx']}")
    code, report, err = _report(run_cli, *args, "--openvino-precision", "f32")
    assert code == 0, err
    assert report["comparisons"][0]["runtime"]["census"]["compiled"]["inference_precision"] == "f32"
    if _cpu_facts()["bf16"]:
        code, report, _ = _report(run_cli, *args, "--openvino-precision", "bf16")
        assert code == 1 and any("--openvino-precision f32" in note for note in report["notes"])
    result = run_cli(
        "check", files["fused.h5"], "--no-keras", "--tflm-arena", "1000", "--against", f"tflm:{files['fused.tflite']}"
    )
    assert result.exit_code == EXIT_KERAS_SIDE and "tensor arena of 1,000 bytes is too small" in result.stderr


def test_check_all_takes_the_targets_and_their_settings(files, run_cli, tmp_path):
    config = files.folder / "targets.toml"
    config.write_text(
        '[tool.lstm-parity]\nopenvino_precision = "f32"\n'
        '[[tool.lstm-parity.models]]\nname = "ov"\npath = "lstm.keras"\nno_keras = true\n'
        'against = ["openvino:lstm.onnx"]\n'
        '[[tool.lstm-parity.models]]\nname = "micro"\npath = "plain.h5"\nno_keras = true\ntflm_arena = 65536\n'
        'against = "tflm:plain_tflm.tflite"\n'
    )
    assert files["lstm.onnx"].exists() and files["plain_tflm.tflite"].exists()  # made before check-all reads them
    result = run_cli("check-all", config, "--json", tmp_path / "all.json")
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads((tmp_path / "all.json").read_text())["models"]}
    census = models["micro"]["report"]["comparisons"][0]["runtime"]["census"]
    assert census["arena"] == {**census["arena"], "size": 65536, "automatic": False}


def test_check_judges_the_reset_verdict_by_the_exports_profile(files, run_cli):
    """The float16 fused file: judged under float16, so is the run with a reset before each invocation."""
    code, report, err = _report(
        run_cli, files["fused.h5"], files["x.npy"], "--no-keras", "--against", files["fused_f16.tflite"]
    )
    assert code == 1, err
    (second,) = report["second_passes"]
    assert (
        "; with interpreter.reset_all_variables() before each invocation it passes under the float16 profile"
        in (second["message"])
    )


def test_check_gives_the_bf16_advice_only_with_a_failure_it_explains(files, run_cli):
    if not _cpu_facts()["bf16"]:
        pytest.skip("this CPU cannot compute in bf16")
    args = (files["lstm.keras"], files["x.npy"], "--no-keras", "--against", f"openvino:{files['lstm.onnx']}")
    code, report, err = _report(run_cli, *args, "--openvino-precision", "bf16", "--profile", "bfloat16")
    assert code == 0, err
    assert not any("failing the float32 profile" in note for note in report["notes"])


def test_check_refuses_a_setting_without_its_runtime(files, run_cli):
    result = run_cli(
        "check", files["fused.h5"], "--no-keras", "--tflm-arena", "4096", "--against", files["fused.tflite"]
    )
    assert result.exit_code == EXIT_BAD_INPUT and "--tflm-arena 4096: applies to --against tflm:" in result.stderr
    result = run_cli("check", files["seq.keras"], "--no-keras", "--against", "hls4ml:")
    assert result.exit_code == EXIT_BAD_INPUT and "give a config after 'hls4ml:'" in result.stderr


def test_check_never_writes_over_an_ir_weights_file(files, run_cli):
    weights = files["lstm_ir.xml"].with_suffix(".bin")
    before = weights.read_bytes()
    args = (files["lstm.keras"], files["x.npy"], "--no-keras", "--against", f"openvino:{files['lstm_ir.xml']}")
    result = run_cli("check", *args, "--json", weights)
    assert result.exit_code == EXIT_BAD_INPUT and weights.read_bytes() == before
