"""Run the benchmark suite with pytest-benchmark, save its JSON and print a summary.

Usage:
    python -m benchmarks [PATH ...] [--device cpu|cuda] [--dtype float32|float64|bfloat16|float16]
                         [--only NAME ...] [--sizes seed,medium,large] [--json PATH] [--quick]
                         [--threads N] [-- extra pytest arguments]

Without PATH: every framework module and workload against ``torch.nn``. With PATH (files,
folders or modules declaring specs, as for ``python -m verification PATH``): each spec's op
against its reference at the spec's ``benchmark`` sizes (``--sizes``: a subset of their names),
in the same JSON schema and summary (the "framework" side is the op, "torch" its reference),
written to ``results/benchmarks-ops-<device>.json`` so the framework's results stay.

The summary gives, per case, the median time of the framework and of torch, their ratio
(> 1: the framework is slower), and for matrix-multiply-bound cases the GFLOP/s of each side
and the framework's share of this machine's matrix-multiply peak, measured in the same run.
``--device`` defaults to ``$DEVICE`` (else cpu), ``--threads`` to ``$THREADS`` (else 1).

Why one thread by default: on a machine whose cores are shared with other work, an
intra-op parallel region waits at its barrier for a descheduled thread, and a 10 us kernel
then takes a scheduler time slice (4 to 50 ms), on one side of a comparison and not the
other. One thread measures the code; ``--threads 0`` (all available CPUs) or ``THREADS=N``
suits a dedicated machine. The count is recorded with every result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from reports import formatting

from .cases import CASES, SIZES
from .compare import rows
from .harness import thread_count
from .workloads import WORKLOADS

HERE = Path(__file__).resolve().parent
# Full run: each benchmark runs for ~0.15 s (at least 5 rounds); --quick: 3 rounds, ~0.02 s.
TIMING = ["--benchmark-min-rounds=5", "--benchmark-max-time=0.15", "--benchmark-warmup=on"]
QUICK = ["--benchmark-min-rounds=3", "--benchmark-max-time=0.02", "--benchmark-warmup=off"]


def pytest_arguments(args: argparse.Namespace, json_path: Path) -> list[str]:
    if args.paths:
        files = [str(HERE / "bench_specs.py"), *(f"--bench-specs={path}" for path in args.paths)]
    else:
        files = [str(HERE / "bench_modules.py"), str(HERE / "bench_workloads.py")]
    argv = [
        *files,
        "-p",
        "benchmarks.plugin",
        "-o",
        "python_files=bench_*.py",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--rootdir={HERE.parent}",
        f"--bench-device={args.device}",
        f"--bench-dtype={args.dtype}",
        f"--bench-sizes={args.sizes}",
        f"--benchmark-json={json_path}",
        "--benchmark-sort=name",
        "--benchmark-columns=median,iqr,rounds,iterations",
        "--benchmark-disable-gc",
        # This process imported the packages before pytest started: nothing here relies on
        # pytest rewriting their asserts.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        # A case whose sides disagree fails before its benchmark fixture runs: said once, in the failure.
        "-W",
        "ignore::pytest_benchmark.logger.PytestBenchmarkWarning",
        # pytest-benchmark disables itself wherever xdist is active: timings are taken serially.
        "-p",
        "no:xdist",
    ]
    argv.append(f"--bench-threads={args.threads}")
    for name in args.only or []:
        argv.append(f"--bench-only={name}")
    argv += QUICK if args.quick else TIMING
    if not args.verbose_table:
        argv.append("--benchmark-quiet")
    return argv + args.pytest_args


def _time(seconds: float | None) -> str:
    return "-" if seconds is None else formatting.seconds(seconds, micro="us")


def summary(data: dict[str, Any]) -> str:
    """The per-case table: times, ratio, GFLOP/s and % of the matmul peak (compute-bound cases),
    GB/s and % of the memory bandwidth (memory-bound cases), both measured in the same run."""
    info = data.get("machine_info", {})
    peak = info.get("matmul_peak_gflops")
    bandwidth = info.get("memory_bandwidth_gbs")
    table = rows(data, statistic="median")  # as the reports show them
    if not table:
        return "no benchmark ran"
    labels = (info.get("bench") or {}).get("labels") or {"framework": "framework", "torch": "torch"}
    ours, theirs = labels["framework"], labels["torch"]
    short = "fw" if ours == "framework" else ours
    header = (
        "case",
        "size",
        "pass",
        ours,
        theirs,
        f"{short}/{theirs}",
        f"{short} GFLOP/s",
        f"{theirs} GFLOP/s",
        f"{short} % peak",
        f"{short} GB/s",
        f"{theirs} GB/s",
        f"{short} % bw",
    )
    lines = []
    in_cache = False  # a share of the memory bandwidth above 100 %
    for row in table:
        gflops = ["-", "-", "-"]
        if row.flops and row.framework and row.torch:
            fw_rate, torch_rate = row.flops / row.framework / 1e9, row.flops / row.torch / 1e9
            gflops = [f"{fw_rate:.1f}", f"{torch_rate:.1f}", f"{100 * fw_rate / peak:.0f}%" if peak else "-"]
        gbs = ["-", "-", "-"]
        if row.bytes and row.framework and row.torch:
            fw_rate, torch_rate = row.bytes / row.framework / 1e9, row.bytes / row.torch / 1e9
            gbs = [f"{fw_rate:.1f}", f"{torch_rate:.1f}", f"{100 * fw_rate / bandwidth:.0f}%" if bandwidth else "-"]
            in_cache = in_cache or bool(bandwidth and fw_rate > bandwidth)
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append((row.module, row.size, row.pass_, _time(row.framework), _time(row.torch), ratio, *gflops, *gbs))
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    env = info.get("environment") or {}
    bench = info.get("bench") or {}
    peak_text = f"{peak:.1f} GFLOP/s" if peak else "not measured"
    detail = info.get("matmul_peak") or {}
    copy = info.get("memory_bandwidth") or {}
    bandwidth_text = f"{bandwidth:.1f} GB/s" if bandwidth else "not measured"
    out.append("")
    out.append("times: the median round of each side (the reports' statistic; benchmarks.compare judges the fastest)")
    out.append(
        f"device {bench.get('device', '?')}, dtype {bench.get('dtype', '?')}, threads {bench.get('threads', '?')}, "
        f"torch {env.get('torch', '?')}, {env.get('gpu') or env.get('cpu', '?')}"
    )
    out.append(f"matmul peak: {peak_text} ({detail.get('n', '?')}x{detail.get('n', '?')} {detail.get('dtype', '')})")
    out.append(
        f"memory bandwidth: {bandwidth_text} (copy of {copy.get('megabytes', '?')} MB; "
        f"a case's GB/s counts the least bytes it must move)"
    )
    if in_cache:
        out.append(f"{short} % bw above 100%: the case's tensors stay in the caches, faster than a large copy's memory")
    if bench.get("device") == "cuda":
        out.append("sizes: medium and large from the GPU table (see each result's shapes)")
    return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to pytest
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or modules declaring specs")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=os.environ.get("DEVICE", "cpu"))
    parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"), default="float32")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="modules or workloads to run (e.g. Linear SmallCNN)")
    parser.add_argument(
        "--sizes", default=None, help="comma-separated subset of seed,medium,large (with PATH: of the specs' sizes)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="default: results/benchmarks-<device>.json (with PATH: results/benchmarks-ops-<device>.json)",
    )
    parser.add_argument("--quick", action="store_true", help="3 short rounds per benchmark (a smoke run)")
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="torch threads; 0: all CPUs available (default: $THREADS, else 1)",
    )
    parser.add_argument("--verbose-table", action="store_true", help="also print pytest-benchmark's own table")
    args = parser.parse_args(argv)
    args.pytest_args = extra
    if args.threads is None:
        try:
            args.threads = thread_count(os.environ.get("THREADS") or "1")
        except argparse.ArgumentTypeError as error:
            parser.error(f"$THREADS: {error}")
    if args.json is not None and args.json.is_dir():
        parser.error(f"--json {args.json}: a folder; give the path of the JSON file to write")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    if args.paths:
        return _check_specs(parser, args)
    if args.dtype not in ("float32", "float64"):
        parser.error("--dtype: the framework's cases run in float32 or float64 (half precision: with PATH)")
    args.sizes = args.sizes or ",".join(SIZES)
    unknown = {s for s in args.sizes.split(",") if s} - set(SIZES)
    if unknown:
        parser.error(f"--sizes: expected a subset of {SIZES}, got {sorted(unknown)}")
    known = set(CASES) | {w.name for w in WORKLOADS}
    unknown = set(args.only or []) - known
    if unknown:
        parser.error(f"--only: expected module or workload names from {sorted(known)}, got {sorted(unknown)}")
    elsewhere = [w for w in WORKLOADS if w.name in (args.only or []) and args.device not in w.devices]
    if elsewhere and len(elsewhere) == len(args.only):
        parser.error(
            "--only: "
            + "; ".join(f"{w.name} runs on {', '.join(w.devices)} only, not {args.device}" for w in elsewhere)
        )
    if elsewhere:
        print(f"benchmarks: not on {args.device}: {', '.join(w.name for w in elsewhere)}")
    return args


def _check_specs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """With PATH: the specs must import, declare benchmark sizes, and match --only and --sizes."""
    from verification.discovery import DiscoveryError

    from .specs import benchmarked_specs

    try:
        specs = benchmarked_specs(args.paths)
    except DiscoveryError as error:
        parser.error(str(error))
    if not specs:
        parser.error(f"no spec in {args.paths} declares benchmark sizes (Spec(..., benchmark={{...}}))")
    specs = _declared_for(parser, specs, "device", args.device, lambda s: s.devices)
    specs = _declared_for(
        parser, specs, "dtype", args.dtype, lambda s: [str(d).removeprefix("torch.") for d in s.dtypes]
    )
    unreferenced = [s.name for s in specs if not s.has_reference]
    if unreferenced:
        parser.error(
            f"{', '.join(unreferenced)}: a benchmark times the op against its reference, and the spec declares "
            "none (Spec(..., reference=...), or twin= for a module)"
        )
    unknown = set(args.only or []) - {s.name for s in specs}
    if unknown:
        parser.error(f"--only: expected spec names from {sorted(s.name for s in specs)}, got {sorted(unknown)}")
    sizes = {size for s in specs for size in s.benchmark}
    unknown = {s for s in (args.sizes or "").split(",") if s} - sizes
    if unknown:
        parser.error(f"--sizes: expected a subset of the specs' sizes {sorted(sizes)}, got {sorted(unknown)}")
    wanted = {s for s in (args.sizes or "").split(",") if s}
    for spec in specs:
        for size in spec.benchmark:
            if (not args.only or spec.name in args.only) and (not wanted or size in wanted):
                try:
                    spec.case_for_size(size)
                except Exception as error:  # the user's inputs function, given the size's kwargs
                    parser.error(
                        f"{spec.name}: benchmark size {size!r} ({spec.benchmark[size]}) does not make a case: "
                        f"{type(error).__name__}: {error} (a size's kwargs replace the spec's kwargs: give every one)"
                    )
    args.sizes = args.sizes or ""
    return args


def _declared_for(parser: argparse.ArgumentParser, specs: list[Any], what: str, value: str, declared: Any) -> list[Any]:
    """The specs that declare ``value`` among their devices or dtypes; a note naming the others, a
    usage error if none does."""
    elsewhere = [s.name for s in specs if value not in declared(s)]
    if len(elsewhere) == len(specs):
        parser.error(f"--{what} {value}: every spec declares other {what}s ({', '.join(elsewhere)})")
    if elsewhere:
        print(f"benchmarks: not on {value}, as their specs declare: {', '.join(elsewhere)}")
    return [s for s in specs if value in declared(s)]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Started from a test that an xdist worker runs, the worker's variables would make
    # pytest-benchmark believe this run is parallel too, and disable itself.
    for variable in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        os.environ.pop(variable, None)
    # Users' ops get a file of their own, beside the framework's (the report shows each as a section).
    name = f"benchmarks-ops-{args.device}.json" if args.paths else f"benchmarks-{args.device}.json"
    json_path = args.json or Path("results") / name
    json_path.parent.mkdir(parents=True, exist_ok=True)
    run = _Run()
    code = pytest.main(pytest_arguments(args, json_path), plugins=[run])
    failures = run.failures()
    if not json_path.exists():
        print(f"benchmarks: pytest exited with {code} and wrote no {json_path}")
        print(not_timed(failures))
        return int(code) or 1
    print()
    print(summary(json.loads(json_path.read_text())))
    print(not_timed(failures))
    print(f"\nwrote {json_path}")
    return int(code)


class _Run:
    """Keeps the pytest session's config, to read the benchmark plugin's record after the run."""

    config: pytest.Config | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def failures(self) -> list[dict[str, str]]:
        from .plugin import SETTINGS_KEY

        if self.config is None or SETTINGS_KEY not in self.config.stash:
            return []
        return self.config.stash[SETTINGS_KEY].failures


def not_timed(failures: list[dict[str, str]]) -> str:
    """The cases left out of the summary, each with why (its sides disagree, or it failed to build)."""
    if not failures:
        return ""
    lines = [f"\nNOT TIMED ({len(failures)}): left out of the table above"]
    for failure in failures:
        where = f"{failure['module']} {failure['size']} ({failure['device']}, {failure['dtype']}): "
        # A disagreement names its case already ("Swish[small] on cpu float32: output differs ...").
        lines.append(f"  {'' if failure['error'].startswith(failure['module'] + '[') else where}{failure['error']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
