"""At a kink (ReLU at 0, tied maxima) no derivative exists: the verifier neither passes nor fails
a backward whose value lies between the one-sided derivatives (it says the point cannot be
judged and how to move off it), but still fails one outside them, and one wrong at a smooth point."""

import torch

import framework as fw
from verification import check_gradients

F64 = torch.float64


class ReLUWithGradientAtZero(torch.autograd.Function):
    """ReLU whose backward gives ``slope`` times the upstream gradient at x = 0."""

    slope = 0.0

    @classmethod
    def forward(cls, ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @classmethod
    def backward(cls, ctx, g):
        (x,) = ctx.saved_tensors
        derivative = (x > 0).to(g.dtype) + (x == 0).to(g.dtype) * cls.slope
        return g * derivative


def with_slope(slope: float) -> type:
    return type(f"ReLUSlope{slope}", (ReLUWithGradientAtZero,), {"slope": slope})


def test_relu_at_zero_is_inconclusive_naming_the_kink_and_never_passed():
    report = check_gradients(fw.ReLU(), torch.tensor([0.0, 1.0, -2.0, 0.0], dtype=F64))
    assert report.verdict == "inconclusive" and not report.ok
    note = report["finite_differences"].inconclusive
    assert "2 element(s) of input[0] sit on a kink" in note and "input[0][0]" in note


def test_any_convention_between_the_one_sided_derivatives_is_not_judged():
    for slope in (0.0, 0.5, 1.0):
        report = check_gradients(with_slope(slope), torch.tensor([0.0, 1.0, -2.0], dtype=F64))
        assert report["finite_differences"].status == "inconclusive", slope


def test_a_value_outside_the_one_sided_derivatives_fails_even_at_a_kink():
    report = check_gradients(with_slope(3.0), torch.tensor([0.0, 1.0, -2.0], dtype=F64))
    assert report["finite_differences"].status == "failed"
    assert "input[0][0]" in report["finite_differences"].detail


def test_tied_maxima_are_a_kink_in_small_and_in_probed_tensors():
    small = check_gradients(fw.MaxPool2d(2), torch.zeros(1, 1, 4, 4, dtype=F64))
    probed = check_gradients(fw.MaxPool2d(2), torch.zeros(2, 3, 8, 8, dtype=F64))  # 384 elements: probes
    assert small["finite_differences"].status == probed["finite_differences"].status == "inconclusive"


def test_a_wrong_gradient_at_a_smooth_point_of_a_probed_tensor_still_fails():
    class Doubles(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            return g * 2.0  # wrong everywhere: the slope is 0 or 1

    x = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert check_gradients(Doubles, x)["finite_differences"].status == "failed"
