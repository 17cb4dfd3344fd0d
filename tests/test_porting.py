"""The porter's kit: `dump --format npz|c`, `vectors`, and the C port in examples/c_port gated by
`check --expected` / `--expected-trace`. C code is compiled with the system compiler (skipped only
where there is none) as C99 and, for headers, as C++11."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, SAMPLES, build_with, keras_module, save_model
from lstm_parity.c_arrays import float_literal
from lstm_parity.c_header import plan_header, render
from lstm_parity.c_names import MAX_IDENTIFIER, MAX_STEM, NameTable, c_string, comment_text, sanitize
from lstm_parity.cli import cli
from lstm_parity.errors import BadInputError
from lstm_parity.formats import open_model
from lstm_parity.formulas import ACTIVATION_CODES, activation
from lstm_parity.reference.activations import ACTIVATIONS
from lstm_parity.reference.forward import predict_batches
from lstm_parity.spec import LayerSpec
from lstm_parity.trace import trace
from lstm_parity.vectors import golden_vectors, render_c, suggest_atol

EXAMPLE = ROOT / "examples" / "c_port"
CC = next((shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
CXX = next((shutil.which(c) for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CXX_FLAGS = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DECLARED = re.compile(r"^#define (\w+)|^static const [^=\[]*?(\w+)\[", re.MULTILINE)
TUTORIAL, TUTORIAL_X = SAMPLES / "tutorial_keras2.h5", SAMPLES / "tutorial_keras2.input.npy"


def run_vectors(*args):
    """`lstm-parity vectors ...` in-process."""
    return CliRunner().invoke(cli, ["vectors", *map(str, args)], catch_exceptions=False)


def compile_c(sources: list[Path], output: Path, *flags: str, cxx: bool = False) -> None:
    compiler, standard = (CXX, CXX_FLAGS) if cxx else (CC, C_FLAGS)
    assert compiler is not None
    proc = subprocess.run(
        [compiler, *standard, *flags, "-o", str(output), *map(str, sources), "-lm"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def run_c(program: str, folder: Path, name: str = "prog", cxx: bool = False) -> str:
    """Compile `program` (which includes headers in `folder`), run it in `folder`, return its stdout."""
    source = folder / (f"{name}.cpp" if cxx else f"{name}.c")
    source.write_text(program)
    compile_c([source], folder / name, f"-I{folder}", cxx=cxx)
    return subprocess.run([folder / name], cwd=folder, capture_output=True, text=True, check=True).stdout


def header_identifiers(text: str) -> list[str]:
    """Every macro and array a header declares."""
    return [m.group(1) or m.group(2) for m in DECLARED.finditer(text)]


def assert_c99_identifiers(text: str) -> list[str]:
    """Each identifier valid, at most 63 characters, and unique within its first 63 (C99's guarantee)."""
    names = header_identifiers(text)
    assert names
    assert [n for n in names if not IDENTIFIER.match(n) or "__" in n or len(n) > MAX_IDENTIFIER] == []
    assert len({n[:63] for n in names}) == len(names)
    return names


def make_port(tmp_path: Path, run_cli, *flags: str, sample: int = 2) -> Path:
    """weights.h and golden vectors of the tutorial model, and the example port built against them."""
    assert run_cli("dump", TUTORIAL, "--format", "c", "-o", tmp_path / "weights.h").exit_code == 0
    made = run_vectors(TUTORIAL, TUTORIAL_X, "--sample", sample, "--format", "c", "-o", tmp_path)
    assert made.exit_code == 0, made.output
    binary = tmp_path / "port"
    compile_c([EXAMPLE / "lstm_port.c", EXAMPLE / "port_io.c"], binary, f"-I{tmp_path}", *flags)
    return binary


def gate(run_cli, folder: Path, out: str, trace_json: str, *args: str):
    return run_cli(
        "check", TUTORIAL, TUTORIAL_X, "--no-keras", "--expected", folder / out,
        "--expected-trace", folder / trace_json, *args,
    )  # fmt: skip


# ---- the C port, gated -------------------------------------------------------------------------------


@needs_cc
def test_c_port_of_the_sample_model_passes_the_gate(tmp_path, run_cli):
    port = make_port(tmp_path, run_cli)
    np.testing.assert_array_equal(np.load(tmp_path / "inputs.npy"), np.load(TUTORIAL_X))
    ran = subprocess.run([port, tmp_path / "out.npy", tmp_path / "trace.json"], capture_output=True, text=True)
    assert ran.returncode == 0 and ": ok" in ran.stdout, ran.stdout + ran.stderr
    result = gate(run_cli, tmp_path, "out.npy", "trace.json", "--sample", "2")
    assert result.exit_code == 0, result.output
    assert re.search(r"dense\s+expected\s+\(8, 1\)\s+\S+\s.*PASS", result.stdout)
    assert "expected trace: every layer, timestep and gate within tolerance" in result.stdout
    predicted = tmp_path / "reference.npy"
    assert run_cli("predict", TUTORIAL, TUTORIAL_X, "-o", predicted).exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.load(predicted), atol=1e-6, rtol=0)


@needs_cc
def test_a_port_with_the_input_and_forget_gates_swapped_is_named(tmp_path, run_cli):
    port = make_port(tmp_path, run_cli, "-DSWAP_IF")
    ran = subprocess.run([port, tmp_path / "bad.npy", tmp_path / "bad.json"], capture_output=True, text=True)
    assert ran.returncode == 1 and ": FAIL" in ran.stdout
    result = gate(run_cli, tmp_path, "bad.npy", "bad.json", "--sample", "2")
    assert result.exit_code == 1
    assert re.search(
        r"expected trace: layer lstm, timestep 0, gate i: max abs diff \S+ \(first divergence\)", result.stdout
    )
    assert result.stdout.rstrip().endswith("trace departs at layer lstm gate i")


@needs_cc
def test_port_io_writes_nan_and_infinities_so_check_names_the_gate(tmp_path, run_cli):
    """A port whose gate f turns NaN at timestep 1 (and o infinite later): its trace JSON stays readable
    (NaN, Infinity, -Infinity as Python's json reads them) and the gate names the first bad gate."""
    traced = {k: v.astype(np.float32) for k, v in trace(open_model(TUTORIAL), [np.load(TUTORIAL_X)], sample=2).items()}
    traced["lstm/f"][1, 0] = np.nan
    traced["lstm/o"][2, 1], traced["lstm/o"][3, 2] = np.inf, -np.inf
    arrays, rows = [], []
    for n, (key, value) in enumerate(traced.items()):
        words = ", ".join(float_literal(float(v), "float") for v in value.ravel())
        arrays.append(f"static const float a{n}[{value.size}] = {{{words}}};")
        shape = value.shape if value.ndim == 2 else (0, value.size)
        rows.append(f"{{{c_string(key)}, a{n}, {shape[0]}, {shape[1]}}}")
    program = "\n".join(
        ["#include <math.h>", '#include "port_io.h"', *arrays, "int main(void)", "{",
         f"    const struct named_rows keys[] = {{{', '.join(rows)}}};",
         f'    return write_trace_json("trace.json", 2, keys, {len(rows)});', "}", ""]
    )  # fmt: skip
    (tmp_path / "driver.c").write_text(program)
    compile_c([tmp_path / "driver.c", EXAMPLE / "port_io.c"], tmp_path / "driver", f"-I{EXAMPLE}")
    subprocess.run([tmp_path / "driver"], cwd=tmp_path, check=True)
    values = json.loads((tmp_path / "trace.json").read_text())["values"]
    assert math.isnan(values["lstm/f"][1][0]) and values["lstm/o"][2][1] == math.inf
    assert values["lstm/o"][3][2] == -math.inf
    assert np.array(values["lstm/i"], np.float32).tobytes() == traced["lstm/i"].tobytes()  # 9 digits: exact
    np.save(tmp_path / "out.npy", predict_batches(open_model(TUTORIAL), [np.load(TUTORIAL_X)])[0].astype(np.float32))
    result = gate(run_cli, tmp_path, "out.npy", "trace.json", "--sample", "2")
    assert result.exit_code == 1, result.output
    assert "expected trace: layer lstm, timestep 1, gate f: max abs diff nan (first divergence)" in result.stdout


@needs_cc
def test_c_port_of_a_keras3_hard_sigmoid_model_without_biases(tmp_path, run_cli):
    """The same port compiles against another tutorial-shaped model: Keras 3's hard_sigmoid, no biases
    (the header declares zero arrays), an open time axis, generated inputs, a sigmoid head of 2."""
    model = build_with(
        "k3-keras",
        lambda k: k.Sequential(
            [
                k.Input(shape=(None, 4)),
                k.layers.LSTM(6, recurrent_activation="hard_sigmoid", use_bias=False, name="rnn"),
                k.layers.Dense(2, activation="sigmoid", use_bias=False, name="head"),
            ]
        ),
        seed=5,
        weight_scale=1.0,
    )
    path = save_model(model, "k3-keras", tmp_path)
    assert run_cli("dump", path, "-o", tmp_path / "weights.h").exit_code == 0  # .h: the C form
    header = (tmp_path / "weights.h").read_text()
    assert "#define TUTORIAL_RECURRENT_ACTIVATION LP_ACT_HARD_SIGMOID_KERAS3" in header
    assert "relu6(x + 3) / 6" in header and "static const float tutorial_b[TUTORIAL_B_DIM0]" in header
    assert re.search(r"^#define MODEL_OUTPUT0_DIM1 2\b", header, re.MULTILINE)
    assert "MODEL_INPUT0_DIM1" not in header  # the time axis is open
    made = run_vectors(path, "--samples", "5", "--seed", "3", "--timesteps", "7", "--format", "c", "-o", tmp_path)
    assert made.exit_code == 0, made.output
    port = tmp_path / "port"
    compile_c([EXAMPLE / "lstm_port.c", EXAMPLE / "port_io.c"], port, f"-I{tmp_path}")
    ran = subprocess.run([port, tmp_path / "out.npy", tmp_path / "trace.json"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    inputs = tmp_path / "inputs.npy"
    assert np.load(inputs).shape == (5, 7, 4)
    result = run_cli(
        "check", path, inputs, "--no-keras", "--expected", tmp_path / "out.npy",
        "--expected-trace", tmp_path / "trace.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.predict(np.load(inputs), verbose=0), atol=1e-6)


# ---- the weights header ------------------------------------------------------------------------------


def _dumper(plan) -> str:
    """A program that writes every array's bytes, then every layer name macro (NUL-terminated)."""
    lines = ["#include <stdio.h>", '#include "weights.h"', "int main(void)", "{", '  FILE *f = fopen("out.bin", "wb");']
    lines += [f"    fwrite({a.identifier}, sizeof {a.identifier}, 1, f);" for a in plan.arrays if a.values.size]
    lines += [f"    fwrite({s.defines[0][0]}, 1, sizeof {s.defines[0][0]}, f);" for s in plan.sections if s.layer]
    lines += ["    return fclose(f);", "}", ""]
    return "\n".join(lines)


def _compile_and_dump(tmp_path: Path, plan, cxx: bool) -> bytes:
    folder = tmp_path / ("cxx" if cxx else "c")
    folder.mkdir(exist_ok=True)
    (folder / "weights.h").write_text(render(plan))
    run_c(_dumper(plan), folder, "dump", cxx=cxx)
    return (folder / "out.bin").read_bytes()


def _expected_bytes(plan, spec, c_type: str) -> tuple[bytes, np.ndarray]:
    dtype = np.float32 if c_type == "float" else np.float64
    values = np.concatenate([a.values.astype(dtype).ravel() for a in plan.arrays if a.values.size])
    names = b"".join(layer.name.encode() + b"\0" for layer in spec.layers if layer.class_name != "InputLayer")
    return names, values


def _assert_reads_back(tmp_path: Path, spec, c_type: str) -> str:
    """Compile the header as C and C++; every array's bytes and every layer name come back exactly."""
    plan = plan_header(spec, c_type)
    names, values = _expected_bytes(plan, spec, c_type)
    for cxx in [False] + ([True] if CXX else []):
        out = _compile_and_dump(tmp_path, plan, cxx)
        got = np.frombuffer(out[: values.nbytes], dtype=values.dtype)
        assert np.array_equal(np.isnan(got), np.isnan(values))
        same = ~np.isnan(values)
        assert got[same].tobytes() == values[same].tobytes()  # every bit, -0.0 and subnormals included
        assert out[values.nbytes :] == names  # each <LAYER>_NAME macro spells the Keras name
    return render(plan)


def _hostile_model(writer: str = "k3-keras"):
    """Legal Keras 3 layer names that are no C identifiers, C keywords, reserved, colliding, or collide
    with the header's own names; every kind of weight array; special float values in the weights."""

    def make(k):
        return k.Sequential(
            [
                k.Input(shape=(5, 3)),
                k.layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm"),
                k.layers.GRU(3, return_sequences=True, name="LSTM"),
                k.layers.Bidirectional(k.layers.LSTM(2, return_sequences=True), name="1st"),
                k.layers.TimeDistributed(k.layers.Dense(2), name="int"),
                k.layers.Dense(2, name="a.b"),
                k.layers.Dense(2, name="a_b"),
                k.layers.LayerNormalization(name="??="),
                k.layers.Dense(2, name="é"),
                k.layers.Dense(2, name='a"b'),
                k.layers.Dense(2, name="back\\slash"),
                k.layers.Dense(2, name="_Bool"),
                k.layers.Dense(2, name="LSTM_NAME"),
                k.layers.Dense(2, name="tutorial"),
                k.layers.Dense(2, name="lp_merge"),
                k.layers.Dense(1, name="__x", activation="hard_silu"),
            ]
        )

    model = build_with(writer, make, seed=2)
    weights = model.get_weights()
    specials = [0.0, -0.0, 1e-45, -3.4028235e38, 1.1754942e-38, np.nan, np.inf, -np.inf, 0.1]
    weights[0].reshape(-1)[: len(specials)] = specials  # the first LSTM's kernel (3, 16)
    model.set_weights(weights)
    return model


@needs_cc
@pytest.mark.parametrize("c_type", ["float", "double"])
def test_header_compiles_as_c_and_cxx_and_reads_back_bit_exactly(c_type, tmp_path):
    spec = open_model(save_model(_hostile_model(), "k3-keras", tmp_path))
    spec = replace(spec, layers=(*spec.layers[:-1], replace(spec.layers[-1], name="x*/y??/\n\t")))  # as tf_keras allows
    plan = plan_header(spec, c_type)
    identifiers = [a.identifier for a in plan.arrays]
    assert len(identifiers) == sum(len(layer.weights) for layer in spec.layers)
    text = _assert_reads_back(tmp_path, spec, c_type)
    declared = assert_c99_identifiers(text)
    assert set(identifiers) <= set(declared)
    assert "#include <math.h>" in text and "NAN" in text and "-INFINITY" in text
    other = "double" if c_type == "float" else "float"
    assert f"static const {c_type} " in text and f"static const {other} " not in text


LONG = "a" * 60  # legal in Keras; C99 only tells identifiers apart by their first 63 characters


@pytest.fixture(scope="module")
def long_bidirectional(tmp_path_factory):
    """A Keras 3 Bidirectional LSTM (return_sequences, merge_mode sum) named LONG, then a Dense named
    LONG + "b": names whose stems and arrays collide once cut short."""
    model = build_with(
        "k3-keras",
        lambda k: k.Sequential(
            [
                k.Input(shape=(5, 3)),
                k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True), merge_mode="sum", name=LONG),
                k.layers.Dense(2, name=LONG + "b"),
            ]
        ),
        seed=3,
    )
    return model, save_model(model, "k3-keras", tmp_path_factory.mktemp("long"))


@needs_cc
def test_long_names_give_identifiers_within_63_characters(long_bidirectional, tmp_path):
    _, path = long_bidirectional
    text = _assert_reads_back(tmp_path, open_model(path), "float")
    names = assert_c99_identifiers(text)
    assert len([n for n in names if n.endswith("_NAME")]) == 2 and max(map(len, names)) <= 63
    assert any(n.endswith("_BACKWARD_RECURRENT_KERNEL_DIM1") for n in names)  # the tail is never the part cut


def test_bidirectional_header_says_how_the_directions_merge(long_bidirectional, tmp_path):
    """The header's merge rule, checked against Keras: with return_sequences y[t] = y_fwd[t] + y_bwd[T-1-t]."""
    model, path = long_bidirectional
    plan = plan_header(open_model(path))
    text = render(plan)
    macro = next(m for s in plan.sections if s.layer == LONG for m, _, _ in s.defines if m.endswith("_MERGE_MODE"))
    assert re.search(rf"^#define {macro} LP_MERGE_SUM\b", text, re.MULTILINE)
    assert "wrapper options: merge_mode=sum" in text and "y = y_fwd + y_bwd" in text
    assert "y_bwd is reversed back in time before merging, so y[t] merges y_fwd[t]" in text
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    traced = trace(open_model(path), [x], sample=1)
    forward_h, backward_h = traced[f"{LONG}/forward/h"], traced[f"{LONG}/backward/h"]  # processing order
    k3 = keras_module("k3-keras")
    bidirectional = k3.Model(model.inputs, model.layers[0].output).predict(x, verbose=0)[1]  # (time, units)
    np.testing.assert_allclose(bidirectional, forward_h + backward_h[::-1], atol=1e-5)
    assert not np.allclose(bidirectional, forward_h + backward_h, atol=1e-3)  # without the reversal it differs


@needs_cc
def test_vectors_of_long_names_keep_the_gate_in_each_trace_name(long_bidirectional, tmp_path):
    _, path = long_bidirectional
    made = run_vectors(path, "--samples", "2", "--format", "c", "-o", tmp_path)
    assert made.exit_code == 0, made.output
    text = (tmp_path / "vectors.h").read_text()
    names = assert_c99_identifiers(text)
    keys = trace(open_model(path), [np.load(tmp_path / "inputs.npy")])
    assert len(keys) == 14  # forward and backward i, f, c_hat, o, c, h, and each layer's output
    arrays = re.findall(r"^static const float (vectors_trace_\w+)\[", text, re.MULTILINE)
    heads = set()
    for key, name in zip(keys, arrays, strict=True):
        rest = "_" + (key.split("/", 1)[1] if key.startswith(LONG + "b/") else key[len(LONG) + 1 :]).replace("/", "_")
        assert name.endswith(rest), (key, name)
        heads.add((key.startswith(LONG + "b/"), name.removesuffix(rest)))
    assert len(heads) == 2  # one stem per layer, told apart although both are cut to the same prefix
    run_c('#include "vectors.h"\nint main(void) { return vectors_trace_sizes[0] > 0 ? 0 : 1; }\n', tmp_path)
    assert len(names) == len(set(names))


def test_identifiers_for_hostile_names_are_valid_unique_and_stable():
    names = NameTable()
    stems = [names.stem(n) for n in ("lstm", "LSTM", "a.b", "a_b", "1st", "", "__x", "é", "int")]
    assert stems == ["lstm", "LSTM_2", "a_b", "a_b_2", "n1st", "x", "x_2", "x_3", "int"]
    assert names.claim("int") == "int_2" and names.claim("float") == "float_2" and names.claim("and") == "and_2"
    assert names.claim("lstm_kernel") == "lstm_kernel" and names.claim("lstm_kernel") == "lstm_kernel_2"
    long_a, long_b = sanitize("x" * 100), sanitize("x" * 99 + "y")
    assert len(long_a) == MAX_STEM and long_a.startswith("x" * 25) and long_a != long_b
    assert sanitize("x" * 100) == long_a  # stable: the suffix is a hash of the name
    head, tail = "L" * 70, "_RECURRENT_KERNEL_DIM1"
    first, second = names.claim(head, tail), names.claim(head, tail)
    assert len(first) == len(second) == MAX_IDENTIFIER and first.endswith(tail) and second.endswith(tail + "_2")
    assert names.claim("y" * 70) != names.claim("y" * 69 + "z")  # cut to the same prefix, told apart by the hash
    assert c_string('a"b\\?é\n') == '"a\\"b\\\\\\?\\303\\251\\012"'
    assert "*/" not in comment_text("x*/y/*z") and "??" not in comment_text("???/")


def test_float_literals_are_shortest_round_trips():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    for value in bits[np.isfinite(bits)]:
        text = float_literal(float(value), "float")
        assert text.endswith("f") and re.fullmatch(r"-?\d+(\.\d*)?(e[+-]\d+)?f", text)
        assert np.float32(text[:-1]) == value and len(text.rstrip("f").lstrip("-").replace(".", "")) <= 14
    assert float_literal(3.0, "float") == "3.0f" and float_literal(-0.0, "double") == "-0.0"
    assert float_literal(float("nan"), "float") == "NAN" and float_literal(float("-inf"), "double") == "-INFINITY"


@needs_cc
@pytest.mark.parametrize("c_type", ["float", "double"])
def test_float64_weights_are_kept_by_double_and_said_rounded_by_float(c_type, tmp_path, run_cli):
    """A model with float64 weights (a JSON dump with float64 arrays whose values need the precision)."""
    data = json.loads(run_cli("dump", SAMPLES / "tutorial.keras").stdout)
    for layer in data["layers"]:
        for weight in layer["weights"]:
            values = np.array(weight["values"], np.float64)
            weight["dtype"], weight["values"] = "float64", (values * (1 + 2.0**-40) + 2.0**-45).tolist()
    path = tmp_path / "f64.json"
    path.write_text(json.dumps(data))
    spec = open_model(path)
    assert {w.dtype for layer in spec.layers for w in layer.weights} == {np.dtype(np.float64)}
    text = _assert_reads_back(tmp_path, spec, c_type)  # double: every float64 bit; float: each rounded to float
    rounded = "float64 arrays are rounded to the nearest float (--c-type double keeps every bit)"
    assert (rounded in text.replace("\n *            ", " ")) == (c_type == "float")
    assert ("each literal reads back as exactly the number stored in the file" in text) == (c_type == "double")


@needs_cc
@pytest.mark.parametrize("writer", ["k2-h5", "k3-h5"])
def test_dump_npz_and_c_for_keras2_and_keras3(writer, tmp_path, run_cli):
    model = build_with(
        writer,
        lambda k: k.Sequential(
            [
                k.Input(shape=(4, 3)),
                k.layers.LSTM(5, recurrent_activation="hard_sigmoid", name="enc"),
                k.layers.Dense(2, name="out"),
            ]
        ),
        seed=9,
    )
    path = save_model(model, writer, tmp_path)
    assert run_cli("dump", path, "--format", "npz", "-o", tmp_path / "w.npz").exit_code == 0
    with np.load(tmp_path / "w.npz", allow_pickle=False) as arrays:
        keys = list(arrays.keys())
        layers = ["enc/kernel", "enc/recurrent_kernel", "enc/bias", "out/kernel", "out/bias"]
        assert keys == [*layers, "W", "U", "b", "Wout", "bout"]
        for key, theirs in zip(keys[:5], model.get_weights(), strict=True):
            assert arrays[key].dtype == np.float32 and arrays[key].tobytes() == theirs.tobytes()
        for tutorial, key in zip(["W", "U", "b", "Wout", "bout"], keys[:5], strict=True):
            assert arrays[tutorial].tobytes() == arrays[key].tobytes()

    assert run_cli("dump", path, "--format", "c", "-o", tmp_path / "weights.h").exit_code == 0
    header = (tmp_path / "weights.h").read_text()
    generation = "KERAS2" if writer == "k2-h5" else "KERAS3"
    formula = "clip(0.2 * x + 0.5, 0, 1)" if writer == "k2-h5" else "relu6(x + 3) / 6"
    assert f"#define ENC_RECURRENT_ACTIVATION LP_ACT_HARD_SIGMOID_{generation}" in header
    assert f"hard_sigmoid(x) = {formula}" in header and "gate order along the last axis: i, f, c, o" in header
    for line in (
        "#define ENC_GATE_F 5",
        "#define ENC_UNITS 5",
        "#define TUTORIAL_W enc_kernel",
        "#define TUTORIAL_BOUT out_bias",
        "#define ENC_KERNEL_DIM1 20",
        "#define MODEL_INPUT0_DIM1 4",
        "#define MODEL_OUTPUT0_DIM1 2",
    ):
        assert re.search(rf"^{re.escape(line)}\b", header, re.MULTILINE), line
    assert "mask:" not in header  # nothing masks this model
    spec = open_model(path)
    plan = plan_header(spec)
    names, values = _expected_bytes(plan, spec, "float")
    for cxx in [False] + ([True] if CXX else []):
        out = _compile_and_dump(tmp_path, plan, cxx)
        assert out == values.tobytes() + names


def test_dump_format_errors_and_inference(tmp_path, run_cli):
    model = SAMPLES / "tutorial.keras"
    npz = run_cli("dump", model, "--format", "npz")
    assert npz.exit_code == 2 and "give it a name with -o FILE.npz" in npz.stderr
    mixed = run_cli("dump", model, "--c-type", "double")
    assert mixed.exit_code == 2 and mixed.stderr.startswith("lstm-parity: error: --c-type applies to --format c")
    double = run_cli("dump", model, "--format", "c", "--c-type", "double")
    assert double.exit_code == 0 and "static const double lstm_kernel" in double.stdout
    assert run_cli("dump", model, "-o", tmp_path / "w.npz").exit_code == 0
    assert "W" in np.load(tmp_path / "w.npz")
    assert run_cli("dump", model, "-o", tmp_path / "w.json").exit_code == 0
    assert json.loads((tmp_path / "w.json").read_text())["tutorial"]["layers"] == ["lstm", "dense"]


def test_headers_name_the_model_by_base_name_and_hash_and_are_the_same_from_any_folder(tmp_path, run_cli):
    headers = []
    for folder in ("one", "two/deeper"):
        (tmp_path / folder).mkdir(parents=True)
        copy = tmp_path / folder / "model.h5"
        shutil.copyfile(TUTORIAL, copy)
        result = run_cli("dump", copy, "--format", "c")
        assert result.exit_code == 0
        headers.append(result.stdout)
    assert headers[0] == headers[1] and str(tmp_path) not in headers[0]
    sha = open_model(TUTORIAL).sha256
    assert f"#ifndef LSTM_PARITY_MODEL_H5_{sha[:8].upper()}_WEIGHTS_H" in headers[0]
    assert " * source:    model.h5 (legacy-h5, Sequential)" in headers[0]


def test_convolution_filters_are_not_called_units(tmp_path, run_cli):
    model = build_with(
        "k3-keras",
        lambda k: k.Sequential([k.Input(shape=(8, 3)), k.layers.Conv1D(4, 3, name="conv"), k.layers.LSTM(2, name="l")]),
    )
    header = run_cli("dump", save_model(model, "k3-keras", tmp_path), "--format", "c").stdout
    assert re.search(r"^#define CONV_FILTERS 4$", header, re.MULTILINE) and "CONV_UNITS" not in header
    assert re.search(r"^#define L_UNITS 2$", header, re.MULTILINE)
    assert re.search(r"^#define MODEL_OUTPUT0_DIM1 2\b", header, re.MULTILINE)


@needs_cc
def test_arrays_without_elements_are_declared_by_their_dimensions_only(tmp_path):
    """C has no empty arrays: a zero-size weight (here of a layer the reference does not compute) and a
    zero-size trace value still give headers that compile."""
    spec = open_model(TUTORIAL)
    odd = LayerSpec(
        name="odd",
        class_name="MyLayer",
        config={},
        weights=(np.zeros((0, 3), np.float32), np.ones(2, np.float32)),
        weight_names=("empty", "full"),
    )
    spec = replace(spec, layers=(*spec.layers, odd))
    text = _assert_reads_back(tmp_path, spec, "float")
    assert "#define ODD_EMPTY_DIM0 0" in text and "odd_empty[" not in text and "odd_full[ODD_FULL_DIM0]" in text
    assert "output dimensions: unknown" in text
    vectors = golden_vectors(open_model(TUTORIAL), [np.load(TUTORIAL_X)])
    vectors.trace["lstm/empty"] = np.zeros((0, 5))
    (tmp_path / "vectors.h").write_text(render_c(vectors))
    program = """#include <stdio.h>
#include "vectors.h"
int main(void)
{
    for (int k = 0; k < VECTORS_TRACE_KEYS; k++)
        printf("%s %ld %d\\n", vectors_trace_keys[k], vectors_trace_sizes[k], vectors_trace_values[k] != 0);
    return 0;
}
"""
    lines = run_c(program, tmp_path).splitlines()
    assert lines[-1] == "lstm/empty 0 0" and all(line.endswith(" 1") for line in lines[:-1])


# ---- what the header says about masks ----------------------------------------------------------------


@needs_cc
def test_masked_layers_say_what_a_masked_step_does_and_token_inputs_compile(tmp_path, run_cli):
    """Embedding(mask_zero) into an LSTM; Masking into two stacked LSTMs (through a Dropout). The vectors
    of the Embedding model hold int32 token ids (<stdint.h>) that a C program reads back."""
    embedded = build_with(
        "k3-keras",
        lambda k: k.Sequential(
            [
                k.Input(shape=(6,), dtype="int32"),
                k.layers.Embedding(10, 4, mask_zero=True, name="emb"),
                k.layers.LSTM(3, name="lstm"),
                k.layers.Dense(1, name="d"),
            ]
        ),
        seed=4,
    )
    masked = build_with(
        "k2-h5",
        lambda k: k.Sequential(
            [
                k.Input(shape=(5, 3)),
                k.layers.Masking(0.0, name="pad"),
                k.layers.LSTM(4, return_sequences=True, name="l1"),
                k.layers.Dropout(0.1),
                k.layers.GRU(2, return_sequences=True, name="l2"),
                k.layers.Dense(1, name="d"),
            ]
        ),
        seed=4,
    )
    embedded_path = save_model(embedded, "k3-keras", tmp_path, "emb")
    header = run_cli("dump", embedded_path, "--format", "c").stdout
    lstm = header[header.index("   lstm (LSTM)") : header.index("   d (Dense)")]
    assert "mask: emb (Embedding, mask_zero=True) masks every step whose token id is 0" in lstm
    assert "at a masked step t the step is skipped: the states are kept, h_t = h_tm1, c_t = c_tm1" in lstm
    assert "the output is h after the last unmasked step (zeros when every step is masked)" in lstm

    header = run_cli("dump", save_model(masked, "k2-h5", tmp_path, "masked"), "--format", "c").stdout
    l1, l2 = header[header.index("   l1 (LSTM)") : header.index("   l2 (GRU)")], header[header.index("   l2 (GRU)") :]
    for block, states in ((l1, "h_t = h_tm1, c_t = c_tm1"), (l2, "h_t = h_tm1\n")):
        assert "pad (Masking) masks every step whose features all equal mask_value=0.0" in block
        assert f"the states are kept, {states}" in block
        assert "the output at a masked step repeats the previous output (zeros before any unmasked step)" in block
    assert "mask:" not in run_cli("dump", TUTORIAL, "--format", "c").stdout

    made = run_vectors(embedded_path, "--samples", "3", "--format", "c", "-o", tmp_path)
    assert made.exit_code == 0, made.output
    text = (tmp_path / "vectors.h").read_text()
    assert "#include <stdint.h>" in text and "static const int32_t vectors_x0[VECTORS_X0_DIM0][VECTORS_X0_DIM1]" in text
    assert_c99_identifiers(text)
    program = '#include <stdio.h>\n#include "vectors.h"\nint main(void)\n{\n' + (
        "    for (int s = 0; s < VECTORS_X0_DIM0; s++)\n        for (int t = 0; t < VECTORS_X0_DIM1; t++)\n"
        '            printf("%ld ", (long)vectors_x0[s][t]);\n    return 0;\n}\n'
    )
    ids = np.load(tmp_path / "inputs.npy")
    assert ids.dtype == np.int32 and (ids == 0).any()  # padded token ids: the mask is exercised
    assert [int(v) for v in run_c(program, tmp_path).split()] == ids.ravel().tolist()


# ---- formulas ---------------------------------------------------------------------------------------


def _evaluate(formula: str, x: list[float]) -> list[float]:
    """A formula of formulas.py evaluated elementwise (x_j over the last axis for softmax)."""
    names = {
        "exp": math.exp, "log": math.log, "tanh": math.tanh, "erf": math.erf, "sqrt": math.sqrt, "abs": abs,
        "max": max, "min": min, "sum": sum,
        "clip": lambda v, lo, hi: min(max(v, lo), hi), "relu6": lambda v: min(max(v, 0), 6),
        "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
    }  # fmt: skip
    text = formula.removesuffix(", over the last axis").replace("|x|", "abs(x)")
    if "x_j" in text:
        text = text.replace("sum_k exp(x_k - max(x))", "sum(exp(v - max(x)) for v in x)").replace("x_j", "xj")
        return [eval(text, {"__builtins__": {}, **names, "x": x, "xj": xj}) for xj in x]
    return [eval(text, {"__builtins__": {}, **names, "x": v}) for v in x]


@pytest.mark.parametrize("semantics", ["keras2", "keras3"])
def test_every_activation_has_a_code_and_a_formula_that_computes_it(semantics):
    x = np.linspace(-7, 7, 57)
    for name, function in ACTIVATIONS[semantics].items():
        _, code, formula = activation(name, semantics)
        assert code in ACTIVATION_CODES, name
        for side in formula.split(" = "):  # "relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)": both sides
            np.testing.assert_allclose(_evaluate(side, x.tolist()), function(x), rtol=1e-12, atol=1e-15, err_msg=name)
    assert activation("hard_sigmoid", "keras2")[1] != activation("hard_sigmoid", "keras3")[1]
    assert activation("no_such_thing", semantics)[1] == "UNKNOWN"


# ---- vectors -----------------------------------------------------------------------------------------


def test_vectors_hold_the_reference_the_trace_and_the_inputs_check_generates(tmp_path, run_cli):
    model = SAMPLES / "tutorial.keras"
    options = ["--samples", "6", "--seed", "4", "--timesteps", "9"]
    for fmt in ("json", "npz"):
        made = run_vectors(model, "-o", tmp_path / fmt, "--format", fmt, "--sample", "3", *options)
        assert made.exit_code == 0, made.output
        assert re.search(r"suggested tolerance: check --atol (\S+) \(one --atol covers outputs and trace", made.output)
        assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == sorted([f"vectors.{fmt}", "inputs.npy"])
    generated = tmp_path / "generated.npy"
    assert run_cli("check", model, "--no-keras", *options, "--save-inputs", generated).exit_code == 0
    x = np.load(generated)
    assert np.load(tmp_path / "json" / "inputs.npy").tobytes() == x.tobytes()
    assert run_cli("predict", model, generated, "-o", tmp_path / "y.npy").exit_code == 0
    assert run_cli("trace", model, generated, "--sample", "3", "-o", tmp_path / "t.npz").exit_code == 0
    y, traced = np.load(tmp_path / "y.npy"), dict(np.load(tmp_path / "t.npz"))

    data = json.loads((tmp_path / "json" / "vectors.json").read_text())
    assert data["sample"] == 3 and list(data["trace"]) == list(traced)
    np.testing.assert_array_equal(np.array(data["inputs"]["input_layer"], np.float32), x)
    np.testing.assert_array_equal(np.array(data["outputs"]["dense"]), y)
    for key, value in traced.items():
        np.testing.assert_array_equal(np.array(data["trace"][key]), value)
    tolerance, tolerances = data["tolerances"]["outputs"]["dense"], data["tolerances"]
    assert 0 < tolerance["float32_max_abs_diff"] < 1e-6 and tolerance["atol"] == 1e-6
    assert tolerances["trace"]["atol"] >= 10 * tolerances["trace"]["float32_max_abs_diff"]
    assert tolerances["check_atol"] == max(tolerance["atol"], tolerances["trace"]["atol"])
    said = re.search(r"check --atol (\S+) ", made.output)
    assert said and float(said.group(1)) == tolerances["check_atol"]

    with np.load(tmp_path / "npz" / "vectors.npz", allow_pickle=False) as npz:
        assert int(npz["sample"]) == 3 and npz["inputs/input_layer"].tobytes() == x.tobytes()
        np.testing.assert_array_equal(npz["outputs/dense"], y)
        for key, value in traced.items():
            np.testing.assert_array_equal(npz[f"trace/{key}"], value)
        assert float(npz["suggested_atol/outputs/dense"]) == tolerance["atol"]
        assert float(npz["suggested_atol/check"]) == tolerances["check_atol"]
    # a port as good as the float32 reference passes at the suggested tolerance
    assert run_cli("predict", model, generated, "-o", tmp_path / "y32.npy", "--dtype", "float32").exit_code == 0
    result = run_cli("check", model, generated, "--no-keras", "--expected", tmp_path / "y32.npy", "--atol",
                     str(tolerances["check_atol"]), "--rtol", "0")  # fmt: skip
    assert result.exit_code == 0, result.output


@needs_cc
@pytest.mark.parametrize("c_type", ["float", "double"])
def test_vectors_header_compiles_and_tables_the_trace(c_type, tmp_path):
    made = run_vectors(TUTORIAL, TUTORIAL_X, "--format", "c", "--c-type", c_type, "--sample", "1", "-o", tmp_path)
    assert made.exit_code == 0, made.output
    text = (tmp_path / "vectors.h").read_text()
    assert_c99_identifiers(text)
    assert str(SAMPLES) not in text and "model:   tutorial_keras2.h5, sha256 " in text
    arrays = re.findall(rf"^static const {c_type} (vectors_trace_\w+)\[", text, re.MULTILINE)
    assert arrays == [f"vectors_trace_lstm_{k}" for k in ("output0", "i", "f", "c_hat", "o", "c", "h")] + [
        "vectors_trace_dense_output0"
    ]
    program = """#include <stdio.h>
#include "vectors.h"
int main(void)
{
    printf("%d %d %g %g\\n", VECTORS_SAMPLES, VECTORS_SAMPLE, VECTORS_OUTPUT_ATOL, VECTORS_CHECK_ATOL);
    for (int k = 0; k < VECTORS_TRACE_KEYS; k++) {
        printf("%s", vectors_trace_keys[k]);
        for (long n = 0; n < vectors_trace_sizes[k]; n++) printf(" %.17g", (double)vectors_trace_values[k][n]);
        printf("\\n");
    }
    printf("%.17g %.17g\\n", (double)vectors_x0[7][3][2], (double)vectors_y0[7][0]);
    return 0;
}
"""
    results = [run_c(program, tmp_path, cxx=cxx) for cxx in [False] + ([True] if CXX else [])]
    assert len(set(results)) == 1
    lines = results[0].splitlines()
    assert lines[0] == "8 1 1e-06 1e-06"
    spec, x = open_model(TUTORIAL), np.load(TUTORIAL_X)
    dtype = np.float32 if c_type == "float" else np.float64
    traced = trace(spec, [x], sample=1)
    assert [line.split()[0] for line in lines[1:-1]] == list(traced)
    for line, value in zip(lines[1:-1], traced.values(), strict=True):
        np.testing.assert_array_equal(np.array(line.split()[1:], np.float64), value.astype(dtype).ravel())
    last_x, last_y = (float(v) for v in lines[-1].split())
    assert last_x == x[7, 3, 2] and last_y == predict_batches(spec, [x])[0][7, 0].astype(dtype)


@needs_cc
def test_vectors_of_a_model_with_two_inputs(tmp_path):
    model = build_with(
        "k3-keras",
        lambda k: (
            lambda a, b: k.Model(
                [a, b],
                k.layers.Dense(1, name="y")(
                    k.layers.Concatenate()([k.layers.LSTM(3, name="la")(a), k.layers.GRU(2, name="lb")(b)])
                ),
            )
        )(k.Input(shape=(4, 3), name="a"), k.Input(shape=(4, 2), name="b")),
        seed=6,
    )
    path = save_model(model, "k3-keras", tmp_path)
    made = run_vectors(path, "--samples", "3", "--format", "c", "-o", tmp_path / "v")
    assert made.exit_code == 0, made.output
    with np.load(tmp_path / "v" / "inputs.npz") as npz:
        inputs = dict(npz)
    assert {"x0", "x1", "a", "b"} <= set(inputs) and inputs["x1"].shape == (3, 4, 2)
    text = (tmp_path / "v" / "vectors.h").read_text()
    assert_c99_identifiers(text)
    assert "static const float vectors_x1[VECTORS_X1_DIM0][VECTORS_X1_DIM1][VECTORS_X1_DIM2]" in text
    program = '#include <stdio.h>\n#include "vectors.h"\nint main(void)\n{\n' + (
        '    printf("%.9g %.17g\\n", (double)vectors_x1[2][3][1], (double)vectors_y0[2][0]);\n    return 0;\n}\n'
    )
    x1, y = (float(v) for v in run_c(program, tmp_path / "v").split())
    reference = predict_batches(open_model(path), [inputs["x0"], inputs["x1"]])[0]
    assert x1 == inputs["x1"][2, 3, 1] and np.float32(y) == np.float32(reference[2, 0])
    np.testing.assert_allclose(reference, model.predict([inputs["a"], inputs["b"]], verbose=0), atol=1e-5)


def test_a_bad_sample_is_refused_before_anything_is_computed(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("computed before the sample was checked")

    monkeypatch.setattr("lstm_parity.vectors.predict_batches", fail)
    with pytest.raises(BadInputError, match=r"--sample 8: the input has 8 samples \(0\.\.7\)"):
        golden_vectors(open_model(TUTORIAL), [np.load(TUTORIAL_X)], sample=8)


def test_vectors_are_written_all_or_nothing_and_never_over_an_input(tmp_path, monkeypatch):
    model = SAMPLES / "tutorial.keras"
    x = tmp_path / "inputs.npy"  # the INPUT sits where the vectors' inputs.npy would go
    np.save(x, np.load(SAMPLES / "tutorial.input.npy"))
    before = x.read_bytes()
    refused = run_vectors(model, x, "-o", tmp_path)
    assert refused.exit_code == 2 and "refusing to overwrite an input file" in refused.output
    assert x.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["inputs.npy"]
    bad = run_vectors(model, x, "-o", tmp_path / "out", "--sample", "99")
    assert bad.exit_code == 2 and "--sample 99" in bad.output
    mixed = run_vectors(model, x, "-o", tmp_path / "out", "--format", "npz", "--c-type", "double")
    assert mixed.exit_code == 2 and "--c-type applies to --format c, not npz" in mixed.output
    orphan = run_vectors(model, x, "-o", tmp_path / "no" / "such")
    assert orphan.exit_code == 2 and "its parent folder" in orphan.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.npy"]

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # a new folder: made beside, renamed into place, or nothing at all
        patch.setattr("lstm_parity.vectors.write_arrays", full_disk)
        failed = run_vectors(model, x, "-o", tmp_path / "out")
    assert failed.exit_code == 2 and "cannot write the vectors (No space left on device)" in failed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.npy"]

    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / "vectors.json").write_text("old vectors")
    (folder / "other.txt").write_text("not ours")
    from lstm_parity.atomicio import publish

    calls = []

    def second_rename_fails(temporary, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        publish(temporary, path)

    with monkeypatch.context() as patch:  # an existing folder: the first file is put back as it was
        patch.setattr("lstm_parity.vectors.publish", second_rename_fails)
        failed = run_vectors(model, x, "-o", folder)
        assert failed.exit_code == 2 and len(calls) == 2
        assert sorted(p.name for p in folder.iterdir()) == ["other.txt", "vectors.json"]
        assert (folder / "vectors.json").read_text() == "old vectors"
        (folder / "vectors.json").unlink()
        calls.clear()
        assert run_vectors(model, x, "-o", folder).exit_code == 2  # and a file that was not there is removed
        assert sorted(p.name for p in folder.iterdir()) == ["other.txt"]
    assert run_vectors(model, x, "-o", folder).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["inputs.npy", "other.txt", "vectors.json"]
    assert (folder / "inputs.npy").read_bytes() == before


def test_vectors_help_says_what_c_type_does(run_cli):
    help_text = " ".join(run_cli("vectors", "--help").stdout.split())
    assert "--c-type" in help_text and "reference outputs and trace are rounded to float" in help_text


def test_suggested_tolerances():
    assert suggest_atol(0.0) == 1e-6 and suggest_atol(3e-8) == 1e-6
    assert suggest_atol(3.2e-7) == 4e-6 and suggest_atol(1e-6) == 1e-5 and suggest_atol(2.05e-3) == 3e-2


def test_dump_and_vectors_never_import_tensorflow(tmp_path):
    from test_no_tensorflow import _run

    proc = _run(f"""
        import sys
        from lstm_parity.cli import cli
        model = r"{TUTORIAL}"
        for args in (["dump", model, "-o", r"{tmp_path / "w.h"}"], ["dump", model, "-o", r"{tmp_path / "w.npz"}"],
                     ["vectors", model, "-o", r"{tmp_path}", "--format", "c"]):
            try:
                cli(args, standalone_mode=False)
            except SystemExit as exc:
                assert not exc.code, exc.code
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"w.h", "w.npz", "vectors.h", "inputs.npy"}
