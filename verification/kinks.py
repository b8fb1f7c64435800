"""Points where a derivative jumps, pinned exactly to torch's convention (check 6).

Property tests keep their inputs a named margin away from these points (see the specs'
domains); here each kink is evaluated *at* the point, and the framework's gradient must equal
``torch.autograd``'s bit for bit up to float64 rounding.
"""

from __future__ import annotations

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
    Kink("ReLU at 0", fw.ReLU, [-1.0, 0.0, 1.0], note="derivative 0 at x = 0"),
    Kink("LeakyReLU at 0", lambda: fw.LeakyReLU(0.1), [-1.0, 0.0, 1.0], note="derivative negative_slope at x = 0"),
    Kink(
        "Threshold at threshold", lambda: fw.Threshold(0.5, -2.0), [0.0, 0.5, 1.0], note="x = threshold maps to value"
    ),
    Kink("ELU at 0", lambda: fw.ELU(2.0), [-1.0, 0.0, 1.0]),
    Kink("Softplus at the linear switch", lambda: fw.Softplus(2.0, 3.0), [1.0, 1.5, 2.0], note="beta x = threshold"),
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


def evaluate(kink: Kink) -> tuple[torch.Tensor, torch.Tensor]:
    """(framework gradient, torch.autograd gradient) at the kink, float64, upstream gradient 1.5."""
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
    if target is not None:
        module(x, target)
    else:
        module(x)
    return module.backward(upstream.detach()), leaf.grad
