"""`dump --format c`: a model's weights as one self-contained C header for a port written by hand.

Any model gets a header: every weight array of every layer as `static const float NAME[D0][D1]...`
(`double` on request), a #define for each dimension, the model's input and output dimensions, each
layer's units (filters for convolutions) and gate column offsets, Bidirectional's merge mode, each
activation as a code whose name carries the Keras generation (hard_sigmoid is two functions), and a
comment with the equations, formulas, what a mask does where a layer gets one, and how Bidirectional
merges. A model that is one LSTM (last output) followed by one Dense also gets the tutorial's names:
TUTORIAL_W, TUTORIAL_U, TUTORIAL_B, TUTORIAL_WOUT, TUTORIAL_BOUT and its dimensions, so a port of the
tutorial compiles against any such model. The header names the model by its base name and SHA-256 only
(no folder), so it is the same from any checkout. It compiles as C99 and as C++; see c_names.py
(identifiers) and c_arrays.py (exact literals, the parts every header shares).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .c_arrays import C_TYPES, CArray, guard_name, header_end, header_start, name_array
from .c_names import NameTable, c_string, comment_text, sanitize
from .dump import check_layers, tutorial_block, wrapped
from .errors import LstmParityError
from .formulas import (
    ACTIVATION_CODES,
    CAVEATS,
    MERGE_MODES,
    UNKNOWN_CODE,
    activation,
    layer_equations,
    mask_equations,
    mask_source,
    merge_equations,
)
from .gates import GATES, gate_columns, width_key
from .layer_io import mask_sources, model_output_shapes
from .reference.layers import math_options
from .spec import LayerSpec, ModelSpec

ACT_PREFIX = "LP_ACT_"
MERGE_PREFIX = "LP_MERGE_"
# Stems no layer may take: the header's own families of names.
RESERVED_STEMS = ("MODEL", "TUTORIAL", "LP", "LP_ACT", "LP_MERGE", "LSTM_PARITY")
TUTORIAL_SHAPES = {"W": "(x, 4h)", "U": "(h, 4h)", "b": "(4h,)", "Wout": "(h, y)", "bout": "(y,)"}
ALIGN = 60  # comments after #defines line up at this width (a longer define is followed by one space)
# Options of a Bidirectional's backward layer that differ from the forward one's by construction.
BACKWARD_OWN = ("go_backwards", "name")


@dataclass
class Section:
    """The header lines of one layer (or of the model, or of the tutorial's names)."""

    title: str
    layer: str | None = None  # the Keras layer's name, for a layer's section
    notes: list[str] = field(default_factory=list)  # comment lines under the title
    defines: list[tuple[str, str, str]] = field(default_factory=list)  # (macro, value, comment)
    arrays: list[CArray] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # names claimed now, defined once arrays are known


@dataclass
class HeaderPlan:
    """Everything the header declares, named; `render` turns it into text."""

    guard: str
    c_type: str
    sections: list[Section]
    comment: list[str]

    @property
    def arrays(self) -> list[CArray]:
        return [array for section in self.sections for array in section.arrays]


def plan_header(spec: ModelSpec, c_type: str = "float") -> HeaderPlan:
    """Name every array and macro of `spec`'s header. `c_type` is "float" (default) or "double".
    Raises BadInputError when a layer's options disagree with its weights (`dump.check_layers`)."""
    if c_type not in C_TYPES:
        raise ValueError(f"c_type must be one of {sorted(C_TYPES)}, not {c_type!r}")
    check_layers(spec)
    names = NameTable()
    names.stems.update(RESERVED_STEMS)
    for code in (*ACTIVATION_CODES, UNKNOWN_CODE):
        names.claim(ACT_PREFIX + code)
    for code, _ in MERGE_MODES.values():
        names.claim(MERGE_PREFIX + code)
    guard = guard_name(names, os.path.basename(spec.source), spec.sha256, "WEIGHTS")
    tutorial = tutorial_block(spec)
    sections = [_model_section(spec, names)]
    tutorial_section = _tutorial_section(spec, tutorial, names) if tutorial is not None else None
    declared: dict[int, str] = {}
    for layer in spec.layers:
        if layer.class_name != "InputLayer":
            sections.append(_layer_section(spec, layer, names, declared))
    if tutorial_section is not None and tutorial is not None:
        _tutorial_arrays(tutorial_section, tutorial, names, declared)
        sections.append(tutorial_section)
    return HeaderPlan(guard, c_type, sections, _comment(spec, c_type, tutorial))


def render_header(spec: ModelSpec, c_type: str = "float") -> str:
    """The header text (see the module docstring)."""
    return render(plan_header(spec, c_type))


def render(plan: HeaderPlan) -> str:
    """A plan as header text: comment, include guard, includes, the code families, then each section."""
    lines = header_start(plan.comment, plan.guard, [a.values for a in plan.arrays])
    lines += code_lines()
    for section in plan.sections:
        lines += ["", f"/* ---- {comment_text(section.title)} ---- */"]
        lines += [f"/* {comment_text(note)} */" for note in section.notes]
        width = min(max((len(macro) + len(value) for macro, value, _ in section.defines), default=0), ALIGN)
        for macro, value, note in section.defines:
            text = f"#define {macro} {value}"
            lines.append(f"{text:<{width + 9}} /* {comment_text(note)} */" if note else text)
        for array in section.arrays:
            lines += array.lines(plan.c_type)
    lines += header_end(plan.guard)
    return "\n".join(lines)


def code_lines() -> list[str]:
    """The activation and merge-mode codes, shared by every header lstm-parity writes (guarded, so two
    headers can be included together; the numbers never change)."""
    lines = [
        "",
        "/* Activation codes: each names a function and, where Keras changed it, the generation. */",
        f"#ifndef {ACT_PREFIX}LINEAR",
    ]
    lines += [f"#define {ACT_PREFIX}{code} {k}" for k, code in enumerate(ACTIVATION_CODES)]
    lines += [f"#define {ACT_PREFIX}{UNKNOWN_CODE} (-1)", "#endif"]
    lines += ["", "/* Bidirectional merge modes. */", f"#ifndef {MERGE_PREFIX}CONCAT"]
    lines += [f"#define {MERGE_PREFIX}{code} {k}" for k, (code, _) in enumerate(MERGE_MODES.values())]
    return lines + ["#endif"]


def _model_section(spec: ModelSpec, names: NameTable) -> Section:
    section = Section("the model's inputs and outputs (batch first; an open axis has no define)")
    for k, (name, shape) in enumerate(zip(spec.input_names, spec.input_shapes, strict=True)):
        _dimension_defines(section, names, f"_INPUT{k}", f"input {name}", shape)
    try:
        outputs = model_output_shapes(spec)
    except LstmParityError:  # a layer the reference does not compute: the shapes are not known
        section.notes.append("output dimensions: unknown (the reference does not compute every layer of this model)")
        return section
    for k, (name, shape) in enumerate(zip(spec.output_names, outputs, strict=True)):
        _dimension_defines(section, names, f"_OUTPUT{k}", f"output {name}", shape)
    return section


def _dimension_defines(section: Section, names: NameTable, tail: str, what: str, shape: tuple) -> None:
    shown = ", ".join("batch" if axis == 0 else str(size) for axis, size in enumerate(shape))
    fixed = [(axis, size) for axis, size in enumerate(shape) if axis and size is not None]
    for n, (axis, size) in enumerate(fixed):
        note = f"{what} ({shown})" if n == 0 else ""
        section.defines.append((names.claim("MODEL", f"{tail}_DIM{axis}"), str(size), note))


def _layer_section(spec: ModelSpec, layer: LayerSpec, names: NameTable, declared: dict[int, str]) -> Section:
    stem = names.stem(layer.name, "layer")
    macro = stem.upper()
    inner = wrapped(layer, "layer")
    math_layer = inner or layer
    options = math_options(math_layer)
    title = f"layer {layer.name} ({layer.class_name}" + (f" of {inner.class_name})" if inner else ")")
    section = Section(title, layer.name)
    section.defines.append((names.claim(macro, "_NAME"), c_string(layer.name), "the layer's Keras name"))
    for key in ("units", "filters"):
        if key in options:  # an integer: dump.check_layers saw to it
            section.defines.append((names.claim(macro, f"_{key.upper()}"), str(options[key]), ""))
    width = options.get(width_key(math_layer.class_name))
    if len(GATES.get(math_layer.class_name, ())) > 1 and width is not None:
        for gate, (start, stop) in gate_columns(math_layer.class_name, width).items():
            note = f"gate {gate}: columns [{start}, {stop}) of the last axis"
            section.defines.append((names.claim(macro, f"_GATE_{gate.upper()}"), str(start), note))
    if layer.class_name == "Bidirectional":
        mode = math_options(layer).get("merge_mode", "concat")
        if mode in MERGE_MODES:
            code, merged = MERGE_MODES[mode]
            section.defines.append((names.claim(macro, "_MERGE_MODE"), MERGE_PREFIX + code, f"{mode}: {merged}"))
    _activation_defines(section, options, macro, "", spec.semantics, names)
    backward = wrapped(layer, "backward_layer") if layer.class_name == "Bidirectional" else None
    if backward is not None:
        _activation_defines(section, math_options(backward), macro, "_BACKWARD", spec.semantics, names)
    for name, array in zip(layer.weight_names, layer.weights, strict=True):
        what = f"{layer.name}/{name} {tuple(array.shape)} {array.dtype}"
        declared_array = name_array(names, stem, "_" + sanitize(name, "weight"), array, what)
        section.arrays.append(declared_array)
        declared[id(array)] = declared_array.identifier
    return section


def _activation_defines(
    section: Section, options: dict[str, Any], macro: str, prefix: str, semantics: str, names: NameTable
) -> None:
    for option in ("activation", "recurrent_activation"):
        if option in options:
            name, code, formula = activation(options[option], semantics)
            macro_name = names.claim(macro, f"{prefix}_{option.upper()}")
            section.defines.append((macro_name, ACT_PREFIX + code, f"{name}: {formula}"))


def _tutorial_section(spec: ModelSpec, tutorial: dict[str, Any], names: NameTable) -> Section:
    """The tutorial's names (claimed before any layer's, so they never need a suffix)."""
    lstm_name, dense_name = tutorial["layers"]
    x_dim, four_h = tutorial["W"].shape
    units, y_dim = four_h // 4, tutorial["Wout"].shape[1]
    section = Section("the tutorial's names: one LSTM (last output) followed by one Dense")
    defines = [
        ("LSTM_NAME", c_string(lstm_name), 'trace keys are "<this>/i", ...'),
        ("DENSE_NAME", c_string(dense_name), ""),
        ("INPUT_DIM", str(x_dim), "x: features per timestep"),
        ("UNITS", str(units), "h"),
        ("OUTPUT_DIM", str(y_dim), "y"),
    ]
    timesteps = spec.input_shapes[0][1]
    if timesteps is not None:
        defines.append(("TIMESTEPS", str(timesteps), "fixed by the model's input"))
    defines += [(f"GATE_{g.upper()}", str(k * units), f"gate {g}") for k, g in enumerate(tutorial["gate_order"])]
    for option, key in (
        ("ACTIVATION", "activation"),
        ("RECURRENT_ACTIVATION", "recurrent_activation"),
        ("DENSE_ACTIVATION", "dense_activation"),
    ):
        name, code, formula = activation(tutorial[key], spec.semantics)
        defines.append((option, ACT_PREFIX + code, f"{name}: {formula}"))
    section.defines = [(names.claim("TUTORIAL", f"_{m}"), value, note) for m, value, note in defines]
    section.pending = {key: names.claim("TUTORIAL", f"_{key.upper()}") for key in TUTORIAL_SHAPES}
    return section


def _tutorial_arrays(section: Section, tutorial: dict[str, Any], names: NameTable, declared: dict[int, str]) -> None:
    """TUTORIAL_W ... TUTORIAL_BOUT name the layers' arrays; a bias the layer does not have is declared
    here as zeros."""
    for key, shape in TUTORIAL_SHAPES.items():
        array = tutorial[key]
        identifier = declared.get(id(array))
        if identifier is None:
            zeros = name_array(names, "tutorial", f"_{key}", array, f"{key} {shape}: the layer has no bias, so zeros")
            section.arrays.append(zeros)
            identifier = zeros.identifier
        section.defines.append((section.pending[key], identifier, f"{key} {shape}"))


def _comment(spec: ModelSpec, c_type: str, tutorial: dict[str, Any] | None) -> list[str]:
    """The header's opening comment (made safe by c_arrays.header_start)."""
    generation = {"keras2": "Keras 1/2 and tf.keras", "keras3": "Keras 3"}[spec.semantics]
    rounded = c_type == "float" and any(w.dtype == np.float64 for layer in spec.layers for w in layer.weights)
    source_name = os.path.basename(spec.source)
    values = (
        "float: float32 arrays read back exactly; the float64 arrays are rounded to the nearest float "
        "(--c-type double keeps every bit)"
        if rounded
        else f"{c_type}; each literal reads back as exactly the number stored in the file"
    )
    lines = [
        f"Weights of {source_name} for a port written by hand.",
        f"Written by lstm-parity {__version__} (lstm-parity dump --format c); edit the port, not this file.",
        "",
        f"source:    {source_name} ({spec.file_format}, {spec.model_class})",
        f"sha256:    {spec.sha256 or 'unknown'}",
        f"saved by:  Keras {spec.keras_version or 'unknown'}: {spec.semantics} semantics, the math of {generation}",
        *textwrap.wrap(values, 100, initial_indent="values:    ", subsequent_indent=" " * 11),
        "layout:    row-major, as Keras stores them: kernel[k][j] multiplies input feature k into column j;",
        "           a gate's block is columns [GATE_X, GATE_X + UNITS) of kernel, recurrent_kernel and bias",
        "",
        "Layers, in order (x_t: one timestep of one sample; h_tm1, c_tm1: the previous states):",
    ]
    masks = mask_sources(spec)
    used: dict[str, None] = {}
    for layer in spec.layers:
        if layer.class_name == "InputLayer":
            continue
        inner = wrapped(layer, "layer")
        math_layer = inner or layer
        options = math_options(math_layer)
        lines.append(f"  {layer.name} ({layer.class_name}{f' of {inner.class_name}' if inner else ''})")
        lines += _layer_comment(spec, layer, math_layer, options, masks)
        for option in ("activation", "recurrent_activation"):
            if option in options:
                name, _, formula = activation(options[option], spec.semantics)
                caveat = CAVEATS.get((name, spec.semantics))
                used[f"{name}(x) = {formula}" + (f"    ({caveat})" if caveat else "")] = None
    lines += ["", f"Activations ({generation}):"]
    lines += [f"  {text}" for text in used]
    if tutorial is not None:
        lines += ["", "The tutorial's names (TUTORIAL_*):"]
        lines += [f"  {equation}" for equation in tutorial["equations"]]
    return lines


def _layer_comment(
    spec: ModelSpec, layer: LayerSpec, math_layer: LayerSpec, options: dict[str, Any], masks: dict[str, str]
) -> list[str]:
    """A layer's lines: its options (and its wrapper's), equations, gate order, merge and mask rules."""
    lines: list[str] = []
    if math_layer is not layer:
        own = {k: v for k, v in math_options(layer).items() if k not in ("layer", "backward_layer")}
        lines += _wrapped_options("wrapper options: ", own)
    lines += _wrapped_options("options: ", options)
    bidirectional = layer.class_name == "Bidirectional"
    backward = wrapped(layer, "backward_layer") if bidirectional else None
    if backward is not None:
        differs = {k: v for k, v in math_options(backward).items() if k not in BACKWARD_OWN and options.get(k) != v}
        lines += _wrapped_options("backward layer options that differ: ", differs) if differs else []
    if bidirectional:
        lines.append("forward_* and backward_* arrays: the forward and the backward layer, each as below")
    if layer.class_name == "TimeDistributed":
        lines.append("applied to every timestep")
    lines += layer_equations(math_layer.class_name, options)
    if len(GATES.get(math_layer.class_name, ())) > 1:
        lines.append(f"gate order along the last axis: {', '.join(GATES[math_layer.class_name])}")
    if bidirectional:
        lines += merge_equations(math_options(layer).get("merge_mode", "concat"), bool(options.get("return_sequences")))
    if layer.name in masks:
        source = spec.layer(masks[layer.name])
        said = mask_source(source.class_name, math_options(source), source.name)
        lines += mask_equations(math_layer.class_name, options, said, bidirectional=bidirectional)
    return [f"      {line}" for line in lines]


def _wrapped_options(label: str, options: dict[str, Any]) -> list[str]:
    shown = ", ".join(f"{k}={_short(v)}" for k, v in options.items())
    return textwrap.wrap(shown, 100, initial_indent=label, subsequent_indent=" " * len(label))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
