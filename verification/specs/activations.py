"""Specs of framework/activations.py."""

import torch

import framework as fw

from ..domains import AWAY_FROM_ZERO, REAL, WIDE
from ..spec import Input, Spec
from ..strategies import shapes


def elementwise(domain):
    return lambda kw: [Input(shapes(1, 3), domain)]


SPECS = [
    Spec(fw.ReLU, {}, elementwise(AWAY_FROM_ZERO), lambda m: torch.nn.ReLU(), kinks="x = 0: derivative 0"),
    Spec(fw.Tanh, {}, elementwise(REAL), lambda m: torch.nn.Tanh()),
    Spec(fw.Sigmoid, {}, elementwise(WIDE), lambda m: torch.nn.Sigmoid()),
]
