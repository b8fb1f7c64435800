"""Losses: ``forward(prediction, target)`` gives a 0-d tensor, ``backward()`` dL/d(prediction)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import _blocks
from . import _checks as check
from .module import Loss


class MSELoss(Loss):
    """L = reduce((p - t)^2);   dL/dp = 2 (p - t) * s,  s = 1/N for 'mean', 1 for 'sum'."""

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        diff = prediction - target
        self._save_for_backward(diff=diff)
        return self._reduce(diff * diff)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        scale = self._reduction_scale(diff.numel())
        return self._upstream(grad_output, diff) * (2 * scale) * diff


class L1Loss(Loss):
    """L = reduce(|p - t|);   dL/dp = sign(p - t) * s,  s = 1/N for 'mean', 1 for 'sum'.

    At p == t the gradient is 0 (torch's sign(0) = 0).

    Args:
        reduction: ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape:
        - Prediction: (*), any shape.  - Target: the prediction's shape.  - Output: a 0-d tensor.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        diff = prediction - target
        self._save_for_backward(diff=diff)
        return self._reduce(diff.abs())

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        scale = self._reduction_scale(diff.numel())
        return self._upstream(grad_output, diff) * scale * torch.sign(diff)


class HuberLoss(Loss):
    """Quadratic near zero, linear beyond ``delta``; d = p - t:

    l = d^2 / 2 if |d| < delta else delta (|d| - delta / 2);   L = reduce(l);
    dL/dp = s * clamp(d, -delta, delta),  s = 1/N for 'mean', 1 for 'sum'.

    The gradient is continuous at |d| == delta (both branches give +-delta), as in torch.

    Args:
        reduction: ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        delta: where the quadratic turns linear, > 0. Default: 1.0.

    Shape:
        - Prediction: (*), any shape.  - Target: the prediction's shape.  - Output: a 0-d tensor.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = check.number(self, delta, "delta", low=0.0, high=math.inf, low_open=True, high_open=True)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        diff = prediction - target
        self._save_for_backward(diff=diff)
        # (In blocks that stay in the cache on a large CPU tensor: one trip to memory, not five.)
        total = _blocks.sum_of(lambda d: _huber_terms(d, self.delta), diff)
        return total * self._reduction_scale(diff.numel())

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        scale = self._reduction_scale(diff.numel())
        return diff.clamp(-self.delta, self.delta).mul_(self._upstream(grad_output, diff) * scale)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"


def _huber_terms(diff: Tensor, delta: float) -> Tensor:
    # c = min(|d|, delta): c (|d| - c/2) is d^2/2 below delta and delta (|d| - delta/2) above,
    # both evaluated as torch evaluates them, without a branch.
    size = diff.abs()
    c = size.clamp(max=delta)
    return size.add_(c, alpha=-0.5).mul_(c)


class SmoothL1Loss(Loss):
    """Huber's loss divided by ``beta``; d = p - t:

    l = d^2 / (2 beta) if |d| < beta else |d| - beta / 2;   L = reduce(l);
    dL/dp = s * clamp(d / beta, -1, 1),  s = 1/N for 'mean', 1 for 'sum'.

    ``beta = 0`` is L1: l = |d|, dL/dp = s * sign(d) (0 at d == 0), as torch.

    Args:
        reduction: ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        beta: where the quadratic turns linear, >= 0. Default: 1.0.

    Shape:
        - Prediction: (*), any shape.  - Target: the prediction's shape.  - Output: a 0-d tensor.
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = check.number(self, beta, "beta", low=0.0, high=math.inf, high_open=True)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        diff = prediction - target
        self._save_for_backward(diff=diff)
        if self.beta == 0:
            return self._reduce(diff.abs())
        # Huber's terms divided by beta: d^2/(2 beta) below beta, |d| - beta/2 above.
        total = _blocks.sum_of(lambda d: _huber_terms(d, self.beta).div_(self.beta), diff)
        return total * self._reduction_scale(diff.numel())

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        scale = self._reduction_scale(diff.numel())
        slope = torch.sign(diff) if self.beta == 0 else torch.div(diff, self.beta).clamp_(-1, 1)
        return slope.mul_(self._upstream(grad_output, diff) * scale)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}"


# torch clamps each log at -100 in the loss and each denominator at 1e-12 in the gradient,
# so p in {0, 1} gives a finite loss and gradient rather than inf or nan. Its kernel holds
# that 1e-12 as a float32, which float64 sees as 9.99999996e-13: use the same number.
_LOG_FLOOR = -100.0
_BCE_EPSILON = torch.tensor(1e-12, dtype=torch.float32).item()


class BCELoss(Loss):
    """Binary cross-entropy of probabilities p in [0, 1] against targets t in [0, 1]:

    l = -(t log p + (1 - t) log(1 - p)), each log clamped at -100;   L = reduce(l);
    dL/dp = s * (p - t) / max(p (1 - p), 1e-12),  s = 1/N for 'mean', 1 for 'sum'
    (the 1e-12 rounded to float32, as torch).

    A prediction or target outside [0, 1] (or NaN) is a ``ValueError`` naming it on CPU tensors;
    on a GPU a device-side assertion, which never stalls the stream (see ``framework._checks``).

    Args:
        reduction: ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape:
        - Prediction: (*), probabilities.  - Target: the prediction's shape.  - Output: a 0-d tensor.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        _check_unit_interval(self, prediction, "prediction")
        _check_unit_interval(self, target, "target")
        self._save_for_backward(prediction=prediction, target=target)
        log_p = torch.log(prediction).clamp(min=_LOG_FLOOR)
        log_q = torch.log1p(-prediction).clamp(min=_LOG_FLOOR)
        return self._reduce(-(target * log_p + (1 - target) * log_q))

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        saved = self._saved_tensors()
        p, t = saved["prediction"], saved["target"]
        scale = self._reduction_scale(p.numel())
        return self._upstream(grad_output, p) * scale * (p - t) / ((1 - p) * p).clamp(min=_BCE_EPSILON)


def _check_unit_interval(owner: Loss, value: Tensor, name: str) -> None:
    # Values are read on the CPU only; on a GPU this is a non-blocking device-side assertion.
    check.within(owner, value, 0.0, 1.0, f"{name} value", name)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of logits x, i.e. of p = sigmoid(x), computed without overflow:

    l = (1 - t) x + max(-x, 0) + log(1 + exp(-|x|));   L = reduce(l);
    (torch's arrangement: no cancellation between x and x t when t is near 1 and x large.)
    dL/dx = s * (sigmoid(x) - t),  s = 1/N for 'mean', 1 for 'sum'.

    Args:
        reduction: ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape:
        - Prediction: (*), logits.  - Target: the prediction's shape.  - Output: a 0-d tensor.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        self._save_for_backward(prediction=prediction, target=target)
        x = prediction
        # torch's arrangement (1 - t) x + softplus(-x), the softplus as logaddexp(-x, 0)
        # (= max(-x, 0) + log1p(exp(-|x|))) in one operation.
        return self._reduce(torch.addcmul(torch.logaddexp(-x, x.new_zeros(())), torch.rsub(target, 1), x))

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        saved = self._saved_tensors()
        x, t = saved["prediction"], saved["target"]
        scale = self._reduction_scale(x.numel())
        return self._upstream(grad_output, x) * scale * (torch.sigmoid(x) - t)


class CrossEntropyLoss(Loss):
    """Cross-entropy of logits x of shape (N, C, d1, ...) against class indices c of shape (N, d1, ...):

    l = log(sum_j exp(x_j)) - x_c  over the class dimension (1);   L = reduce(l);
    dL/dx = s * (softmax(x) - onehot(c)),  s = 1 / (number of target elements) for 'mean', 1 for 'sum'.

    The log-sum-exp subtracts the per-position maximum first, so logits of +-1000 stay finite.
    torch's ``weight``, ``ignore_index`` and ``label_smoothing`` are not supported: every index
    must be a class in [0, C). An index outside is a ``ValueError`` naming it on CPU tensors; on a
    GPU a device-side assertion, which never stalls the stream (see ``framework._checks``).

    Args:
        reduction: ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape:
        - Prediction: (N, C) or (N, C, d1, ...), logits.
        - Target: (N) or (N, d1, ...), integer class indices in [0, C).
        - Output: a 0-d tensor.
    """

    target_is_index = True

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_logits_and_indices(prediction, target)
        shifted = prediction - prediction.amax(dim=1, keepdim=True)
        log_probs = shifted - torch.logsumexp(shifted, dim=1, keepdim=True)
        index = target.unsqueeze(1)
        self._save_for_backward(log_probs=log_probs, index=index)
        return self._reduce(-log_probs.gather(1, index).squeeze(1))

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        saved = self._saved_tensors()
        log_probs, index = saved["log_probs"], saved["index"]
        scale = self._reduction_scale(index.numel())
        grad = torch.exp(log_probs).scatter_add_(1, index, torch.full_like(index, -1, dtype=log_probs.dtype))
        return self._upstream(grad_output, log_probs) * scale * grad

    def _check_logits_and_indices(self, prediction: Any, target: Any) -> tuple[Tensor, Tensor]:
        prediction = check.floating(self, prediction, "prediction")
        if prediction.dim() < 2:
            raise check.fail(
                self,
                f"expected prediction of shape (N, C) or (N, C, d1, ...), got a {prediction.dim()}-D tensor "
                f"of shape {tuple(prediction.shape)}",
            )
        target = check.tensor(self, target, "target")
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise check.ModuleTypeError(
                f"{type(self).__name__}: expected target to be integer class indices (torch.int64), got {target.dtype}"
            )
        expected = (prediction.shape[0], *prediction.shape[2:])
        check.same_shape(self, target, expected, "target (the prediction's shape without the class dimension)")
        if target.device != prediction.device:
            raise check.ModuleTypeError(
                f"{type(self).__name__}: expected target on device {prediction.device} (the prediction's), "
                f"got {target.device}"
            )
        # Values are read on the CPU only; on a GPU this is a non-blocking device-side assertion.
        check.within(self, target, 0, prediction.shape[1], "target class index", "target", high_open=True)
        return prediction, target.long()
