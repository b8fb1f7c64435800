"""A fused LayerNorm written as a ``torch.autograd.Function``, with its backward by hand and its spec.

``python -m verification examples/layer_norm.py`` checks it over drawn cases in float64 (every
check), float32 and bfloat16 (against the float64 truth, with ``F.layer_norm`` in the same
precision as the bar); ``python -m benchmarks examples/layer_norm.py`` times it against
``F.layer_norm``; ``pytest examples/`` runs the same checks as test items.
"""

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import verification
from verification import Input
from verification.strategies import shapes, sizes

HALF = (torch.float16, torch.bfloat16)


def layer_norm_reference(x, weight, bias, eps):
    """The same function in plain torch ops: what the op is checked and timed against."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


@verification.spec(
    # At least 3 features: with 2, a row normalises to about (-1, 1) whatever x is, and the input
    # gradient is the rounding residue of nearly equal terms (in any implementation).
    kwargs={"rows": shapes(1, 2, max_side=4), "features": sizes(3, 16), "eps": st.sampled_from([1e-5, 1e-3])},
    inputs=lambda kw: [
        Input((*kw["rows"], kw["features"])),  # x: any leading dimensions, normalised over the last
        Input((kw["features"],)),  # weight
        Input((kw["features"],)),  # bias
        kw["eps"],  # passed through, never differentiated
    ],
    reference=layer_norm_reference,
    dtypes=(torch.float64, torch.float32, torch.bfloat16),
    benchmark={
        "small": {"rows": (64,), "features": 256, "eps": 1e-5},
        "medium": {"rows": (1024,), "features": 1024, "eps": 1e-5},
        "large": {"rows": (8192,), "features": 2048, "eps": 1e-5},
    },
)
class FusedLayerNorm(torch.autograd.Function):
    r"""Layer normalisation over the last dimension, with an elementwise weight and bias.

    y = (x - mean) rstd * weight + bias,   rstd = 1 / sqrt(var + eps)   (var: the biased variance)

    With xhat = (x - mean) rstd and gy = grad_output * weight, over the D features of a row:

        dL/dx      = rstd (gy - mean(gy) - xhat mean(gy xhat))
        dL/dweight = sum over rows of grad_output * xhat
        dL/dbias   = sum over rows of grad_output

    Half-precision inputs (float16, bfloat16) are computed in float32 and rounded once, as real
    kernels do. It saves the mean and rstd of forward (intermediates) for backward: correct at
    first order, not twice differentiable (``order=2`` would say so).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        compute = torch.float32 if x.dtype in HALF else x.dtype
        xc = x.to(compute)
        mean = xc.mean(-1, keepdim=True)
        centered = xc - mean
        rstd = torch.rsqrt((centered * centered).mean(-1, keepdim=True) + eps)
        y = centered * rstd * weight.to(compute) + bias.to(compute)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, mean, rstd = ctx.saved_tensors
        g = grad_output.to(rstd.dtype)
        xhat = (x.to(rstd.dtype) - mean) * rstd
        gy = g * weight.to(rstd.dtype)
        dx = rstd * (gy - gy.mean(-1, keepdim=True) - xhat * (gy * xhat).mean(-1, keepdim=True))
        rows = tuple(range(x.dim() - 1))
        dweight = (g * xhat).sum(rows)
        dbias = g.sum(rows)
        return dx.to(x.dtype), dweight.to(weight.dtype), dbias.to(weight.dtype), None


def fused_layer_norm(x, weight, bias, eps=1e-5):
    return FusedLayerNorm.apply(x, weight, bias, eps)
