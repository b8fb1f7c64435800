"""Losses: ``forward(prediction, target)`` gives the loss, ``backward(grad_output)`` dL/d(prediction).

Each formula's ``reduce`` is the mean, the sum, or nothing (``reduction='none'``), and dL/dp
is written for the default upstream gradient 1; the framework multiplies it by
``grad_output``, a scalar for a reduced loss or a tensor of the loss's shape for ``'none'``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import _blocks
from . import _checks as check
from .module import Loss


class MSELoss(Loss):
    """L = reduce((p - t)^2);   dL/dp = 2 (p - t) * s,  s = 1/N for 'mean', 1 otherwise."""

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        diff, loss = _difference_and_reduce(self, prediction, target, lambda d: d * d, factors=lambda d: (d, d))
        self._save_for_backward(diff=diff)
        return loss

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        scale = self._reduction_scale(diff.numel())
        return self._upstream(grad_output, diff) * (2 * scale) * diff


def _difference_and_reduce(
    loss: Loss,
    prediction: Tensor,
    target: Tensor,
    terms: Callable[[Tensor], Tensor],
    factors: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """d = p - t (kept for backward) and the elementwise ``terms(d)`` reduced as ``loss.reduction`` says.

    Reduced on a large CPU tensor, block by block: each block of d is written once and its terms
    summed while it is in the cache, one trip to memory for p, t and d (three passes over d
    otherwise); d then goes into a buffer the loss reuses from call to call (it is never returned),
    which spares a fresh allocation's page faults. With ``factors`` (terms(d) = u v for
    (u, v) = factors(d)), a float32 or float64 block's terms are summed by one dot product of u and
    v, never written out (4096 x 1024, MSELoss forward: 8.6 -> 5.8 ms on 1 thread, 4.5 -> 2.6 on 2).
    A small tensor takes the fewest operations."""
    if loss.reduction == "none" or not _blocks.blocked(prediction, target):
        diff = prediction - target
        return diff, loss._reduce(terms(diff))
    diff = loss._workspace("diff", tuple(prediction.shape), prediction)
    divisor = diff.numel() if loss.reduction == "mean" else 1
    if factors is not None and diff.dtype in (torch.float32, torch.float64):
        total = _blocks.dot_of(lambda p, t, d: factors(torch.sub(p, t, out=d)), prediction, target, diff)
        return diff, total / divisor if divisor != 1 else total
    total = _blocks.sum_of(lambda p, t, d: terms(torch.sub(p, t, out=d)), prediction, target, diff, divisor=divisor)
    return diff, total


def _scaled(formula: Callable[[Tensor, Tensor | None], Tensor], diff: Tensor, factor: Tensor | float) -> Tensor:
    """``formula(d, out)`` (written into ``out``, or a new tensor for ``out=None``) times ``factor``:
    a number, a 0-d tensor or a tensor of d's shape; block by block in the cache on a large CPU
    tensor (one trip to memory)."""
    per_element = isinstance(factor, Tensor) and factor.dim() > 0
    if not _blocks.blocked(diff, *([factor] if per_element else [])):
        return formula(diff, None).mul_(factor)
    out = torch.empty_like(diff)
    if per_element:
        return _blocks.map_into(lambda d, f, o: formula(d, o).mul_(f), out, diff, factor)
    return _blocks.map_into(lambda d, o: formula(d, o).mul_(factor), out, diff)


class L1Loss(Loss):
    """L = reduce(|p - t|);   dL/dp = sign(p - t) * s,  s = 1/N for 'mean', 1 otherwise.

    At p == t the gradient is 0 (torch's sign(0) = 0).

    Args:
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. Default: ``'mean'``.

    Shape:
        - Prediction: (*), any shape.  - Target: the prediction's shape.
        - Output: a 0-d tensor, or the prediction's shape with ``reduction='none'``.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        diff, loss = _difference_and_reduce(self, prediction, target, torch.abs)
        self._save_for_backward(diff=diff)
        return loss

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        factor = self._upstream(grad_output, diff) * self._reduction_scale(diff.numel())
        return _scaled(lambda d, out: torch.sign(d, out=out), diff, factor)


class HuberLoss(Loss):
    """Quadratic near zero, linear beyond ``delta``; d = p - t:

    l = d^2 / 2 if |d| < delta else delta (|d| - delta / 2);   L = reduce(l);
    dL/dp = s * clamp(d, -delta, delta),  s = 1/N for 'mean', 1 otherwise.

    The gradient is continuous at |d| == delta (both branches give +-delta), as in torch.

    Args:
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. Default: ``'mean'``.
        delta: where the quadratic turns linear, > 0. Default: 1.0.

    Shape:
        - Prediction: (*), any shape.  - Target: the prediction's shape.
        - Output: a 0-d tensor, or the prediction's shape with ``reduction='none'``.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = check.number(self, delta, "delta", low=0.0, high=math.inf, low_open=True, high_open=True)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        terms = _in_float32_for(self.delta, lambda d: _huber_terms(d, self.delta))
        diff, loss = _difference_and_reduce(
            self, prediction, target, terms, factors=lambda d: _huber_factors(d, self.delta)
        )
        self._save_for_backward(diff=diff)
        return loss

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        factor = self._upstream(grad_output, diff) * self._reduction_scale(diff.numel())
        slope = _in_float32_for(self.delta, lambda d, out: torch.clamp(d, -self.delta, self.delta, out=out))
        return _scaled(slope, diff, factor)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"


def _in_float32_for(constant: float, formula: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``formula(d[, out])``, evaluated in float32 (and rounded once to d's dtype, as torch's kernels
    compute half precisions) where d is bfloat16 or float16 and ``constant`` is not a normal number
    of that dtype: beyond its range a clamp refuses it, below it rounds to 0 (float16 holds nothing
    under 6.1e-5 at full precision; a SmoothL1Loss with beta = 1e-9 would lose every term)."""

    def evaluate(d: Tensor, *out: Tensor | None) -> Tensor:  # out: as ``formula`` takes it, or not at all
        if d.dtype in (torch.float16, torch.bfloat16):
            info = torch.finfo(d.dtype)
            if not info.tiny <= constant <= info.max:
                result = formula(d.float(), *(None for _ in out))
                return out[0].copy_(result) if out and out[0] is not None else result.to(d.dtype)
        return formula(d, *out)

    return evaluate


def _huber_terms(diff: Tensor, delta: float) -> Tensor:
    c, u = _huber_factors(diff, delta)
    return u.mul_(c)


def _huber_factors(diff: Tensor, delta: float) -> tuple[Tensor, Tensor]:
    """(c, d - c/2) with c = clamp(d, -delta, delta), whose product is Huber's term without a
    branch or an absolute value: d^2/2 below delta (c = d, d - d/2 exact) and delta (|d| - delta/2)
    above (the signs of c and d - c/2 agree), each rounded as torch's kernel rounds it."""
    c = diff.clamp(-delta, delta)
    return c, torch.add(diff, c, alpha=-0.5)


class SmoothL1Loss(Loss):
    """Huber's loss divided by ``beta``; d = p - t:

    l = d^2 / (2 beta) if |d| < beta else |d| - beta / 2;   L = reduce(l);
    dL/dp = s * clamp(d / beta, -1, 1),  s = 1/N for 'mean', 1 otherwise.

    ``beta = 0`` is L1: l = |d|, dL/dp = s * sign(d) (0 at d == 0), as torch.

    Args:
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. Default: ``'mean'``.
        beta: where the quadratic turns linear, >= 0. Default: 1.0.

    Shape:
        - Prediction: (*), any shape.  - Target: the prediction's shape.
        - Output: a 0-d tensor, or the prediction's shape with ``reduction='none'``.
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = check.number(self, beta, "beta", low=0.0, high=math.inf, high_open=True)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        terms = self._terms if self.beta == 0 else _in_float32_for(self.beta, self._terms)
        factors = None if self.beta == 0 else self._factors
        diff, loss = _difference_and_reduce(self, prediction, target, terms, factors)
        self._save_for_backward(diff=diff)
        return loss

    def _terms(self, diff: Tensor) -> Tensor:
        """|d| for beta = 0; else Huber's terms divided by beta: d^2/(2 beta) below beta, |d| - beta/2 above."""
        if self.beta == 0:
            return diff.abs()
        terms = _huber_terms(diff, self.beta)
        return terms if self.beta == 1 else terms.div_(self.beta)

    def _factors(self, diff: Tensor) -> tuple[Tensor, Tensor]:
        """Two tensors whose product is :meth:`_terms` (beta > 0): Huber's factors, one divided by beta."""
        c, u = _huber_factors(diff, self.beta)
        return c, u if self.beta == 1 else u.div_(self.beta)

    def _slope(self, diff: Tensor, out: Tensor | None) -> Tensor:
        """sign(d) for beta = 0, else clamp(d / beta, -1, 1) (d / 1 is d: no division), into ``out``."""
        if self.beta == 0:
            return torch.sign(diff, out=out)
        if self.beta == 1:
            return torch.clamp(diff, -1, 1, out=out)
        return torch.div(diff, self.beta, out=out).clamp_(-1, 1)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved_tensors()["diff"]
        factor = self._upstream(grad_output, diff) * self._reduction_scale(diff.numel())
        return _scaled(self._slope if self.beta == 0 else _in_float32_for(self.beta, self._slope), diff, factor)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}"


# torch clamps each log at -100 in the loss and each denominator at 1e-12 in the gradient,
# so p in {0, 1} gives a finite loss and gradient rather than inf or nan. Its kernel holds
# that 1e-12 as a float32, which float64 sees as 9.99999996e-13: use the same number.
_LOG_FLOOR = -100.0
_BCE_EPSILON = torch.tensor(1e-12, dtype=torch.float32).item()


def _weight(owner: Loss, weight: Any, name: str) -> Tensor | None:
    """A floating tensor (``None`` passes): a rescaling weight, checked against the prediction in forward."""
    return None if weight is None else check.floating(owner, weight, name)


def _broadcast_weight(owner: Loss, weight: Tensor | None, prediction: Tensor, name: str) -> Tensor | None:
    """``weight`` must broadcast to the prediction's shape without enlarging it, as torch requires."""
    if weight is None:
        return None
    check.like(owner, weight, prediction, name, "prediction")
    try:
        shape = torch.broadcast_shapes(weight.shape, prediction.shape)
    except RuntimeError:
        shape = None
    if shape != prediction.shape:
        raise check.fail(
            owner,
            f"expected {name} broadcastable to the prediction's shape {tuple(prediction.shape)}, "
            f"got shape {tuple(weight.shape)}",
        )
    return weight


class BCELoss(Loss):
    """Binary cross-entropy of probabilities p in [0, 1] against targets t in [0, 1], weighted by w:

    l = -w (t log p + (1 - t) log(1 - p)), each log clamped at -100;   L = reduce(l);
    dL/dp = s * w (p - t) / max(p (1 - p), 1e-12),  s = 1/N for 'mean', 1 otherwise
    (the 1e-12 rounded to float32, as torch).

    A prediction or target outside [0, 1] (or NaN) is a ``ValueError`` naming it on CPU tensors;
    on a GPU a device-side assertion, which never stalls the stream (see ``framework._checks``).

    Args:
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. Default: ``'mean'``.
        weight: a floating tensor broadcastable to the prediction's shape (torch's ``weight``),
            or ``None`` (w = 1). A keyword: the framework's losses take ``reduction`` first.

    Shape:
        - Prediction: (*), probabilities.  - Target: the prediction's shape.
        - Output: a 0-d tensor, or the prediction's shape with ``reduction='none'``.
    """

    def __init__(self, reduction: str = "mean", *, weight: Tensor | None = None) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _weight(self, weight, "weight"))

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        weight = _broadcast_weight(self, self.weight, prediction, "weight")
        _check_unit_interval(self, prediction, "prediction")
        _check_unit_interval(self, target, "target")
        self._save_for_backward(prediction=prediction, target=target, weight=weight)
        log_p = torch.log(prediction).clamp_(min=_LOG_FLOOR)
        log_q = torch.neg(prediction).log1p_().clamp_(min=_LOG_FLOOR)
        # t log p + (1 - t) log q as one lerp from log q towards log p (exact at t = 0 and t = 1),
        # made in place of log q; its negation after the reduction, on one number.
        log_likelihood = torch.lerp(log_q, log_p, target, out=log_q)
        if weight is not None:
            log_likelihood = log_likelihood * weight
        if self.reduction == "none":
            return log_likelihood.neg_()
        return self._reduce(log_likelihood).neg_()

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        saved = self._saved_tensors()
        p, t, weight = saved["prediction"], saved["target"], saved["weight"]
        coefficient = self._upstream(grad_output, p) * self._reduction_scale(p.numel())
        denominator = torch.rsub(p, 1).mul_(p).clamp_(min=_BCE_EPSILON)
        if isinstance(coefficient, Tensor):
            grad = torch.sub(p, t).div_(denominator).mul_(coefficient)
        else:  # the quotient and the factor in one pass
            grad = torch.addcdiv(self._constant(0.0, p), torch.sub(p, t), denominator, value=coefficient)
        return grad if weight is None else grad.mul_(weight)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.weight is None else ", weight=...")


def _check_unit_interval(owner: Loss, value: Tensor, name: str) -> None:
    # Values are read on the CPU only; on a GPU this is a non-blocking device-side assertion.
    check.within(owner, value, 0.0, 1.0, f"{name} value", name)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of logits x, i.e. of p = sigmoid(x), computed without overflow, with a
    weight w and a weight pw of the positive term (torch's ``pos_weight``):

    l = w ((1 - t) x + (1 + (pw - 1) t) log(1 + exp(-x))),  log(1 + exp(-x)) = max(-x, 0) + log(1 + exp(-|x|));
    L = reduce(l);   dL/dx = s * w ((1 + (pw - 1) t) sigmoid(x) - pw t),  s = 1/N for 'mean', 1 otherwise.
    Computed as l = w ((1 - t) max(x, 0) - pw t min(x, 0) + (1 + (pw - 1) t) log(1 + exp(-|x|))): for
    0 <= t <= 1 every term is >= 0, so nothing cancels (neither x - x t for t near 1 and x large, nor
    (1 - t) x against log(1 + exp(-x)) for x < 0).

    Args:
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. Default: ``'mean'``.
        weight: a floating tensor broadcastable to the prediction's shape, or ``None`` (w = 1).
        pos_weight: a floating tensor broadcastable to the prediction's shape (one per class:
            the last dimension), or ``None`` (pw = 1). Keywords, as ``weight``.

    Shape:
        - Prediction: (*), logits.  - Target: the prediction's shape.
        - Output: a 0-d tensor, or the prediction's shape with ``reduction='none'``.
    """

    def __init__(
        self, reduction: str = "mean", *, weight: Tensor | None = None, pos_weight: Tensor | None = None
    ) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _weight(self, weight, "weight"))
        self.register_buffer("pos_weight", _weight(self, pos_weight, "pos_weight"))

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self._check_pair(prediction, target)
        weight = _broadcast_weight(self, self.weight, prediction, "weight")
        pos_weight = _broadcast_weight(self, self.pos_weight, prediction, "pos_weight")
        self._save_for_backward(prediction=prediction, target=target, weight=weight, pos_weight=pos_weight)
        x = prediction
        # l = (1 - t) max(x, 0) - pw t min(x, 0) + (1 + (pw - 1) t) log1p(exp(-|x|)): the same l, as a sum
        # of terms >= 0 for 0 <= t <= 1. Written (1 - t) x + (1 + (pw - 1) t) log(1 + exp(-x)), the two
        # first terms cancel for x < 0 (about 4.4 - 4.6 at x = -4.6, t = 0.03: 20 float32 round-offs of
        # the loss, where torch's kernel errs by 4).
        if pos_weight is None and weight is None:
            if self.reduction != "none" and _blocks.blocked(x, target):  # summed block by block, in the cache
                divisor = x.numel() if self.reduction == "mean" else 1
                return _blocks.sum_of(_logit_terms, x, target, divisor=divisor)
            return self._reduce(_logit_terms(x, target))
        tail = x.abs().neg_().exp_().log1p_()  # log1p(exp(-|x|)) <= log 2
        loss = torch.rsub(target, 1).mul_(x.clamp(min=0))
        if pos_weight is None:
            loss.addcmul_(target, x.clamp(max=0), value=-1).add_(tail)
        else:
            loss.addcmul_(pos_weight * target, x.clamp(max=0), value=-1)
            loss.addcmul_(tail, 1 + (pos_weight - 1) * target)
        return self._reduce(loss if weight is None else loss * weight)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        saved = self._saved_tensors()
        x, t, weight, pos_weight = saved["prediction"], saved["target"], saved["weight"], saved["pos_weight"]
        scale = self._reduction_scale(x.numel())
        if pos_weight is None:
            local = torch.sigmoid(x) - t
        else:
            local = (1 + (pos_weight - 1) * t) * torch.sigmoid(x) - pos_weight * t
        grad = self._upstream(grad_output, x) * scale * local
        return grad if weight is None else grad * weight

    def extra_repr(self) -> str:
        extra = "" if self.weight is None else ", weight=..."
        return super().extra_repr() + extra + ("" if self.pos_weight is None else ", pos_weight=...")


def _logit_terms(x: Tensor, t: Tensor) -> Tensor:
    """BCEWithLogitsLoss's unweighted terms, (1 - t) max(x, 0) - t min(x, 0) + log1p(exp(-|x|)): a new tensor."""
    loss = torch.rsub(t, 1).mul_(x.clamp(min=0))
    return loss.addcmul_(t, x.clamp(max=0), value=-1).add_(x.abs().neg_().exp_().log1p_())


def _nonzero(denominator: Tensor, counts: bool) -> Tensor:
    """D, or 1 where D = 0; ``counts``: D counts positions (0, 1, 2, ...), so clamping is the same."""
    return denominator.clamp_min(1) if counts else denominator.masked_fill(denominator == 0, 1)


def _negative_log_probability(x: Tensor, index: Tensor, largest: Tensor, log_sums: Tensor) -> Tensor:
    """-log_softmax(x) at ``index`` along dimension 1: log(sum(exp(x - max))) - (x_y - max), rounded
    as -((x_y - max) - log(sum)) would be."""
    return torch.sub(log_sums, x.gather(1, index).sub_(largest))


def reads_target_on_host(target: Tensor) -> bool:
    """Whether CrossEntropyLoss reads its class indices on the host (on the CPU: a precise error
    naming the offending class, and the shortcut when none is ignored) or checks them on the device
    without a host read (elsewhere: a GPU must not wait for it)."""
    return target.is_cpu


class CrossEntropyLoss(Loss):
    r"""Cross-entropy of logits x against class indices or class probabilities, as torch.

    Over the class dimension (1; 0 for a prediction (C,) without a batch dimension), with
    P = log_softmax(x) and S = softmax(x), each position's loss and gradient are

        l = -sum_c B_c P_c;   dl/dx = (sum_c B_c) S - B,

    where B, the position's weighted target distribution (w = ``weight``, ones by default;
    e = ``label_smoothing``; C classes), is

        class index y:        B = m ((1 - e) w_y onehot(y) + (e / C) w),   m = [y != ignore_index];
        probabilities t:      B = w ((1 - e) t + e / C).

    ``reduction='mean'`` divides the sum by D: the sum of m w_y over the positions for class
    indices (torch's weighted mean: nan when every position is ignored), the number of positions
    for probabilities. The log-sum-exp subtracts the per-position maximum first, so logits of
    +-1000 stay finite. A class index outside [0, C) (other than ``ignore_index``) is a
    ``ValueError`` naming it on CPU tensors; on a GPU a device-side assertion, which never stalls
    the stream (see ``framework._checks``).

    Args:
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. Default: ``'mean'``. The framework's
            losses take it first; the other arguments are keywords, named as torch's.
        weight: a floating tensor of C class weights (torch's ``weight``), or ``None``.
        ignore_index: positions whose class index equals it add nothing to the loss, its
            gradient or D; class indices only (with probabilities it must be negative, as torch).
            Default: -100.
        label_smoothing: e in [0, 1]. Default: 0.0.

    Shape:
        - Prediction: (C), (N, C) or (N, C, d1, ...), logits.
        - Target: class indices of dtype torch.int64 (or torch.uint8) of shape (), (N) or
          (N, d1, ...), each in [0, C) or ``ignore_index``; or class probabilities of the
          prediction's shape and dtype.
        - Output: a 0-d tensor, or () / (N) / (N, d1, ...) with ``reduction='none'``.
    """

    target_is_index = True

    def __init__(
        self,
        reduction: str = "mean",
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        if weight is not None:
            weight = check.floating(self, weight, "weight")
            check.ndim(self, weight, (1,), "weight")
        self.register_buffer("weight", weight)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise check.ModuleTypeError(f"CrossEntropyLoss: expected ignore_index to be an int, got {ignore_index!r}")
        self.ignore_index = ignore_index
        self.label_smoothing = check.number(self, label_smoothing, "label_smoothing", 0.0, 1.0)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target, probabilities, every_kept = self._check_logits_and_target(prediction, target)
        unbatched = prediction.dim() == 1
        x = prediction.unsqueeze(0) if unbatched else prediction
        t = target.unsqueeze(0) if unbatched else target
        largest = x.amax(dim=1, keepdim=True)
        if probabilities or self.label_smoothing > 0:
            return self._dense_forward(x, t, largest, probabilities, unbatched)
        # Class indices without smoothing: l = log(sum(exp(x - max))) - (x_y - max), and dl/dx =
        # S - onehot(y) with S = exp(x - max) / sum(exp(x - max)). exp(x - max) is made in place of
        # x - max and kept for backward, which scales it in one pass; no log-softmax tensor.
        exps = torch.sub(x, largest).exp_()
        sums = exps.sum(1, keepdim=True)
        log_sums = sums.log()
        if every_kept and self.weight is None:
            # Every position kept, no weight (known on the CPU, where the target's values are read
            # anyway): D = the number of positions. The general path's arithmetic without its masks
            # and weights, which are all ones here.
            index = t.unsqueeze(1)
            elementwise = _negative_log_probability(x, index, largest, log_sums).squeeze(1)
            self._save_for_backward(
                exps=exps, sums=sums, unbatched=unbatched, index=index, positions=elementwise.numel()
            )
            return self._reduce_positions(elementwise, elementwise.numel(), unbatched)
        index, _, picked_weight = self._kept_index(t, x.dtype, x.shape[1])
        elementwise = _negative_log_probability(x, index, largest, log_sums).squeeze(1).mul_(picked_weight)
        denominator = picked_weight.sum()
        self._save_for_backward(
            exps=exps,
            sums=sums,
            unbatched=unbatched,
            denominator=_nonzero(denominator, self.weight is None),
            index=index,
            picked_weight=picked_weight,
        )
        return self._reduce_positions(elementwise, denominator, unbatched)

    def _kept_index(self, t: Tensor, dtype: torch.dtype, classes: int) -> tuple[Tensor, Tensor, Tensor]:
        """The class index to read at each position (class 0 where ignored), the mask m of kept
        positions, and m w_y; the index's range checked on the device unless read on the host."""
        kept = t != self.ignore_index
        index = (t * kept).unsqueeze(1)  # ignored positions read class 0, weighted 0
        if not reads_target_on_host(t):
            # The range check on the device, of the index just made (an ignored position reads 0,
            # in range): its extremes, no host read, no pass of its own over t.
            check.assert_within_on_device(
                self,
                index,
                0,
                classes,
                "target class index",
                "target",
                high_open=True,
                allowed=(self.ignore_index, f"ignore_index={self.ignore_index}"),
            )
        mask = kept.to(dtype)
        picked_weight = mask if self.weight is None else self.weight[index.squeeze(1)] * mask
        return index, mask, picked_weight

    def _reduce_positions(self, elementwise: Tensor, denominator: Tensor | int, unbatched: bool) -> Tensor:
        """The reduction over positions, with the mean's denominator D (a weighted count)."""
        if self.reduction == "none":
            return elementwise.squeeze(0) if unbatched else elementwise
        total = elementwise.sum()
        return total / denominator if self.reduction == "mean" else total

    def _dense_forward(self, x: Tensor, t: Tensor, largest: Tensor, probabilities: bool, unbatched: bool) -> Tensor:
        """Class probabilities, or label smoothing: every class's log-probability counts."""
        classes, e = x.shape[1], self.label_smoothing
        shifted = x - largest
        # log(sum(exp)) of the shifted logits written out: each row's largest entry is already 0,
        # so torch.logsumexp would only find that maximum again (the same arithmetic, bit for bit,
        # in half the time: 74 against 150 us at 256 x 1000, one thread).
        log_probs = shifted - shifted.exp().sum(1, keepdim=True).log_()
        weight = None if self.weight is None else self.weight.reshape(1, classes, *[1] * (x.dim() - 2))
        if probabilities:
            dist = t if e == 0 else t * (1 - e) + e / classes
            dist = dist if weight is None else dist * weight
            elementwise = -(dist * log_probs).sum(1)
            # The number of positions: 0 / 0 = nan for an empty batch, as torch.
            denominator = x.new_full((), float(elementwise.numel()))  # made on the device, not copied there
            saved = {"dist": dist}
        else:
            index, mask, picked_weight = self._kept_index(t, x.dtype, classes)
            elementwise = -log_probs.gather(1, index).squeeze(1) * picked_weight
            smooth = -(log_probs.sum(1) if weight is None else (log_probs * weight).sum(1)) * mask
            elementwise = (1 - e) * elementwise + (e / classes) * smooth
            denominator = picked_weight.sum()
            saved = {"index": index, "mask": mask, "picked_weight": picked_weight}
        # D = 0 (an empty batch, every position ignored): a nan 'mean', as torch, but a zero
        # gradient rather than 0 / 0.
        self._save_for_backward(
            log_probs=log_probs, unbatched=unbatched, denominator=_nonzero(denominator, self.weight is None), **saved
        )
        return self._reduce_positions(elementwise, denominator, unbatched)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        saved = self._saved_tensors()
        unbatched = saved["unbatched"]
        values = saved["exps"] if "exps" in saved else saved["log_probs"]
        positions = (values.shape[0], *values.shape[2:])
        upstream = self._upstream(grad_output, values, positions[1:] if unbatched else positions)
        # The factor of each position's gradient: dL/dl, over D for 'mean'.
        if self.reduction == "none":
            coefficient = upstream.unsqueeze(0) if unbatched else upstream
        elif "positions" in saved:
            coefficient = upstream / max(saved["positions"], 1) if self.reduction == "mean" else upstream
        elif self.reduction == "mean":
            denominator = saved["denominator"]
            # A float upstream divided as a tensor: float / tensor would multiply by a rounded 1 / D.
            numerator = upstream if isinstance(upstream, Tensor) else denominator.new_full((), upstream)
            coefficient = numerator / denominator
        else:
            coefficient = torch.as_tensor(upstream)
        if "exps" in saved:
            # dl/dx = S - onehot(y), S = exp(x - max) / sum, each position's times its factor c (times
            # m w_y unless every position is kept unweighted): one pass, then one scatter.
            exps, index = saved["exps"], saved["index"]
            if "positions" in saved:
                if isinstance(coefficient, Tensor):
                    factor = coefficient.unsqueeze(1) if coefficient.dim() else coefficient
                    minus = torch.neg(factor).expand(index.shape)
                else:
                    factor, minus = coefficient, exps.new_full(index.shape, -coefficient)
            else:
                factor = (saved["picked_weight"] * coefficient).unsqueeze(1)  # -(m w_y c) = (-m w_y) c exactly
                minus = factor.neg()
            # 1 / sum times the factor, the same arithmetic for a float factor and a tensor one.
            grad = torch.mul(exps, saved["sums"].reciprocal().mul_(factor)).scatter_add_(1, index, minus)
            return grad.squeeze(0) if unbatched else grad
        log_probs = values
        classes, e = log_probs.shape[1], self.label_smoothing
        dist = saved.get("dist")
        if dist is None:  # class indices with smoothing: B = m ((1 - e) w_y onehot(y) + (e / C) w), dense
            mask, picked_weight, index = saved["mask"], saved["picked_weight"], saved["index"]
            spread = (mask * (e / classes)).unsqueeze(1)
            shape = (*spread.shape[:1], classes, *spread.shape[2:])
            weight = 1.0 if self.weight is None else self.weight.reshape(1, classes, *[1] * (log_probs.dim() - 2))
            dist = (spread * weight).expand(shape).contiguous()
            dist.scatter_add_(1, index, ((1 - e) * picked_weight).unsqueeze(1))
        # sum_c B_c from B itself, so that a single class (B = sum_c B_c) gives exactly 0.
        factor = coefficient.unsqueeze(1) if coefficient.dim() else coefficient
        grad = torch.exp(log_probs).mul_(dist.sum(1, keepdim=True) * factor).sub_(dist * factor)
        return grad.squeeze(0) if unbatched else grad

    def _check_logits_and_target(self, prediction: Any, target: Any) -> tuple[Tensor, Tensor, bool, bool]:
        """The checked prediction and target, whether the target holds class probabilities, and
        whether no position is ignored, as far as is known without a host read (only on the CPU)."""
        prediction = check.floating(self, prediction, "prediction")
        if prediction.dim() < 1:
            raise check.fail(self, "expected prediction of shape (C), (N, C) or (N, C, d1, ...), got a 0-d tensor")
        target = check.tensor(self, target, "target")
        if target.device != prediction.device:
            raise check.ModuleTypeError(
                f"CrossEntropyLoss: expected target on device {prediction.device} (the prediction's), "
                f"got {target.device}"
            )
        classes = prediction.shape[0 if prediction.dim() == 1 else 1]
        if self.weight is not None:
            check.like(self, self.weight, prediction, "weight", "prediction")
            check.same_shape(self, self.weight, (classes,), "weight (one per class)")
        if tuple(target.shape) == tuple(prediction.shape):
            if not target.is_floating_point():
                raise check.ModuleTypeError(
                    f"CrossEntropyLoss: expected class probabilities (a target of the prediction's shape) to be "
                    f"floating-point, got {target.dtype}"
                )
            check.like(self, target, prediction, "target", "prediction")
            if self.ignore_index >= 0:
                raise check.fail(
                    self,
                    f"ignore_index={self.ignore_index} is not supported with class probabilities (as torch): "
                    "use a negative ignore_index",
                )
            return prediction, target, True, False
        if target.dtype not in (torch.int64, torch.uint8):
            raise check.ModuleTypeError(
                f"CrossEntropyLoss: expected target to be class indices of dtype torch.int64 (or torch.uint8, "
                f"as torch), or class probabilities of the prediction's shape, got {target.dtype} of shape "
                f"{tuple(target.shape)}"
            )
        expected = () if prediction.dim() == 1 else (prediction.shape[0], *prediction.shape[2:])
        check.same_shape(self, target, expected, "target (the prediction's shape without the class dimension)")
        target = target.long()
        if not reads_target_on_host(target):
            # Checked in forward, on the device, from the class indices it makes (no host read).
            return prediction, target, False, False
        # The values are read on the CPU (the smallest and largest class, then the offender if any).
        extremes = check.within(
            self,
            target,
            0,
            classes,
            "target class index",
            "target",
            high_open=True,
            allowed=(self.ignore_index, f"ignore_index={self.ignore_index}"),
        )
        every_kept = extremes is not None and not extremes[0] <= self.ignore_index <= extremes[1]
        return prediction, target, False, every_kept

    def extra_repr(self) -> str:
        extra = "" if self.weight is None else ", weight=..."
        if self.ignore_index != -100:
            extra += f", ignore_index={self.ignore_index}"
        if self.label_smoothing:
            extra += f", label_smoothing={self.label_smoothing}"
        return super().extra_repr() + extra
