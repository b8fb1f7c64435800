"""``twin``: outputs, input and parameter gradients and buffers against the reference in float64.

The reference (a ``torch.nn`` twin, or any callable computing the same function with plain
torch ops) runs through ``torch.autograd`` on the same float64 inputs, parameters and upstream
gradients. Tolerance: the rounding bound plus ``safety`` times the measured rounding noise of
the reference and of the target (see :mod:`verification.error_model` and
:attr:`~verification.context.Context.target_noise`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..context import Context, named
from ..report import CheckResult
from ..targets import AutogradTarget, ProtocolTarget, Target

LABELS = ("target", "reference")


def _buffers(target: Target) -> dict[str, torch.Tensor]:
    owner: Any = target.module if isinstance(target, ProtocolTarget) else getattr(target, "fn", None)
    if owner is not None and callable(getattr(owner, "named_buffers", None)):
        return dict(owner.named_buffers())
    return {}


def check_twin(ctx: Context) -> CheckResult:
    result = CheckResult("twin")
    if ctx.reference is None:
        result.skipped = "no reference given"
        return result
    if ctx.target64 is None:
        result.skipped = f"{ctx.why_no_float64}; compared with the reference in low_precision instead"
        return result
    ours_target = ctx.target64.copy()
    ours_pass = ours_target.start(ctx.call64)
    ours = named(ours_pass.outputs, ours_pass.backward(ctx.grads64), ctx.call64, ours_target)
    reference = ctx.reference64
    if reference is None:
        result.fail(ctx.reference_problem)
        return result
    assert isinstance(reference, AutogradTarget)
    reference = reference.copy()
    try:
        theirs_pass = reference.start(ctx.call64)
    except Exception as error:
        result.inconclusive = f"the reference raised {type(error).__name__}: {error}"
        return result
    shapes = [tuple(x.shape) if x is not None else None for x in ours_pass.outputs.leaves]
    their_shapes = [tuple(x.shape) if x is not None else None for x in theirs_pass.outputs.leaves]
    if shapes != their_shapes:
        show = lambda s: s[0] if len(s) == 1 else s  # noqa: E731
        result.fail(f"output shape {show(shapes)} differs from the reference's {show(their_shapes)}")
        return result
    try:
        theirs = ctx.rename(named(theirs_pass.outputs, theirs_pass.backward(ctx.grads64), ctx.call64, reference))
    except Exception as error:
        result.inconclusive = f"the reference's backward raised {type(error).__name__}: {error}"
        return result
    # A reference without parameters (a function, a closure over the caller's tensors) gives no
    # gradient for the target's parameters: that is not a gradient of 0, and nothing to compare.
    unmatched = {f"{n}.grad" for n, _ in ours_target.parameters()} if not reference.parameters() else set()
    if reference.parameters() and not ours_target.parameters():
        ctx.report.notes.append(
            f"twin: the reference has parameters ({', '.join(n for n, _ in reference.parameters())}) and the target "
            "none, so the reference keeps its own values: the two compute the same function only if those do not matter"
        )
    for name, value in ours.items():
        expected = theirs.get(name)
        if expected is None and name in unmatched:
            continue
        if expected is None:
            expected = torch.zeros_like(value)  # the reference's output does not depend on it
        expected = expected.double().cpu()
        if name.endswith(".grad"):
            expected = ctx.invariant_kept("twin", name.removesuffix(".grad"), value, expected)
        tolerance = ctx.rounding(expected) + ctx.options.safety * ctx.noise_of_both(name, expected)
        result.merge(name, value, expected, tolerance, LABELS)
    left = sorted(name.removesuffix(".grad") for name in unmatched if name in ours)
    if left:
        ctx.report.notes.append(
            f"twin: the reference has no parameters, so the gradients of {', '.join(left)} were compared with "
            "finite differences only (a torch.nn.Module reference gets the target's parameters and is compared too)"
        )
    their_buffers = _buffers(reference)
    for name, value in _buffers(ours_target).items():
        if name not in their_buffers:
            continue
        expected = their_buffers[name]
        if value.is_floating_point():
            result.merge(name, value, expected, ctx.rounding(expected.double().cpu()), LABELS)
        elif not torch.equal(value.cpu(), expected.cpu()):
            result.fail(f"buffer {name} is {value.tolist()}, the reference's is {expected.tolist()}")
    return result
