"""The data set of every EE-559 mini-framework report: points of the unit square, label 1 inside a disk.

The disk is centred at (0.5, 0.5) with radius 1/sqrt(2 pi), so its area is 1/2 and the two
classes are balanced in expectation. Inputs are standardised with the training set's mean
and standard deviation only; the test set is transformed with those same statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

CENTRE = (0.5, 0.5)
RADIUS = 1.0 / math.sqrt(2.0 * math.pi)


def disk_labels(points: Tensor) -> Tensor:
    """1 for points strictly inside the disk, 0 elsewhere (int64, one per row of ``points``)."""
    centre = torch.tensor(CENTRE, dtype=points.dtype, device=points.device)
    return ((points - centre).pow(2).sum(1) < RADIUS**2).long()


def sample_points(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` points uniform in [0, 1]^2, drawn in float64 so every dtype sees the same points."""
    return torch.rand(n, 2, generator=generator, dtype=torch.float64).to(dtype)


@dataclass
class Dataset:
    """Training and test sets, raw and standardised.

    Attributes:
        train_points, test_points: (n, 2) points in the original [0, 1]^2 coordinates.
        train_x, test_x: the same points standardised with ``mean`` and ``std``.
        train_y, test_y: (n,) int64 labels.
        mean, std: (2,) per-coordinate statistics of the training points.
    """

    train_points: Tensor
    test_points: Tensor
    train_x: Tensor
    test_x: Tensor
    train_y: Tensor
    test_y: Tensor
    mean: Tensor
    std: Tensor

    def standardise(self, points: Tensor) -> Tensor:
        """Map points of the original coordinates as the training set was mapped."""
        return (points - self.mean) / self.std


def make_dataset(seed: int = 0, n_train: int = 1000, n_test: int = 1000, dtype: torch.dtype = torch.float64) -> Dataset:
    """Draw a training and a test set from a generator seeded with ``seed``."""
    if n_train < 2 or n_test < 1:
        raise ValueError(f"make_dataset: expected n_train >= 2 and n_test >= 1, got {n_train} and {n_test}")
    generator = torch.Generator().manual_seed(seed)
    # Labels come from the float64 draw, so a float32 run classifies exactly the same points.
    train64 = sample_points(n_train, generator)
    test64 = sample_points(n_test, generator)
    mean, std = train64.mean(0), train64.std(0)
    return Dataset(
        train_points=train64.to(dtype),
        test_points=test64.to(dtype),
        train_x=((train64 - mean) / std).to(dtype),
        test_x=((test64 - mean) / std).to(dtype),
        train_y=disk_labels(train64),
        test_y=disk_labels(test64),
        mean=mean.to(dtype),
        std=std.to(dtype),
    )
