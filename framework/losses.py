"""Losses: ``forward(prediction, target)`` gives a 0-d tensor, ``backward()`` dL/d(prediction)."""

from __future__ import annotations

from torch import Tensor

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
