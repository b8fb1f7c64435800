"""Detection power and cost of gradient checkers on the same planted errors.

``python -m benchmarks.detection`` plants a relative error ``eps`` in a custom
``torch.autograd.Function`` (``y = tanh(x @ w)``, ``x`` 8x16, ``w`` 16x8; with ``--large``, ``x``
and ``w`` 200x200: 40,000 elements each and 40,000 outputs, where a checker cannot afford one
difference per element) and reports, for each checker, the smallest ``eps`` it catches (every
larger one caught too) and its seconds per check on the correct Function:

* in one element of the input gradient and in all of them (``* (1 + eps)``: a wrong coefficient,
  linear in the upstream gradient as real bugs are, so that only a check of the values catches it);
* at first order in float64 and float32 (the error in every dtype), in float32 and bfloat16
  with the error only in the low-precision path (a kernel bug the float64 path does not have),
  at second order in float64 (the error in the backward's own derivative), and in float64 in
  the Function's ``jvp`` alone (forward mode; that row's Function defines one).

Checkers: ``verification.check_gradients`` (with and without a reference), torch's
``gradcheck``/``gradgradcheck`` in slow and fast mode with their defaults, and a check in the
style of ``jax.test_util.check_grads`` with its defaults (one random tangent and cotangent,
``eps = 1e-4``, tolerance 1e-5 in float64 and 2e-3 in float32: JAX's
``default_gradient_tolerance``), written here in torch since the Function is torch code.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from verification import check_gradients

EPSILONS = [m * 10.0**-k for k in range(1, 11) for m in (3, 1)][1:]  # 1e-1, 3e-2, 1e-2, ..., 1e-10


def planted(eps: float, one: bool, where: str) -> type[torch.autograd.Function]:
    """tanh(x @ w) with its input gradient off by the factor ``1 + eps`` (one element or all) in
    ``where``: ``"all"`` dtypes, ``"low"`` precision only, ``"second"`` order only (there the
    derivative of the gradient is off by that factor), or ``"forward"``: a ``jvp`` whose tangent
    of the output is off by that factor, the backward right."""

    def off(gx: torch.Tensor) -> torch.Tensor:
        if one:
            factor = torch.ones_like(gx).view(-1).index_fill(0, torch.tensor(5), 1 + eps).view_as(gx)
            return gx * factor
        return gx * (1 + eps)

    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            acc = torch.promote_types(x.dtype, torch.float32)
            y = torch.tanh(x.to(acc) @ w.to(acc))
            ctx.save_for_backward(x, w, y)
            ctx.save_for_forward(x, w, y)
            return y.to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            x, w, y = ctx.saved_tensors
            acc = y.dtype
            gz = g.to(acc) * (1 - y * y)
            gx, gw = gz @ w.to(acc).T, x.to(acc).T @ gz
            if eps and (where == "all" or (where == "low" and x.dtype != torch.float64)):
                gx = off(gx)
            if eps and where == "second":  # the same value; its derivative off by eps
                mask = torch.zeros_like(gx).view(-1).index_fill(0, torch.tensor(5), 1.0).view_as(gx) if one else 1.0
                delta = eps * mask * gx
                gx = gx + (delta - delta.detach())
            return gx.to(x.dtype), gw.to(x.dtype)

    if where != "forward":
        return Planted

    class PlantedWithJvp(Planted):
        @staticmethod
        def jvp(ctx, tx, tw):
            x, w, y = ctx.saved_tensors
            ty = (1 - y * y) * (tx @ w + x @ tw)
            return off(ty) if eps else ty

    return PlantedWithJvp


def reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x @ w)


def jax_style(fn: Callable, args: tuple[torch.Tensor, ...], seed: int = 0) -> bool:
    """check_grads(f, args, order=1, modes=["rev"]) with JAX's defaults, in torch."""
    dtype = args[0].dtype
    tol = {torch.float64: 1e-5, torch.float32: 2e-3}.get(dtype, 1e-1)
    gen = torch.Generator().manual_seed(seed)
    tangent = [torch.randn(a.shape, generator=gen, dtype=torch.float64).to(dtype) for a in args]
    leaves = [a.detach().clone().requires_grad_() for a in args]
    out = fn(*leaves)
    cotangent = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    vjp = torch.autograd.grad(out, leaves, cotangent)
    ip = sum(float((t * v).sum()) for t, v in zip(tangent, vjp))
    with torch.no_grad():
        plus = fn(*(a + 1e-4 * t for a, t in zip(args, tangent)))
        minus = fn(*(a - 1e-4 * t for a, t in zip(args, tangent)))
    ip_expected = float((((plus - minus) / 2e-4) * cotangent).sum())
    return abs(ip - ip_expected) <= tol + tol * abs(ip_expected)


def _passes(checker: str, fn: type[torch.autograd.Function], args: tuple[torch.Tensor, ...]) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if checker == "check_gradients":
            return check_gradients(fn, *args).ok
        if checker == "check_gradients + reference":
            return check_gradients(fn, *args, reference=reference).ok
        if checker == "check_gradients order=2":
            return check_gradients(fn, *args, order=2).ok
        leaves = tuple(a.detach().clone().requires_grad_() for a in args)
        try:
            if checker.startswith("gradgradcheck"):
                return torch.autograd.gradgradcheck(fn.apply, leaves, fast_mode="fast" in checker)
            if checker.startswith("gradcheck"):
                forward = "forward" in checker
                return torch.autograd.gradcheck(fn.apply, leaves, fast_mode="fast" in checker, check_forward_ad=forward)
        except Exception:  # gradcheck raises on failure (and on some dtypes)
            return False
        return jax_style(fn.apply, args)


# With --large: the first-order float64 row only, without the checkers that difference every
# element (gradcheck's slow mode: one forward per input element, 40,000 here).
LARGE_ROWS = [
    ("float64, 40,000-element input", torch.float64, "all", ["check_gradients", "gradcheck fast", "jax-style"])
]

ROWS = [
    # (label, dtype, where the error is, checkers)
    ("float64", torch.float64, "all", ["check_gradients", "gradcheck", "gradcheck fast", "jax-style"]),
    ("float32", torch.float32, "all", ["check_gradients", "gradcheck", "gradcheck fast", "jax-style"]),
    (
        "float32, low-precision path only",
        torch.float32,
        "low",
        ["check_gradients + reference", "gradcheck", "jax-style"],
    ),
    ("bfloat16, low-precision path only", torch.bfloat16, "low", ["check_gradients + reference"]),
    (
        "float64, second order",
        torch.float64,
        "second",
        ["check_gradients order=2", "gradgradcheck", "gradgradcheck fast"],
    ),
    (
        "float64, forward mode (jvp)",
        torch.float64,
        "forward",
        ["check_gradients", "gradcheck check_forward_ad", "gradcheck check_forward_ad fast"],
    ),
]


def smallest_caught(checker: str, dtype: torch.dtype, where: str, one: bool, args: tuple) -> float | None:
    caught = None
    for eps in EPSILONS:  # from large to small: the smallest eps of an unbroken run of catches
        if _passes(checker, planted(eps, one, where), args):
            break
        caught = eps
    return caught


def seconds(checker: str, args: tuple, where: str = "all", repeats: int = 3) -> float:
    """Seconds per check of the correct Function (with its jvp in the forward-mode row)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _passes(checker, planted(0.0, False, "forward" if where == "forward" else "all"), args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--large", action="store_true", help="x and w 200x200, float64 only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    (n, k, m), rows = ((200, 200, 200), LARGE_ROWS) if args.large else ((8, 16, 8), ROWS)
    x64 = torch.randn(n, k, generator=gen, dtype=torch.float64)
    w64 = torch.randn(k, m, generator=gen, dtype=torch.float64) / (k**0.5)
    print(f"torch {torch.__version__}, {args.threads} thread(s); smallest relative error caught (none: not even 0.1)")
    print("| precision, where the error is | checker | one element | all elements | correct passes | s/check |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, dtype, where, checkers in rows:
        inputs = (x64.to(dtype), w64.to(dtype))
        for checker in checkers:
            one = smallest_caught(checker, dtype, where, True, inputs)
            every = smallest_caught(checker, dtype, where, False, inputs)
            clean = _passes(checker, planted(0.0, False, where), inputs)
            show = lambda e: "none" if e is None else f"{e:.0e}"  # noqa: E731
            print(
                f"| {label} | {checker} | {show(one)} | {show(every)} | {'yes' if clean else 'NO'} "
                f"| {seconds(checker, inputs, where):.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
