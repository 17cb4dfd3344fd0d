"""The Keras 3 model an export converts: rebuilt from our own spec by `upgrade`'s machinery, so any file
the reader understands can be exported (Keras 1/2 configs, CuDNN layers, files no Keras loads), with
Keras 2's hard_sigmoid rescaled exactly (x1.2 on the affected gates' weights) and the shapes and unroll
flag the strategy asks for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import KerasSideError, LstmParityError, UnsupportedError, first_line
from ..spec import ModelSpec
from ..upgrade import build_keras3_model, inexact_rewrite, masked_initial_state_gap, plan_model, refuse_unrebuildable
from ..upgrade_config import DroppedKey
from .strategy import Strategy, time_distributed_dense


@dataclass
class Rebuilt:
    """The Keras 3 model, the arrays rescaled for Keras 3's hard_sigmoid, the config keys dropped, and
    the layers built as another class that computes the same (`rewritten`, one sentence each)."""

    model: Any
    transformed: list[str] = field(default_factory=list)
    dropped: list[DroppedKey] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)


def refuse_inexact(spec: ModelSpec, inputs: list[np.ndarray]) -> None:
    """Raise UnsupportedError (exit 3) when a Keras 3 model cannot compute the file's math exactly: an
    LSTM whose activation is hard_sigmoid, a Keras 2 RNN given initial_state on masked input (the
    message says how far the export would be on `inputs`); or has no code for a layer (a Lambda, a
    layer a plugin computes)."""
    refuse_unrebuildable(spec, "export")
    inexact = inexact_rewrite(spec, plan_model(spec), inputs) or masked_initial_state_gap(spec, inputs)
    if inexact:
        raise UnsupportedError(
            f"{spec.source}: {inexact[0]} (exports are built with Keras 3); the export would differ by "
            f"{inexact[1]:.3g} (max abs on the check inputs)"
        )


def rebuild(spec: ModelSpec, strategy: Strategy, inputs: list[np.ndarray]) -> Rebuilt:
    """Keras 3 `spec` with the strategy's input shapes and unroll flag and the planned weights.

    Raises UnsupportedError (exit 3) as `refuse_inexact` does, or when a config key Keras 3 refuses may
    change the numbers; KerasSideError (exit 4) when Keras 3 fails to build it."""
    from ..keras_runner import import_keras
    from ..quiet_stderr import quiet_stderr

    refuse_inexact(spec, inputs)
    built, rewritten = _for_strategy(spec, strategy)
    plans = plan_model(built)
    keras = import_keras("keras")
    dropped: list[DroppedKey] = []
    try:
        with quiet_stderr():
            model = build_keras3_model(
                keras, built, plans, dropped, input_shapes=strategy.input_shapes, unroll=strategy.unroll
            )
    except LstmParityError:
        raise
    except Exception as exc:
        raise KerasSideError(f"{spec.source}: Keras 3 could not rebuild the model: {first_line(exc)}") from None
    return Rebuilt(model, [t for plan in plans for t in plan.transformed], dropped, rewritten)


def _for_strategy(spec: ModelSpec, strategy: Strategy) -> tuple[ModelSpec, list[str]]:
    """The spec to build: for a TFLite loop over an open time axis, each TimeDistributed(Dense) as the Dense
    it wraps (the same numbers: Dense works on the last axis of every step), since the converter folds
    TimeDistributed's reshape to a time axis of 1 there. Returns it and what was rewritten."""
    if strategy.format != "tflite" or strategy.unroll or strategy.timesteps is not None:
        return spec, []
    names = set(time_distributed_dense(spec))
    if not names:
        return spec, []
    layers = tuple(
        dataclasses.replace(
            layer,
            class_name="Dense",
            config={**layer.config["layer"]["config"], "name": layer.name},
            module="",
            registered_name="",
        )
        if layer.name in names
        else layer
        for layer in spec.layers
    )
    rewritten = [
        f"TimeDistributed(Dense) {name!r} built as Dense (the same on every step; a TFLite loop over an open time "
        f"axis folds TimeDistributed to one step)"
        for name in sorted(names)
    ]
    return dataclasses.replace(spec, layers=layers), rewritten
