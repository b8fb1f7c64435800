r"""``finite_differences``: the backward pass against central differences of the target's own forward.

The function checked is the scalar :math:`\phi(x, \theta) = \sum_k \langle g_k, y_k(x, \theta)\rangle`
with random upstream gradients ``g``, so the gradients backward returns must equal
:math:`\nabla\phi`. Always in float64, on a float64 copy of the target and upcast inputs,
whatever the caller's precision: the ground truth.

Small tensors get one derivative per element; large ones random-direction probes
:math:`\langle u, \mathrm{backward}(g)\rangle` against the directional derivative along a
Gaussian ``u`` (a single wrong element ``j`` shifts every probe by :math:`u_j e_j`). When a
probe fails on a tensor of moderate size, the elementwise comparison runs too, to name the
wrong element.

Each derivative is extrapolated from central differences :math:`D(s)` at ``s = h, h/2, h/4``
(``h = eps * max(1, |x|)``): two Richardson levels, :math:`R_1 = (4D(h/2) - D(h))/3`,
:math:`R_2 = (4D(h/4) - D(h/2))/3` (truncation :math:`O(h^4)`) and
:math:`R = (16R_2 - R_1)/15` (:math:`O(h^6)`). Its error is bounded by

* truncation: :math:`|R - R_2|`, which over-estimates the error left in ``R``;
* rounding: each evaluation of :math:`\phi` errs by :math:`\delta = u\sqrt{n}\,(\sum|g||y| + |\phi|)`
  (``n`` the largest tensor's size; the probabilistic rounding error bound of Higham and Mary,
  2019, rather than the worst case ``n u``), or by the error the error model's estimator measures
  (precision scaling and ulp jitter) when that is larger (an ill-conditioned forward), amplified
  by at most :math:`7\delta/h` in ``R``;
* stepping: ``x + s`` is rounded, a relative error of at most :math:`8u|x|/h` in ``R``;

each times ``safety``, plus the analytic gradient's own rounding bound (floored normwise).
With ``eps = 1e-4`` these are orders of magnitude below one part in a million of the
gradient's scale.

A kink (ReLU at 0, tied maxima) has no derivative: the same evaluations give the one-sided
quotients :math:`(f(s) - f(0))/s` and :math:`(f(0) - f(-s))/s`, which stay apart as ``s``
halves there (a smooth function's gap halves with ``s``). A backward value between them is a
convention, left unjudged (the check is then inconclusive, naming the element); one outside fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .. import error_model
from ..context import Context, Options
from ..error_model import rounding_tolerance, unit_roundoff
from ..report import CheckResult, _where
from ..targets import Call, Gradients, Target

LOCATE_LIMIT = 1024  # tensors up to this size are searched element by element when a probe fails


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
    compare(result, target, ctx.call64, ctx.grads64, gradients, ctx.options, ctx.generator)
    return result


def phi(target: Target, call: Call, grads: Sequence[Tensor | None]) -> float:
    """:math:`\\sum_k \\langle g_k, y_k\\rangle` in float64."""
    outputs = target.forward(call)
    total = 0.0
    for y, g in zip(outputs.leaves, grads):
        if y is not None and g is not None:
            total += float((y.detach().double() * g.double()).sum())
    return total


def _spread(target: Target, call: Call, grads: Sequence[Tensor | None]) -> float:
    outputs = target.forward(call)
    return sum(
        float((y.detach().double().abs() * g.double().abs()).sum())
        for y, g in zip(outputs.leaves, grads)
        if y is not None and g is not None
    )


def _measured_noise(target: Target, call: Call, grads: Sequence[Tensor | None], generator: torch.Generator) -> float:
    """The rounding error of one evaluation of phi, measured by the error model's estimator
    (:func:`~verification.error_model.rounding_noise`: precision scaling and ulp jitter, the
    larger), which sees conditioning: an ill-conditioned forward (LayerNorm over two nearly equal
    values) errs far more than the bound above says. The largest over the point and two nearby
    ones (a single point's float32 error can be small by luck)."""
    grads32 = [None if g is None else g.float() for g in grads]
    low: list[Target] = []  # the float32 copy, made once (on first use: a failure there is the estimator's)
    noise = 0.0
    for shift in (0.0, 1e-3, -1e-3):
        moved = call.with_tensors([x * (1 + shift) for x in call.tensors()])

        def run64(size: float, gen: torch.Generator | None, moved: Call = moved) -> dict[str, Tensor]:
            if not size or gen is None:
                return {"phi": torch.tensor(phi(target, moved, grads))}
            copy = target.copy()
            with torch.no_grad():
                for _, p in copy.parameters():
                    p.copy_(error_model.jitter(p, gen, size))
            jittered = moved.with_tensors([error_model.jitter(x, gen, size) for x in moved.tensors()])
            return {"phi": torch.tensor(phi(copy, jittered, grads))}

        def run32(moved: Call = moved) -> dict[str, Tensor]:
            if not low:
                low.append(target.copy(torch.float32))
            return {"phi": torch.tensor(phi(low[0], moved.cast(torch.float32), grads32))}

        try:
            estimate = error_model.rounding_noise(run64, run32, generator)
        except Exception:  # a target that cannot be copied or moved: the bound alone
            return noise
        noise = max(noise, float(estimate["phi"]))
    return noise


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


def _kink_note(name: str, count: int, what: str, first: str, left: float, right: float, value: float) -> str:
    between = ", between them" if min(left, right) <= value <= max(left, right) else ""
    return (
        f"{count} {what} of {name} sit on a kink (the first, {first}: one-sided derivatives {left:.6g} and "
        f"{right:.6g}, backward {value:.6g}{between}): no derivative exists there, so the backward's choice cannot "
        "be judged; move the inputs off the kink (verification.away_from) to check it"
    )


class _Shifter:
    """Evaluates phi with one tensor (an input or a parameter) shifted."""

    def __init__(
        self, target: Target, call: Call, grads: Sequence[Tensor | None], position: int | None, tensor: Tensor
    ):
        self.target, self.call, self.grads, self.position, self.tensor = target, call, grads, position, tensor

    def base(self) -> float:
        """phi at the unshifted point."""
        return phi(self.target, self.call, self.grads)

    def __call__(self, delta: Tensor, index: int = -1) -> float:
        if self.position is not None:  # an input: a shifted copy in the call
            shifted = self.tensor.detach().clone()
            if index >= 0:
                shifted.view(-1)[index] += delta
            else:
                shifted += delta
            return phi(self.target, self.call.replace({self.position: shifted}), self.grads)
        original = self.tensor.detach().clone()
        try:
            with torch.no_grad():
                if index >= 0:
                    self.tensor.view(-1)[index] += delta
                else:
                    self.tensor += delta
            return phi(self.target, self.call, self.grads)
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
) -> None:
    """Merge into ``result`` the comparison of ``gradients`` with finite differences of ``target``."""
    u = unit_roundoff(torch.float64)
    sizes = [x.numel() for x in call.tensors()] + [p.numel() for _, p in target.parameters()]
    outputs = target.forward(call)
    n_terms = max([*sizes, *(y.numel() for y in outputs.leaves if y is not None)])
    # Probabilistic rounding error analysis (Higham & Mary, 2019): an accumulation of n terms errs
    # by about sqrt(n) u sum|terms|, not the worst case n u sum|terms|; the safety factor is the
    # lambda of their bound.
    delta = u * math.sqrt(n_terms) * (_spread(target, call, grads) + abs(phi(target, call, grads)))
    delta = max(delta, _measured_noise(target, call, grads, generator))
    values = [*(g for g in grads if g is not None), *(g for g in gradients.all() if g is not None)]
    scale = max((float(t.double().abs().mean()) for t in values if t.numel()), default=0.0)

    items = [(f"input[{i}]", i, x) for i, x in zip(call.diff, call.tensors())]
    items += [(name, None, p) for name, p in target.parameters()]
    for (name, position, tensor), analytic in zip(items, gradients.all()):
        if analytic is None:
            what = "input" if position is not None else "parameter"
            hint = (
                "; if the output does not depend on it, pass it with requires_grad=False"
                if position is not None
                else ""
            )
            result.fail(f"backward returned no gradient (None) for the {what} {name}, which requires grad{hint}")
            continue
        if tuple(analytic.shape) != tuple(tensor.shape):
            result.fail(f"the gradient of {name} has shape {tuple(analytic.shape)}, expected {tuple(tensor.shape)}")
            continue
        shift = _Shifter(target, call, grads, position, tensor)
        a = analytic.detach().double().cpu()
        own = rounding_tolerance(a, n_terms, u, options.safety, scale)
        if tensor.numel() <= options.full_jacobian_limit:
            _elementwise(result, name, shift, tensor, a, own, delta, u, options)
        else:
            failed = _probes(result, name, shift, tensor, a, delta, u, n_terms, options, generator)
            if failed and tensor.numel() <= LOCATE_LIMIT:
                located = CheckResult(result.name)
                _elementwise(located, name, shift, tensor, a, own, delta, u, options)
                if not located.ok:  # name the wrong element rather than the probe
                    result.ok = False
                    result.detail = located.detail
                    result.worst_error = max(result.worst_error, located.worst_error)
                    result.worst_ratio = max(result.worst_ratio, located.worst_ratio)
                elif located.inconclusive:  # the elements name the kink better than a probe
                    result.inconclusive = located.inconclusive


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
) -> None:
    flat = tensor.detach().double().cpu().reshape(-1)
    numeric = torch.empty(tensor.numel(), dtype=torch.float64)
    bound = torch.empty_like(numeric)
    a, own_flat = analytic.reshape(-1), own.expand(tensor.shape).reshape(-1)
    kinks: list[tuple[int, float, float]] = []
    f0 = shift.base()
    for j in range(tensor.numel()):
        h = options.eps * max(1.0, abs(float(flat[j])))

        def f(step: float, j: int = j) -> float:
            return shift(torch.tensor(step, dtype=tensor.dtype, device=tensor.device), j)

        numeric[j], truncation, values = richardson(f, h)
        stepping = 8 * u * abs(float(flat[j])) / h * abs(float(numeric[j]))
        bound[j] = options.safety * (7 * delta / h + truncation + stepping)
        tolerance = float(bound[j] + own_flat[j])
        sides = kink(values, f0, h, tolerance)
        if sides is not None and min(sides) - tolerance <= float(a[j]) <= max(sides) + tolerance:
            numeric[j] = a[j]  # not judged: any value between the one-sided slopes is a valid choice
            kinks.append((j, *sides))
    if kinks and not result.inconclusive:
        j, left, right = kinks[0]
        first = f"{name}{_where(tensor.shape, j)}"
        result.inconclusive = _kink_note(name, len(kinks), "element(s)", first, left, right, float(a[j]))
    numeric = numeric.reshape(tensor.shape)
    before = result.ok
    result.merge(name, analytic, numeric, bound.reshape(tensor.shape) + own, ("backward", "finite difference"))
    if before and not result.ok and float(analytic.abs().max()) == 0.0:
        result.detail = f"the gradient of {name} is zero everywhere (never written?); " + result.detail


def _probes(
    result: CheckResult,
    name: str,
    shift: _Shifter,
    tensor: Tensor,
    analytic: Tensor,
    delta: float,
    u: float,
    n_terms: int,
    options: Options,
    generator: torch.Generator,
) -> bool:
    """Random-direction probes; True when one failed."""
    x = tensor.detach().double().cpu().reshape(-1)
    h = options.eps * max(1.0, float(x.abs().max()))
    a = analytic.reshape(-1)
    failed = False
    f0 = shift.base()
    for k in range(options.probes):
        direction = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
        step_direction = direction.to(device=tensor.device, dtype=tensor.dtype)

        def f(step: float, d: Tensor = step_direction) -> float:
            return shift(step * d)

        numeric, truncation, values = richardson(f, h)
        d = direction.reshape(-1)
        projected = float((d * a).sum())
        rounding = u * n_terms * float((d.abs() * a.abs()).sum())
        stepping = 8 * u * float((x.abs() * (d * a).abs()).sum()) / h
        tolerance = options.safety * (7 * delta / h + truncation + rounding + stepping)
        sides = kink(values, f0, h, tolerance)
        if sides is not None:  # a kink along this direction: not judged; the elements decide (see compare)
            failed = True
            if not result.inconclusive:
                result.inconclusive = _kink_note(name, 1, "probe direction(s)", f"probe {k}", *sides, projected)
            numeric = projected
        elif not abs(projected - numeric) <= tolerance:
            failed = True
        result.merge(
            f"{name} probe {k}",
            torch.tensor([projected], dtype=torch.float64),
            torch.tensor([numeric], dtype=torch.float64),
            torch.tensor([tolerance], dtype=torch.float64),
            ("<u, backward>", "directional finite difference"),
        )
    return failed
