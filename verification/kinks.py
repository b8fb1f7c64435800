"""Points where a derivative jumps, pinned exactly to torch's convention: the one kink table.

Property tests keep their inputs a named margin away from these points (see the specs'
domains); here each kink is evaluated *at* the point (and just beside it), and the framework's
value and gradient must equal ``torch.autograd``'s up to float64 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import framework as fw


@dataclass(frozen=True)
class Kink:
    name: str
    module: Callable[[], Any]
    prediction: list[float] | list[list[float]]
    target: list[float] | None = None
    note: str = ""


KINKS = [
    Kink("ReLU at 0", fw.ReLU, [-1.0, 0.0, -0.0, 1.0], note="derivative 0 at x = 0"),
    Kink("LeakyReLU at 0", lambda: fw.LeakyReLU(0.1), [-1.0, 0.0, -0.0, 1.0], note="derivative negative_slope at 0"),
    Kink("ELU at 0", lambda: fw.ELU(2.0), [-1.0, 0.0, -0.0, 1.0], note="derivative alpha exp(0) = alpha at x = 0"),
    Kink("SELU at 0", fw.SELU, [-1.0, 0.0, -0.0, 1.0], note="derivative scale * alpha at x = 0"),
    Kink(
        "Threshold at threshold", lambda: fw.Threshold(0.5, -2.0), [0.0, 0.5, 1.0], note="x = threshold maps to value"
    ),
    Kink(
        "Softplus at the linear switch",
        lambda: fw.Softplus(2.0, 1.0),
        [0.25, 0.5, math.nextafter(0.5, 1.0), math.nextafter(0.5, 0.0), 1.0],
        note="beta x = threshold: the log1p branch, x above it",
    ),
    Kink("Softplus default switch", fw.Softplus, [19.5, 20.0, 20.5], note="beta = 1, threshold = 20"),
    Kink("L1Loss at p = t", fw.L1Loss, [1.0, 2.0, 3.0], [1.0, 0.0, 3.0], note="sign(0) = 0"),
    Kink("HuberLoss at |p - t| = delta", lambda: fw.HuberLoss(delta=1.0), [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]),
    Kink("SmoothL1Loss at |p - t| = beta", lambda: fw.SmoothL1Loss(beta=0.5), [0.0, 0.5, 1.0], [0.5, 0.5, 0.5]),
    Kink("SmoothL1Loss with beta = 0 at p = t", lambda: fw.SmoothL1Loss(beta=0.0), [0.0, 0.5], [0.0, 0.0]),
    Kink(
        "MaxPool2d ties",
        lambda: fw.MaxPool2d(2),
        [[[[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 0.0, 5.0, 5.0], [0.0, 3.0, 5.0, 5.0]]]],
        note="one element per window receives the gradient, the one torch picks",
    ),
]


def evaluate(kink: Kink) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((framework output, gradient), (torch output, gradient)) at the kink, float64, upstream 1.5, 2.5, ..."""
    from .twins import twin_of

    module = kink.module().to(dtype=torch.float64)
    x = torch.tensor(kink.prediction, dtype=torch.float64)
    target = None if kink.target is None else torch.tensor(kink.target, dtype=torch.float64)
    twin = twin_of(module)
    leaf = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = twin(leaf, target) if target is not None else twin(leaf)
        upstream = torch.full_like(out, 1.5) + torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape)
        out.backward(upstream)
    ours = module(x, target) if target is not None else module(x)
    return (ours, module.backward(upstream.detach())), (out.detach(), leaf.grad)
