"""Specs of framework/recurrent.py.

A case draws the layout (batched or not, batch_first), the sequence length and whether an
initial state is given. The adapters take the initial state as separate inputs (h_0, and c_0
for LSTM), so the verifier differentiates them like the sequence; the outputs stay torch's,
(output, h_n) or (output, (h_n, c_n)), each with its upstream gradient. The twins do the same
with ``torch.nn.LSTM`` and ``torch.nn.GRU``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

import framework as fw

from ..domains import REAL
from ..spec import Input, Spec
from ..strategies import booleans, sizes

SHAPE_KEYS = ("batch", "length", "initial_state")


@st.composite
def _lstm_kwargs(draw: Any) -> dict[str, Any]:
    kwargs = draw(_kwargs())
    # A projection h = W_hr (o * tanh(c)) needs proj_size < hidden_size.
    kwargs["proj_size"] = draw(st.sampled_from([0, 1])) if kwargs["hidden_size"] == 2 else 0
    return kwargs


@st.composite
def _kwargs(draw: Any) -> dict[str, Any]:
    # Two layers or two directions, not both: every layer-direction adds four parameter tensors
    # to the finite differences. Deep bidirectional networks (3 layers) are compared with torch
    # element by element in tests/framework/test_recurrent.py.
    layers, bidirectional = draw(st.sampled_from([(1, False), (1, True), (2, False)]))
    return {
        "input_size": draw(sizes(1, 2)),
        "hidden_size": draw(sizes(1, 2)),
        "num_layers": layers,
        "bias": draw(booleans()),
        "batch_first": draw(booleans()),
        "bidirectional": bidirectional,
        "batch": draw(st.none() | sizes(1, 2)),  # None: unbatched
        "length": draw(sizes(1, 3)),
        "initial_state": draw(booleans()),
    }


def _inputs(cell: bool):
    def inputs(kw: dict[str, Any]) -> list[Input]:
        n, length, width = kw["batch"], kw["length"], kw["input_size"]
        if n is None:
            x = (length, width)
        else:
            x = (n, length, width) if kw["batch_first"] else (length, n, width)
        states = kw["num_layers"] * (2 if kw["bidirectional"] else 1)
        sizes_ = [kw.get("proj_size") or kw["hidden_size"], kw["hidden_size"]]  # h_0's, c_0's
        shapes = [(states, size) if n is None else (states, n, size) for size in sizes_]
        if not kw["initial_state"]:
            return [Input(x, REAL)]
        return [Input(x, REAL), *(Input(shape, REAL) for shape in shapes[: 2 if cell else 1])]

    return inputs


class _StateAsInputs(fw.Module):
    """A recurrent network taking its initial state as separate tensor inputs."""

    abstract = True

    def __init__(self, **kwargs: Any) -> None:
        self.shape_options = {k: kwargs.pop(k) for k in SHAPE_KEYS}
        super().__init__(**kwargs)

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, Any]:
        hx = None if not state else (tuple(state) if self.has_cell else state[0])
        return super().forward(x, hx)

    def backward(self, grad_output: Tensor, grad_hidden: Any = None) -> Any:
        result = super().backward(grad_output, grad_hidden)
        if not self._saved_tensors()["given_hx"]:
            return result
        grad_x, grad_state = result  # one gradient per input: x, h_0 (and c_0)
        return (grad_x, *grad_state) if self.has_cell else (grad_x, grad_state)


class LSTMCase(_StateAsInputs, fw.LSTM):
    """LSTM with (h_0, c_0) as inputs 1 and 2."""


class GRUCase(_StateAsInputs, fw.GRU):
    """GRU with h_0 as input 1."""


@contextlib.contextmanager
def _native_kernels() -> Iterator[None]:
    """torch's own recurrent kernels rather than oneDNN's, which builds a primitive for every new
    shape (0.05 to 0.3 s each on this CPU build, against 1 ms for the computation): a run over
    many tiny drawn shapes would spend nearly all its time there. Same function, same autograd."""
    before = torch.backends.mkldnn.set_flags(False, None, None, None)
    try:
        yield
    finally:
        torch.backends.mkldnn.set_flags(before[0], None, None, None)


def _torch_case(base: type) -> type:
    class TorchCase(base):  # type: ignore[misc, valid-type]
        def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, Any]:  # type: ignore[override]
            hx = None if not state else (tuple(state) if len(state) == 2 else state[0])
            with _native_kernels():
                return super().forward(x, hx)

    TorchCase.__name__ = TorchCase.__qualname__ = f"Torch{base.__name__}Case"
    return TorchCase


TorchLSTMCase, TorchGRUCase = _torch_case(torch.nn.LSTM), _torch_case(torch.nn.GRU)


def _arguments(m: Any) -> dict[str, Any]:
    return {
        "input_size": m.input_size,
        "hidden_size": m.hidden_size,
        "num_layers": m.num_layers,
        "bias": m.bias,
        "batch_first": m.batch_first,
        "dropout": m.dropout,
        "bidirectional": m.bidirectional,
        **({"proj_size": m.proj_size} if m.proj_size else {}),
    }


# The specs verify adapters; the modules themselves have these twins (twin_of on any instance).
TWINS = {fw.LSTM: lambda m: torch.nn.LSTM(**_arguments(m)), fw.GRU: lambda m: torch.nn.GRU(**_arguments(m))}

# A small network per case (every layer, direction and time step): 20 cases in the ci profile, 100 in thorough.
SHARE = 0.4

SPECS = [
    Spec(
        LSTMCase,
        _lstm_kwargs(),
        _inputs(cell=True),
        lambda m: TorchLSTMCase(**_arguments(m)),
        name="LSTM",
        case_share=SHARE,
    ),
    Spec(
        GRUCase, _kwargs(), _inputs(cell=False), lambda m: TorchGRUCase(**_arguments(m)), name="GRU", case_share=SHARE
    ),
]
