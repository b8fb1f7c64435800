"""Framework against torch, timed in alternation: ratios that survive a noisy machine.

``python -m benchmarks`` times each side in its own block of rounds (pytest-benchmark's way), so
a machine that slows down between the two blocks moves their ratio. Here the two sides alternate,
one round each (a call, or as many calls of a sub-millisecond one as take ten milliseconds),
``--rounds`` times, on the same built pair (the same inputs, parameters and upstream gradient as
the suite's, checked against each other first), and the report gives the ratio of the fastest
per-call times and the median of the per-pair ratios: drift cancels in both.

A training step (``SeedMLP-b50``, ``SmallCNN``, ... from :mod:`benchmarks.workloads`) is timed the
same way: both sides take their checked steps alternately (``--pass`` does not apply). Without
``--size``, a module case runs at ``large`` and a step at its largest size (the seed MLP's only one).

``--kernels N`` then profiles one call of each side (``torch.profiler``) and lists its N costliest
operators: by device time on a GPU, where a memory-bound module's time is its passes over its
tensors, and by CPU time on the CPU.

Usage:
    python -m benchmarks.paired NAME [NAME ...] | all [--size SIZE] [--pass forward+backward]
                                [--rounds 30] [--threads 1] [--device cpu] [--dtype float32]
                                [--kernels N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .cases import SIZES, available_cases
from .harness import DTYPES, PASSES, build, configure, thread_count
from .workloads import Workload, available_workloads


@dataclass
class Paired:
    """One case's alternating timings, in seconds."""

    name: str
    pass_: str
    framework: list[float]
    torch: list[float]
    operators: str = ""  # each side's costliest operators, with --kernels

    @property
    def ratio_of_fastest(self) -> float:
        return min(self.framework) / min(self.torch)

    @property
    def median_pair_ratio(self) -> float:
        return statistics.median(f / t for f, t in zip(self.framework, self.torch))


def measure(
    name: str, size: str | None, pass_: str, rounds: int, device: str, dtype: torch.dtype, kernels: int = 0
) -> Paired:
    """Build and check the suite's pair (or training step) for ``name`` at ``size`` (None: see
    :func:`default_size`), then time its two sides alternately (and, with ``kernels``, profile each
    side: its costliest operators, in ``Paired.operators``)."""
    case = next((c for c in available_cases() if c.name == name), None)
    workload = next((w for w in available_workloads() if w.name == name), None)
    if workload is not None and device not in workload.devices:
        raise SystemExit(f"benchmarks.paired: {name} runs on {', '.join(workload.devices)} only, not {device}")
    if case is not None:
        pair = build(case, size or default_size(name, device), dtype, device)
        pair.check()
        sides = [pair.callable("framework", pass_), pair.callable("torch", pass_)]
    elif workload is not None:
        step = workload.checked(_step_size(workload, size, device), dtype, device)
        sides = [step.callable("framework"), step.callable("torch")]
        pass_ = "training step"
    else:
        known = ", ".join(sorted(c.name for c in available_cases()))
        steps = ", ".join(w.name for w in available_workloads())
        raise SystemExit(
            f"benchmarks.paired: no benchmark case named {name!r}; known: {known}; training steps: {steps}"
        )
    for _ in range(2):  # warm-up: first calls allocate, compile kernels and fill caches
        for side in sides:
            side()
    calls = calls_per_round(sides)
    timings: list[list[float]] = [[], []]
    for _ in range(rounds):
        for side, times in zip(sides, timings):
            start = time.perf_counter()
            for _ in range(calls):
                side()
            times.append((time.perf_counter() - start) / calls)
    operators = "\n".join(
        costliest_operators(fn, torch.device(device), kernels, f"{name} {pass_}, {side}")
        for side, fn in zip(("framework", "torch"), sides)
        if kernels
    )
    return Paired(name, pass_, *timings, operators=operators)


# A call faster than REPEATED_BELOW is repeated until a round of it lasts ROUND_SECONDS: a call of
# a few hundred microseconds, timed alone, is mostly the timer and the caches the other side just
# left (the seed MLP's step read 0.61 of torch's timed one call at a time, 0.49 timed ten
# milliseconds at a time, both alternating). Slower calls keep one call per round, as before.
REPEATED_BELOW = 1e-3
ROUND_SECONDS = 1e-2


def calls_per_round(sides: list[Callable[[], object]]) -> int:
    """Calls of each side per timed round, the same number for both: one, or, when the faster side
    takes under ``REPEATED_BELOW``, enough for it to run ``ROUND_SECONDS``."""
    fastest = math.inf
    for side in sides:
        start = time.perf_counter()
        side()
        fastest = min(fastest, time.perf_counter() - start)
    if fastest >= REPEATED_BELOW:
        return 1
    return max(1, math.ceil(ROUND_SECONDS / max(fastest, 1e-9)))


def default_size(name: str, device: str = "cpu") -> str:
    """``large`` for a module case; a training step's largest size on ``device``."""
    workload = next((w for w in available_workloads() if w.name == name), None)
    if workload is None:
        return "large"
    return [s for s in SIZES if s in workload.sizes_for(device)][-1]


def _step_size(workload: Workload, size: str | None, device: str) -> str:
    sizes = workload.sizes_for(device)
    if size is None:
        return default_size(workload.name, device)
    if size not in sizes:
        raise SystemExit(f"benchmarks.paired: {workload.name} has no {size!r} size; its sizes: {', '.join(sizes)}")
    return size


def costliest_operators(fn: Callable[[], object], device: torch.device, count: int, title: str) -> str:
    """The ``count`` operators of one call of ``fn`` (after a warm-up call) with the most self time
    on ``device`` (CPU time on the CPU), with their calls and the total, as a few lines of text."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    fn()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as profiler:
        fn()

    def self_time(event: Any) -> float:  # microseconds
        if on_gpu:
            return float(getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0))
        return float(event.self_cpu_time_total)

    # Operators only (aten::...), so that a kernel's time is not counted again under its launch.
    events = [e for e in profiler.key_averages() if e.key.startswith("aten::") and self_time(e) > 0]
    events.sort(key=self_time, reverse=True)
    where = "device" if on_gpu else "CPU"
    lines = [f"  {title}: {sum(map(self_time, events)) / 1e3:.3f} ms of {where} time in operators"]
    lines += [f"    {self_time(e) / 1e3:9.3f} ms  x{e.count:<4d} {e.key}" for e in events[:count]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paired", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="benchmark cases (module names, e.g. GELU Conv2d) or training steps; 'all': every case, then every "
        "training step that runs on the device (a case that fails is reported and the run goes on)",
    )
    parser.add_argument(
        "--size", choices=SIZES, default=None, help="default: large for a module, a training step's largest"
    )
    parser.add_argument("--pass", dest="pass_", choices=PASSES, default="forward+backward")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="torch threads; 0: all CPUs available (default: $THREADS, else 1)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="the suite's cases run in these two")
    parser.add_argument(
        "--kernels", type=int, default=0, metavar="N", help="also list each side's N costliest operators (profiled)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.kernels < 0:
        parser.error("--kernels must be 0 or more")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads is None:
        try:
            args.threads = thread_count(os.environ.get("THREADS") or "1")
        except argparse.ArgumentTypeError as error:
            parser.error(f"$THREADS: {error}")
    if args.names != ["all"]:
        problem = _unrunnable(args.names, args.size, args.device)
        if problem:
            parser.error(problem)
    threads = configure(args.device, args.threads or None)  # 0: every CPU available
    size = args.size or "large (modules), largest (training steps)"
    print(f"{size}, {args.pass_}, {args.rounds} alternating rounds, {threads} thread(s), {args.device}, {args.dtype}")
    columns = ("framework min", 14), ("torch min", 10), ("min ratio", 10), ("median pair ratio", 18)
    print(f"{'case':<18} {'size':<7} " + " ".join(f"{title:>{width}}" for title, width in columns))
    every = args.names == ["all"]
    names = everything(args.device, args.size) if every else args.names
    failed = 0
    for name in names:
        try:
            result = measure(name, args.size, args.pass_, args.rounds, args.device, DTYPES[args.dtype], args.kernels)
        except Exception as error:
            if not every:
                raise
            failed += 1
            print(f"{name:<18} FAILED: {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
            continue
        print(
            f"{name:<18} {args.size or default_size(name, args.device):<7} "
            f"{_time(min(result.framework)):>14} {_time(min(result.torch)):>10} "
            f"{result.ratio_of_fastest:>10.2f} {result.median_pair_ratio:>18.2f}",
            flush=True,
        )
        if result.operators:
            print(result.operators, flush=True)
    if failed:
        print(f"{failed} of {len(names)} failed", flush=True)
    return 1 if failed else 0


def _unrunnable(names: list[str], size: str | None, device: str) -> str | None:
    """Why one of ``names`` cannot be timed as asked (checked before the first is timed), or None."""
    cases = {c.name for c in available_cases()}
    workloads = {w.name: w for w in available_workloads()}
    unknown = [name for name in names if name not in cases and name not in workloads]
    if unknown:
        return (
            f"no benchmark case named {', '.join(map(repr, unknown))}; known: {', '.join(sorted(cases))}; "
            f"training steps: {', '.join(workloads)} (or: all)"
        )
    for name in names:
        workload = workloads.get(name)
        if workload is not None and device not in workload.devices:
            return f"{name} runs on {', '.join(workload.devices)} only, not {device}"
        if workload is not None and size is not None and size not in workload.sizes_for(device):
            return f"{name} has no {size} size on {device}; it has {', '.join(workload.sizes_for(device))}"
    return None


def everything(device: str, size: str | None) -> list[str]:
    """``all``: every module case, then every training step that runs on ``device`` (at ``size``,
    when one is given)."""
    steps = [
        w.name for w in available_workloads() if device in w.devices and (size is None or size in w.sizes_for(device))
    ]
    return [c.name for c in available_cases()] + steps


def _time(seconds: float) -> str:
    # Milliseconds from what rounds to 1000.0 us up: never "1000.0 us".
    return f"{seconds * 1e3:.3f} ms" if round(seconds * 1e6, 1) >= 1000 else f"{seconds * 1e6:.1f} us"


if __name__ == "__main__":
    sys.exit(main())
