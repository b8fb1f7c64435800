"""Kernels a forward, a forward+backward and a training step launch on a GPU, counted without one.

``python -m benchmarks.kernels [--only NAME ...] [--size seed|medium|large]``

On a GPU a memory-bound module's time is about the number of passes it makes over its tensors,
and a small module's time is about the number of launches; torch's own modules are one fused
kernel where the framework's hand-written formulas are several tensor operations. This tool
runs each benchmark case on PyTorch's ``meta`` device, which allocates no memory and computes
nothing, but dispatches every operation as on a GPU: the framework takes its non-CPU code paths
there (no CPU row blocks, no small-tensor gathers), as on CUDA. Each dispatched operator that
launches work is counted; views, reshapes and uninitialised allocations launch none and are
not counted.

Each count is a proxy, not a timing: a fused kernel that reads a tensor twice counts once, and
a kernel on a handful of per-channel values counts like one on the whole tensor (``full passes``
counts only the operations that touch a tensor of at least a quarter of the input's elements:
a 2x2 pooling's output, not per-channel statistics). A case whose module cannot move
to the meta device (a dropout generator) is listed as such. The torch side counts what its
autograd runs too (gradient accumulation included), with gradients set to None before each
pass, as in the benchmarks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .cases import SIZES, available_cases
from .harness import PASSES, build
from .workloads import available_workloads

# Operators that launch no kernel: views and metadata changes, and allocations whose contents
# are left undefined.
NO_KERNEL = frozenset(
    {
        "alias",
        "as_strided",
        "detach",
        "diagonal",
        "empty",
        "empty_like",
        "empty_strided",
        "expand",
        "new_empty",
        "new_empty_strided",
        "permute",
        "select",
        "slice",
        "split",
        "split_with_sizes",
        "squeeze",
        "t",
        "transpose",
        "unbind",
        "unfold",
        "unsqueeze",
        "view",
        "_reshape_alias",
        "_unsafe_view",
        "reshape",
        "lift_fresh",
    }
)


class KernelCounter(TorchDispatchMode):
    """Records each dispatched operator that launches a kernel, and whether it touches a tensor of
    at least ``full`` elements (a pass over a large tensor)."""

    def __init__(self, full: int) -> None:
        super().__init__()
        self.full = full
        self.kernels: list[str] = []
        self.full_passes: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name not in NO_KERNEL:
            self.kernels.append(name)
            # A factory method (new_zeros, new_full) reads nothing of the tensor it is called on.
            read = [] if name.startswith("new_") else [*_tensors(args), *_tensors((kwargs or {}).values())]
            tensors = [*read, *_tensors([out])]
            if any(t.numel() >= self.full for t in tensors):
                self.full_passes.append(name)
        return out


def _tensors(values: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, tuple | list):
            found.extend(_tensors(value))
    return found


@dataclass
class Count:
    """Kernels and full-size passes of one case, pass and implementation."""

    kernels: int
    full_passes: int
    operators: list[str]


def count(fn: Callable[[], Any], full: int) -> Count:
    with KernelCounter(full) as counter:
        fn()
    return Count(len(counter.kernels), len(counter.full_passes), counter.kernels)


def known_names() -> list[str]:
    """The module cases, then the training steps that run on the CPU as well (a CUDA-graph step
    cannot be counted here)."""
    steps = [w.name for w in available_workloads() if "cpu" in w.devices]
    return [case.name for case in available_cases()] + steps


def count_case(name: str, size: str = "large") -> dict[str, dict[str, Count]] | str:
    """``{pass: {"framework": Count, "torch": Count}}`` for one benchmark case on the meta device
    (a training step: the one pass ``train_step``), or why it cannot be counted there."""
    workloads = {w.name: w for w in available_workloads() if "cpu" in w.devices}
    if name in workloads:
        return _count_step(workloads[name], size)
    cases = {case.name: case for case in available_cases()}
    if name not in cases:
        raise ValueError(f"no benchmark case {name!r}; known: {known_names()}")
    case = cases[name]
    try:
        pair = build(case, size, torch.float32, "meta")
    except (RuntimeError, NotImplementedError) as error:
        return f"does not run on the meta device ({type(error).__name__}: {str(error).splitlines()[0]})"
    full = max(1, pair.x.numel() // 4)
    result: dict[str, dict[str, Count]] = {}
    for pass_ in PASSES:
        sides = _count_sides(lambda impl, p=pass_: pair.callable(impl, p), full, pass_)
        if isinstance(sides, str):
            return sides
        result[pass_] = sides
    return result


def _count_step(workload: Any, size: str) -> dict[str, dict[str, Count]] | str:
    sizes = workload.sizes_for("cpu")
    if size not in sizes:
        return f"has no {size} size (sizes: {', '.join(sizes)})"
    try:
        step = workload.build(dtype=torch.float32, device="meta", **sizes[size])
    except (RuntimeError, NotImplementedError) as error:
        return f"does not run on the meta device ({type(error).__name__}: {str(error).splitlines()[0]})"
    sides = _count_sides(step.callable, max(1, step.x.numel() // 4), "step")
    return sides if isinstance(sides, str) else {"train_step": sides}


def _count_sides(callable_of: Callable[[str], Callable[[], Any]], full: int, what: str) -> dict[str, Count] | str:
    """Each side's count of one pass, after a first call outside the count (caches, workspaces and
    optimizer state are made on it), or why a side does not run on the meta device."""
    sides: dict[str, Count] = {}
    for impl in ("framework", "torch"):
        fn = callable_of(impl)
        try:
            fn()
            sides[impl] = count(fn, full)
        except (RuntimeError, NotImplementedError) as error:
            return f"{impl} {what} does not run on the meta device ({type(error).__name__}: {error})"
    return sides


def table(counts: dict[str, dict[str, dict[str, Count]] | str]) -> str:
    """The table of :func:`count_case` results, by case name."""
    header = ("case", "pass", "fw kernels", "torch kernels", "ratio", "fw full passes", "torch full passes")
    rows: list[tuple[str, ...]] = []
    for name, counted in counts.items():
        if isinstance(counted, str):
            rows.append((name, "-", counted, "", "", "", ""))
            continue
        for pass_, sides in counted.items():
            fw_count, torch_count = sides["framework"], sides["torch"]
            ratio = f"{fw_count.kernels / torch_count.kernels:.1f}" if torch_count.kernels else "-"
            rows.append(
                (
                    name,
                    pass_,
                    str(fw_count.kernels),
                    str(torch_count.kernels),
                    ratio,
                    str(fw_count.full_passes),
                    str(torch_count.full_passes),
                )
            )
    counted_rows = [r for r in rows if r[1] != "-"]
    widths = [max([len(header[i]), *(len(r[i]) for r in counted_rows)]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for row in rows:
        if row[1] == "-":
            lines.append(f"{row[0].ljust(widths[0])}  {row[2]}")
        else:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="benchmark cases (module names) and training steps to count"
    )
    parser.add_argument("--size", choices=SIZES, default="large", help="the CPU size table's entry (default large)")
    parser.add_argument("--operators", action="store_true", help="also list each side's operators")
    args = parser.parse_args(argv)
    known = known_names()
    unknown = sorted(set(args.only or []) - set(known))
    if unknown:
        parser.error(f"--only: unknown cases {unknown}; known: {known}")
    counts = {name: count_case(name, args.size) for name in args.only or known}
    print(table(counts))
    if args.operators:
        for name, counted in counts.items():
            if isinstance(counted, str):
                continue
            for pass_, sides in counted.items():
                for impl, c in sides.items():
                    print(f"{name} {pass_} {impl}: {' '.join(c.operators)}")
    print(
        "\nkernels: operators that launch work on a GPU, counted on the meta device (the framework's "
        "non-CPU code paths); full passes: those touching a tensor of at least a quarter of the input's elements"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
