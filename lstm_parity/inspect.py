"""`inspect`: a model's layers as a learner or porter needs them: class, output shape, parameters,
the options that change the math, recurrent weights explained gate by gate, and whether the
reference supports each layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import LstmParityError
from .inputs import InputPlan, generate_inputs
from .reference.forward import forward
from .reference.layers import Context, build_layer, math_options
from .spec import LayerSpec, ModelSpec

GATE_NAMES = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h"), "SimpleRNN": ("",)}
LETTER = {"kernel": "W", "recurrent_kernel": "U", "bias": "b"}


def explain_weights(
    class_name: str, names: tuple[str, ...], shapes: list[tuple[int, ...]], prefix: str = ""
) -> list[str]:
    """'kernel (3, 20) = [W_i | W_f | W_c | W_o], each (3, 5)' for each recurrent weight."""
    gates = GATE_NAMES.get(class_name)
    if gates is None:
        return []
    lines = []
    for name, shape in zip(names, shapes, strict=True):
        base = name.removeprefix("forward_").removeprefix("backward_")
        letter = LETTER.get(base)
        if letter is None or not shape:
            continue
        if class_name == "SimpleRNN":
            lines.append(f"{prefix}{name} {shape} = {letter}")
            continue
        each = (*shape[:-1], shape[-1] // len(gates))
        blocks = " | ".join(f"{letter}_{g}" for g in gates)
        note = " (row 0: input bias, row 1: recurrent bias)" if base == "bias" and len(shape) == 2 else ""
        lines.append(f"{prefix}{name} {shape} = [{blocks}], each {each}{note}")
    return lines


def _output_shapes(spec: ModelSpec) -> dict[str, list[tuple[int | None, ...]]]:
    """Run the reference twice on tiny generated inputs of different batch and length; axes that
    change are open (None)."""
    runs = []
    for samples, timesteps in ((1, 2), (2, 3)):
        inputs = generate_inputs(spec, InputPlan(samples=samples, timesteps=timesteps))
        runs.append(forward(spec, inputs, record=True).layer_outputs)
    shapes = {}
    for name, outputs in runs[0].items():
        shapes[name] = [
            tuple(a if a == b else None for a, b in zip(x.shape, y.shape, strict=True))
            for x, y in zip(outputs, runs[1][name], strict=True)
        ]
    return shapes


def _supported(layer: LayerSpec, spec: ModelSpec) -> tuple[str, list[str]]:
    """Why the reference cannot compute `layer` ("" if it can), and the plugins that compute it or a layer it
    wraps ('my_layers.py (attention_layer)', 'my_layers.py (f) (wrapped layer td/inner)')."""
    from .plugins import recording

    if layer.class_name == "InputLayer":
        return "", []
    with recording() as computed:
        try:
            build_layer(
                layer,
                Context(
                    semantics=spec.semantics,
                    dtype=np.dtype(np.float64),
                    source=spec.source,
                    keras_version=spec.keras_version,
                ),
            )
            problem = ""
        except LstmParityError as exc:
            problem = exc.message.split("): ", 1)[-1]  # drop the "file: layer (class)" prefix
    plugins = [
        each.registration.label + (f" (wrapped layer {each.layer})" if each.layer != layer.name else "")
        for each in computed
    ]
    return problem, plugins


def inspect_model(spec: ModelSpec) -> dict[str, Any]:
    """The inspection as plain data (also the `--json` output). `shapes_problem` says why the output shapes
    are unknown (a layer, a plugin say, fails on the tiny generated inputs), else None."""
    checked = {layer.name: _supported(layer, spec) for layer in spec.layers}
    problems = {name: problem for name, (problem, _) in checked.items()}
    shapes: dict[str, list] = {}
    shapes_problem = None
    if not any(problems.values()):
        try:
            shapes = _output_shapes(spec)
        except LstmParityError as exc:
            shapes, shapes_problem = {}, exc.message
    layers = []
    for layer in spec.layers:
        if layer.class_name == "InputLayer":
            out = [spec.input_shapes[spec.input_names.index(layer.name)]] if layer.name in spec.input_names else []
        else:
            out = shapes.get(layer.name, [])
        layers.append(
            {
                "name": layer.name,
                "class_name": layer.class_name,
                "output_shapes": [list(s) for s in out],
                "parameters": int(sum(w.size for w in layer.weights)),
                "options": {k: v for k, v in math_options(layer).items() if k not in ("layer", "backward_layer")},
                "weights": [
                    {"name": n, "shape": list(w.shape)} for n, w in zip(layer.weight_names, layer.weights, strict=True)
                ],
                "explained": _explain(layer),
                "supported": not problems[layer.name],
                "problem": problems[layer.name] or None,
                "plugins": checked[layer.name][1],  # the user's code that computes it (or a layer it wraps)
                "converted": layer.converted or None,
            }
        )
    return {
        "path": spec.source,
        "format": spec.file_format,
        "saved_by_keras": spec.keras_version,
        "semantics": spec.semantics,
        "model_class": spec.model_class,
        "parameters": sum(each["parameters"] for each in layers),
        "layers": layers,
        "supported": not any(problems.values()),
        "shapes_problem": shapes_problem,
    }


def _explain(layer: LayerSpec) -> list[str]:
    shapes = [tuple(w.shape) for w in layer.weights]
    if layer.class_name == "Bidirectional":
        inner = layer.config.get("layer", {}).get("class_name", "")
        return explain_weights(inner, layer.weight_names, shapes)
    if layer.class_name == "TimeDistributed":
        return explain_weights(layer.config.get("layer", {}).get("class_name", ""), layer.weight_names, shapes)
    return explain_weights(layer.class_name, layer.weight_names, shapes)


def render_inspection(info: dict[str, Any]) -> str:
    """A table of layers, then each recurrent layer's weights explained."""

    def shape_text(shapes: list) -> str:
        return ", ".join("(" + ", ".join("None" if d is None else str(d) for d in s) + ")" for s in shapes) or "?"

    rows = [("layer", "class", "output shape", "params", "supported", "options")]
    for layer in info["layers"]:
        options = ", ".join(f"{k}={v}" for k, v in layer["options"].items() if k not in ("batch_shape",))
        rows.append(
            (
                layer["name"],
                layer["class_name"],
                shape_text(layer["output_shapes"]),
                str(layer["parameters"]),
                ("plugin" if layer["plugins"] else "yes") if layer["supported"] else "NO",
                options,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        f"lstm-parity inspect {info['path']}",
        f"  saved by Keras {info['saved_by_keras'] or '(unknown)'} ({info['format']}, {info['model_class']}); "
        f"computed with {info['semantics']} semantics; {info['parameters']} parameters",
        "",
    ]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows]
    if info["shapes_problem"]:
        lines += ["", f"  output shapes unknown: computing on tiny generated inputs failed: {info['shapes_problem']}"]
    for layer in info["layers"]:
        if layer["explained"] or layer["problem"] or layer["converted"] or layer["plugins"]:
            lines.append("")
            lines.append(f"  {layer['name']} ({layer['class_name']}):")
            lines += [f"    {text}" for text in layer["explained"]]
            lines += [f"    computed by plugin {text}" for text in layer["plugins"]]
            if layer["converted"]:
                lines.append(f"    converted: {layer['converted']}")
            if layer["problem"]:
                lines.append(f"    not supported: {layer['problem']}")
    return "\n".join(lines) + "\n"
