"""What every other side of a check offers the check flow.

A runner computes the model's outputs for rows of the input, chunk after chunk, in the order the
flow asks for them. The flow compares each chunk with the reference as it goes (compare.py's
accumulators), so nothing holds the whole input or output unless it is one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RunnerInfo:
    """Who computed the other side, for every report.

    `kind` is "keras", "onnxruntime", "litert" or "expected"; `label` is the short name a report
    row shows (e.g. "onnxruntime model.onnx"); `version` is the runtime's; `path` the file run.
    `matching` says how inputs/outputs were matched ("by name" / "by position"); `notes` are plain
    sentences the report prints (padding of a fixed batch, a profile chosen for quantized tensors);
    `census` is what is inside an export (see runners/census.py), empty for Keras and files.
    `stateful_model` is True when the Keras model itself carries state across batches, so that
    carrying state between invocations is expected, not a leak.
    """

    kind: str
    label: str
    version: str = ""
    path: str = ""
    matching: str = ""
    notes: tuple[str, ...] = ()
    census: dict = field(default_factory=dict)
    stateful_model: bool = False


class Runner(Protocol):
    """One other side. `predict` gets the rows [start, stop) of the whole input (one batch-first
    array per model input, float32 or integer token ids) and returns one batch-first array per model
    output, in the model's output order. Raises KerasSideError (exit 4) when the runtime fails."""

    info: RunnerInfo

    def predict(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]: ...

    def close(self) -> None: ...
