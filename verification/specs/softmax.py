"""Specs of framework/softmax.py: any dim of any rank, logits far from zero."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import LOGITS
from ..spec import Input, Spec
from ..strategies import shapes

DIMS = st.sampled_from([-1, 0, 1, -2, 2])


def _inputs(kw):
    d = kw["dim"]
    return [Input(shapes(d + 1 if d >= 0 else -d, 3), LOGITS)]


SPECS = [
    Spec(fw.Softmax, {"dim": DIMS}, _inputs, lambda m: torch.nn.Softmax(m.dim)),
    Spec(fw.LogSoftmax, {"dim": DIMS}, _inputs, lambda m: torch.nn.LogSoftmax(m.dim)),
]
