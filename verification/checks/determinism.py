"""``determinism`` and ``side_effects``, in the caller's precision (where the kernel under test runs).

``determinism``: two fresh forward + backward passes on the same inputs give the same results,
and so does a second backward after one forward (saved state intact, the re-entrancy check of
``torch.autograd.gradcheck``), and so does a pass on the same inputs after a pass on others
(the inputs' elements shuffled): a backward that reads what an earlier forward left (an input
kept only on the first call, a cache never refreshed) gives the earlier inputs' gradient in
training and passes every check made on a fresh copy. Where the forward's own outputs change
with its history (a power iteration it updates and reads, as spectral norm's in train mode),
the gradients after it are not compared: a note says so. An autograd target is also applied
twice in one graph (these inputs, then others, then the first application's backward), as a
layer used twice in a network: its gradients must be the same, which a Function that keeps its
state on the class rather than in ``ctx`` fails. Equal means bitwise equal unless the caller passes
``nondet_tol`` (the largest absolute difference allowed, as in ``gradcheck``): a kernel that
accumulates with atomic adds declares its own.

For a module with ``backward_to_params`` (backward to the parameters only, skipping the input
gradient), that path must give the parameters the same gradients as ``backward``, bit for bit
(or within ``nondet_tol``).

``side_effects``: forward and backward leave their inputs, the loss target and the upstream
gradients unchanged (modules constructed with ``inplace=True`` may modify their input, as torch's do;
an autograd target may write into an input it returns, as ``relu_``, and a hand-written module only
when it declares ``inplace = True``),
and a later forward and backward leave the outputs and gradients an earlier one returned unchanged
(a result written into a buffer the target reuses changes under a caller who kept it: a stored
activation, a residual connection, the gradient of an earlier batch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..context import Context, generator_for, named
from ..report import CheckResult, _where
from ..targets import AutogradTarget, Call, ProtocolTarget, has_backward_to_params


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
    _compare_after_other_inputs(ctx, result, first, tol)
    _compare_with_a_second_application(ctx, result, first, tol)
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


def _shuffled(ctx: Context) -> Call:
    """The call with each differentiated tensor's elements shuffled: other inputs, from the values
    the target was given (so from its own domain)."""
    generator = generator_for(ctx.options.seed, "shuffled inputs")
    shuffled = {}
    for i in ctx.call.diff:
        x = ctx.call.args[i]
        order = torch.randperm(x.numel(), generator=generator).to(x.device)
        shuffled[i] = x.detach().reshape(-1)[order].reshape(x.shape).requires_grad_(x.requires_grad)
    return ctx.call.replace(shuffled)


def _compare_after_other_inputs(ctx: Context, result: CheckResult, first: dict[str, Tensor], tol: float) -> None:
    """A forward and backward on other inputs (each differentiated tensor's elements shuffled: values
    from the target's own domain), then on these, by one copy of the target: the results must be
    ``first``'s. Skipped, with a note, where the other inputs make the target raise or give outputs
    of other shapes, and where the outputs themselves depend on the earlier call."""
    target = ctx.pristine.copy()
    try:
        earlier = target.start(_shuffled(ctx))
        pairs = list(zip(earlier.outputs.leaves, ctx.grads))
        if any(g is not None and (y is None or y.shape != g.shape) for y, g in pairs) or len(pairs) != len(ctx.grads):
            ctx.report.notes.append(
                "after other inputs: not compared (on shuffled inputs the outputs have other shapes)"
            )
            return
        earlier.backward(ctx.grads)
    except Exception as error:  # the target's own domain (shuffled inputs): no verdict, a note
        ctx.report.notes.append(
            f"after other inputs: not compared (on shuffled inputs the target raised {type(error).__name__}: "
            f"{str(error)[:120]})"
        )
        return
    later = target.start(ctx.call)
    after = named(later.outputs, later.backward(ctx.grads), ctx.call, target)
    outputs = [name for name in first if not name.endswith(".grad")]
    changed = CheckResult("determinism")
    _compare(changed, {n: first[n] for n in outputs}, {n: after[n] for n in outputs if n in after}, "", tol)
    if not changed.ok:
        ctx.report.notes.append(
            "after other inputs: the gradients were not compared, since the forward's own outputs at these inputs "
            "change after a call on other inputs (state it updates and reads)"
        )
        return
    _compare(
        result,
        first,
        after,
        "a forward + backward on these inputs after one on other inputs, against one on a fresh copy",
        tol,
        hint=": backward reads state an earlier call left (an input or a result kept from the first forward only, "
        "a cache not refreshed), so in training it gives an earlier batch's gradient",
    )


def _compare_with_a_second_application(ctx: Context, result: CheckResult, first: dict[str, Tensor], tol: float) -> None:
    """An autograd target applied twice in one graph, as a layer used twice in a network: forward on
    these inputs, forward on others, then the first application's backward, which must give
    ``first``'s gradients. A backward that reads state the forward kept outside autograd's context
    (a class attribute instead of ``ctx.save_for_backward``) reads the second application's."""
    if not isinstance(ctx.pristine, AutogradTarget):
        return
    target = ctx.pristine.copy()
    try:
        application = target.start(ctx.call)
        target.start(_shuffled(ctx))
        gradients = application.backward(ctx.grads)
    except Exception as error:  # the target refuses a second application before the first's backward
        ctx.report.notes.append(
            f"a second application before the first's backward: not compared (the target raised "
            f"{type(error).__name__}: {str(error)[:120]})"
        )
        return
    _compare(
        result,
        {name: value for name, value in first.items() if name.endswith(".grad")},
        named(application.outputs, gradients, ctx.call, target),
        "the gradients of one application, alone and with a second application on other inputs before its backward",
        tol,
        hint=": backward reads what the last forward kept outside autograd's context (a class or global attribute "
        "rather than ctx.save_for_backward), so a layer applied twice in one graph gets the other application's",
    )


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
            if isinstance(ctx.target, ProtocolTarget) and not inplace:
                result.fail(
                    f"input[{i}] was written in place and returned as the output, but {ctx.name} does not declare "
                    "inplace=True: in a network, a layer before it that keeps its output for backward (a Tanh, a "
                    "Sigmoid) would read the overwritten values, and nothing would say so; compute into a new "
                    "tensor, or declare the module in place (an attribute inplace = True, as torch's and the "
                    "framework's in-place modules have)"
                )
                continue
            returned.append(f"input[{i}]")
        elif not inplace:
            result.fail(
                f"input[{i}] was modified by forward or backward (and is not among the outputs): "
                "a caller's tensor changes under it"
            )
    for i in pass_.modified_upstream:
        result.fail(f"the upstream gradient of output {i} was modified by backward")
    _check_results_kept(ctx, result)
    if inplace and result.ok:
        result.detail = "constructed with inplace=True: forward may modify its input"
    elif returned and result.ok:
        result.detail = f"forward writes its output into {', '.join(returned)} and returns it (in place)"
    return result


def _check_results_kept(ctx: Context, result: CheckResult) -> None:
    """The outputs and returned gradients of one pass, kept by the caller, are unchanged by the next
    pass (forward and backward on other inputs, by the same copy of the target). Skipped where the
    other inputs make the target raise or give outputs of other shapes (see determinism)."""
    target = ctx.pristine.copy()
    earlier = target.start(ctx.call)
    earlier.backward(ctx.grads)
    kept = [
        ("output" if len(earlier.outputs.leaves) == 1 else f"output[{i}]", y)
        for i, y in enumerate(earlier.outputs.leaves)
    ]
    kept += [(f"the gradient backward returned ({i})", g) for i, g in enumerate(earlier.returned)]
    kept = [(name, t, t.detach().clone()) for name, t in kept if t is not None]
    try:
        later = target.start(_shuffled(ctx))
        if [None if y is None else y.shape for y in later.outputs.leaves] != [
            None if y is None else y.shape for y in earlier.outputs.leaves
        ]:
            return
        later.backward([None if g is None else -g for g in ctx.grads])  # another upstream gradient too
    except Exception:  # the target's own domain (shuffled inputs): nothing to compare
        return
    for name, tensor, value in kept:
        try:
            unchanged = torch.equal(torch.nan_to_num(tensor.detach()), torch.nan_to_num(value))
        except RuntimeError as error:  # torch refuses to read it (a CUDA graph's output, overwritten)
            result.fail(f"{name} of one call can no longer be read after the next call: {str(error)[:200]}")
            return
        if not unchanged:
            result.fail(
                f"{name} of one call changed during the next forward and backward: it is a buffer the target "
                "reuses, so a caller who keeps it (a stored activation, a residual connection, an earlier "
                "batch's gradient) reads another call's values; return a new tensor"
            )
            return


def _returned(arg: Tensor, outputs: list[Tensor | None]) -> bool:
    """Whether an output shares ``arg``'s memory: the input was written in place to be returned."""
    memory = arg.untyped_storage().data_ptr()
    return any(out is not None and out.untyped_storage().data_ptr() == memory for out in outputs)
