"""The LSTM (activation tanh, recurrent activation the logistic sigmoid) written out for a Program:
six NumPy calls per step, every view made once.

The textbook step (recurrent.LSTMCell.step) is
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  c~ = tanh(z_c)
    c = f * c_tm1 + i * c~;  h = o * tanh(c)
with z = x_t @ kernel + bias + h_tm1 @ recurrent_kernel. With sigmoid(a) = (1 + tanh(a/2)) / 2, and
the halving folded into the weights of i, f, o (a power of two: exact), one tanh gives
t_i, t_f, t_o and c~, and
    c = ((1 + t_f) * c_tm1 + (1 + t_i) * c~) / 2 = 0.5 * (t_f*c_tm1 + t_i*c~ + c_tm1 + c~)
    h = (1 + t_o) / 2 * tanh(c) = 0.5 * (tau + t_o*tau),  tau = tanh(c)
so the step keeps tau and t_o*tau (not h) and gives the next product both, each with half the
recurrent kernel: the sum 0.5*(...) for c is one product with [0.5 0.5 0.5 0.5] over four blocks laid
side by side, and h never needs computing inside the loop. Per step:
    z = weights @ [x_t; 1; tau; t_o*tau]      (dot)      rows c~, f, i, o
    tanh(z)                                   (tanh)
    [c_tm1*t_f, c~*t_i] = [c_tm1, c~] * [t_f, t_i]   (multiply: neighbouring rows)
    c = 0.5 * (the four blocks)               (dot)
    tau = tanh(c)                             (tanh)
    t_o*tau                                   (multiply)
Each step's values live in its own rows of two buffers, so the outputs of step k are the inputs of
step k + 1 where they were written:
    stacked[k] = [x_t; 1; tau_(k-1); (t_o*tau)_(k-1)]          (features + 1 + 2*units, batch)
    blocks[k]  = [c_tm1*t_f; c~*t_i; c_tm1; c~; t_f; t_i; t_o]  (7*units, batch)
Feeding both halves doubles the recurrent product's multiply-adds: for wide layers at a batch of more
than a few rows that costs more than one more call, and the step writes h itself (seven calls, see
PAIRED_MACS): stacked[k] = [x_t; 1; h_(k-1)] with the recurrent kernel as it is. A Dense that alone
reads the last h of a paired layer at batch 1 takes [tau, t_o*tau] itself (`halves`, program_dense.py).
"""

from __future__ import annotations

import operator

import numpy as np

from ..spec import LayerSpec
from .layers import Context
from .program_emit import EMITTERS, Emitted, Op
from .recurrent import LSTMCell
from .rnn_layers import make_cell, recurrent_options

PAIRED_MACS = 16_384  # the recurrent product's extra multiply-adds per step up to which h stays in two halves


class LSTMOps(Emitted):
    """One LSTM layer over (batch, time, features) at a fixed batch and time length.

    `paired`: the next product takes tau and t_o*tau with half the recurrent kernel each (twice its
    multiply-adds, six calls a step); else one more call per step writes h = 0.5*(tau + t_o*tau)
    and the product takes h (for wide layers and batches, where the multiply-adds cost more than a call).
    """

    def __init__(self, weights: np.ndarray, paired: bool, units: int, batch: int, time: int, options: dict):
        u, dtype = units, weights.dtype
        f = weights.shape[1] - 1 - (2 * u if paired else u)
        self.features, self.units, self.time, self.options, self.paired = f, u, time, options, paired
        self.weights = weights  # (4*units, features + 1 + 2*units or units): rows c~, f, i, o (see joint_weights)
        width = 2 * u if paired else u
        self.stacked = np.zeros((time + 1, f + 1 + width, batch), dtype=dtype)  # (time + 1, f + 1 + width, batch)
        self.stacked[:, f] = 1
        # tau and t_o*tau of each step: (time + 1, 2*units, batch), inside stacked when paired
        self.pairs = self.stacked[:, f + 1 :] if paired else np.zeros((time + 1, 2 * u, batch), dtype=dtype)
        self.blocks = np.zeros((time + 1, 7 * u, batch), dtype=dtype)  # (time + 1, 7*units, batch)
        self.half4 = np.full((1, 4), 0.5, dtype=dtype)  # (1, 4): c = 0.5 * the sum of four blocks
        self.half2 = np.full((1, 2), 0.5, dtype=dtype)  # (1, 2): h = 0.5 * (tau + t_o*tau)
        self.nbytes = buffer_bytes(f, u, paired, batch, time, dtype.itemsize)
        steps = self.stacked[:time, :f]  # (time, features, batch): step k's x_t
        if options["go_backwards"]:
            steps = steps[::-1]
        self.x_home = steps.transpose(2, 0, 1)  # (batch, time, features), a view
        self.homes = {0: self.x_home}

    def halves(self, index: int) -> np.ndarray | None:
        """At batch 1, the last h of a paired layer: its [tau, t_o*tau] as (1, 2*units)."""
        batch = self.stacked.shape[2]
        if index != 0 or not self.paired or self.options["return_sequences"] or batch != 1:
            return None
        return self.pairs[self.time].reshape(1, 2 * self.units)  # (1, 2*units), a view

    def ops(self, inputs: list[np.ndarray], outputs: list[np.ndarray], skip: frozenset[int] = frozenset()) -> list[Op]:
        f, u = self.features, self.units
        ops: list[Op] = []
        if inputs[0] is not self.x_home:
            ops.append((operator.setitem, (self.x_home, Ellipsis, inputs[0])))
        flat = self.blocks.shape[2] * u  # units * batch: a (units, batch) block as one row
        for k in range(self.time):
            x_h, y, next_y = self.stacked[k], self.blocks[k], self.blocks[k + 1]  # (rows, batch), (7u, batch) x2
            z = y[3 * u :]  # (4*units, batch): c~, t_f, t_i, t_o
            tau, o_tau = self.pairs[k + 1, :u], self.pairs[k + 1, u:]  # (units, batch) each
            ops += [
                (np.dot, (self.weights, x_h, z)),
                (np.tanh, (z, z)),
                (np.multiply, (y[2 * u : 4 * u], y[4 * u : 6 * u], y[: 2 * u])),
                (np.dot, (self.half4, y[: 4 * u].reshape(4, flat), next_y[2 * u : 3 * u].reshape(1, flat))),
                (np.tanh, (next_y[2 * u : 3 * u], tau)),
                (np.multiply, (y[6 * u :], tau, o_tau)),
            ]
            if not self.paired:  # h = 0.5 * (tau + t_o*tau) into the next product's input
                h_next = self.stacked[k + 1, f + 1 :].reshape(1, flat)  # (1, units * batch), a view
                ops.append((np.dot, (self.half2, self.pairs[k + 1].reshape(2, flat), h_next)))
        if self.options["return_sequences"]:
            ops += self._sequence(outputs[0].transpose(1, 2, 0))  # (time, units, batch) view of the output
        elif 0 not in skip:
            ops += self._last_h(outputs[0])
        if self.options["return_state"]:
            h_out, c_out = outputs[1], outputs[2]  # (batch, units) each
            ops += self._last_h(h_out)
            ops.append((np.copyto, (c_out.T, self.blocks[self.time, 2 * u : 3 * u])))
        return ops

    def _sequence(self, out: np.ndarray) -> list[Op]:
        """Every step's h into `out` (time, units, batch)."""
        f, u = self.features, self.units
        if not self.paired:
            return [(operator.setitem, (out, Ellipsis, self.stacked[1:, f + 1 :]))]
        return self._halved_sum(self.pairs[1:, :u], self.pairs[1:, u:], out)

    def _last_h(self, out: np.ndarray) -> list[Op]:
        """The last step's h into `out` (batch, units): one call (two when paired at a batch above 1)."""
        f, u = self.features, self.units
        if not self.paired:
            return [(operator.setitem, (out.T, Ellipsis, self.stacked[self.time, f + 1 :]))]
        last = self.pairs[self.time]  # (2*units, batch): tau, t_o*tau
        if out.shape[0] == 1:
            return [(np.dot, (self.half2, last.reshape(2, u), out))]  # (1, units)
        return self._halved_sum(last[:u], last[u:], out.T)

    def _halved_sum(self, tau: np.ndarray, o_tau: np.ndarray, out: np.ndarray) -> list[Op]:
        """h = 0.5 * (tau + t_o*tau) written into `out` (units-major views of the output buffer)."""
        half = np.full(out.shape, 0.5, dtype=out.dtype)  # of out's shape: broadcasting costs more per call
        return [(np.add, (tau, o_tau, out)), (np.multiply, (out, half, out))]


def buffer_bytes(features: int, units: int, paired: bool, batch: int, time: int, itemsize: int) -> int:
    """What LSTMOps allocates: stacked (with the pairs inside when paired, else beside) and blocks."""
    rows = features + 1 + (2 * units if paired else 3 * units) + 7 * units
    return (time + 1) * rows * batch * itemsize


def joint_weights(cell: LSTMCell, paired: bool) -> np.ndarray:
    """The step's product weights from the cell's, (4*units, features + 1 + units): rows reordered
    c~, f, i, o (i, f, o stay halved); when paired the recurrent columns halved and repeated."""
    f, u = cell.input_width, cell.units
    rows = [cell.weights[g * u : (g + 1) * u] for g in (3, 1, 0, 2)]  # cell rows i, f, o, c~ -> c~, f, i, o
    joint = np.concatenate(rows)  # (4*units, features + 1 + units): columns x, 1, h
    if paired:
        half_recurrent = joint[:, f + 1 :] * joint.dtype.type(0.5)  # (4*units, units): h = 0.5*(tau + t_o*tau)
        joint = np.concatenate([joint[:, : f + 1], half_recurrent, half_recurrent], axis=1)
    return np.ascontiguousarray(joint)


def emit_lstm(
    layer: LayerSpec, ctx: Context, inputs: list[np.ndarray], outputs: list[np.ndarray], shared: dict, budget: int
) -> Emitted | None:
    """LSTMOps for an LSTM called on one (batch, time >= 1, features) input in ctx.dtype, with tanh
    and the logistic sigmoid, not stateful; None otherwise (the program then calls the layer). Its
    weights are derived once per prepared model and shared by its programs."""
    options = recurrent_options(layer)
    x = inputs[0]
    if len(inputs) != 1 or x.ndim != 3 or x.shape[1] < 1 or x.dtype != ctx.dtype or options["stateful"]:
        return None
    batch, time, features = x.shape
    units = int(options["units"])
    paired = 4 * units * units * batch <= PAIRED_MACS
    halving = sum(out.nbytes for out in outputs)  # the halving arrays beside its outputs, at most
    if buffer_bytes(features, units, paired, batch, time, ctx.dtype.itemsize) + halving > budget:
        return None  # checked before LSTMOps allocates
    key = (layer.name, "lstm", paired)
    if key not in shared:
        cell = make_cell(layer, ctx, options)
        usable = isinstance(cell, LSTMCell) and cell.tanh_everywhere
        shared.setdefault(key, joint_weights(cell, paired) if isinstance(cell, LSTMCell) and usable else None)
    weights = shared[key]
    if weights is None:
        return None
    made = LSTMOps(weights, paired, units, batch, time, options)
    made.nbytes += halving
    return made


EMITTERS["LSTM"] = emit_lstm
