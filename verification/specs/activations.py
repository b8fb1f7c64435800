"""Specs of framework/activations.py.

ReLU, LeakyReLU, ELU, SELU and Threshold draw torch's ``inplace`` too. Their twin is always
torch's out-of-place module (the out-of-place function is the one whose gradient is checked);
every evaluation the verifier runs gets its own copy of the inputs (``Call.fresh`` in
verification/targets.py), its ``side_effects`` check lets an ``inplace=True`` module modify its
input, and ``_in_place_semantics`` checks the in-place contract itself.
"""

import copy

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import AWAY_FROM_ZERO, REAL, WIDE, away_from
from ..spec import Built, Input, Spec
from ..strategies import booleans, floats, shapes


def elementwise(domain):
    return lambda kw: [Input(shapes(1, 3), domain)]


def _in_place_semantics(built: Built) -> None:
    """inplace=True: forward returns its input tensor, overwritten with the output of inplace=False,
    and backward equals inplace=False's bit for bit."""
    module, (x,) = built.module, built.inputs
    if not module.inplace:
        return
    reference = copy.deepcopy(module)
    reference.inplace = False
    expected = reference(x)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(built.generator_seed), dtype=torch.float64)
    g = g.to(x)
    given = x.clone()
    y = module(given)
    assert y is given, "inplace=True: forward did not return its input tensor"
    assert torch.equal(given, expected), "inplace=True: the input does not hold the output of inplace=False"
    assert torch.equal(module.backward(g), reference.backward(g)), "inplace=True: backward differs from inplace=False"


SPECS = [
    Spec(
        fw.ReLU,
        {"inplace": booleans()},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.ReLU(),
        kinks="x = 0: derivative 0",
        semantics=_in_place_semantics,
    ),
    Spec(fw.Tanh, {}, elementwise(REAL), lambda m: torch.nn.Tanh()),
    Spec(fw.Sigmoid, {}, elementwise(WIDE), lambda m: torch.nn.Sigmoid()),
    Spec(
        fw.LeakyReLU,
        {"negative_slope": floats(-0.5, 2.0), "inplace": booleans()},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.LeakyReLU(m.negative_slope),
        kinks="x = 0: derivative negative_slope, as torch",
        semantics=_in_place_semantics,
    ),
    Spec(
        fw.ELU,
        {"alpha": floats(0.1, 3.0), "inplace": booleans()},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.ELU(m.alpha),
        kinks="x = 0: derivative alpha (the x <= 0 branch), as torch",
        semantics=_in_place_semantics,
    ),
    Spec(
        fw.SELU,
        {"inplace": booleans()},
        elementwise(AWAY_FROM_ZERO),
        lambda m: torch.nn.SELU(),
        kinks="x = 0: derivative scale * alpha (the x <= 0 branch), as torch",
        semantics=_in_place_semantics,
    ),
    Spec(fw.Tanhshrink, {}, elementwise(REAL), lambda m: torch.nn.Tanhshrink()),
    Spec(
        fw.Threshold,
        {"threshold": floats(-2.0, 2.0), "value": floats(-3.0, 3.0), "inplace": booleans()},
        lambda kw: [Input(shapes(1, 3), away_from(kw["threshold"]))],
        lambda m: torch.nn.Threshold(m.threshold, m.value),
        kinks="x = threshold: output value, derivative 0, as torch",
        semantics=_in_place_semantics,
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
