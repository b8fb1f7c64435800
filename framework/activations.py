"""Elementwise activations: each states y = f(x) and dL/dx = dL/dy * f'(x) side by side.

The formulas are written for few passes over memory: each operation is one pass (one kernel on a
GPU), so they are in-place where the operand is a temporary of their own, fuse a multiply and
an add (``addcmul``, ``add(alpha=)``) where they can, and pick branches with exact 0/1 factors
rather than ``torch.where`` (not vectorised on some CPU builds: 5 to 30 times slower). On a
large CPU tensor, a formula of several operations runs block by block in the cache
(:mod:`framework._blocks`): the same operations, the same results, one trip to memory.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Any, ClassVar

import torch
from torch import Tensor

from . import _blocks, _exp
from . import _checks as check
from .module import Module

_HALF = (torch.bfloat16, torch.float16)


def selects(t: Tensor) -> bool:
    """Whether a piecewise formula picks its branch with a comparison into a one-byte mask and a
    ``torch.where`` (on a GPU: ReLU's backward moves 14 bytes per element against 20 for sign then
    multiply; Threshold's forward 14 against 28 for clamp, compare, add) rather than with exact 0/1
    steps (on the CPU, where a comparison into a boolean tensor and ``where`` are not vectorised).
    At NaN a select passes the gradient on, as torch; a 0/1 step gives 0."""
    return not t.is_cpu


def _step(x: Tensor) -> Tensor:
    """1 where x > 0, 0 where x <= 0 (and where x is NaN), in x's dtype; a new tensor."""
    return _step_above(x, 0.0)


def _step_above(x: Tensor, threshold: float) -> Tensor:
    """1 where x > threshold, 0 elsewhere, in x's dtype: the comparison written straight into a
    floating tensor (one vectorised pass; a boolean result is several times slower on the CPU).

    Piecewise functions below are written with such 0/1 steps rather than with ``torch.where``:
    each branch is still evaluated exactly as written (an exact 0 or 1 factor).
    """
    return torch.gt(x, threshold, out=torch.empty_like(x))


def _select(step: Tensor, if_one: Tensor, if_zero: Tensor, out: Tensor | None = None) -> Tensor:
    """if_zero (1 - step) + if_one step, exactly (each term is exactly 0 or its branch), into ``out``
    (default: over ``if_zero``). Both branches must be finite where they are not selected."""
    out = if_zero if out is None else out
    return torch.addcmul(if_zero, if_zero, step, value=-1, out=out).addcmul_(if_one, step)


class Elementwise(Module):
    """Base of elementwise activations: subclasses give ``_forward`` and ``_derivative``.

    ``_forward(x, out)`` writes f(x) into ``out``; ``_derivative(x, y)`` returns f'(x) as a new
    tensor, and ``_gradient(x, y, grad_output, out)`` writes dL/dx = dL/dy f'(x) into ``out``
    (by default the product of the two; a subclass may fuse them). Writing into the caller's
    tensor, block by block on a large CPU tensor, spares a temporary and a copy per block.

    Attributes:
        blocked_forward, blocked_backward: run ``_forward`` (``_gradient``) block by block on
            large CPU tensors; off for single-operation formulas, which gain nothing from blocks.
        saves_derivative: forward computes f'(x) along with y (``_forward_and_derivative``, when the
            two share most of their work) and keeps it, so backward is one product (a subclass
            may decide per input, in ``_keeps_derivative``, and keep another form of f'(x) that
            its ``_gradient_from_kept`` turns into dL/dx).
        allocates_output: ``_forward`` and ``_gradient`` also take ``out=None`` and then let their
            first torch operation allocate the result: one dispatch fewer than an ``empty_like``
            first, which shows on small tensors (single-operation formulas, where not blocked).

    Those with torch's ``inplace`` argument (ReLU, LeakyReLU, ELU, SELU, Threshold) write the
    output into the input tensor and return it when ``inplace=True``; f'(x) is then computed in
    forward, while x is still intact, and kept for backward in place of x. A kept f'(x) lives in
    a buffer the module reuses from call to call (it is never returned), so a large CPU tensor
    does not pay fresh pages for it on every call.
    """

    abstract = True
    blocked_forward: ClassVar[bool] = True
    blocked_backward: ClassVar[bool] = True
    saves_derivative: ClassVar[bool] = False
    allocates_output: ClassVar[bool] = False
    inplace: bool = False

    def _set_inplace(self, inplace: Any) -> None:
        if not isinstance(inplace, bool):
            raise check.ModuleTypeError(f"{type(self).__name__}: expected inplace to be a bool, got {inplace!r}")
        self.inplace = inplace

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        """Write f(x) into ``out`` (same shape, dtype and device as x, never x itself); return it."""
        raise NotImplementedError

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        """f'(x), given x and y = f(x): a new tensor."""
        raise NotImplementedError

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor) -> Tensor:
        """Write grad_output * f'(x) into ``out``; return it."""
        return torch.mul(self._derivative(x, y), grad_output, out=out)

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        """Write f(x) into ``y`` and f'(x) into ``derivative`` (with ``saves_derivative`` or inplace)."""
        self._forward(x, y)
        derivative.copy_(self._derivative(x, y))

    def _keeps_derivative(self, x: Tensor) -> bool:
        """Whether forward on ``x`` computes f'(x) along with y and keeps it (``saves_derivative``)."""
        return self.saves_derivative

    def _gradient_from_kept(self, kept: Tensor, grad_output: Tensor) -> Tensor:
        """dL/dx from what ``_forward_and_derivative`` kept: grad_output f'(x), a new tensor."""
        return torch.mul(kept, grad_output)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        if x.dtype not in _HALF:
            return self._forward_pass(x, self.inplace)
        # bfloat16 and float16 as torch's kernels compute them: in float32, rounded once at the end
        # (a formula rounded to the half precision after every operation loses what cancels: GELU's
        # Phi(x) + x phi(x) near x = -0.75 came out with the wrong sign in bfloat16), and what
        # backward reads is kept in float32 (tanh's 1 - y^2 from a rounded y loses the same way).
        y = self._forward_pass(x.float(), inplace=False).to(x.dtype)
        y = x.copy_(y) if self.inplace else y
        self._saved_tensors()["like"] = y  # what dL/dy must match
        return y

    def _forward_pass(self, x: Tensor, inplace: bool) -> Tensor:
        """The forward of a float32 or float64 ``x`` (written into x when ``inplace``)."""
        if inplace or self._keeps_derivative(x):
            # f'(x) along with y: they share work, or x is about to be overwritten (inplace).
            y, derivative = torch.empty_like(x), self._workspace("derivative", x.shape, x)
            _blocks.map_into(self._forward_and_derivative, derivative, x, y)
            if inplace:
                y = x.copy_(y)
                self._save_for_backward(x=None, y=y, derivative=derivative)
            else:
                self._save_for_backward(x=x, y=y, derivative=derivative)
            return y
        if self.blocked_forward:
            y = _blocks.map_into(self._forward, torch.empty_like(x), x)
        else:
            y = self._forward(x, None if self.allocates_output else torch.empty_like(x))
        self._save_for_backward(x=x, y=y, derivative=None)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved.get("like", saved["y"]))
        if grad_output.dtype in _HALF:  # in float32, rounded once (see forward)
            return self._backward_pass(grad_output.float()).to(grad_output.dtype)
        return self._backward_pass(grad_output)

    def _backward_pass(self, grad_output: Tensor) -> Tensor:
        """The backward for a float32 or float64 ``grad_output`` (checked already)."""
        saved = self._saved_tensors()
        x, y = saved["x"], saved["y"]
        if saved["derivative"] is not None:
            return self._gradient_from_kept(saved["derivative"], grad_output)
        if self.blocked_backward:
            return _blocks.map_into(self._gradient, torch.empty_like(grad_output), x, y, grad_output)
        return self._gradient(x, y, grad_output, None if self.allocates_output else torch.empty_like(grad_output))

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(Elementwise):
    """y = max(x, 0);   f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0, as torch).

    At x = NaN (y = NaN) the backward on a GPU passes the gradient on, as torch's (y <= 0 is
    false); on the CPU it gives 0 (torch.sign(NaN) is 0). Elsewhere the two agree exactly.

    Args:
        inplace: write the output into the input and return it, as torch. Default: False.
    """

    blocked_forward = False
    blocked_backward = False
    allocates_output = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self._set_inplace(inplace)

    def _forward(self, x: Tensor, out: Tensor | None) -> Tensor:
        return torch.clamp_min(x, 0, out=out)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sign(y)  # y = max(x, 0): the step of x in one pass

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor | None) -> Tensor:
        if selects(y):
            # A 0-d zero made once (a Python 0.0 would be made into a tensor on the device per call).
            return torch.where(torch.le(y, 0), self._constant(0.0, grad_output), grad_output, out=out)
        return torch.sign(y, out=out).mul_(grad_output)


class Tanh(Elementwise):
    """y = tanh(x);   f'(x) = 1 - y^2."""

    blocked_forward = False
    allocates_output = True

    def _forward(self, x: Tensor, out: Tensor | None) -> Tensor:
        return torch.tanh(x, out=out)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.addcmul(self._constant(1.0, y), y, y, value=-1)

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor | None) -> Tensor:
        return torch.addcmul(self._constant(1.0, y), y, y, value=-1, out=out).mul_(grad_output)


class Sigmoid(Elementwise):
    """y = 1 / (1 + exp(-x));   f'(x) = y (1 - y).

    torch.sigmoid evaluates exp(-|x|) internally, so no overflow for large |x|.
    """

    blocked_forward = False
    allocates_output = True

    def _forward(self, x: Tensor, out: Tensor | None) -> Tensor:
        return torch.sigmoid(x, out=out)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.addcmul(y, y, y, value=-1)  # y - y^2

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor | None) -> Tensor:
        return torch.addcmul(y, y, y, value=-1, out=out).mul_(grad_output)


def _finite(owner: Module, value: object, name: str) -> float:
    """Any finite real number: torch accepts every float here, but nan or inf poison every output."""
    return check.number(owner, value, name, low=-math.inf, high=math.inf, low_open=True, high_open=True)


class LeakyReLU(Elementwise):
    """y = x if x > 0 else negative_slope * x;   f'(x) = 1 if x > 0 else negative_slope.

    At the kink x = 0 the derivative is ``negative_slope`` (the x <= 0 branch), as torch.

    Args:
        negative_slope: the slope for x <= 0 (any finite number). Default: 0.01.
        inplace: write the output into the input and return it, as torch. Default: False.
            (torch's in-place backward refuses a negative slope; here f'(x) is kept before x is
            overwritten, so any slope works.)

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = _finite(self, negative_slope, "negative_slope")
        self._set_inplace(inplace)

    # Forward makes f'(x) (1 or the slope) first, y = x f'(x) from it, and keeps it: backward is one
    # product. Four operations in all for 0 <= slope <= 1, where computing y and then f'(x) again
    # from x takes five; and both products are torch's exactly, for every slope: x or slope x
    # (the sign of a zero included), dL/dy or slope dL/dy, each rounded once (bfloat16 and float16
    # are computed in float32, as every activation's, and rounded once more: as torch's kernel).
    def _keeps_derivative(self, x: Tensor) -> bool:
        return True

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        slope = self.negative_slope
        if 0 <= slope <= 1:
            # sign(x) is -1, 0 or 1 (0 at NaN): clamped below at s it is s for x <= 0 and 1 for x > 0.
            torch.sign(x, out=derivative).clamp_(min=slope)
        else:
            step = _step(x)  # s - s step + step is exactly s or 1
            torch.mul(step, -slope, out=derivative).add_(slope).add_(step)
        torch.mul(x, derivative, out=y)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


def _elu(x: Tensor, out: Tensor, negative: float, positive: float = 1.0) -> Tensor:
    """positive x for x > 0, negative (exp(x) - 1) for x <= 0, as torch's kernel groups it, into ``out``.

    expm1 only ever sees x <= 0 (no overflow). With positive = 1 and 0 <= negative <= 1 (ELU's
    usual alpha) the result is max(x, negative expm1(min(x, 0))): for x > 0 the second term is 0,
    for x <= 0 it is at least x (e^x >= 1 + x). Otherwise one of the two terms
    positive max(x, 0) + negative expm1(min(x, 0)) is always exactly 0.
    """
    tail = _exp.expm1_(torch.clamp(x, max=0, out=out))
    if positive == 1.0 and 0.0 <= negative <= 1.0:
        if negative != 1.0:
            tail.mul_(negative)
        return torch.maximum(x, tail, out=out)
    head = x.clamp(min=0)
    if positive != 1.0:
        head.mul_(positive)
    if abs(negative) > torch.finfo(x.dtype).max:  # not a number of the dtype: add() refuses it as alpha
        return torch.add(head, tail.mul_(negative), out=out)
    return torch.add(head, tail, alpha=negative, out=out)


def _elu_gradient(
    x: Tensor,
    grad_output: Tensor,
    out: Tensor,
    negative: float,
    positive: float = 1.0,
    positive_t: Tensor | None = None,
) -> Tensor:
    """grad_output times f'(x): positive for x > 0, negative exp(x) for x <= 0 (exp sees x <= 0
    only, so exp(0) = 1 stands for x > 0). ``positive_t``: ``positive`` as a 0-d tensor, if made already."""
    if selects(x) and not negative == positive == 1.0:
        # A one-byte mask and a select: five kernels, 42 bytes an element in float32, where the exact
        # step below takes six and 56. exp(x) may overflow where x > 0: never selected there.
        positive_t = x.new_full((), positive) if positive_t is None else positive_t
        scaled = torch.exp(x, out=out).mul_(negative)
        return torch.where(torch.gt(x, 0), positive_t, scaled, out=out).mul_(grad_output)
    exp = _exp.exp_(torch.clamp(x, max=0, out=out))
    if negative == positive == 1.0:
        return exp.mul_(grad_output)  # 1 for x > 0, exp(x) for x <= 0: the derivative itself
    gap = _exact_gap(negative, positive, x.dtype)
    if gap is not None:
        # negative exp(x) - (negative - positive) step: negative exp(x) where x <= 0 (step 0), and
        # negative - gap = positive exactly where x > 0 (exp 1, step 1). One operation fewer than a blend.
        return exp.mul_(negative).sub_(_step(x), alpha=gap).mul_(grad_output)
    # No exact gap (constants far apart, or beyond the dtype's range): a select, since negative
    # exp(0) may overflow where x > 0. Rare constants, so the slower boolean mask does not matter.
    positive_t = x.new_full((), positive) if positive_t is None else positive_t
    return torch.where(torch.gt(x, 0), positive_t, exp.mul_(negative), out=out).mul_(grad_output)


@functools.lru_cache(maxsize=64)  # per (negative, positive, dtype): two numbers each
def _exact_gap(negative: float, positive: float, dtype: torch.dtype) -> float | None:
    """negative - positive in ``dtype`` when subtracting it from negative gives back positive exactly
    in that dtype (true whenever the two are within a factor of 2, by Sterbenz's lemma: SELU's
    constants, ELU's alpha in [1/2, 2]; bfloat16 and float16 compute in float32 and round once, so
    there it is enough that the rounded result is positive), else None. Python arithmetic on the
    constants alone: no tensor, so nothing for a device to wait on."""
    n, p = _as_held(negative, dtype), _as_held(positive, dtype)
    if n is None or p is None:
        return None
    computed_in = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    gap = _as_held(n - p, computed_in)
    if not math.isfinite(gap) or _as_held(_as_held(n - gap, computed_in), dtype) != p:
        return None
    return gap


def _as_held(number: float, dtype: torch.dtype) -> float | None:
    """``number`` as torch's kernels hold a scalar in ``dtype`` (bfloat16 and float16 through float32,
    as they convert), +-inf beyond its range; None for a dtype not listed here."""
    if dtype == torch.float64:
        return number
    try:
        single = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError:
        return math.copysign(math.inf, number)
    if dtype == torch.float32:
        return single
    if dtype == torch.float16:
        try:
            return struct.unpack("e", struct.pack("e", single))[0]
        except OverflowError:
            return math.copysign(math.inf, single)
    if dtype == torch.bfloat16:  # the top half of float32's bits, rounded to nearest even
        bits = struct.unpack("I", struct.pack("f", single))[0]
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return struct.unpack("f", struct.pack("I", bits))[0]
    return None


def _elu_derivative(x: Tensor, negative: float, positive: float = 1.0) -> Tensor:
    return _elu_gradient(x, x.new_ones(()), torch.empty_like(x), negative, positive)


def _elu_keeps_derivative(x: Tensor, negative: float, positive: float = 1.0) -> bool:
    """Whether forward writes f'(x) along with y (:func:`_elu_forward_and_derivative`): on the
    CPU path, for constants whose slope difference is exact in x's dtype (every usual ELU alpha
    and SELU's). Python arithmetic on the constants only."""
    if selects(x):
        return False
    return (negative == positive == 1.0) or _exact_gap(negative, positive, x.dtype) is not None


def _elu_forward_and_derivative(
    x: Tensor, y: Tensor, derivative: Tensor, negative: float, positive: float = 1.0
) -> None:
    """y (as :func:`_elu`) into ``y`` and f'(x) (as :func:`_elu_gradient`) into ``derivative``,
    sharing min(x, 0) and the max(x, 0) term or the 0/1 step: ten operations for SELU where y,
    then f'(x) again from x in backward, take twelve. Backward is then one product. Both results
    are the separate formulas' to the bit: the same operations on the same operands (float32 on
    the CPU takes :func:`_elu_forward_and_derivative_float32` instead). (SELU at
    4096 x 1024, forward+backward, one thread: 22.1 -> 21.7 ms, torch 15.1; two threads: 14.5 ->
    13.6 ms, torch 8.7. What is left is expm1 and exp themselves: torch's expm1 alone takes
    10 ms of the 21.7 on this 2-core EPYC.)"""
    if not _elu_keeps_derivative(x, negative, positive):
        _elu(x, y, negative, positive)
        derivative.copy_(_elu_derivative(x, negative, positive))
        return
    if _exp.in_base_2(x):  # exp would take two operations (exp2 and a product): f'(x) from expm1 instead
        _elu_forward_and_derivative_float32(x, y, derivative, negative, positive)
        return
    tail = torch.clamp(x, max=0)
    _exp.exp(tail, out=derivative)  # exp(min(x, 0)): 1 where x > 0
    _exp.expm1_(tail, derivative)  # from the exp made anyway, where that route is the faster
    if positive == 1.0 and 0.0 <= negative <= 1.0:
        if negative != 1.0:
            tail.mul_(negative)
        torch.maximum(x, tail, out=y)  # as _elu: max(x, negative expm1(min(x, 0)))
        if negative == 1.0:
            return  # f'(x) is exp(min(x, 0)) itself
        step = _step(x)
    else:
        head = torch.clamp(x, min=0)
        # positive max(x, 0) + negative expm1(min(x, 0)): one of the two terms is exactly 0.
        torch.add(tail.mul_(negative), head, alpha=positive, out=y)
        step = head.sign_()  # 1 where x > 0, 0 where x <= 0 (and at NaN, as _step)
    # negative exp(x) where x <= 0; negative - gap = positive exactly where x > 0 (see _elu_gradient).
    derivative.mul_(negative).sub_(step, alpha=_exact_gap(negative, positive, x.dtype))


def _elu_forward_and_derivative_float32(
    x: Tensor, y: Tensor, derivative: Tensor, negative: float, positive: float = 1.0
) -> None:
    """:func:`_elu_forward_and_derivative` for float32 on the CPU, with f'(x) made from expm1:
    negative exp(t) = negative expm1(t) + negative, for t = min(x, 0). One cheap addition where exp
    takes two operations (a fifth of SELU's time): eight operations for SELU, not ten. y is the
    same to the bit; f'(x) is within an ulp of the larger slope of torch's (an absolute error, where
    torch's is relative to negative exp(t): nothing on the scale of f'(x), which lies between 0
    and that slope). SELU at 4096 x 1024, forward+backward, framework/torch: one thread 1.44 ->
    1.26, two threads 1.55 -> 1.4."""
    tail = torch.clamp(x, max=0).expm1_()
    gap = _exact_gap(negative, positive, x.dtype)
    if positive == 1.0 and 0.0 <= negative <= 1.0:
        if negative != 1.0:
            tail.mul_(negative)
        torch.maximum(x, tail, out=y)  # as _elu: max(x, negative expm1(min(x, 0)))
        if negative == 1.0:
            torch.add(tail, 1.0, out=derivative)  # exp(min(x, 0)): 1 where x > 0
            return
        step = _step(x)
    else:
        head = torch.clamp(x, min=0)
        # positive max(x, 0) + negative expm1(min(x, 0)): one of the two terms is exactly 0.
        torch.add(tail.mul_(negative), head, alpha=positive, out=y)
        step = head.sign_()  # 1 where x > 0, 0 where x <= 0 (and at NaN, as _step)
    # negative expm1(t) + negative where x <= 0; there tail is 0 where x > 0, and negative - gap
    # is positive exactly (see _elu_gradient).
    torch.add(tail, negative, out=derivative).sub_(step, alpha=gap)


class ELU(Elementwise):
    """y = x if x > 0 else alpha (exp(x) - 1);   f'(x) = 1 if x > 0 else alpha exp(x).

    At x = 0 the derivative is ``alpha`` (the x <= 0 branch), as torch. At x = NaN (y = NaN) the
    gradient is NaN; torch's kernel passes the upstream gradient on there (NaN <= 0 is false).

    Args:
        alpha: the scale of the negative branch (any finite number). Default: 1.0.
        inplace: write the output into the input and return it, as torch. Default: False.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = _finite(self, alpha, "alpha")
        self._set_inplace(inplace)

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        return _elu(x, out, self.alpha)

    def _keeps_derivative(self, x: Tensor) -> bool:
        return _elu_keeps_derivative(x, self.alpha)

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        _elu_forward_and_derivative(x, y, derivative, self.alpha)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return _elu_derivative(x, self.alpha)

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor) -> Tensor:
        return _elu_gradient(x, grad_output, out, self.alpha, 1.0, self._constant(1.0, x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class SELU(Elementwise):
    """y = scale * (x if x > 0 else alpha (exp(x) - 1));   f'(x) = scale * (1 if x > 0 else alpha exp(x)).

    With torch's constants alpha = 1.6732632423543772848170429916717 and
    scale = 1.0507009873554804934193349852946. At x = 0 the derivative is scale * alpha, as torch;
    at x = NaN the gradient is NaN (torch's kernel gives scale times the upstream gradient).

    Args:
        inplace: write the output into the input and return it, as torch. Default: False.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self._set_inplace(inplace)

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        return _elu(x, out, self.alpha * self.scale, self.scale)

    def _keeps_derivative(self, x: Tensor) -> bool:
        return _elu_keeps_derivative(x, self.alpha * self.scale, self.scale)

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        _elu_forward_and_derivative(x, y, derivative, self.alpha * self.scale, self.scale)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return _elu_derivative(x, self.alpha * self.scale, self.scale)

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor) -> Tensor:
        return _elu_gradient(x, grad_output, out, self.alpha * self.scale, self.scale, self._constant(self.scale, x))


class Tanhshrink(Elementwise):
    """y = x - tanh(x);   f'(x) = tanh(x)^2.

    Forward keeps f'(x), squared from the tanh it computes anyway: backward is one product, where
    computing tanh(x) again would cost more than forward's whole pass (tanh is the costly operation).

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    saves_derivative = True

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        t = torch.tanh(x, out=out)
        return torch.sub(x, t, out=out)

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        t = torch.tanh(x, out=derivative)
        torch.sub(x, t, out=y)
        t.square_()  # tanh(x)^2 rather than 1 - (1 - tanh^2): no cancellation near x = 0

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        # tanh(x)^2 rather than 1 - (1 - tanh^2): no cancellation near x = 0.
        return torch.tanh(x).square_()

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor) -> Tensor:
        return torch.tanh(x, out=out).square_().mul_(grad_output)


class Threshold(Elementwise):
    """y = x if x > threshold else value;   f'(x) = 1 if x > threshold else 0.

    At x = threshold the output is ``value`` and the derivative 0, as torch. At x = NaN the output is
    NaN and the gradient passes on, as torch's (NaN <= threshold is false), except on the CPU where
    threshold + (value - threshold) is not exactly value in the dtype the formula runs in (rare
    constants): there a 0/1 step of x > threshold makes it 0. In bfloat16 and
    float16 the comparison is with the threshold itself, not with its rounding to the dtype (as
    torch's kernel, which compares in float32).

    Args:
        threshold: the value to threshold at (finite).
        value: the value replacing inputs x <= threshold (finite).
        inplace: write the output into the input and return it, as torch. Default: False.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "_threshold", _finite(self, threshold, "threshold"))
        self.value = value
        self._set_inplace(inplace)

    threshold = property(lambda self: self._threshold, lambda self, v: self._assign("threshold", v))
    value = property(lambda self: self._value, lambda self, v: self._assign("value", v))

    def _assign(self, name: str, number: float) -> None:
        """A new threshold or value: validated, then the forward re-decided for it."""
        object.__setattr__(self, f"_{name}", _finite(self, number, name))
        self._decide()

    def _decide(self) -> None:
        """Per dtype, once per (threshold, value), on constants only: whether the three-operation
        forward is exact, and which dtypes hold the constants."""
        object.__setattr__(
            self, "_shifted", tuple(d for d in (torch.float32, torch.float64) if self._shift_is_exact(d))
        )
        floats = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
        object.__setattr__(self, "_fits", frozenset(d for d in floats if self._out_of_range(d) is None))

    def _out_of_range(self, dtype: torch.dtype) -> str | None:
        """As torch: the value must be a number of the dtype, the threshold one of the dtype the
        comparison runs in (float32 for bfloat16 and float16, as torch's kernel). What is not, or None."""
        compared_in = torch.float32 if dtype in _HALF else dtype
        for name, number, limit in (("value", self._value, dtype), ("threshold", self._threshold, compared_in)):
            if abs(number) > torch.finfo(limit).max:
                return f"{name}={number:g} is beyond the range of {limit} (largest {torch.finfo(limit).max:g})"
        return None

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.dtype in _HALF and x.dtype not in self._fits:
            raise check.fail(self, self._out_of_range(x.dtype) or f"unsupported dtype {x.dtype}")  # before float32
        return super().forward(x)

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        if x.dtype not in self._fits:  # a clear error, not a cast's overflow inside a formula
            raise check.fail(self, self._out_of_range(x.dtype) or f"unsupported dtype {x.dtype}")
        if selects(x):  # x <= threshold: value; elsewhere (NaN too) x, as torch's kernel
            return torch.where(torch.le(x, self._threshold), self._constant(self._value, x), x, out=out)
        if x.dtype in self._shifted:
            return self._forward_shifted(x, out)
        return self._forward_general(x, out)

    def _forward_general(self, x: Tensor, out: Tensor) -> Tensor:
        # With s the 0/1 step of x > t (t: the threshold as compared in this dtype), y = max(x, t) s
        # + value (1 - s), exact in both branches: s = 1 only where x > t, and clamping at a finite
        # t keeps x = -inf out of 0 * inf (a threshold beyond a half-precision range clamps at that
        # range's end instead: the same products). value (1 - s) is added as -value (s - 1),
        # exactly value or 0.
        at = self._threshold
        step = _step_above(x, at)
        torch.clamp(x, min=max(at, -torch.finfo(x.dtype).max), out=out).mul_(step)
        return out.add_(step.sub_(1), alpha=-self._value)

    def _forward_shifted(self, x: Tensor, out: Tensor, below: Tensor | None = None) -> Tensor:
        # c = max(x, threshold) is the threshold exactly where x <= threshold, and there
        # c + (value - threshold) is value when that sum rounds to exactly value in this dtype
        # (float32 and float64, checked by _shift_is_exact): three operations instead of five.
        # Elsewhere c = x and the added term is 0 (+inf stays inf, NaN stays NaN). The indicator
        # c == threshold (that is, x <= threshold) is written into ``below`` when given.
        torch.clamp(x, min=self._threshold, out=out)
        at_threshold = torch.eq(out, self._threshold, out=torch.empty_like(x) if below is None else below)
        return out.add_(at_threshold, alpha=self._value - self._threshold)

    def _shift_is_exact(self, dtype: torch.dtype) -> bool:
        """The three-operation forward against the general one in ``dtype`` (whose clamps and
        comparisons take the scalars in the dtype itself) on the inputs that decide it: the floats
        next to the threshold, 0 and the infinities."""
        largest = torch.finfo(dtype).max
        if abs(self._threshold) > largest or abs(self._value) > largest:
            return False  # not numbers of this dtype: forward refuses them (see _out_of_range)
        t = torch.tensor(self._threshold, dtype=dtype)
        near = [t]
        for direction in (math.inf, -math.inf):
            point = t
            for _ in range(3):
                point = torch.nextafter(point, torch.tensor(direction, dtype=dtype))
                near.append(point)
        extremes = torch.tensor([0.0, 1.0, -1.0, 1e30, -1e30, math.inf, -math.inf], dtype=dtype)
        sample = torch.cat([torch.stack(near), extremes])
        shifted = self._forward_shifted(sample, torch.empty_like(sample))
        return torch.equal(shifted, self._forward_general(sample, torch.empty_like(sample)))

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return _step_above(x, self._threshold)

    # Forward keeps 1 - f'(x), the 0/1 indicator of x <= threshold, and backward is then one fused
    # operation g - g (1 - f'(x)): exactly g or 0. On the CPU, in float32 and float64, the
    # three-operation forward makes that indicator anyway (four operations in all, where computing
    # the step again from x in backward takes five); in place, on every path (x is overwritten).
    def _keeps_derivative(self, x: Tensor) -> bool:
        return not selects(x) and x.dtype in self._shifted

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        if x.dtype in self._shifted and not selects(x):
            self._forward_shifted(x, y, below=derivative)
            return
        self._forward(x, y)
        torch.le(x, self._threshold, out=derivative)

    def _gradient_from_kept(self, kept: Tensor, grad_output: Tensor) -> Tensor:
        return torch.addcmul(grad_output, grad_output, kept, value=-1)

    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor) -> Tensor:
        # The step again from x (two operations) rather than kept from forward: cheaper than
        # writing it out to memory in forward and reading it back here.
        if selects(x):
            zero = self._constant(0.0, grad_output)
            return torch.where(torch.le(x, self._threshold), zero, grad_output, out=out)
        return torch.gt(x, self._threshold, out=out).mul_(grad_output)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class Softplus(Elementwise):
    """y = log(1 + exp(beta x)) / beta, or y = x where beta x > threshold;
    f'(x) = sigmoid(beta x), or 1 where beta x > threshold.

    The switch to the identity follows torch exactly: at beta x == threshold the log branch is
    used. The log branch is evaluated as (max(beta x, 0) + log1p(exp(-|beta x|))) / beta, which
    never overflows even for a threshold so large that exp(beta x) would.

    Args:
        beta: the sharpness, > 0. Default: 1.0.
        threshold: values with beta x above it are passed through unchanged. Default: 20.0.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = check.number(self, beta, "beta", low=0.0, high=math.inf, low_open=True, high_open=True)
        self.threshold = check.number(self, threshold, "threshold")

    saves_derivative = True

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        self._forward_and_derivative(x, out, torch.empty_like(x))
        return out

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        bx = x if self.beta == 1 else x * self.beta
        # sigmoid(bx) is in [0, 1]: its maximum with the 0/1 step is 1 above the threshold, itself below.
        return torch.maximum(torch.sigmoid(bx), _step_above(bx, self.threshold))

    def _switch_is_invisible(self, dtype: torch.dtype) -> bool:
        """Whether, in ``dtype``, log(1 + exp(x)) already rounds to x and sigmoid(x) to 1 wherever
        x > threshold (beta = 1, exp(-threshold) below a quarter of the dtype's epsilon: the
        default threshold 20 in float32, bfloat16 and float16, not in float64), so that the switch
        to the identity changes no bit and is skipped. Python arithmetic on constants only."""
        return self.beta == 1 and self.threshold >= 1 and math.exp(-self.threshold) < torch.finfo(dtype).eps / 4

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        if self._switch_is_invisible(x.dtype):
            # Two operations where the switch takes eight (five with selects).
            torch.logaddexp(x, self._constant(0.0, x), out=y)
            torch.sigmoid(x, out=derivative)
            return
        bx = x if self.beta == 1 else x * self.beta
        # log(1 + exp(bx)) = max(bx, 0) + log1p(exp(-|bx|)): logaddexp(bx, 0) is that, in one operation.
        soft = torch.logaddexp(bx, self._constant(0.0, bx))
        if self.beta != 1:
            soft.div_(self.beta)
        if selects(x):
            # A one-byte mask and two selects: five kernels for y and f'(x) where the 0/1 steps
            # take eight (no clamps: a select never multiplies the branch it drops).
            above = torch.gt(bx, self.threshold)
            torch.where(above, x, soft, out=y)
            sigmoid = torch.sigmoid(bx, out=derivative)
            torch.where(above, self._constant(1.0, x), sigmoid, out=derivative)
            return
        step = _step_above(bx, self.threshold)
        big = torch.finfo(x.dtype).max
        if (max(self.threshold, 0.0) + 1.0) / self.beta < big:
            # The log branch, where selected (beta x <= threshold), is below (threshold + log 2) / beta:
            # finite. Both branches are then finite where not selected (x = +-inf): an exact 0/1 blend.
            _select(step, x.clamp(min=-big), soft.clamp_(max=big), out=y)
        else:
            # A beta so small that the log branch overflows the dtype where it is selected (inf, as
            # torch): branches picked by a mask, which never multiplies that inf by 0.
            torch.where(step.bool(), x, soft, out=y)
        torch.maximum(torch.sigmoid(bx, out=derivative), step, out=derivative)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class GELU(Elementwise):
    """Gaussian error linear unit, exact or with torch's tanh approximation.

    'none':  y = x Phi(x),  Phi(x) = (1 + erf(x / sqrt(2))) / 2 = erfc(-x / sqrt(2)) / 2;
             f'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    'tanh':  y = x (1 + t) / 2,  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3);
             f'(x) = (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2).
             Computed as y = x s, s = sigmoid(2u) = (1 + t) / 2, and f'(x) = s + x s (1 - s) 2u'(x)
             (1 - t^2 = 4 s (1 - s)): no 1 + t to cancel where t is near -1 (x = -5: 1 + t = 4.5e-4,
             which 1 + tanh(u) gets to 1e-4 in float32), and sigmoid is a fraction of tanh's cost.

    Both keep their "cdf" (Phi(x), or s) from forward, where y = x cdf needs it anyway: backward
    adds the x cdf'(x) term.

    Args:
        approximate: ``'none'`` (exact) or ``'tanh'``. Default: ``'none'``.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = check.choice(self, approximate, "approximate", ("none", "tanh"))

    def _forward(self, x: Tensor, out: Tensor) -> Tensor:
        self._forward_keeping_cdf(x, torch.empty_like(x), out)
        return out

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        cdf = torch.empty_like(x)
        self._forward_keeping_cdf(x, cdf, torch.empty_like(x))
        return self._derivative_from_cdf(x, cdf, torch.empty_like(x))

    def _forward_keeping_cdf(self, x: Tensor, cdf: Tensor, y: Tensor) -> None:
        """Phi(x) (or s = sigmoid(2u)) into ``cdf``, y = x cdf into ``y``."""
        if self.approximate == "tanh":
            # 2u = 2 sqrt(2/pi) (x + 0.044715 x^3): the factor rides in sigmoid's argument.
            inner = torch.addcmul(x, torch.square(x, out=cdf), x, value=_GELU_CUBIC, out=cdf)
            inner.mul_(2 * _SQRT_2_OVER_PI).sigmoid_()
        else:
            # Phi(x) = erfc(-x / sqrt(2)) / 2: no 1 + erf to cancel where x << 0 (x Phi(x) keeps its
            # relative accuracy in the tail), and the halving is a cheap in-place scale where
            # (1 + erf) / 2 takes an addition with a 0-d operand.
            torch.mul(x, -1 / _SQRT_2, out=cdf).erfc_().mul_(0.5)
        torch.mul(x, cdf, out=y)

    def _derivative_from_cdf(self, x: Tensor, cdf: Tensor, out: Tensor) -> Tensor:
        """f'(x) = cdf + x cdf'(x) into ``out`` (which must not be ``cdf``)."""
        if self.approximate == "tanh":
            # 2u'(x) = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2), times s (1 - s) = s - s^2, times x, plus s.
            slope = torch.square(x, out=out).mul_(6 * _GELU_CUBIC * _SQRT_2_OVER_PI).add_(2 * _SQRT_2_OVER_PI)
            return slope.mul_(torch.addcmul(cdf, cdf, cdf, value=-1)).mul_(x).add_(cdf)
        if _exp.in_base_2(x):  # exp(-x^2 / 2) as exp2(-x^2 log2(e) / 2): the factor rides in addcmul
            pdf = torch.addcmul(self._constant(0.0, x), x, x, value=-0.5 * _exp.LOG2_E, out=out).exp2_()
        else:
            pdf = torch.addcmul(self._constant(0.0, x), x, x, value=-0.5, out=out).exp_()  # exp(-x^2 / 2)
        return torch.addcmul(cdf, pdf, x, value=_INV_SQRT_2PI, out=out)  # Phi(x) + x phi(x)

    def _forward_pass(self, x: Tensor, inplace: bool) -> Tensor:
        y, cdf = torch.empty_like(x), self._workspace("cdf", x.shape, x)
        _blocks.map_into(self._forward_keeping_cdf, y, x, cdf)
        self._save_for_backward(x=x, y=y, derivative=None, cdf=cdf)
        return y

    def _backward_pass(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()

        def block(x: Tensor, cdf: Tensor, g: Tensor, out: Tensor) -> None:
            self._derivative_from_cdf(x, cdf, out).mul_(g)

        return _blocks.map_into(block, torch.empty_like(grad_output), saved["x"], saved["cdf"], grad_output)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
