"""Fully connected layer."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _checks as check
from . import init as initializers
from .module import Module


class Linear(Module):
    r"""Affine map of the last dimension.

    y = x W^T + b
    dL/dx = dL/dy W;   dL/dW += (dL/dy)^T x;   dL/db += sum over leading dims of dL/dy

    Args:
        in_features, out_features: sizes of the last dimension of input and output.
        bias: learn an additive bias.
        init: initialisation scheme (see :func:`framework.init.initialise`); torch's by default.
        nonlinearity: the activation that follows, for the schemes' gain.
        generator: a seeded ``torch.Generator`` for reproducible weights.

    Shape: input (*, in_features), output (*, out_features).
    Attributes: ``weight`` (out_features, in_features), ``bias`` (out_features,).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str = "default",
        nonlinearity: str = "relu",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check.positive_int(self, in_features, "in_features")
        self.out_features = check.positive_int(self, out_features, "out_features")
        dtype = dtype or torch.get_default_dtype()
        weight = torch.empty(out_features, in_features, device=device, dtype=dtype)
        b = torch.empty(out_features, device=device, dtype=dtype) if bias else None
        initializers.initialise(weight, b, init, nonlinearity, generator)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", b)

    def forward(self, input: Tensor) -> Tensor:  # torch's name: torch's samples pass it by keyword
        x = self._check_input(input)
        if x.dim() == 0:
            raise check.fail(self, "expected input with at least 1 dimension, got a 0-d tensor")
        check.size(self, x, -1, self.in_features, "in_features")
        y = x @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        self._save_for_backward(x=x, y_shape=y.shape, like=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        x = saved["x"]
        grad_output = self._check_grad_output(grad_output, saved["like"])
        g2 = grad_output.reshape(-1, self.out_features)
        self.grad("weight").add_(g2.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self.grad("bias").add_(g2.sum(0))
        return grad_output @ self.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
