"""Specs of framework/embedding.py: few rows and several indices, so rows repeat."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import indices
from ..spec import Input, Spec
from ..strategies import shapes, sizes


@st.composite
def _kwargs(draw):
    rows = draw(sizes(1, 5))
    padding = draw(st.none() | st.integers(-rows, rows - 1)) if rows > 1 else None
    return {
        "num_embeddings": rows,
        "embedding_dim": draw(sizes(1, 4)),
        "padding_idx": padding,
        # scale_grad_by_freq divides by the count: a convention, not the derivative finite
        # differences see; tests/framework/test_embedding.py pins it to torch exactly.
        "scale_grad_by_freq": False,
    }


def _inputs(kw):
    padding = kw["padding_idx"]
    avoid = None if padding is None else padding % kw["num_embeddings"]
    return [Input(shapes(0, 2, max_side=4), indices(kw["num_embeddings"], avoid))]


def _twin(m):
    return torch.nn.Embedding(
        m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx, scale_grad_by_freq=m.scale_grad_by_freq
    )


SPECS = [
    Spec(
        fw.Embedding,
        _kwargs(),
        _inputs,
        _twin,
        kinks="the padding_idx row's gradient is 0 and scale_grad_by_freq divides by counts: conventions, not "
        "derivatives (the forward reads the row), so drawn indices avoid the padding row, scale_grad_by_freq "
        "is off, and tests/framework/test_embedding.py pins both to torch exactly",
    ),
]
