"""Specs of framework/normalization.py: per-sample statistics, normalised shapes of any rank."""

import inspect
import math

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import REAL, away_from
from ..spec import Input, Spec
from ..strategies import booleans, sizes

EPS = st.sampled_from([1e-5, 1e-3, 0.1])
# RMSNorm of a single value is x / sqrt(x^2 + eps), a smoothed sign: a step of width sqrt(eps)
# at 0, which finite differences can only follow away from it.
AWAY_FROM_A_ZERO_RMS = away_from(0.0, margin=0.05, name="away_from_zero(margin=0.05)")


def _trailing_inputs(domain):
    """Inputs (*, *normalized_shape) with zero to two leading dimensions."""

    def inputs(kw):
        leading = st.lists(sizes(1, 3), min_size=0, max_size=2)
        return [Input(leading.map(lambda lead: (*lead, *kw["normalized_shape"])), domain)]

    return inputs


# torch.nn.GroupNorm takes ``bias`` from torch 2.13 on: on older versions the twin exists for
# bias=True only, so the spec draws no other.
_GROUP_NORM_HAS_BIAS = "bias" in inspect.signature(torch.nn.GroupNorm).parameters


def _group_norm_twin(m):
    if _GROUP_NORM_HAS_BIAS:
        return torch.nn.GroupNorm(m.num_groups, m.num_channels, m.eps, m.affine, bias=m.bias is not None)
    return torch.nn.GroupNorm(m.num_groups, m.num_channels, m.eps, m.affine)


@st.composite
def _group_kwargs(draw):
    groups = draw(sizes(1, 3))
    return {
        "num_groups": groups,
        "num_channels": groups * draw(sizes(1, 3)),
        "eps": draw(EPS),
        "affine": draw(booleans()),
        "bias": draw(booleans()) if _GROUP_NORM_HAS_BIAS else True,
    }


def _group_inputs(kw):
    spatial = st.lists(sizes(1, 3), min_size=0, max_size=2)
    shape = st.tuples(sizes(1, 3), spatial).map(lambda t: (t[0], kw["num_channels"], *t[1]))
    # A group of one value normalises to 0 whatever its value: its gradient is 0 exactly, and
    # torch's kernel leaves rounding noise there amplified by 1/sqrt(eps), beyond any rounding
    # bound. Every group gets two values or more (torch itself refuses one value per group
    # when N is 1).
    per_group = kw["num_channels"] // kw["num_groups"]
    return [Input(shape.filter(lambda s: per_group * math.prod(s[2:]) > 1), REAL)]


SHAPES = st.lists(sizes(1, 4), min_size=1, max_size=2)

# As for groups: a single normalised value maps to 0 whatever it is (gradient 0 exactly, torch's noisy).
SHAPES_OF_TWO_OR_MORE = SHAPES.filter(lambda shape: math.prod(shape) > 1)

SPECS = [
    Spec(
        fw.LayerNorm,
        {"normalized_shape": SHAPES_OF_TWO_OR_MORE, "eps": EPS, "elementwise_affine": booleans(), "bias": booleans()},
        _trailing_inputs(REAL),
        lambda m: torch.nn.LayerNorm(
            m.normalized_shape, m.eps, m.elementwise_affine, bias=m.elementwise_affine and m.bias is not None
        ),
    ),
    Spec(
        fw.GroupNorm,
        _group_kwargs(),
        _group_inputs,
        _group_norm_twin,
    ),
    Spec(
        fw.RMSNorm,
        {"normalized_shape": SHAPES, "eps": st.none() | EPS, "elementwise_affine": booleans()},
        _trailing_inputs(AWAY_FROM_A_ZERO_RMS),
        lambda m: torch.nn.RMSNorm(m.normalized_shape, m.eps, m.elementwise_affine),
        kinks="a single normalised value: x / sqrt(x^2 + eps) steps at 0 (inputs kept 0.05 away)",
    ),
]
