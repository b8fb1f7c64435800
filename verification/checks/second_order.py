"""``second_order`` (``order=2``): the backward's own backward, as ``torch.autograd.gradgradcheck`` does.

The first-order backward is a function of the inputs and the upstream gradients,
:math:`G(x, v) = \\partial_x \\langle v, f(x)\\rangle`, computed by the target's backward code
with ``create_graph=True``. Its gradient (through the graph that backward code builds) is
checked against finite differences of ``G`` itself, with random upstream gradients for ``G``,
by the same machinery and error model as ``finite_differences``. A backward built from
detached tensors has no graph, so its second derivative is missing and the check fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from ..context import Context, random_like
from ..report import CheckResult
from ..targets import AutogradTarget, Call, pinned_rng, plain, real_leaves
from .finite_differences import compare


class BackwardAsFunction(AutogradTarget):
    """``(inputs..., upstream gradients...) -> gradients``, the backward of ``base`` as a differentiable function."""

    def __init__(self, base: AutogradTarget, n_args: int, diff: Sequence[int], upstream_of: Sequence[int]) -> None:
        """``upstream_of``: the positions, among the base's flattened outputs, of the outputs whose
        upstream gradients follow the arguments (those with one: not an output left out of the check)."""
        self.base, self.n_args, self.base_diff, self.upstream_of = base, n_args, list(diff), list(upstream_of)
        super().__init__(self._first_order, f"backward of {base.name}")
        self.kind = f"backward of a {base.kind}"

    def parameters(self) -> list[tuple[str, Tensor]]:
        return self.base.parameters()

    def autograd_parameters(self) -> list[tuple[str, Tensor]]:
        return self.base.autograd_parameters()

    def copy(self, dtype: torch.dtype | None = None) -> BackwardAsFunction:
        return BackwardAsFunction(self.base.copy(dtype), self.n_args, self.base_diff, self.upstream_of)

    def _first_order(self, *everything: Any) -> tuple[Tensor, ...]:
        args, upstream = list(everything[: self.n_args]), list(everything[self.n_args :])
        with torch.enable_grad():
            for i in self.base_diff:
                if not args[i].requires_grad:
                    args[i] = args[i].detach().requires_grad_(True)
            wrt = [args[i] for i in self.base_diff] + [p for _, p in self.base.autograd_parameters()]
            with pinned_rng(args[self.base_diff[0]].device, [a for a in args if isinstance(a, torch.Generator)]):
                result = self.base._call(*args)
            leaves, _ = real_leaves(pytree.tree_leaves(plain(result)))
            pairs = [(leaves[i], v) for i, v in zip(self.upstream_of, upstream) if leaves[i].requires_grad]
            if pairs:
                found = torch.autograd.grad(
                    [o for o, _ in pairs], wrt, [v for _, v in pairs], create_graph=True, allow_unused=True
                )
            else:
                found = (None,) * len(wrt)
        return tuple(torch.zeros_like(w) if g is None else g for g, w in zip(found, wrt))


def check_second_order(ctx: Context) -> CheckResult:
    result = CheckResult("second_order")
    if ctx.order < 2:
        result.skipped = "order=1"
        return result
    base = ctx.target64
    if base is None:
        result.inconclusive = f"{ctx.why_no_float64}: second derivatives are checked in float64 only"
        return result
    assert isinstance(base, AutogradTarget)
    call = ctx.call64
    upstream_of = [i for i, g in enumerate(ctx.grads64) if g is not None]
    upstream = [ctx.grads64[i] for i in upstream_of]
    derived = BackwardAsFunction(base.copy(), len(call.args), call.diff, upstream_of)
    n = len(call.args)
    # The base's complex arguments stay complex for it: BackwardAsFunction is called with them made
    # complex (its own run hands them over so) and returns their gradients, which its run makes real.
    diff2 = list(call.diff) + list(range(n, n + len(upstream)))
    call2 = Call(list(call.args) + upstream, diff2, n + len(upstream), call.complex_)
    pass_ = derived.start(call2)
    grads2 = [None if x is None else random_like(x, ctx.generator) for x in pass_.outputs.leaves]
    gradients = pass_.backward(grads2)
    if all(g is None for g in gradients.all()):
        result.fail(
            "the backward's result has no autograd graph: it is not differentiable (a backward built from "
            "detached tensors, .data, or under torch.no_grad? a torch.autograd.Function's backward marked "
            "@once_differentiable declares this)"
        )
        return result
    compare(result, derived, call2, grads2, gradients, ctx.options, ctx.generator, upstream_drawn=True)
    return result
