"""Specs of framework/dropout.py."""

from hypothesis import strategies as st

import framework as fw

from ..spec import Input, Spec
from ..strategies import floats, shapes

SPECS = [
    Spec(
        fw.Dropout,
        {"p": st.sampled_from([0.0, 0.5, 1.0]) | floats(0.0, 0.95)},
        lambda kw: [Input(shapes(1, 3))],
        # No twin: torch.nn.Dropout draws its mask from torch's global stream, which cannot
        # replay ours, so outputs cannot be compared element by element. The gradients are
        # checked against finite differences with the mask fixed (random=True re-seeds the
        # generator); the forward semantics (kept fraction, 1/(1-p) scaling, eval identity)
        # are tested in tests/framework/test_dropout.py.
        twin=None,
        modes=("train", "eval"),
        random=True,
    ),
]
