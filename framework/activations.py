"""Elementwise activations: each states y = f(x) and dL/dx = dL/dy * f'(x) side by side."""

from __future__ import annotations

import torch
from torch import Tensor

from .module import Module


class Elementwise(Module):
    """Base of elementwise activations: subclasses give ``_forward`` and ``_derivative``."""

    abstract = True

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        """f'(x), given x and y = f(x)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        y = self._forward(x)
        self._save_for_backward(x=x, y=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["y"])
        return grad_output * self._derivative(saved["x"], saved["y"])


class ReLU(Elementwise):
    """y = max(x, 0);   f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0, as torch)."""

    def _forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=0)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return (x > 0).to(x.dtype)


class Tanh(Elementwise):
    """y = tanh(x);   f'(x) = 1 - y^2."""

    def _forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return 1 - y * y


class Sigmoid(Elementwise):
    """y = 1 / (1 + exp(-x));   f'(x) = y (1 - y).

    torch.sigmoid evaluates exp(-|x|) internally, so no overflow for large |x|.
    """

    def _forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return y * (1 - y)
