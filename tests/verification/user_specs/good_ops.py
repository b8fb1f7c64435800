"""Correct ops declared the three ways a user can: a decorated Function, a decorated function, a Spec object."""

import torch

import verification
from verification import Input, Spec
from verification.domains import AWAY_FROM_ZERO
from verification.strategies import batched, sizes


@verification.spec(
    kwargs={"rows": sizes(1, 5), "features": sizes(1, 4)},
    inputs=lambda kw: [Input((kw["rows"], kw["features"]))],
    reference=lambda x: x**3,
    dtypes=(torch.float64, torch.float32, torch.bfloat16),
    benchmark={"small": {"rows": 16, "features": 64}},
)
class Cube(torch.autograd.Function):
    """y = x^3;   dy/dx = 3 x^2"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 3 * grad_output * x * x


@verification.spec(inputs=[Input((3, 4), AWAY_FROM_ZERO), 2.0], reference=lambda x, p: x.abs() ** p)
def power_of_abs(x, p):
    """|x|^p through autograd (a plain function is a target too)."""
    return x.abs() ** p


class Scale(torch.nn.Module):
    """y = x * weight (a torch.nn.Module: its parameter is checked too)."""

    def __init__(self, features):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(features))

    def forward(self, x):
        return x * self.weight


SCALE = Spec(
    Scale,
    kwargs={"features": sizes(1, 3)},
    inputs=lambda kw: [Input(batched(kw["features"]))],
    twin=lambda m: Scale(m.weight.shape[0]),
)
