"""Specs of framework/shape.py."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..spec import Input, Spec
from ..strategies import shapes

# (start_dim, end_dim) pairs: defaults, negative indices, a single dimension, the whole tensor.
_DIM_PAIRS = [(1, -1), (0, -1), (0, 1), (1, 2), (-2, -1), (2, 3), (0, 0), (-3, -2)]


def _valid(start: int, end: int, rank: int) -> bool:
    if not (-rank <= start < rank and -rank <= end < rank):
        return False
    return start % rank <= end % rank


def _inputs(kw):
    start, end = kw["start_dim"], kw["end_dim"]
    shape = shapes(1, 4, max_side=4).filter(lambda s: _valid(start, end, len(s)))
    return [Input(shape)]


SPECS = [
    Spec(
        fw.Flatten,
        st.sampled_from(_DIM_PAIRS).map(lambda p: {"start_dim": p[0], "end_dim": p[1]}),
        _inputs,
        lambda m: torch.nn.Flatten(m.start_dim, m.end_dim),
    ),
]
