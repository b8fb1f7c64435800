"""What ``benchmarks.html`` shows: framework against torch per module, workload, size and pass."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from . import formatting, plots

# Sizes as the benchmark producer names them, smallest first; unknown names sort after, by name.
SIZE_ORDER = {"tiny": 0, "seed": 1, "small": 2, "medium": 3, "large": 4, "huge": 5}
PASS_ORDER = {"forward": 0, "forward+backward": 1, "backward": 2, "train_step": 3}


@dataclass
class Timing:
    """One implementation's measurement of one comparison."""

    median: float
    iqr: float
    q1: float
    q3: float
    rounds: int | None
    flops: float | None
    gflops: float | None
    peak_fraction: float | None  # of the matmul peak measured in the same run


@dataclass
class Comparison:
    module: str
    workload: bool
    size: str
    pass_: str
    dtype: str
    shapes: str
    framework: Timing | None
    torch: Timing | None

    @property
    def ratio(self) -> float | None:
        if self.framework is None or self.torch is None or not self.torch.median:
            return None
        return self.framework.median / self.torch.median

    @property
    def ratio_class(self) -> str:
        return formatting.ratio_class(self.ratio)

    @property
    def has_flops(self) -> bool:
        return any(t is not None and t.flops for t in (self.framework, self.torch))


def _timing(bench: dict[str, Any], peak: float | None) -> Timing:
    stats = bench["stats"]
    median, iqr = float(stats["median"]), float(stats["iqr"])
    flops = bench.get("extra_info", {}).get("flops")
    rate = formatting.gflops(flops, median)
    return Timing(
        median=median,
        iqr=iqr,
        q1=float(stats.get("q1", median - iqr / 2)),
        q3=float(stats.get("q3", median + iqr / 2)),
        rounds=stats.get("rounds"),
        flops=flops,
        gflops=rate,
        peak_fraction=rate / peak if rate is not None and peak else None,
    )


def comparisons(data: dict[str, Any], device: str) -> tuple[list[Comparison], int]:
    """Pair framework and torch measurements; also count the benchmarks that carry no comparison key."""
    peak = data.get("machine_info", {}).get("matmul_peak_gflops")
    pairs: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    skipped = 0
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        if not extra.get("module") or extra.get("impl") not in ("framework", "torch"):
            skipped += 1
            continue
        key = (
            str(extra["module"]),
            str(extra.get("size", "")),
            str(extra.get("pass", "")),
            str(extra.get("device", device)),
            str(extra.get("dtype", "")),
        )
        entry = pairs.setdefault(key, {"workload": bool(extra.get("workload")), "shapes": str(extra.get("shapes", ""))})
        entry[extra["impl"]] = _timing(bench, peak)
    rows = [
        Comparison(
            module=module,
            workload=entry["workload"],
            size=size,
            pass_=pass_,
            dtype=dtype,
            shapes=entry["shapes"],
            framework=entry.get("framework"),
            torch=entry.get("torch"),
        )
        for (module, size, pass_, _, dtype), entry in pairs.items()
    ]
    rows.sort(key=lambda r: (r.module, _size_key(r.size), PASS_ORDER.get(r.pass_, 9), r.pass_, r.dtype))
    return rows, skipped


def _size_key(size: str) -> tuple[int, str]:
    return SIZE_ORDER.get(size, len(SIZE_ORDER)), size


# Where a shapes text says how big the input is: "[51200 elements]", else "input (50, 1024)", else the
# first bare shape tuple such as "(50, 1024)". Constructor arguments ("in_features=2") never count.
_ELEMENTS = re.compile(r"\[(\d+) elements\]")
_TUPLES = (re.compile(r"input \((\d+(?:,\s*\d+)*),?\)"), re.compile(r"\((\d+(?:,\s*\d+)*),?\)"))


def _elements(shapes: str) -> int | None:
    if match := _ELEMENTS.search(shapes):
        return int(match.group(1))
    for pattern in _TUPLES:
        if match := pattern.search(shapes):
            return math.prod(int(n) for n in re.findall(r"\d+", match.group(1)))
    return None


def size_axis(rows: list[Comparison]) -> tuple[dict[str, float], str, dict[float, str] | None]:
    """An x position per size: the input's element count where every size has a distinct one that
    grows with the size, otherwise evenly spaced decades labelled with the size names."""
    sizes = sorted({r.size for r in rows}, key=_size_key)
    counts = {r.size: _elements(r.shapes) for r in rows}
    if all(counts[s] for s in sizes) and len({counts[s] for s in sizes}) == len(sizes):
        ordered = [counts[s] for s in sizes]
        if ordered == sorted(ordered):
            return {s: float(counts[s]) for s in sizes}, "input elements", None
    positions = {s: 10.0**i for i, s in enumerate(sizes)}
    return positions, "size", {x: s for s, x in positions.items()}


def module_plot(module: str, rows: list[Comparison]) -> Any:
    xs, label, ticks = size_axis(rows)
    series = []
    for pass_ in dict.fromkeys(r.pass_ for r in rows):
        for impl in ("framework", "torch"):
            for dtype in dict.fromkeys(r.dtype for r in rows):
                points = [
                    (xs[r.size], t)
                    for r in rows
                    if r.pass_ == pass_ and r.dtype == dtype and (t := getattr(r, impl)) is not None
                ]
                if points:
                    several = len({r.dtype for r in rows}) > 1
                    series.append(
                        {
                            "impl": impl,
                            "pass": f"{pass_} {dtype}" if several else pass_,
                            "x": [x for x, _ in points],
                            "y": [t.median for _, t in points],
                            "low": [t.q1 for _, t in points],
                            "high": [t.q3 for _, t in points],
                        }
                    )
    return plots.timing_plot(module, series, label, ticks)


def _sizes(rows: list[Comparison]) -> int:
    return len({r.size for r in rows})


def _summary(rows: list[Comparison]) -> dict[str, Any]:
    ratios = [r.ratio for r in rows if r.ratio is not None and r.ratio > 0]
    classes = [formatting.ratio_class(r) for r in ratios]
    return {
        "comparisons": len(rows),
        "paired": len(ratios),
        "geomean": math.exp(math.fsum(math.log(r) for r in ratios) / len(ratios)) if ratios else None,
        "good": classes.count("good"),
        "warn": classes.count("warn"),
        "bad": classes.count("bad"),
    }


def device_section(device: str, data: dict[str, Any]) -> dict[str, Any]:
    rows, skipped = comparisons(data, device)
    by_module: dict[str, list[Comparison]] = {}
    for row in rows:
        by_module.setdefault(row.module, []).append(row)
    machine = data.get("machine_info", {})
    return {
        "device": device,
        "environment": machine.get("environment"),
        "peak": machine.get("matmul_peak_gflops"),
        "modules": [(name, group) for name, group in by_module.items() if not group[0].workload],
        "workloads": [(name, group) for name, group in by_module.items() if group[0].workload],
        # A single size gives no line to read a trend from; the table says all there is.
        "plots": [(name, module_plot(name, group)) for name, group in by_module.items() if _sizes(group) > 1],
        "single_size": [name for name, group in by_module.items() if _sizes(group) == 1],
        "flops_rows": [r for r in rows if r.has_flops],
        "summary": _summary(rows),
        "skipped": skipped,
        "labels": labels(data),
        # Cases not timed: their two sides disagree, or building them failed (python -m benchmarks).
        "failures": data.get("failures") or [],
    }


def labels(data: dict[str, Any]) -> dict[str, str]:
    """What the two sides are called: framework and torch, or (``python -m benchmarks PATH``, users'
    ops) op and reference."""
    return (data.get("machine_info", {}).get("bench") or {}).get("labels") or {
        "framework": "framework",
        "torch": "torch",
    }


def context(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"sections": [device_section(device, data) for device, data in benchmarks.items()]}


def device_summary(data: dict[str, Any], device: str) -> dict[str, Any]:
    """The counts and geometric mean ratio of one device's results, without drawing anything."""
    return _summary(comparisons(data, device)[0])
