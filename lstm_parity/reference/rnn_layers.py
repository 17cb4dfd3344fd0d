"""Recurrent layers (LSTM, GRU, SimpleRNN) and Bidirectional: options, weights, states, masks.

Every recurrent class shares one builder and the one sequence loop in recurrent.py; only the
cell differs. CuDNNLSTM/CuDNNGRU and Keras 1 weights arrive here already converted by the
readers (formats/layout.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError
from ..spec import LayerSpec
from .activations import get_activation
from .layers import (
    Context,
    LayerFn,
    LayerResult,
    build_layer,
    check_width,
    child,
    register,
    take_weights,
    unsupported_option,
    where,
)
from .recurrent import Cell, ConvLSTM2DCell, GRUCell, LSTMCell, SimpleRNNCell, run_sequence

RNN_OPTIONS = (
    "units",
    "activation",
    "recurrent_activation",
    "use_bias",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "time_major",
    "zero_output_for_mask",
)
RNN_DEFAULTS = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
    "return_sequences": False,
    "return_state": False,
    "go_backwards": False,
    "stateful": False,
    "time_major": False,
    "zero_output_for_mask": False,
}
# GRU without a reset_after key was written by Keras 1 or 2.0-2.2, whose GRU had reset_after=False.
GRU_DEFAULTS = {**RNN_DEFAULTS, "reset_after": False}
CONV_DEFAULTS = {**RNN_DEFAULTS, "strides": 1, "padding": "valid", "dilation_rate": 1, "data_format": "channels_last"}
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def recurrent_options(layer: LayerSpec) -> dict[str, Any]:
    defaults = {"GRU": GRU_DEFAULTS, "ConvLSTM2D": CONV_DEFAULTS}.get(layer.class_name, RNN_DEFAULTS)
    return {
        **defaults,
        **{k: v for k, v in layer.config.items() if k in defaults or k in ("units", "filters", "kernel_size")},
    }


def _make_conv_cell(layer: LayerSpec, ctx: Context, options: dict[str, Any]) -> Cell:
    from .conv import _tuple, convolve

    if (options["data_format"] or "channels_last") != "channels_last":
        raise unsupported_option(ctx, layer, "data_format", options["data_format"], "channels_last")
    if options["padding"] not in ("valid", "same"):
        raise unsupported_option(ctx, layer, "padding", options["padding"], "valid, same")
    filters = int(options["filters"])
    kernel_size = _tuple(options["kernel_size"], 2)
    weights = take_weights(
        layer,
        ctx,
        [(*kernel_size, None, 4 * filters), (*kernel_size, filters, 4 * filters)]
        + ([(4 * filters,)] if options["use_bias"] else []),
    )
    at = where(ctx, layer)
    return ConvLSTM2DCell(
        weights[0],
        weights[1],
        weights[2] if options["use_bias"] else None,
        get_activation(options["activation"], ctx.semantics, at),
        get_activation(options["recurrent_activation"], ctx.semantics, at),
        convolve,
        _tuple(options["strides"], 2),
        _tuple(options["dilation_rate"], 2),
        options["padding"],
    )


def make_cell(layer: LayerSpec, ctx: Context, options: dict[str, Any]) -> Cell:
    if layer.class_name == "ConvLSTM2D":
        return _make_conv_cell(layer, ctx, options)
    units = int(options["units"])
    n = GATES[layer.class_name]
    at = where(ctx, layer)
    act = get_activation(options["activation"], ctx.semantics, at)
    bias_shape: tuple[int, ...] = (n * units,)
    if layer.class_name == "GRU" and options["reset_after"]:
        bias_shape = (2, n * units)
    weights = take_weights(
        layer, ctx, [(None, n * units), (units, n * units)] + ([bias_shape] if options["use_bias"] else [])
    )
    kernel, recurrent_kernel = weights[0], weights[1]
    bias = weights[2] if options["use_bias"] else None
    if layer.class_name == "SimpleRNN":
        return SimpleRNNCell(kernel, recurrent_kernel, bias, act)
    rec_act = get_activation(options["recurrent_activation"], ctx.semantics, at)
    if layer.class_name == "GRU":
        return GRUCell(kernel, recurrent_kernel, bias, act, rec_act, bool(options["reset_after"]))
    return LSTMCell(kernel, recurrent_kernel, bias, act, rec_act)


@register("LSTM", "SimpleRNN", options=RNN_OPTIONS, defaults=RNN_DEFAULTS)
@register("GRU", options=RNN_OPTIONS + ("reset_after",), defaults=GRU_DEFAULTS)
@register(
    "ConvLSTM2D",
    options=RNN_OPTIONS[1:] + ("filters", "kernel_size", "strides", "padding", "dilation_rate", "data_format"),
    defaults=CONV_DEFAULTS,
)
def build_recurrent(layer: LayerSpec, ctx: Context) -> LayerFn:
    """LSTM / GRU / SimpleRNN: inputs are x then any initial states (functional initial_state)."""
    options = recurrent_options(layer)
    if options["time_major"]:
        raise unsupported_option(ctx, layer, "time_major", True, "time_major=False")
    cell = make_cell(layer, ctx, options)
    stateful = bool(options["stateful"])

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x = inputs[0]  # (batch, time, features), or (batch, time, rows, cols, channels) for ConvLSTM2D
        rank = 5 if layer.class_name == "ConvLSTM2D" else 3
        if x.ndim != rank:
            raise BadInputError(f"{where(ctx, layer)}: expects a {rank}-D input (batch, time, ...), got {x.shape}")
        check_width(layer, ctx, x, cell.input_width)
        initial = _initial_states(layer, ctx, inputs[1:], x.shape[0], cell.units, cell.state_count)
        if initial is None and stateful and ctx.states is not None and layer.name in ctx.states:
            initial = ctx.states[layer.name]
            if initial[0].shape[0] != x.shape[0]:
                raise BadInputError(
                    f"{where(ctx, layer)}: a stateful layer needs every batch to have "
                    f"{initial[0].shape[0]} samples, got {x.shape[0]}"
                )
        mask = masks[0] if masks else None
        result = run_sequence(
            cell,
            x,
            return_sequences=bool(options["return_sequences"]),
            go_backwards=bool(options["go_backwards"]),
            mask=mask,
            initial_states=initial,
            zero_output_for_mask=bool(options["zero_output_for_mask"]),
            record=ctx.record,
        )
        if stateful and ctx.states is not None:
            ctx.states[layer.name] = result.states
        outputs = [result.output] + (list(result.states) if options["return_state"] else [])
        out_mask = mask if options["return_sequences"] else None
        return LayerResult(outputs, [out_mask] + [None] * (len(outputs) - 1), result.trace)

    return run


def _initial_states(
    layer: LayerSpec, ctx: Context, given: list[np.ndarray], batch: int, units: int, count: int
) -> tuple[np.ndarray, ...] | None:
    """States passed in a functional graph (initial_state=...), checked against the cell's sizes."""
    if not given:
        return None
    if len(given) != count:
        raise BadInputError(f"{where(ctx, layer)}: called with {len(given)} initial states, expected {count}")
    for state in given:
        if state.shape[:1] != (batch,) or state.shape[-1] != units:
            raise BadInputError(
                f"{where(ctx, layer)}: initial state has shape {state.shape}, expected {(batch, units)}"
            )
    return tuple(np.asarray(s, dtype=ctx.dtype) for s in given)


MERGES = {
    "concat": lambda y, y_rev: np.concatenate([y, y_rev], axis=-1),
    "sum": lambda y, y_rev: y + y_rev,
    "ave": lambda y, y_rev: (y + y_rev) / 2,
    "mul": lambda y, y_rev: y * y_rev,
}


@register("Bidirectional", options=("layer", "merge_mode", "backward_layer"), defaults={"merge_mode": "concat"})
def build_bidirectional(layer: LayerSpec, ctx: Context) -> LayerFn:
    """Forward and backward copies of the wrapped RNN; forward weights come first in the file.

    The backward layer's outputs are flipped back to input order only when returning sequences,
    and both layers emit zeros at masked steps then (Keras forces zero_output_for_mask).
    """
    cfg = layer.config
    merge_mode = cfg.get("merge_mode", "concat")
    if merge_mode is not None and merge_mode not in MERGES:
        raise unsupported_option(ctx, layer, "merge_mode", merge_mode, "concat, sum, ave, mul, None")
    forward_entry = cfg["layer"]
    backward_entry = cfg.get("backward_layer")
    if backward_entry is None:
        backward_config = dict(forward_entry["config"])
        backward_config["go_backwards"] = not backward_config.get("go_backwards", False)
        backward_entry = {"class_name": forward_entry["class_name"], "config": backward_config}
    half = len(layer.weights) // 2
    subs = []
    for suffix, entry, weights in (
        ("forward", forward_entry, layer.weights[:half]),
        ("backward", backward_entry, layer.weights[half:]),
    ):
        entry = {"class_name": entry["class_name"], "config": dict(entry["config"])}
        entry["config"]["zero_output_for_mask"] = bool(entry["config"].get("return_sequences", False))
        subs.append(build_layer(child(layer, suffix, entry, weights, ctx), ctx))
    forward, backward = subs
    return_sequences = bool(forward_entry["config"].get("return_sequences", False))
    return_state = bool(forward_entry["config"].get("return_state", False))

    def run(inputs: list[np.ndarray], masks: list) -> LayerResult:
        x, states = inputs[0], inputs[1:]
        mask = masks[0] if masks else None
        half_states = len(states) // 2
        y = forward([x, *states[:half_states]], [mask])
        y_rev = backward([x, *states[half_states:]], [mask])
        out, out_rev = y.outputs[0], y_rev.outputs[0]
        if return_sequences:
            out_rev = out_rev[:, ::-1]
        merged = [out, out_rev] if merge_mode is None else [MERGES[merge_mode](out, out_rev)]
        outputs = merged + (y.outputs[1:] + y_rev.outputs[1:] if return_state else [])
        out_mask = mask if return_sequences else None
        trace = {f"forward/{k}": v for k, v in y.trace.items()}
        trace.update({f"backward/{k}": v for k, v in y_rev.trace.items()})
        return LayerResult(outputs, [out_mask] * len(merged) + [None] * (len(outputs) - len(merged)), trace)

    return run
