"""What ``training.html`` shows: loss curves, error table, agreement and the decision boundary."""

from __future__ import annotations

import math
from typing import Any

from . import formatting, plots

IMPLS = ("framework", "torch")

# (key in the summary, heading, how the value reads)
METRICS = (
    ("train_error", "train error", "percent"),
    ("test_error", "test error", "percent"),
    ("precision", "precision", "number"),
    ("recall", "recall", "number"),
    ("f1", "F1", "number"),
    ("seconds_per_epoch", "time per epoch", "seconds"),
)

# The disk of the classic exercise: label 1 inside the circle of centre (0.5, 0.5) and area 1/2.
CENTER = (0.5, 0.5)
RADIUS = 1 / math.sqrt(2 * math.pi)


def _grid_rows_follow_y(grid: list[list[float]], xs: list[float], ys: list[float]) -> list[list[float]]:
    # The contract is grid[i][j] at (xs[j], ys[i]); a producer that wrote it the other way round
    # is recognised when the grid is not square.
    if len(grid) == len(xs) != len(ys) and all(len(row) == len(ys) for row in grid):
        return [list(column) for column in zip(*grid)]
    return grid


def decision(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """One decision-boundary plot per implementation that recorded a grid."""
    grid = data.get("decision_grid")
    if not grid:
        return []
    xs, ys = grid["xs"], grid["ys"]
    points = data.get("test_points") or {"points": [], "labels": []}
    config = data["config"]
    center = tuple(config.get("center", CENTER))
    radius = float(config.get("radius", RADIUS))
    return [
        (impl, plots.decision_plot(impl, xs, ys, rows, points["points"], points["labels"], center, radius))
        for impl in IMPLS
        if (rows := grid.get(impl)) and (rows := _grid_rows_follow_y(rows, xs, ys))
    ]


# How the agreement numbers read; the producer may add others, shown by the generic rule below.
AGREEMENT = {
    "epochs_compared": ("epochs compared", str),
    "max_relative_difference_first_epochs": ("max relative difference of the loss, first epochs", formatting.error),
    "max_relative_difference_all_epochs": ("max relative difference of the loss, all epochs", formatting.error),
}


def _agreement_value(key: str, value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if "agreement" in key or "fraction" in key:
            return formatting.percent(value, 2)
        return formatting.error(value) if "difference" in key or "error" in key else formatting.number(value, 4)
    if isinstance(value, str):
        return value
    return None  # lists and objects: plotted or left to the JSON


def agreement(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of the agreement record, the contract's first, then any other scalar."""
    record = data.get("agreement") or {}
    lines = [(label, show(record[key])) for key, (label, show) in AGREEMENT.items() if key in record]
    for key, value in record.items():
        if key not in AGREEMENT and (shown := _agreement_value(key, value)) is not None:
            lines.append((key.replace("_", " "), shown))
    return lines


def _agreement_plot(data: dict[str, Any]) -> Any:
    per_epoch = (data.get("agreement") or {}).get("relative_difference_per_epoch")
    if not isinstance(per_epoch, list) or not per_epoch:
        return None
    return plots.difference_plot(per_epoch)


def context(data: dict[str, Any]) -> dict[str, Any]:
    runs = data["runs"]
    curves = {impl: [run[impl]["loss"] for run in runs if impl in run] for impl in IMPLS}
    curves = {impl: losses for impl, losses in curves.items() if losses}
    summary = data["summary"]
    return {
        "data": data,
        "config": data["config"],
        "runs": runs,
        "impls": [impl for impl in IMPLS if impl in summary] + [i for i in summary if i not in IMPLS],
        "metrics": METRICS,
        "summary": summary,
        "agreement": agreement(data),
        "agreement_plot": _agreement_plot(data),
        "loss_plot": plots.loss_plot(curves) if curves else None,
        "decision_plots": decision(data),
        "test_points": len((data.get("test_points") or {}).get("points", [])),
    }
