"""``low_precision``: a float32, float16 or bfloat16 forward and backward against the float64 truth.

The truth is the target's own float64 copy on the upcast inputs and parameters (checked by
``finite_differences``), or the reference's float64 autograd result when the target does not
run in float64. With a reference, the reference also runs in the caller's precision on the
same inputs, and its error sets the bar (FlashAttention's rule, see
:mod:`verification.error_model`); without one, a modelled error (the truth's spread under
moves of one unit in the last place of the inputs). Outputs, input gradients and parameter
gradients are all compared, by their largest and their mean absolute error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..context import Context, collect, generator_for, named
from ..error_model import jitter, low_precision_bounds, spread, unit_roundoff
from ..report import CheckResult, _where
from ..targets import Call

LABELS = ("target", "float64 truth")
DRAWS = 3  # rounding realisations of the reference's error


def check_low_precision(ctx: Context) -> CheckResult:
    result = CheckResult("low_precision")
    if ctx.dtype == torch.float64:
        result.skipped = "the inputs are float64: the float64 checks cover them"
        return result
    truth = ctx.truth
    if not truth:
        result.inconclusive = (
            f"{ctx.why_no_float64}, and no reference was given: there is no float64 truth to compare with"
        )
        return result
    ours = named(ctx.outputs, ctx.gradients, ctx.call, ctx.target)
    # None is torch's convention for a zero gradient: judged as zeros against the truth.
    missing = [
        (f"{name}.grad", tensor)
        for name, tensor, g in [
            *zip(ctx.call.names(), ctx.call.tensors(), ctx.gradients.inputs),
            *((name, p, g) for (name, p), g in zip(ctx.target.parameters(), ctx.gradients.params)),
        ]
        if g is None
    ]
    for name, tensor in missing:
        ours[name] = torch.zeros_like(tensor, dtype=torch.float64)
    draws = _draws(ctx, truth)
    if draws is None:
        result.inconclusive = "the float64 model of the rounding error could not be evaluated"
        return result
    moved = spread(truth, [expected for _, _, expected in draws[1:]])
    errors = None
    if ctx.reference_low is not None:
        try:
            errors = _reference_errors(ctx, truth, draws)
            result.detail = "bar: the reference's own error in the same precision"
        except Exception as error:  # a reference that does not run in this precision: the model alone
            result.detail = f"the reference does not run in {ctx.dtype} ({type(error).__name__}); bar: the model"
    judged: dict[str, dict] = {}  # the bounds each compared tensor was held to
    for name, value in ours.items():
        expected = truth.get(name)
        if expected is None:
            continue  # a missing gradient is reported above
        if expected.numel() == 0:
            continue  # an empty tensor: nothing to compare (merge_norms skips it too)
        beyond = _beyond_range(name, expected, ctx.dtype)
        if beyond:  # the dtype cannot hold the truth there: its result is inf whatever the code
            result.inconclusive = result.inconclusive or beyond
            continue
        measured = None if errors is None else _shaped(errors.get(name), expected)
        bounds = low_precision_bounds(
            expected, measured, _shaped(moved.get(name), expected), ctx.dtype, ctx.scale, ctx.n_terms
        )
        judged[name] = bounds
        before = result.ok
        result.merge_norms(name, value, expected, bounds, LABELS)
        if before and not result.ok and any(name == m for m, _ in missing):
            result.detail = f"backward returned no gradient (None) for {name[: -len('.grad')]}: " + result.detail
    if not result.ok:
        within = _within_at_another_draw(ctx, draws, judged)
        if within is not None:
            k, passing = within
            result.detail = (
                f"within the bar at inputs moved by an ulp (draw {k}, error/tolerance {passing.worst_ratio:.3g}), "
                f"beyond it at the case's own inputs (error/tolerance {result.worst_ratio:.3g}): rounding errors "
                "spread widely where the result is ill-conditioned, and a systematic error is beyond the bar at "
                f"every draw. At the case's inputs: {result.detail}"
            )
            result.ok, result.worst_ratio = True, passing.worst_ratio  # the verdict rests on that draw
    return result


def _within_at_another_draw(ctx: Context, draws: list[Draw], judged: dict[str, dict]) -> tuple[int, CheckResult] | None:
    """The first of the moved draws (inputs and upstream gradients an ulp away) at which the
    target's low-precision results are all within the same bounds of that draw's truth, with that
    comparison, or None.

    A single realisation of rounding is a noisy sample where the result is ill-conditioned: a
    correct float32 Sequential(BatchNorm1d(1), Linear(1, 3), Linear(3, 5), BatchNorm1d(5)) on 4
    samples erred 1.42 times the bar (twice the reference's largest error over three draws) at one
    case; over 40 draws its errors and torch's had the same distribution, spread over a factor of
    10. What is wrong in the code (an accumulator in the low precision, a missing upcast, a wrong
    term) is beyond the bar at every draw, the draws being an ulp apart."""
    for k, (call, grads, truth) in enumerate(draws[1:], start=1):
        try:
            theirs = collect(ctx.target, call, grads)
        except Exception:
            return None
        check = CheckResult("low_precision")
        for name, bounds in judged.items():
            expected = truth.get(name)
            if expected is None or expected.shape != bounds["element"].shape:
                return None
            value = theirs.get(name)
            value = torch.zeros_like(expected) if value is None else value  # None: a zero gradient
            check.merge_norms(name, value, expected, bounds, LABELS)
        if check.ok:
            return k, check
    return None


Draw = tuple[Call, list[Tensor | None], dict[str, Tensor]]


def _draws(ctx: Context, truth: dict[str, Tensor]) -> list[Draw] | None:
    """Rounding realisations: the case itself, and ``DRAWS - 1`` copies with inputs and upstream
    gradients moved by about one unit in the last place of the dtype (still exactly representable
    in it), each with its float64 truth."""
    base = ctx.target64 if ctx.target64 is not None else ctx.reference64
    if base is None:
        return None
    rename = ctx.rename if base is ctx.reference64 else (lambda d: d)
    generator = generator_for(ctx.options.seed, "low-precision draws")
    u = unit_roundoff(ctx.dtype)
    draws: list[Draw] = [(ctx.call, ctx.grads, truth)]
    try:
        for _ in range(DRAWS - 1):
            call = ctx.call.with_tensors([_ulp_moved(x, generator, u) for x in ctx.call.tensors()])
            grads = [None if g is None else _ulp_moved(g, generator, u) for g in ctx.grads]
            grads64 = [None if g is None else g.double() for g in grads]
            draws.append((call, grads, rename(collect(base, call.cast(torch.float64), grads64))))
    except Exception:
        return None
    return draws


def _reference_errors(ctx: Context, truth: dict[str, Tensor], draws: list[Draw]) -> dict[str, Tensor]:
    """The reference's error in the caller's precision, elementwise, the largest over the draws:
    a small tensor's single realisation can be exact by luck; the largest of several is a stable
    measure of what the reference errs."""
    assert ctx.reference_low is not None
    errors: dict[str, Tensor] = {}
    for call, grads, expected in draws:
        theirs = ctx.rename(collect(ctx.reference_low, call, grads))
        for name in truth:
            if name in theirs and name in expected:
                error = (theirs[name].cpu() - expected[name].cpu()).abs()
                errors[name] = error if name not in errors else torch.maximum(errors[name], error)
    return errors


def _ulp_moved(x: Tensor, generator: torch.Generator, u: float) -> Tensor:
    """``x`` with each element moved by about one unit in the last place of its dtype, up or down at random."""
    return jitter(x.double(), generator, 2 * u).to(x.dtype)


def _shaped(value: Tensor | None, like: Tensor) -> Tensor:
    return value.cpu() if value is not None and value.shape == like.shape else torch.zeros_like(like).cpu()


def _beyond_range(name: str, truth: Tensor, dtype: torch.dtype) -> str:
    """Why ``name`` is not judged when its float64 truth holds finite values beyond ``dtype``'s
    largest (x^2 at 1e20 in float32), else ""."""
    largest = torch.finfo(dtype).max
    magnitude = truth.detach().double().cpu().abs()
    beyond = torch.isfinite(magnitude) & (magnitude > largest)
    if not bool(beyond.any()):
        return ""
    j = int(beyond.reshape(-1).nonzero()[0])
    return (
        f"{name}{_where(truth.shape, j)} is {float(truth.reshape(-1)[j]):.3g} in float64, beyond the largest "
        f"{str(dtype).removeprefix('torch.')} number ({largest:.3g}): the {str(dtype).removeprefix('torch.')} result "
        f"overflows there whatever the code, so {name} was not judged; check at inputs whose results fit the dtype"
    )
