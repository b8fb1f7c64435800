"""Optimizers taking ``model.param()``; update rules identical to ``torch.optim``'s."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from . import _checks as check


class Optimizer:
    """Base: holds ``(parameter, gradient)`` pairs and one state dict per parameter.

    Each update rule is written once over the whole list of parameters with torch's
    multi-tensor (``_foreach``) operations: one call per operation for all parameters, not
    one per parameter, which is most of a small network's optimizer time. A subclass that
    redefines the rule for one parameter (``_update(param, grad, state)``) gets one call per
    parameter instead.

    ``step()`` reads no tensor value into Python, so after its first call (which creates the
    state) it can be captured in a CUDA graph (see :mod:`framework.cuda_graph`) when
    :attr:`capturable` is true: hyper-parameters are Python numbers, and a rule whose
    arithmetic depends on the step count (Adam's bias correction) keeps that count on the
    device when asked to (``Adam(..., capturable=True)``).
    """

    capturable: bool = True
    _per_parameter: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_update" in cls.__dict__:
            cls._per_parameter = True

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
        self._parameters = [p for p, _ in pairs]
        self._gradients = [g for _, g in pairs]
        self.lr = check.number(self, lr, "lr", low=0.0)
        self.state: list[dict[str, Any]] = [{} for _ in pairs]

    def zero_grad(self) -> None:
        torch._foreach_zero_(self._gradients)

    def step(self) -> None:
        enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            if self._per_parameter:
                for param, grad, state in zip(self._parameters, self._gradients, self.state):
                    self._update(param, grad, state)
            else:
                self._rule(self._parameters, self._gradients, self.state)
        finally:
            torch._C._set_grad_enabled(enabled)

    def _rule(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]) -> None:
        """The update of every parameter at once."""
        raise NotImplementedError

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        """The update of one parameter (the same rule)."""
        self._rule([param], [grad], [state])


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

    def _rule(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]) -> None:
        d = grads if self.weight_decay == 0 else torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum != 0:
            buffers = [s.get("momentum_buffer") for s in states]
            old = [(b, t) for b, t in zip(buffers, d) if b is not None]
            if old:
                old_buffers = [b for b, _ in old]
                torch._foreach_mul_(old_buffers, self.momentum)
                torch._foreach_add_(old_buffers, [t for _, t in old], alpha=1 - self.dampening)
            if len(old) < len(buffers):  # the first step: a buffer starts as the gradient itself
                for state, t in zip(states, d):
                    state.setdefault("momentum_buffer", t.clone())
                buffers = [s["momentum_buffer"] for s in states]
            d = torch._foreach_add(d, buffers, alpha=self.momentum) if self.nesterov else buffers
        torch._foreach_add_(params, d, alpha=-self.lr)


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
        capturable: keep the step count k on the parameters' device (a 0-d tensor of their
            dtype) and compute the bias corrections there, so that a captured step replays with
            the right k (:class:`framework.cuda_graph.CapturedStep` needs it). The same update,
            rounded differently: p += m / (-(1 - beta1^k) / lr * (sqrt(v) / sqrt(1 - beta2^k) + eps)),
            as torch's ``capturable=True``. Default: ``False``.
    """

    def __init__(
        self,
        params: Iterable[tuple[Tensor, Tensor]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        capturable: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.betas = _betas(self, betas)
        self.eps = check.number(self, eps, "eps", low=0.0)
        self.weight_decay = check.number(self, weight_decay, "weight_decay", low=0.0)
        self.amsgrad = bool(amsgrad)
        self.capturable = bool(capturable)

    def _rule(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]) -> None:
        beta1, beta2 = self.betas
        for param, state in zip(params, states):
            if not state:
                state["step"] = torch.zeros((), dtype=param.dtype, device=param.device) if self.capturable else 0
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
                if self.amsgrad:
                    state["max_exp_avg_sq"] = torch.zeros_like(param)
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        g = grads if self.weight_decay == 0 else torch._foreach_add(grads, params, alpha=self.weight_decay)
        # The same operations in the same order as torch, so the updates agree to the last bit.
        torch._foreach_lerp_(exp_avg, g, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        if self.amsgrad:
            second = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(second, exp_avg_sq)
        else:
            second = exp_avg_sq
        denom = torch._foreach_sqrt(second)
        if self.capturable:
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            # -(1 - beta1^k) / lr and sqrt(1 - beta2^k), as tensors: nothing here is read back.
            correction1 = torch._foreach_pow(beta1, steps)
            torch._foreach_sub_(correction1, 1)
            torch._foreach_div_(correction1, self.lr)
            correction2 = torch._foreach_pow(beta2, steps)
            torch._foreach_neg_(correction2)
            torch._foreach_add_(correction2, 1)
            torch._foreach_sqrt_(correction2)
            torch._foreach_div_(denom, correction2)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_mul_(denom, correction1)
            torch._foreach_addcdiv_(params, exp_avg, denom)
            return
        for state in states:
            state["step"] += 1
        torch._foreach_div_(denom, [(1 - beta2 ** s["step"]) ** 0.5 for s in states])
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, [-self.lr / (1 - beta1 ** s["step"]) for s in states])


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

    def _rule(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]) -> None:
        for param, state in zip(params, states):
            if not state:
                state["step"] = 0
                state["square_avg"] = torch.zeros_like(param)
                if self.momentum > 0:
                    state["momentum_buffer"] = torch.zeros_like(param)
                if self.centered:
                    state["grad_avg"] = torch.zeros_like(param)
            state["step"] += 1  # kept for torch's state layout; the update does not use it
        g = grads if self.weight_decay == 0 else torch._foreach_add(grads, params, alpha=self.weight_decay)
        square_avg = [s["square_avg"] for s in states]
        torch._foreach_mul_(square_avg, self.alpha)
        torch._foreach_addcmul_(square_avg, g, g, value=1 - self.alpha)
        if self.centered:
            grad_avg = [s["grad_avg"] for s in states]
            torch._foreach_lerp_(grad_avg, g, 1 - self.alpha)
            avg = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(avg, self.eps)
        if self.momentum > 0:
            buffers = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(buffers, self.momentum)
            torch._foreach_addcdiv_(buffers, g, avg)
            torch._foreach_add_(params, buffers, alpha=-self.lr)
        else:
            torch._foreach_addcdiv_(params, g, avg, value=-self.lr)
