"""Specs of framework/conv.py: geometry drawn together so groups divide channels and inputs fit the kernel."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..spec import Input, Spec
from ..strategies import booleans


def _int_or_pair(low: int, high: int):
    one = st.integers(low, high)
    return one | st.tuples(one, one)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


@st.composite
def _conv_kwargs(draw, spatial: int):
    groups = draw(st.integers(1, 2))
    ints = st.integers
    kernel = draw(ints(1, 3) if spatial == 1 else _int_or_pair(1, 3))
    stride = draw(ints(1, 3) if spatial == 1 else _int_or_pair(1, 3))
    dilation = draw(ints(1, 2) if spatial == 1 else _int_or_pair(1, 2))
    paddings = ints(0, 2) if spatial == 1 else _int_or_pair(0, 2)
    if stride in (1, (1, 1)):
        paddings = paddings | st.sampled_from(["same", "valid"])
    return {
        "in_channels": groups * draw(ints(1, 2)),
        "out_channels": groups * draw(ints(1, 2)),
        "kernel_size": kernel,
        "stride": stride,
        "padding": draw(paddings),
        "dilation": dilation,
        "groups": groups,
        "bias": draw(booleans()),
        "padding_mode": draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
    }


def _conv_side(kernel: int, dilation: int, padding, mode: str) -> st.SearchStrategy[int]:
    # At least the dilated kernel after padding, and small: finite differences stay cheap.
    # Reflect padding needs more input than padding on each side, circular at least as much.
    pad = {"valid": 0, "same": dilation * (kernel - 1) - dilation * (kernel - 1) // 2}.get(padding, padding)
    low = max(1, dilation * (kernel - 1) + 1 - (0 if isinstance(padding, str) else 2 * pad))
    low = max(low, pad + 1 if mode == "reflect" else pad if mode == "circular" else 1)
    return st.integers(low, max(low, 5))


def _conv_inputs(kw, spatial: int):
    kernel, dilation = _pair(kw["kernel_size"]), _pair(kw["dilation"])
    padding = kw["padding"] if isinstance(kw["padding"], str) else _pair(kw["padding"])
    sides = [
        _conv_side(kernel[i], dilation[i], padding if isinstance(padding, str) else padding[i], kw["padding_mode"])
        for i in range(2)
    ]
    shape = st.tuples(st.integers(1, 2), st.just(kw["in_channels"]), *sides[2 - spatial :])
    return [Input(shape | _unbatched(shape))]


def _unbatched(batched: st.SearchStrategy[tuple[int, ...]]) -> st.SearchStrategy[tuple[int, ...]]:
    """One sample without its batch dimension, (C, L) or (C, H, W), as torch takes it."""
    return batched.map(lambda shape: shape[1:])


@st.composite
def _transposed_kwargs(draw):
    kw = draw(_conv_kwargs(2).filter(lambda kw: not isinstance(kw["padding"], str)))
    del kw["padding_mode"]  # zeros only for a transposed convolution, as torch
    stride, dilation = _pair(kw["stride"]), _pair(kw["dilation"])
    # torch's rule: each output_padding below the stride or the dilation.
    kw["output_padding"] = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return kw


def _transposed_inputs(kw):
    kernel, stride, dilation = _pair(kw["kernel_size"]), _pair(kw["stride"]), _pair(kw["dilation"])
    padding, output_padding = _pair(kw["padding"]), kw["output_padding"]

    def low(i: int) -> int:
        # Smallest input side whose output side is positive.
        side = 1
        while (side - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + output_padding[i] - 2 * padding[i] < 1:
            side += 1
        return side

    sides = [st.integers(low(i), low(i) + 1) for i in range(2)]
    shape = st.tuples(st.integers(1, 2), st.just(kw["in_channels"]), *sides)
    return [Input(shape | _unbatched(shape))]


def _conv_twin(cls):
    return lambda m: cls(
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.dilation,
        m.groups,
        bias=m.bias is not None,
        padding_mode=m.padding_mode,
    )


SPECS = [
    Spec(fw.Conv1d, _conv_kwargs(1), lambda kw: _conv_inputs(kw, 1), _conv_twin(torch.nn.Conv1d)),
    Spec(fw.Conv2d, _conv_kwargs(2), lambda kw: _conv_inputs(kw, 2), _conv_twin(torch.nn.Conv2d)),
    Spec(
        fw.ConvTranspose2d,
        _transposed_kwargs(),
        _transposed_inputs,
        lambda m: torch.nn.ConvTranspose2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.output_padding,
            m.groups,
            m.bias is not None,
            m.dilation,
        ),
    ),
]
