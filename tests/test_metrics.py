"""Scale-free comparison metrics (cosine, SNR, relative L2, per-timestep max abs, top-1) and the pass
rules built on them (precision profiles, --require). NumPy only: no model is built or run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from lstm_parity.compare import RULE, OutputAccumulator, OutputComparison, compare_output, compare_outputs
from lstm_parity.errors import BadInputError
from lstm_parity.profiles import (
    METRICS,
    PROFILES,
    TOP1_MIN_ROWS,
    Rule,
    apply_profile,
    judge,
    looks_like_class_scores,
    parse_require,
    top1_outputs,
)
from lstm_parity.spec import LayerSpec, ModelSpec

ATOL = RTOL = 1e-5


def numpy_metrics(r: np.ndarray, o: np.ndarray) -> tuple[float, float, float]:
    """(cosine, snr_db, rel_l2) straight from their textbook formulas."""
    r, o = r.ravel(), o.ravel()
    cosine = float(np.dot(r, o) / (np.linalg.norm(r) * np.linalg.norm(o)))
    snr = float(10 * np.log10(np.sum(r**2) / np.sum((o - r) ** 2)))
    rel = float(np.linalg.norm(o - r) / np.linalg.norm(r))
    return cosine, snr, rel


def scaled_noise(r: np.ndarray, rel_l2: float, seed: int = 1) -> np.ndarray:
    """Gaussian noise e with ||e|| / ||r|| == rel_l2 exactly."""
    e = np.random.default_rng(seed).normal(size=r.shape)
    return e * (rel_l2 * np.linalg.norm(r) / np.linalg.norm(e))


def chunked(name: str, r: np.ndarray, o: np.ndarray, rows: int, classes: bool = False) -> OutputComparison:
    acc = OutputAccumulator(name, ATOL, RTOL, classes)
    for start in range(0, r.shape[0], rows):
        acc.add(r[start : start + rows], o[start : start + rows])
    return acc.result()


@pytest.fixture
def sequences() -> np.ndarray:
    return np.tanh(np.random.default_rng(0).normal(size=(64, 20, 8)))  # (batch, time, units) like an LSTM's


@pytest.mark.parametrize("shape", [(40,), (30, 6), (12, 9, 4)])
def test_metrics_match_the_numpy_formulas(shape):
    rng = np.random.default_rng(3)
    r = rng.normal(size=shape)
    o = r + 0.05 * rng.normal(size=shape)
    got = compare_output("y", r, o, ATOL, RTOL)
    cosine, snr, rel = numpy_metrics(r, o)
    assert got.cosine == pytest.approx(cosine, rel=1e-12)
    assert got.snr_db == pytest.approx(snr, rel=1e-12)
    assert got.rel_l2 == pytest.approx(rel, rel=1e-12)
    assert got.snr_db == pytest.approx(-20 * math.log10(got.rel_l2), rel=1e-12)
    assert 0.99 < got.cosine < 1.0 and 20 < got.snr_db < 30  # the data is what the test means it to be


def test_anticorrelated_output_has_negative_cosine():
    r = np.random.default_rng(4).normal(size=(10, 3))
    got = compare_output("y", r, -r, ATOL, RTOL)
    assert got.cosine == pytest.approx(-1.0) and got.rel_l2 == pytest.approx(2.0)


def test_chunks_of_7_rows_give_the_whole_array_results(sequences):
    r = sequences[:50]
    o = r + scaled_noise(r, 1e-2)
    whole = compare_output("y", r, o, ATOL, RTOL, classes=True)
    parts = chunked("y", r, o, 7, classes=True)
    for metric in ("cosine", "snr_db", "rel_l2", "top1_agreement", "max_abs_diff", "mean_abs_diff"):
        assert getattr(parts, metric) == pytest.approx(getattr(whole, metric), rel=1e-12, abs=0), metric
    assert parts.timestep_max_abs == whole.timestep_max_abs and len(whole.timestep_max_abs) == 20
    assert parts.top1_rows == whole.top1_rows == 50 * 20
    assert (parts.worst_index, parts.shape, parts.passed) == (whole.worst_index, whole.shape, whole.passed)
    assert whole.top1_agreement is not None and 0.9 < whole.top1_agreement < 1.0  # some near-ties flip


def test_timestep_max_abs_finds_the_error_injected_at_timestep_5(sequences):
    o = sequences + scaled_noise(sequences, 1e-6)
    o[17, 5, 3] += 0.25
    for result in (compare_output("y", sequences, o, ATOL, RTOL), chunked("y", sequences, o, 7)):
        steps = np.array(result.timestep_max_abs)
        assert steps.shape == (20,) and int(np.argmax(steps)) == 5
        assert steps[5] == pytest.approx(0.25, rel=1e-3) and np.max(np.delete(steps, 5)) < 1e-4
        assert steps[5] == result.max_abs_diff and result.worst_index == (17, 5, 3)


def test_non_sequence_outputs_have_no_timestep_vector():
    r = np.ones((5, 4))
    assert compare_output("y", r, r + 1e-3, ATOL, RTOL).timestep_max_abs == ()
    assert compare_output("y", r[:, 0], r[:, 0], ATOL, RTOL).timestep_max_abs == ()


def test_top1_agreement_counts_rows_over_the_last_axis():
    rng = np.random.default_rng(5)
    r = rng.dirichlet(np.ones(3), size=(4, 5))  # (batch, time, classes): 20 rows
    o = r.copy()
    rows = o.reshape(-1, 3)
    for row in (0, 7, 19):  # move each of 3 rows' winning score to another class
        rows[row] = np.roll(rows[row], 1)
    got = compare_output("y", r, o, ATOL, RTOL, classes=True)
    assert got.top1_rows == 20 and got.top1_agreement == pytest.approx(17 / 20)
    assert compare_output("y", r, r, ATOL, RTOL, classes=True).top1_agreement == 1.0
    assert compare_output("y", r, o, ATOL, RTOL).top1_agreement is None  # not asked
    assert compare_output("y", r[..., :1], o[..., :1], ATOL, RTOL, classes=True).top1_agreement is None  # 1 class


def test_compare_outputs_tracks_top1_on_the_named_outputs_only():
    r = np.random.default_rng(6).dirichlet(np.ones(4), size=8)
    result = compare_outputs(["scores", "other"], [r, r], [r, r], classes={"scores"})
    assert [o.top1_agreement for o in result.outputs] == [1.0, None]


def test_non_finite_elements_are_left_out_of_the_sums_and_still_fail():
    rng = np.random.default_rng(7)
    r = rng.normal(size=(10, 6))
    o = r + 0.01 * rng.normal(size=r.shape)
    o[2, 3], o[4, 0] = np.nan, np.inf
    r[6, 1] = o[6, 1] = np.nan  # NaN on both sides at the same place counts as equal
    got = compare_output("y", r, o, 1.0, 1.0, classes=True)
    finite = np.isfinite(r) & np.isfinite(o)
    assert (got.cosine, got.snr_db, got.rel_l2) == pytest.approx(numpy_metrics(r[finite], o[finite]), rel=1e-12)
    assert not got.passed and got.nan_mismatches == 2 and got.max_abs_diff == math.inf
    assert got.top1_rows == 7  # rows 2, 4 and 6 hold a non-finite value
    for profile in PROFILES:
        passed, failed = judge(got, profile)
        assert not passed and failed[0].startswith("2 NaN/infinity mismatch")


def test_both_sides_nan_at_the_same_place_passes_every_profile():
    r = np.array([[1.0, np.nan], [2.0, 3.0]])
    got = compare_output("y", r, r.copy(), ATOL, RTOL)
    assert got.passed and got.cosine == 1.0 and got.snr_db == math.inf
    assert all(judge(got, profile)[0] for profile in PROFILES)


@pytest.mark.parametrize(
    ("r", "o", "cosine", "snr", "rel"),
    [
        (np.zeros((3, 4)), np.zeros((3, 4)), 1.0, math.inf, 0.0),
        (np.zeros((3, 4)), np.full((3, 4), 1e-3), 0.0, -math.inf, math.inf),
        (np.ones((3, 4)), np.zeros((3, 4)), 0.0, 0.0, 1.0),
        (np.zeros((0, 4)), np.zeros((0, 4)), 1.0, math.inf, 0.0),
    ],
    ids=["both-zero", "zero-reference", "zero-other", "empty"],
)
def test_all_zero_edge_cases(r, o, cosine, snr, rel):
    got = compare_output("y", r, o, ATOL, RTOL)
    assert (got.cosine, got.snr_db, got.rel_l2) == (cosine, snr, rel)


def test_shape_mismatch_measures_nothing_and_fails_every_profile():
    got = compare_output("y", np.zeros((4, 3)), np.zeros((4, 2)), ATOL, RTOL)
    assert math.isnan(got.cosine) and math.isnan(got.snr_db) and math.isnan(got.rel_l2)
    for profile in PROFILES:
        assert judge(got, profile) == (False, ["shape mismatch: reference (4, 3) vs other (4, 2)"])


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("dense:cosine>=0.999", Rule("dense", "cosine", ">=", 0.999)),
        ("snr_db>=30", Rule("*", "snr_db", ">=", 30.0)),
        (" head_b : rel_l2 <= 2e-3 ", Rule("head_b", "rel_l2", "<=", 2e-3)),
        ("model/out:1:max_abs<=1e-4", Rule("model/out:1", "max_abs", "<=", 1e-4)),  # the last ':' splits
        ("top1>=0.99", Rule("*", "top1", ">=", 0.99)),
    ],
)
def test_parse_require_reads_rules(text, rule):
    assert parse_require(text) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dense:cosine>0.99", "expected OUTPUT:METRIC>=X"),
        ("dense:cosine", "expected OUTPUT:METRIC>=X"),
        (":cosine>=0.9", "expected OUTPUT:METRIC>=X"),
        ("dense:cosine>=0.9 extra", "expected OUTPUT:METRIC>=X"),
        ("dense:psnr>=30", "unknown metric 'psnr' (metrics: " + ", ".join(METRICS) + ")"),
        ("cosine>=high", "threshold 'high' is not a finite number"),
        ("cosine>=nan", "threshold 'nan' is not a finite number"),
    ],
)
def test_parse_require_refuses_bad_rules_in_one_line(text, message):
    with pytest.raises(BadInputError) as err:
        parse_require(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_int8_profile_passes_the_measured_error_and_fails_ten_times_more(sequences):
    noise = scaled_noise(sequences, 1.24e-2)  # measured: dynamic-range int8, relative L2 1.24e-2
    measured = compare_output("y", sequences, sequences + noise, ATOL, RTOL)
    assert measured.snr_db == pytest.approx(38.1, abs=0.1) and not measured.passed  # far beyond atol
    assert judge(measured, "int8") == (True, [])
    worse = compare_output("y", sequences, sequences + 10 * noise, ATOL, RTOL)
    passed, failed = judge(worse, "int8")
    assert not passed
    assert [text.split()[0] for text in failed] == ["snr_db", "rel_l2", "cosine"]
    assert failed[2].startswith("cosine 0.99") and failed[2].endswith("< 0.999 (int8 profile)")
    assert not judge(measured, "float16")[0]  # int8-sized errors are no float16 export


def test_float16_profile_passes_float16_rounding_and_fails_ten_times_more(sequences):
    rounding = sequences.astype(np.float16).astype(np.float64) - sequences
    assert judge(compare_output("y", sequences, sequences + rounding, ATOL, RTOL), "float16") == (True, [])
    # rounding grown through the layers to the measured relative L2 3.9e-4 (68 dB), then 10x that
    grown = rounding * (3.9e-4 * np.linalg.norm(sequences) / np.linalg.norm(rounding))
    measured = compare_output("y", sequences, sequences + grown, ATOL, RTOL)
    assert measured.snr_db == pytest.approx(68.2, abs=0.1) and judge(measured, "float16") == (True, [])
    passed, failed = judge(compare_output("y", sequences, sequences + 10 * grown, ATOL, RTOL), "float16")
    assert not passed and [text.split()[0] for text in failed] == ["snr_db", "rel_l2"]


def test_top1_profile_rules_wait_for_enough_rows():
    scores = np.random.default_rng(8).dirichlet(np.ones(5), size=TOP1_MIN_ROWS)
    base = compare_output("y", scores, scores, ATOL, RTOL, classes=True)
    flipped = replace(base, top1_agreement=0.96)
    assert judge(flipped, "int8") == (False, ["top1 0.96 < 0.97 (int8 profile)"])
    assert judge(replace(flipped, top1_rows=TOP1_MIN_ROWS - 1), "int8") == (True, [])
    assert judge(replace(flipped, top1_agreement=0.99), "float16") == (False, ["top1 0.99 < 0.995 (float16 profile)"])
    assert judge(replace(flipped, top1_agreement=None, top1_rows=0), "float16") == (True, [])  # not class scores


def test_float32_profile_is_todays_rule():
    r = np.random.default_rng(9).normal(size=(6, 4))
    cases = {"equal": r.copy(), "within": r + 5e-6, "beyond": r + 1e-3, "nan": np.where(r > 1, np.nan, r)}
    for label, o in cases.items():
        result = compare_outputs(["y"], [r], [o])
        judged = apply_profile(result, "float32", [])
        assert judged.passed == result.passed, label
        assert (judged.rule, judged.profile, judged.atol, judged.rtol) == (RULE, "float32", ATOL, RTOL)
        out = judged.outputs[0]
        assert replace(out, failed_rules=()) == result.outputs[0], label  # only the explanation is added
        assert bool(out.failed_rules) == (not out.passed), label
    beyond = apply_profile(compare_outputs(["y"], [r], [r + 1e-3]), "float32").outputs[0]
    assert (
        beyond.failed_rules[0].startswith("max_abs 0.001 at ") and "min atol to pass 0.00099" in beyond.failed_rules[0]
    )
    assert apply_profile(compare_outputs(["y"], [r], [r + 1e-3]), "int8").passed  # no atol under int8


def test_require_rules_apply_under_float32_too():
    r = np.random.default_rng(10).normal(size=(6, 4))
    close = compare_outputs(["a", "b"], [r, r], [r + 2e-6, r])
    assert close.passed
    strict = apply_profile(close, "float32", [parse_require("a:max_abs<=1e-6"), parse_require("cosine>=0.9")])
    assert [o.passed for o in strict.outputs] == [False, True]
    assert strict.outputs[0].failed_rules == ("max_abs 2e-06 > 1e-06 (--require)",)
    assert strict.rule == f"float32 profile: {RULE}; a:max_abs<=1e-06 (--require); cosine>=0.9 (--require)"
    loose = apply_profile(compare_outputs(["a"], [r], [r + 1e-3]), "float32", [parse_require("a:rel_l2<=0.1")])
    assert not loose.passed  # a --require rule adds to atol/rtol, never replaces it
    with pytest.raises(BadInputError, match="no output named 'c'"):
        apply_profile(close, "float32", [parse_require("c:cosine>=0.9")])
    with pytest.raises(BadInputError, match="unknown profile 'bf16'"):
        apply_profile(close, "bf16", [])


def test_an_explicit_top1_rule_fails_where_top1_was_not_measured():
    r = np.random.default_rng(11).normal(size=(6, 4))
    passed, failed = judge(compare_output("y", r, r, ATOL, RTOL), "float32", [parse_require("top1>=0.99")])
    assert not passed and failed[0].startswith("top1 not measured")


def _spec(*layers: tuple[str, str, dict]) -> ModelSpec:
    """A chain Input -> layers...; every layer is a model output."""
    specs = [LayerSpec("x", "InputLayer", {"batch_shape": [None, 7, 3]})]
    for name, class_name, config in layers:
        specs.append(LayerSpec(name, class_name, config, inbound=(((specs[-1].name, 0, 0),),)))
    return ModelSpec(
        layers=tuple(specs),
        inputs=(("x", 0, 0),),
        outputs=tuple((name, 0, 0) for name, _, _ in layers),
        input_shapes=((None, 7, 3),),
        keras_version="3.3.3",
        semantics="keras3",
        source="hand-built",
        file_format="keras",
    )


def test_looks_like_class_scores_reads_the_producing_layer():
    keras3_softmax = {"module": "keras.activations", "class_name": "function", "config": "softmax"}
    spec = _spec(
        ("lstm", "LSTM", {"units": 8, "activation": "tanh"}),
        ("probs", "Dense", {"units": 5, "activation": "softmax"}),
        ("binary", "Dense", {"units": 1, "activation": "sigmoid"}),
        ("logits", "Dense", {"units": 4, "activation": None}),
        ("tags", "Dense", {"units": 4, "activation": keras3_softmax}),
        ("act", "Activation", {"activation": "sigmoid"}),
        ("drop", "Dropout", {"rate": 0.1}),
        ("soft", "Softmax", {"axis": -1}),
        ("soft_time", "Softmax", {"axis": 1}),
        ("flat", "Flatten", {}),
        ("soft_flat", "Softmax", {"axis": -1}),
        ("td", "TimeDistributed", {"layer": {"class_name": "Dense", "config": {"units": 6, "activation": "softmax"}}}),
    )
    verdicts = {name: looks_like_class_scores(spec, name) for name in spec.output_names}
    assert verdicts == {
        "lstm": False,
        "probs": True,
        "binary": False,  # one unit: nothing to take an argmax over
        "logits": False,
        "tags": True,
        "act": True,  # sigmoid over the 4 units of `tags`
        "drop": False,
        "soft": True,  # through Dropout and Activation to the 4 units of `tags`
        "soft_time": False,  # not over the last axis
        "flat": False,
        "soft_flat": False,  # width unknown: Flatten changes the last axis
        "td": True,
    }
    assert looks_like_class_scores(spec, "soft_flat", last_axis=4) and not looks_like_class_scores(spec, "probs", 1)
    assert not looks_like_class_scores(spec, "no such output")
    assert top1_outputs(spec) == {"probs", "tags", "act", "soft", "td"}
    assert top1_outputs(spec, [parse_require("logits:top1>=0.9")], classes={"lstm"}) == {
        "probs",
        "tags",
        "act",
        "soft",
        "td",
        "logits",
        "lstm",
    }
    assert top1_outputs(spec, classes=True) == set(spec.output_names)
