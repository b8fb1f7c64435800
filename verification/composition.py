"""Random ``Sequential`` stacks of registered modules against the twin stack (check 7).

A stack is drawn as data (layer names and arguments), so a failing stack shrinks to the
shortest one and replays from JSON like any other case. Every check of a single module
applies to the whole stack, parameter gradients of every layer included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import framework as fw

from .domains import REAL
from .spec import Input, Spec
from .strategies import batched, sizes
from .twins import twin_of


def _default_constructible(cls: type) -> bool:
    try:
        cls()
    except TypeError:
        return False
    return True


# Layers that map (N, F) to (N, F') and have a torch twin; activations are taken from the
# registry (those with defaults for every argument, e.g. not Threshold).
_ACTIVATIONS = sorted(
    cls.__name__ for cls in fw.modules() if issubclass(cls, fw.Elementwise) and _default_constructible(cls)
)


@st.composite
def _layers(draw: Any) -> dict[str, Any]:
    width = draw(sizes(1, 5))
    first = width
    layers: list[list[Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["Linear", "Linear", "activation", "BatchNorm1d"]))
        if kind == "Linear":
            out = draw(sizes(1, 5))
            layers.append(["Linear", {"in_features": width, "out_features": out, "bias": draw(st.booleans())}])
            width = out
        elif kind == "BatchNorm1d":
            layers.append(["BatchNorm1d", {"num_features": width}])
        else:
            layers.append([draw(st.sampled_from(_ACTIVATIONS)), {}])
    return {"in_features": first, "layers": layers}


class Stack(fw.Sequential):
    """A ``Sequential`` built from ``[name, kwargs]`` pairs of registered modules."""

    def __init__(self, in_features: int, layers: list[list[Any]]) -> None:
        classes = {cls.__name__: cls for cls in fw.modules()}
        super().__init__(*(classes[name](**kwargs) for name, kwargs in layers))
        self.in_features = in_features


def _twin(module: Stack) -> Any:
    return twin_of(module, copy=False)


STACK_SPEC = Spec(
    Stack,
    kwargs=_layers(),
    # Batches of at least 2, so BatchNorm1d layers have batch statistics.
    inputs=lambda kw: [Input(batched(kw["in_features"], batch=sizes(2, 5)), REAL)],
    twin=_twin,
    name="Sequential stacks",
)
