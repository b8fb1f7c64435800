"""Plots as inline SVG strings: matplotlib figures without pyplot (so no GUI backend, no global state), no files."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

COLOURS = {"framework": "#1f5fbf", "torch": "#d9480f"}
PASS_STYLES = ("-", "--", ":", "-.")

# Text stays text (smaller files, selectable, scales with the page); a fixed salt and no date
# make the same results give the same bytes.
_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "reports",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def to_svg(fig: Figure, label: str) -> Markup:
    """The figure as an ``<svg>`` element with an accessible label, ready to inline in HTML."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = text.replace("<svg ", f'<svg role="img" aria-label="{_attr(label)}" ', 1)
    return Markup(text)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def timing_plot(module: str, series: Sequence[dict[str, Any]], xlabel: str, ticks: dict[float, str] | None) -> Markup:
    """Median time against problem size, log-log, one line per implementation and pass.

    Each series is ``{"impl", "pass", "x": [...], "y": [...], "low": [...], "high": [...]}`` with
    ``low``/``high`` the quartiles, drawn as a band so the spread is visible next to the median.
    """
    with matplotlib.rc_context(_RC):
        fig = _figure(4.2, 3.4)
        ax = fig.add_subplot()
        passes = list(dict.fromkeys(s["pass"] for s in series))
        for s in series:
            colour = COLOURS.get(s["impl"], "#555555")
            style = PASS_STYLES[passes.index(s["pass"]) % len(PASS_STYLES)]
            ax.plot(s["x"], s["y"], style, marker="o", markersize=3.5, color=colour, label=f"{s['impl']}, {s['pass']}")
            ax.fill_between(s["x"], s["low"], s["high"], color=colour, alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if ticks:
            ax.set_xticks(list(ticks), list(ticks.values()))
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median time per call [s]")
        ax.set_title(module)
        # Below the axes: inside, the legend would hide the lines it names.
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
        return to_svg(fig, f"{module}: time per call against {xlabel}, framework and torch")


def loss_plot(curves: dict[str, list[list[float]]]) -> Markup:
    """Training loss per epoch, log scale: every run thin, the mean over runs thick."""
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 3.4)
        ax = fig.add_subplot()
        handles = []
        for impl, runs in curves.items():
            colour = COLOURS.get(impl, "#555555")
            for run in runs:
                ax.plot(range(1, len(run) + 1), _positive(run), color=colour, alpha=0.25, linewidth=0.7)
            length = min((len(run) for run in runs), default=0)
            # The two means often coincide to rounding: torch dashed over the framework solid keeps both visible.
            style = "--" if impl == "torch" else "-"
            if length:
                mean = [math.fsum(run[e] for run in runs if run[e] is not None) / len(runs) for e in range(length)]
                ax.plot(range(1, length + 1), _positive(mean), style, color=colour, linewidth=2)
            label = f"{impl} (mean of {len(runs)} runs)"
            handles.append(Line2D([], [], linestyle=style, color=colour, linewidth=2, label=label))
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean training loss")
        ax.legend(handles=handles, frameon=False)
        return to_svg(fig, "Training loss per epoch of the framework and torch, log scale")


def difference_plot(per_epoch: Sequence[float | None]) -> Markup:
    """Per epoch, the largest relative difference over runs between the framework's and torch's loss, log scale."""
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 2.4)
        ax = fig.add_subplot()
        ax.plot(range(1, len(per_epoch) + 1), _positive(per_epoch), color="#444444", marker=".", markersize=3)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("max over runs of the\nrelative difference")
        return to_svg(
            fig, "Per epoch, the largest relative difference over runs between framework and torch loss, log scale"
        )


def _positive(values: Sequence[float | None]) -> list[float]:
    # A log axis cannot show zero or a missing value; a gap says so better than a clipped point.
    return [v if v is not None and v > 0 else math.nan for v in values]


def decision_plot(
    impl: str,
    xs: Sequence[float],
    ys: Sequence[float],
    grid: list[list[float]],
    points: Sequence[Sequence[float]],
    labels: Sequence[int],
    center: tuple[float, float],
    radius: float,
) -> Markup:
    """Learned P(class 1) over the unit square, its 0.5 level, the true circle and the test points.

    ``grid[i][j]`` is the probability at ``(xs[j], ys[i])``: rows follow y, as in a contour plot.
    Class 1 is blue and class 0 red, for the regions and the points alike.
    """
    with matplotlib.rc_context(_RC):
        fig = _figure(4.2, 4.4)
        ax = fig.add_subplot()
        filled = ax.contourf(xs, ys, grid, levels=[0, 0.25, 0.5, 0.75, 1], cmap="RdBu", alpha=0.45)
        ax.contour(xs, ys, grid, levels=[0.5], colors="#222222", linewidths=1.4)
        ax.add_patch(Circle(center, radius, fill=False, linestyle="--", color="#000000", linewidth=1.2))
        for label, colour, marker in ((0, "#8e0b1f", "x"), (1, "#08306b", "o")):
            chosen = [p for p, y in zip(points, labels) if int(y) == label]
            if chosen:
                ax.scatter(
                    [p[0] for p in chosen],
                    [p[1] for p in chosen],
                    s=9,
                    c=colour,
                    marker=marker,
                    linewidths=0.7,
                    label=f"test point, label {label}",
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_title(f"{impl}: decision boundary")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(filled, ax=ax, shrink=0.75, label="P(class 1)")
        handles = [
            Line2D([], [], color="#222222", linewidth=1.4, label="learned (P = 0.5)"),
            Line2D([], [], color="#000000", linestyle="--", linewidth=1.2, label="true circle"),
            *ax.get_legend_handles_labels()[0],
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=8)
        return to_svg(fig, f"Decision boundary learned by {impl} on the disk data, true circle and test points")
