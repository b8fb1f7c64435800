"""Fully connected layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _checks as check
from . import _threads
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
        shape = x.shape
        x2 = x if len(shape) == 2 and shape[1] == self.in_features else self._as_matrix(x)
        # One fused product-and-add (the bias broadcast into the product's output), as torch's own.
        weight_t = self._weight_t()
        threads = _threads.serial(x2.shape[0] * self.in_features * self.out_features, x2)
        try:
            y = torch.mm(x2, weight_t) if self.bias is None else torch.addmm(self.bias, x2, weight_t)
        finally:
            _threads.restore(threads)
        if x2 is not x:
            y = y.reshape(*shape[:-1], self.out_features)
        self._save_for_backward(x=x, like=y)
        return y

    def _as_matrix(self, x: Tensor) -> Tensor:
        if x.dim() == 0:
            raise check.fail(self, "expected input with at least 1 dimension, got a 0-d tensor")
        check.size(self, x, -1, self.in_features, "in_features")
        return x.reshape(-1, self.in_features)

    def backward(self, grad_output: Tensor) -> Tensor:
        threads = self._serial(grad_output)
        try:
            x, g2 = self._accumulate(grad_output)
            grad = torch.mm(g2, self.weight)
        finally:
            _threads.restore(threads)
        return grad if x.dim() == 2 else grad.reshape(x.shape)

    def backward_to_params(self, grad_output: Tensor) -> None:
        threads = self._serial(grad_output)
        try:
            self._accumulate(grad_output)
        finally:
            _threads.restore(threads)

    def _serial(self, grad_output: Any) -> int:
        """One thread for the backward's products when they are small (see framework._threads)."""
        if not isinstance(grad_output, Tensor):
            return 0  # _accumulate's checks name what is wrong
        rows = grad_output.numel() // self.out_features if self.out_features else 0
        return _threads.serial(rows * self.in_features * self.out_features, grad_output)

    def _accumulate(self, grad_output: Tensor) -> tuple[Tensor, Tensor]:
        """Adds dL/dW and dL/db to the gradients; returns x and dL/dy as a matrix."""
        saved = self._saved_tensors()
        x = saved["x"]
        grad_output = self._check_grad_output(grad_output, saved["like"])
        matrix = x.dim() == 2
        g2 = grad_output if matrix else grad_output.reshape(-1, self.out_features)
        x2 = x if matrix else x.reshape(-1, self.in_features)
        g2t = g2.t()
        gradients = self._gradients
        gradients["weight"].addmm_(g2t, x2)
        if self.bias is not None:
            # The sum over the batch as a product with ones: one kernel that accumulates in place.
            gradients["bias"].addmv_(g2t, self._ones(g2.shape[0], g2))
        return x, g2

    def _weight_t(self) -> Tensor:
        # W^T as a view, made once per weight tensor (a view costs as much as a small product;
        # in-place updates of the weight show through it). Anything but a view of the current
        # weight (a new weight tensor, a copy made by deepcopy or a dtype cast) makes a new one.
        weight = self.weight
        view = self.__dict__.get("_weight_t_cache")
        if view is None or view._base is not weight:
            view = weight.t()
            object.__setattr__(self, "_weight_t_cache", view)
        return view

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Linear:
        super().to(device=device, dtype=dtype)
        self.__dict__.pop("_weight_t_cache", None)  # a view of the weight's storage before the move
        return self

    def _ones(self, n: int, like: Tensor) -> Tensor:
        ones = self.__dict__.get("_ones_cache")
        if ones is None or ones.shape[0] != n or ones.dtype != like.dtype or ones.device != like.device:
            ones = like.new_ones(n)
            object.__setattr__(self, "_ones_cache", ones)
        return ones

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
