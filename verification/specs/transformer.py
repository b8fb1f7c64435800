"""Specs of framework/transformer.py: the encoder block checked whole against torch's.

Dropout is 0 (torch's twin cannot replay the framework's masks; the block's dropout paths are
checked against finite differences in tests/framework/test_transformer.py) and the block runs
without masks (MultiheadAttention's spec draws them).
"""

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import REAL
from ..spec import Input, Spec
from ..strategies import booleans, sizes


@st.composite
def _kwargs(draw):
    heads = draw(sizes(1, 2))
    # d_model >= 3: a LayerNorm over one value maps it to 0 whatever it is, and over two values
    # to +-d / sqrt(d^2 + eps), a step of width sqrt(eps) whose curvature defeats finite
    # differences when the two values are close (the LayerNorm spec covers both sizes alone).
    head_dim = draw(sizes(3, 4)) if heads == 1 else 2
    return {
        "d_model": heads * head_dim,
        "nhead": heads,
        "dim_feedforward": draw(sizes(1, 4)),
        "dropout": 0.0,
        "activation": draw(st.sampled_from(["relu", "gelu"])),
        "layer_norm_eps": draw(st.sampled_from([1e-5, 1e-3])),
        "batch_first": draw(booleans()),
        "norm_first": draw(booleans()),
        "bias": draw(booleans()),
    }


def _inputs(kw):
    d = kw["d_model"]
    unbatched = st.tuples(sizes(1, 3), st.just(d))
    batched = st.tuples(sizes(1, 3), sizes(1, 2), st.just(d))  # (N, L, d) or (L, N, d): both drawn
    return [Input(unbatched | batched, REAL)]


def _twin(m):
    return torch.nn.TransformerEncoderLayer(
        m.d_model,
        m.self_attn.num_heads,
        m.dim_feedforward,
        dropout=m.dropout.p,
        activation="relu" if isinstance(m.activation, fw.ReLU) else "gelu",
        layer_norm_eps=m.norm1.eps,
        batch_first=m.batch_first,
        norm_first=m.norm_first,
        bias=m.linear1.bias is not None,
    )


SPECS = [
    Spec(
        fw.TransformerEncoderLayer,
        _kwargs(),
        _inputs,
        _twin,
        case_share=0.4,  # a small network per case: 20 cases in the ci profile, 100 in thorough
        kinks="activation='relu': derivative 0 at 0, as torch (hidden values land there with probability ~0)",
    ),
]
