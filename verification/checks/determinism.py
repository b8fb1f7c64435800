"""``determinism`` and ``side_effects``, in the caller's precision (where the kernel under test runs).

``determinism``: two fresh forward + backward passes on the same inputs give the same results,
and so does a second backward after one forward (saved state intact, the re-entrancy check of
``torch.autograd.gradcheck``). Equal means bitwise equal unless the caller passes
``nondet_tol`` (the largest absolute difference allowed, as in ``gradcheck``): a kernel that
accumulates with atomic adds declares its own.

For a module with ``backward_to_params`` (backward to the parameters only, skipping the input
gradient), that path must give the parameters the same gradients as ``backward``, bit for bit
(or within ``nondet_tol``).

``side_effects``: forward and backward leave their inputs, the loss target and the upstream
gradients unchanged (modules constructed with ``inplace=True`` may modify their input, as torch's do).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..context import Context, named
from ..report import CheckResult, _where
from ..targets import ProtocolTarget, has_backward_to_params


def _run(ctx: Context) -> tuple[dict[str, Tensor], Any]:
    target = ctx.pristine.copy()
    pass_ = target.start(ctx.call)
    return named(pass_.outputs, pass_.backward(ctx.grads), ctx.call, target), (target, pass_)


def _compare(
    result: CheckResult,
    first: dict[str, Tensor],
    second: dict[str, Tensor],
    what: str,
    tol: float,
    hint: str | None = None,
) -> None:
    for name, a in first.items():
        b = second.get(name)
        if b is None:
            result.fail(f"{what}: {name} is missing the second time")
            continue
        # Equal values (infinities included) and NaN in both runs at the same place are the same result.
        agree = (a == b) | (torch.isnan(a) & torch.isnan(b))
        difference = torch.where(agree, torch.zeros_like(a), (a - b).abs())
        largest = float(torch.nan_to_num(difference, nan=float("inf")).max()) if difference.numel() else 0.0
        same = bool(agree.all())
        result.worst_error = max(result.worst_error, largest)
        if (tol == 0 and not same) or largest > tol:
            where = int(torch.nan_to_num(difference, nan=float("inf")).reshape(-1).argmax())
            index = _where(a.shape, where)
            if hint is None:
                hint = (
                    "; if the kernel is nondeterministic by design (atomic adds), pass nondet_tol= the difference "
                    "you accept"
                    if tol == 0
                    else ""
                )
            result.fail(
                f"{what} differ: {name}{index} is {float(a.reshape(-1)[where]):.17g} then "
                f"{float(b.reshape(-1)[where]):.17g} (largest difference {largest:.3g}, nondet_tol {tol:g}){hint}"
            )
            return


def check_determinism(ctx: Context) -> CheckResult:
    result = CheckResult("determinism")
    tol = ctx.options.nondet_tol
    first, (target, pass_) = _run(ctx)
    second, _ = _run(ctx)
    _compare(result, first, second, "two forward + backward passes on the same inputs", tol)
    again = named(pass_.outputs, pass_.backward(ctx.grads), ctx.call, target)
    _compare(result, first, again, "two backward calls after one forward", tol)
    if has_backward_to_params(ctx.target):
        target = ctx.pristine.copy()
        names = [f"{name}.grad" for name, _ in target.parameters()]
        params_only = target.start(ctx.call).backward_to_params(ctx.grads)
        _compare(
            result,
            {name: first[name] for name in names if name in first},
            {name: g.double() for name, g in zip(names, params_only)},
            "the parameter gradients of backward and backward_to_params",
            tol,
            hint="; backward_to_params must accumulate what backward does, only without the input gradient",
        )
    result.worst_ratio = 0.0 if result.ok else float("inf")
    return result


def _inplace(ctx: Context) -> bool:
    if not isinstance(ctx.target, ProtocolTarget):
        return False
    stack = [ctx.target.module]
    while stack:
        module = stack.pop()
        if getattr(module, "inplace", False) is True:
            return True
        if callable(getattr(module, "children", None)):
            stack.extend(module.children())
    return False


def check_side_effects(ctx: Context) -> CheckResult:
    result = CheckResult("side_effects")
    target = ctx.pristine.copy()
    pass_ = target.start(ctx.call)
    pass_.backward(ctx.grads)
    inplace = _inplace(ctx)
    returned = []  # inputs written in place and returned: an in-place operation, as torch's relu_
    for i, (given, seen) in enumerate(zip(ctx.call.args, pass_.args)):
        if not isinstance(given, Tensor) or torch.equal(torch.nan_to_num(given), torch.nan_to_num(seen.detach())):
            continue
        if i >= ctx.call.n_inputs:
            result.fail("the loss target was modified by forward or backward")
        elif _returned(seen, pass_.outputs.leaves):
            returned.append(f"input[{i}]")
        elif not inplace:
            result.fail(
                f"input[{i}] was modified by forward or backward (and is not among the outputs): "
                "a caller's tensor changes under it"
            )
    for i in pass_.modified_upstream:
        result.fail(f"the upstream gradient of output {i} was modified by backward")
    if inplace and result.ok:
        result.detail = "constructed with inplace=True: forward may modify its input"
    elif returned and result.ok:
        result.detail = f"forward writes its output into {', '.join(returned)} and returns it (in place)"
    return result


def _returned(arg: Tensor, outputs: list[Tensor | None]) -> bool:
    """Whether an output shares ``arg``'s memory: the input was written in place to be returned."""
    memory = arg.untyped_storage().data_ptr()
    return any(out is not None and out.untyped_storage().data_ptr() == memory for out in outputs)
