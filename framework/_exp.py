"""exp in place, by the operation that is fastest for the tensor.

On the CPU in float32, torch's ``exp2`` takes about half the time of its ``exp`` (2.4 against 4.3 ms
over 4M elements in the cache, one thread), so exp(t) is computed as exp2(t log2(e)): one product
more, 27 % less time in all. The price is one rounding more in the argument: a relative error of
up to |t| eps in the result (eps = 2^-23) where exp of an exact t gives 0.5 ulp. Where t is itself a
rounded difference (a softmax's x - max, a Gaussian's -x^2 / 2) that is the error t already
carries, doubled. In float64 and the half precisions the gain is small or negative, and on a GPU
both are one memory-bound pass and the product would be one more: ``exp`` there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG2_E = 1.0 / math.log(2.0)


def in_base_2(t: Tensor) -> bool:
    """Whether exp of ``t`` is taken as exp2(t log2(e)) (float32 on the CPU)."""
    return t.is_cpu and t.dtype == torch.float32


def exp_(t: Tensor) -> Tensor:
    """exp(t), in place; returns ``t``."""
    if in_base_2(t):
        return t.mul_(LOG2_E).exp2_()
    return t.exp_()


def exp(t: Tensor, out: Tensor | None = None) -> Tensor:
    """exp(t), into ``out`` (a new tensor by default)."""
    if in_base_2(t):
        return torch.mul(t, LOG2_E, out=out).exp2_()
    return torch.exp(t, out=out)
