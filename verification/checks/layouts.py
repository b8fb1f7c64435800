"""``layouts``: the same results from inputs and upstream gradients in other memory layouts.

Each case runs again with every differentiated input and every upstream gradient, with the same
values, given as

* ``transposed``: the storage of a tensor with its last two dimensions of more than one element
  swapped (a tensor with one such dimension: strided); a 4-d (5-d) tensor goes in as
  ``channels_last`` (``channels_last_3d``) instead where that differs from contiguous, the layout
  convolution kernels meet (the run is then named ``channels_last``);
* ``strided``: every other element of a larger buffer, from its second (a storage offset of 1);
* ``offset``: contiguous, at a storage offset (``buffer[1:]`` of a buffer one element longer), as a
  slice of a larger tensor is. A kernel wrapper that makes a tensor contiguous and then reads its
  storage from the start, ignoring ``storage_offset()``, reads shifted values; only this layout
  shows it, since ``.contiguous()`` of a non-contiguous view is a fresh tensor at offset 0.

Every run must agree with the contiguous one up to rounding (a kernel may take another
summation order for another layout): ``safety * (u (|c| + mean|c|) + u_acc n mean|c|)`` in the
caller's precision. A kernel that reads ``grad_output`` as if it were contiguous (the bug of
flash-attention#355 and mmcv#737) gives values from the wrong positions and fails. Where a layout
fails, each input and upstream gradient runs alone in it (the others contiguous), on failure only,
and the report names those that fail alone.

Expanded (stride 0) tensors are not among the layouts: a target may write into its input (an
in-place module), which torch refuses for an expanded one, and an expanded upstream gradient
cannot hold the random values drawn for it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import torch
from torch import Tensor

from ..context import Context, named
from ..error_model import accumulation_roundoff, estimated, unit_roundoff
from ..report import CheckResult
from ..targets import as_complex

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def transposed(x: Tensor) -> Tensor:
    """The values of ``x`` in another memory order: channels_last for a 4-d (5-d) tensor where that
    is not contiguous, else its last two dimensions of more than one element swapped (strided where
    it has fewer than two)."""
    x = x.detach()
    if x.dim() in _CHANNELS_LAST:
        channels_last = x.contiguous(memory_format=_CHANNELS_LAST[x.dim()])
        if not channels_last.is_contiguous():
            return channels_last
    long = [d for d, n in enumerate(x.shape) if n > 1]
    if len(long) < 2:
        return strided(x)
    a, b = long[-2:]
    return x.transpose(a, b).contiguous().transpose(a, b)


def strided(x: Tensor) -> Tensor:
    """The values of ``x`` at every other element of a buffer twice as long in the last dimension,
    from its second element (a storage offset of 1)."""
    if x.dim() == 0:
        return at_offset(x)
    buffer = torch.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype, device=x.device)
    view = buffer[..., 1::2]
    view.copy_(x.detach())
    return view


def at_offset(x: Tensor) -> Tensor:
    """The values of ``x``, contiguous, at a storage offset of 1: ``buffer[1:]`` of a buffer one element
    longer (zero before them), as a slice of a larger tensor."""
    buffer = torch.zeros(x.numel() + 1, dtype=x.dtype, device=x.device)
    view = buffer[1:].view(x.shape)
    view.copy_(x.detach())
    return view


LAYOUTS: dict[str, Callable[[Tensor], Tensor]] = {"transposed": transposed, "strided": strided, "offset": at_offset}

EXPLAINED = {
    "transposed": "transposed (last two dimensions swapped in memory)",
    "channels_last": "channels_last (4-d ones channels_last, the others transposed)",
    "strided": "strided (every other element of a larger buffer, at a storage offset)",
    "offset": "offset (contiguous at a storage offset: buffer[1:] of a longer buffer, as a slice)",
}


def _relayout(
    values: Sequence[Tensor | None],
    layout: Callable[[Tensor], Tensor],
    complex_: Collection[int] = (),
    only: int | None = None,
) -> list[Tensor | None]:
    """``values`` in another layout (``only``: that one alone, the others as they are); those at
    ``complex_`` are real views of complex tensors, moved as the complex tensors they stand for (a
    transposed complex tensor, not its real and imaginary parts swapped into the last dimension)."""
    return [
        v
        if v is None or (only is not None and i != only)
        else torch.view_as_real(layout(as_complex(v)))
        if i in complex_
        else layout(v)
        for i, v in enumerate(values)
    ]


def _is_channels_last(x: Tensor | None) -> bool:
    return (
        x is not None
        and x.dim() in _CHANNELS_LAST
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=_CHANNELS_LAST[x.dim()])
    )


def check_layouts(ctx: Context) -> CheckResult:
    result = CheckResult("layouts")
    if not [*ctx.call.tensors(), *(g for g in ctx.grads if g is not None)]:
        result.skipped = "no differentiated input and no upstream gradient"
        return result
    target = ctx.pristine.copy()
    pass_ = target.start(ctx.call)
    contiguous = named(pass_.outputs, pass_.backward(ctx.grads), ctx.call, target)
    tolerances = _tolerances(ctx, contiguous)
    complex_inputs = [k for k, i in enumerate(ctx.call.diff) if i in ctx.call.complex_]

    def run(inputs: list[Tensor | None], grads: list[Tensor | None], fresh: bool = True) -> dict[str, Tensor]:
        """The results with these inputs and upstream gradients (``fresh``: a forward of their own;
        else the contiguous forward's pass, for upstream gradients alone)."""
        if not fresh:
            return named(pass_.outputs, pass_.backward(grads), ctx.call, target)
        call = ctx.call.with_tensors(inputs)
        other = ctx.pristine.copy()
        other_pass = other.start(call)
        return named(other_pass.outputs, other_pass.backward(grads), call, other)

    movable = any(x.numel() > 1 for x in [*ctx.call.tensors(), *(g for g in ctx.grads if g is not None)])
    u = unit_roundoff(ctx.dtype)
    notes = []  # appended to the report's worst detail once every layout has run
    for label, layout in LAYOUTS.items():
        if label != "offset" and not movable:
            continue  # one element: every layout but an offset is the contiguous one
        inputs = _relayout(ctx.call.tensors(), layout, complex_inputs)
        grads = _relayout(ctx.grads, layout, ctx.outputs.complex_)
        if any(_is_channels_last(x) for x in [*inputs, *grads]):
            label = "channels_last"
        try:
            seen = run(inputs, grads)
        except Exception as error:
            result.fail(
                f"with inputs and upstream gradients in the {EXPLAINED[label]} layout, the target raised "
                f"{type(error).__name__}: {error} (torch's own operations accept any memory layout, and so must "
                "an op used in their place: call .contiguous() on what a kernel reads as contiguous, .reshape() "
                "rather than .view(), and pass storage_offset() on with a data pointer)"
            )
            notes.append(_alone(ctx, label, layout, complex_inputs, run, contiguous, tolerances))
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
        for name, c in contiguous.items():
            value = seen.get(name)
            if value is None:
                result.fail(f"with inputs in the {EXPLAINED[label]} layout, {name} is missing")
                continue
            result.merge(f"{name} ({label})", value, c, tolerances[name], (f"{label} layout", "contiguous"))
        if result.ok:
            continue
        differing = _differing(contiguous, seen, tolerances)
        if not differing:
            continue
        forward = [name for name in differing if name.startswith("output")]
        if forward and not any(n.startswith("the forward itself") for n in notes):
            notes.insert(
                0,
                f"the forward itself gives another {forward[0]} with {label} inputs: it depends on the "
                "inputs' memory layout (a kernel that reads its input as if contiguous, or randomness drawn in memory "
                "order, as torch's dropout: check a random target with its randomness fixed, or without this check)",
            )
        notes.append(_alone(ctx, label, layout, complex_inputs, run, contiguous, tolerances))
    if notes and not result.ok:
        result.detail += "".join(f"; {note}" for note in notes)
    return result


def _tolerances(ctx: Context, contiguous: dict[str, Tensor]) -> dict[str, Tensor]:
    u = unit_roundoff(ctx.dtype)
    u_acc = accumulation_roundoff(ctx.dtype)
    tolerances = {}
    for name, c in contiguous.items():
        c = c.cpu()
        floor = max(float(c.abs().mean()) if c.numel() else 0.0, ctx.scale)
        # Another summation order is another rounding: the rounding bound at the case's
        # scale, plus the measured float64 rounding noise scaled to this precision.
        noise = estimated(ctx.noise, name, c) * (u / unit_roundoff(torch.float64))
        tolerances[name] = ctx.options.safety * (u * (c.abs() + floor) + u_acc * ctx.n_terms * floor + 2 * noise)
    return tolerances


def _differing(contiguous: dict[str, Tensor], seen: dict[str, Tensor], tolerances: dict[str, Tensor]) -> list[str]:
    """The results missing from ``seen`` or beyond their tolerance of the contiguous ones (as
    :meth:`CheckResult.merge` fails them: a non-finite value where the contiguous one is finite too)."""
    differing = []
    for name, c in contiguous.items():
        value = seen.get(name)
        if value is None or value.numel() != c.numel():
            differing.append(name)
            continue
        c, value = c.cpu().double(), value.cpu().double().reshape(c.shape)
        beyond = ((value - c).abs() > tolerances[name]) | (~torch.isfinite(value) & torch.isfinite(c))
        if bool(beyond.any()):
            differing.append(name)
    return differing


def _alone(
    ctx: Context,
    label: str,
    layout: Callable[[Tensor], Tensor],
    complex_inputs: list[int],
    run: Callable[..., dict[str, Tensor]],
    contiguous: dict[str, Tensor],
    tolerances: dict[str, Tensor],
) -> str:
    """Which inputs and upstream gradients fail alone in ``layout``, the others contiguous: a forward
    per input, a backward of the contiguous forward per upstream gradient."""
    inputs, grads = ctx.call.tensors(), list(ctx.grads)

    def fails(*args: object, **kwargs: object) -> bool:
        try:
            return bool(_differing(contiguous, run(*args, **kwargs), tolerances))
        except Exception:
            return True

    def moved(x: Tensor | None) -> bool:
        return x is not None and (label == "offset" or x.numel() > 1)

    culprits = [
        name
        for k, (name, x) in enumerate(zip(ctx.call.names(), inputs))
        if moved(x) and fails(_relayout(inputs, layout, complex_inputs, only=k), grads)
    ]
    culprits += [
        f"the upstream gradient of {name}"
        for j, (name, g) in enumerate(zip(ctx.outputs.names(), grads))
        if moved(g) and fails(inputs, _relayout(grads, layout, ctx.outputs.complex_, only=j), fresh=False)
    ]
    if not culprits:
        return f"{EXPLAINED[label]}: fails only with the inputs and upstream gradients in it together, no one alone"
    which = culprits[0] if len(culprits) == 1 else "each of " + ", ".join(culprits)
    return f"{EXPLAINED[label]}: fails with {which} alone in that layout (the rest contiguous)"


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
