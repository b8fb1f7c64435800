r"""The error model: how far apart two computations of the same gradient may honestly be.

Every tolerance in the verifier is built from the pieces below; none is a constant chosen
because it happens to pass.

Rounding bound
    An accumulation of ``n`` terms in a precision with unit round-off ``u`` is off by at most
    :math:`u\,n\,\sum|terms|`. Elementwise we use ``safety * u * n * (|ref_j| + max(mean|ref|, s))``:
    the second term is a *normwise floor* at ``s``, the largest mean magnitude among the case's
    upstream gradients, outputs and gradients. A backward pass's rounding errors are relative to
    the gradients flowing through it, so a gradient that vanishes in exact arithmetic (a bias
    between two BatchNorms) carries noise at that scale, not zero.

Rounding noise of a float64 reference (:func:`rounding_noise`)
    A bound ignores conditioning (cancellation). So the float64 noise of the reference is also
    *measured*, two ways, the larger kept elementwise: precision scaling (the float32-vs-float64
    discrepancy of the same computation times ``u64 / u32``, where float32 can hold the value:
    not beyond its range nor below its smallest normal number), and jitter (the spread of two
    evaluations with every input, parameter and upstream gradient moved by a few units in the
    last place, which catches quantities that are zero in exact arithmetic). A quantity that
    vanishes by cancellation is residue whose size hangs on the implementation and on the upstream
    gradient's values (two within a factor of two of each other sum exactly, under any jitter), so
    a comparison of two implementations allows each one's measured noise (``Context.target_noise``),
    and ``linearity`` measures each backward call's with its own upstream gradient.

Low precision (:func:`low_precision_bounds`)
    A float32, float16 or bfloat16 result is judged against the float64 truth computed from the
    *same* (upcast) inputs and parameters, so input quantisation is not counted against it.
    Per tensor, its largest and its mean absolute error are bounded by

    ``factor * max(e, ACCUMULATION_FLOOR u_acc sqrt(n) s, c) + ROUNDING_FLOOR * u * |truth|``

    (max and mean taken alike), where ``c`` is the float64 truth's spread when the inputs move by
    one unit in the last place of the dtype, scaled to the accumulator's round-off ``u_acc``
    (the conditioning: what float32 arithmetic cannot avoid, e.g. BatchNorm over two samples
    that nearly coincide). With a reference, ``e`` is the reference's own error in the same
    precision, the largest over three rounding realisations (the case, and the case with inputs
    moved by one unit in the last place: a small tensor's single realisation can be exact by
    luck), and ``factor = LOW_PRECISION_FACTOR``: the rule of FlashAttention's test suite. The
    floor (``u_acc sqrt(n) s`` up to a constant) is what an accumulation of ``n`` terms in float32 (``u_acc``, or
    float64's for float64) typically errs at the case's gradient scale ``s`` (probabilistic
    rounding error analysis, Higham and Mary 2019), so a reference that accumulates in double
    (as torch's CPU kernels often do) does not set an unreachable bar, and a gradient that
    vanishes in exact arithmetic is allowed the noise of the gradients flowing through it; the
    last term is the error of storing the result in the dtype (FlashAttention's Hopper tests
    add a floor of this kind).

    Without a reference, ``e`` is a model: the spread of the float64 truth when every input and
    upstream gradient moves by one unit in the last place of the dtype (``factor =
    MODEL_FACTOR``). A backward-stable kernel errs by about what rounding its inputs would
    cause, conditioning and cancellation included; this bar is coarser than a reference's (a
    kernel that accumulates a long reduction in bfloat16 is caught with a reference, and without
    one only when its error exceeds the model's several times): pass a reference for a sharp
    verdict.

    Each element is also held to the same bound taken element by element (``e``, ``c`` and
    ``|truth|`` at that element, ``e`` and ``c`` floored at their means over the tensor as the
    float64 noise is; the accumulation floor as it is), with ``ELEMENT_FACTOR`` times both
    factors: a norm lets one wrong element hide among many right ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

# A target may err by this many times what the plain torch reference errs in the same
# precision (FlashAttention: 2), plus this many unit round-offs of the dtype at the result's
# magnitude (FlashAttention's Hopper tests: a rounding floor of the same kind).
LOW_PRECISION_FACTOR = 2.0
ROUNDING_FLOOR = 2.0
# The reference's error is floored at this many times the typical error of a float32 (float64
# for float64) accumulation of n terms at the case's gradient scale, u_acc sqrt(n) s.
ACCUMULATION_FLOOR = 4.0
# Without a reference, the modelled error (see low_precision_bounds) gets this factor.
MODEL_FACTOR = 4.0
# Element by element, the same terms with twice the factors: one element's reference error is a
# noisier measure than the largest or the mean of many (see low_precision_bounds).
ELEMENT_FACTOR = 2.0

LOW_PRECISION = (torch.float32, torch.float16, torch.bfloat16)


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def accumulation_roundoff(dtype: torch.dtype) -> float:
    """The round-off of the accumulator a sound kernel uses for ``dtype``: float32 for half types."""
    return unit_roundoff(torch.float32) if dtype in (torch.float16, torch.bfloat16) else unit_roundoff(dtype)


def rounding_tolerance(reference: Tensor, n_terms: int, u: float, safety: float, scale: float) -> Tensor:
    """``safety * u * n * (|ref_j| + max(mean|ref|, scale))``, elementwise, float64 on the CPU."""
    reference = reference.detach().double().cpu().abs()
    mean = float(reference.mean()) if reference.numel() else 0.0
    return safety * u * n_terms * (reference + max(mean, scale))


def estimated(estimate: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """The measured noise of one tensor, floored at its mean (noise is not exact elementwise)."""
    value = estimate.get(name)
    if value is None or value.shape != like.shape:
        return torch.zeros((), dtype=torch.float64)
    value = value.double().cpu()
    return value + value.mean()


def jitter(x: Any, generator: torch.Generator, size: float) -> Any:
    """``x`` with each element moved by a random relative ``size`` (random signs); non-tensors as they are."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        return x
    sign = torch.randint(0, 2, x.shape, generator=generator).to(device=x.device, dtype=x.dtype) * 2 - 1
    return x.detach() * (1 + size * sign)


Collector = Callable[[float, torch.Generator | None], dict[str, Tensor]]


def jitter_spread(
    collect: Collector,
    size: float,
    generator: torch.Generator,
    draws: int = 2,
    base: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Elementwise spread of ``draws`` evaluations jittered by relative ``size`` around the unjittered one.

    ``collect(size, generator)`` evaluates with every input, parameter and upstream gradient
    jittered (``size = 0``: unjittered) and returns named float64 tensors; ``base`` is the
    unjittered evaluation when already known.
    """
    base = collect(0.0, None) if base is None else base
    return spread(base, [collect(size, generator) for _ in range(draws)])


def spread(base: dict[str, Tensor], moved: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Elementwise largest ``|moved - base|`` over the evaluations ``moved``, per name (CPU, float64)."""
    result = {name: torch.zeros_like(value, dtype=torch.float64).cpu() for name, value in base.items()}
    for evaluation in moved:
        for name in result:
            if name in evaluation and evaluation[name].shape == base[name].shape:
                difference = (evaluation[name].double().cpu() - base[name].double().cpu()).abs()
                result[name] = torch.maximum(result[name], difference)
    return result


def rounding_noise(
    collect64: Collector, collect32: Callable[[], dict[str, Tensor]] | None, generator: torch.Generator
) -> dict[str, Tensor]:
    """Estimated float64 rounding error of each named quantity: max(precision scaling, jitter)."""
    base = collect64(0.0, None)
    jitter64 = jitter_spread(collect64, 8 * unit_roundoff(torch.float64), generator, base=base)
    if collect32 is None:
        return jitter64
    try:
        low = collect32()
    except Exception:  # a computation that cannot run in float32: jitter alone
        return jitter64
    estimate = {}
    for name, value in jitter64.items():  # on the CPU, as spread() returns it, whatever device ran
        if name in low and low[name].shape == base[name].shape:
            estimate[name] = torch.maximum(value, precision_scaled(low[name], base[name]))
        else:
            estimate[name] = value
    return estimate


def precision_scaled(low: Tensor, base: Tensor) -> Tensor:
    """The float64 rounding error of a computation, estimated from its float32 run ``low`` and its
    float64 run ``base``: ``|low - base| * u64 / u32`` elementwise, float64 on the CPU."""
    low64, base64 = low.detach().double().cpu(), base.detach().double().cpu()
    scaled = (low64 - base64).abs() * (unit_roundoff(torch.float64) / unit_roundoff(torch.float32))
    # Where float32 cannot hold the float64 value (beyond its range, or below its smallest
    # normal number: inputs near 1e-100 or 1e200), it measures nothing: zero there.
    magnitude, f32 = base64.abs(), torch.finfo(torch.float32)
    held = ((magnitude == 0) | ((magnitude >= f32.tiny) & (magnitude <= f32.max))) & torch.isfinite(low64)
    return torch.where(held | ~torch.isfinite(base64), scaled, torch.zeros_like(scaled))


def low_precision_bounds(
    truth: Tensor,
    reference_error: Tensor | None,
    spread: Tensor,
    dtype: torch.dtype,
    scale: float = 0.0,
    n_terms: int = 1,
) -> dict[str, Any]:
    """Bounds on the max and mean absolute error of a low-precision result (see the module docstring),
    and ``"element"``, a bound on each element's error.

    ``reference_error``: ``|reference - truth|`` elementwise, or None without a reference: then
    ``spread``, the float64 truth's movement when the inputs move by one unit in the last
    place, models it. Either is floored at the accumulation error of a float32-or-better
    accumulator, ``u_acc sqrt(n) scale``, and multiplied by the factor; a rounding floor of
    ``ROUNDING_FLOOR`` round-offs of the dtype at the result's magnitude (never below the case's
    gradient scale) is added.

    The elementwise bound takes the same terms element by element (the reference's error at that
    element, the largest over the rounding realisations; the conditioning there; the rounding
    floor at the element's own magnitude), each factor ``ELEMENT_FACTOR`` times larger. A norm
    lets one wrong element hide among many right ones: a gradient 10 % off in one element of a
    bfloat16 kernel passed the max and the mean; this bound sees it.
    """
    truth = truth.detach().double().cpu().abs()
    u, u_acc = unit_roundoff(dtype), accumulation_roundoff(dtype)
    accumulation = ACCUMULATION_FLOOR * u_acc * math.sqrt(n_terms) * scale
    spread = spread.detach().double().cpu()
    rounding_each = ELEMENT_FACTOR * ROUNDING_FLOOR * u * truth
    # Element by element, each measure is floored at its mean over the tensor, as the float64 noise
    # (see estimated): one element's is a noisy sample. Where a backward cancels (tanh's 1 - y^2
    # from a y rounded near 1, then summed over a batch) a correct bfloat16 gradient element erred
    # by 40 times the spread of its own float64 value, and by 5 times its reference's error.
    if reference_error is None:
        each = ELEMENT_FACTOR * MODEL_FACTOR * _floored(spread).clamp(min=accumulation)
    else:
        measured_each = _floored(reference_error.detach().double().cpu())
        each = (
            ELEMENT_FACTOR
            * LOW_PRECISION_FACTOR
            * torch.maximum(measured_each, (_floored(spread) * u_acc / u).clamp(min=accumulation))
        )
    bounds: dict[str, Any] = {"element": each + rounding_each}
    for name, reduce in (("max", torch.amax), ("mean", torch.mean)):
        rounding = ROUNDING_FLOOR * u * float(reduce(truth))
        if reference_error is None:
            bounds[name] = MODEL_FACTOR * max(float(reduce(spread)), accumulation) + rounding
        else:
            # The conditioning at the accumulator's precision: a reference that is exact by luck,
            # or accumulates in double, does not set a bar below what float32 arithmetic allows.
            conditioning = float(reduce(spread)) * u_acc / u
            measured = float(reduce(reference_error.detach().double().cpu()))
            bounds[name] = LOW_PRECISION_FACTOR * max(measured, accumulation, conditioning) + rounding
    return bounds


def _floored(values: Tensor) -> Tensor:
    """``values`` floored at their finite mean (elementwise measures of one tensor)."""
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return values
    return torch.maximum(values, finite.mean())
