"""Specs of framework/activations.py."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import AWAY_FROM_ZERO, REAL, WIDE, away_from
from ..spec import Input, Spec
from ..strategies import floats, shapes


def elementwise(domain):
    return lambda kw: [Input(shapes(1, 3), domain)]


SPECS = [
    Spec(fw.ReLU, {}, elementwise(AWAY_FROM_ZERO), lambda m: torch.nn.ReLU(), kinks="x = 0: derivative 0"),
    Spec(fw.Tanh, {}, elementwise(REAL), lambda m: torch.nn.Tanh()),
    Spec(fw.Sigmoid, {}, elementwise(WIDE), lambda m: torch.nn.Sigmoid()),
    Spec(
        fw.LeakyReLU,
        {"negative_slope": floats(-0.5, 2.0)},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.LeakyReLU(m.negative_slope),
        kinks="x = 0: derivative negative_slope, as torch",
    ),
    Spec(
        fw.ELU,
        {"alpha": floats(0.1, 3.0)},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.ELU(m.alpha),
        kinks="x = 0: derivative alpha (the x <= 0 branch), as torch",
    ),
    Spec(
        fw.SELU,
        {},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.SELU(),
        kinks="x = 0: derivative scale * alpha (the x <= 0 branch), as torch",
    ),
    Spec(fw.Tanhshrink, {}, elementwise(REAL), lambda m: torch.nn.Tanhshrink()),
    Spec(
        fw.Threshold,
        {"threshold": floats(-2.0, 2.0), "value": floats(-3.0, 3.0)},
        lambda kw: [Input(shapes(1, 3), away_from(kw["threshold"]))],
        lambda m: torch.nn.Threshold(m.threshold, m.value),
        kinks="x = threshold: output value, derivative 0, as torch",
    ),
    Spec(
        fw.Softplus,
        {"beta": floats(0.5, 3.0), "threshold": floats(0.5, 20.0)},
        lambda kw: [Input(shapes(1, 3), away_from(kw["threshold"] / kw["beta"]))],
        lambda m: torch.nn.Softplus(m.beta, m.threshold),
        kinks="beta x = threshold: the log branch (output and derivative sigmoid(threshold)); linear above, as torch",
    ),
    Spec(
        fw.GELU,
        {"approximate": st.sampled_from(["none", "tanh"])},
        elementwise(REAL),
        lambda m: torch.nn.GELU(approximate=m.approximate),
    ),
]
