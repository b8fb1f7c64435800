"""Targets that misbehave: each must be reported as its own failure, and the run must go on."""

import time

import torch

from verification import Input, Spec


class WrongCube(torch.autograd.Function):
    """y = x^3 with the derivative 3 x (a wrong gradient)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 3 * grad_output * x


def raises(x):
    raise RuntimeError("CUDA kernel launch failed (planted)")


def returns_garbage(x):
    return "not a tensor"


def hangs(x):
    while True:
        time.sleep(0.01)


WRONG = Spec(WrongCube, inputs=[Input((2, 3))], reference=lambda x: x**3)
RAISES = Spec(raises, inputs=[Input((2, 3))])
GARBAGE = Spec(returns_garbage, inputs=[Input((2, 3))])
HANGS = Spec(hangs, inputs=[Input((2, 3))], time_limit=2.0)
