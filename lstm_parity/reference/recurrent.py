"""The one sequence loop shared by every recurrent cell, and the cells as pure step functions.

A cell projects the whole input at once (`x @ kernel + bias` over batch*time rows) and then
steps: (x_proj_t, states) -> (output, new_states, gates). The loop owns time order
(go_backwards), masking (carry states, repeat the previous output) and optional gate recording.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .activations import Activation


class Cell(Protocol):
    units: int

    def project(self, x: np.ndarray) -> np.ndarray: ...
    def zero_states(self, batch: int, dtype: np.dtype) -> tuple[np.ndarray, ...]: ...
    def step(self, x_proj_t: np.ndarray, states: tuple[np.ndarray, ...]
             ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]: ...


@dataclass
class SequenceResult:
    """What one recurrent layer call produced.

    `output` is (batch, time, units) with return_sequences else (batch, units); `states` are the
    final states; `trace` maps a gate or state name to (batch, time, units) in processing order
    when recording was asked for.
    """

    output: np.ndarray
    states: tuple[np.ndarray, ...]
    trace: dict[str, np.ndarray] = field(default_factory=dict)


def run_sequence(cell: Cell, x: np.ndarray, *, return_sequences: bool, go_backwards: bool = False,
                 mask: np.ndarray | None = None, initial_states: tuple[np.ndarray, ...] | None = None,
                 zero_output_for_mask: bool = False, record: bool = False) -> SequenceResult:
    """Run `cell` over x (batch, time, features) the way Keras' RNN layer does at inference.

    go_backwards processes time in reverse and returns outputs in processing order. At a step
    where mask (batch, time) is False every state keeps its value and the emitted output repeats
    the previous one (zeros before the first valid step), or is zeros with zero_output_for_mask
    (what Bidirectional asks of its layers when returning sequences).
    """
    batch, time = x.shape[0], x.shape[1]
    x_proj = cell.project(x)  # (batch, time, k*units), or (batch, time, rows, cols, 4*filters)
    states = initial_states if initial_states is not None else cell.zero_states(batch, x_proj.dtype)
    order = range(time - 1, -1, -1) if go_backwards else range(time)
    output = np.zeros_like(states[0])  # (batch, units), or (batch, rows, cols, filters) for ConvLSTM2D
    outputs = []
    steps: dict[str, list[np.ndarray]] = {}
    for t in order:
        h, new_states, gates = cell.step(x_proj[:, t], states)
        if mask is not None:
            keep = mask[:, t].reshape((batch,) + (1,) * (output.ndim - 1))  # (batch, 1, ...)
            new_states = tuple(np.where(keep, new, old) for new, old in zip(new_states, states))
            h = np.where(keep, h, 0 if zero_output_for_mask else output)
        states, output = new_states, h
        if return_sequences:
            outputs.append(h)
        if record:
            for name, value in gates.items():
                steps.setdefault(name, []).append(value)
    result = np.stack(outputs, axis=1) if return_sequences else output  # (batch, time, units) | (batch, units)
    trace = {name: np.stack(values, axis=1) for name, values in steps.items()}
    return SequenceResult(result, states, trace)


class LSTMCell:
    """c = f*c_tm1 + i*act(c~), h = o*act(c), with gate columns i, f, c, o in kernel order."""

    def __init__(self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                 activation: Activation, recurrent_activation: Activation):
        self.kernel = kernel  # (features, 4*units)
        self.recurrent_kernel = recurrent_kernel  # (units, 4*units)
        self.bias = bias  # (4*units,) or None
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.units = recurrent_kernel.shape[0]

    def project(self, x: np.ndarray) -> np.ndarray:
        batch, time, features = x.shape
        z = x.reshape(batch * time, features) @ self.kernel  # (batch*time, 4*units)
        if self.bias is not None:
            z += self.bias
        return z.reshape(batch, time, -1)  # (batch, time, 4*units)

    def zero_states(self, batch: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        zeros = np.zeros((batch, self.units), dtype=dtype)  # (batch, units)
        return zeros, zeros.copy()

    def step(self, x_proj_t: np.ndarray, states: tuple[np.ndarray, ...]
             ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        h_tm1, c_tm1 = states  # (batch, units) each
        u = self.units
        z = x_proj_t + h_tm1 @ self.recurrent_kernel  # (batch, 4*units)
        i = self.recurrent_activation(z[:, :u])  # (batch, units)
        f = self.recurrent_activation(z[:, u:2 * u])  # (batch, units)
        c_hat = self.activation(z[:, 2 * u:3 * u])  # (batch, units)
        o = self.recurrent_activation(z[:, 3 * u:])  # (batch, units)
        c = f * c_tm1 + i * c_hat  # (batch, units)
        h = o * self.activation(c)  # (batch, units)
        return h, (h, c), {"i": i, "f": f, "c_hat": c_hat, "o": o, "c": c, "h": h}


class GRUCell:
    """z, r gates and candidate h~ (gate columns z, r, h); reset_after decides where r applies.

    reset_after=True : h~ = act(x_h + r * (h_tm1 @ U_h + b_rec_h)), bias (2, 3*units)
    reset_after=False: h~ = act(x_h + (r * h_tm1) @ U_h),           bias (3*units,)
    h = z * h_tm1 + (1 - z) * h~
    """

    def __init__(self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                 activation: Activation, recurrent_activation: Activation, reset_after: bool):
        self.kernel = kernel  # (features, 3*units)
        self.recurrent_kernel = recurrent_kernel  # (units, 3*units)
        self.units = recurrent_kernel.shape[0]
        self.reset_after = reset_after
        if bias is not None and reset_after:
            self.input_bias, self.recurrent_bias = bias[0], bias[1]  # (3*units,) each
        else:
            self.input_bias, self.recurrent_bias = bias, None  # (3*units,) or None
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    def project(self, x: np.ndarray) -> np.ndarray:
        batch, time, features = x.shape
        z = x.reshape(batch * time, features) @ self.kernel  # (batch*time, 3*units)
        if self.input_bias is not None:
            z += self.input_bias
        return z.reshape(batch, time, -1)  # (batch, time, 3*units)

    def zero_states(self, batch: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        return (np.zeros((batch, self.units), dtype=dtype),)  # (batch, units)

    def step(self, x_proj_t: np.ndarray, states: tuple[np.ndarray, ...]
             ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        (h_tm1,) = states  # (batch, units)
        u = self.units
        if self.reset_after:
            inner = h_tm1 @ self.recurrent_kernel  # (batch, 3*units)
            if self.recurrent_bias is not None:
                inner += self.recurrent_bias
            z = self.recurrent_activation(x_proj_t[:, :u] + inner[:, :u])  # (batch, units)
            r = self.recurrent_activation(x_proj_t[:, u:2 * u] + inner[:, u:2 * u])  # (batch, units)
            h_hat = self.activation(x_proj_t[:, 2 * u:] + r * inner[:, 2 * u:])  # (batch, units)
        else:
            inner = h_tm1 @ self.recurrent_kernel[:, :2 * u]  # (batch, 2*units)
            z = self.recurrent_activation(x_proj_t[:, :u] + inner[:, :u])  # (batch, units)
            r = self.recurrent_activation(x_proj_t[:, u:2 * u] + inner[:, u:])  # (batch, units)
            h_hat = self.activation(x_proj_t[:, 2 * u:] + (r * h_tm1) @ self.recurrent_kernel[:, 2 * u:])
        h = z * h_tm1 + (1 - z) * h_hat  # (batch, units)
        return h, (h,), {"z": z, "r": r, "h_hat": h_hat, "h": h}


class SimpleRNNCell:
    """h = act(x @ kernel + bias + h_tm1 @ recurrent_kernel)."""

    def __init__(self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                 activation: Activation):
        self.kernel = kernel  # (features, units)
        self.recurrent_kernel = recurrent_kernel  # (units, units)
        self.bias = bias  # (units,) or None
        self.activation = activation
        self.units = recurrent_kernel.shape[0]

    project = LSTMCell.project

    def zero_states(self, batch: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        return (np.zeros((batch, self.units), dtype=dtype),)  # (batch, units)

    def step(self, x_proj_t: np.ndarray, states: tuple[np.ndarray, ...]
             ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        (h_tm1,) = states  # (batch, units)
        h = self.activation(x_proj_t + h_tm1 @ self.recurrent_kernel)  # (batch, units)
        return h, (h,), {"h": h}


class ConvLSTM2DCell(LSTMCell):
    """The LSTM equations with convolutions in place of products: the input convolution uses the
    layer's strides/padding/dilation, the recurrent one 'same' padding and stride 1.
    Gate blocks i, f, c, o along the last (filters) axis; states are (batch, rows, cols, filters)."""

    def __init__(self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                 activation: Activation, recurrent_activation: Activation, convolve, strides: tuple[int, int],
                 dilation: tuple[int, int], padding: str):
        super().__init__(kernel, recurrent_kernel, bias, activation, recurrent_activation)
        self.units = recurrent_kernel.shape[-2]  # filters
        self.convolve, self.strides, self.dilation, self.padding = convolve, strides, dilation, padding
        self.state_shape: tuple[int, ...] = ()

    def project(self, x: np.ndarray) -> np.ndarray:
        batch, time = x.shape[:2]
        z = self.convolve(x.reshape((batch * time, *x.shape[2:])), self.kernel, self.strides, self.dilation,
                          self.padding)  # (batch*time, rows', cols', 4*filters)
        if self.bias is not None:
            z += self.bias
        self.state_shape = z.shape[1:-1]
        return z.reshape((batch, time, *z.shape[1:]))  # (batch, time, rows', cols', 4*filters)

    def zero_states(self, batch: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        zeros = np.zeros((batch, *self.state_shape, self.units), dtype=dtype)  # (batch, rows', cols', filters)
        return zeros, zeros.copy()

    def step(self, x_proj_t: np.ndarray, states: tuple[np.ndarray, ...]
             ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        h_tm1, c_tm1 = states  # (batch, rows', cols', filters) each
        u = self.units
        z = x_proj_t + self.convolve(h_tm1, self.recurrent_kernel, (1, 1), (1, 1), "same")  # (..., 4*filters)
        i = self.recurrent_activation(z[..., :u])
        f = self.recurrent_activation(z[..., u:2 * u])
        c_hat = self.activation(z[..., 2 * u:3 * u])
        o = self.recurrent_activation(z[..., 3 * u:])
        c = f * c_tm1 + i * c_hat
        h = o * self.activation(c)
        return h, (h, c), {"i": i, "f": f, "c_hat": c_hat, "o": o, "c": c, "h": h}
