"""Softmax and LogSoftmax along one dimension, stable for logits of any size."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _blocks, _exp
from . import _checks as check
from .module import Module


def _dim(owner: Module, dim: int | None, x: Tensor) -> int:
    """``dim`` checked against the input's rank; ``None`` picks torch's legacy implicit dimension
    (0 for 0-, 1- and 3-D inputs, 1 otherwise) with torch's deprecation warning."""
    if dim is None:
        check.warn(
            f"{type(owner).__name__}: implicit dimension choice for softmax has been deprecated. "
            "Change the call to include dim=X as an argument."
        )
        return 0 if x.dim() in (0, 1, 3) else 1
    rank = max(x.dim(), 1)  # a 0-d tensor takes dim 0 or -1, as torch
    if not -rank <= dim < rank:
        raise check.fail(
            owner, f"expected dim in [{-rank}, {rank - 1}] for an input of shape {tuple(x.shape)}, got {dim}"
        )
    return dim if x.dim() else 0


def _row_blocks(d: int, *tensors: Tensor) -> tuple[list[slice], list[Tensor]] | None:
    """For a reduction along the last dimension of large contiguous CPU tensors: slices of whole rows
    (about a block of elements per thread each) and the tensors as (rows, n) views; else None."""
    first = tensors[0]
    if d != first.dim() - 1 or not all(t.is_contiguous() for t in tensors):
        return None
    rows = [t.view(-1, first.shape[-1]) for t in tensors]
    parts = _blocks.row_blocks(rows[0])
    return None if parts is None else (parts, rows)


def scales_by_reciprocal(t: Tensor) -> bool:
    """Whether softmax divides its exponentials by their sum as a product with the sum's reciprocal,
    as torch's CPU kernel does (on the CPU a quotient per element costs twice a product: 56 against
    63 us for a 64 x 1024 forward in the cache, one thread), rather than by a division (on a GPU:
    the same memory-bound pass, without the small reciprocal kernel before it)."""
    return t.is_cpu


def _normalize(e: Tensor, total: Tensor) -> Tensor:
    """e / total in place: e times 1 / total on the CPU (one rounding more: within 1.5 ulp)."""
    if scales_by_reciprocal(e):
        return e.mul_(total.reciprocal_())
    return e.div_(total)


def _optional_dim(owner: Module, dim: int | None) -> int | None:
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise check.ModuleTypeError(f"{type(owner).__name__}: expected dim to be an int or None, got {dim!r}")
    return dim


class Softmax(Module):
    r"""y_i = exp(x_i) / sum_j exp(x_j) along ``dim``.

    dL/dx = y * (g - sum(g * y)) = g y - y sum(g y),   g = dL/dy, the sum along ``dim``: the full Jacobian
    diag(y) - y y^T applied to g (the off-diagonal terms are the -y sum(g y) part).
    The maximum along ``dim`` is subtracted first (softmax is shift-invariant), so exp never
    overflows, whatever the size of the logits.

    Args:
        dim: the dimension that sums to one (``None``: torch's deprecated implicit choice).

    Shape: input (*), output the same shape.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = _optional_dim(self, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        d = _dim(self, self.dim, x)
        blocked = _row_blocks(d, x) if x.dim() else None
        if x.dim() == 0:
            y = x - x + 1  # exp(x) / exp(x); NaN and inf stay NaN, as torch
        elif blocked is None:
            e = _exp.exp_(x - x.amax(d, keepdim=True))
            y = _normalize(e, e.sum(d, keepdim=True))
        else:
            # Large CPU input, rows along the last dimension: the same formula a few rows at a time,
            # its five passes over a block in the cache (one trip to memory for x, one for y).
            parts, (x2,) = blocked
            y = torch.empty_like(x2)
            for part in parts:
                x_block, y_block = x2[part], y[part]
                _exp.exp_(torch.sub(x_block, x_block.amax(-1, keepdim=True), out=y_block))
                _normalize(y_block, y_block.sum(-1, keepdim=True))
            y = y.view(x.shape)
        self._save_for_backward(y=y, dim=d)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        y, d = saved["y"], saved["dim"]
        grad_output = self._check_grad_output(grad_output, y)
        if y.dim() == 0:
            return grad_output * 0
        # g y - y sum(g y): the product g y is the first term and the sum's operand, so three
        # operations (product, sum, one fused multiply-subtract) where y (g - sum) takes four.
        blocked = _row_blocks(d, grad_output, y)
        if blocked is None:
            gy = grad_output * y
            return gy.addcmul_(y, gy.sum(d, keepdim=True), value=-1)
        # Large CPU input, rows along the last dimension: the same formula a few rows at a time,
        # every pass over a block in the cache (4096 x 1024, one thread: 22 -> 6.2 ms).
        parts, (g, y2) = blocked
        grad = torch.empty_like(g)
        for part in parts:
            y_block = y2[part]
            gy = torch.mul(g[part], y_block, out=grad[part])
            gy.addcmul_(y_block, gy.sum(-1, keepdim=True), value=-1)
        return grad.view(grad_output.shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    r"""y_i = x_i - log(sum_j exp(x_j)) along ``dim``.

    dL/dx = g - p * sum(g),   g = dL/dy, p = exp(y) the softmax, the sum along ``dim``.
    Computed as (x - max) - log(sum(exp(x - max))): no overflow for large logits, and no
    log(0) for very negative ones. Forward keeps p = exp(x - max) / sum(exp(x - max)), made from
    the exponentials its sum needs anyway (one product), so backward is a sum and one fused
    multiply-subtract, with no exponential.

    Args:
        dim: the dimension normalised over (``None``: torch's deprecated implicit choice).

    Shape: input (*), output the same shape.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = _optional_dim(self, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        d = _dim(self, self.dim, x)
        blocked = _row_blocks(d, x) if x.dim() else None
        p = None
        if x.dim() == 0:
            y = x - x
        elif blocked is None:
            y = x - x.amax(d, keepdim=True)
            p = _exp.exp(y)
            total = p.sum(d, keepdim=True)
            y.sub_(total.log())
            p = _normalize(p, total)
        else:
            # Large CPU input, rows along the last dimension: a few rows at a time, in the cache;
            # p in a buffer reused from call to call (a fresh one costs its page faults).
            parts, (x2,) = blocked
            y = torch.empty_like(x2)
            p = self._workspace("probabilities", tuple(x2.shape), x2)
            for part in parts:
                x_block, y_block, p_block = x2[part], y[part], p[part]
                torch.sub(x_block, x_block.amax(-1, keepdim=True), out=y_block)
                total = _exp.exp(y_block, out=p_block).sum(-1, keepdim=True)
                y_block.sub_(total.log())
                _normalize(p_block, total)
            y = y.view(x.shape)
            p = p.view(x.shape)
        self._save_for_backward(y=y, probabilities=p, dim=d)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        y, p, d = saved["y"], saved["probabilities"], saved["dim"]
        grad_output = self._check_grad_output(grad_output, y)
        if y.dim() == 0:
            return grad_output * 0
        blocked = _row_blocks(d, grad_output, p)
        if blocked is None:  # g - p sum(g): the product and the difference in one pass
            return torch.addcmul(grad_output, p, grad_output.sum(d, keepdim=True), value=-1)
        # Large CPU input, rows along the last dimension: a few rows at a time, in the cache.
        parts, (g, p2) = blocked
        grad = torch.empty_like(g)
        for part in parts:
            g_block = g[part]
            torch.addcmul(g_block, p2[part], g_block.sum(-1, keepdim=True), value=-1, out=grad[part])
        return grad.view(grad_output.shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
