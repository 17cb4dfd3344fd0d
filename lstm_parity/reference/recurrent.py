"""The one sequence loop shared by every recurrent cell, and the cells as step functions.

A cell prepares its whole input once (`cell.prepare(x)`: per-step inputs in time-major order),
then steps: (x_t, states) -> (output, new_states, gates). The loop owns time order
(go_backwards), masking (carry states, repeat the previous output) and optional gate recording.

Layout, for speed without changing the math: the LSTM, GRU and SimpleRNN cells keep their
values feature-major, (units, batch), so each gate is a contiguous block of rows and every
elementwise pass runs over contiguous memory; a layer's (time, units, batch) output is exactly
the layout the next layer reads, so stacked layers pass it on without a copy. The LSTM and
SimpleRNN do one product per step, [kernel; bias; recurrent_kernel]^T @ [x_t; 1; h_tm1]; the
GRU projects its whole input first (x @ kernel + bias for every step) because its candidate needs
the recurrent product apart. Gate rows are stored sigmoid-type first (LSTM i, f, o then c~; GRU
z, r then h~) so one activation call covers them, and when that activation is the logistic
sigmoid it is evaluated as 0.5 * tanh(0.5 * z) + 0.5 with the 0.5 folded into those rows of the
weights (a power-of-two scale, hence exact): one tanh pass, in place. ConvLSTM2D keeps
(batch, rows, cols, filters) for its convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .activations import Activation, sigmoid, tanh

TANH = (tanh, np.tanh)


class Steps(Protocol):
    """A cell's per-step inputs: `steps[t]` is step t; `shape` is (time, ..., batch) or (time, batch, ...)."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    def __getitem__(self, t: int, /) -> np.ndarray: ...


class Cell(Protocol):
    units: int
    state_count: int
    input_width: int  # features per step the cell expects
    batch_last: bool  # states (units, batch) rather than (batch, ...)

    def prepare(self, x: np.ndarray) -> Steps: ...
    def zero_states(self, x_steps: Steps) -> tuple[np.ndarray, ...]: ...
    def step(
        self, x_t: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]: ...


@dataclass
class SequenceResult:
    """What one recurrent layer call produced, batch first.

    `output` is (batch, time, units) with return_sequences else (batch, units); `states` are the
    final states; `trace` maps a gate or state name to (batch, time, units) in processing order
    when recording was asked for.
    """

    output: np.ndarray
    states: tuple[np.ndarray, ...]
    trace: dict[str, np.ndarray] = field(default_factory=dict)


def run_sequence(
    cell: Cell,
    x: np.ndarray,
    *,
    return_sequences: bool,
    go_backwards: bool = False,
    mask: np.ndarray | None = None,
    initial_states: tuple[np.ndarray, ...] | None = None,
    zero_output_for_mask: bool = False,
    record: bool = False,
) -> SequenceResult:
    """Run `cell` over x (batch, time, features) the way Keras' RNN layer does at inference.

    go_backwards processes time in reverse and returns outputs in processing order. At a step
    where mask (batch, time) is False every state keeps its value and the emitted output repeats
    the previous one (zeros before the first valid step), or is zeros with zero_output_for_mask
    (what Bidirectional asks of its layers when returning sequences). `initial_states` and the
    returned states are batch first.
    """
    time = x.shape[1]
    x_steps = cell.prepare(x)  # (time, features, batch), or (time, batch, ...) when not batch_last
    inside, outside = (_batch_last, _batch_first) if cell.batch_last else (_same, _same)
    states = tuple(inside(s) for s in initial_states) if initial_states is not None else cell.zero_states(x_steps)
    order = range(time - 1, -1, -1) if go_backwards else range(time)
    output = np.zeros_like(states[0])  # (units, batch), or (batch, rows, cols, filters) for ConvLSTM2D
    outputs = np.empty((time, *output.shape), dtype=output.dtype) if return_sequences else None  # (time, ...)
    all_valid = np.asarray(mask.all(axis=0)) if mask is not None else None  # (time,): steps where no sample is masked
    steps: dict[str, list[np.ndarray]] = {}
    for k, t in enumerate(order):
        h, new_states, gates = cell.step(x_steps[t], states)
        if mask is not None and all_valid is not None and not all_valid[t]:
            keep = mask[:, t] if cell.batch_last else mask[:, t].reshape((-1,) + (1,) * (output.ndim - 1))
            new_states = tuple(np.where(keep, new, old) for new, old in zip(new_states, states, strict=True))
            h = np.where(keep, h, 0 if zero_output_for_mask else output)
        states, output = new_states, h
        if outputs is not None:
            outputs[k] = h
        if record:
            for name, value in gates.items():
                steps.setdefault(name, []).append(outside(value))
    if outputs is not None:
        result = np.moveaxis(outputs, -1, 0) if cell.batch_last else np.moveaxis(outputs, 0, 1)  # (batch, time, ...)
    else:
        result = outside(output)  # (batch, units)
    trace = {name: np.stack(values, axis=1) for name, values in steps.items()}  # (batch, time, units)
    return SequenceResult(result, tuple(outside(s) for s in states), trace)


def _same(array: np.ndarray) -> np.ndarray:
    return array


def _batch_last(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.T)  # (batch, units) -> (units, batch)


def _batch_first(array: np.ndarray) -> np.ndarray:
    return array.T  # (units, batch) -> (batch, units), a view


class ProjectedSteps:
    """Input projections computed a block of steps at a time, on first use: the whole sequence's
    (time, k*units, batch) would not stay in cache, a block of STEPS_PER_BLOCK steps does."""

    STEPS_PER_BLOCK = 8

    def __init__(self, project, x: np.ndarray, width: int):
        self.project, self.x = project, x
        self.shape = (x.shape[1], width, x.shape[0])  # (time, k*units, batch)
        self.start = -1
        self.block: np.ndarray | None = None  # (STEPS_PER_BLOCK, k*units, batch)

    def __getitem__(self, t: int) -> np.ndarray:
        if self.block is None or not self.start <= t < self.start + self.STEPS_PER_BLOCK:
            self.start = t - t % self.STEPS_PER_BLOCK
            self.block = self.project(self.x[:, self.start : self.start + self.STEPS_PER_BLOCK])
        return self.block[t - self.start]  # (k*units, batch)


def activate_in_place(activation: Activation, values: np.ndarray) -> np.ndarray:
    """activation(values), overwriting `values` when the activation is tanh (no new array)."""
    if activation in TANH:
        return np.tanh(values, out=values)
    return activation(values)


def feature_major(x: np.ndarray) -> np.ndarray:
    """x (batch, time, features) as (time, features, batch); free when x is a view of such an array."""
    return np.ascontiguousarray(np.transpose(x, (1, 2, 0)))


class GateLayout:
    """Where a cell's gates sit along its gate axis and how they are activated in one pass.

    `order` lists Keras' gate blocks in the order we store them, the first `sigmoid_gates` of them
    taking the recurrent activation. With the logistic sigmoid those blocks are stored halved and
    activated as 0.5 * tanh + 0.5.
    """

    def __init__(self, units: int, order: tuple[int, ...], sigmoid_gates: int, recurrent_activation: Activation):
        self.units, self.order, self.sigmoid_gates = units, order, sigmoid_gates
        self.recurrent_activation = recurrent_activation
        self.half_tanh = recurrent_activation is sigmoid

    def arrange(self, array: np.ndarray) -> np.ndarray:
        """A copy of Keras weights (..., k*units) with gate blocks in storage order, sigmoid blocks halved."""
        u = self.units
        out = np.concatenate([array[..., g * u : (g + 1) * u] for g in self.order], axis=-1)  # (..., k*units)
        if self.half_tanh:
            out[..., : self.sigmoid_gates * u] *= 0.5
        return out

    def activate(self, gates: np.ndarray, tanh_done: bool = False) -> None:
        """Apply the recurrent activation in place to `gates`, the sigmoid-type block; `tanh_done`
        says it already holds tanh of the stored (halved) pre-activations."""
        if self.half_tanh:
            half = gates.dtype.type(0.5)
            if not tanh_done:
                np.tanh(gates, out=gates)
            np.multiply(gates, half, out=gates)
            np.add(gates, half, out=gates)
        else:
            gates[...] = self.recurrent_activation(gates)


def joint_weights(
    layout: GateLayout | None, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None
) -> np.ndarray:
    """[kernel; bias; recurrent_kernel]^T in storage order: (k*units, features + 1 + units)."""
    bias = bias if bias is not None else np.zeros(kernel.shape[-1], dtype=kernel.dtype)
    stacked = np.concatenate([kernel, bias[None], recurrent_kernel])  # (features + 1 + units, k*units)
    return np.ascontiguousarray((layout.arrange(stacked) if layout else stacked).T)


def joint_product(weights: np.ndarray, x_t: np.ndarray, h_tm1: np.ndarray) -> np.ndarray:
    """weights @ [x_t; 1; h_tm1] for x_t (features, batch) and h_tm1 (units, batch)."""
    features = x_t.shape[0]
    xh = np.empty((weights.shape[1], x_t.shape[1]), dtype=weights.dtype)  # (features + 1 + units, batch)
    xh[:features] = x_t
    xh[features] = 1
    xh[features + 1 :] = h_tm1
    return weights @ xh  # (k*units, batch)


def lstm_update(
    z: np.ndarray, c_tm1: np.ndarray, layout: GateLayout, activation: Activation, tanh_everywhere: bool, block
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """c = f*c_tm1 + i*act(c~), h = o*act(c) from pre-activations z, gates i, f, o, c~ (`block(z, k)`
    is the k-th); z is activated in place."""
    if tanh_everywhere:
        np.tanh(z, out=z)  # tanh of c~ and of the halved i, f, o at once
    else:
        c_block = block(z, 3)
        c_block[...] = activation(c_block)
    layout.activate(block(z, slice(0, 3)), tanh_done=tanh_everywhere)
    i, f, o, c_hat = block(z, 0), block(z, 1), block(z, 2), block(z, 3)
    c = f * c_tm1
    c += i * c_hat
    h = activation(c)
    h = h * o if h is c else np.multiply(h, o, out=h)
    return h, c, {"i": i, "f": f, "c_hat": c_hat, "o": o, "c": c, "h": h}


class LSTMCell:
    """c = f*c_tm1 + i*act(c~), h = o*act(c); Keras' gate columns i, f, c, o are stored i, f, o, c~."""

    state_count = 2
    batch_last = True

    def __init__(
        self,
        kernel: np.ndarray,
        recurrent_kernel: np.ndarray,
        bias: np.ndarray | None,
        activation: Activation,
        recurrent_activation: Activation,
    ):
        self.units = recurrent_kernel.shape[0]
        self.input_width = kernel.shape[0]
        self.layout = GateLayout(self.units, (0, 1, 3, 2), 3, recurrent_activation)
        self.weights = joint_weights(self.layout, kernel, recurrent_kernel, bias)  # (4*units, features+1+units)
        self.activation = activation
        self.tanh_everywhere = self.layout.half_tanh and activation in TANH

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return feature_major(x)  # (time, features, batch)

    def zero_states(self, x_steps: Steps) -> tuple[np.ndarray, ...]:
        shape = (self.units, x_steps.shape[-1])  # (units, batch)
        return tuple(np.zeros(shape, dtype=self.weights.dtype) for _ in range(self.state_count))

    def block(self, z: np.ndarray, k: int | slice) -> np.ndarray:
        u = self.units
        return z[k * u : (k + 1) * u] if isinstance(k, int) else z[k.start * u : k.stop * u]

    def step(
        self, x_t: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        h_tm1, c_tm1 = states  # (units, batch) each
        z = joint_product(self.weights, x_t, h_tm1)  # (4*units, batch), rows i, f, o, c~
        h, c, gates = lstm_update(z, c_tm1, self.layout, self.activation, self.tanh_everywhere, self.block)
        return h, (h, c), gates


class GRUCell:
    """z, r gates and candidate h~ (gate columns z, r, h); reset_after decides where r applies.

    reset_after=True : h~ = act(x_h + r * (h_tm1 @ U_h + b_rec_h)), bias (2, 3*units)
    reset_after=False: h~ = act(x_h + (r * h_tm1) @ U_h),           bias (3*units,)
    h = z * h_tm1 + (1 - z) * h~
    """

    state_count = 1
    batch_last = True

    def __init__(
        self,
        kernel: np.ndarray,
        recurrent_kernel: np.ndarray,
        bias: np.ndarray | None,
        activation: Activation,
        recurrent_activation: Activation,
        reset_after: bool,
    ):
        self.units = u = recurrent_kernel.shape[0]
        self.input_width = kernel.shape[0]
        self.layout = GateLayout(u, (0, 1, 2), 2, recurrent_activation)
        self.kernel_t = np.ascontiguousarray(self.layout.arrange(kernel).T)  # (3*units, features)
        recurrent_t = np.ascontiguousarray(self.layout.arrange(recurrent_kernel).T)  # (3*units, units)
        self.reset_after = reset_after
        self.recurrent_t = recurrent_t
        self.recurrent_zr_t, self.recurrent_h_t = recurrent_t[: 2 * u], recurrent_t[2 * u :]  # (2u, u), (u, u)
        bias = self.layout.arrange(bias) if bias is not None else None
        if bias is not None and reset_after:
            self.input_bias, self.recurrent_bias = bias[0][:, None], bias[1][:, None]  # (3*units, 1) each
        else:
            self.input_bias, self.recurrent_bias = (bias[:, None] if bias is not None else None), None
        self.activation = activation

    def prepare(self, x: np.ndarray) -> ProjectedSteps:
        return ProjectedSteps(self.project, x, self.units * 3)

    def project(self, x: np.ndarray) -> np.ndarray:
        """x (batch, time, features) -> x @ kernel + input bias as (time, 3*units, batch)."""
        batch, time, features = x.shape
        rows = np.ascontiguousarray(np.transpose(x, (2, 1, 0))).reshape(features, time * batch)  # (features, t*b)
        x_proj = self.kernel_t @ rows  # (3*units, time*batch): one product for a block of steps
        if self.input_bias is not None:
            x_proj += self.input_bias
        return np.swapaxes(x_proj.reshape(-1, time, batch), 0, 1)  # (time, 3*units, batch), a view

    def zero_states(self, x_steps: Steps) -> tuple[np.ndarray, ...]:
        return (np.zeros((self.units, x_steps.shape[-1]), dtype=self.kernel_t.dtype),)  # (units, batch)

    def step(
        self, x_t: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        (h_tm1,) = states  # (units, batch)
        u = self.units
        if self.reset_after:
            inner = self.recurrent_t @ h_tm1  # (3*units, batch)
            if self.recurrent_bias is not None:
                inner += self.recurrent_bias
            zr = inner[: 2 * u]  # (2*units, batch)
        else:
            zr = self.recurrent_zr_t @ h_tm1  # (2*units, batch)
        zr += x_t[: 2 * u]
        self.layout.activate(zr)
        z, r = zr[:u], zr[u:]  # (units, batch) each
        if self.reset_after:
            candidate = inner[2 * u :]  # (units, batch): h_tm1 @ U_h + b_rec_h
            candidate *= r
        else:
            candidate = self.recurrent_h_t @ (r * h_tm1)  # (units, batch)
        candidate += x_t[2 * u :]
        h_hat = activate_in_place(self.activation, candidate)  # (units, batch)
        h = z * h_tm1  # (units, batch)
        h += (1 - z) * h_hat
        return h, (h,), {"z": z, "r": r, "h_hat": h_hat, "h": h}


class SimpleRNNCell:
    """h = act(x @ kernel + bias + h_tm1 @ recurrent_kernel)."""

    state_count = 1
    batch_last = True

    def __init__(
        self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None, activation: Activation
    ):
        self.units = recurrent_kernel.shape[0]
        self.input_width = kernel.shape[0]
        self.weights = joint_weights(None, kernel, recurrent_kernel, bias)
        self.activation = activation

    prepare = LSTMCell.prepare
    zero_states = LSTMCell.zero_states

    def step(
        self, x_t: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        (h_tm1,) = states  # (units, batch)
        h = self.activation(joint_product(self.weights, x_t, h_tm1))  # (units, batch)
        return h, (h,), {"h": h}


class ConvLSTM2DCell:
    """The LSTM equations with convolutions in place of products: the input convolution uses the
    layer's strides/padding/dilation, the recurrent one 'same' padding and stride 1.
    Gate blocks along the last (filters) axis; states are (batch, rows, cols, filters)."""

    state_count = 2
    batch_last = False

    def __init__(
        self,
        kernel: np.ndarray,
        recurrent_kernel: np.ndarray,
        bias: np.ndarray | None,
        activation: Activation,
        recurrent_activation: Activation,
        convolve,
        strides: tuple[int, ...],
        dilation: tuple[int, ...],
        padding: str,
    ):
        self.units = recurrent_kernel.shape[-2]  # filters
        self.input_width = kernel.shape[-2]  # channels
        self.layout = GateLayout(self.units, (0, 1, 3, 2), 3, recurrent_activation)
        self.kernel = self.layout.arrange(kernel)  # (kr, kc, channels, 4*filters)
        self.recurrent_kernel = self.layout.arrange(recurrent_kernel)  # (kr, kc, filters, 4*filters)
        self.bias = self.layout.arrange(bias) if bias is not None else None  # (4*filters,)
        self.activation = activation
        self.tanh_everywhere = self.layout.half_tanh and activation in TANH
        self.convolve, self.strides, self.dilation, self.padding = convolve, strides, dilation, padding

    def prepare(self, x: np.ndarray) -> np.ndarray:
        batch, time = x.shape[0], x.shape[1]
        rows = np.ascontiguousarray(np.swapaxes(x, 0, 1)).reshape((-1, *x.shape[2:]))  # (time*batch, r, c, ch)
        z = self.convolve(rows, self.kernel, self.strides, self.dilation, self.padding)  # (time*batch, r', c', 4f)
        if self.bias is not None:
            z += self.bias
        return z.reshape((time, batch, *z.shape[1:]))  # (time, batch, rows', cols', 4*filters)

    def zero_states(self, x_steps: Steps) -> tuple[np.ndarray, ...]:
        shape = (*x_steps.shape[1:-1], self.units)  # (batch, rows', cols', filters)
        return tuple(np.zeros(shape, dtype=self.kernel.dtype) for _ in range(self.state_count))

    def block(self, z: np.ndarray, k: int | slice) -> np.ndarray:
        u = self.units
        return z[..., k * u : (k + 1) * u] if isinstance(k, int) else z[..., k.start * u : k.stop * u]

    def step(
        self, x_t: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        h_tm1, c_tm1 = states  # (batch, rows', cols', filters) each
        z = self.convolve(h_tm1, self.recurrent_kernel, (1, 1), (1, 1), "same")  # (batch, rows', cols', 4f)
        z += x_t
        h, c, gates = lstm_update(z, c_tm1, self.layout, self.activation, self.tanh_everywhere, self.block)
        return h, (h, c), gates
