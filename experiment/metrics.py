"""Evaluation of a trained network: errors, precision/recall/F1 of class 1, the decision score on a grid.

A network here is anything callable on a (n, 2) tensor returning (n, 2) scores: the
framework network in eval mode, or the torch.nn twin (called with gradients off).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .data import Dataset

Network = Callable[[Tensor], Tensor]


def outputs(network: Network, x: Tensor) -> Tensor:
    with torch.no_grad():
        return network(x)


def predict(network: Network, x: Tensor) -> Tensor:
    """Predicted class: the larger of the two outputs."""
    return outputs(network, x).argmax(1)


def classification(prediction: Tensor, labels: Tensor) -> dict[str, float]:
    """Error rate, and precision, recall and F1 of class 1 (0 when undefined)."""
    tp = int(((prediction == 1) & (labels == 1)).sum())
    fp = int(((prediction == 1) & (labels == 0)).sum())
    fn = int(((prediction == 0) & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    error = float((prediction != labels).double().mean())
    return {"error": error, "precision": precision, "recall": recall, "f1": f1}


def evaluate(network: Network, data: Dataset) -> dict[str, float]:
    """train_error, test_error, and precision, recall, F1 on the test set."""
    train = classification(predict(network, data.train_x), data.train_y)
    test = classification(predict(network, data.test_x), data.test_y)
    return {
        "train_error": train["error"],
        "test_error": test["error"],
        "precision": test["precision"],
        "recall": test["recall"],
        "f1": test["f1"],
    }


def class_one_score(scores: Tensor, loss: str) -> Tensor:
    """p(class 1) in [0, 1], whose 0.5 level set is the decision boundary.

    Cross-entropy outputs are logits: the softmax. MSE outputs regress the one-hot target:
    (1 + y_1 - y_0) / 2, clipped, which is 0 or 1 for a perfect output and 1/2 where the
    argmax changes.
    """
    if loss == "cross-entropy":
        return torch.softmax(scores, 1)[:, 1]
    return ((1 + scores[:, 1] - scores[:, 0]) / 2).clamp(0, 1)


def grid_axis(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]


def decision_grid(network: Network, data: Dataset, loss: str, points: int = 81) -> list[list[float]]:
    """p(class 1) on a points x points grid of [0, 1]^2: row i is y = ys[i], column j is x = xs[j]."""
    axis = torch.tensor(grid_axis(points), dtype=data.train_x.dtype)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    original = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    score = class_one_score(outputs(network, data.standardise(original)), loss)
    return [[round(float(v), 4) for v in row] for row in score.reshape(points, points)]


def relative_difference(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|); 0 when both diverged alike (both nan, or the same infinity), inf when one did."""
    if not (math.isfinite(a) and math.isfinite(b)):
        same = (math.isnan(a) and math.isnan(b)) or a == b
        return 0.0 if same else math.inf
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0


def finite_or_none(value: Any) -> Any:
    """``value`` with every nan or infinity replaced by None, so it serialises as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (None for a single value: one run shows no spread)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std}
