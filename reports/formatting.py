"""How numbers read on the pages: one function per kind of quantity, used as Jinja filters."""

from __future__ import annotations

import math
from typing import Any

DASH = "—"

# framework/torch time ratios: green when the framework is faster or within 10 %, amber up to twice as slow.
RATIO_GREEN = 1.1
RATIO_AMBER = 2.0


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def seconds(value: float | None, micro: str = "µs") -> str:
    """A duration with a unit chosen so that three significant digits remain: ``123 µs``; the
    unit is chosen after rounding (999.96 µs reads ``1 ms``, not ``1e+03 µs``). ``micro="us"``
    for a terminal."""
    if _missing(value):
        return DASH
    rounded = float(f"{value:.3g}")
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, micro), (1e-9, "ns")):
        if abs(rounded) >= scale:
            return f"{rounded / scale:.3g} {unit}"
    return "0 s" if value == 0 else f"{rounded / 1e-9:.3g} ns"


def error(value: float | str | None) -> str:
    """A relative error, always in scientific notation so columns compare at a glance: ``1.30e-11``.
    A non-finite one, which the JSON holds as text (``"nan"``, ``"inf"``), reads as that text."""
    if isinstance(value, str):
        return value
    if _missing(value):
        return DASH
    return "0" if value == 0 else f"{value:.2e}"


def number(value: float | str | None, digits: int = 3) -> str:
    """A plain quantity with ``digits`` significant digits: ``0.02``, ``1.2e+03``; text stays as it is."""
    if isinstance(value, str):
        return value
    return DASH if _missing(value) else f"{value:.{digits}g}"


def rate(value: float | None) -> str:
    """A throughput such as GFLOP/s: whole numbers with thousands separators from 100 up, ``1,050``."""
    if _missing(value):
        return DASH
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def integer(value: float | None) -> str:
    return DASH if _missing(value) else f"{int(value):,}"


def percent(value: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage: ``0.025`` -> ``2.5 %``."""
    return DASH if _missing(value) else f"{100 * value:.{digits}f} %"


def ratio(value: float | None) -> str:
    return DASH if _missing(value) else f"{value:.2f}×"


def ratio_class(value: float | None) -> str:
    """The colour class of a framework/torch time ratio."""
    if _missing(value):
        return "na"
    if value <= RATIO_GREEN:
        return "good"
    return "warn" if value <= RATIO_AMBER else "bad"


def mean_std(stat: dict[str, Any] | None, kind: str = "number") -> str:
    """``{"mean": m, "std": s}`` as ``m ± s`` in the units of ``kind`` (number, percent or seconds)."""
    if not stat or _missing(stat.get("mean")):
        return DASH
    std = stat.get("std")
    if kind == "seconds":  # the spread in the mean's unit: "12.7 ms ± 0.529 ms", never "9.42 ms ± 0 s"
        mean = seconds(stat["mean"])
        if _missing(std):
            return mean
        unit = mean.split(" ")[-1]
        scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}.get(unit, 1.0)
        return f"{mean} ± {float(f'{std / scale:.3g}'):g} {unit}"
    show = (lambda v: percent(v, 2)) if kind == "percent" else (lambda v: number(v, 3))
    return show(stat["mean"]) if _missing(std) else f"{show(stat['mean'])} ± {show(std)}"


def gflops(flops: float | None, median: float | None) -> float | None:
    """Achieved GFLOP/s of one call that does ``flops`` operations in ``median`` seconds."""
    if _missing(flops) or _missing(median) or not median:
        return None
    return flops / median / 1e9


FILTERS = {
    "seconds": seconds,
    "error": error,
    "number": number,
    "integer": integer,
    "percent": percent,
    "rate": rate,
    "ratio": ratio,
    "ratio_class": ratio_class,
    "mean_std": mean_std,
}
