"""Specs of framework/losses.py."""

import torch

import framework as fw

from ..domains import REAL
from ..spec import Input, Spec, values
from ..strategies import reductions, shapes

SPECS = [
    Spec(
        fw.MSELoss,
        {"reduction": reductions()},
        lambda kw: [Input(shapes(1, 3), REAL)],
        lambda m: torch.nn.MSELoss(reduction=m.reduction),
        target=values(REAL),
    ),
]
