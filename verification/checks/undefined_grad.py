"""``undefined_grad``: a backward given no gradient (None) for one of its outputs treats it as zeros.

When an output does not reach the loss (``y1, y2 = f(x); y1.sum().backward()``), autograd has no
gradient for it; a ``torch.autograd.Function`` that calls ``ctx.set_materialize_grads(False)``
then receives ``None`` for it, and its backward must skip that term, not fail on it. As
``gradcheck``'s ``check_undefined_grad``: for each output of a multi-output autograd target in turn,
the backward without that output's gradient must run and equal the backward with zeros there.
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
    for k in flowing:
        without = [None if i == k else g for i, g in enumerate(grads)]
        with_zeros = [torch.zeros_like(g) if i == k and g is not None else g for i, g in enumerate(grads)]
        try:
            got = pass_.backward(without).all()
        except Exception as error:
            result.fail(
                f"with no gradient for {names[k]} (None: autograd's when that output does not reach the loss, "
                f"for a Function that calls ctx.set_materialize_grads(False)), the backward raised {error_line(error)}"
            )
            continue
        expected = pass_.backward(with_zeros).all()
        for name, value, reference in zip(wrt, got, expected):
            if reference is None:
                continue  # a missing gradient is finite_differences' to report
            reference = reference.detach().double().cpu()
            value = torch.zeros_like(reference) if value is None else value.detach()
            result.merge(
                name,
                value,
                reference,
                ctx.recomputed(f"{name}.grad", reference),
                (f"backward without {names[k]}'s gradient", "with zeros for it"),
            )
    return result
