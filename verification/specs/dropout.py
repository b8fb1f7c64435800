"""Specs of framework/dropout.py."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..spec import Built, Input, Spec
from ..strategies import floats, shapes


def _dropout_semantics(built: Built) -> None:
    """Evaluation mode and p = 0 are the identity, p = 1 zeroes; otherwise every entry is either
    dropped or scaled by 1/(1-p), and backward applies the same mask."""
    m, (x,) = built.module, built.inputs
    y = m(x)
    g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(built.generator_seed)).to(y.device)
    dx = m.backward(g)
    if not m.training or m.p == 0.0:
        assert torch.equal(y, x) and torch.equal(dx, g), f"p={m.p}, training={m.training}: not the identity"
        return
    if m.p == 1.0:
        assert not y.any() and not dx.any(), "p=1: output or gradient not all zeros"
        return
    scale = torch.tensor(1.0 / (1.0 - m.p), dtype=x.dtype, device=x.device)
    kept = y != 0
    assert torch.equal(y[kept], x[kept] * scale), f"p={m.p}: kept values not scaled by exactly 1/(1-p)"
    assert torch.equal(dx, torch.where(kept, g * scale, torch.zeros_like(g))), f"p={m.p}: backward mask differs"


SPECS = [
    Spec(
        fw.Dropout,
        {"p": st.sampled_from([0.0, 0.5, 1.0]) | floats(0.0, 0.95)},
        lambda kw: [Input(shapes(1, 3))],
        # No twin: torch.nn.Dropout draws its mask from torch's global stream, which cannot
        # replay ours, so outputs cannot be compared element by element. The gradients are
        # checked against finite differences with the mask fixed (random=True re-seeds the
        # generator); the forward semantics are checked by _dropout_semantics here and in
        # tests/framework/test_dropout.py (kept fraction, scaling, seeds).
        twin=None,
        modes=("train", "eval"),
        random=True,
        semantics=_dropout_semantics,
    ),
]
