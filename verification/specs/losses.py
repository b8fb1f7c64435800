"""Specs of framework/losses.py.

The target makers cannot see the drawn kwargs, so Huber's delta and SmoothL1's beta are drawn
from a fixed set and the offset p - t keeps clear of every switch point of the set.
"""

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import PROBABILITY, REAL, UNIT, WIDE, away_from
from ..spec import Input, Spec, class_indices, offset, values
from ..strategies import batched, reductions, shapes, sizes

HUBER_DELTAS = (0.5, 1.0, 2.0)
SMOOTH_L1_BETAS = (0.0, 0.5, 1.0, 2.0)


def _switch_points(widths):
    return sorted({0.0, *widths, *(-w for w in widths)})


SPECS = [
    Spec(
        fw.MSELoss,
        {"reduction": reductions()},
        lambda kw: [Input(shapes(1, 3), REAL)],
        lambda m: torch.nn.MSELoss(reduction=m.reduction),
        target=values(REAL),
    ),
    Spec(
        fw.L1Loss,
        {"reduction": reductions()},
        lambda kw: [Input(shapes(1, 3), REAL)],
        lambda m: torch.nn.L1Loss(reduction=m.reduction),
        target=offset(away_from(0.0)),
        kinks="p == t: gradient 0 (sign(0) = 0), as torch",
    ),
    Spec(
        fw.HuberLoss,
        {"reduction": reductions(), "delta": st.sampled_from(HUBER_DELTAS)},
        lambda kw: [Input(shapes(1, 3), REAL)],
        lambda m: torch.nn.HuberLoss(reduction=m.reduction, delta=m.delta),
        target=offset(away_from(*_switch_points(HUBER_DELTAS))),
        kinks="|p - t| == delta: gradient +-delta (continuous; the second derivative jumps), as torch",
    ),
    Spec(
        fw.SmoothL1Loss,
        {"reduction": reductions(), "beta": st.sampled_from(SMOOTH_L1_BETAS)},
        lambda kw: [Input(shapes(1, 3), REAL)],
        lambda m: torch.nn.SmoothL1Loss(reduction=m.reduction, beta=m.beta),
        target=offset(away_from(*_switch_points(SMOOTH_L1_BETAS))),
        kinks="|p - t| == beta: gradient +-1 (continuous); beta = 0 is L1 with gradient 0 at p == t, as torch",
    ),
    Spec(
        fw.BCELoss,
        {"reduction": reductions()},
        lambda kw: [Input(shapes(1, 3), PROBABILITY)],
        lambda m: torch.nn.BCELoss(reduction=m.reduction),
        target=values(UNIT),
    ),
    Spec(
        fw.BCEWithLogitsLoss,
        {"reduction": reductions()},
        lambda kw: [Input(shapes(1, 3), WIDE)],
        lambda m: torch.nn.BCEWithLogitsLoss(reduction=m.reduction),
        target=values(UNIT),
    ),
    Spec(
        fw.CrossEntropyLoss,
        {"reduction": reductions()},
        lambda kw: [Input(st.one_of(batched(sizes(1, 5)), batched(sizes(1, 5), sizes(1, 4))), REAL)],
        lambda m: torch.nn.CrossEntropyLoss(reduction=m.reduction),
        target=class_indices(),
    ),
]
