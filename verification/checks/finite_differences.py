r"""``finite_differences``: the backward pass against central differences of the target's own forward.

The function checked is the scalar :math:`\phi(x, \theta) = \sum_k \langle g_k, y_k(x, \theta)\rangle`
with random upstream gradients ``g``, so the gradients backward returns must equal
:math:`\nabla\phi`. Always in float64, on a float64 copy of the target and upcast inputs,
whatever the caller's precision: the ground truth. An output whose contribution to some gradient is
more than ``BALANCED`` times smaller than another output's (outputs of very different scales) is
also checked alone, its upstream gradient kept and the others zero: in the sum, its part of the
gradient would be resolved only at the larger one's scale.

Small tensors get one derivative per element; large ones random-direction probes
:math:`\langle u, \mathrm{backward}(g)\rangle` against the directional derivative along a
Gaussian ``u`` (a single wrong element ``j`` shifts every probe by :math:`u_j e_j`). When a
probe fails on a tensor of moderate size, the elementwise comparison runs too, to name the
wrong element.

Each derivative is extrapolated from central differences :math:`D(s)` at ``s = h, h/2, h/4``
(``h = eps * max(c, |x|)``, ``c`` the tensor's largest magnitude capped at 1, or 1 for a tensor of
zeros: a tensor of values near 1e-9 is stepped at its own scale): two Richardson levels,
:math:`R_1 = (4D(h/2) - D(h))/3`,
:math:`R_2 = (4D(h/4) - D(h/2))/3` (truncation :math:`O(h^4)`) and
:math:`R = (16R_2 - R_1)/15` (:math:`O(h^6)`). The differences are of
:math:`\Delta\phi(s) = \sum_k \langle g_k, y_k(x + s) - y_k(x)\rangle`, subtracted output element
by output element before the sum (not :math:`\phi(x + s) - \phi(x)`, two large sums whose
rounding at the scale of :math:`\sum|g||y|` would swamp one element's error in a large tensor),
and the sums are all but exact (runs of 8 terms summed, their sums correctly rounded with
``math.fsum``) up to ``EXACT_SUM_LIMIT`` terms. The error of
``R`` is bounded by

* truncation: :math:`|R - R_2|`, which over-estimates the error left in ``R``;
* rounding: each evaluation of :math:`\Delta\phi` errs by :math:`\delta`, amplified by at most
  :math:`7\delta/h` in ``R``. Output element k errs by its rounding :math:`\varepsilon_k`, measured
  by the error model's estimator (precision scaling and ulp jitter, which see an ill-conditioned
  forward), at least :math:`u|y_k|`; so :math:`\delta \le \sum_k |g_k| 2\varepsilon_k`, and with the
  verifier's own Gaussian ``g`` (independent of those errors, whatever their correlation)
  :math:`\delta` is Gaussian with deviation at most :math:`\sqrt{\sum_k 4\varepsilon_k^2}`. When the
  estimator cannot run, a bound on :math:`\phi`'s own rounding,
  :math:`u\sqrt{n}\,(\sum|g||y| + |\phi|)` (Higham and Mary, 2019), twice;
* stepping: ``x + s`` is rounded, a relative error of at most :math:`8u|x|/h` in ``R``;

each times ``safety``, plus the analytic gradient's own rounding bound (floored normwise at the
case's gradient scale, the largest mean magnitude among its gradients; not at the upstream
gradients', from which a Jacobian far from 1 sets the gradients orders of magnitude apart). A
probe projects these elementwise bounds onto its Gaussian direction (root sum of squares, with
the analytic gradient's rounding at the probabilistic :math:`u\sqrt{n}` rate), so its noise grows as
the square root of the tensor's size. With ``eps = 1e-4`` these are orders of magnitude below one
part in a million of the gradient's scale: an element of typical size off by one part in a million
fails in a float64 tensor of a million elements. An element far smaller than its tensor's typical
one is seen at a larger relative error where the outputs it moves are the tensor's (the noise is
theirs, the error the element's); the outputs it does not move are left out of its noise (see
LARGE_STEPS).

A forward that gives other outputs on a second call at the same inputs (randomness from a
generator of its own, out of the verifier's reach; a state it updates on every call and reads,
as spectral norm's power iteration in train mode) has no finite differences to compare with:
the check is then inconclusive, never passed on the strength of the noise it measured.

A kink (ReLU at 0, tied maxima) has no derivative: the same evaluations give the one-sided
quotients :math:`(f(s) - f(0))/s` and :math:`(f(0) - f(-s))/s`, which stay apart as ``s``
halves there (a smooth function's gap halves with ``s``). A kink that the step reaches but that
is not at the point is passed by a step 16 or 256 times smaller, whose difference then judges as
usual. At the point itself, a backward value between the slopes is a convention, left unjudged
(the check is then inconclusive, naming the element); one outside fails.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from .. import error_model
from ..context import Context, Options
from ..error_model import rounding_tolerance, unit_roundoff
from ..report import CheckResult, _where
from ..targets import Call, Gradients, Target

Projector = Callable[[Tensor], tuple[float, float]]  # direction -> (derivative along it, its rounding bound)


class Derivative(Protocol):
    """A derivative under test other than a backward's gradient (forward mode): for the tensor
    ``name`` (an input, ``input[i]``, or a parameter), its value along a direction, as
    :math:`\\langle g, J d\\rangle` with the sum's rounding bound (``project``), and element ``j``'s
    value (``element``); ``elementwise``: whether every element's is at hand (small tensors), so a
    failing probe can be located."""

    def project(self, name: str, direction: Tensor) -> tuple[float, float]: ...
    def element(self, name: str, index: int) -> float: ...
    def elementwise(self, name: str) -> bool: ...


LOCATE_LIMIT = 1024  # tensors up to this size are searched element by element when a probe fails
EXACT_SUM_LIMIT = 1 << 23  # sums of up to this many terms are all but exact (see _accurate_sum)
CHUNK = 8  # terms summed by torch before the correctly rounded sum of their partial sums
CHUNKED_ABOVE = 4096  # sums of more terms than this go through the partial sums


def check_finite_differences(ctx: Context) -> CheckResult:
    result = CheckResult("finite_differences")
    if ctx.target64 is None:
        if ctx.reference is not None:
            result.skipped = (
                f"{ctx.why_no_float64}; its gradients are judged against the reference's float64 "
                f"autograd gradients instead (low_precision)"
            )
        else:
            result.inconclusive = (
                f"{ctx.why_no_float64}, and no reference was given: nothing can serve as the float64 ground "
                f"truth. Pass reference= (the same function in plain torch ops)"
            )
        return result
    target = ctx.target64.copy()  # its parameters are shifted in place, and forward may update buffers
    gradients = target.start(ctx.call64).backward(ctx.grads64)
    rounding: dict[str, Any] = {}  # the outputs' measured rounding, shared by the comparisons below
    compare(
        result,
        target,
        ctx.call64,
        ctx.grads64,
        gradients,
        ctx.options,
        ctx.generator,
        ctx.upstream_drawn,
        rounding=rounding,
        invariant=ctx.invariant,
    )
    parts = []
    for index, alone in each_output_alone(ctx.grads64):
        target = ctx.target64.copy()
        zeroed = [g if g is None or i == index else torch.zeros_like(g) for i, g in enumerate(ctx.grads64)]
        parts.append((index, alone, target, target.start(ctx.call64).backward(zeroed)))
    for (index, alone, target, gradients), swamped in zip(parts, diluted([part[3] for part in parts])):
        # This output weighed alone, on the tensors where another output's far larger contribution
        # swamps its own in the combined check: its backward judged there at its own scale.
        if swamped:
            part = CheckResult(result.name)
            compare(
                part,
                target,
                ctx.call64,
                alone,
                gradients,
                ctx.options,
                ctx.generator,
                ctx.upstream_drawn,
                only=swamped,
                rounding=rounding,
            )
            absorb(result, part, f"with output[{index}]'s upstream gradient alone (the others zero)")
    return result


BALANCED = 8.0  # an output whose contribution to every gradient element is this close to the largest is judged with it


def each_output_alone(grads: Sequence[Tensor | None]) -> list[tuple[int, list[Tensor | None]]]:
    r"""For a target with two or more outputs weighed by upstream gradients, one list per such output
    holding its gradient alone (None elsewhere). The combined check differentiates
    :math:`\phi = \sum_k \langle g_k, y_k\rangle`, whose differences are resolved at the scale of
    the largest output's contribution: with outputs (1e6 exp(x), sin(x)), the second output's
    backward wrong by one part in ten thousand moves the gradient by 1e-4 in 1e6, below what any
    difference quotient resolves (the twin check, with a reference, sees it). Each output alone is
    resolved at its own scale. Nothing for a single output."""
    weighed = [i for i, g in enumerate(grads) if g is not None]
    if len(weighed) < 2:
        return []
    return [(k, [g if i == k else None for i, g in enumerate(grads)]) for k in weighed]


def diluted(parts: Sequence[Gradients]) -> list[set[int]]:
    """For each output, from the gradients each output gives alone: the differentiated tensors (their
    positions in ``Gradients.all()``) where its contribution to some element is more than
    :data:`BALANCED` times smaller than another output's there (an output that gives an element
    nothing is not diluted there); every tensor when one is not finite. Where an output is diluted
    less than that, an error in its part of a gradient is seen at least an eighth as large in the
    combined check, whose tolerances sit orders of magnitude below one part in a million of the
    gradient's scale. Element by element: outputs (1e6 exp(x), sin(x) w) with w = [1e9, 1, 1, 1, 1]
    are a thousand times apart at the second element, though not in their largest values."""
    swamped: list[set[int]] = [set() for _ in parts]
    for position, tensors in enumerate(zip(*(part.all() for part in parts))):
        present = [(k, t.detach().double().abs().cpu()) for k, t in enumerate(tensors) if t is not None and t.numel()]
        if len(present) < 2:
            continue
        if not all(bool(torch.isfinite(t).all()) for _, t in present):
            return [set(range(len(parts[0].all()))) for _ in parts]
        top = torch.stack([t.reshape(-1) for _, t in present]).amax(0)
        for k, t in present:
            flat = t.reshape(-1)
            if bool(((flat > 0) & (flat * BALANCED < top)).any()):
                swamped[k].add(position)
    return swamped


def absorb(result: CheckResult, part: CheckResult, context: str) -> None:
    """Fold the verdict of a second comparison (``part``, made ``context``) into ``result``: the worse
    of the two details, a failure or an inconclusive note of either."""
    result.compared += part.compared
    result.worst_error = max(result.worst_error, part.worst_error)
    if not part.ok and (result.ok or part.worst_ratio > result.worst_ratio):
        result.ok = False
        result.detail = f"{context}: {part.detail}"
    elif part.worst_ratio > result.worst_ratio and result.ok:
        result.detail = f"{context}: {part.detail}"
    result.worst_ratio = max(result.worst_ratio, part.worst_ratio)
    if part.inconclusive and not result.inconclusive:
        result.inconclusive = f"{context}: {part.inconclusive}"


def outputs(target: Target, call: Call) -> list[Tensor | None]:
    """The forward's outputs at ``call``, detached copies in float64 (on their device); None for a
    complex one (it gets no upstream gradient: see :meth:`~verification.context.Context._upstream`).
    Copies: an output the target writes into a buffer it reuses would change under the next
    evaluation (``side_effects`` names that; the differences stay right)."""
    return [
        None if y is None or y.is_complex() else y.detach().to(torch.float64, copy=True)
        for y in target.forward(call).leaves
    ]


def _projected(outputs_: list[Tensor | None], grads: Sequence[Tensor | None]) -> float:
    """phi = sum_k <g_k, y_k>, the scalar every difference quotient is taken of (see :class:`_Shifter`)."""
    total = 0.0
    for y, g in zip(outputs_, grads):
        if y is not None and g is not None:
            total += float((y.double() * g.double().to(y.device)).sum())
    return total


def _changes_between_calls(first: list[Tensor | None], second: list[Tensor | None], limit: float | None = None) -> str:
    """Why finite differences cannot judge a forward that gave ``first`` then ``second`` at the same
    inputs, or "" when the two agree to ``limit`` relative (default: half the digits of float64,
    more than any rounding of an atomic-add kernel differs): a difference quotient of a function
    that changes between calls measures the change, not the derivative, and its measured noise
    would excuse any gradient."""
    limit = math.sqrt(unit_roundoff(torch.float64)) if limit is None else limit
    for i, (a, b) in enumerate(zip(first, second)):
        if a is None or b is None or a.numel() == 0:
            continue
        a, b = a.cpu(), b.cpu()
        same = (a == b) | (torch.isnan(a) & torch.isnan(b))
        finite = torch.where(torch.isfinite(a), a, torch.zeros_like(a)).abs()
        apart = ~same & ~((a - b).abs() <= limit * (finite + finite.mean()))
        if bool(apart.any()):
            index = int(apart.reshape(-1).nonzero()[0])
            name = "output" if len(first) == 1 else f"output[{i}]"
            return (
                f"two evaluations of the forward at the same inputs differ ({name}{_where(a.shape, index)} is "
                f"{float(a.reshape(-1)[index]):.17g}, then {float(b.reshape(-1)[index]):.17g}): the target draws "
                "randomness the verifier cannot fix (a generator of its own; torch's global generators and framework "
                "modules' generator are fixed on every call), or updates state its output depends on (a power "
                "iteration, as spectral norm's in train mode), so finite differences measure the change, not the "
                "derivative, and no gradient was judged; draw from torch's global generator or seed the target's own "
                "generator on every call, and check a stateful module in eval mode"
            )
    return ""


def _a_priori_noise(start: list[Tensor | None], grads: Sequence[Tensor | None], n_terms: int) -> float:
    """A bound on the rounding error of phi itself at the outputs ``start``,
    :math:`u\\sqrt{n}(\\sum|g||y| + |\\phi|)`: the fallback when the outputs' own rounding cannot be measured."""
    spread = total = 0.0
    for y, g in zip(start, grads):
        if y is not None and g is not None:
            spread += float((y.abs() * g.double().abs()).sum())
            total += float((y * g.double()).sum())
    return unit_roundoff(torch.float64) * math.sqrt(n_terms) * (spread + abs(total))


def _subnormal_outputs(start: list[Tensor | None], grads: Sequence[Tensor | None]) -> str:
    """Why nothing can be judged when an output weighed by an upstream gradient holds subnormal numbers
    (below 2.2e-308, whose precision is absolute: a gradient through them is resolved to a few digits
    at best), else ""."""
    for i, (y, g) in enumerate(zip(start, grads)):
        if y is None or g is None or not y.is_floating_point() or y.is_complex():
            continue
        subnormal = _subnormal(y.detach().double())
        if bool(subnormal.any()):
            name = "output" if len(start) == 1 else f"output[{i}]"
            j = int(subnormal.reshape(-1).nonzero()[0])
            return (
                f"{name}{_where(y.shape, j)} is {float(y.reshape(-1)[j]):.3g}, a subnormal number (below 2.2e-308, "
                "where float64 keeps fewer digits the smaller the value): finite differences through it cannot "
                "resolve a gradient; check at inputs or arguments that keep the outputs normal (a spec's numbers "
                "from verification.strategies.floats(low, high), which draws 0 or magnitudes of at least 1e-100)"
            )
    return ""


def _subnormal(y: Tensor) -> Tensor:
    """Where the float64 values ``y`` are subnormal: nonzero and below 2.2e-308 in magnitude."""
    magnitude = y.abs()
    return (magnitude > 0) & (magnitude < torch.finfo(torch.float64).smallest_normal)


def _stored(y: Tensor) -> Tensor:
    """The rounding of storing each float64 value: u|y|, and for a subnormal one (where the precision
    is absolute) half the smallest subnormal. Exact zeros are taken as exact (ReLU's)."""
    u = unit_roundoff(torch.float64)
    return torch.where(_subnormal(y), torch.finfo(torch.float64).smallest_normal * u, u * y.abs())


def _named(ys: list[Tensor | None]) -> dict[str, Tensor]:
    """Outputs as the error model's named float64 tensors: ``y0``, ``y1``, ... (complex ones left out)."""
    return {f"y{i}": y.detach().double() for i, y in enumerate(ys) if y is not None and not y.is_complex()}


def _output_noise(
    target: Target,
    call: Call,
    base: list[Tensor | None],
    grads: Sequence[Tensor | None],
    generator: torch.Generator,
    upstream_drawn: bool,
    cache: dict[str, Any] | None = None,
) -> _Noise | None:
    """The rounding error of one evaluation of :math:`\\Delta\\phi = \\sum_k g_k \\Delta y_k` (see
    :class:`_Shifter`), whose terms err by :math:`|g_k| e_k`, :math:`|e_k| \\le 2\\varepsilon_k`: at most
    :math:`\\sum_k |g_k| 2\\varepsilon_k`. When the upstream gradients were drawn by the verifier
    (independent Gaussians, independent of the forward's rounding errors), :math:`\\sum_k g_k e_k` is
    itself Gaussian with deviation at most :math:`\\sigma_g \\sqrt{\\sum_k 4\\varepsilon_k^2}`, whatever
    the errors' correlation: that deviation is returned (the tolerance's ``safety`` factor then
    bounds it with high probability, as in Higham and Mary's probabilistic analysis).
    :math:`\\varepsilon_k` is the forward's rounding error in
    output element k, as the error model's estimator measures it (precision scaling and ulp jitter,
    the larger, floored at its mean: :func:`~verification.error_model.rounding_noise`), the largest
    over the point and two nearby ones (a single point's float32 error can be small by luck), and
    at least the rounding of storing it, :math:`u|y_k|`. It sees conditioning: an ill-conditioned
    forward (LayerNorm over two nearly equal values) errs far more than u|y|. None when the
    estimator cannot run (a target that cannot be copied or moved). ``base``: the outputs at ``call``."""
    if cache is not None and "epsilon" in cache:
        epsilon = cache["epsilon"]
    else:
        epsilon = _measured_rounding(target, call, base, generator)
        if cache is not None:
            cache["epsilon"] = epsilon
    if epsilon is None:
        return None
    bounds: list[tuple[Tensor, Tensor] | None] = []
    weights: list[Tensor | None] = []
    for i, (y, g) in enumerate(zip(base, grads)):
        if y is None or g is None:
            bounds.append(None)
            weights.append(None)
            continue
        value = epsilon.get(f"y{i}")
        stored = _stored(y.detach().double().cpu()).reshape(-1)
        if value is None or value.shape != y.shape:
            value = torch.zeros_like(stored)  # as error_model.estimated: nothing measured
        bounds.append((value.double().cpu().reshape(-1), stored))
        weights.append(g.double().cpu().reshape(-1))
    return _Noise(bounds, weights, upstream_drawn)


def _measured_rounding(
    target: Target, call: Call, base: list[Tensor | None], generator: torch.Generator
) -> dict[str, Tensor] | None:
    """Each output's measured rounding error, element by element (``y0``, ``y1``, ...; see
    :func:`_output_noise`), or None when the estimator cannot run. Independent of the upstream
    gradients: one measurement serves the combined check and each output checked alone."""
    names = [f"y{i}" for i, y in enumerate(base) if y is not None]
    epsilon: dict[str, Tensor] = {}
    low: list[Target] = []  # the float32 copy, made once (on first use: a failure there is the estimator's)
    for shift in (0.0, 1e-3, -1e-3):
        moved = call.with_tensors([x * (1 + shift) for x in call.tensors()])

        def run64(size: float, gen: torch.Generator | None, moved: Call = moved) -> dict[str, Tensor]:
            if not size or gen is None:
                return _named(outputs(target, moved))
            copy = target.copy()
            with torch.no_grad():
                for _, p in copy.parameters():
                    p.copy_(error_model.jitter(p, gen, size))
            jittered = moved.with_tensors([error_model.jitter(x, gen, size) for x in moved.tensors()])
            return _named(outputs(copy, jittered))

        def run32(moved: Call = moved) -> dict[str, Tensor]:
            if not low:
                low.append(target.copy(torch.float32))
            result = low[0].forward(moved.cast(torch.float32))
            # A forward that draws random numbers draws others in float32: not the same computation.
            return {} if result.random else _named(result.leaves)

        try:
            estimate = error_model.rounding_noise(run64, run32, generator)
        except Exception:  # a target that cannot be copied or moved: the bound alone
            return None
        for name in names:
            value = estimate.get(name)
            if value is None:
                return None
            epsilon[name] = value if name not in epsilon else torch.maximum(epsilon[name], value)
    return epsilon


class _Noise(NamedTuple):
    r"""The rounding error of one evaluation of :math:`\Delta\phi` (see :func:`_output_noise`), from
    each output element's measured rounding and the rounding of storing it (``bounds``: the pair,
    flattened, None for an output without an upstream gradient) and its upstream gradient
    (``weights``). An element's bound is :math:`2\varepsilon_k`: its measured rounding floored at
    the mean over the output elements counted (a measurement is not exact element by element: see
    :func:`~verification.error_model.estimated`), and at least the rounding of storing it."""

    bounds: list[tuple[Tensor, Tensor] | None]
    weights: list[Tensor | None]
    drawn: bool  # the upstream gradients are the verifier's independent Gaussians

    def total(self) -> float:
        """Every output element's rounding counted."""
        return self.restricted(None)

    def restricted(self, masks: Sequence[Tensor | None] | None, rest: float = 0.0) -> float:
        """Only the output elements in ``masks`` (one flat boolean tensor per output; None: all of
        that output) counted in full, their measured rounding floored at their own mean; the
        others as in the whole output, scaled by ``rest``."""
        noise, deviations = 0.0, []
        for i, (pair, g) in enumerate(zip(self.bounds, self.weights)):
            if pair is None or g is None:
                continue
            measured, stored = pair
            bound = 2 * torch.maximum(measured + measured.mean(), stored) if measured.numel() else stored
            mask = None if masks is None else masks[i]
            if mask is not None:
                counted = measured[mask]
                floor = counted.mean() if counted.numel() else measured.new_zeros(())
                bound = torch.where(mask, 2 * torch.maximum(measured + floor, stored), bound * rest)
            if self.drawn:
                if g.numel() == 0:
                    continue
                deviations.append(_root_sum_square(g) / math.sqrt(g.numel()) * _root_sum_square(bound))
            else:
                noise += float((g.abs() * bound).sum())
        return math.hypot(*deviations) if self.drawn else noise  # variances add


def _step_size(delta: Tensor, index: int) -> float:
    """|step| of a shift of one element (``index`` >= 0) by a 0-d ``delta``; 0 for any other shift."""
    return abs(float(delta)) if index >= 0 and delta.numel() == 1 else 0.0


def _root_sum_square(v: Tensor) -> float:
    """sqrt(sum v^2), scaled by the largest |v| first: finite wherever the result is (inputs near
    1e200 square beyond float64's range)."""
    largest = float(v.abs().max()) if v.numel() else 0.0
    if largest == 0.0 or not math.isfinite(largest):
        return largest
    return largest * float((v / largest).square().sum().sqrt())


def richardson(f: Callable[[float], float], h: float) -> tuple[float, float, list[tuple[float, float]]]:
    """(R, |R - R_2|, values): the twice-extrapolated central difference of ``f`` at 0, its truncation
    estimate, and the values f(-s), f(s) it used at s = h, h/2, h/4 (for :func:`kink`)."""
    values = [(f(-s), f(s)) for s in (h, h / 2, h / 4)]
    d = [(right - left) / (2 * s) for (left, right), s in zip(values, (h, h / 2, h / 4))]
    r1 = (4 * d[1] - d[0]) / 3
    r2 = (4 * d[2] - d[1]) / 3
    r = (16 * r2 - r1) / 15
    return r, abs(r - r2), values


def kink(values: list[tuple[float, float]], f0: float, h: float, tolerance: float) -> tuple[float, float] | None:
    """(left, right) one-sided difference quotients at 0 when they jump apart (a kink: their gap
    stays as the step halves, beyond ``tolerance``), else None (smooth there), from the values
    f(-s), f(s) at s = h, h/2, h/4 (see :func:`richardson`) and f0 = f(0).

    At a kink no derivative exists: a central difference gives the mean of the two slopes
    (ReLU at 0: 1/2), while a backward pass picks one of them, or a value between, by convention."""
    slopes = [((f0 - left) / s, (right - f0) / s) for (left, right), s in zip(values[1:], (h / 2, h / 4))]
    gap, gap_half = slopes[0][1] - slopes[0][0], slopes[1][1] - slopes[1][0]
    if abs(gap_half) > tolerance and abs(gap_half) > 0.75 * abs(gap):  # a smooth gap halves with the step
        return slopes[1]
    return None


def _unsettled_note(name: str, count: int, first: str, why: str, value: float) -> str:
    return (
        f"{count} element(s) or direction(s) of {name} are resolved by no step the check takes (the first, "
        f"{first}, backward {value:.9g}: {why}): the function changes faster than the steps resolve, as near a "
        "pole or a nearly singular matrix (an ill-conditioned solve or inverse), so the gradient there was not "
        "judged; check at better-conditioned inputs, or give a reference (the twin check needs no differences)"
    )


def _kink_note(name: str, count: int, what: str, first: str, left: float, right: float, value: float) -> str:
    between = ", between them" if min(left, right) <= value <= max(left, right) else ""
    return (
        f"{count} {what} of {name} sit on a kink (the first, {first}: one-sided derivatives {left:.6g} and "
        f"{right:.6g}, backward {value:.6g}{between}): no derivative exists there, so the backward's choice cannot "
        "be judged; move the inputs off the kink (verification.away_from) to check it"
    )


def _accurate_sum(terms: Tensor) -> tuple[float, float]:
    """(the sum of ``terms``, a bound on its rounding error). Up to ``EXACT_SUM_LIMIT`` terms: runs of
    ``CHUNK`` consecutive terms summed by torch (in any order at most :math:`(c - 1)u\\sum|terms|`,
    recursive summation's worst case), then those partial sums correctly rounded (``math.fsum``);
    the bound is :math:`(c - 1)u\\sum|terms| + u|sum|`. Beyond, torch's sum and Higham and Mary's
    probabilistic :math:`u\\sqrt{n}\\sum|terms|`. Infinities of both signs, or an overflow on the
    way, give torch's sum (inf or NaN, which the comparison then leaves unjudged)."""
    u = unit_roundoff(torch.float64)
    n = terms.numel()
    if n > EXACT_SUM_LIMIT:
        return float(terms.sum()), u * math.sqrt(n) * float(terms.abs().sum())
    spread = 0.0
    if n > CHUNKED_ABOVE:  # (below, one fsum over the list costs less than the torch operations)
        padded = torch.cat([terms, terms.new_zeros((-n) % CHUNK)]).view(-1, CHUNK)
        spread = (CHUNK - 1) * u * float(padded.abs().sum())
        terms = padded.sum(1)
    try:
        total = math.fsum(terms.cpu().tolist())
    except (ValueError, OverflowError):  # inf - inf, or an intermediate overflow
        return float(terms.sum()), math.inf
    return total, spread + u * abs(total)


class _Shifter:
    """Evaluates :math:`\\Delta\\phi = \\sum_k \\langle g_k, y_k(\\text{shifted}) - y_k\\rangle` with one tensor
    (an input or a parameter) shifted: the difference taken output element by output element,
    before the sum. Differencing phi itself would subtract two sums over every output, each
    rounded at the scale of :math:`\\sum|g||y|`, a cancellation that grows with the output's size;
    here the outputs the shift leaves unchanged contribute exactly 0 and the others their own
    rounding error only, so one element's error is seen even in a tensor of many thousands."""

    def __init__(
        self,
        target: Target,
        call: Call,
        start: list[Tensor | None],
        grads: Sequence[Tensor | None],
        position: int | None,
        tensor: Tensor,
        noise: _Noise | None = None,
    ):
        """``start``: the outputs at ``call``, unshifted (see :func:`outputs`); ``noise``: their
        rounding, element by element, when measured (see :meth:`noise_of_changed`)."""
        self.target, self.call, self.start, self.position, self.tensor = target, call, start, position, tensor
        self.flat = tensor.detach().double().cpu().reshape(-1)  # its values, for the steps and their rounding
        largest = float(self.flat.abs().max()) if self.flat.numel() else 0.0
        # The tensor's characteristic scale: 1, or its largest magnitude when that is below 1 (and
        # not 0). Steps are eps times the larger of it and |x_j|: a tensor of values near 1e-9 is
        # stepped at its own scale, not across a hundred thousand times its values.
        self.unit = min(1.0, largest) if largest > 0.0 else 1.0
        self.probe_scale = max(self.unit, largest)
        self.weights = [None if g is None else g.detach().double() for g in grads]
        self.summation = 0.0  # the largest rounding bound of the final sums since the last take_summation()
        self.noise = noise
        # Per output, the elements that any evaluation since the last take_changed() changed.
        self.changed: list[Tensor | None] = [None] * len(start)
        self.column = 0.0  # the largest sum |g_k (y_k - y_k^0)| / |step| since the last take_column()

    def base(self) -> float:
        """The change at the unshifted point: exactly 0."""
        return 0.0

    def take_summation(self) -> float:
        """The largest rounding bound of the sums :math:`\\sum_k g_k (y_k - y_k^0)` evaluated since the
        last call (see :func:`_accurate_sum`), and start afresh."""
        value, self.summation = self.summation, 0.0
        return value

    def take_changed(self) -> list[Tensor | None]:
        """Per output, the elements changed by the evaluations since the last call (flat, on the
        outputs' device; None for an output without an upstream gradient, or for all of them without
        a measured noise, which is all they are for), and start afresh."""
        changed, self.changed = self.changed, [None] * len(self.start)
        return changed

    def take_column(self) -> float:
        r"""The largest :math:`\sum_k |g_k (y_k - y_k^0)| / |\text{step}|` of the evaluations since
        the last call (of one element's steps: :math:`\sum_k |g_k \partial y_k / \partial x_j|`,
        the magnitude of the terms the backward sums into that element's gradient), and start afresh."""
        value, self.column = self.column, 0.0
        return value

    def noise_of_changed(self, changed: Sequence[Tensor | None], rest: float) -> float | None:
        r"""The rounding of one evaluation of :math:`\Delta\phi` counting the output elements in
        ``changed`` in full and the others scaled by ``rest``; None without a measured noise."""
        if self.noise is None:
            return None
        masks = [
            None if pair is None else (c.cpu() if c is not None else torch.zeros_like(pair[1], dtype=torch.bool))
            for pair, c in zip(self.noise.bounds, changed)
        ]
        return self.noise.restricted(masks, rest)

    def _change(self, call: Call, step: float = 0.0) -> float:
        terms = []
        for i, (y, y0, g) in enumerate(zip(outputs(self.target, call), self.start, self.weights)):
            if y is None or y0 is None or g is None:
                continue
            difference = torch.sub(y, y0)
            if self.noise is not None:  # kept on the device: no copy to the host per evaluation
                moved = (difference != 0).reshape(-1)  # NaN too
                self.changed[i] = moved if self.changed[i] is None else self.changed[i] | moved
            terms.append(difference.mul_(g).reshape(-1))
        if not terms:
            return 0.0
        flat = terms[0] if len(terms) == 1 else torch.cat(terms)
        if flat.numel() > CHUNKED_ABOVE:
            flat = flat[flat != 0]  # the outputs a shift leaves unchanged: most of them, for a local one
        total, error = _accurate_sum(flat)
        self.summation = max(self.summation, error)
        if step > 0.0:
            self.column = max(self.column, float(flat.abs().sum()) / step)
        return total

    def __call__(self, delta: Tensor, index: int = -1) -> float:
        if self.position is not None:  # an input: a shifted copy in the call
            shifted = self.tensor.detach().clone()
            if index >= 0:
                shifted[_unravel(index, shifted.shape)] += delta
            else:
                shifted += delta
            return self._change(self.call.replace({self.position: shifted}), _step_size(delta, index))
        original = self.tensor.detach().clone()
        try:
            with torch.no_grad():
                if index >= 0:  # in row-major order whatever its strides (a param() may hand out w.T)
                    self.tensor[_unravel(index, self.tensor.shape)] += delta
                else:
                    self.tensor += delta
            return self._change(self.call, _step_size(delta, index))
        finally:
            with torch.no_grad():
                self.tensor.copy_(original)


def compare(
    result: CheckResult,
    target: Target,
    call: Call,
    grads: Sequence[Tensor | None],
    gradients: Gradients,
    options: Options,
    generator: torch.Generator,
    upstream_drawn: bool = False,
    derivative: Derivative | None = None,
    only: Collection[int] | None = None,
    rounding: dict[str, Any] | None = None,
    invariant: dict[str, Tensor] | None = None,
) -> None:
    """Merge into ``result`` the comparison of ``gradients`` with finite differences of ``target``.
    ``invariant``: filled, per tensor compared element by element, with the elements no weighed
    output changes with at all (bit for bit at every step of their differences).
    ``upstream_drawn``: ``grads`` are independent Gaussians drawn by the verifier, not the caller's.
    ``only``: the positions (in ``gradients.all()``) of the tensors to compare; all by default.
    ``rounding``: a dict shared by comparisons at the same ``call`` (the outputs' measured rounding
    is kept there after the first, whatever the upstream gradients).
    ``derivative``: the derivative under test, when it is not ``gradients`` (forward mode: see
    :class:`Derivative`); ``gradients`` then hold its elements where computed, else the backward's
    gradients, which set the tolerances' scales only."""
    u = unit_roundoff(torch.float64)
    sizes = [x.numel() for x in call.tensors()] + [p.numel() for _, p in target.parameters()]
    start = outputs(target, call)  # the unshifted point's outputs, which every shift is measured from
    again = outputs(target, call)
    changed = _changes_between_calls(start, again) or _subnormal_outputs(start, grads)
    if changed:
        result.inconclusive = changed
        return
    n_terms = max([*sizes, *(y.numel() for y in start if y is not None)])
    measured = _output_noise(target, call, start, grads, generator, upstream_drawn, rounding)
    # Without a measurement, a bound on phi's own rounding (probabilistic rounding error analysis,
    # Higham & Mary 2019: n terms err by about sqrt(n) u sum|terms|), twice: two evaluations differ.
    delta = measured.total() if measured is not None else 2 * _a_priori_noise(start, grads, n_terms)
    # A change between two calls at the same point too small to see element by element can still
    # exceed the noise every difference quotient allows for (divided by the step, it is the
    # quotient's error), and the measured noise then includes it. Two calls of a forward whose only
    # nondeterminism is its rounding differ in phi by less than twice phi's rounding bound; beyond
    # ``safety`` times that, the forward changes between calls (a state it updates and reads:
    # outputs moved by one part in 1e11 per call were otherwise called kinks), unless no element
    # moved by more than ``nondet_tol``: the nondeterminism the caller declared (atomic adds over
    # terms that cancel can exceed the rounding bound of their sum), which the measured noise covers.
    drift = _projected(start, grads) - _projected(again, grads)
    moved = max((float((a - b).abs().max()) for a, b in zip(start, again) if a is not None and a.numel()), default=0.0)
    if abs(drift) > options.safety * 2 * _a_priori_noise(start, grads, n_terms) and moved > options.nondet_tol:
        result.inconclusive = _changes_between_calls(start, again, limit=0.0) or (
            f"two evaluations of the forward at the same inputs differ (phi = sum <g, y> moved by {abs(drift):.3g}): "
            "finite differences would measure the change, not the derivative, and no gradient was judged"
        )
        return
    # The analytic gradients' rounding is floored at the case's gradient scale (a gradient that
    # vanishes in exact arithmetic carries the noise of the others); not at the upstream gradients',
    # which a Jacobian far from 1 (inputs near 1e-9) puts orders of magnitude away from them.
    scale = max((float(g.double().abs().mean()) for g in gradients.all() if g is not None and g.numel()), default=0.0)
    robust_scale = max((_typical(g) for g in gradients.all() if g is not None and g.numel()), default=0.0)

    items = [(f"input[{i}]", i, x) for i, x in zip(call.diff, call.tensors())]
    items += [(name, None, p) for name, p in target.parameters()]
    for index, ((name, position, tensor), analytic) in enumerate(zip(items, gradients.all())):
        if only is not None and index not in only:
            continue
        missing = analytic is None  # torch's convention for a zero gradient: judged as zeros
        if analytic is None:
            analytic = torch.zeros_like(tensor)
        before = result.ok
        if tuple(analytic.shape) != tuple(tensor.shape):
            result.fail(f"the gradient of {name} has shape {tuple(analytic.shape)}, expected {tuple(tensor.shape)}")
            continue
        shift = _Shifter(target, call, start, grads, position, tensor, measured)
        a = analytic.detach().double().cpu()
        below_range = _underflows(name, shift, a, options)
        if below_range:
            result.inconclusive = result.inconclusive or below_range
            continue
        project = None if derivative is None else functools.partial(derivative.project, name)
        own = rounding_tolerance(a, n_terms, u, options.safety, scale)
        own_at = _OwnRounding(a, options.safety * u * n_terms, scale, robust_scale)
        if tensor.numel() <= options.full_jacobian_limit:
            unmoved = torch.zeros(tensor.numel(), dtype=torch.bool)
            _elementwise(
                result, name, shift, tensor, a, own, delta, u, options, project=project, own_at=own_at, unmoved=unmoved
            )
            if invariant is not None and derivative is None:
                invariant[name] = unmoved.reshape(tensor.shape)
        else:
            # Each element's own rounding at the probabilistic rate u sqrt(n) (Higham and Mary), where the
            # element-by-element comparison allows the worst case u n: see _probes.
            probe_own = (own / math.sqrt(n_terms)).expand(tensor.shape).reshape(-1)
            support = None
            outliers = _outliers(a)
            if outliers is not None:
                # A few elements orders of magnitude above the rest (next to a pole) would set every
                # probe's scale: they are compared one by one, and the probes see the rest at theirs.
                _elementwise(result, name, shift, tensor, a, own, delta, u, options, outliers, project, own_at)
                support = torch.ones(tensor.numel(), dtype=torch.bool)
                support[outliers] = False
                probe_own = own_at.coefficient * (a.abs().reshape(-1) + own_at.robust) / math.sqrt(n_terms)
            failed, direction = _probes(
                result, name, shift, tensor, a, probe_own, delta, u, options, generator, project, support
            )
            located, element = None, None
            if failed and tensor.numel() <= LOCATE_LIMIT and (derivative is None or derivative.elementwise(name)):
                located = CheckResult(result.name)
                _elementwise(located, name, shift, tensor, a, own, delta, u, options, project=project, own_at=own_at)
            elif direction is not None:  # too large to compare every element: halve the failing probe
                element = _bisect(shift, tensor, a, probe_own, direction, delta, u, options, project)
                if element is not None:
                    located = CheckResult(result.name)
                    if derivative is not None:  # that element's own value
                        a = a.clone(memory_format=torch.contiguous_format)
                        a.view(-1)[element] = derivative.element(name, element)
                    _elementwise(located, name, shift, tensor, a, own, delta, u, options, [element], project, own_at)
            if located is not None:
                if not located.ok:  # name the wrong element rather than the probe
                    result.ok = False
                    result.detail = located.detail
                    result.worst_error = max(result.worst_error, located.worst_error)
                    result.worst_ratio = max(result.worst_ratio, located.worst_ratio)
                elif located.inconclusive:  # the elements name the kink better than a probe
                    result.inconclusive = located.inconclusive
                elif element is not None:  # the probe's verdict stands; the element is the suspect
                    result.detail += (
                        f"; halving the failing probe points at {located.detail} (within the tolerance of one "
                        "element's own difference, whose step is smaller than the probe's)"
                    )
        if before and not result.ok and not missing and _computed_in_float32(analytic, tensor):
            result.detail += (
                f"; every element of the gradient of {name} is a float32 number, although {name} is "
                f"{str(tensor.dtype).removeprefix('torch.')}: the backward computes in float32 (autograd casts a "
                "gradient to its input's dtype without a word)"
            )
        if missing and before and not result.ok:
            what = "input" if position is not None else "parameter"
            result.detail = (
                f"backward returned no gradient (None) for the {what} {name}, which is differentiated here (it "
                "requires grad, or no input does and so every floating-point one is), but the output depends on it: "
                + result.detail.removeprefix(f"the gradient of {name} is zero everywhere (never written?); ")
            )


OUTLIER = 100.0  # |gradient| beyond this many times the median nonzero |gradient|: an outlier (see _typical)


def _magnitude_and_outlier_level(gradient: Tensor) -> tuple[Tensor, float | None]:
    """|gradient|, flat, and :data:`OUTLIER` times its median nonzero value (None when the gradient
    is zero or not finite: no element is an outlier)."""
    magnitude = gradient.detach().double().abs().reshape(-1).cpu()
    nonzero = magnitude[magnitude != 0]
    if not nonzero.numel() or not bool(torch.isfinite(nonzero).all()):
        return magnitude, None
    return magnitude, OUTLIER * float(nonzero.median())


def _typical(gradient: Tensor) -> float:
    """The mean |gradient| with each element clipped at :data:`OUTLIER` times the median nonzero
    |gradient|: the mean, unless a few elements (next to a pole) are orders of magnitude above the
    rest; 0 for a zero gradient; the mean when it is not finite."""
    magnitude, level = _magnitude_and_outlier_level(gradient)
    if level is None:
        return float(magnitude.mean()) if magnitude.numel() else 0.0
    return float(magnitude.clamp(max=level).mean())


OUTLIERS_COMPARED = 64  # at most this many outliers (see _typical) are compared one by one beside the probes


def _outliers(gradient: Tensor) -> list[int] | None:
    """The flat indices of the elements of ``gradient`` beyond :data:`OUTLIER` times its median
    nonzero magnitude, when there are some and no more than :data:`OUTLIERS_COMPARED`; else None."""
    magnitude, level = _magnitude_and_outlier_level(gradient)
    if level is None:
        return None
    beyond = (magnitude > level).nonzero().reshape(-1)
    if not 0 < beyond.numel() <= OUTLIERS_COMPARED:
        return None
    return beyond.tolist()


class _OwnRounding:
    r"""An element's own rounding allowance, from the magnitude of the terms its gradient sums.

    :func:`rounding_tolerance` allows each element :math:`c(|a_j| + F)`, :math:`c = s u n`, with
    :math:`F` the larger of the tensor's and the case's mean |gradient|: a gradient that vanishes
    by cancellation carries the rounding of terms as large as the others'. Next to a pole the mean
    is one element's: x = [1e-6, 0.3, -0.7, 0.5] through 1/x gives gradients [-1e12, -11, -2, -4],
    F = 2.5e11, and every other element was allowed an error of 3e-4, a gradient of 11 wrong by
    one part in a million passing. Here :math:`F` is lowered for element j to the larger of

    * :math:`S_j = \sum_k |g_k \partial y_k / \partial x_j|`, measured by its own differences
      (:meth:`_Shifter.take_column`): the magnitude of the terms the backward sums into that
      element (a row of G W^T whose terms cancel is covered by them), and
    * the same means with outliers clipped (:func:`_typical`): the rounding carried from terms
      inside a composite (paths that cancel) is covered as before wherever no outlier sits.

    It is never raised above :math:`F`: only tensors with outliers are judged more tightly."""

    def __init__(self, analytic: Tensor, coefficient: float, scale: float, robust_scale: float) -> None:
        flat = analytic.reshape(-1)
        self.magnitude = flat.abs()
        self.coefficient = coefficient
        mean = float(self.magnitude.mean()) if flat.numel() else 0.0
        self.floor = max(mean, scale)
        self.robust = max(_typical(flat), robust_scale)

    def __call__(self, j: int, column: float) -> float:
        floor = min(self.floor, max(column, self.robust)) if math.isfinite(column) else self.floor
        return self.coefficient * (float(self.magnitude[j]) + floor)


def _underflows(name: str, shift: _Shifter, analytic: Tensor, options: Options) -> str:
    """Why no difference of ``name`` can show its gradient, when the gradient times the step is below
    float64's smallest normal number and a shift by the steps leaves the outputs exactly unchanged
    (x^2 at 1e-300 underflows to 0 at every step), else "". One evaluation, only for such gradients."""
    steps = options.eps * torch.clamp(shift.flat.abs(), min=shift.unit)
    flat = analytic.reshape(-1)
    # In base-2 logarithms: the product itself underflows (a gradient of 1e-300 times a step of 1e-304).
    exponent = float((flat.abs().log2() + steps.log2()).max()) if flat.numel() else -math.inf
    if not -math.inf < exponent < math.log2(torch.finfo(torch.float64).smallest_normal):
        return ""
    moved = shift(steps.to(shift.tensor.dtype).to(shift.tensor.device).reshape(shift.tensor.shape))
    shift.take_changed()
    shift.take_summation()
    if moved != 0.0:
        return ""
    return (
        f"the gradient of {name} times its step is at most 2^{exponent:.0f}, below float64's smallest normal "
        f"number (2^-1022, 2.2e-308), and shifting {name} by its steps leaves every output exactly unchanged: a "
        "change that small underflows, so no finite difference can show it; check at inputs whose outputs' "
        "changes stay normal"
    )


def _unused(name: str) -> str:
    """Why every finite difference of ``name`` is exactly 0 while its gradient is not."""
    what = f"the outputs do not change at all when {name} is shifted (every finite difference is exactly 0)"
    if name.startswith("input["):
        return f"{what}, yet backward gives it a gradient"
    return (
        f"{what}, yet backward gives it a gradient: if forward reads this parameter, param() hands out a copy of "
        "it (a clone, a new tensor) rather than the tensor forward uses, and an optimizer's update through "
        "param() would not reach the module either"
    )


def _elementwise(
    result: CheckResult,
    name: str,
    shift: _Shifter,
    tensor: Tensor,
    analytic: Tensor,
    own: Tensor,
    delta: float,
    u: float,
    options: Options,
    indices: Sequence[int] | None = None,
    project: Projector | None = None,
    own_at: Callable[[int, float], float] | None = None,
    unmoved: Tensor | None = None,
) -> None:
    """One central difference per element (of ``indices`` only, when given: the others are not compared).
    ``unmoved``: a flat boolean tensor, set True at the elements whose differences moved no weighed output.
    ``project``: given when ``analytic`` holds forward-mode derivatives (it names them so).
    ``own_at(j, column)``: element j's own rounding allowance given the magnitude of its terms
    (:meth:`_Shifter.take_column`), where lower than ``own``'s (see :class:`_OwnRounding`)."""
    flat = shift.flat
    a, own_flat = analytic.reshape(-1), own.expand(tensor.shape).reshape(-1).clone()
    numeric = a.clone()
    bound = torch.zeros_like(numeric)
    kinks: list[tuple[int, float, float]] = []
    unsettled: list[tuple[int, str]] = []
    f0 = shift.base()
    for j in range(tensor.numel()) if indices is None else indices:
        h = options.eps * max(shift.unit, abs(float(flat[j])))

        def f(step: float, j: int = j) -> float:
            return shift(torch.tensor(step, dtype=tensor.dtype, device=tensor.device), j)

        def difference(step: float, j: int = j, f: Callable[[float], float] = f) -> _Difference:
            value, truncation, values = richardson(f, step)
            stepping = 8 * u * abs(float(flat[j])) / step * abs(value)
            summation = shift.take_summation()
            rounding = 7 * (delta + summation) / step
            bound = options.safety * (rounding + truncation + stepping)
            tolerance = bound + float(own_flat[j])
            coarse = options.safety * truncation > bound / 2
            terms = _Terms(step, options.safety * truncation, options.safety * stepping, summation, tuple(values))
            return _Difference(value, tolerance, bound, kink(values, f0, step, tolerance), coarse, terms)

        shift.take_changed()
        shift.take_column()
        judged = _judged(float(a[j]), h, difference)
        if own_at is not None:
            column = shift.take_column()
            if unmoved is not None:
                unmoved[j] = column == 0.0  # sum_k |g_k (y_k - y_k^0)| over every step: no output moved
            tight = own_at(j, column)
            if tight < float(own_flat[j]):
                judged = judged._replace(tolerance=judged.tolerance - float(own_flat[j]) + tight)
                own_flat[j] = tight
        scale = max(shift.unit, abs(float(flat[j])))
        judged = _sharpened(judged, float(a[j]), float(own_flat[j]), shift, scale, f, delta, options)
        numeric[j], bound[j], tolerance, sides = judged.value, judged.bound, judged.tolerance, judged.sides
        if judged.unsettled is not None:
            numeric[j] = a[j]  # not judged: no difference settled (see _judged)
            unsettled.append((j, judged.unsettled))
        elif sides is not None and min(sides) - tolerance <= float(a[j]) <= max(sides) + tolerance:
            numeric[j] = a[j]  # not judged: any value between the one-sided slopes is a valid choice
            kinks.append((j, *sides))
    if unsettled and not result.inconclusive:
        j, why = unsettled[0]
        result.inconclusive = _unsettled_note(
            name, len(unsettled), f"{name}{_where(tensor.shape, j)}", why, float(a[j])
        )
    if kinks and not result.inconclusive:
        j, left, right = kinks[0]
        first = f"{name}{_where(tensor.shape, j)}"
        result.inconclusive = _kink_note(name, len(kinks), "element(s)", first, left, right, float(a[j]))
    numeric = numeric.reshape(tensor.shape)
    own = own_flat.reshape(tensor.shape)
    shown_before, judged_all = result.detail, not result.inconclusive
    label = "backward" if project is None else "jvp"
    result.merge(name, analytic, numeric, bound.reshape(tensor.shape) + own, (label, "finite difference"))
    # Said of the tensor the report shows: the first to fail, or a later one failing by more.
    shown = not result.ok and result.detail != shown_before
    if shown and float(analytic.abs().max()) == 0.0:
        what = f"the gradient of {name} is zero everywhere (never written?)"
        if project is not None:
            what = f"the jvp is zero along every element of {name} (its tangent ignored?)"
        result.detail = f"{what}; " + result.detail
    elif shown and indices is None and judged_all and float(numeric.abs().max()) == 0.0:
        result.detail = f"{_unused(name)}; " + result.detail
    elif shown and indices is None and _symmetric_part(analytic, numeric, bound.reshape(tensor.shape) + own):
        result.detail += (
            f"; the backward's gradient of {name} is the symmetric part of the finite differences' (G + G^T) / 2: "
            "the function reads one triangle of a matrix it takes to be symmetric (torch.linalg.cholesky, eigh), "
            "and its backward follows the symmetric convention: check it on a symmetric input, "
            "lambda a: f((a + a.mT) / 2)"
        )
    if judged_all and result.inconclusive:
        result.inconclusive += _step_past_zero(name, tensor.shape, flat, numeric.reshape(-1), options.eps, shift.unit)


def _symmetric_part(analytic: Tensor, numeric: Tensor, tolerance: Tensor) -> bool:
    """Whether ``analytic`` (square in its last two dimensions) is, within ``tolerance``, the symmetric
    part of the finite-difference gradient ``numeric`` (asked once the two have been found to differ)."""
    if analytic.dim() < 2 or analytic.shape[-1] != analytic.shape[-2] or analytic.shape[-1] < 2:
        return False
    symmetric = (numeric + numeric.transpose(-1, -2)) / 2
    close = (analytic - symmetric).abs() <= tolerance
    return bool(torch.isfinite(symmetric).all()) and bool(close.all())


def _computed_in_float32(gradient: Tensor, tensor: Tensor) -> bool:
    """Whether a float64 input's gradient holds float32 numbers only, and not merely short ones (small
    integers, a few bits, which a correct float64 gradient may hold too): the mark of a backward that
    computed in float32."""
    if tensor.dtype != torch.float64 or gradient.dtype != torch.float64 or gradient.numel() < 4:
        return False
    g = gradient.detach()
    return torch.equal(g, g.float().double()) and not torch.equal(g, g.bfloat16().double())


def _step_past_zero(name: str, shape: torch.Size, flat: Tensor, numeric: Tensor, eps: float, unit: float) -> str:
    """A hint, when the first element without a finite difference lies closer to 0 than its step
    h = eps max(c, |x|) (c: the tensor's scale, see :class:`_Shifter`): a domain edge at 0 (log,
    sqrt, a reciprocal) is then inside the differences, and a step below |x| stays on its side.
    "" otherwise."""
    missing = (~torch.isfinite(numeric.cpu())).nonzero()
    if missing.numel() == 0:
        return ""
    j = int(missing[0])
    x = float(flat[j])
    h = eps * max(unit, abs(x))
    if not math.isfinite(x) or x == 0.0 or abs(x) >= h:
        return ""
    return (
        f"; {name}{_where(shape, j)} = {x:.3g} lies within the step h = eps max({unit:.3g}, |x|) = {h:.3g} of 0 "
        f"(the step follows the tensor's largest magnitude, capped at 1), so its differences cross 0: if the "
        f"function is defined on one side of 0 only (log, sqrt), a smaller step checks it "
        f"(eps={10 ** math.floor(math.log10(abs(x) / unit / 10)):.0e})"
    )


# A central difference whose step reaches past a point where the function is not smooth (an element
# 3e-5 from ReLU's kink, stepped by 1e-4; in a probe, any element nearer its kink than its share of
# the step) mixes the two sides, and Richardson's error estimate need not show it. A wrong
# derivative disagrees with the differences at every step, and those agree with one another; a
# difference that reached past such a point disagrees with the same difference at a smaller step.
# So a failing difference is taken again at steps 16 and 256 times smaller, and a smaller step's
# difference replaces it only when it agrees with the derivative under test and disagrees with the
# first beyond both tolerances. (Its own tolerance is larger, by the step ratio for the rounding
# terms: in float64 with eps = 1e-4, still orders of magnitude below one part in a million.)
# A difference whose one-sided slopes jump apart (a kink within the step) is taken again at the
# smaller steps too: a kink near the point but not at it (a ReLU input 3e-5 from 0; in a probe of
# a network with thousands of ReLUs, whichever pre-activation is nearest 0 along the direction)
# is passed by one of them, whose difference, smooth there, then judges the derivative like any
# other. A kink at the point itself stays within every step, and stays unjudged. So is a coarse
# difference, whose truncation estimate is most of its tolerance (a probe that crosses several
# kinks whose jumps are each too small to tell apart): the sharpest kink-free difference that
# agrees with the derivative under test passes it, which keeps a correct ReLU network's probes as
# sharp as a smooth one's; it fails only where both smaller steps are kink-free and agree with
# each other (a smaller step can reach past a kink of its own that its estimates miss).
SMALLER_STEPS = (1 / 16, 1 / 256)
# Where neither settles it, two steps shorter still: their precise differences may confirm a failure.
FURTHER_STEPS = (1 / 4096, 1 / 65536)


class _Terms(NamedTuple):
    """What an element's difference bound is made of, but the noise: its step, its truncation and
    stepping terms (times ``safety``), the final sums' rounding, and the values f(-s), f(s) taken."""

    step: float
    truncation: float
    stepping: float
    summation: float
    values: tuple[tuple[float, float], ...]


class _Difference(NamedTuple):
    """A finite difference: its value, its tolerance (``bound`` plus the analytic value's own
    rounding), ``bound`` alone, the one-sided slopes where it sits on a kink (else None), and
    whether its truncation estimate is most of its bound (``coarse``: the step is too long for the
    function there, as where it crosses kinks too small to tell apart); ``terms``: the parts of an
    element's bound (see :func:`_sharpened`); ``unsettled``: why no step resolves the function
    there, when none does (see :func:`_judged`), else None."""

    value: float
    tolerance: float
    bound: float
    sides: tuple[float, float] | None
    coarse: bool = False
    terms: _Terms | None = None
    unsettled: str | None = None


# A difference's rounding term counts every output element's rounding error, as if every output
# moved with the element shifted. Those a shift leaves bit for bit unchanged contribute exactly 0
# to the difference, unless they depend on the element by less than their own rounding over the
# step; two large steps tell which. An output element y_k that steps of S = s/2 and -S' = -11s/32
# (s: the element's scale, max(c, |x_j|)) leave unchanged too has |y_k(x + S) - y_k(x)| and
# |y_k(x - S') - y_k(x)| at most 2 eps_k, so (its second derivative eliminated between the two)
# |dy_k/dx_j| <= 2 eps_k (S^2 + S'^2) / (S S' (S + S')) < 2 eps_k / S': its part in the
# difference's error is at most the step's rounding charge 7 * 2 eps_k / h scaled by
# h / (7 S'). (A symmetric function, x^2 at x = -s/4, can return the same value after one step,
# not after both.) So an element whose difference passes with every output's rounding counted is
# judged again with the outputs that move counted in full and the others scaled so: y = x^2 at
# [1e-4, 0.7, -1.3, 1000, 0.4] with the first gradient's sign flipped passed at a tolerance of
# 1.5e-3, twelve times the gradient itself, set by the rounding of the output 1e6 that a step of
# the first element never touches.
LARGE_STEPS = (1 / 2, -11 / 32)


def _sharpened(
    judged: _Difference,
    analytic: float,
    own: float,
    shift: _Shifter,
    scale: float,
    f: Callable[[float], float],
    delta: float,
    options: Options,
) -> _Difference:
    """``judged`` (a passing, precise difference of ``f``, an element's or a probe's, whose steps
    of ``scale`` move the tensor across its whole range) judged with the rounding of the outputs
    that depend on what ``f`` moves only (see LARGE_STEPS): returned with that tighter tolerance
    when ``analytic`` fails it, else unchanged. Two more evaluations, only then."""
    terms = judged.terms
    if terms is None or judged.sides is not None or judged.coarse or abs(analytic - judged.value) > judged.tolerance:
        return judged
    changed = shift.take_changed()

    def bound(noise: float | None) -> float | None:
        if noise is None or noise >= delta:
            return None
        return options.safety * 7 * (noise + terms.summation) / terms.step + terms.truncation + terms.stepping

    tight = bound(shift.noise_of_changed(changed, 0.0))
    if tight is None or abs(analytic - judged.value) <= tight + own:
        return judged
    try:
        for fraction in LARGE_STEPS:
            f(fraction * scale)
    except Exception:  # a forward that refuses the larger step: the outputs it reads stay unknown
        shift.take_changed()
        shift.take_summation()
        return judged
    moved = [a if b is None else (b if a is None else a | b) for a, b in zip(changed, shift.take_changed())]
    shift.take_summation()
    rest = terms.step / (7 * scale * min(abs(x) for x in LARGE_STEPS))
    tight = bound(shift.noise_of_changed(moved, rest))
    if tight is None or abs(analytic - judged.value) <= tight + own or terms.truncation > tight / 2:
        return judged
    if kink(list(terms.values), 0.0, terms.step, tight + own) is not None:
        return judged
    return judged._replace(tolerance=tight + own, bound=tight)


def _judged(analytic: float, h: float, difference: Callable[[float], _Difference]) -> _Difference:
    """The difference that judges ``analytic``: the one at step ``h``, unless

    * it is precise but fails, and a precise one at a smaller step agrees with ``analytic`` while
      disagreeing with it (it reached past a point where the function is not smooth);
    * it sits on a kink, or is coarse: then the smaller steps' differences that sit on no kink
      judge instead, when they can be trusted (see SMALLER_STEPS): the sharpest precise one that
      agrees with ``analytic``, else the sharpest one if none agrees and they agree with one
      another; failing that, the kink-free ones of two steps shorter still (FURTHER_STEPS) can
      confirm a failure; a coarse one that agrees passes only where no precise difference of
      another step refutes ``analytic``; and a coarse difference none of them settles is left
      unjudged (returned with ``sides``, as on a kink): neither passed nor failed on its word;
    * it sits on a kink, the smaller steps settle nothing, and a precise difference of a step
      shorter still agrees with ``analytic``: the function is resolved only there, too coarsely to pass
      it; or a kink whose one-sided slopes grow as the step shrinks (a genuine kink's settle),
      where nothing settles at all: both returned with ``unsettled`` (why), unjudged.
    """

    def agrees(d: _Difference) -> bool:
        return abs(analytic - d.value) <= d.tolerance

    def refutes(d: _Difference) -> bool:  # a precise, kink-free difference that disagrees
        return d.sides is None and not d.coarse and not agrees(d)

    def by_tolerance(ds: list[_Difference]) -> list[_Difference]:
        return sorted(ds, key=lambda d: d.tolerance)

    first = difference(h)
    # A step that reaches a pole (1/x at 1e-4, stepped by 1e-4) gives no finite difference: the
    # smaller steps are taken, as for a coarse one.
    finite = math.isfinite(first.value) and math.isfinite(first.tolerance)
    precise = first.sides is None and not first.coarse and finite
    if precise and agrees(first):
        return first
    if precise:
        for scale in SMALLER_STEPS:
            retry = difference(h * scale)
            if (
                retry.sides is None
                and not retry.coarse  # a coarse difference's tolerance is too wide to clear anything
                and agrees(retry)
                and abs(retry.value - first.value) > (retry.tolerance + first.tolerance)
            ):
                return retry
        return first
    retries = [difference(h * scale) for scale in SMALLER_STEPS]
    smooth = by_tolerance([d for d in retries if d.sides is None])
    precise_agreeing = [d for d in smooth if not d.coarse and agrees(d)]
    if precise_agreeing:
        return precise_agreeing[0]
    agreeing = [d for d in smooth if agrees(d)]  # coarse ones, here
    # A failure on the smaller steps' word only when they confirm each other: one of them may
    # itself reach past a kink its own estimates do not show.
    if not agreeing and _confirm_each_other(smooth, len(SMALLER_STEPS)):
        return smooth[0]
    # Still undecided (kinks at every scale so far: a direction through thousands of ReLU inputs):
    # steps shorter still, kink-free, can confirm a failure, when both disagree with the backward
    # and agree with each other. Never a pass on their word alone: their tolerances, mostly
    # rounding over so short a step, are too wide to tell a correct backward from one wrong by a
    # part in a million.
    further = [difference(h * scale) for scale in FURTHER_STEPS]
    settled = by_tolerance([d for d in further if d.sides is None])
    if _confirm_each_other(settled, len(FURTHER_STEPS)) and not any(agrees(d) for d in settled):
        return settled[0]
    # A coarse difference that agrees passes, as long as no precise one at another step refutes it
    # (near a pole, the coarse one's tolerance can be most of its value).
    refuting = [d for d in (*smooth, *settled) if refutes(d)]
    if agreeing and not refuting:
        return agreeing[0]
    sharp = [d for d in settled if not d.coarse]
    if first.sides is not None and not refuting and any(agrees(d) for d in sharp):
        # A kink at the step, nothing settled at the smaller ones, then a precise difference that
        # agrees: the function changes faster than the usual steps resolve (a pole or a nearly
        # singular matrix within a step of the point, which the differences mistake for a kink)
        # and is smooth at the shortest. Too wide a tolerance to pass the derivative; nor does it
        # fail on the word of differences that never settled: unjudged.
        best = min((d for d in sharp if agrees(d)), key=lambda d: d.tolerance)
        ratio = next(round(1 / scale) for scale, d in zip(FURTHER_STEPS, further) if d is best)
        return first._replace(
            unsettled=f"the difference at the step looks like a kink, those at 1/16 and 1/256 of it settle nothing, "
            f"and only at 1/{ratio} of it is the function smooth, where its difference {best.value:.9g} agrees with "
            f"the backward within {best.tolerance:.3g}, too wide a tolerance to pass it"
        )
    kinked = [(scale, d) for scale, d in zip((*SMALLER_STEPS, *FURTHER_STEPS), (*retries, *further)) if d.sides]
    if first.sides is not None and kinked and _diverging(first, kinked[-1][1]) and not refuting:
        # A kink's one-sided slopes settle as the step shrinks; a pole's grow without end. (Kink-free
        # differences at the two shortest steps that confirm each other against the backward, or a
        # precise one that refutes it, keep it from being excused so.)
        scale, last = kinked[-1]
        assert last.sides is not None
        return first._replace(
            unsettled=f"what looks like a kink at the step has one-sided slopes {first.sides[0]:.6g} and "
            f"{first.sides[1]:.6g} there and {last.sides[0]:.6g} and {last.sides[1]:.6g} at 1/{round(1 / scale)} of "
            "it, growing where a kink's settle, and no step gives a difference precise enough to pass it"
        )
    if first.sides is None and first.coarse:
        # A coarse difference cannot fail a backward on its own word: the spread of the differences
        # taken leaves it unjudged, as a kink (not passed either).
        values = [first.value, *(d.value for d in smooth), *(d.value for d in settled)]
        return first._replace(sides=(min(values), max(values)))
    return first


def _diverging(first: _Difference, later: _Difference) -> bool:
    """Whether the one-sided slopes of ``later`` (on a kink, at a step 16 times shorter or more) are
    over 4 times the largest of ``first``'s: a pole's grow about as the step shrinks, while a kink's
    settle (|x| + c x^2 at 0: 1 + c s, converging as the step s shrinks)."""
    assert first.sides is not None and later.sides is not None
    return max(map(abs, later.sides)) > 4 * max(map(abs, first.sides)) + first.tolerance + later.tolerance


def _confirm_each_other(differences: list[_Difference], needed: int) -> bool:
    """Whether all ``needed`` differences were taken (none dropped) and agree with one another."""
    return 0 < needed == len(differences) and all(
        abs(d.value - e.value) <= d.tolerance + e.tolerance for d in differences for e in differences
    )


def _probes(
    result: CheckResult,
    name: str,
    shift: _Shifter,
    tensor: Tensor,
    analytic: Tensor,
    own: Tensor,
    delta: float,
    u: float,
    options: Options,
    generator: torch.Generator,
    project: Projector | None = None,
    support: Tensor | None = None,
) -> tuple[bool, Tensor | None]:
    """Random-direction probes: (whether one failed or sat on a kink, the direction of the worst
    failing probe that is not on a kink, or None). ``support``: a flat mask of the elements the
    directions move (all by default).

    The direction ``u`` is drawn here, independent Gaussians independent of every rounding error,
    so the errors' projections onto it are Gaussian with deviation the root sum of squares of their
    elementwise bounds (the tolerance's ``safety`` factor bounds them): the analytic gradient's
    own rounding (``own``, flat: an accumulation of n terms errs by about :math:`u\\sqrt{n}\\sum|terms|`)
    and the rounding of the shifted inputs :math:`x_j + s u_j` (at most :math:`u|x_j|` each: Higham
    and Mary's probabilistic model). A single wrong element then stands out against noise that
    grows as the square root of the tensor's size, not as the size."""
    a = analytic.reshape(-1)
    failed, worst, worst_ratio = False, None, 1.0
    for k in range(options.probes):
        direction = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
        if support is not None:
            direction = direction * support.reshape(tensor.shape)
        projected, numeric, tolerance, sides, unsettled = _probe(
            shift, tensor, a, own, direction, delta, u, options, project
        )
        if sides is not None:  # a kink along this direction: not judged; the elements decide (see compare)
            failed = True
            if not result.inconclusive:
                result.inconclusive = (
                    _kink_note(name, 1, "probe direction(s)", f"probe {k}", *sides, projected)
                    if unsettled is None
                    else _unsettled_note(name, 1, f"probe {k}", unsettled, projected)
                )
            numeric = projected
        elif not abs(projected - numeric) <= tolerance:
            failed = True
            if abs(projected - numeric) / tolerance > worst_ratio:
                worst, worst_ratio = direction, abs(projected - numeric) / tolerance
        before = result.worst_error
        result.merge(
            f"{name} probe {k}",
            torch.tensor([projected], dtype=torch.float64),
            torch.tensor([numeric], dtype=torch.float64),
            torch.tensor([tolerance], dtype=torch.float64),
            ("<u, backward>" if project is None else "<g, jvp(u)>", "directional finite difference"),
        )
        if project is None and math.isfinite(projected - numeric):
            # A projection may be small by cancellation: its error is relative to the sum of the
            # |terms| u_j a_j (the gradient's scale along u), not to the projection itself.
            terms = float((direction.reshape(-1) * a.detach().double().cpu()).abs().sum())
            scale = max(terms, abs(numeric), tolerance, sys.float_info.min)
            result.worst_error = max(before, abs(projected - numeric) / scale)
    return failed, worst


def _probe(
    shift: _Shifter,
    tensor: Tensor,
    a: Tensor,
    own: Tensor,
    direction: Tensor,
    delta: float,
    u: float,
    options: Options,
    project: Projector | None = None,
) -> tuple[float, float, float, tuple[float, float] | None, str | None]:
    """One probe along ``direction`` (float64, on the CPU, ``tensor``'s shape; zero off its support):
    (<direction, backward>, the directional finite difference, its tolerance, the one-sided slopes
    where the direction crosses a kink, else None), the difference judged as :func:`_judged` judges
    one. ``a`` and ``own`` are flat. ``project``: the derivative under test along a direction, with
    its summation's rounding bound, when it is not <direction, a> (forward mode)."""
    x = shift.flat
    step_direction = direction.to(device=tensor.device, dtype=tensor.dtype)

    def f(step: float) -> float:
        return shift(step * step_direction)

    d = direction.reshape(-1)
    projected, dot = _accurate_sum(d * a) if project is None else project(direction)
    spread = _root_sum_square(x * d * a)
    own_deviation = _root_sum_square(own[d != 0])

    # The projection's own rounding: what the bound of _sharpened adds to its own.
    own_part = options.safety * dot + own_deviation

    def difference(h: float) -> _Difference:
        numeric, truncation, values = richardson(f, h)
        stepping = 8 * u * spread / h
        summation = shift.take_summation()
        evaluation = 7 * (delta + summation) / h
        tolerance = options.safety * (evaluation + truncation + dot + stepping) + own_deviation
        coarse = options.safety * truncation > tolerance / 2
        terms = _Terms(h, options.safety * truncation, options.safety * stepping, summation, tuple(values))
        return _Difference(
            numeric, tolerance, tolerance - own_part, kink(values, shift.base(), h, tolerance), coarse, terms
        )

    shift.take_changed()
    judged = _judged(projected, options.eps * shift.probe_scale, difference)
    # Outputs the direction never moves (those of the elements left out of it, next to a pole,
    # for an elementwise function) count for their own noise no more than for an element's.
    judged = _sharpened(judged, projected, own_part, shift, shift.probe_scale, f, delta, options)
    return projected, judged.value, judged.tolerance, judged.sides, judged.unsettled


def _bisect(
    shift: _Shifter,
    tensor: Tensor,
    analytic: Tensor,
    own: Tensor,
    direction: Tensor,
    delta: float,
    u: float,
    options: Options,
    project: Projector | None = None,
) -> int | None:
    """The flat index of a wrong element, found by halving a failing probe's direction: the half
    (of the flat indices) whose restriction still fails holds one, as long as the errors do not
    cancel between halves. None when neither half fails, or one sits on a kink (the probe's
    verdict then stands without an element). About 1.5 log2(n) probes."""
    a, flat = analytic.reshape(-1), direction.reshape(-1)
    low, high = 0, flat.numel()
    while high - low > 1:
        middle = (low + high) // 2
        for start, stop in ((low, middle), (middle, high)):
            part = torch.zeros_like(flat)
            part[start:stop] = flat[start:stop]
            projected, numeric, tolerance, sides, _ = _probe(
                shift, tensor, a, own, part.reshape(tensor.shape), delta, u, options, project
            )
            if sides is not None:
                return None
            if not abs(projected - numeric) <= tolerance:
                low, high = start, stop
                break
        else:
            return None
    return low


def _unravel(index: int, shape: torch.Size) -> tuple[int, ...]:
    """The multi-index of row-major flat ``index`` in ``shape`` (an element of a tensor of any strides)."""
    coordinates = []
    for size in reversed(shape):
        index, coordinate = divmod(index, size)
        coordinates.append(coordinate)
    return tuple(reversed(coordinates))
