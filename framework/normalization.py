"""Normalisation over each sample's own features: LayerNorm, GroupNorm, RMSNorm.

Unlike BatchNorm (``norm.py``), the statistics are taken per sample, so training and evaluation
compute the same function and there are no running statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from . import _blocks
from . import _checks as check
from .module import Module


def _normalized_shape(owner: Module, value: int | Sequence[int]) -> tuple[int, ...]:
    """An int or a sequence of ints (list, tuple, torch.Size), as torch accepts."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list, torch.Size)) or not value:
        raise check.ModuleTypeError(
            f"{type(owner).__name__}: expected normalized_shape to be an int or a non-empty sequence of ints, "
            f"got {value!r}"
        )
    return tuple(check.positive_int(owner, side, "normalized_shape") for side in value)


def _floating_dtype(owner: Module, dtype: torch.dtype | None) -> torch.dtype:
    dtype = dtype or torch.get_default_dtype()
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise check.ModuleTypeError(f"{type(owner).__name__}: expected a floating-point dtype, got {dtype!r}")
    return dtype


def _check_trailing(owner: Module, x: Tensor, shape: tuple[int, ...]) -> None:
    if x.dim() < len(shape) or tuple(x.shape[-len(shape) :]) != shape:
        expected = ", ".join(["*", *map(str, shape)])
        raise check.fail(
            owner, f"expected input of shape ({expected}) (normalized_shape={list(shape)}), got {tuple(x.shape)}"
        )


def _standardize_rows(
    rows: Tensor, eps: float, centre: bool = True, out: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """(x_hat, 1 / sqrt(var + eps)) of each row of a (rows, n) tensor; without ``centre``, the
    root mean square instead of the standard deviation (RMSNorm). With ``out``, the results go
    into the given (rows, n) and (rows, 1) tensors (the first only when centring).

    Centred before squaring (mean(x^2) - mean^2 would cancel for a large mean); the sum of
    squares as a vector norm, one pass without a squared temporary.
    """
    if centre and out is None and _blocks.one_pass_moments(rows):  # one pass for both moments
        var, mean = torch.var_mean(rows, -1, keepdim=True, correction=0)
        inv = var.add_(eps).rsqrt_()
        return torch.sub(rows, mean).mul_(inv), inv
    centred = rows
    if centre:
        centred = torch.sub(rows, rows.mean(-1, keepdim=True), out=None if out is None else out[0])
    inv = torch.linalg.vector_norm(centred, 2, -1, keepdim=True, out=None if out is None else out[1])
    inv.square_().div_(rows.shape[-1]).add_(eps).rsqrt_()
    return (centred.mul_(inv) if centre else centred * inv), inv


def _row_means(g: Tensor, gx: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """mean(g_hat) and mean(g_hat x_hat) of each row, g_hat = weight * g and gx = g x_hat: with a
    weight, products with it (no g_hat * x_hat temporary)."""
    n = g.shape[-1]
    if weight is None:
        return g.mean(-1, keepdim=True), gx.mean(-1, keepdim=True)
    w = weight.reshape(n)
    return (g @ w).div_(n).unsqueeze(-1), (gx @ w).div_(n).unsqueeze(-1)


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None, n: int) -> Tensor:
    """weight * x_hat + bias on (rows, n), one pass when both are there."""
    if weight is not None and bias is not None:
        return torch.addcmul(bias.reshape(n), x_hat, weight.reshape(n))
    y = x_hat if weight is None else x_hat * weight.reshape(n)
    return y if bias is None else y + bias.reshape(n)


class LayerNorm(Module):
    r"""Normalise each sample over its last ``len(normalized_shape)`` dimensions (n values).

    mu = mean(x), var = mean((x - mu)^2) (biased), both over the normalised dimensions:
        x_hat = (x - mu) / sqrt(var + eps);   y = weight * x_hat + bias
        dL/dx = (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)) / sqrt(var + eps),   g_hat = weight * dL/dy
        dL/dweight += sum(dL/dy x_hat);   dL/dbias += sum(dL/dy)   (sums over the leading dimensions)

    Args:
        normalized_shape: the trailing shape normalised over (an int for the last dimension).
        eps: added to the variance for numerical stability.
        elementwise_affine: learn ``weight`` (ones) and ``bias`` (zeros) of ``normalized_shape``.
        bias: with ``elementwise_affine``, learn ``bias`` too.

    Shape: input (*, *normalized_shape), output the same shape.
    Attributes: ``weight``, ``bias`` of shape ``normalized_shape``.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _normalized_shape(self, normalized_shape)
        self.eps = check.number(self, eps, "eps", 0.0)
        self.elementwise_affine = bool(elementwise_affine)
        dtype = _floating_dtype(self, dtype)
        shape = self.normalized_shape
        affine = self.elementwise_affine
        self.register_parameter("weight", torch.ones(shape, device=device, dtype=dtype) if affine else None)
        use_bias = affine and bias
        self.register_parameter("bias", torch.zeros(shape, device=device, dtype=dtype) if use_bias else None)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        _check_trailing(self, x, self.normalized_shape)
        n = math.prod(self.normalized_shape)
        # Each sample's normalised values as one row of a (rows, n) view.
        rows = x.reshape(-1, n)
        if not _blocks.blocked(rows) or (self.weight is None and self.bias is None):
            x_hat, inv_std = _standardize_rows(rows, self.eps)  # without an affine map, x_hat is y
        else:
            # Large CPU input: x_hat in a buffer reused from call to call (only the last forward's
            # is ever used; never returned), sparing a fresh allocation's page faults. Row blocks
            # would not help here: five whole-tensor passes measured faster than the same passes
            # on blocks of rows (9.3 against 14.9 ms at 4096 x 1024, one thread).
            out = (self._workspace("x_hat", tuple(rows.shape), rows), rows.new_empty((rows.shape[0], 1)))
            x_hat, inv_std = _standardize_rows(rows, self.eps, out=out)
        y = _affine(x_hat, self.weight, self.bias, n)
        y = y.reshape(x.shape)
        self._save_for_backward(x_hat=x_hat, inv_std=inv_std, like=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        x_hat, inv_std = saved["x_hat"], saved["inv_std"]
        g = grad_output.reshape(x_hat.shape)
        parts = _blocks.row_blocks(g) if g.is_contiguous() else None
        if parts is not None:
            return self._backward_blocked(g, x_hat, inv_std, parts).reshape(grad_output.shape)
        gx = g * x_hat
        if self.weight is not None:
            self.grad("weight").add_(gx.sum(0).reshape(self.normalized_shape))
        if self.bias is not None:
            self.grad("bias").add_(g.sum(0).reshape(self.normalized_shape))
        mean_g, mean_gx = _row_means(g, gx, self.weight)
        return self._input_gradient(g, x_hat, inv_std, mean_g, mean_gx).reshape(grad_output.shape)

    def _input_gradient(self, g: Tensor, x_hat: Tensor, inv_std: Tensor, mean_g: Tensor, mean_gx: Tensor) -> Tensor:
        """dL/dx = (g_hat - mean_g - x_hat mean_gx) inv_std, g_hat = weight * g, from the row means
        of g_hat and g_hat x_hat; g_hat - mean_g in one pass."""
        if self.weight is None:
            grad = torch.sub(g, mean_g)
        else:
            grad = torch.addcmul(mean_g.neg(), g, self.weight.reshape(-1))
        return grad.addcmul_(x_hat, mean_gx, value=-1).mul_(inv_std)

    def _backward_blocked(self, g: Tensor, x_hat: Tensor, inv_std: Tensor, parts: list[slice]) -> Tensor:
        """:meth:`backward`'s formulas a few rows at a time (large CPU tensors): each block's passes
        run in the cache; the parameter gradients are the sums of the blocks' column sums."""
        n = g.shape[1]
        grad = torch.empty_like(g)
        gx_block = self._workspace("gx", (parts[0].stop - parts[0].start, n), g)
        sum_gx = g.new_zeros(n) if self.weight is not None else None
        sum_g = g.new_zeros(n) if self.bias is not None else None
        w = None if self.weight is None else self.weight.reshape(n)
        for part in parts:
            g_block, hat = g[part], x_hat[part]
            gx = torch.mul(g_block, hat, out=gx_block[: g_block.shape[0]])
            if sum_gx is not None:
                sum_gx.add_(gx.sum(0))
            if sum_g is not None:
                sum_g.add_(g_block.sum(0))
            mean_g, mean_gx = _row_means(g_block, gx, self.weight)
            out = grad[part]
            if w is None:
                out.copy_(g_block)
            else:
                torch.mul(g_block, w, out=out)
            out.sub_(mean_g).addcmul_(hat, mean_gx, value=-1).mul_(inv_std[part])
        if sum_gx is not None:
            self.grad("weight").add_(sum_gx.reshape(self.normalized_shape))
        if sum_g is not None:
            self.grad("bias").add_(sum_g.reshape(self.normalized_shape))
        return grad

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps:g}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    r"""Split the C channels into ``num_groups`` groups; normalise each sample's group (its channels
    and all their positions) by its own mean and biased variance, then scale and shift per channel.

        x_hat = (x - mu_group) / sqrt(var_group + eps);   y = weight_c * x_hat + bias_c
        dL/dx = (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)) / sqrt(var_group + eps)
                (means over the group),   g_hat = weight_c * dL/dy
        dL/dweight_c += sum(dL/dy x_hat);   dL/dbias_c += sum(dL/dy)   (over the batch and positions)

    Args:
        num_groups: G, which must divide ``num_channels``.
        num_channels: C, the size of dimension 1.
        eps: added to the variance for numerical stability.
        affine: learn per-channel ``weight`` (ones) and ``bias`` (zeros).
        bias: with ``affine``, learn ``bias`` too (torch's keyword).

    Shape: input (N, C, *), output the same shape.
    Attributes: ``weight``, ``bias`` (C,).
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_groups = check.positive_int(self, num_groups, "num_groups")
        self.num_channels = check.positive_int(self, num_channels, "num_channels")
        if num_channels % num_groups:
            raise check.fail(
                self,
                f"expected num_channels divisible by num_groups, got num_channels={num_channels}, "
                f"num_groups={num_groups}",
            )
        self.eps = check.number(self, eps, "eps", 0.0)
        self.affine = bool(affine)
        dtype = _floating_dtype(self, dtype)
        shape = (num_channels,)
        self.register_parameter("weight", torch.ones(shape, device=device, dtype=dtype) if self.affine else None)
        use_bias = self.affine and bias
        self.register_parameter("bias", torch.zeros(shape, device=device, dtype=dtype) if use_bias else None)

    def _grouped(self, x: Tensor) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        return x.reshape(n, self.num_groups, (c // self.num_groups) * math.prod(x.shape[2:]))

    def _per_channel(self, value: Tensor, rank: int) -> Tensor:
        """(N, C) or (C,) values shaped to broadcast against an (N, C, *) tensor."""
        return value.reshape(list(value.shape) + [1] * (rank - 2))

    def _channels(self, per_group: Tensor) -> Tensor:
        """(N, G, 1) values repeated for each channel of their group: (N, C)."""
        size = self.num_channels // self.num_groups
        return per_group.expand(-1, -1, size).contiguous().view(per_group.shape[0], self.num_channels)

    def _group_means(self, per_channel: Tensor, positions: int) -> Tensor:
        """The mean over each group of (N, C) per-channel sums over ``positions`` positions, for
        every channel of the group: (N, C)."""
        n, size = per_channel.shape[0], self.num_channels // self.num_groups
        means = per_channel.reshape(n, self.num_groups, size).sum(-1, keepdim=True).div_(size * positions)
        return self._channels(means)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        if x.dim() < 2:
            raise check.fail(self, f"expected input of shape (N, C, *) (at least 2-D), got {tuple(x.shape)}")
        check.size(self, x, 1, self.num_channels, "num_channels")
        if x.shape[0] * (self.num_channels // self.num_groups) * math.prod(x.shape[2:]) == 1:
            # torch's rule (in training and evaluation): one sample of one channel per group is refused.
            raise check.fail(
                self,
                f"expected more than 1 value per group (N * C / num_groups * positions > 1), got input shape "
                f"{tuple(x.shape)} with num_groups={self.num_groups}",
            )
        grouped = self._grouped(x)
        # y = x_hat w_c + b_c = (x - mu) (inv_std w_c) + b_c: one pass from the centred input, which
        # backward keeps in place of x_hat (x_hat = centred * inv_std, per sample and group). On a
        # large CPU input the centred values go into a buffer reused from call to call (never
        # returned; only the last forward's is used), sparing a fresh allocation's page faults.
        if _blocks.one_pass_moments(grouped):  # both moments in one pass (see _blocks)
            var, mean = torch.var_mean(grouped, -1, keepdim=True, correction=0)
            centred, inv_std = grouped - mean, var.add_(self.eps).rsqrt_()
        else:
            centred = torch.sub(grouped, grouped.mean(-1, keepdim=True), out=self._scratch("centred", grouped))
            inv_std = torch.linalg.vector_norm(centred, 2, -1, keepdim=True).square_()
            inv_std = inv_std.div_(grouped.shape[-1]).add_(self.eps).rsqrt_()
        scale = self._channels(inv_std)
        if self.weight is not None:
            scale = scale * self.weight
        centred = centred.reshape(x.shape)
        scale = self._per_channel(scale, x.dim())
        if self.bias is not None:
            y = torch.addcmul(self._per_channel(self.bias, x.dim()), centred, scale)
        else:
            y = centred * scale
        self._save_for_backward(centred=centred, inv_std=inv_std, like=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        r"""With per-channel sums over the positions, S_g = sum(g) and S_gx = sum(g x_hat):
        dL/dweight_c += sum_n S_gx;  dL/dbias_c += sum_n S_g;  and the means over the group
        mean(g_hat) = group mean of weight_c S_g, mean(g_hat x_hat) = group mean of weight_c S_gx,
        dL/dx = inv_std (weight_c g - mean(g_hat) - x_hat mean(g_hat x_hat)), as two fused passes.
        """
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        centred, inv_std = saved["centred"], saved["inv_std"]
        n, rank = grad_output.shape[0], grad_output.dim()
        positions = math.prod(grad_output.shape[2:])
        inv = self._channels(inv_std)  # (N, C)
        sum_g = grad_output.reshape(n, self.num_channels, positions).sum(-1)
        # g * centred in the buffer that then receives dL/dx: one large allocation, not two.
        buffer = torch.mul(grad_output, centred, out=torch.empty_like(centred))
        sum_gx = buffer.reshape(n, self.num_channels, positions).sum(-1).mul_(inv)
        if self.weight is not None:
            self.grad("weight").add_(sum_gx.sum(0))
        if self.bias is not None:
            self.grad("bias").add_(sum_g.sum(0))
        scale = inv if self.weight is None else inv * self.weight
        if self.weight is not None:
            sum_g, sum_gx = sum_g * self.weight, sum_gx * self.weight
        mean_g, mean_gx = self._group_means(sum_g, positions), self._group_means(sum_gx, positions)
        # inv (w g - mean_g - (centred inv) mean_gx) = scale g + (-inv mean_g) + centred (-inv^2 mean_gx)
        shift = self._per_channel(mean_g.mul_(inv).neg_(), rank)
        slope = self._per_channel(mean_gx.mul_(inv).mul_(inv).neg_(), rank)
        grad_input = torch.addcmul(shift, grad_output, self._per_channel(scale, rank), out=buffer)
        return grad_input.addcmul_(centred, slope)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps:g}, affine={self.affine}"


class RMSNorm(Module):
    r"""Root-mean-square normalisation over the last ``len(normalized_shape)`` dimensions (n values).

        r = 1 / sqrt(mean(x^2) + eps);   x_hat = x r;   y = weight * x_hat
        dL/dx = r (g_hat - x_hat mean(g_hat x_hat)),   g_hat = weight * dL/dy
        dL/dweight += sum(dL/dy x_hat)   (over the leading dimensions)
    No mean is subtracted, so there is no mean term.

    Args:
        normalized_shape: the trailing shape normalised over (an int for the last dimension).
        eps: added to the mean square; ``None`` (the default) uses ``torch.finfo(input.dtype).eps``.
        elementwise_affine: learn ``weight`` (ones) of ``normalized_shape``.

    Shape: input (*, *normalized_shape), output the same shape.
    Attributes: ``weight`` of shape ``normalized_shape``.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _normalized_shape(self, normalized_shape)
        self.eps = None if eps is None else check.number(self, eps, "eps", 0.0)
        self.elementwise_affine = bool(elementwise_affine)
        dtype = _floating_dtype(self, dtype)
        weight = torch.ones(self.normalized_shape, device=device, dtype=dtype) if self.elementwise_affine else None
        self.register_parameter("weight", weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        _check_trailing(self, x, self.normalized_shape)
        n = math.prod(self.normalized_shape)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        x_hat, inv_rms = _standardize_rows(x.reshape(-1, n), eps, centre=False)
        y = _affine(x_hat, self.weight, None, n).reshape(x.shape)
        self._save_for_backward(x_hat=x_hat, inv_rms=inv_rms, like=y)
        return y

    def _input_gradient(self, g_hat: Tensor, x_hat: Tensor, inv_rms: Tensor, mean_gx: Tensor) -> Tensor:
        """dL/dx from g_hat and the row means of g_hat x_hat (all per row)."""
        return torch.addcmul(g_hat, x_hat, mean_gx, value=-1).mul_(inv_rms)

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        x_hat, inv_rms = saved["x_hat"], saved["inv_rms"]
        g = grad_output.reshape(x_hat.shape)
        gx = g * x_hat
        if self.weight is not None:
            self.grad("weight").add_(gx.sum(0).reshape(self.normalized_shape))
        _, mean_gx = _row_means(g, gx, self.weight)
        g_hat = g if self.weight is None else g * self.weight.reshape(-1)
        return self._input_gradient(g_hat, x_hat, inv_rms, mean_gx).reshape(grad_output.shape)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
