"""Weight initialisers, each filling a tensor in place from a seedable ``torch.Generator``.

Values are drawn on the CPU in float64 and then copied into the tensor, so a given
generator seed gives the same weights on every device and dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _checks as check

NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain PyTorch's initialisers use to keep activations' variance stable through a layer."""
    check.choice("calculate_gain", nonlinearity, "nonlinearity", NONLINEARITIES)
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else check.number("calculate_gain", param, "param")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    return 1.0


def fans(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if tensor.dim() < 2:
        raise check.fail("init", f"expected a weight with at least 2 dimensions, got shape {tuple(tensor.shape)}")
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fill(tensor: Tensor, values: Tensor) -> Tensor:
    tensor.copy_(values.to(device=tensor.device, dtype=tensor.dtype))
    return tensor


def uniform_(tensor: Tensor, low: float = 0.0, high: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """U(low, high)."""
    draw = torch.rand(tensor.shape, generator=generator, dtype=torch.float64)
    return _fill(tensor, low + (high - low) * draw)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """N(mean, std^2)."""
    draw = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
    return _fill(tensor, mean + std * draw)


def zeros_(tensor: Tensor) -> Tensor:
    return tensor.zero_()


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Glorot: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Glorot: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    check.choice("kaiming", mode, "mode", ("fan_in", "fan_out"))
    fan_in, fan_out = fans(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He: U(-b, b), b = gain * sqrt(3 / fan)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He: N(0, std^2), std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def lecun_normal_(tensor: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """N(0, 1/n) with n = fan_in (the seed reports' Linear initialisation)."""
    fan_in, _ = fans(tensor)
    return normal_(tensor, 0.0, 1.0 / math.sqrt(fan_in), generator)


def torch_default_(weight: Tensor, bias: Tensor | None = None, generator: torch.Generator | None = None) -> None:
    """PyTorch's default for Linear and convolutions: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.

    (torch writes it as kaiming_uniform_ with a = sqrt(5), which is the same bound.)
    """
    fan_in, _ = fans(weight)
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    uniform_(weight, -bound, bound, generator)
    if bias is not None:
        uniform_(bias, -bound, bound, generator)


SCHEMES = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "lecun_normal", "zeros")


def initialise(
    weight: Tensor,
    bias: Tensor | None,
    scheme: str = "default",
    nonlinearity: str = "relu",
    generator: torch.Generator | None = None,
) -> None:
    """Fill a layer's weight and bias by a named scheme (bias is zero except for 'default')."""
    check.choice("initialise", scheme, "scheme", SCHEMES)
    if scheme == "default":
        torch_default_(weight, bias, generator)
        return
    gain = calculate_gain(nonlinearity)
    if scheme == "xavier_uniform":
        xavier_uniform_(weight, gain, generator)
    elif scheme == "xavier_normal":
        xavier_normal_(weight, gain, generator)
    elif scheme == "kaiming_uniform":
        kaiming_uniform_(weight, 0.0, "fan_in", nonlinearity, generator)
    elif scheme == "kaiming_normal":
        kaiming_normal_(weight, 0.0, "fan_in", nonlinearity, generator)
    elif scheme == "lecun_normal":
        lecun_normal_(weight, generator)
    else:
        zeros_(weight)
    if bias is not None:
        zeros_(bias)
