"""Compare a benchmark run against a baseline on the framework/torch ratio.

Absolute times move with the machine and its load; the ratio of the framework's time to
torch's, measured in the same run on the same machine, moves only when one side's code does.
The ratio compared is that of the *fastest* rounds: interference from other processes (a
descheduled thread, page faults on freshly mapped buffers) only ever adds time, so the minimum
is the stable estimate of a case's own cost, where a median can move by several times on a
shared machine. (The summary table and the reports show medians and spreads.)
A case fails when its ratio grew by more than ``--threshold`` (a factor) over the baseline's.

On a shared machine one run can be unlucky, so with ``--recheck`` each case that looks like a
regression is measured again (``python -m benchmarks --only MODULE --sizes SIZE``) and keeps
the better of its two ratios: a regression must show twice to fail.

Usage:
    python -m benchmarks.compare CURRENT BASELINE [--threshold 2.0] [--recheck]
    python -m benchmarks.compare --save CURRENT BASELINE      # write BASELINE from a run

CURRENT is a pytest-benchmark JSON written by ``python -m benchmarks`` (or a saved baseline);
a baseline stores only the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLD = 2.0
KEY_FIELDS = ("module", "size", "pass", "device", "dtype")


@dataclass
class Row:
    """One comparison: a module or workload at one size, pass, device and dtype."""

    module: str
    size: str
    pass_: str
    device: str
    dtype: str
    framework: float | None = None  # seconds: the fastest round (or the statistic ``rows`` was asked for)
    torch: float | None = None
    flops: float | None = None
    workload: bool = False
    bytes: float | None = None  # least bytes moved by one call (memory-bound cases)

    @property
    def key(self) -> str:
        return "/".join((self.module, self.size, self.pass_, self.device, self.dtype))

    @property
    def ratio(self) -> float | None:
        if self.framework is None or not self.torch:
            return None
        return self.framework / self.torch


def rows(data: dict[str, Any], statistic: str = "min") -> list[Row]:
    """Pair each framework benchmark with its torch counterpart, in the run's order, each side's
    time its ``statistic`` (pytest-benchmark's "min", "median", ...)."""
    table: dict[tuple[str, ...], Row] = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if not all(k in info for k in (*KEY_FIELDS, "impl")):
            continue
        key = tuple(str(info[k]) for k in KEY_FIELDS)
        row = table.setdefault(
            key, Row(*key, flops=info.get("flops"), workload=bool(info.get("workload")), bytes=info.get("bytes"))
        )
        setattr(row, "framework" if info["impl"] == "framework" else "torch", bench["stats"][statistic])
    return list(table.values())


def ratios(data: dict[str, Any]) -> dict[str, float]:
    """``{"Linear/large/forward/cpu/float32": framework time / torch time, ...}`` (fastest rounds)."""
    if data.get("kind") == "benchmark-baseline":
        return dict(data["ratios"])
    return {row.key: row.ratio for row in rows(data) if row.ratio is not None}


class UsageError(Exception):
    """A file the comparison needs is missing or is not a benchmark run or baseline."""


def load(path: str | Path, role: str = "benchmark run") -> dict[str, Any]:
    """The JSON at ``path``; :class:`UsageError` naming what is wrong and what makes the file."""
    path = Path(path)
    hint = "make bench-baseline" if role == "baseline" else "make bench (or python -m benchmarks)"
    if not path.is_file():
        raise UsageError(f"no {role} at {path}{' (a folder)' if path.is_dir() else ''}: {hint} writes one")
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise UsageError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict) or not ("benchmarks" in data or data.get("kind") == "benchmark-baseline"):
        raise UsageError(f"{path}: neither a pytest-benchmark run nor a saved baseline")
    return data


def baseline(data: dict[str, Any]) -> dict[str, Any]:
    """The small JSON committed as a baseline: the run's environment and its ratios."""
    info = data.get("machine_info", {})
    return {
        "kind": "benchmark-baseline",
        "environment": info.get("environment") or data.get("environment"),
        "matmul_peak_gflops": info.get("matmul_peak_gflops"),
        "ratios": {key: round(value, 4) for key, value in sorted(ratios(data).items())},
    }


@dataclass
class Verdict:
    key: str
    baseline: float | None
    current: float | None

    @property
    def growth(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current / self.baseline

    def status(self, threshold: float) -> str:
        if self.baseline is None:
            return "new"
        if self.current is None:
            return "not run"
        return "REGRESSION" if self.growth > threshold else "ok"


def compare(current: dict[str, float], base: dict[str, float]) -> list[Verdict]:
    keys = list(current) + [k for k in base if k not in current]
    return [Verdict(k, base.get(k), current.get(k)) for k in keys]


def regressions(verdicts: list[Verdict], threshold: float) -> list[Verdict]:
    return [v for v in verdicts if v.status(threshold) == "REGRESSION"]


def format_table(verdicts: list[Verdict], threshold: float) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    width = max([len(v.key) for v in verdicts] + [4])
    lines = [f"{'case':<{width}}  {'baseline':>8}  {'current':>8}  {'growth':>7}  status"]
    for v in verdicts:
        growth = "-" if v.growth is None else f"{v.growth:.2f}x"
        lines.append(f"{v.key:<{width}}  {num(v.baseline):>8}  {num(v.current):>8}  {growth:>7}  {v.status(threshold)}")
    return "\n".join(lines)


def remeasure(verdict: Verdict, run: dict[str, Any] | None = None) -> float | str:
    """The ratio of ``verdict``'s case in a fresh run of just that case, as ``run`` (the run being
    judged: its users' spec files and thread count) was made; or why there is none."""
    module, size, _, device, dtype = verdict.key.split("/")
    bench = ((run or {}).get("machine_info") or {}).get("bench") or {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recheck.json"
        command = [sys.executable, "-m", "benchmarks", *bench.get("specs", []), "--only", module, "--sizes", size]
        command += ["--device", device, "--dtype", dtype, "--json", str(path)]
        if bench.get("threads"):
            command += ["--threads", str(bench["threads"])]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"the rerun failed (exit status {done.returncode}): {lines[-1] if lines else 'no output'}"
        again = ratios(load(path)).get(verdict.key)
        return "the rerun did not time this case" if again is None else again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("current", help="pytest-benchmark JSON of the run to judge (or a baseline JSON)")
    parser.add_argument("baseline", help="baseline JSON (written with --save)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="allowed growth factor of a ratio")
    parser.add_argument("--save", action="store_true", help="write BASELINE from CURRENT instead of comparing")
    parser.add_argument("--recheck", action="store_true", help="measure each apparent regression again")
    args = parser.parse_args(argv)
    if args.threshold <= 1.0:
        parser.error(f"--threshold: expected a factor > 1, got {args.threshold}")

    try:
        current = load(args.current)
        base = None if args.save else load(args.baseline, "baseline")
    except UsageError as error:
        print(f"benchmarks.compare: {error}", file=sys.stderr)
        return 2
    if args.save:
        saved = baseline(current)
        if not saved["ratios"]:
            print(f"{args.current}: no framework/torch pairs to save", file=sys.stderr)
            return 2
        Path(args.baseline).write_text(json.dumps(saved, indent=1) + "\n")
        print(f"saved {len(saved['ratios'])} ratios to {args.baseline}")
        return 0

    verdicts = compare(ratios(current), ratios(base))
    if not any(v.baseline is not None and v.current is not None for v in verdicts):
        print(format_table(verdicts, args.threshold))
        print(
            f"\nnothing compared: {args.current} and {args.baseline} share no case "
            "(module, size, pass, device and dtype): a run of other cases, devices or dtypes",
            file=sys.stderr,
        )
        return 1
    if args.recheck:
        for verdict in regressions(verdicts, args.threshold):
            again = remeasure(verdict, current)
            if isinstance(again, str):
                print(f"recheck {verdict.key}: {verdict.current:.2f}, not measured again: {again}")
                continue
            print(f"recheck {verdict.key}: {verdict.current:.2f} then {again:.2f}")
            verdict.current = min(verdict.current, again)
    print(format_table(verdicts, args.threshold))
    failed = regressions(verdicts, args.threshold)
    compared = sum(v.growth is not None for v in verdicts)
    if failed:
        print(f"\n{len(failed)} of {compared} ratios grew by more than {args.threshold:g}x:")
        for v in failed:
            print(f"  {v.key}: {v.baseline:.2f} -> {v.current:.2f} ({v.growth:.2f}x)")
        return 1
    print(f"\nno regression: {compared} ratios within {args.threshold:g}x of the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
