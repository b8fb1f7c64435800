"""``undefined_grad``: a backward given no gradient (None) for one of its outputs treats it as zeros.

When an output does not reach the loss (``y1, y2 = f(x); y1.sum().backward()``), autograd has no
gradient for it; a ``torch.autograd.Function`` that calls ``ctx.set_materialize_grads(False)``
then receives ``None`` for it, and its backward must skip that term, not fail on it. As
``gradcheck``'s ``check_undefined_grad``: for each output of a multi-output autograd target in turn,
the backward without that output's gradient must run and equal the backward with zeros there.
With three outputs or more, the backward with a gradient for that output only (the common case:
``out[0]`` alone reaches the loss) must too: a backward may take another path when several
gradients are missing at once. Two backward calls per output and per case, linear in the outputs.
In float64, on the float64 copy; tolerance as ``linearity``'s (the two calls may round apart).
"""

from __future__ import annotations

import torch

from ..context import Context
from ..report import CheckResult, error_line
from ..targets import AutogradTarget


def check_undefined_grad(ctx: Context) -> CheckResult:
    result = CheckResult("undefined_grad")
    if not isinstance(ctx.pristine, AutogradTarget):
        result.skipped = f"a {ctx.pristine.kind} object's backward is always given every output's gradient"
        return result
    if ctx.target64 is None:
        result.skipped = f"{ctx.why_no_float64}"
        return result
    target = ctx.target64.copy()
    pass_ = target.start(ctx.call64)
    grads = ctx.grads64
    leaves = pass_.outputs.leaves
    flowing = [i for i, g in enumerate(grads) if g is not None and leaves[i] is not None and leaves[i].requires_grad]
    if len(flowing) < 2:
        result.skipped = "fewer than two outputs get a gradient: none can be left without one"
        return result
    names = ctx.outputs.names()
    wrt = ctx.call64.names() + [name for name, _ in target.parameters()]
    missing = [[k] for k in flowing]
    if len(flowing) >= 3:  # with two, one output given is the other missing: done above
        missing += [[i for i in flowing if i != k] for k in flowing]
    for undefined in missing:
        without = [None if i in undefined else g for i, g in enumerate(grads)]
        with_zeros = [torch.zeros_like(g) if i in undefined and g is not None else g for i, g in enumerate(grads)]
        which = _listed([names[i] for i in undefined])
        given = _listed([names[i] for i in flowing if i not in undefined])
        try:
            got = pass_.backward(without).all()
        except Exception as error:
            result.fail(
                f"with no gradient for {which} (None: autograd's when an output does not reach the loss, "
                f"for a Function that calls ctx.set_materialize_grads(False); a gradient for {given} only), "
                f"the backward raised {error_line(error)}"
            )
            continue
        expected = pass_.backward(with_zeros).all()
        what = (
            f"backward without {which}'s gradient" if len(undefined) == 1 else f"backward with {given}'s gradient only",
            "with zeros for it" if len(undefined) == 1 else f"with zeros for {which}",
        )
        for name, value, reference in zip(wrt, got, expected):
            if reference is None:
                continue  # a missing gradient is finite_differences' to report
            reference = reference.detach().double().cpu()
            value = torch.zeros_like(reference) if value is None else value.detach()
            result.merge(name, value, reference, ctx.recomputed(f"{name}.grad", reference), what)
    return result


def _listed(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
