"""Pass rules as data: precision profiles (`--profile float32|float16|int8`) and per-output
requirements (`--require OUTPUT:METRIC>=X`), applied to the metrics `compare.py` measured.

float32 is today's elementwise rule |other - reference| <= atol + rtol*|reference|. A float16 or int8
export differs from the float reference by design, by far more than any atol that would still catch a
real bug, so those profiles drop the elementwise rule and judge scale-free metrics of the whole output
instead (formulas in `compare.py`): cosine similarity, SNR in dB, relative L2 and, for class scores,
top-1 agreement. NaN mismatches and shape mismatches fail under every profile. `--require` rules add
to the profile's rules under every profile, float32 included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .compare import RULE, ComparisonResult, OutputComparison
from .errors import BadInputError
from .reference.activations import activation_name
from .spec import LayerSpec, ModelSpec

# metric name in rules -> OutputComparison attribute
METRICS: dict[str, str] = {
    "max_abs": "max_abs_diff",
    "max_rel": "max_rel_diff",
    "mean_abs": "mean_abs_diff",
    "cosine": "cosine",
    "snr_db": "snr_db",
    "rel_l2": "rel_l2",
    "top1": "top1_agreement",
}
OPS = (">=", "<=")
ALL_OUTPUTS = "*"
REQUIRE_FORMAT = "OUTPUT:METRIC>=X, OUTPUT:METRIC<=X, or METRIC>=X / METRIC<=X for every output"


@dataclass(frozen=True)
class Rule:
    """`metric op threshold` on output `output` ("*": every output), e.g. cosine >= 0.999.

    `origin` names where the rule comes from in failure texts ("--require", "int8 profile").
    `required=False` skips the rule, instead of failing it, on an output that does not report the
    metric (top-1 on an output that is not class scores) or that compared fewer than `min_rows` rows
    for top-1 (a rate over a handful of rows is decided by one near-tie).
    """

    output: str
    metric: str
    op: str
    threshold: float
    origin: str = "--require"
    required: bool = True
    min_rows: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS or self.op not in OPS:
            raise ValueError(f"bad rule {self.metric!r} {self.op!r}")  # parse_require guards user text

    def applies_to(self, name: str) -> bool:
        return self.output in (ALL_OUTPUTS, name)

    def holds(self, value: float) -> bool:
        """value >= threshold (or <=); NaN never holds."""
        return value >= self.threshold if self.op == ">=" else value <= self.threshold

    def __str__(self) -> str:
        where = "" if self.output == ALL_OUTPUTS else f"{self.output}:"
        return f"{where}{self.metric}{self.op}{self.threshold:g}"


def parse_require(text: str) -> Rule:
    """Parse `OUTPUT:METRIC>=X`, `OUTPUT:METRIC<=X` or `METRIC>=X` / `METRIC<=X` (every output).

    The output name is everything before the last ':' (names may hold ':'). Raises BadInputError
    with a one-line message on bad syntax, an unknown metric (listing the metrics) or a threshold
    that is not a finite number.
    """
    match = re.fullmatch(
        r"\s*(?:(?P<output>.+):)?\s*(?P<metric>[A-Za-z0-9_]+)\s*(?P<op>>=|<=)\s*(?P<value>\S+)\s*", text
    )
    if match is None:
        raise BadInputError(f"--require {text!r}: expected {REQUIRE_FORMAT}")
    metric = match["metric"]
    if metric not in METRICS:
        raise BadInputError(f"--require {text!r}: unknown metric {metric!r} (metrics: {', '.join(METRICS)})")
    try:
        threshold = float(match["value"])
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise BadInputError(f"--require {text!r}: threshold {match['value']!r} is not a finite number")
    output = (match["output"] or ALL_OUTPUTS).strip()
    return Rule(output or ALL_OUTPUTS, metric, match["op"], threshold)


@dataclass(frozen=True)
class Profile:
    """A named pass rule set: the elementwise atol/rtol rule (`elementwise`) and/or metric rules."""

    name: str
    elementwise: bool
    rules: tuple[Rule, ...] = ()


# Top-1 agreement is a rate: below this many rows one near-tie flip moves it by more than 0.1 %, finer
# than the rates measured (99.03 % int8, 99.97 % float16 over 10,000 sequences) can be told apart, so the
# profiles' top-1 rules wait for 1000 rows; cosine, SNR and relative L2 judge smaller checks. At 1000 rows
# with the measured int8 flip rate (0.97 %) the 3 % allowance is exceeded with probability ~1e-7.
TOP1_MIN_ROWS = 1000


def _profile_rule(profile: str, metric: str, op: str, threshold: float) -> Rule:
    top1 = metric == "top1"
    return Rule(ALL_OUTPUTS, metric, op, threshold, f"{profile} profile", not top1, TOP1_MIN_ROWS if top1 else 0)


# Thresholds come from a 2-layer LSTM 128->64 measured over 10,000 sequences against the float64 reference.
# SNR and relative L2 are one measurement on two scales (snr_db = -20*log10(rel_l2)), so each profile sets
# them at the same point; both are kept so a failure reads in the unit people use. Cosine is implied by
# relative L2 for o = r + e (sin(angle) <= rel_l2, so 1 - cos <= rel_l2**2 / 2) and is kept as the metric
# Polygraphy reports (its defaults: cosine >= 0.997, SNR >= 20 dB). Max abs is not in any profile: it
# scales with the output's magnitude, so it belongs in a per-output --require.
PROFILES: dict[str, Profile] = {
    # Today's rule, unchanged: |other - reference| <= atol + rtol*|reference| with --atol/--rtol.
    "float32": Profile("float32", elementwise=True),
    "float16": Profile(
        "float16",
        elementwise=False,
        rules=(
            # measured 68 dB / rel L2 3.9e-4: 54 dB (rel L2 2.0e-3) leaves 14 dB, a 5x larger error, for
            # deeper models and longer sequences; a broken export (wrong weight, float16 overflow) is far below.
            _profile_rule("float16", "snr_db", ">=", 54.0),
            _profile_rule("float16", "rel_l2", "<=", 2e-3),
            # measured 1 - cos ~ rel_l2**2 / 2 = 8e-8; 1e-5 is Polygraphy's 0.997 tightened to float16
            # (implied by rel L2 <= 2e-3, i.e. 1 - cos <= 2e-6: it only names the failure).
            _profile_rule("float16", "cosine", ">=", 0.99999),
            # measured 99.97 % (0.03 % flips, all near-ties): allows 0.5 %, 16x the measured flip rate.
            _profile_rule("float16", "top1", ">=", 0.995),
        ),
    ),
    "bfloat16": Profile(
        "bfloat16",
        elementwise=False,
        rules=(
            # bfloat16 keeps 8 significant bits to float16's 11 (about 18 dB less). Measured on a Keras 3
            # LSTM 32 -> GRU 16 -> softmax(4) with the mixed_bfloat16 policy over 2,000 sequences of 20
            # steps: 45.7 dB, rel L2 5.2e-3, 1 - cos 1.3e-5, top-1 99.35 % (mixed_float16 on the same
            # model: 63.7 dB). 36 dB (rel L2 0.0158) allows 3x the measured error.
            _profile_rule("bfloat16", "snr_db", ">=", 36.0),
            _profile_rule("bfloat16", "rel_l2", "<=", 0.0158),
            # 1 - cos measured 1.3e-5: 1e-4 allows 8x (implied by the rel L2 bound; it names the failure).
            _profile_rule("bfloat16", "cosine", ">=", 0.9999),
            # measured 99.35 %: allows 2 %, 3x the measured flip rate.
            _profile_rule("bfloat16", "top1", ">=", 0.98),
        ),
    ),
    "int8": Profile(
        "int8",
        elementwise=False,
        rules=(
            # measured 38 dB / rel L2 1.24e-2: 30 dB (rel L2 0.0316) allows 2.5x the measured error;
            # stricter than Polygraphy's 20 dB, which would let 8x through, and a 10x worse export
            # (rel L2 0.12, 18 dB) fails.
            _profile_rule("int8", "snr_db", ">=", 30.0),
            _profile_rule("int8", "rel_l2", "<=", 0.0316),
            # measured 0.99992 (1 - cos = 8e-5): 0.999 allows 12x that, stricter than Polygraphy's 0.997.
            _profile_rule("int8", "cosine", ">=", 0.999),
            # measured 99.03 %: allows 3 % disagreement, 3x the measured 0.97 %; flips happen at near-ties,
            # so they depend on the data more than the other metrics do.
            _profile_rule("int8", "top1", ">=", 0.97),
        ),
    ),
}


def profile_named(name: str) -> Profile:
    """The profile called `name`; raises BadInputError listing the profiles."""
    if name not in PROFILES:
        raise BadInputError(f"unknown profile {name!r} (profiles: {', '.join(PROFILES)})")
    return PROFILES[name]


def _number(value: float, threshold: float) -> str:
    """`value` with enough digits not to print equal to the threshold it failed."""
    short = f"{value:.6g}"
    return short if short != f"{threshold:.6g}" else f"{value:.12g}"


def _failed_rule(comparison: OutputComparison, rule: Rule) -> str | None:
    """The failure text of `rule` on `comparison`, or None when it holds or does not apply."""
    value = getattr(comparison, METRICS[rule.metric])
    rows = comparison.top1_rows
    if value is None or (rule.metric == "top1" and rows < rule.min_rows):
        if not rule.required:
            return None
        if value is None:
            return f"{rule.metric} not measured: the output is not treated as class scores ({rule.origin} {rule})"
        return f"{rule.metric} over {rows} rows, fewer than the {rule.min_rows} required ({rule.origin} {rule})"
    if rule.holds(value):
        return None
    opposite = "<" if rule.op == ">=" else ">"
    return f"{rule.metric} {_number(value, rule.threshold)} {opposite} {rule.threshold:g} ({rule.origin})"


def judge(comparison: OutputComparison, profile: str, rules: Sequence[Rule] = ()) -> tuple[bool, list[str]]:
    """Judge one output under `profile` plus the explicit `rules`: (passed, failed rule texts).

    Shape and NaN mismatches fail under every profile; the atol/rtol rule applies under profiles
    with `elementwise` (float32), taken from `within_tolerance` (or `passed` on hand-built
    comparisons). Raises BadInputError for an unknown profile.
    """
    chosen = profile_named(profile)
    if comparison.shape_mismatch:  # nothing else was measured
        return False, [f"shape mismatch: {comparison.shape_mismatch}"]
    failed = []
    if comparison.nan_mismatches:
        failed.append(f"{comparison.nan_mismatches} NaN/infinity mismatch(es): NaN or infinity on one side only")
    within = comparison.passed if comparison.within_tolerance is None else comparison.within_tolerance
    if chosen.elementwise and not within and not comparison.nan_mismatches:
        failed.append(
            f"max_abs {comparison.max_abs_diff:.6g} at {comparison.worst_index} exceeds atol {comparison.atol:g}"
            f" + rtol {comparison.rtol:g}*|reference|; min atol to pass {comparison.min_atol_to_pass:.6g}"
            f" ({chosen.name} profile)"
        )
    for rule in (*chosen.rules, *rules):
        if rule.applies_to(comparison.name):
            text = _failed_rule(comparison, rule)
            if text is not None:
                failed.append(text)
    return not failed, failed


def describe(profile: str, rules: Sequence[Rule] = ()) -> str:
    """One line naming the pass rule: RULE itself for plain float32, as reports show today."""
    chosen = profile_named(profile)
    if chosen.elementwise and not rules:
        return RULE
    parts = [RULE] if chosen.elementwise else []
    parts += [f"{rule} ({rule.origin})" for rule in (*chosen.rules, *rules)]
    return f"{chosen.name} profile: " + "; ".join(parts)


def check_rule_outputs(rules: Sequence[Rule], names: Sequence[str]) -> None:
    """Raise BadInputError for a rule that names an output not among `names`."""
    for rule in rules:
        if not rule.applies_to(ALL_OUTPUTS) and rule.output not in names:
            raise BadInputError(f"--require {rule}: no output named {rule.output!r} (outputs: {', '.join(names)})")


def apply_profile(result: ComparisonResult, profile: str, rules: Sequence[Rule] = ()) -> ComparisonResult:
    """A copy of `result` judged under `profile` plus `rules`: each output's `passed` and
    `failed_rules` set, `profile` and `rule` (its description) recorded.

    Raises BadInputError for an unknown profile or a rule naming an output `result` does not have.
    """
    check_rule_outputs(rules, [out.name for out in result.outputs])
    judged = []
    for out in result.outputs:
        passed, failed = judge(out, profile, rules)
        judged.append(replace(out, passed=passed, failed_rules=tuple(failed)))
    return replace(result, outputs=tuple(judged), profile=profile, rule=describe(profile, rules))


_SHAPE_KEEPING = frozenset({"Activation", "Softmax", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout"})


def _unwrapped(layer: LayerSpec) -> tuple[str, dict[str, Any]]:
    """(class name, config) of the layer, or of the layer TimeDistributed wraps."""
    inner = layer.config.get("layer")
    if layer.class_name == "TimeDistributed" and isinstance(inner, dict) and isinstance(inner.get("config"), dict):
        return str(inner.get("class_name")), inner["config"]
    return layer.class_name, layer.config


def _width(spec: ModelSpec, layer: LayerSpec, node: int) -> int | None:
    """The last-axis size of `layer`'s output: its `units`, or through layers that keep the last axis
    (activations, dropout) the nearest upstream layer's `units`; None when unknown."""
    for _ in spec.layers:  # bounded walk
        class_name, config = _unwrapped(layer)
        if isinstance(config.get("units"), int):
            return int(config["units"])
        if class_name not in _SHAPE_KEEPING or node >= len(layer.inbound) or not layer.inbound[node]:
            return None
        name, node, _tensor = layer.inbound[node][0]
        try:
            layer = spec.layer(name)
        except KeyError:
            return None
    return None


def looks_like_class_scores(spec: ModelSpec, output_name: str, last_axis: int | None = None) -> bool:
    """Whether model output `output_name` holds class scores: the layer producing it (possibly inside
    TimeDistributed) is a Dense or Activation layer with softmax or sigmoid activation, or a Softmax
    layer over the last axis, and the last axis has at least 2 entries.

    `last_axis` is that axis' size when the caller knows it (from computed outputs); otherwise it is
    read from the layer's `units` (or, through activation/dropout layers, the producing layer's) and
    an unknown size gives False. An unknown output name gives False.
    """
    refs = dict(zip(spec.output_names, spec.outputs, strict=True))
    if output_name not in refs:
        return False
    layer_name, node, _tensor = refs[output_name]
    try:
        layer = spec.layer(layer_name)
    except KeyError:
        return False
    class_name, config = _unwrapped(layer)
    if class_name in ("Dense", "Activation"):
        scores = activation_name(config.get("activation")) in ("softmax", "sigmoid")
    else:
        scores = class_name == "Softmax" and config.get("axis", -1) in (-1, [-1])
    if not scores:
        return False
    width = last_axis if last_axis is not None else _width(spec, layer, node)
    return width is not None and width >= 2


def top1_outputs(spec: ModelSpec, rules: Sequence[Rule] = (), classes: bool | Collection[str] = False) -> set[str]:
    """The outputs to track top-1 agreement on (pass as `compare_outputs(..., classes=...)`): those
    that look like class scores, those `classes` forces (True: all; or names, as from `--classes`),
    and those an explicit top1 rule names."""
    names = spec.output_names
    forced = set(names) if classes is True else set() if classes is False else set(classes)
    for rule in rules:
        if rule.metric == "top1":
            forced |= {n for n in names if rule.applies_to(n)}
    return forced | {n for n in names if looks_like_class_scores(spec, n)}
