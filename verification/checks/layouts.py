"""``layouts``: the same results from non-contiguous inputs and upstream gradients.

Each case runs again with every differentiated input and every upstream gradient given as a
*transposed* view (the storage of a tensor with its last two dimensions swapped; 1-D tensors:
a strided view) and as a *strided* view (every other element of a larger buffer), with the
same values. Both runs must agree with the contiguous one up to rounding (a kernel may take
another summation order for another layout): ``safety * (u (|c| + mean|c|) + u_acc n mean|c|)``
in the caller's precision. A kernel that reads ``grad_output`` as if it were contiguous (the
bug of flash-attention#355 and mmcv#737) gives values from the wrong positions and fails.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import torch
from torch import Tensor

from ..context import Context, named
from ..error_model import accumulation_roundoff, estimated, unit_roundoff
from ..report import CheckResult
from ..targets import as_complex


def transposed(x: Tensor) -> Tensor:
    """The values of ``x`` in a column-major (last two dimensions swapped) storage."""
    if x.dim() < 2:
        return strided(x)
    return x.detach().transpose(-1, -2).contiguous().transpose(-1, -2)


def strided(x: Tensor) -> Tensor:
    """The values of ``x`` at every other element of a buffer twice as long in the last dimension."""
    if x.dim() == 0:
        return x.detach().clone()
    buffer = torch.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype, device=x.device)
    view = buffer[..., ::2]
    view.copy_(x.detach())
    return view


LAYOUTS: dict[str, Callable[[Tensor], Tensor]] = {"transposed": transposed, "strided": strided}


def _relayout(
    values: Sequence[Tensor | None], layout: Callable[[Tensor], Tensor], complex_: Collection[int] = ()
) -> list[Tensor | None]:
    """``values`` in another layout; those at ``complex_`` are real views of complex tensors, moved as
    the complex tensors they stand for (a transposed complex tensor, not its real and imaginary parts
    swapped into the last dimension)."""
    return [
        None if v is None else torch.view_as_real(layout(as_complex(v))) if i in complex_ else layout(v)
        for i, v in enumerate(values)
    ]


def check_layouts(ctx: Context) -> CheckResult:
    result = CheckResult("layouts")
    movable = [x for x in [*ctx.call.tensors(), *(g for g in ctx.grads if g is not None)] if x.numel() > 1]
    if not movable:
        result.skipped = "no input or upstream gradient has more than one element"
        return result
    target = ctx.pristine.copy()
    pass_ = target.start(ctx.call)
    contiguous = named(pass_.outputs, pass_.backward(ctx.grads), ctx.call, target)
    u = unit_roundoff(ctx.dtype)
    u_acc = accumulation_roundoff(ctx.dtype)
    safety = ctx.options.safety
    for label, layout in LAYOUTS.items():
        complex_inputs = [k for k, i in enumerate(ctx.call.diff) if i in ctx.call.complex_]
        call = ctx.call.with_tensors(_relayout(ctx.call.tensors(), layout, complex_inputs))
        grads = _relayout(ctx.grads, layout, ctx.outputs.complex_)
        other = ctx.pristine.copy()
        try:
            other_pass = other.start(call)
            seen = named(other_pass.outputs, other_pass.backward(grads), call, other)
        except Exception as error:
            result.fail(
                f"with {label} inputs and upstream gradients, the target raised {type(error).__name__}: {error} "
                "(torch's own operations accept any memory layout, and so must an op used in their place: "
                "call .contiguous() on what a kernel reads as contiguous, .reshape() rather than .view())"
            )
            continue
        if pass_.outputs.random and _forward_differs(contiguous, seen, u):
            # Random numbers are drawn in memory order (torch's dropout): another layout, another mask.
            if not result.inconclusive:
                result.inconclusive = (
                    f"the target draws random numbers, and with {label} inputs its forward gives other outputs: "
                    "it assigns them in memory order (as torch's dropout does), so this layout's results were not "
                    "compared; check it with its randomness off (eval mode, p=0) for a verdict on layouts"
                )
            continue
        forward_differs = []
        for name, c in contiguous.items():
            value = seen.get(name)
            if value is None:
                result.fail(f"with {label} inputs, {name} is missing")
                continue
            c = c.cpu()
            floor = max(float(c.abs().mean()) if c.numel() else 0.0, ctx.scale)
            # Another summation order is another rounding: the rounding bound at the case's
            # scale, plus the measured float64 rounding noise scaled to this precision.
            noise = estimated(ctx.noise, name, c) * (u / unit_roundoff(torch.float64))
            tolerance = safety * (u * (c.abs() + floor) + u_acc * ctx.n_terms * floor + 2 * noise)
            result.merge(f"{name} ({label})", value, c, tolerance, (f"{label} layout", "contiguous"))
            if name.startswith("output") and bool(((value.cpu().double() - c).abs() > tolerance).any()):
                forward_differs.append(name)
        if forward_differs and not result.ok and "the forward itself" not in result.detail:
            result.detail += (
                f"; the forward itself gives another {forward_differs[0]} with {label} inputs: it depends on the "
                "inputs' memory layout (a kernel that reads its input as if contiguous, or randomness drawn in memory "
                "order, as torch's dropout: check a random target with its randomness fixed, or without this check)"
            )
    return result


def _forward_differs(contiguous: dict[str, Tensor], seen: dict[str, Tensor], u: float) -> bool:
    """Whether an output differs between the two runs by more than a few units ``u`` in the last place
    of the caller's precision (the tolerance of the comparison proper is not needed to tell a redrawn
    mask)."""
    for name, c in contiguous.items():
        value = seen.get(name)
        if name.startswith("output") and value is not None and value.shape == c.shape and c.is_floating_point():
            c64, v64 = c.detach().cpu().double(), value.detach().cpu().double()
            scale = float(c64.abs().max()) if c64.numel() else 0.0
            if bool(((c64 - v64).abs() > 64 * u * (c64.abs() + scale)).any()):
                return True
    return False
