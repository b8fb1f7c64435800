"""exp in place, by the operation that is fastest for the tensor.

torch's CPU ``exp`` (like ``erf``, ``erfc``, ``expm1``, ``log1p``, ``tanh``) runs Intel MKL's vector
math where torch was built with MKL; ``exp2`` and ``sigmoid`` run torch's own vectorised code. MKL's
is fast on Intel processors and several times slower on others, so the choice depends on the
processor (:func:`mkl_vector_math_is_fast`, read once). Over 4M float32 elements in the cache, one
thread: on a 2-core AMD EPYC, exp 4.3 ms against exp2 2.4 ms; on an Intel Xeon (AVX-512), exp 1.0 ms
against exp2 1.4 ms. Where exp2 is the faster (float32 on a CPU other than Intel's), exp(t) is
computed as exp2(t log2(e)): one product more, 27 % less time in all on that EPYC. The price is one
rounding more in the argument: a relative error of up to |t| eps in the result (eps = 2^-23) where
exp of an exact t gives 0.5 ulp. Where t is itself a rounded difference (a softmax's x - max, a
Gaussian's -x^2 / 2) that is the error t already carries, doubled. In float64 and the half
precisions the gain is small or negative, and on a GPU both are one memory-bound pass and the
product would be one more: ``exp`` there.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from . import _cpu

LOG2_E = 1.0 / math.log(2.0)


def in_base_2(t: Tensor) -> bool:
    """Whether exp of ``t`` is taken as exp2(t log2(e)) (float32 on a CPU whose MKL exp is slow)."""
    return t.is_cpu and t.dtype == torch.float32 and not mkl_vector_math_is_fast()


@functools.cache
def mkl_vector_math_is_fast() -> bool:
    """Whether torch's CPU ``exp`` and its kin run MKL's vector math on an Intel processor (the
    vendor decides, not a timing: the same formulas run on every call, process after process)."""
    return torch.backends.mkl.is_available() and _cpu.is_intel()


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


def expm1_is_slow(t: Tensor) -> bool:
    """Whether expm1 of ``t`` is better made from exp and tanh (:func:`expm1_with_exp_`): float32
    and float64 on a CPU whose MKL vector math is fast. There torch's ``expm1`` costs several
    times its ``exp``: over 4M elements in the cache, one thread, on an Intel Xeon (AVX-512),
    float32 expm1 8.6 ms against exp 1.3 and tanh 2.4; float64 15.6 against 2.8 and 10.3."""
    return t.is_cpu and t.dtype in (torch.float32, torch.float64) and mkl_vector_math_is_fast()


def expm1_with_exp_(t: Tensor, exp_t: Tensor) -> Tensor:
    """expm1(t), in place in ``t``, given exp(t) in ``exp_t``; returns ``t``.

    e^t - 1 = tanh(t/2) (e^t + 1) (tanh(t/2) = (e^t - 1) / (e^t + 1)): a product of a term of
    the sign of t and a positive one, so nothing cancels where e^t is near 1, as in the plain
    difference. Halving t is exact (but for subnormal t), tanh is accurate to its last bit, and the
    product and sum round once each: within 1.1 units of the dtype's epsilon, relative, over
    t in [-100, 0] in float32 (expm1 itself: 0.5). Exactly 0 at t = 0 and exactly -1 where
    tanh(t/2) rounds to -1 (e^t is then below the epsilon); NaN at NaN. For t <= 0 (e^t cannot
    overflow there)."""
    half = t.mul_(0.5).tanh_()
    return torch.addcmul(half, half, exp_t, out=t)


def expm1_(t: Tensor, exp_t: Tensor | None = None) -> Tensor:
    """expm1(t) for t <= 0, in place, by the faster route for the tensor; ``exp_t``: exp(t), if
    made already (the route through exp reuses it). Returns ``t``."""
    if expm1_is_slow(t):
        return expm1_with_exp_(t, torch.exp(t) if exp_t is None else exp_t)
    return t.expm1_()
