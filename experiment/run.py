"""One experiment: ``config.runs`` seeds, each trained by both implementations, as training.json's object."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

import torch

from .data import Dataset, make_dataset
from .metrics import decision_grid, evaluate, grid_axis, mean_std, predict, relative_difference
from .model import Config
from .train import History, epoch_orders, run_framework, run_torch

IMPLEMENTATIONS = ("framework", "torch")
METRICS = ("train_error", "test_error", "precision", "recall", "f1", "seconds_per_epoch")
EPOCHS_COMPARED = 5
GRID_POINTS = 81


class ProgressBar:
    """A one-line progress bar on a text stream, redrawn in place with a carriage return."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.label = ""
        self.total = 1

    def start(self, label: str, total: int) -> None:
        self.label, self.total = label, total

    def __call__(self, epoch: int, loss: float) -> None:
        done = (epoch + 1) * self.width // self.total
        bar = "#" * done + "." * (self.width - done)
        self.stream.write(f"\r{self.label} [{bar}] {epoch + 1}/{self.total} loss {loss:.5f}")
        if epoch + 1 == self.total:
            self.stream.write("\r" + " " * (len(self.label) + self.width + 40) + "\r")
        self.stream.flush()


def _record(history: History, data: Dataset) -> dict[str, Any]:
    return {
        "loss": history.loss,
        **evaluate(history.model, data),
        "seconds_per_epoch": history.seconds_per_epoch,
        "restarts": history.restarts,
    }


def parameter_difference(ours: Any, theirs: torch.nn.Module) -> float:
    """Largest |framework - torch| over the trained parameters, relative to the largest |parameter|."""
    twin = dict(theirs.named_parameters())
    worst, scale = 0.0, 0.0
    for name, value, _ in ours.named_param():
        worst = max(worst, float((value - twin[name].detach()).abs().max()))
        scale = max(scale, float(value.abs().max()))
    return worst / scale if scale > 0 else worst


def agreement(
    runs: list[dict[str, Any]], config: Config, predictions_equal: list[float], weight_differences: list[float]
) -> dict[str, Any]:
    """How close the two loss trajectories stay: worst relative difference over runs, per epoch.

    Without torch there is nothing to compare, and with dropout the two draw their masks from
    different generators: the record then says why and carries no differences.
    """
    diverged = {
        f"diverged_runs_{name}": sum(not all(math.isfinite(v) for v in run[name]["loss"]) for run in runs)
        for name in IMPLEMENTATIONS
        if name in runs[0]
    }
    if not config.torch:
        return {"comparable": False, "note": "framework only (--no-torch)", **diverged}
    if not config.deterministic:
        return {"comparable": False, "note": "dropout masks come from different generators", **diverged}
    per_epoch = [
        max(relative_difference(run["framework"]["loss"][e], run["torch"]["loss"][e]) for run in runs)
        for e in range(config.epochs)
    ]
    first = min(EPOCHS_COMPARED, config.epochs)
    return {
        "comparable": True,
        "dtype": config.dtype,
        "epochs_compared": first,
        "max_relative_difference_first_epochs": max(per_epoch[:first]),
        "max_relative_difference_all_epochs": max(per_epoch),
        "relative_difference_per_epoch": per_epoch,
        "same_restarts": all(r["framework"]["restarts"] == r["torch"]["restarts"] for r in runs),
        "max_relative_difference_final_weights": max(weight_differences),
        "test_prediction_agreement": min(predictions_equal),
        **diverged,
    }


def run_experiment(
    config: Config,
    progress: ProgressBar | None = None,
    on_run: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train every run and return training.json's object, less its ``environment``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run_experiment(config, progress, on_run)
    finally:
        torch.set_num_threads(threads)


def _run_experiment(
    config: Config, progress: ProgressBar | None, on_run: Callable[[int, dict[str, Any]], None] | None
) -> dict[str, Any]:
    implementations = IMPLEMENTATIONS if config.torch else IMPLEMENTATIONS[:1]
    runners = {"framework": run_framework, "torch": run_torch}
    runs: list[dict[str, Any]] = []
    predictions_equal: list[float] = []
    weight_differences: list[float] = []
    grid: dict[str, Any] = {}
    first_data: Dataset | None = None
    for index in range(config.runs):
        seed = config.seed + index
        data = make_dataset(seed, config.n_train, config.n_test, config.torch_dtype)
        orders = epoch_orders(seed, config.epochs, config.n_train)
        # Alternate which implementation goes first, so neither always gets the warm caches.
        order = implementations if index % 2 == 0 else implementations[::-1]
        histories: dict[str, History] = {}
        for name in order:
            if progress is not None:
                progress.start(f"run {index + 1}/{config.runs} {name:9}", config.epochs)
            histories[name] = runners[name](
                config,
                seed,
                data.train_x.to(config.device),
                data.train_y.to(config.device),
                [order.to(config.device) for order in orders],
                progress,
            )
        # An implementation that did not run has no key at all (--no-torch).
        run: dict[str, Any] = {"seed": seed, **{name: _record(histories[name], data) for name in implementations}}
        if config.torch:
            ours, theirs = histories["framework"].model, histories["torch"].model
            same = predict(ours, data.test_x) == predict(theirs, data.test_x)
            predictions_equal.append(float(same.double().mean()))
            weight_differences.append(parameter_difference(ours, theirs))
        if index == 0:
            first_data = data
            grid = {name: decision_grid(histories[name].model, data, config.loss, GRID_POINTS) for name in histories}
        runs.append(run)
        if on_run is not None:
            on_run(index, run)
    assert first_data is not None
    summary = {name: {m: mean_std([run[name][m] for run in runs]) for m in METRICS} for name in implementations}
    axis = [round(v, 6) for v in grid_axis(GRID_POINTS)]
    return {
        "kind": "training",
        "config": config.to_json(),
        "runs": runs,
        "summary": summary,
        "agreement": agreement(runs, config, predictions_equal, weight_differences),
        "decision_grid": {"xs": axis, "ys": axis, **grid},
        "test_points": {
            "points": [[round(float(v), 6) for v in p] for p in first_data.test_points],
            "labels": [int(v) for v in first_data.test_y],
        },
    }
