"""Specs of framework/losses.py.

The offset target makers do not look at the drawn kwargs, so Huber's delta and SmoothL1's beta
are drawn from a fixed set and the offset p - t keeps clear of every switch point of the set.
Every loss draws ``reduction='none'`` too (the upstream gradient is then a random tensor of the
loss's shape). An empty batch is tested against torch in tests/framework, not here: there is
nothing to differentiate.
"""

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import PROBABILITY, REAL, UNIT, WIDE, away_from
from ..spec import Input, Spec, class_indices, offset, values
from ..strategies import batched, floats, reductions, shapes, sizes

HUBER_DELTAS = (0.5, 1.0, 2.0)
SMOOTH_L1_BETAS = (0.0, 0.5, 1.0, 2.0)


def _switch_points(widths):
    return sorted({0.0, *widths, *(-w for w in widths)})


def _copy(tensor):
    return None if tensor is None else tensor.clone()


# BCELoss and BCEWithLogitsLoss: weights (and pos_weight) of no tensor, one number (a 0-d tensor)
# or one per entry of the last dimension, broadcast over the others, as torch.
BCE_WEIGHTS = floats(0.25, 4.0)


@st.composite
def _bce_kwargs(draw, names):
    last = draw(sizes(1, 4))
    kw = {"reduction": draw(reductions())}
    for name in names:
        kw[name] = draw(st.none() | BCE_WEIGHTS | st.lists(BCE_WEIGHTS, min_size=last, max_size=last))
    return kw


def _bce_inputs(domain):
    def inputs(kw):
        lasts = {len(v) for v in kw.values() if isinstance(v, list)}
        if not lasts:
            return [Input(shapes(0, 3), domain)]
        last = lasts.pop()
        return [Input(shapes(0, 2).map(lambda s: (*s, last)), domain)]

    return inputs


# CrossEntropyLoss: positive class weights (torch accepts any sign, but weights that nearly cancel
# make a 'mean' denominator near 0), ignore_index off every class or on one of them.
CLASS_WEIGHTS = floats(0.25, 2.0)


@st.composite
def _cross_entropy_kwargs(draw):
    classes = draw(sizes(1, 5))
    ignore = [-100, -1, *(range(classes) if classes > 1 else [])]
    return {
        "reduction": draw(reductions()),
        "weight": draw(st.none() | st.lists(CLASS_WEIGHTS, min_size=classes, max_size=classes)),
        "ignore_index": draw(st.sampled_from(ignore)),
        "label_smoothing": draw(st.sampled_from([0.0, 1.0]) | floats(0.0, 1.0)),
    }


def _cross_entropy_inputs(kw):
    if kw["weight"] is not None:
        classes = st.just(len(kw["weight"]))
    else:  # a class index that is ignored needs another class beside it
        classes = sizes(max(2, kw["ignore_index"] + 1) if kw["ignore_index"] >= 0 else 1, 5)
    # (C) without a batch dimension, (N, C), (N, C, d1), (N, C, d1, d2).
    shape = classes.flatmap(
        lambda c: st.one_of(
            st.just((c,)), batched(c), batched(c, sizes(1, 4)), batched(c, sizes(1, 3), sizes(1, 3), batch=sizes(1, 2))
        )
    )
    return [Input(shape, REAL)]


def _cross_entropy_target(prediction, generator, kwargs):
    """Class probabilities for half the seeds (torch refuses them with ignore_index >= 0), class
    indices otherwise, about a third of them ``ignore_index`` (never the first, so that a 'mean'
    has a denominator)."""
    dim = 0 if prediction.dim() == 1 else 1
    classes, ignore = prediction.shape[dim], kwargs["ignore_index"]
    if ignore < 0 and bool(torch.rand((), generator=generator) < 0.5):
        t = torch.rand(prediction.shape, generator=generator, dtype=torch.float64) + 0.05
        return t / t.sum(dim, keepdim=True)
    positions = tuple(prediction.shape[:dim]) + tuple(prediction.shape[dim + 1 :])
    target = class_indices(dim)(prediction, generator)
    ignored = torch.rand(positions, generator=generator) < 1 / 3
    ignored.view(-1)[0] = False
    target = target.masked_fill(ignored, ignore)
    if int(target.view(-1)[0]) == ignore:
        target.view(-1)[0] = (ignore + 1) % classes
    return target


_cross_entropy_target.description = "probabilities or class indices, some ignored"


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
        _bce_kwargs(("weight",)),
        _bce_inputs(PROBABILITY),
        lambda m: torch.nn.BCELoss(weight=_copy(m.weight), reduction=m.reduction),
        target=values(UNIT),
        tensors=("weight",),
    ),
    Spec(
        fw.BCEWithLogitsLoss,
        _bce_kwargs(("weight", "pos_weight")),
        _bce_inputs(WIDE),
        lambda m: torch.nn.BCEWithLogitsLoss(
            weight=_copy(m.weight), reduction=m.reduction, pos_weight=_copy(m.pos_weight)
        ),
        target=values(UNIT),
        tensors=("weight", "pos_weight"),
    ),
    Spec(
        fw.CrossEntropyLoss,
        _cross_entropy_kwargs(),
        _cross_entropy_inputs,
        lambda m: torch.nn.CrossEntropyLoss(
            weight=None if m.weight is None else m.weight.clone(),
            ignore_index=m.ignore_index,
            reduction=m.reduction,
            label_smoothing=m.label_smoothing,
        ),
        target=_cross_entropy_target,
        tensors=("weight",),
    ),
]
