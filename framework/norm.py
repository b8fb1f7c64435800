"""Batch normalisation over the channel dimension (dimension 1)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from . import _blocks
from . import _checks as check
from .module import Module


class _BatchNorm(Module):
    r"""Normalise each channel c over the batch and the spatial positions (n values per channel).

    Training mode (and evaluation without tracked statistics), with the batch statistics
    mu = mean(x), var = mean((x - mu)^2) (biased):
        x_hat = (x - mu) / sqrt(var + eps);   y = weight * x_hat + bias
        dL/dx = weight / (n sqrt(var + eps)) * (n g - sum(g) - x_hat sum(g x_hat)),   g = dL/dy
        dL/dweight += sum(g x_hat);   dL/dbias += sum(g)      (sums over everything but the channel)
    Running statistics (when tracked, training mode only), with the unbiased batch variance:
        running = (1 - a) running + a batch,   a = momentum, or 1 / num_batches_tracked if momentum is None.
    Evaluation mode with tracked statistics: mu, var are the running ones (constants), so
        y = weight (x - mu) / sqrt(var + eps) + bias;   dL/dx = g weight / sqrt(var + eps).
    An empty batch (N = 0) gives an empty output and leaves the statistics as they were, as torch.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability.
        momentum: weight of the newest batch in the running statistics; ``None`` averages all batches.
        affine: learn ``weight`` (ones) and ``bias`` (zeros).
        track_running_stats: keep ``running_mean``, ``running_var`` and ``num_batches_tracked``.
        bias: with ``affine``, learn ``bias`` too (torch's keyword).

    Attributes: ``weight``, ``bias`` (C,); buffers ``running_mean`` (C,) zeros, ``running_var`` (C,) ones,
    ``num_batches_tracked`` (0-d int64).
    """

    abstract = True
    allowed_ndim: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_features = check.positive_int(self, num_features, "num_features")
        self.eps = check.number(self, eps, "eps", 0.0, low_open=True)
        self.momentum = None if momentum is None else check.number(self, momentum, "momentum", 0.0, 1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = dtype or torch.get_default_dtype()
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise check.ModuleTypeError(f"{type(self).__name__}: expected a floating-point dtype, got {dtype!r}")
        shape = (num_features,)
        self.register_parameter("weight", torch.ones(shape, device=device, dtype=dtype) if self.affine else None)
        use_bias = self.affine and bias
        self.register_parameter("bias", torch.zeros(shape, device=device, dtype=dtype) if use_bias else None)
        tracked = self.track_running_stats
        self.register_buffer("running_mean", torch.zeros(shape, device=device, dtype=dtype) if tracked else None)
        self.register_buffer("running_var", torch.ones(shape, device=device, dtype=dtype) if tracked else None)
        counter = torch.tensor(0, dtype=torch.long, device=device) if tracked else None
        self.register_buffer("num_batches_tracked", counter)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def _check(self, x: Tensor) -> Tensor:
        x = self._check_input(x, self.allowed_ndim)
        if self.running_mean is not None:
            check.like(self, x, self.running_mean, "input", "running statistics")
        check.size(self, x, 1, self.num_features, "num_features (channels)")
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self._check(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        n = x.numel() // self.num_features
        batch_stats = self.training or self.running_mean is None
        if n == 0:
            # An empty batch, as torch: an empty output, the running statistics untouched (the
            # batch count still advances), nothing to add to any gradient.
            if self.training and self.track_running_stats:
                self.num_batches_tracked.add_(1)
            y = x.clone()
            self._save_for_backward(x=x, like=y, empty=True)
            return y
        if batch_stats:
            if n <= 1:
                raise check.fail(
                    self,
                    f"expected more than 1 value per channel in training mode (batch statistics), "
                    f"got input shape {tuple(x.shape)}",
                )
            if _blocks.one_pass_moments(x):
                var, mean = torch.var_mean(x, dims, correction=0)
                centred = x - mean.reshape(shape)
            else:
                # Two passes (mean, then the centred second moment): as accurate as a fused
                # var_mean, and several times faster than its CPU reduction over the batch dim.
                mean = x.mean(dims)
                centred = torch.sub(x, mean.reshape(shape), out=self._scratch("centred", x))
                var = torch.mul(centred, centred, out=self._scratch("product", x)).mean(dims)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, n)
        else:
            mean, var = self.running_mean, self.running_var
            centred = torch.sub(x, mean.reshape(shape), out=self._scratch("centred", x))
        inv_std = torch.rsqrt(var + self.eps)
        # y = (x - mean) a + b with a = weight / std: centred first, not x a + (b - mean a), which
        # cancels where the mean is large against the spread (a constant channel: every digit).
        # The backward reuses the centred input.
        scale = inv_std if self.weight is None else self.weight * inv_std
        if self.bias is None:
            y = centred * scale.reshape(shape)
        else:
            y = torch.addcmul(self.bias.reshape(shape), centred, scale.reshape(shape))
        self._save_for_backward(centred=centred, inv_std=inv_std, batch_stats=batch_stats, like=y)
        return y

    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        self.num_batches_tracked.add_(1)
        factor: Tensor | float
        if self.momentum is None:
            # 1 / count as a 0-d float64 tensor on the statistics' device: the same number as
            # torch's Python float, without reading the count back to the host.
            factor = self.num_batches_tracked.to(torch.float64).reciprocal()
        else:
            factor = self.momentum
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * var * (n / (n - 1)))

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        if saved.get("empty"):
            return grad_output.clone()
        centred, inv_std = saved["centred"], saved["inv_std"]
        dims = [0, *range(2, centred.dim())]
        shape = [1, self.num_features] + [1] * (centred.dim() - 2)
        sum_g = grad_output.sum(dims)
        # On a large CPU input the temporary goes into a reused buffer: a fresh one would cost its
        # page faults on every call, several times the arithmetic.
        sum_g_xhat = torch.mul(grad_output, centred, out=self._scratch("product", centred)).sum(dims) * inv_std
        if self.weight is not None:
            self.grad("weight").add_(sum_g_xhat)
        if self.bias is not None:
            self.grad("bias").add_(sum_g)
        scale = inv_std if self.weight is None else self.weight * inv_std
        if not saved["batch_stats"]:
            return grad_output * scale.reshape(shape)
        n = centred.numel() // self.num_features
        # dL/dx = scale (g - mean(g) - x_hat mean(g x_hat)) = scale g - c (x - mean) - scale mean(g),
        # c = scale inv_std mean(g x_hat): two multiply-adds per element.
        c = (scale * inv_std * sum_g_xhat / n).reshape(shape)
        offset = (-scale * sum_g / n).reshape(shape)
        return torch.addcmul(offset, centred, -c).addcmul_(grad_output, scale.reshape(shape))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "") + "\n    Shape: input (N, C) or (N, C, L), output the same shape.\n"
    allowed_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "") + "\n    Shape: input (N, C, H, W), output the same shape.\n"
    allowed_ndim = (4,)
