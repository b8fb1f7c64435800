"""Specs of framework/attention.py.

MultiheadAttention has three inputs, masks and two outputs. A case draws the masks as data
(nested lists, so it replays from JSON) with the constructor arguments; :class:`AttentionCase`
passes them to every forward, and its twin does the same with ``torch.nn.MultiheadAttention``.
The verifier checks both outputs, (output, weights), with one upstream gradient each (weights
``None`` with ``need_weights=False``). Key 0 is never masked, so no query loses every key
(torch and the framework give NaN there).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

import framework as fw

from ..domains import REAL
from ..spec import Input, Spec
from ..strategies import booleans, sizes

FORWARD_OPTIONS = ("key_padding_mask", "attn_mask", "need_weights", "average_attn_weights")
MASK_VALUES = st.sampled_from([0.0, -1.5, 0.5, 2.0, -float("inf")])


def _masks(draw: Any, shape: tuple[int, ...], kind: str) -> list | None:
    """A mask of ``shape`` whose last-axis entry 0 is never masked (None: no mask)."""
    if not draw(booleans()):
        return None
    flat_size = math.prod(shape)
    values = booleans() if kind == "bool" else MASK_VALUES
    flat = draw(st.lists(values, min_size=flat_size, max_size=flat_size))
    keep = False if kind == "bool" else 0.0
    flat = [keep if i % shape[-1] == 0 else value for i, value in enumerate(flat)]
    return torch.tensor(flat, dtype=torch.bool if kind == "bool" else torch.float64).reshape(shape).tolist()


@st.composite
def _kwargs(draw: Any) -> dict[str, Any]:
    heads, head_dim = draw(sizes(1, 2)), draw(sizes(1, 3))
    batch = draw(st.none() | sizes(1, 2))  # None: unbatched inputs
    length, source = draw(sizes(1, 3)), draw(sizes(1, 3))
    kind = draw(st.sampled_from(["bool", "float"]))
    n = 1 if batch is None else batch
    padding_shape = (source,) if batch is None else (n, source)
    attention_shape = draw(st.sampled_from([(length, source), (n * heads, length, source)]))
    if batch is None and len(attention_shape) == 3:
        attention_shape = (heads, length, source)
    return {
        "embed_dim": heads * head_dim,
        "num_heads": heads,
        "bias": draw(booleans()),
        "add_bias_kv": draw(booleans()),
        "add_zero_attn": draw(booleans()),
        "kdim": draw(st.none() | sizes(1, 3)),
        "vdim": draw(st.none() | sizes(1, 3)),
        "batch_first": draw(booleans()),
        "batch": batch,
        "length": length,
        "source": source,
        "key_padding_mask": _masks(draw, padding_shape, kind),
        "attn_mask": _masks(draw, attention_shape, kind),
        "need_weights": draw(booleans()),
        "average_attn_weights": draw(booleans()),
    }


def _shape(kw: dict[str, Any], length: int, width: int) -> tuple[int, ...]:
    if kw["batch"] is None:
        return (length, width)
    return (kw["batch"], length, width) if kw["batch_first"] else (length, kw["batch"], width)


def _inputs(kw: dict[str, Any]) -> list[Input]:
    e = kw["embed_dim"]
    return [
        Input(_shape(kw, kw["length"], e), REAL),
        Input(_shape(kw, kw["source"], kw["kdim"] or e), REAL),
        Input(_shape(kw, kw["source"], kw["vdim"] or e), REAL),
    ]


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(constructor arguments, forward options) of a case; the shape entries are the inputs'."""
    options = {k: kwargs[k] for k in FORWARD_OPTIONS}
    constructor = {k: v for k, v in kwargs.items() if k not in (*FORWARD_OPTIONS, "batch", "length", "source")}
    return constructor, options


def _forward_options(options: dict[str, Any], like: Tensor) -> dict[str, Any]:
    """The drawn masks as tensors on the query's device (float masks in its dtype)."""
    result = dict(options)
    for name in ("key_padding_mask", "attn_mask"):
        mask = options[name]
        if mask is not None:
            mask = torch.tensor(mask)
            result[name] = mask.to(like.device) if mask.dtype == torch.bool else mask.to(like.device, like.dtype)
    return result


class AttentionCase(fw.MultiheadAttention):
    """MultiheadAttention with a case's masks and options (backward as the module's)."""

    def __init__(self, **kwargs: Any) -> None:
        constructor, self.options = _split_kwargs(kwargs)
        super().__init__(**constructor)
        self._masks: dict[tuple[torch.device, torch.dtype], dict[str, Any]] = {}

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor | None]:
        # The masks are made once per device and dtype: copying them to a GPU on every call would be
        # a host-to-device copy inside the forward, which the no-sync and graph tests refuse.
        where = (query.device, query.dtype)
        if where not in self._masks:
            self._masks[where] = _forward_options(self.options, query)
        return super().forward(query, key, value, **self._masks[where])


class TorchAttentionCase(torch.nn.MultiheadAttention):
    """The twin: torch.nn.MultiheadAttention with the same masks and options."""

    def __init__(self, options: dict[str, Any], **constructor: Any) -> None:
        super().__init__(**constructor)
        self.options = options

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor | None]:  # type: ignore[override]
        return super().forward(query, key, value, **_forward_options(self.options, query))


def _twin(m: AttentionCase) -> torch.nn.Module:
    return TorchAttentionCase(
        m.options,
        embed_dim=m.embed_dim,
        num_heads=m.num_heads,
        dropout=m.dropout,
        bias=m.in_proj_bias is not None,
        add_bias_kv=m.bias_k is not None,
        add_zero_attn=m.add_zero_attn,
        kdim=m.kdim,
        vdim=m.vdim,
        batch_first=m.batch_first,
    )


def _plain_twin(m: fw.MultiheadAttention) -> torch.nn.Module:
    return torch.nn.MultiheadAttention(
        m.embed_dim,
        m.num_heads,
        dropout=m.dropout,
        bias=m.in_proj_bias is not None,
        add_bias_kv=m.bias_k is not None,
        add_zero_attn=m.add_zero_attn,
        kdim=m.kdim,
        vdim=m.vdim,
        batch_first=m.batch_first,
    )


# The spec verifies an adapter; the module itself has this twin (twin_of on any instance).
TWINS = {fw.MultiheadAttention: _plain_twin}

SPECS = [
    Spec(
        AttentionCase,
        _kwargs(),
        _inputs,
        _twin,
        name="MultiheadAttention",
        case_share=0.4,  # a small network per case: 20 cases in the ci profile, 100 in thorough
        kinks="a query whose every key is masked has NaN weights (as torch): key 0 is never masked",
    ),
]
