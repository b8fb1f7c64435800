"""Scaled dot-product attention written as a ``torch.autograd.Function``, backward by hand, and its spec.

Checked against ``torch.nn.functional.scaled_dot_product_attention`` in float64, float32 and
bfloat16, with and without the causal mask, and timed against it.
"""

import math

import torch
import torch.nn.functional as F

from verification import Input, Spec
from verification.strategies import booleans, sizes

HALF = (torch.float16, torch.bfloat16)


class Attention(torch.autograd.Function):
    r"""softmax(q k^T / sqrt(d) + mask) v over the last two dimensions.

    Shapes: q (..., L, d), k (..., S, d), v (..., S, dv) -> (..., L, dv). ``causal``: query i
    attends to keys j <= i (the top-left aligned mask of ``F.scaled_dot_product_attention``'s
    ``is_causal``; every query sees at least key 0).

    With P = softmax(scores) and dO = grad_output:

        dV = P^T dO
        dP = dO V^T
        dS = P * (dP - rowsum(dP * P))        (the softmax's backward, row by row)
        dQ = dS K / sqrt(d),   dK = dS^T Q / sqrt(d)

    Half-precision inputs are computed in float32 and rounded once. P (an intermediate) is
    saved for backward: correct at first order, not twice differentiable.
    """

    @staticmethod
    def forward(ctx, q, k, v, causal=False):
        compute = torch.float32 if q.dtype in HALF else q.dtype
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = (q.to(compute) @ k.to(compute).transpose(-2, -1)) * scale
        if causal:
            allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        ctx.save_for_backward(q, k, v, p)
        ctx.scale = scale
        return (p @ v.to(compute)).to(q.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        q, k, v, p = ctx.saved_tensors
        return (*attention_backward(q, k, v, p, grad_output, ctx.scale), None)


def attention_backward(q, k, v, p, grad_output, scale):
    """(dQ, dK, dV) from the saved attention weights P (in the compute dtype), rounded to the inputs' dtypes."""
    compute = p.dtype
    g = grad_output.to(compute)
    dv = p.transpose(-2, -1) @ g
    dp = g @ v.to(compute).transpose(-2, -1)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    dq = (ds @ k.to(compute)) * scale
    dk = (ds.transpose(-2, -1) @ q.to(compute)) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def attention_reference(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _qkv(kw):
    batch = (kw["batch"], kw["heads"])
    return [
        Input((*batch, kw["queries"], kw["dim"])),
        Input((*batch, kw["keys"], kw["dim"])),
        Input((*batch, kw["keys"], kw["value_dim"])),
        kw["causal"],
    ]


ATTENTION = Spec(
    Attention,
    kwargs={
        "batch": sizes(1, 2),
        "heads": sizes(1, 2),
        "queries": sizes(1, 6),
        "keys": sizes(1, 6),
        "dim": sizes(1, 8),
        "value_dim": sizes(1, 8),
        "causal": booleans(),
    },
    inputs=_qkv,
    reference=attention_reference,
    dtypes=(torch.float64, torch.float32, torch.bfloat16),
    benchmark={
        "small": {"batch": 1, "heads": 4, "queries": 128, "keys": 128, "dim": 64, "value_dim": 64, "causal": True},
        "medium": {"batch": 4, "heads": 8, "queries": 256, "keys": 256, "dim": 64, "value_dim": 64, "causal": True},
        "large": {"batch": 4, "heads": 8, "queries": 1024, "keys": 1024, "dim": 64, "value_dim": 64, "causal": True},
    },
)
