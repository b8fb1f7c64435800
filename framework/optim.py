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


def _betas(owner: Optimizer, betas: Any) -> tuple[float, float]:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise check.ModuleTypeError(f"{type(owner).__name__}: expected betas to be a pair of numbers, got {betas!r}")
    return (
        check.number(owner, betas[0], "betas[0]", low=0.0, high=1.0, high_open=True),
        check.number(owner, betas[1], "betas[1]", low=0.0, high=1.0, high_open=True),
    )


class Adam(Optimizer):
    """Adam, with optional AMSGrad, exactly as torch.optim.Adam (single-tensor path).

    At step k:  g = grad + wd * p;   m = lerp(m, g, 1 - beta1);   v = beta2 v + (1 - beta2) g^2;
    v_max = max(v_max, v) (AMSGrad, which then uses v_max for v);
    p -= lr / (1 - beta1^k) * m / (sqrt(v) / sqrt(1 - beta2^k) + eps).

    Args:
        params: ``(parameter, gradient)`` pairs, as from ``model.param()``.
        lr: the learning rate, >= 0. Default: 1e-3.
        betas: decay rates of the first and second moments, each in [0, 1). Default: (0.9, 0.999).
        eps: added to the denominator, >= 0. Default: 1e-8.
        weight_decay: L2 penalty added to the gradient, >= 0. Default: 0.
        amsgrad: normalise by the running maximum of the second moment. Default: ``False``.
    """

    def __init__(
        self,
        params: Iterable[tuple[Tensor, Tensor]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.betas = _betas(self, betas)
        self.eps = check.number(self, eps, "eps", low=0.0)
        self.weight_decay = check.number(self, weight_decay, "weight_decay", low=0.0)
        self.amsgrad = bool(amsgrad)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
            if self.amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        g = grad if self.weight_decay == 0 else grad.add(param, alpha=self.weight_decay)
        # The same operations in the same order as torch, so the updates agree to the last bit.
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if self.amsgrad:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        else:
            second = exp_avg_sq
        denom = (second.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)


class RMSprop(Optimizer):
    """RMSprop, with optional momentum and centring, exactly as torch.optim.RMSprop (single-tensor path).

    g = grad + wd * p;   v = alpha v + (1 - alpha) g^2;
    centered: m = lerp(m, g, 1 - alpha), a = sqrt(v - m^2) + eps;   otherwise a = sqrt(v) + eps;
    momentum > 0: b = momentum * b + g / a, p -= lr * b;   otherwise p -= lr * g / a.

    Args:
        params: ``(parameter, gradient)`` pairs, as from ``model.param()``.
        lr: the learning rate, >= 0. Default: 1e-2.
        alpha: smoothing constant of the squared-gradient average, in [0, 1]. Default: 0.99.
        eps: added to the denominator, >= 0. Default: 1e-8.
        weight_decay: L2 penalty added to the gradient, >= 0. Default: 0.
        momentum: momentum factor, >= 0. Default: 0.
        centered: normalise by an estimate of the gradient's variance. Default: ``False``.
    """

    def __init__(
        self,
        params: Iterable[tuple[Tensor, Tensor]],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        # torch only asks alpha >= 0; above 1 the squared average can turn negative and its root nan.
        self.alpha = check.number(self, alpha, "alpha", low=0.0, high=1.0)
        self.eps = check.number(self, eps, "eps", low=0.0)
        self.weight_decay = check.number(self, weight_decay, "weight_decay", low=0.0)
        self.momentum = check.number(self, momentum, "momentum", low=0.0)
        self.centered = bool(centered)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.zeros_like(param)
            if self.momentum > 0:
                state["momentum_buffer"] = torch.zeros_like(param)
            if self.centered:
                state["grad_avg"] = torch.zeros_like(param)
        state["step"] += 1
        g = grad if self.weight_decay == 0 else grad.add(param, alpha=self.weight_decay)
        square_avg = state["square_avg"]
        square_avg.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        if self.centered:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(g, 1 - self.alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg.add_(self.eps)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(self.momentum).addcdiv_(g, avg)
            param.add_(buf, alpha=-self.lr)
        else:
            param.addcdiv_(g, avg, value=-self.lr)
