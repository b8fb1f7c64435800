"""``linearity`` and ``accumulation``: algebraic properties every correct backward has.

``linearity``: ``backward(a g1 + b g2) == a backward(g1) + b backward(g2)`` after one forward,
so a backward that ignores or squares its upstream gradient fails even when ``g`` happens to be
benign; with several outputs, also ``backward(g_1, ..., g_m) == sum_k backward(g_k alone)``.
``accumulation`` (the framework protocol, where backward *adds* into the parameter gradients):
two backward calls add up, and ``zero_grad()`` resets them. Both in float64 on the float64
copy; tolerance: the rounding bound at the combined gradients' scale (a normwise floor that
grows with ``|a| + |b|``) plus the measured rounding noise of each backward call, measured with
that call's own upstream gradient: a gradient that vanishes in exact arithmetic is cancellation
residue, and whether it cancels exactly can hang on the upstream gradient's values (two values
within a factor of two of each other sum exactly), so one gradient's noise says nothing of another's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..context import Context, random_like
from ..error_model import estimated, precision_scaled, rounding_tolerance, unit_roundoff
from ..report import CheckResult
from ..targets import Gradients, ProtocolTarget, _same_outputs, same_memory

A, B = 0.75, -1.5


def _names(ctx: Context) -> list[str]:
    assert ctx.target64 is not None
    return ctx.call64.names() + [name for name, _ in ctx.target64.parameters()]


def _no_float64(result: CheckResult, ctx: Context) -> CheckResult:
    result.skipped = f"{ctx.why_no_float64}"
    return result


def _own_noise(ctx: Context, calls: list[tuple[list[Tensor | None], list[Tensor | None]]]) -> list[list[Tensor]]:
    """For each backward call (its upstream gradients, its float64 results): its float64 rounding
    error, measured on the target itself by precision scaling (the same call on a float32 copy after
    one forward, :meth:`Context.target32_pass`), floored at its mean over each tensor as
    :func:`estimated`. Zeros where the target has no float32 run."""
    zero = torch.zeros((), dtype=torch.float64)
    nothing = [[zero for _ in results] for _, results in calls]
    low = ctx.target32_pass()
    if low is None:
        return nothing
    noises = []
    try:
        for grads, results in calls:
            low_results = low.backward([None if g is None else g.float() for g in grads]).all()
            noise = []
            for x64, x32 in zip(results, low_results):
                if x64 is None or x32 is None or x64.shape != x32.shape:
                    noise.append(zero)
                else:
                    scaled = precision_scaled(x32, x64)
                    noise.append(scaled + scaled.mean() if scaled.numel() else zero)
            noises.append(noise)
    except Exception:  # no float32 backward: the noise measured for the case alone
        return nothing
    return noises


def check_linearity(ctx: Context) -> CheckResult:
    result = CheckResult("linearity")
    if ctx.target64 is None:
        return _no_float64(result, ctx)
    target = ctx.target64.copy()
    pass_ = target.start(ctx.call64)
    g1 = ctx.grads64
    g2 = [None if g is None else random_like(g, ctx.generator) for g in g1]
    g12 = [None if x is None or y is None else A * x + B * y for x, y in zip(g1, g2)]
    first, second, combined = (pass_.backward(g).all() for g in (g1, g2, g12))
    u = unit_roundoff(torch.float64)
    floor = (1 + abs(A) + abs(B)) * ctx.scale
    own1, own2, own12 = _own_noise(ctx, [(g1, first), (g2, second), (g12, combined)])
    for name, x1, x2, x12, *own in zip(_names(ctx), first, second, combined, own1, own2, own12):
        if x1 is None or x2 is None or x12 is None:
            continue  # a missing gradient is the finite-difference check's to report
        expected = ctx.invariant_kept("linearity", name, x12, A * x1.double() + B * x2.double())
        magnitude = (abs(A) * x1.double().abs() + abs(B) * x2.double().abs()).cpu()
        # Three backward calls, each with its own rounding error: measured for the case's gradient
        # (on the reference), and for each call's own (on the target).
        noise = (1 + abs(A) + abs(B)) * estimated(ctx.noise, f"{name}.grad", expected.cpu())
        noise = noise + abs(A) * own[0] + abs(B) * own[1] + own[2]
        tolerance = rounding_tolerance(magnitude, ctx.n_terms, u, ctx.options.safety, floor)
        result.merge(
            name,
            x12,
            expected,
            tolerance + ctx.options.safety * noise,
            ("backward(a g1 + b g2)", "a backward(g1) + b backward(g2)"),
        )
    _check_sum_over_outputs(result, ctx, pass_, first)
    return result


def _check_sum_over_outputs(result: CheckResult, ctx: Context, pass_: Any, first: list[Tensor | None]) -> None:
    """With two or more outputs weighed: ``backward(g_1, ..., g_m)`` equals the sum over k of the
    backward with output k's upstream gradient alone (the others zero). The finite-difference check
    judges the combined gradient at the scale of the largest output's part and each output alone
    at its own; a backward wrong in one output's part only when another output's gradient is
    non-zero too (a branch on it), under a far larger part, is wrong in neither of those by more
    than a difference quotient resolves. Here it is judged at the rounding of the parts' sum."""
    g = ctx.grads64
    weighed = [k for k, gk in enumerate(g) if gk is not None]
    if len(weighed) < 2:
        return
    alone_grads = [[gi if gi is None or i == k else torch.zeros_like(gi) for i, gi in enumerate(g)] for k in weighed]
    parts = [pass_.backward(grads).all() for grads in alone_grads]
    u, m = unit_roundoff(torch.float64), len(weighed)
    own = _own_noise(ctx, [(list(g), first), *zip(alone_grads, parts)])
    for name, whole, *alone_and_own in zip(_names(ctx), first, *parts, *own):
        if whole is None:
            continue  # a missing gradient is the finite-difference check's to report
        alone, own_noise = alone_and_own[:m], alone_and_own[m:]
        present = [x.double() for x in alone if x is not None]  # None: that output gives it nothing
        expected = torch.stack(present).sum(0) if present else torch.zeros_like(whole, dtype=torch.float64)
        expected = ctx.invariant_kept("linearity", name, whole, expected)
        magnitude = (torch.stack([x.abs() for x in present]).sum(0) if present else expected.abs()).cpu()
        noise = (1 + m) * estimated(ctx.noise, f"{name}.grad", expected.cpu()) + sum(own_noise)
        tolerance = rounding_tolerance(magnitude, ctx.n_terms, u, ctx.options.safety, m * ctx.scale)
        result.merge(
            name,
            whole,
            expected,
            tolerance + ctx.options.safety * noise,
            ("backward(g)", "the sum over outputs k of backward(g_k alone)"),
        )


def check_accumulation(ctx: Context) -> CheckResult:
    result = CheckResult("accumulation")
    if not ctx.target.accumulates:
        result.skipped = "torch.autograd accumulates the parameter gradients, not the target's code"
        return result
    if ctx.target64 is None:
        return _no_float64(result, ctx)
    target = ctx.target64.copy()
    assert isinstance(target, ProtocolTarget)
    params = target.parameters()
    if not params:
        result.skipped = "no parameters"
        return result
    pass_ = target.start(ctx.call64)
    g1 = ctx.grads64
    g2 = [None if g is None else random_like(g, ctx.generator) for g in g1]
    held = [g for _, _, g in target.named()]  # what an optimizer holding param()'s pairs sees
    p1 = pass_.backward(g1).params
    rebound = [name for (name, _, g), h in zip(target.named(), held) if not same_memory(g, h)]
    if rebound:
        # Not a failure: a framework whose optimizer calls param() on every step sees the new tensor.
        ctx.report.notes.append(
            f"backward (or zero_grad) binds a new tensor as the gradient of {', '.join(rebound)} (self.dw = self.dw "
            "+ ... rather than self.dw += ...): an optimizer that holds the pairs param() returned before it "
            "never sees the gradient"
        )
    total: Gradients = pass_.backward(g2, accumulate=True)  # without zero_grad: must add
    p2 = pass_.backward(g2).params
    u = unit_roundoff(torch.float64)
    for (name, _), both, x1, x2 in zip(params, total.params, p1, p2):
        assert both is not None and x1 is not None and x2 is not None
        expected = x1.double() + x2.double()
        noise = 2 * estimated(ctx.noise, f"{name}.grad", expected.cpu())
        tolerance = rounding_tolerance(
            (x1.double().abs() + x2.double().abs()).cpu(), ctx.n_terms, u, ctx.options.safety, 2 * ctx.scale
        )
        result.merge(
            name, both, expected, tolerance + ctx.options.safety * noise, ("two backward calls", "sum of each")
        )
    # Over two forward/backward pairs, as a gradient accumulated over two mini-batches: a forward
    # that resets the gradients (or a backward that adds only to what its own forward started)
    # loses the first pair's.
    # Judged only where the second forward gives the first's outputs bit for bit (a module whose
    # state moves its outputs from call to call is the determinism check's to report).
    target.zero_grad()
    pass_.backward(g1, accumulate=True)
    second = target.start(ctx.call64)
    across = second.backward(g2, accumulate=True)
    same = _same_outputs(list(pass_.outputs.leaves), list(second.outputs.leaves))
    for (name, _), both, x1, x2 in zip(params if same else [], across.params, p1, p2):
        expected = x1.double() + x2.double()
        noise = 2 * estimated(ctx.noise, f"{name}.grad", expected.cpu())
        tolerance = rounding_tolerance(
            (x1.double().abs() + x2.double().abs()).cpu(), ctx.n_terms, u, ctx.options.safety, 2 * ctx.scale
        )
        result.merge(
            f"{name} (over two forward/backward pairs)",
            both,
            expected,
            tolerance + ctx.options.safety * noise,
            ("two forward/backward pairs", "sum of each"),
        )
    target.zero_grad()
    for name, _, g in target.named():
        if bool(g.ne(0).any()):
            result.fail(f"zero_grad() left non-zero values in the gradient of {name}")
    return result
