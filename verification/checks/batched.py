"""``batched``: the backward and the forward under ``torch.vmap`` agree with them sample by sample.

``torch.func`` runs a Function's code on batched tensors: ``jacrev``, ``hessian``, per-sample
gradients (``vmap(grad(f))``) and ``torch.autograd.functional.jacobian(vectorize=True)`` call its
backward once on a batch of upstream gradients, and ``vmap(f)`` calls its forward (through its
``vmap`` rule, or the one ``generate_vmap_rule=True`` derives) on a batch of inputs. Code that is
right one sample at a time can be wrong or refused there: ``.item()``, an in-place write of a batched
value into an unbatched buffer, a ``vmap`` rule that returns the wrong ``out_dims``. In float64, on a
float64 copy:

* batched backward (``torch.autograd.grad(..., is_grads_batched=True)``, as ``gradcheck``'s
  ``check_batched_grad``): ``BATCH`` upstream gradients at once against one backward call each;
* ``vmap`` over the inputs (for targets ``torch.func`` can transform): the outputs and the input
  gradients (``torch.func.vjp`` under ``vmap``) at ``BATCH`` nearby points (each input scaled
  elementwise by 1 + 0.05 N(0, 1), so signs and zeros stay) against one forward and backward per point.

Tolerance: as ``linearity``'s, the rounding bound at the case's gradient scale plus the measured
rounding noise (a batched kernel may sum in another order). Runs by default for a Function that
declares vmap support (``generate_vmap_rule = True`` or a ``vmap`` staticmethod); for any other
autograd target when asked, ``checks=[..., "batched"]``. A module's parameter gradients are compared
too: under ``vmap`` over the inputs they are per-sample gradients, as DP-SGD computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from ..context import Context, random_like
from ..report import CheckResult, error_line
from ..targets import AutogradTarget, Call, plain, real_leaves

BATCH = 3
SPREAD = 0.05  # the nearby points: each input element scaled by 1 + SPREAD N(0, 1)


def declares_vmap(fn: object) -> bool:
    """Whether ``fn`` is a Function subclass that declares vmap support."""
    return (
        isinstance(fn, type)
        and issubclass(fn, torch.autograd.Function)
        and (
            getattr(fn, "generate_vmap_rule", False) is True
            or getattr(fn, "vmap", None) is not torch.autograd.Function.vmap
        )
    )


def check_batched(ctx: Context) -> CheckResult:
    result = CheckResult("batched")
    if not isinstance(ctx.pristine, AutogradTarget):
        result.skipped = f"a {ctx.pristine.kind} object's backward is called one sample at a time"
        return result
    if not declares_vmap(ctx.pristine.fn) and not ctx.asked_for("batched"):
        result.skipped = "the target declares no vmap support; for a callable under torch.vmap: checks=[..., 'batched']"
        return result
    if not ctx.call.diff:
        result.skipped = "no differentiated input: the inputs' gradients are the ones compared"
        return result
    if ctx.target64 is None:
        result.inconclusive = f"{ctx.why_no_float64}: batched passes are checked in float64"
        return result
    if ctx.outputs.random:
        result.inconclusive = (
            "the target draws random numbers: under torch.vmap each sample draws its own, so batched and "
            "one-at-a-time passes are not the same computation; check it with its randomness off"
        )
        return result
    base = ctx.target64
    assert isinstance(base, AutogradTarget)
    _batched_backward(result, ctx, base)
    _vmapped(result, ctx, base)
    return result


def _compare(
    result: CheckResult, ctx: Context, name: str, batched: Tensor, singles: Sequence[Tensor], what: tuple[str, str]
) -> None:
    """Each sample of ``batched`` against its one-at-a-time value, at the linearity check's tolerance."""
    for b, single in enumerate(singles):
        expected = single.detach().double().cpu()
        result.merge(f"{name}[sample {b}]", batched[b].detach(), expected, ctx.recomputed(name, expected), what)


def _batched_backward(result: CheckResult, ctx: Context, base: AutogradTarget) -> None:
    pass_ = base.copy().start(ctx.call64)
    upstream = [
        ctx.grads64,
        *([random_like(g, ctx.generator) if g is not None else None for g in ctx.grads64] for _ in range(BATCH - 1)),
    ]
    singles = [pass_.backward(g).all() for g in upstream]
    pairs = [
        (i, out)
        for i, out in enumerate(pass_.outputs.leaves)
        if out is not None and ctx.grads64[i] is not None and out.requires_grad
    ]
    if not pairs:
        result.skipped = "no output requires grad"
        return
    stacked = [torch.stack([g[i] for g in upstream]) for i, _ in pairs]
    try:
        with torch.enable_grad():
            found = torch.autograd.grad(
                [out for _, out in pairs],
                pass_.leaves + [p for _, p in base.autograd_parameters()],
                stacked,
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
    except Exception as error:
        result.fail(
            f"the backward raised under torch.vmap, called on {BATCH} upstream gradients at once "
            f"(is_grads_batched=True, as jacrev, hessian and per-sample gradients call it): {error_line(error)}"
        )
        return
    found = [None if g is None else torch.view_as_real(g.resolve_conj()) if g.is_complex() else g for g in found]
    names = ctx.call64.names() + [name for name, _ in base.parameters()]
    for name, batched, *per_sample in zip(names, found, *singles):
        if batched is None or any(s is None for s in per_sample):
            continue  # a missing gradient is finite_differences' to report
        _compare(result, ctx, f"{name}.grad", batched, per_sample, ("batched backward", "one backward per sample"))


def _points(call: Call, generator: torch.Generator) -> list[Call]:
    """``BATCH`` calls at nearby points: each differentiated input scaled elementwise by 1 + SPREAD N(0, 1)."""
    points = []
    for _ in range(BATCH):
        moved = [
            x.detach() * (1 + SPREAD * torch.randn(x.shape, generator=generator, dtype=torch.float64)).to(x.device)
            for x in call.tensors()
        ]
        points.append(call.with_tensors(moved))
    return points


def _vmapped(result: CheckResult, ctx: Context, base: AutogradTarget) -> None:
    call = ctx.call64
    points = _points(call, ctx.generator)
    upstream = [[random_like(g, ctx.generator) if g is not None else None for g in ctx.grads64] for _ in points]
    singles = []
    for point, grads in zip(points, upstream):
        pass_ = base.copy().start(point)
        singles.append(([None if y is None else y.detach() for y in pass_.outputs.leaves], pass_.backward(grads).all()))
    with_upstream = [i for i, g in enumerate(ctx.grads64) if g is not None]
    target = base.copy()
    # A module's parameters, unbatched, are primals too: their gradients come out per sample, as
    # per-sample gradients (vmap over grad of the loss with respect to the parameters) have them.
    params = {name: p.detach() for name, p in target.autograd_parameters()}

    def one_sample(xs: Sequence[Tensor], gs: Sequence[Tensor]) -> tuple[tuple[Tensor, ...], tuple[Any, ...]]:
        def forward(diff: tuple[Tensor, ...], values: dict[str, Tensor]) -> tuple[Tensor, ...]:
            args: list[Any] = list(call.args)
            for i, x in zip(call.diff, diff):
                args[i] = x
            handed = call.handed(args)
            if values:
                outputs = torch.func.functional_call(target.fn, values, tuple(handed))
            else:
                outputs = target._call(*handed)
            leaves, _ = real_leaves(pytree.tree_leaves(plain(outputs)))
            return tuple(leaves[i] for i in with_upstream)

        outputs, vjp = torch.func.vjp(forward, tuple(xs), params)
        gx, gp = vjp(tuple(gs))
        return outputs, (*gx, *(gp[name] for name in params))

    xs = [torch.stack([p.tensors()[k] for p in points]) for k in range(len(call.diff))]
    gs = [torch.stack([g[i] for g in upstream]) for i in with_upstream]
    try:
        outputs, gradients = torch.func.vmap(one_sample)(xs, gs)
    except Exception as error:
        text = error_line(error)
        # A Function in the old style (forward(ctx, ...)): torch.func cannot transform it. Asked for a
        # callable that uses one, only the batched backward is checked; a Function that declares vmap
        # support fails, as torch.vmap would on it.
        if "setup_context" in text and not declares_vmap(ctx.pristine.fn):
            if not result.detail:
                result.detail = f"torch.vmap over the inputs not checked: {text}"
            return
        result.fail(f"the target raised under torch.vmap over {BATCH} samples of its inputs: {text}")
        return
    names = ctx.outputs.names()
    for k, i in enumerate(with_upstream):
        _compare(
            result, ctx, names[i], outputs[k], [s[0][i] for s in singles], ("vmapped forward", "one forward per sample")
        )
    gradients = [torch.view_as_real(g.resolve_conj()) if g.is_complex() else g for g in gradients]
    for k, name in enumerate(call.names() + [name for name, _ in base.parameters()]):
        per_sample = [s[1][k] for s in singles]
        if any(p is None for p in per_sample):
            continue
        _compare(result, ctx, f"{name}.grad", gradients[k], per_sample, ("vmapped backward", "one backward per sample"))
