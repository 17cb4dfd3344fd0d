"""The sequence loops shared by every recurrent cell, and the cells as step functions.

A cell prepares its whole input once (`cell.prepare(x)`: per-step inputs in time-major order),
then steps: (x_t, states) -> (output, new_states, gates). The loop owns time order
(go_backwards), masking (carry states, repeat the previous output) and optional gate recording.

Layout, for speed without changing the math: the LSTM, GRU and SimpleRNN cells keep their
values feature-major, (units, batch), so each gate is a contiguous block of rows and every
elementwise pass runs over contiguous memory; a layer's (time, units, batch) output is exactly
the layout the next layer reads, so stacked layers pass it on without a copy. The LSTM and
SimpleRNN do one product per step, [kernel; bias; recurrent_kernel]^T @ [x_t; 1; h_tm1]; the
GRU step projects its input 8 steps at a time (x @ kernel + bias) because its candidate needs
the recurrent product apart. Gate rows are stored sigmoid-type first (LSTM i, f, o then c~; GRU
z, r then h~) so one activation call covers them, and when that activation is the logistic
sigmoid it is evaluated as 0.5 * tanh(0.5 * z) + 0.5 with the 0.5 folded into those rows of the
weights (a power-of-two scale, hence exact): one tanh pass, in place. ConvLSTM2D keeps
(batch, rows, cols, filters) for its convolutions.

Two loops compute the same numbers. `run_textbook` steps `cell.step` over the whole batch and
applies the mask after each step: it is the specification, records gates and takes any mask.
Unless gates are recorded, LSTM, GRU and SimpleRNN run `run_fast` instead: each step writes into
buffers allocated once (the new h straight into the stacked input of the next step's products;
the GRU's z and r come from one product over [x_t; 1; h_tm1; 1] too), and a mask costs no
per-step work when it is nested (padding after or before sequences of any lengths): with rows
sorted by their number of valid steps, every step's valid rows are a prefix [0, n), the step
computes those n columns only and the other rows keep their states untouched. Other masks take
the textbook loop. tests/test_speed_paths.py holds both loops, and one written sample by sample
from Keras' equations, to the same numbers in float32 and float64. At a batch of a few rows the
whole model may run instead as a Program of NumPy calls made once per input shape (program.py; the
LSTM step written out in program_lstm.py), held to the textbook loop by tests/test_program.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np

from .activations import Activation, sigmoid, tanh

TANH = (tanh, np.tanh)
FAST_PATHS = True  # False: every layer runs the textbook loop (tests compare the two)


class Steps(Protocol):
    """A cell's per-step inputs: `steps[t]` is step t; `shape` is (time, ..., batch) or (time, batch, ...)."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    def __getitem__(self, t: int, /) -> np.ndarray: ...


class Cell(Protocol):
    """A step function over states; LSTM, GRU and SimpleRNN cells also have `runner(batch, states)`,
    their step for the fast loop (see Runner)."""

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
    returned states are batch first. Runs the fast loop where it applies (module docstring), else
    the textbook one.
    """
    runner = getattr(cell, "runner", None)
    plan = row_plan(mask, x.shape[0], x.shape[1]) if FAST_PATHS and runner is not None and not record else None
    if plan is not None:
        return run_fast(
            runner,
            cell.units,
            x,
            plan,
            return_sequences=return_sequences,
            go_backwards=go_backwards,
            initial_states=initial_states,
            zero_output_for_mask=zero_output_for_mask,
        )
    return run_textbook(
        cell,
        x,
        return_sequences=return_sequences,
        go_backwards=go_backwards,
        mask=mask,
        initial_states=initial_states,
        zero_output_for_mask=zero_output_for_mask,
        record=record,
    )


def run_textbook(
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
    """run_sequence as the textbook writes it: every sample steps at every step, then the mask keeps
    the old states and output where it is False. The specification the fast loop is held to."""
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


def feature_major(x: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """x (batch, time, features) as (time, features, batch), rows taken in `order` if given; free
    when x is a view of such an array and there is no order."""
    steps = np.transpose(x, (1, 2, 0))  # (time, features, batch), a view
    return np.ascontiguousarray(steps) if order is None else np.take(steps, order, axis=2)


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


# ------------------------------------------------------------------------------------ fast loop


@dataclass
class RowPlan:
    """How the fast loop walks a batch: `order` (None: as given) puts rows so that the valid rows of
    every step t are rows [0, counts[t]); `started` rows have at least one valid step."""

    order: np.ndarray | None
    counts: list[int]
    started: int


def row_plan(mask: np.ndarray | None, batch: int, time: int) -> RowPlan | None:
    """The RowPlan for a (batch, time) mask, or None when no row order makes every step's valid rows
    a prefix (a step masked in the middle of one sequence but not of another: the textbook loop then).

    Sorting rows by their number of valid steps, longest first, does it exactly when each row's valid
    steps contain those of every shorter row: padding after (or before) sequences of any lengths."""
    if mask is None:
        return RowPlan(None, [batch] * time, batch if time else 0)
    mask = np.asarray(mask, dtype=bool)
    lengths = mask.sum(axis=1)  # (batch,)
    order = np.argsort(-lengths, kind="stable")  # (batch,)
    ordered = mask[order]  # (batch, time)
    if np.any(ordered[1:] & ~ordered[:-1]):  # a valid row below a masked one at some step
        return None
    in_order = bool(np.all(order == np.arange(batch)))
    return RowPlan(None if in_order else order, ordered.sum(axis=0).tolist(), int(np.count_nonzero(lengths)))


class Runner(Protocol):
    """A cell's fast steps over one batch: `h` (units, batch) is the output state, updated in place."""

    h: np.ndarray

    def step(self, x_t: np.ndarray, n: int) -> None: ...
    def states(self) -> tuple[np.ndarray, ...]: ...


def run_fast(
    make_runner,
    units: int,
    x: np.ndarray,
    plan: RowPlan,
    *,
    return_sequences: bool,
    go_backwards: bool,
    initial_states: tuple[np.ndarray, ...] | None,
    zero_output_for_mask: bool,
) -> SequenceResult:
    """run_sequence's loop for cells with a `runner(batch, states)`: the same outputs and states.

    Rows are taken in the plan's order; step t advances rows [0, counts[t]) only, the rest keep
    their states (what a mask asks for) and repeat their previous output (or emit zeros). A row
    with no valid step outputs zeros at the end, as in the textbook loop."""
    batch, time = x.shape[0], x.shape[1]
    order = plan.order
    x_steps = feature_major(x, order)  # (time, features, batch), rows in plan order
    states = None
    if initial_states is not None:
        states = tuple(_batch_last(s if order is None else s[order]) for s in initial_states)  # (units, batch)
    runner: Runner = make_runner(batch, states)
    h = runner.h  # (units, batch)
    outputs = np.empty((time, units, batch), dtype=h.dtype) if return_sequences else None  # (time, units, batch)
    for k, t in enumerate(range(time - 1, -1, -1) if go_backwards else range(time)):
        n = plan.counts[t]
        if n:
            runner.step(x_steps[t], n)
        if outputs is None:
            continue
        if n == batch:
            outputs[k] = h
            continue
        outputs[k, :, :n] = h[:, :n]
        outputs[k, :, n:] = outputs[k - 1, :, n:] if k and not zero_output_for_mask else 0
    inverse = None if order is None else np.argsort(order)  # (batch,)
    if outputs is not None:
        outputs = outputs if inverse is None else np.take(outputs, inverse, axis=2)
        result = np.moveaxis(outputs, -1, 0)  # (batch, time, units)
    else:
        last = h
        if plan.started < batch:
            last = h.copy()
            last[:, plan.started :] = 0  # never a valid step: zeros, whatever the initial states
        result = _batch_first(last if inverse is None else last[:, inverse])  # (batch, units)
    final = tuple(_batch_first(s if inverse is None else s[:, inverse]) for s in runner.states())
    return SequenceResult(result, final)


class StackedSteps:
    """What every fast runner shares: the stacked input of its products, (rows, batch), with the
    constant rows set to 1, and one scratch buffer cut into contiguous (rows, n) blocks per step."""

    def __init__(self, rows: int, ones: tuple[int, ...], batch: int, scratch: int, dtype: np.dtype):
        self.stacked = np.empty((rows, batch), dtype=dtype)  # (rows, batch)
        self.stacked[list(ones)] = 1
        self.scratch = np.empty(scratch * batch, dtype=dtype)

    def blocks(self, n: int, *heights: int) -> list[np.ndarray]:
        """Contiguous (height, n) arrays, one per height, side by side in the scratch buffer."""
        out, start = [], 0
        for height in heights:
            out.append(self.scratch[start : start + height * n].reshape(height, n))
            start += height * n
        return out


def _start(target: np.ndarray, states: tuple[np.ndarray, ...] | None, k: int) -> None:
    """Fill a runner's state rows with states[k], or zeros."""
    target[...] = 0 if states is None else states[k]


class LSTMRunner(StackedSteps):
    """LSTMCell's step in place: stacked = [x_t; 1; h], z = weights @ stacked (i, f, o, c~), then c and
    h written into their state rows. With the logistic sigmoid the gates are kept doubled, as
    tanh(z/2) + 1 = 2 * sigmoid(z), and the 0.5 is applied once to c and once to h: power-of-two
    scales, so exactly the numbers of c = f*c_tm1 + i*c~, h = o*act(c), in one pass fewer."""

    def __init__(self, cell: LSTMCell, batch: int, states: tuple[np.ndarray, ...] | None):
        f, u = cell.input_width, cell.units
        super().__init__(f + 1 + u, (f,), batch, 4 * u, cell.weights.dtype)
        self.cell, self.features = cell, f
        self.h = self.stacked[f + 1 :]  # (units, batch)
        self.c = np.empty((u, batch), dtype=cell.weights.dtype)  # (units, batch)
        _start(self.h, states, 0)
        _start(self.c, states, 1)

    def states(self) -> tuple[np.ndarray, ...]:
        return self.h, self.c

    def step(self, x_t: np.ndarray, n: int) -> None:
        cell, features, u = self.cell, self.features, self.cell.units
        self.stacked[:features, :n] = x_t[:, :n]
        (z,) = self.blocks(n, 4 * u)  # (4*units, n)
        np.matmul(cell.weights, self.stacked[:, :n], out=z)
        sig, c_hat = z[: 3 * u], z[3 * u :]  # (3*units, n), (units, n)
        i, f, o = sig[:u], sig[u : 2 * u], sig[2 * u :]
        c, h = self.c[:, :n], self.h[:, :n]  # (units, n) state views
        if cell.tanh_everywhere:
            np.tanh(z, out=z)
        else:
            c_hat[...] = cell.activation(c_hat)
        if cell.layout.half_tanh:
            if not cell.tanh_everywhere:
                np.tanh(sig, out=sig)
            np.add(sig, 1, out=sig)  # 2i, 2f, 2o
        else:
            sig[...] = cell.layout.recurrent_activation(sig)
        np.multiply(f, c, out=c)
        np.multiply(i, c_hat, out=i)
        np.add(c, i, out=c)
        if cell.layout.half_tanh:
            np.multiply(c, c.dtype.type(0.5), out=c)
        if cell.activation in TANH:
            np.tanh(c, out=c_hat)
            np.multiply(o, c_hat, out=h)
        else:
            np.multiply(o, cell.activation(c), out=h)
        if cell.layout.half_tanh:
            np.multiply(h, h.dtype.type(0.5), out=h)


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

    def runner(self, batch: int, states: tuple[np.ndarray, ...] | None) -> LSTMRunner:
        return LSTMRunner(self, batch, states)

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

    def runner(self, batch: int, states: tuple[np.ndarray, ...] | None) -> GRURunner:
        return GRURunner(self, batch, states)

    @cached_property
    def joint(self) -> tuple[np.ndarray, ...]:
        """The fast loop's weights over its stacked input (see GRURunner), in storage order.

        reset_after: zr_weights (2u, f+1+u+1) over [x; 1; h; 1], h_weights (u, u+1) over [h; 1],
        x_weights (u, f+1) over [x; 1]. Otherwise: zr_weights (2u, f+1+u) over [x; 1; h] and
        candidate_weights (u, u+f+1) over [r*h; x; 1]. With the logistic sigmoid, the weights that
        multiply r are halved: the runner uses 2r = tanh + 1."""
        u, dtype = self.units, self.kernel_t.dtype
        scale = dtype.type(0.5 if self.layout.half_tanh else 1)
        kernel_t, recurrent_t = self.kernel_t, self.recurrent_t  # (3u, f), (3u, u)
        input_bias = self.input_bias if self.input_bias is not None else np.zeros((3 * u, 1), dtype=dtype)
        if self.reset_after:
            recurrent_bias = self.recurrent_bias if self.recurrent_bias is not None else np.zeros_like(input_bias)
            zr = np.hstack([kernel_t[: 2 * u], input_bias[: 2 * u], recurrent_t[: 2 * u], recurrent_bias[: 2 * u]])
            h = np.hstack([recurrent_t[2 * u :], recurrent_bias[2 * u :]]) * scale
            x = np.hstack([kernel_t[2 * u :], input_bias[2 * u :]])
            return tuple(np.ascontiguousarray(w) for w in (zr, h, x))
        zr = np.hstack([kernel_t[: 2 * u], input_bias[: 2 * u], recurrent_t[: 2 * u]])
        candidate = np.hstack([recurrent_t[2 * u :] * scale, kernel_t[2 * u :], input_bias[2 * u :]])
        return np.ascontiguousarray(zr), np.ascontiguousarray(candidate)

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


class GRURunner(StackedSteps):
    """GRUCell's step in place. reset_after: stacked = [x_t; 1; h; 1]; zr from all of it, the
    recurrent candidate part from [h; 1], the input one from [x_t; 1]. Otherwise stacked =
    [r*h; x_t; 1; h]: zr from [x_t; 1; h], the candidate from [r*h; x_t; 1]. h = z*h_tm1 + (1-z)*h~
    is written into the h rows. With the logistic sigmoid r is kept as 2r = tanh + 1 against weights
    halved (a power-of-two scale: the same numbers, one pass fewer)."""

    def __init__(self, cell: GRUCell, batch: int, states: tuple[np.ndarray, ...] | None):
        f, u = cell.input_width, cell.units
        self.cell, self.features = cell, f
        self.weights = cell.joint
        dtype = self.weights[0].dtype
        if cell.reset_after:
            super().__init__(f + 1 + u + 1, (f, f + 1 + u), batch, 4 * u, dtype)
            self.h = self.stacked[f + 1 : f + 1 + u]  # (units, batch)
        else:
            super().__init__(u + f + 1 + u, (u + f,), batch, 3 * u, dtype)
            self.h = self.stacked[u + f + 1 :]  # (units, batch)
        _start(self.h, states, 0)

    def states(self) -> tuple[np.ndarray, ...]:
        return (self.h,)

    def step(self, x_t: np.ndarray, n: int) -> None:
        cell, features, u = self.cell, self.features, self.cell.units
        stacked, h_tm1 = self.stacked[:, :n], self.h[:, :n]  # (rows, n), (units, n)
        if cell.reset_after:
            zr, candidate, x_h = self.blocks(n, 2 * u, u, u)
            stacked[:features] = x_t[:, :n]
            zr_weights, h_weights, x_weights = self.weights
            np.matmul(zr_weights, stacked, out=zr)  # (2*units, n)
            np.matmul(h_weights, stacked[features + 1 :], out=candidate)  # (units, n): h_tm1 @ U_h + b_rec_h
            np.matmul(x_weights, stacked[: features + 1], out=x_h)  # (units, n): x_t @ W_h + b_h
            r = self._activate(zr)
            np.multiply(candidate, r, out=candidate)
            np.add(candidate, x_h, out=candidate)
            spare = x_h
        else:
            zr, candidate = self.blocks(n, 2 * u, u)
            stacked[u : u + features] = x_t[:, :n]
            zr_weights, candidate_weights = self.weights
            np.matmul(zr_weights, stacked[u:], out=zr)  # (2*units, n)
            r = self._activate(zr)
            np.multiply(r, h_tm1, out=stacked[:u])  # r * h_tm1 (times 2 with the halved weights)
            np.matmul(candidate_weights, stacked[: u + features + 1], out=candidate)  # (units, n)
            spare = r
        h_hat = activate_in_place(cell.activation, candidate)  # (units, n)
        z = zr[:u]
        np.multiply(z, h_tm1, out=spare)
        np.subtract(1, z, out=z)
        np.multiply(z, h_hat, out=z)
        np.add(spare, z, out=h_tm1)  # h, in the h rows

    def _activate(self, zr: np.ndarray) -> np.ndarray:
        """z (in place, zr[:u]) and r, or 2r with the logistic sigmoid (zr[u:])."""
        layout, u = self.cell.layout, self.cell.units
        if not layout.half_tanh:
            layout.activate(zr)
            return zr[u:]
        np.tanh(zr, out=zr)
        layout.activate(zr[:u], tanh_done=True)
        r2 = zr[u:]
        np.add(r2, 1, out=r2)
        return r2


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

    def runner(self, batch: int, states: tuple[np.ndarray, ...] | None) -> SimpleRNNRunner:
        return SimpleRNNRunner(self, batch, states)

    def step(
        self, x_t: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        (h_tm1,) = states  # (units, batch)
        h = self.activation(joint_product(self.weights, x_t, h_tm1))  # (units, batch)
        return h, (h,), {"h": h}


class SimpleRNNRunner(StackedSteps):
    """SimpleRNNCell's step in place: h = act(weights @ [x_t; 1; h_tm1]) written into the h rows."""

    def __init__(self, cell: SimpleRNNCell, batch: int, states: tuple[np.ndarray, ...] | None):
        f, u = cell.input_width, cell.units
        super().__init__(f + 1 + u, (f,), batch, u, cell.weights.dtype)
        self.cell, self.features = cell, f
        self.h = self.stacked[f + 1 :]  # (units, batch)
        _start(self.h, states, 0)

    def states(self) -> tuple[np.ndarray, ...]:
        return (self.h,)

    def step(self, x_t: np.ndarray, n: int) -> None:
        self.stacked[: self.features, :n] = x_t[:, :n]
        (z,) = self.blocks(n, self.cell.units)  # (units, n)
        np.matmul(self.cell.weights, self.stacked[:, :n], out=z)
        h = self.h[:, :n]
        if self.cell.activation in TANH:
            np.tanh(z, out=h)
        else:
            h[...] = self.cell.activation(z)


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
