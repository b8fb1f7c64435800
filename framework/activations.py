"""Elementwise activations: each states y = f(x) and dL/dx = dL/dy * f'(x) side by side."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _checks as check
from .module import Module


def _step(x: Tensor) -> Tensor:
    """1 where x > 0, 0 where x <= 0, in x's dtype (NaN stays NaN).

    Piecewise functions below are written with this step and ``clamp`` rather than with
    ``torch.where``: on CPU builds whose ``where`` kernel is not vectorised, that is 5 to 20
    times faster, and each branch is still evaluated exactly as written (a 0 or 1 factor).
    """
    return torch.sign(x).clamp_(min=0)


class Elementwise(Module):
    """Base of elementwise activations: subclasses give ``_forward`` and ``_derivative``."""

    abstract = True

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        """f'(x), given x and y = f(x): a new tensor, which backward overwrites with the gradient."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        y = self._forward(x)
        self._save_for_backward(x=x, y=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["y"])
        return self._derivative(saved["x"], saved["y"]).mul_(grad_output)


class ReLU(Elementwise):
    """y = max(x, 0);   f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0, as torch)."""

    def _forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=0)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sign(y)  # y = max(x, 0): the step of x in one pass


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


def _finite(owner: Module, value: object, name: str) -> float:
    """Any finite real number: torch accepts every float here, but nan or inf poison every output."""
    return check.number(owner, value, name, low=-math.inf, high=math.inf, low_open=True, high_open=True)


class LeakyReLU(Elementwise):
    """y = x if x > 0 else negative_slope * x;   f'(x) = 1 if x > 0 else negative_slope.

    At the kink x = 0 the derivative is ``negative_slope`` (the x <= 0 branch), as torch.

    Args:
        negative_slope: the slope for x <= 0 (any finite number). Default: 0.01.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _finite(self, negative_slope, "negative_slope")

    def _forward(self, x: Tensor) -> Tensor:
        # Exactly x for x > 0 and slope * x otherwise: one of the two terms is always 0.
        return x.clamp(max=0).mul_(self.negative_slope).add_(x.clamp(min=0))

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        step = _step(x)
        return (1 - step).mul_(self.negative_slope).add_(step)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


def _elu(x: Tensor, alpha: float) -> Tensor:
    # exp only ever sees x <= 0 (no overflow), and one of the two terms is always exactly 0.
    return x.clamp(max=0).expm1_().mul_(alpha).add_(x.clamp(min=0))


def _elu_derivative(x: Tensor, alpha: float) -> Tensor:
    step = _step(x)
    return x.clamp(max=0).exp_().mul_(alpha).mul_(1 - step).add_(step)


class ELU(Elementwise):
    """y = x if x > 0 else alpha (exp(x) - 1);   f'(x) = 1 if x > 0 else alpha exp(x).

    At x = 0 the derivative is ``alpha`` (the x <= 0 branch), as torch.

    Args:
        alpha: the scale of the negative branch (any finite number). Default: 1.0.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _finite(self, alpha, "alpha")

    def _forward(self, x: Tensor) -> Tensor:
        return _elu(x, self.alpha)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return _elu_derivative(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(Elementwise):
    """y = scale * (x if x > 0 else alpha (exp(x) - 1));   f'(x) = scale * (1 if x > 0 else alpha exp(x)).

    With torch's constants alpha = 1.6732632423543772848170429916717 and
    scale = 1.0507009873554804934193349852946. At x = 0 the derivative is scale * alpha, as torch.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def _forward(self, x: Tensor) -> Tensor:
        return self.scale * _elu(x, self.alpha)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return self.scale * _elu_derivative(x, self.alpha)


class Tanhshrink(Elementwise):
    """y = x - tanh(x);   f'(x) = tanh(x)^2.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def _forward(self, x: Tensor) -> Tensor:
        return x - torch.tanh(x)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        # tanh(x)^2 rather than 1 - (1 - tanh^2): no cancellation near x = 0.
        t = torch.tanh(x)
        return t * t


class Threshold(Elementwise):
    """y = x if x > threshold else value;   f'(x) = 1 if x > threshold else 0.

    At x = threshold the output is ``value`` and the derivative 0, as torch.

    Args:
        threshold: the value to threshold at (finite).
        value: the value replacing inputs x <= threshold (finite).

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, threshold: float, value: float) -> None:
        super().__init__()
        self.threshold = _finite(self, threshold, "threshold")
        self.value = _finite(self, value, "value")

    def _forward(self, x: Tensor) -> Tensor:
        # s = 1 exactly where x > threshold (x - threshold > 0 iff x > threshold in IEEE
        # arithmetic). Clamping at the threshold keeps x = -inf out of 0 * inf.
        s = _step(x - self.threshold)
        return x.clamp(min=self.threshold).mul_(s).add_((1 - s).mul_(self.value))

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        return _step(x - self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}"


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

    def _forward(self, x: Tensor) -> Tensor:
        bx = x * self.beta
        soft = (bx.clamp(min=0) + torch.log1p(torch.exp(-bx.abs()))) / self.beta
        return torch.where(bx > self.threshold, x, soft)

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        bx = x * self.beta
        return torch.where(bx > self.threshold, 1.0, torch.sigmoid(bx))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class GELU(Elementwise):
    """Gaussian error linear unit, exact or with torch's tanh approximation.

    'none':  y = x Phi(x),  Phi(x) = (1 + erf(x / sqrt(2))) / 2;
             f'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    'tanh':  y = x (1 + t) / 2,  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3);
             f'(x) = (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2).

    Args:
        approximate: ``'none'`` (exact) or ``'tanh'``. Default: ``'none'``.

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = check.choice(self, approximate, "approximate", ("none", "tanh"))

    def _forward(self, x: Tensor) -> Tensor:
        if self.approximate == "tanh":
            u = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)
            return 0.5 * x * (1 + torch.tanh(u))
        return 0.5 * x * (1 + torch.erf(x / _SQRT_2))

    def _derivative(self, x: Tensor, y: Tensor) -> Tensor:
        if self.approximate == "tanh":
            x2 = x * x
            t = torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x2 * x))
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x2)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
        cdf = 0.5 * (1 + torch.erf(x / _SQRT_2))
        return cdf + x * _INV_SQRT_2PI * torch.exp(-0.5 * x * x)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
