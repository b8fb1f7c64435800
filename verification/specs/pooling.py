"""Specs of framework/pooling.py: windows drawn with torch's constraints (padding at most half the kernel)."""

import math

import torch
from hypothesis import strategies as st

import framework as fw

from ..domains import DISTINCT, REAL
from ..spec import Input, Spec
from ..strategies import booleans


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _int_or_pair(low: int, high: int):
    one = st.integers(low, high)
    return one | st.tuples(one, one)


@st.composite
def _window(draw, dilation: bool):
    kernel = draw(_int_or_pair(1, 3))
    k = _pair(kernel)
    padding = draw(st.integers(0, min(k) // 2) | st.tuples(st.integers(0, k[0] // 2), st.integers(0, k[1] // 2)))
    kw = {"kernel_size": kernel, "stride": draw(st.none() | _int_or_pair(1, 3)), "padding": padding}
    if dilation:
        kw["dilation"] = draw(_int_or_pair(1, 2))
    kw["ceil_mode"] = draw(booleans())
    return kw


@st.composite
def _avg_kwargs(draw):
    kw = draw(_window(dilation=False))
    kw["count_include_pad"] = draw(booleans())
    kw["divisor_override"] = draw(st.none() | st.integers(1, 5))
    return kw


def _every_window_overlaps(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> bool:
    """No window made of padding only: its output would be -inf, and torch's backward for it writes
    out of bounds (memory corruption, seen with dilation 2, padding 1 and a side of 1)."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return all(any(0 <= o * s - p + i * d < n for i in range(k)) for o in range(out))


def _pool_inputs(domain):
    def inputs(kw):
        k, p, d = _pair(kw["kernel_size"]), _pair(kw["padding"]), _pair(kw.get("dilation", 1))
        s = k if kw["stride"] is None else _pair(kw["stride"])
        lows = [max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) for i in range(2)]
        sides = [
            st.integers(low, max(low, 5)).filter(
                lambda n, i=i: _every_window_overlaps(n, k[i], s[i], p[i], d[i], kw["ceil_mode"])
            )
            for i, low in enumerate(lows)
        ]
        batched = st.tuples(st.integers(1, 2), st.integers(1, 3), *sides)
        unbatched = st.tuples(st.integers(1, 3), *sides)
        return [Input(batched | unbatched, domain)]

    return inputs


# The interpolating modes (align_corners drawn) and the spatial rank each takes.
_LINEAR_RANK = {"linear": 1, "bilinear": 2, "trilinear": 3, "bicubic": 2}


@st.composite
def _upsample_kwargs(draw):
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "area"]))
    rank = _LINEAR_RANK.get(mode)
    one_factor = st.integers(1, 3) | st.sampled_from([0.5, 1.5, 2.5])
    choices = [one_factor.map(lambda s: {"scale_factor": s}), st.integers(1, 6).map(lambda n: {"size": n})]
    if rank in (None, 2):
        # A pair of factors fixes two spatial dimensions.
        choices.append(st.tuples(st.integers(1, 3), one_factor).map(lambda s: {"scale_factor": s}))
    kw = {**draw(st.one_of(choices)), "mode": mode}
    if rank is not None:
        kw["align_corners"] = draw(st.booleans())
    return kw


def _upsample_inputs(kw):
    if isinstance(kw.get("scale_factor"), (tuple, list)):
        rank = st.just(2)
    else:
        rank = st.just(_LINEAR_RANK[kw["mode"]]) if kw["mode"] in _LINEAR_RANK else st.integers(1, 3)
    # A factor below 1 needs a side of at least 1/factor for a non-empty output.
    factors = kw.get("scale_factor", 1)
    low = max(math.ceil(1 / f) for f in (factors if isinstance(factors, (tuple, list)) else [factors]))
    spatial = rank.flatmap(lambda r: st.tuples(*[st.integers(low, low + 3)] * r))
    return [Input(st.tuples(st.integers(1, 2), st.integers(1, 2), spatial).map(lambda s: (s[0], s[1], *s[2])), REAL)]


SPECS = [
    Spec(
        fw.MaxPool2d,
        _window(dilation=True),
        _pool_inputs(DISTINCT),
        lambda m: torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode),
        kinks="ties within a window: the whole gradient goes to the first maximum (row-major), as torch",
    ),
    Spec(
        fw.AvgPool2d,
        _avg_kwargs(),
        _pool_inputs(REAL),
        lambda m: torch.nn.AvgPool2d(
            m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
        ),
    ),
    Spec(
        fw.Upsample,
        _upsample_kwargs(),
        _upsample_inputs,
        lambda m: torch.nn.Upsample(
            size=m.size,
            scale_factor=m.scale_factor,
            mode=m.mode,
            align_corners=m.align_corners,
            recompute_scale_factor=m.recompute_scale_factor,
        ),
    ),
]
