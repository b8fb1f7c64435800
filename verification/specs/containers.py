"""Specs of framework/containers.py: a small stack (random stacks are check 7's)."""

from hypothesis import strategies as st

import framework as fw

from ..spec import Input, Spec
from ..strategies import batched, sizes
from ..twins import twin_of


def _mlp(width: int, depth: int) -> fw.Sequential:
    layers: list[fw.Module] = []
    for _ in range(depth):
        layers += [fw.Linear(width, width), fw.Tanh()]
    return fw.Sequential(*layers)


class _MLP(fw.Sequential):
    """Sequential built from (width, depth), so cases are plain data."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__(*_mlp(width, depth))
        self.width, self.depth = width, depth


def _twin(m):
    return twin_of(m, copy=False)  # containers are twinned child by child


SPECS = [
    Spec(
        _MLP,
        {"width": sizes(1, 5), "depth": st.integers(1, 3)},
        lambda kw: [Input(batched(kw["width"]))],
        _twin,
        name="Sequential",
    ),
]
