"""`upgrade`: rewrite a Keras 1/2 (or any readable) model as a Keras 3 `.keras` file that plain
`keras.models.load_model` loads and that predicts what the old file computes under its own
generation's semantics, proven in the same run.

Where Keras 3 computes an activation differently, the rewrite compensates exactly when it can:
Keras 2's hard_sigmoid(x) = clip(0.2x + 0.5) equals Keras 3's clip(x/6 + 0.5) at 1.2x, so every gate
whose pre-activation is affine in the weights (kernel, recurrent kernel and bias columns of that gate)
is scaled by 1.2. Where no exact rewrite exists (an LSTM whose `activation` is hard_sigmoid, since it is
applied to the cell state; an Activation layer), the upgrade is refused unless the user allows the
semantic change, and the report says by how much the naive conversion differs.
Each layer is built with only the config keys its Keras 3 class accepts (upgrade_config): keys that cannot
change inference (trainable, initializers, dropout seeds, `time_major=False`, ...) are dropped and listed
in the report; a dropped key that may change the numbers is refused (exit 3) naming the layer and the key.
Keras itself is imported only through keras_runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .atomicio import publish
from .errors import BadInputError, LstmParityError, UnsupportedError
from .reference.activations import activation_name
from .spec import LayerSpec, ModelSpec
from .upgrade_config import DroppedKey, describe_dropped, layer_kwargs

SCALE = np.float32(1.2)  # Keras 2 hard_sigmoid(x) == Keras 3 hard_sigmoid(1.2 * x)
GATES = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h"), "SimpleRNN": ("h",), "ConvLSTM2D": ("i", "f", "c", "o")}
UNROLLABLE = ("LSTM", "GRU", "SimpleRNN")  # Keras 3 layers whose time loop `unroll=True` spells out
CODE_LAYERS = ("Lambda",)  # layers whose computation is Python code saved in the file (never run, never rebuilt)


@dataclass
class LayerPlan:
    name: str
    class_name: str
    config: dict[str, Any]
    weights: list[np.ndarray]
    transformed: list[str] = field(default_factory=list)  # which arrays were rescaled
    problem: str = ""  # why no exact rewrite exists


def _is_hard_sigmoid(value: Any) -> bool:
    return activation_name(value) == "hard_sigmoid"


def _scale_columns(arrays: list[np.ndarray], gates: tuple[str, ...], scaled: set[str], units: int) -> list[np.ndarray]:
    """Multiply the columns of the named gates by 1.2 in every array (last axis holds the gates)."""
    out = []
    for array in arrays:
        array = array.copy()
        for index, gate in enumerate(gates):
            if gate in scaled:
                array[..., index * units : (index + 1) * units] *= SCALE
        out.append(array)
    return out


def plan_recurrent(
    class_name: str, config: dict[str, Any], weights: list[np.ndarray], prefix: str
) -> tuple[list[np.ndarray], list[str], str]:
    """Rescaled weights, names of transformed arrays and a problem (if no exact rewrite) for one RNN."""
    gates = GATES[class_name]
    rec_hard = _is_hard_sigmoid(config.get("recurrent_activation", "sigmoid"))
    act_hard = _is_hard_sigmoid(config.get("activation", "tanh"))
    scaled: set[str] = set()
    problem = ""
    if class_name in ("LSTM", "ConvLSTM2D"):
        if rec_hard:
            scaled |= {"i", "f", "o"}
        if act_hard:
            problem = f"{prefix}: LSTM activation hard_sigmoid is applied to the cell state too; no exact rewrite"
    elif class_name == "GRU":
        scaled |= {"z", "r"} if rec_hard else set()
        scaled |= {"h"} if act_hard else set()
    elif class_name == "SimpleRNN" and act_hard:
        scaled |= {"h"}
    if not scaled or not weights:
        return weights, [], problem
    units = weights[1].shape[-1] // len(gates)
    names = ["kernel", "recurrent_kernel", "bias"][: len(weights)]
    return (
        _scale_columns(weights, gates, scaled, units),
        [f"{prefix}.{n} (gates {', '.join(sorted(scaled))} x1.2)" for n in names],
        problem,
    )


def plan_layer(layer: LayerSpec, semantics: str) -> LayerPlan:
    """What the Keras 3 layer will be: its config, its weights (rescaled where needed), any problem."""
    plan = LayerPlan(layer.name, layer.class_name, dict(layer.config), [np.asarray(w) for w in layer.weights])
    if semantics != "keras2":
        return plan
    cls = layer.class_name
    if cls in GATES:
        plan.weights, plan.transformed, plan.problem = plan_recurrent(cls, layer.config, plan.weights, layer.name)
    elif cls == "Bidirectional":
        inner = layer.config["layer"]
        half = len(plan.weights) // 2
        forward, t1, p1 = plan_recurrent(
            inner["class_name"], inner["config"], plan.weights[:half], f"{layer.name}/forward"
        )
        backward, t2, p2 = plan_recurrent(
            inner["class_name"], inner["config"], plan.weights[half:], f"{layer.name}/backward"
        )
        plan.weights, plan.transformed, plan.problem = forward + backward, t1 + t2, p1 or p2
    elif cls in ("Dense", "Conv1D", "Conv2D") and _is_hard_sigmoid(layer.config.get("activation")):
        plan.weights = [w * SCALE for w in plan.weights]
        plan.transformed = [f"{layer.name}.{n} x1.2" for n in layer.weight_names]
    elif cls == "TimeDistributed":
        inner = LayerSpec(
            layer.name,
            layer.config["layer"]["class_name"],
            layer.config["layer"]["config"],
            layer.weights,
            layer.weight_names,
        )
        sub = plan_layer(inner, semantics)
        plan.weights, plan.transformed, plan.problem = sub.weights, sub.transformed, sub.problem
    elif _is_hard_sigmoid(layer.config.get("activation")):
        plan.problem = f"{layer.name}: {cls} applies hard_sigmoid to its input directly; no exact rewrite"
    return plan


def plan_model(spec: ModelSpec) -> list[LayerPlan]:
    return [plan_layer(layer, spec.semantics) for layer in spec.layers]


def _kwargs(keras: Any, class_name: str, config: dict[str, Any], where: str, dropped: list[DroppedKey]) -> dict:
    """The keyword arguments Keras 3's class accepts (see upgrade_config); what is dropped goes to `dropped`."""
    kwargs, gone = layer_kwargs(keras, class_name, config, where)
    dropped += gone
    if class_name == "GRU":  # a config without the key predates reset_after: False then, True in Keras 3
        kwargs["reset_after"] = bool(config.get("reset_after", False))
    return kwargs


def make_layer(
    keras: Any,
    class_name: str,
    config: dict[str, Any],
    where: str = "",
    dropped: list[DroppedKey] | None = None,
    unroll: bool | None = None,
) -> Any:
    """A Keras 3 layer object for one of our layer configs (wrappers built recursively). Config keys Keras 3
    does not accept are dropped into `dropped`, or refused when dropping them may change the numbers.
    `unroll` (None: as saved) sets the recurrent layers' unroll flag, which changes the graph, not the math."""
    dropped = [] if dropped is None else dropped
    where = where or str(config.get("name", class_name))
    if class_name in CODE_LAYERS:
        raise UnsupportedError(
            f"layer {where!r} is a {class_name}: its code is stored as Python bytecode, which lstm-parity never "
            f"runs or copies, so Keras 3 cannot be given it; cannot rebuild the model"
        )
    if class_name in ("Bidirectional", "TimeDistributed"):
        inner_entry = config["layer"]
        inner_where = f"{where}/{inner_entry['config'].get('name', inner_entry['class_name'])}"
        inner = make_layer(keras, inner_entry["class_name"], inner_entry["config"], inner_where, dropped, unroll)
        kwargs = _kwargs(keras, class_name, config, where, dropped)
        if class_name == "Bidirectional" and config.get("backward_layer"):
            entry = config["backward_layer"]
            backward_where = f"{where}/{entry['config'].get('name', entry['class_name'])}"
            kwargs["backward_layer"] = make_layer(
                keras, entry["class_name"], entry["config"], backward_where, dropped, unroll
            )
        return getattr(keras.layers, class_name)(inner, **kwargs)
    kwargs = _kwargs(keras, class_name, config, where, dropped)  # first: it refuses a class Keras 3 lacks
    if unroll is not None and class_name in UNROLLABLE:
        kwargs["unroll"] = unroll
    return getattr(keras.layers, class_name)(**kwargs)


def build_keras3_model(
    keras: Any,
    spec: ModelSpec,
    plans: list[LayerPlan],
    dropped: list[DroppedKey] | None = None,
    *,
    input_shapes: Sequence[tuple[int | None, ...]] | None = None,
    unroll: bool | None = None,
) -> Any:
    """The functional Keras 3 model of `spec` with the planned weights set; the config keys Keras 3 does
    not take are collected in `dropped` (UnsupportedError when dropping one may change the numbers).
    `input_shapes` (batch first, None where free) replace the saved ones, e.g. to fix the time axis of an
    export; `unroll` sets every recurrent layer's unroll flag (see make_layer)."""
    dropped = [] if dropped is None else dropped
    by_name = {plan.name: plan for plan in plans}
    tensors: dict[tuple, Any] = {}
    shapes = spec.input_shapes if input_shapes is None else input_shapes
    for ref, shape, tokens in zip(spec.inputs, shapes, spec.token_inputs(), strict=True):
        tensors[ref] = keras.Input(batch_shape=tuple(shape), name=ref[0], dtype="int32" if tokens else "float32")
    try:
        layers = {
            layer.name: make_layer(keras, layer.class_name, by_name[layer.name].config, layer.name, dropped, unroll)
            for layer in spec.layers
            if layer.class_name != "InputLayer"
        }
    except UnsupportedError as exc:
        raise UnsupportedError(f"{spec.source}: {exc.message}") from None
    pending = [
        (layer, node, refs)
        for layer in spec.layers
        if layer.class_name != "InputLayer"
        for node, refs in enumerate(layer.inbound)
    ]
    while pending:
        ready = [item for item in pending if all(ref in tensors for ref in item[2])]
        if not ready:
            raise UnsupportedError(f"{spec.source}: cannot rebuild the model graph in Keras 3")
        for layer, node, refs in ready:
            args = [tensors[ref] for ref in refs]
            obj = layers[layer.name]
            if layer.class_name in GATES or layer.class_name == "Bidirectional":
                out = obj(args[0], initial_state=args[1:]) if len(args) > 1 else obj(args[0])
            else:
                out = obj(args[0] if len(args) == 1 else args)
            for index, tensor in enumerate(out if isinstance(out, (list, tuple)) else [out]):
                tensors[(layer.name, node, index)] = tensor
            pending.remove((layer, node, refs))
    model = keras.Model([tensors[ref] for ref in spec.inputs], [tensors[ref] for ref in spec.outputs], name="upgraded")
    for name, layer in layers.items():
        weights = by_name[name].weights
        if weights:
            layer.set_weights(weights)
    return model


def refuse_unrebuildable(spec: ModelSpec, command: str) -> None:
    """Raise UnsupportedError (exit 3) naming the first layer of `spec` that a Keras 3 rebuild has no code
    for: a Lambda (its code is bytecode in the file, never run), or a layer a plugin computes (the user's
    NumPy function). `command` (upgrade, export) writes a file that must load with plain
    `keras.models.load_model`, so neither can go into it."""
    from .plugins import computed_layers

    for layer in spec.layers:
        inner = layer.config.get("layer") if layer.class_name in ("Bidirectional", "TimeDistributed") else None
        class_name = inner.get("class_name") if isinstance(inner, dict) else layer.class_name
        if class_name in CODE_LAYERS:
            raise UnsupportedError(
                f"{spec.source}: layer {layer.name!r} is a {class_name}, whose code is Python bytecode in the file "
                f"(never run); {command} rebuilds the model with Keras 3 and cannot give it that code (a --plugin "
                f"computes it for check and predict, not inside a rebuilt file)"
            )
    try:
        computed = computed_layers(spec)
    except LstmParityError:  # a reference that cannot be built: the rebuild or the proof says why, in its words
        return
    for each in computed:
        raise UnsupportedError(
            f"{spec.source}: layer {each.layer!r} of class {each.class_name!r} is computed by the plugin "
            f"{each.registration.label}; {command} rebuilds the model with Keras 3, and the file it writes "
            f"must load with plain keras.models.load_model, which has no code for that layer"
        )


def masked_initial_state_layers(spec: ModelSpec) -> list[str]:
    """RNN layers called with initial_state in a model that masks: Keras 2 masks them, Keras 3 does not."""
    masks = any(
        each.class_name == "Masking" or (each.class_name == "Embedding" and each.config.get("mask_zero"))
        for each in spec.layers
    )
    return (
        [
            each.name
            for each in spec.layers
            if masks
            and (each.class_name in GATES or each.class_name == "Bidirectional")
            and any(len(node) > 1 for node in each.inbound)
        ]
        if spec.semantics == "keras2"
        else []
    )


def without_masks_at_initial_state(spec: ModelSpec) -> ModelSpec:
    """`spec` as a Keras 3 rebuild computes it: the layers of `masked_initial_state_layers` get no mask
    on the calls given initial_state (Keras 3 passes the mask automatically only to a call with one
    tensor argument)."""
    from dataclasses import replace

    names = set(masked_initial_state_layers(spec))
    layers = tuple(
        replace(layer, node_masks=tuple(len(node) <= 1 for node in layer.inbound)) if layer.name in names else layer
        for layer in spec.layers
    )
    return replace(spec, layers=layers)


def masked_initial_state_gap(spec: ModelSpec, inputs: list[np.ndarray]) -> tuple[str, float] | None:
    """None when no layer is affected; else why a Keras 3 rebuild cannot compute `spec` (a Keras 2 file
    whose RNN is called with initial_state on masked input) and by how much it differs (max abs on
    `inputs`, both sides computed by the reference, the rebuild's without those masks)."""
    from .reference.forward import forward

    names = masked_initial_state_layers(spec)
    if not names:
        return None
    own = forward(spec, inputs).outputs
    rebuilt = forward(without_masks_at_initial_state(spec), inputs).outputs
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(own, rebuilt, strict=True))
    return (
        f"{names[0]}: called with initial_state on masked input; Keras 2 masks that call, Keras 3 gives it no "
        f"mask (it passes masks only to calls with one tensor), so padded steps differ; no exact rewrite",
        gap,
    )


@dataclass
class UpgradeReport:
    source: str
    target: str
    keras_version: str
    semantics: str
    transformed: list[str]
    untouched_identical: bool
    comparison: Any  # ComparisonResult: Keras 3 on the new file vs the reference of the old one
    semantic_change: float | None  # measured max abs difference when --allow-semantic-change was needed
    written: bool
    hints: list[str] = field(default_factory=list)
    dropped: list[DroppedKey] = field(default_factory=list)  # config keys Keras 3 does not take, all harmless


def naive_difference(spec: ModelSpec, inputs: list[np.ndarray]) -> float:
    """How far Keras 3's math is from the file's own on these inputs (the cost of not compensating)."""
    from .reference.forward import forward

    own = forward(spec, inputs, semantics=spec.semantics).outputs
    other = forward(spec, inputs, semantics="keras3").outputs
    return max(float(np.max(np.abs(a - b))) for a, b in zip(own, other, strict=True))


def inexact_rewrite(spec: ModelSpec, plans: list[LayerPlan], inputs: list[np.ndarray]) -> tuple[str, float] | None:
    """None when every layer's plan rewrites the old math exactly; else the first layer's problem and
    how far Keras 3's math is from the file's own on `inputs` (max abs), the cost of not compensating."""
    problems = [plan.problem for plan in plans if plan.problem]
    return (problems[0], naive_difference(spec, inputs)) if problems else None


def run_upgrade(
    spec: ModelSpec, target: str, inputs: list[np.ndarray], tolerance: Any, allow_semantic_change: bool = False
) -> UpgradeReport:
    """Write `target` (.keras) only if Keras 3 on it reproduces the reference of `spec` within
    `tolerance` (or the user allowed a semantic change, which is then measured and reported).
    Raises UnsupportedError (3) when no exact rewrite exists, KerasSideError (4) when Keras fails."""
    import os
    import tempfile

    from .compare import compare_outputs
    from .errors import KerasSideError
    from .keras_runner import import_keras
    from .quiet_stderr import quiet_stderr
    from .reference.forward import fixed_batch_size, predict_batches

    refuse_unrebuildable(spec, "upgrade")
    plans = plan_model(spec)
    inexact = inexact_rewrite(spec, plans, inputs) or masked_initial_state_gap(spec, inputs)
    problems = [inexact[0]] if inexact else []
    change = inexact[1] if inexact else None
    if inexact and not allow_semantic_change:
        raise UnsupportedError(
            f"{spec.source}: {inexact[0]}; the naive Keras 3 conversion would differ by "
            f"{inexact[1]:.3g} (max abs on the check inputs); pass --allow-semantic-change to "
            f"write it anyway"
        )
    keras = import_keras("keras")
    folder = os.path.dirname(os.path.abspath(target))
    try:
        handle, temporary = tempfile.mkstemp(prefix=".lstm-parity-", suffix=".keras", dir=folder)
    except OSError as exc:
        raise BadInputError(f"{target}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(handle)
    written = False
    dropped: list[DroppedKey] = []
    try:
        try:
            with quiet_stderr():
                model = build_keras3_model(keras, spec, plans, dropped)
                model.save(temporary)
                reloaded = keras.models.load_model(temporary)
                feed = inputs[0] if len(inputs) == 1 else list(inputs)
                raw = reloaded.predict(feed, batch_size=fixed_batch_size(spec) or 32, verbose=0)
        except UnsupportedError:
            raise
        except Exception as exc:
            raise KerasSideError(
                f"{spec.source}: Keras 3 could not build, save or reload the upgraded model: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        outputs = [np.asarray(o) for o in (raw if isinstance(raw, (list, tuple)) else [raw])]
        reference = predict_batches(spec, inputs, semantics=spec.semantics, batch_size=fixed_batch_size(spec) or 32)
        comparison = compare_outputs(spec.output_names, reference, outputs, tolerance, against="keras")
        identical = all(
            [w.tobytes() for w in reloaded.get_layer(plan.name).get_weights()] == [w.tobytes() for w in plan.weights]
            for plan in plans
            if plan.weights
        )
        if comparison.passed or problems:
            publish(temporary, target)  # the mode open() would give, not mkstemp's 0600
            written = True
        hints = [
            f"{name}: called with initial_state on masked input; Keras 2 masks it, Keras 3 does not, so "
            f"padded steps differ"
            for name in masked_initial_state_layers(spec)
        ]
        return UpgradeReport(
            spec.source,
            target,
            spec.keras_version,
            spec.semantics,
            [t for plan in plans for t in plan.transformed],
            identical,
            comparison,
            change,
            written,
            hints,
            dropped,
        )
    finally:
        if not written and os.path.exists(temporary):
            os.unlink(temporary)


def upgrade_header(report: UpgradeReport) -> list[tuple[str, str]]:
    """(label, text) pairs of the upgrade report, shared by the plain and the terminal views."""
    weights = "; ".join(report.transformed) if report.transformed else "none transformed"
    weights += ", every other array bit-identical" if report.untouched_identical else ", SOME ARRAYS DIFFER"
    pairs = [
        ("saved by", f"Keras {report.keras_version or '(unknown)'}; old semantics {report.semantics}"),
        ("rewritten", "as Keras 3 .keras, loads with plain keras.models.load_model"),
        ("weights", weights),
    ]
    pairs += [("dropped", line) for line in describe_dropped(report.dropped)]
    if report.semantic_change is not None:
        pairs.append(
            (
                "WARNING",
                f"semantic change allowed: Keras 3 on the new file differs from the old file's math by up to "
                f"{report.semantic_change:.3g}",
            )
        )
    return pairs


def upgrade_verdict(report: UpgradeReport) -> str:
    """The last line: written or not, and where."""
    verdict_text = (
        "PASS: written"
        if report.comparison.passed
        else "WRITTEN with an allowed semantic change"
        if report.written
        else "FAIL: not written"
    )
    return f"{verdict_text} {report.target if report.written else ''}".rstrip()


PROOF_TITLE = "proof: Keras 3 predict on the new file vs the reference of the old file"


def render_upgrade(report: UpgradeReport) -> str:
    from .report.text import HEADER, output_row

    lines = [f"lstm-parity upgrade {report.source} -> {report.target}"]
    lines += [f"  {label:<11} {text}" for label, text in upgrade_header(report)]
    rows = [HEADER] + [output_row(report.comparison, o) for o in report.comparison.outputs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines.append("  " + PROOF_TITLE)
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"  hint        {hint}" for hint in report.hints]
    return "\n".join(lines + ["", upgrade_verdict(report)]) + "\n"
