"""Dense written out for a Program: y = activation(x @ kernel + bias) in two calls and the activation's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..spec import LayerSpec
from .activations import linear
from .core import dense_parts
from .layers import Context
from .program_emit import EMITTERS, Emitted, Op

HALVES_KERNEL = 4096  # kernel values up to which a Dense reads an LSTM's halves (a call saved, twice the work)


class DenseOps(Emitted):
    """One Dense call on a C-contiguous (..., features) buffer."""

    def __init__(
        self,
        kernel: np.ndarray,
        bias: np.ndarray | None,
        activation: Callable[[np.ndarray], np.ndarray],
        output: np.ndarray,
    ):
        self.kernel, self.activation = kernel, activation  # (features, units)
        self.homes = {}
        self.source: np.ndarray | None = None  # (rows, 2*features) halves read instead of the input
        self.bias = None
        if bias is not None:
            self.product = np.empty_like(output)  # (..., units); not y itself: NumPy is slow in place on one element
            self.bias = np.empty_like(output)  # (..., units): the bias repeated, so no call broadcasts
            self.bias[...] = bias
            self.nbytes = self.product.nbytes + self.bias.nbytes

    def read_halves(self, view: np.ndarray) -> bool:
        """x = 0.5 * (view[:, :f] + view[:, f:]), so x @ kernel = view @ (0.5 * [kernel; kernel]): one
        product for the producer's last call and ours (a power-of-two scale: exact but for subnormal
        weights). It doubles our multiply-adds and copies the kernel: taken for small kernels only."""
        if self.kernel.size > HALVES_KERNEL:
            return False
        self.source = view  # (rows, 2*features)
        self.kernel = np.concatenate([self.kernel, self.kernel]) * self.kernel.dtype.type(0.5)  # (2*features, units)
        self.nbytes += self.kernel.nbytes
        return True

    def ops(self, inputs: list[np.ndarray], outputs: list[np.ndarray], skip: frozenset[int] = frozenset()) -> list[Op]:
        (x,), (y,) = inputs, outputs  # (..., features), (..., units), C-contiguous buffers
        # (rows, features), a view: a 2-D np.dot is BLAS's, a 3-D one is not
        rows = x.reshape(-1, x.shape[-1]) if self.source is None else self.source
        if self.bias is None:
            ops: list[Op] = [(np.dot, (rows, self.kernel, y.reshape(-1, y.shape[-1])))]
        else:
            product = self.product.reshape(rows.shape[0], -1)  # (rows, units), a view
            ops = [(np.dot, (rows, self.kernel, product)), (np.add, (self.product, self.bias, y))]
        if self.activation is not linear:
            ops.append((_apply, (self.activation, y)))
        return ops

    def final(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[list[Op], Op]:
        ops = self.ops(inputs, outputs)
        last = ops.pop()  # the one that writes y: instead, the same computation returning a new array
        if self.activation is not linear:
            return ops, (self.activation, (outputs[0],))
        if self.bias is None:  # np.dot(rows, kernel), reshaped back to y's shape
            return ops, (_product, (last[1][0], self.kernel, outputs[0].shape))
        return ops, (last[0], last[1][:2])  # np.add(product, bias)


def _apply(activation: Callable[[np.ndarray], np.ndarray], y: np.ndarray) -> None:
    np.copyto(y, activation(y), casting="unsafe")


def _product(rows: np.ndarray, kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.dot(rows, kernel).reshape(shape)


def emit_dense(
    layer: LayerSpec, ctx: Context, inputs: list[np.ndarray], outputs: list[np.ndarray], shared: dict, budget: int
) -> Emitted | None:
    """DenseOps for a Dense on one input in ctx.dtype (the checked weights shared by the model's programs)."""
    if len(inputs) != 1 or inputs[0].dtype != ctx.dtype or outputs[0].dtype != ctx.dtype:
        return None
    if 2 * outputs[0].nbytes > budget:  # its product and repeated bias
        return None
    parts = shared.get((layer.name, "dense"))
    if parts is None:
        parts = shared.setdefault((layer.name, "dense"), dense_parts(layer, ctx))
    kernel, bias, activation = parts
    return DenseOps(kernel, bias, activation, outputs[0])


EMITTERS["Dense"] = emit_dense
