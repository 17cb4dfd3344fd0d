"""`lstm-parity export MODEL OUT`: each file written is loaded here with plain onnxruntime / ai_edge_litert,
run twice in a row without any reset, and compared with Keras' own predict on the source model (or, for a
file no Keras loads, on the plain model its weights came from); a conversion that would be wrong leaves
nothing behind. Models are tiny, the source files are built once per module, and each test converts only
what it checks (conversions are the cost)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from conftest import SAMPLES, build_with, keras_module, keras_predict, save_model
from exports import FEATURES, cudnn_lstm_h5, run_onnx, run_tflite
from lstm_parity.runners.census import onnx_census, tflite_census

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

TIME = 5
RUNNERS = {".onnx": run_onnx, ".tflite": run_tflite}


def _stack(k):
    """LSTM (in a Bidirectional, fused by tf2onnx) then GRU (a Loop in ONNX), open time axis."""
    inputs = k.Input((None, FEATURES), name="feats")
    x = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True))(inputs)
    return k.Model(inputs, k.layers.Dense(2, activation="softmax")(k.layers.GRU(3)(x)))


def _masked(k):
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.Masking(), k.layers.LSTM(3), k.layers.Dense(2)])


def _softmax(k):
    """LSTM(16) -> softmax(4): the recurrent kernel (16, 64) has the 1,024 elements TFLite's dynamic-range
    quantizer needs, and a plain LSTM is fused by tf2onnx (quantize_dynamic makes it DynamicQuantizeLSTM)."""
    return k.Sequential([k.Input((TIME, FEATURES)), k.layers.LSTM(16), k.layers.Dense(4, activation="softmax")])


def _two_inputs(k):
    """Inputs named so that the SavedModel signature (alphabetical) lists them in the other order."""
    zeta, alpha = k.Input((TIME, FEATURES), name="zeta"), k.Input((2,), name="alpha")
    joined = k.layers.Concatenate()([k.layers.LSTM(3)(zeta), alpha])
    return k.Model([zeta, alpha], k.layers.Dense(2)(joined))


def _masked_bidirectional(k):
    """Token ids, mask_zero, a Bidirectional LSTM returning sequences: Keras 3 unrolls it wrongly."""
    return k.Sequential(
        [
            k.Input((TIME,), dtype="int32"),
            k.layers.Embedding(20, 3, mask_zero=True),
            k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True)),
            k.layers.Dense(2),
        ]
    )


def _conv_lstm(k):
    return k.Sequential(
        [k.Input((4, 5, 5, 1)), k.layers.ConvLSTM2D(2, 3, padding="same"), k.layers.Flatten(), k.layers.Dense(2)]
    )


def _open_time_distributed(k):
    return k.Sequential(
        [k.Input((None, FEATURES)), k.layers.GRU(3, return_sequences=True), k.layers.TimeDistributed(k.layers.Dense(2))]
    )


KERAS3 = {"stack": _stack, "masked": _masked}
BUILDERS = {
    **KERAS3,
    "softmax": _softmax,
    "two_inputs": _two_inputs,
    "masked_bidirectional": _masked_bidirectional,
    "conv_lstm": _conv_lstm,
    "open_time_distributed": _open_time_distributed,
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """name -> (Keras 3 model, its saved .keras file), each built on first use, once per module."""
    folder = tmp_path_factory.mktemp("sources")
    made: dict = {}

    def get(name: str):
        if name not in made:
            model = build_with("k3-keras", BUILDERS[name], seed=len(name))
            made[name] = (model, save_model(model, "k3-keras", folder, name))
        return made[name]

    return get


def _inputs(rows: int = 5, seed: int = 3, masked: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-1, 1, (rows, TIME, FEATURES)).astype(np.float32)  # (rows, time, f)
    if masked:
        x[1:2, 3:] = 0.0  # padded after 3 steps (where there are such rows)
        x[2:3, 1:] = 0.0
    return x


def _assert_runs_like(path, expected: np.ndarray, x: np.ndarray, atol: float = 1e-5) -> None:
    """The export, run twice without reset, gives Keras' numbers both times (and the same both times)."""
    first, second = RUNNERS[path.suffix](path, [x])
    assert first[0].shape == expected.shape
    np.testing.assert_allclose(first[0], expected, atol=atol)
    np.testing.assert_array_equal(second[0], first[0])


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".lstm-parity-")]


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
@pytest.mark.parametrize("name", sorted(KERAS3))
def test_keras3_models_export_and_run_in_plain_runtimes(name, suffix, tmp_path, run_cli, sources):
    model, source = sources(name)
    out = tmp_path / f"{name}{suffix}"
    extra = ["--timesteps", TIME] if (name, suffix) == ("stack", ".tflite") else []
    result = run_cli("export", source, out, *extra)
    assert result.exit_code == 0, result.output
    assert f"PASS: written {out}" in result.stdout and _leftovers(tmp_path) == []
    assert f"target     {'LiteRT' if suffix == '.tflite' else 'ONNX Runtime'} " in result.stdout
    x = _inputs(masked=name == "masked")
    _assert_runs_like(out, keras_predict(model, x), x)
    if suffix == ".tflite":  # unrolled: builtin ops only, no state, and any batch size
        census = tflite_census(str(out))
        assert census["flex_ops"] == [] and census["custom_ops"] == [] and census["variable_tensors"] == []
        assert "unrolled" in result.stdout
        _assert_runs_like(out, keras_predict(model, x[:2]), x[:2])
    else:
        census = onnx_census(str(out))
        taken = {"stack": "fused and loop", "masked": "loop"}[name]  # tf2onnx: fused LSTM; GRU and masks loop
        assert f"strategy   auto -> {taken}:" in result.stdout and "any batch size" in result.stdout
        if name == "stack":  # dynamic time axis: another length runs too
            longer = np.random.default_rng(4).uniform(-1, 1, (3, 8, FEATURES)).astype(np.float32)
            _assert_runs_like(out, keras_predict(model, longer), longer)
        for rows in (1, 7):  # any batch size
            y = _inputs(rows=rows, seed=rows, masked=name == "masked")
            _assert_runs_like(out, keras_predict(model, y), y)
    assert census["opset" if suffix == ".onnx" else "format"]


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_the_keras2_hard_sigmoid_sample_exports_exactly(suffix, tmp_path, run_cli):
    source = SAMPLES / "tutorial_keras2.h5"
    out = tmp_path / f"tutorial{suffix}"
    result = run_cli("export", source, out, SAMPLES / "tutorial_keras2.input.npy")
    assert result.exit_code == 0, result.output
    assert "lstm.kernel (gates f, i, o x1.2)" in result.stdout  # Keras 2's hard_sigmoid, rescaled for Keras 3
    assert "proof on INPUT" in result.stdout and "no state carried between invocations" in result.stdout
    x = np.load(SAMPLES / "tutorial_keras2.input.npy").astype(np.float32)
    tf_keras_model = keras_module("k2-h5").models.load_model(source, compile=False)
    _assert_runs_like(out, keras_predict(tf_keras_model, x), x)


def test_a_cudnn_file_no_keras_loads_exports_to_onnx(tmp_path, run_cli):
    source, twin = cudnn_lstm_h5(tmp_path / "cudnn.h5", time=TIME, seed=5)
    out = tmp_path / "cudnn.onnx"
    result = run_cli("export", source, out)
    assert result.exit_code == 0, result.output
    assert "CuDNNLSTM weights converted to LSTM layout" in result.stdout
    assert "fused LSTM" in result.stdout  # a plain sigmoid/tanh LSTM now: tf2onnx fuses it
    x = _inputs(rows=4, seed=6)
    _assert_runs_like(out, keras_predict(twin, x), x)


def _rel_l2(other: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(other - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("mode", ["dynamic", "float16"])
def test_quantized_tflite_is_smaller_proven_under_its_profile_and_reported(mode, tmp_path, run_cli, sources):
    model, source = sources("softmax")
    out, report = tmp_path / f"lstm16_{mode}.tflite", tmp_path / "report.json"
    result = run_cli("export", source, out, "--quantize", mode, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    profile = {"dynamic": "int8", "float16": "float16"}[mode]
    assert data["quantize"]["profile"] == profile and data["target"]["written"] is True
    assert data["target"]["runtime"] == "litert" and data["target"]["runtime_version"]  # the default for .tflite
    assert data["quantize"]["bytes"] == out.stat().st_size < data["quantize"]["bytes_float32"]
    assert data["census"]["quantized_types"] == [{"dynamic": "int8", "float16": "float16"}[mode]]
    assert data["converter"]["tensorflow"] and data["converter"]["keras"] and "quantizer" in data["converter"]
    assert data["strategy"]["taken"] == "unrolled" and "any batch size" in data["strategy"]["reason"]
    check = data["gates"][0]["check"]
    assert check["comparisons"][0]["profile"] == profile and check["comparisons"][0]["passed"]
    assert check["second_passes"][0]["passed"] and data["passed"] and data["exit_code"] == 0
    assert check["comparisons"][0]["runtime"]["path"] == str(out)  # OUT, not the temporary file
    # class scores: proven on 1,000 sequences, so that the profile's top-1 rule is judged, not only shown
    assert data["gates"][0]["inputs"].startswith("generated inputs: 1000 samples") and data["gates"][0]["notes"] == []
    assert check["comparisons"][0]["outputs"][0]["shape"] == [1000, 4]
    x = _inputs(rows=64, seed=8)
    first, second = run_tflite(out, [x])
    expected = keras_predict(model, x)
    np.testing.assert_array_equal(second[0], first[0])
    assert _rel_l2(first[0], expected) <= {"dynamic": 0.0316, "float16": 2e-3}[mode]  # the profiles' rule
    assert np.max(np.abs(first[0] - expected)) > 1e-6  # really quantized: a float32 export is within 1e-7


def test_a_stateful_model_becomes_a_tflite_loop_that_carries_its_states(tmp_path, run_cli):
    def make(k):
        inputs = k.Input((TIME, FEATURES), batch_size=2)
        return k.Model(inputs, k.layers.Dense(2)(k.layers.GRU(3, stateful=True)(inputs)))

    model = build_with("k3-keras", make, seed=9)
    source = save_model(model, "k3-keras", tmp_path, "stateful")
    result = run_cli("export", source, tmp_path / "stateful.onnx")
    assert result.exit_code == 3 and "ONNX Runtime session keeps no state" in result.stderr
    out = tmp_path / "stateful.tflite"
    result = run_cli("export", source, out)
    assert result.exit_code == 0, result.output
    assert "strategy   auto -> loop: stateful layers" in result.stdout
    x = _inputs(rows=4, seed=10)
    expected = model.predict(x, batch_size=2, verbose=0)  # Keras carries the states from batch to batch
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    got = []
    for low in (0, 2):  # an app feeding consecutive batches, never resetting
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[low : low + 2])
        interpreter.invoke()
        got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-5)


def test_a_failing_proof_writes_nothing_and_keeps_the_old_file(tmp_path, run_cli, monkeypatch):
    import lstm_parity.upgrade as upgrade

    monkeypatch.setattr(upgrade, "SCALE", np.float32(1.0))  # "forget" to rescale Keras 2's hard_sigmoid
    out = tmp_path / "tutorial.onnx"
    out.write_bytes(b"the previous export")
    result = run_cli("export", SAMPLES / "tutorial_keras2.h5", out, "--json", tmp_path / "r.json")
    assert result.exit_code == 1, result.output
    assert "FAIL: not written" in result.stdout and out.read_bytes() == b"the previous export"
    assert _leftovers(tmp_path) == []
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False and data["target"]["written"] is False and data["exit_code"] == 1
    assert data["gates"][0]["check"]["comparisons"][0]["outputs"][0]["max_abs_diff"] > 1e-3


def _tf_keras_file(tmp_path, make, name="old"):
    keras_module("k2-h5").backend.clear_session()
    return save_model(build_with("k2-h5", make), "k2-h5", tmp_path, name)


def _masked_initial_state(k):
    """Keras 2 seq2seq: the decoder LSTM gets the encoder's states as initial_state, on masked tokens."""
    encoder_in, decoder_in = k.Input((4,), name="enc"), k.Input((3,), name="dec")
    _, h, c = k.layers.LSTM(3, return_state=True)(k.layers.Embedding(9, 2, mask_zero=True)(encoder_in))
    decoded = k.layers.LSTM(3, return_sequences=True)(
        k.layers.Embedding(9, 2, mask_zero=True)(decoder_in), initial_state=[h, c]
    )
    return k.Model([encoder_in, decoder_in], k.layers.Dense(2)(decoded))


def test_limits_are_named_with_exit_3_before_anything_is_written(tmp_path, run_cli, sources):
    stack, masked = sources("stack")[1], sources("masked")[1]
    bidirectional, conv = sources("masked_bidirectional")[1], sources("conv_lstm")[1]
    keras3 = keras_module("k3-keras")
    wrapped = tmp_path / "wrapped.keras"
    keras3.Sequential(
        [keras3.Input((None, FEATURES)), keras3.layers.GRU(2, return_sequences=True),
         keras3.layers.TimeDistributed(keras3.layers.Activation("relu"), name="time_distributed")]
    ).save(wrapped)  # fmt: skip
    cases = [
        ((stack, "s.tflite"), "open time axis", "pass --timesteps T"),
        ((stack, "s.tflite", "--strategy", "fused", "--timesteps", "4"), "keeps h and c in variable tensors", ""),
        ((masked, "m.tflite", "--strategy", "fused"), "takes no mask", ""),
        ((masked, "m.tflite", "--strategy", "loop", "--quantize", "int8"), "calibrator crashes", "--strategy unrolled"),
        ((bidirectional, "b.tflite", "--strategy", "unrolled"), "zeroes its padded outputs at the wrong steps", "auto"),
        ((bidirectional, "b.onnx", "--strategy", "unrolled"), "runs backwards over masked input", "auto"),
        ((conv, "c.onnx", "--strategy", "unrolled"), "Keras 3 cannot unroll ConvLSTM2D", "--strategy auto"),
        ((wrapped, "w.tflite", "--strategy", "loop"), "TimeDistributed layer 'time_distributed'", "--timesteps T"),
    ]
    inexact = _tf_keras_file(
        tmp_path, lambda k: k.Sequential([k.Input((4, 2)), k.layers.LSTM(3, activation="hard_sigmoid")])
    )
    cases.append(((inexact, "i.onnx"), "no exact rewrite", "would differ by"))
    seq2seq = _tf_keras_file(tmp_path, _masked_initial_state, "seq2seq")
    for suffix in (".onnx", ".tflite"):
        cases.append(((seq2seq, f"q{suffix}"), "called with initial_state on masked input", "would differ by"))
    for args, reason, advice in cases:
        result = run_cli("export", *args[:1], tmp_path / args[1], *args[2:])
        assert result.exit_code == 3, (args, result.output)
        assert reason in result.stderr and advice in result.stderr and len(result.stderr.splitlines()) == 1
        assert not (tmp_path / args[1]).exists()
    difference = float(result.stderr.split("would differ by ")[1].split()[0])
    assert difference > 1e-3  # measured: the padded decoder steps really differ
    assert _leftovers(tmp_path) == []


def test_a_lambda_or_a_plugin_layer_is_refused_by_name(tmp_path, run_cli):
    keras3 = keras_module("k3-keras")
    inputs = keras3.Input((TIME, FEATURES))
    x = keras3.layers.Lambda(lambda t: t * 2.0, name="double")(keras3.layers.LSTM(3)(inputs))
    lambda_file = tmp_path / "lambda.keras"
    keras3.Model(inputs, keras3.layers.Dense(2, name="dense")(x)).save(lambda_file)
    for command, out in (("export", "l.onnx"), ("upgrade", "l.keras")):  # upgrade rebuilds with Keras 3 too
        result = run_cli(command, lambda_file, tmp_path / out)
        assert result.exit_code == 3 and "layer 'double' is a Lambda" in result.stderr, result.output
        assert len(result.stderr.splitlines()) == 1 and not (tmp_path / out).exists()
    plain = tmp_path / "plain.keras"
    keras3.Sequential(
        [keras3.Input((TIME, FEATURES)), keras3.layers.LSTM(3), keras3.layers.Dense(2, name="dense")]
    ).save(plain)
    plugin = tmp_path / "zeros.py"  # a file the user names may compute even a class Keras has
    plugin.write_text(
        textwrap.dedent(
            """
            from lstm_parity.plugins import layer

            @layer("Dense", name="dense")
            def zeros(inputs, weights, config):
                return 0 * inputs[0][:, :2]
            """
        )
    )
    result = run_cli("export", plain, tmp_path / "p.tflite", "--plugin", plugin)
    assert result.exit_code == 3 and len(result.stderr.splitlines()) == 1
    assert "layer 'dense' of class 'Dense' is computed by the plugin" in result.stderr
    result = run_cli("export", plain, tmp_path / "p.tflite", "--plugin", plugin, "--json", plugin)
    assert result.exit_code == 2 and "refusing to overwrite an input file" in result.stderr
    assert not (tmp_path / "l.onnx").exists() and not (tmp_path / "p.tflite").exists() and _leftovers(tmp_path) == []


def test_onnx_fused_or_loop_is_a_requirement_checked_on_the_converted_graph(tmp_path, run_cli, sources):
    masked = sources("masked")[1]
    result = run_cli("export", masked, tmp_path / "m.onnx", "--strategy", "fused")
    assert result.exit_code == 3 and "tf2onnx wrote the recurrence as Loop" in result.stderr
    assert not (tmp_path / "m.onnx").exists() and _leftovers(tmp_path) == []


def test_usage_errors_exit_2(tmp_path, run_cli, sources):
    masked, stack = sources("masked")[1], sources("stack")[1]  # stack: an open time axis
    longer = tmp_path / "x.npy"
    np.save(longer, np.zeros((2, TIME + 1, FEATURES), np.float32))
    cases = [
        ((masked, tmp_path / "m.pb"), "the export format comes from the extension"),
        ((masked, tmp_path / "m.tflite", "--opset", "13"), "--opset is an ONNX setting"),
        ((masked, tmp_path / "m.tflite", "--target", "onnxruntime"), "--target onnxruntime runs .onnx files"),
        ((stack, tmp_path / "s.tflite", longer, "--timesteps", TIME), "has 6 timesteps and the export fixes 5"),
        ((masked, tmp_path / "m.tflite", longer), "axis 1 must be 5"),
        ((masked, tmp_path / "m.onnx", "--calibration", longer), "only --quantize int8 calibrates"),
        ((masked, masked), "refusing to overwrite an input file"),
        ((masked, tmp_path / "missing" / "m.onnx"), "does not exist"),
        ((masked, tmp_path / "m.onnx", "--json", tmp_path / "m.onnx"), "is OUT itself"),  # OUT does not exist yet
        ((masked, tmp_path / "m.onnx", "--json", tmp_path / "missing" / "r.json"), "does not exist"),
    ]
    for args, message in cases:
        result = run_cli("export", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.tflite").exists()
    assert _leftovers(tmp_path) == []


def test_a_converter_failure_is_one_line_exit_4_and_writes_nothing(tmp_path, run_cli, sources, monkeypatch):
    tf = pytest.importorskip("tensorflow")

    class ConverterError(Exception):
        pass

    def failing(model):  # what TFLite's MLIR converter raises: its whole log, locations included
        raise ConverterError(
            'Could not translate MLIR to FlatBuffer.\n<unknown>:0: error: loc(callsite("lstm/while@f (x)" at '
            'fused["TensorListReserve:", "a"])): \'tf.TensorListReserve\' op requires element_shape to be static'
            "\n<unknown>:0: note: see current operation"
        )

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", failing)
    out = tmp_path / "m.tflite"
    result = run_cli("export", sources("masked")[1], out)
    assert result.exit_code == 4 and len(result.stderr.splitlines()) == 1, result.output
    assert "the TFLite converter (tensorflow" in result.stderr and "loc(" not in result.stderr
    assert "failed: ConverterError: 'tf.TensorListReserve' op requires element_shape to be static" in result.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_onnx_keeps_the_model_input_order_and_the_opset_asked(tmp_path, run_cli, sources):
    model, source = sources("two_inputs")
    out = tmp_path / "two.onnx"
    result = run_cli("export", source, out, "--opset", "13", "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # --json -: the JSON report instead of the text one
    assert data["passed"] and data["target"]["written"] and data["census"]["opset"] == 13
    assert data["target"]["runtime"] == "onnxruntime"  # the default for .onnx
    assert onnx_census(str(out))["opset"] == 13
    assert [port["name"] for port in data["census"]["inputs"]] == ["zeta", "alpha"]  # not the signature's order
    rng = np.random.default_rng(11)
    for rows in (1, 7):
        xs = [
            rng.uniform(-1, 1, (rows, TIME, FEATURES)).astype(np.float32),
            rng.uniform(-1, 1, (rows, 2)).astype(np.float32),
        ]
        first, second = run_onnx(out, xs)  # fed by position, in the model's order
        np.testing.assert_allclose(first[0], keras_predict(model, xs), atol=1e-5)
        np.testing.assert_array_equal(second[0], first[0])


def test_onnx_unrolled_at_a_fixed_batch_size_holds_no_loop(tmp_path, run_cli, sources):
    model, source = sources("masked")
    out = tmp_path / "m.onnx"
    result = run_cli("export", source, out, "--strategy", "unrolled", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "unroll=True: plain ops, no loop, batches of exactly 3 (--batch-size), 5 timesteps" in result.stdout
    census = onnx_census(str(out))
    assert census["fused"] == {} and census["loops"] == {} and census["inputs"][0]["shape"] == [3, TIME, FEATURES]
    x = _inputs(rows=3, seed=12, masked=True)
    _assert_runs_like(out, keras_predict(model, x), x)
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # the batch is fixed: 1 row is refused
        run_onnx(out, [x[:1]])


def test_auto_loops_above_the_unroll_limit_and_unrolled_unrolls_anyway(tmp_path, run_cli, sources, monkeypatch):
    import lstm_parity.export.strategy as strategy

    monkeypatch.setattr(strategy, "UNROLL_LIMIT", TIME - 1)  # the model's 5 steps are now "too many"
    model, source = sources("masked")
    loop, unrolled = tmp_path / "loop.tflite", tmp_path / "unrolled.tflite"
    result = run_cli("export", source, loop)
    assert result.exit_code == 0, result.output
    assert "auto -> loop: a WHILE loop at a fixed batch size of 1 (the default; --batch-size N" in result.stdout
    assert f"5 timesteps are more than the {TIME - 1} auto unrolls" in result.stdout
    assert tflite_census(str(loop))["loops"] == {"WHILE": 1}
    x = _inputs(rows=3, seed=13, masked=True)
    np.testing.assert_allclose(_run_rows(loop, x), keras_predict(model, x), atol=1e-5)
    result = run_cli("export", source, unrolled, "--strategy", "unrolled")
    assert result.exit_code == 0, result.output
    assert "strategy   unrolled: unroll=True at 5 timesteps" in result.stdout and "(requested)" in result.stdout
    assert tflite_census(str(unrolled))["loops"] == {}
    _assert_runs_like(unrolled, keras_predict(model, x), x)


def _run_rows(path, x: np.ndarray) -> np.ndarray:
    """A fixed-batch-1 .tflite (a loop) fed one row at a time, twice through, never reset; the second pass
    must repeat the first. Returns the first pass's outputs stacked."""
    passes = [np.concatenate([run_tflite(path, [row[None]], times=1)[0][0] for row in x]) for _ in range(2)]
    np.testing.assert_array_equal(passes[1], passes[0])
    return passes[0]


def test_models_keras_3_cannot_unroll_take_the_tflite_loop(tmp_path, run_cli, sources):
    for name, why in [
        ("masked_bidirectional", "runs backwards over masked input and returns sequences"),
        ("conv_lstm", "Keras 3 cannot unroll ConvLSTM2D"),
    ]:
        model, source = sources(name)
        out = tmp_path / f"{name}.tflite"
        result = run_cli("export", source, out)
        assert result.exit_code == 0, result.output
        assert (
            "strategy   auto -> loop: a WHILE loop at a fixed batch size of 1" in result.stdout and why in result.stdout
        )
        rng = np.random.default_rng(14)
        if name == "conv_lstm":
            x = rng.uniform(-1, 1, (3, 4, 5, 5, 1)).astype(np.float32)
        else:
            x = rng.integers(1, 20, (4, TIME)).astype(np.int32)  # token ids, padded with 0 after a few steps
            x[1, 3:], x[2, 1:] = 0, 0
        np.testing.assert_allclose(_run_rows(out, x), keras_predict(model, x), atol=1e-5)


def test_a_tflite_loop_over_an_open_time_axis_takes_any_length(tmp_path, run_cli, sources):
    model, source = sources("open_time_distributed")
    out = tmp_path / "open.tflite"
    result = run_cli("export", source, out, "--strategy", "loop")
    assert result.exit_code == 0, result.output
    assert "builtin ops, any length (requested)" in result.stdout
    assert "note       TimeDistributed(Dense) 'time_distributed" in result.stdout and "built as Dense" in result.stdout
    for length in (4, 9):
        x = np.random.default_rng(length).uniform(-1, 1, (2, length, FEATURES)).astype(np.float32)
        got = _run_rows(out, x)  # (2, length, 2)
        # Keras called directly: its predict() retraced for a second length gives TimeDistributed a time axis of
        # the batch size (Keras 3.15)
        np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5)


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_int8_is_calibrated_proven_under_the_int8_profile_and_says_what_it_did_not_judge(
    suffix, tmp_path, run_cli, sources
):
    model, source = sources("softmax")
    out, report = tmp_path / f"int8{suffix}", tmp_path / "report.json"
    extra = []
    if suffix == ".onnx":  # ONNX with the user's calibration data; TFLite with generated inputs (and a note)
        calibration = tmp_path / "calibration.npy"
        np.save(calibration, np.random.default_rng(15).uniform(-1, 1, (32, TIME, FEATURES)).astype(np.float32))
        extra = ["--calibration", calibration]
    result = run_cli("export", source, out, "--quantize", "int8", "--samples", "64", *extra, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["quantize"]["profile"] == "int8" and "int8" in data["census"]["quantized_types"]
    assert ("int8 calibrated on 64 generated sequences" in " ".join(data["notes"])) == (suffix == ".tflite")
    # 64 rows: top-1 agreement is shown and said not to be judged (the profile waits for 1,000 rows)
    output = data["gates"][0]["check"]["comparisons"][0]["outputs"][0]["name"]
    assert data["gates"][0]["notes"] == [
        f"{output}: top-1 agreement over 64 rows is shown, not judged (the int8 profile judges it from 1,000 rows: "
        "--samples 1000)"
    ]
    assert "not judged" in result.stdout
    x = _inputs(rows=64, seed=16)
    first, second = RUNNERS[suffix](out, [x])
    np.testing.assert_array_equal(second[0], first[0])
    assert _rel_l2(first[0], keras_predict(model, x)) <= 0.0316  # the int8 profile's rule


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_quantized_onnx_reports_its_size_and_names_ops_outside_the_standard(mode, tmp_path, run_cli, sources):
    model, source = sources("softmax")
    out, report = tmp_path / f"{mode}.onnx", tmp_path / "report.json"
    result = run_cli("export", source, out, "--quantize", mode, "--samples", "64", "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["quantize"]["bytes"] == out.stat().st_size
    if mode == "float16":  # every weight halves; dynamic quantization of this small model may not shrink it
        assert out.stat().st_size < data["quantize"]["bytes_float32"]
    census = onnx_census(str(out))
    if mode == "float16":
        assert census["quantized_types"] == ["float16"] and data["strategy"]["nonstandard_ops"] == []
    else:  # quantize_dynamic turns the fused LSTM into ONNX Runtime's own op, and the report says so
        assert data["strategy"]["nonstandard_ops"] == ["com.microsoft::DynamicQuantizeLSTM"]
        assert "fused, quantized to com.microsoft::DynamicQuantizeLSTM" in result.stdout
        assert "other ONNX runtimes cannot run this file" in result.stdout
    x = _inputs(rows=64, seed=17)
    first, second = run_onnx(out, [x])
    np.testing.assert_array_equal(second[0], first[0])
    expected = keras_predict(model, x)
    assert _rel_l2(first[0], expected) <= {"dynamic": 0.0316, "float16": 2e-3}[mode]
    assert np.max(np.abs(first[0] - expected)) > 1e-7  # really quantized


def test_help_teaches_strategies_and_exit_codes(run_cli):
    text = run_cli("export", "--help").stdout
    for phrase in ("--quantize", "--strategy", "--timesteps", "Strategies", "Exit codes", "nothing written"):
        assert phrase in text
    assert "Absolute tolerance" in text and "Relative tolerance" in text
