"""Specs of framework/linear.py."""

import torch

import framework as fw

from ..spec import Input, Spec
from ..strategies import batched, booleans, sizes

SPECS = [
    Spec(
        fw.Linear,
        kwargs={"in_features": sizes(1, 6), "out_features": sizes(1, 6), "bias": booleans()},
        inputs=lambda kw: [Input(batched(kw["in_features"]))],
        twin=lambda m: torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    ),
]
