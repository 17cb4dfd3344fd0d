"""The gate blocks of each recurrent layer class: Keras stores a layer's gates side by side along the last
axis of kernel, recurrent_kernel and bias, `units` columns each (`filters` for ConvLSTM), in this order.

One table for every module that splits or names those columns (dump, the C header, inspect, upgrade).
"""

from __future__ import annotations

LSTM_GATES = ("i", "f", "c", "o")
GRU_GATES = ("z", "r", "h")
GATES: dict[str, tuple[str, ...]] = {
    "LSTM": LSTM_GATES,
    "GRU": GRU_GATES,
    "ConvLSTM1D": LSTM_GATES,
    "ConvLSTM2D": LSTM_GATES,
    "ConvLSTM3D": LSTM_GATES,
    "SimpleRNN": ("h",),  # one block: nothing to split
}


def width_key(class_name: str) -> str:
    """The config key that gives one gate block's width: "filters" for ConvLSTM, else "units"."""
    return "filters" if class_name.startswith("ConvLSTM") else "units"


def gate_columns(class_name: str, width: int) -> dict[str, tuple[int, int]]:
    """Each gate's column range [start, stop) along the last axis, for a block `width` columns wide."""
    return {gate: (k * width, (k + 1) * width) for k, gate in enumerate(GATES[class_name])}
