"""Optimizers taking ``model.param()``; update rules identical to ``torch.optim``'s."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from . import _checks as check


class Optimizer:
    """Base: holds ``(parameter, gradient)`` pairs and one state dict per parameter."""

    def __init__(self, params: Iterable[tuple[Tensor, Tensor]], lr: float) -> None:
        pairs = list(params)
        if not pairs:
            raise check.fail(self, "expected a non-empty list of (parameter, gradient) pairs, got none")
        for index, pair in enumerate(pairs):
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)):
                raise check.ModuleTypeError(
                    f"{type(self).__name__}: expected (parameter, gradient) tensor pairs as from "
                    f"model.param(), got {type(pair).__name__} at position {index}"
                )
            check.same_shape(self, pair[1], pair[0].shape, f"gradient {index} (its parameter's shape)")
        self.params = pairs
        self.lr = check.number(self, lr, "lr", low=0.0)
        self.state: list[dict[str, Any]] = [{} for _ in pairs]

    def zero_grad(self) -> None:
        for _, grad in self.params:
            grad.zero_()

    def step(self) -> None:
        with torch.no_grad():
            for (param, grad), state in zip(self.params, self.state):
                self._update(param, grad, state)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, weight decay and Nesterov.

    g = grad + wd * p;   b = g (first step) or mu * b + (1 - dampening) * g;
    d = g + mu * b (Nesterov) or b (momentum) or g (plain);   p -= lr * d
    """

    def __init__(
        self,
        params: Iterable[tuple[Tensor, Tensor]],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = check.number(self, momentum, "momentum", low=0.0)
        self.dampening = check.number(self, dampening, "dampening")
        self.weight_decay = check.number(self, weight_decay, "weight_decay", low=0.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise check.fail(
                self,
                f"Nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={self.momentum:g}, dampening={self.dampening:g}",
            )

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        d = grad if self.weight_decay == 0 else grad + self.weight_decay * param
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.clone()
            else:
                buf.mul_(self.momentum).add_(d, alpha=1 - self.dampening)
            d = d + self.momentum * buf if self.nesterov else buf
        param.add_(d, alpha=-self.lr)
