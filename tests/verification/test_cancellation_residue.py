"""A correct backward whose gradient vanishes by cancellation passes: what it returns there is the
rounding of the terms it sums, not an error. A bias in front of a BatchNorm is the common case (the
normalisation removes any shift, so its gradient is a sum that cancels to zero in exact arithmetic)."""

import pytest
import torch
from torch.autograd import Function

from verification import check_gradients
from verification.composition import Stack
from verification.twins import twin_of


def batchnorm_stack(layers, in_features, seed):
    torch.manual_seed(seed)
    stack = Stack(in_features, layers).to(dtype=torch.float64)
    for _, p, _ in stack.named_param():
        p.copy_(torch.empty_like(p).uniform_(-1, 1))
    return stack


def test_the_linearity_check_allows_rounding_noise_in_a_gradient_that_vanishes_between_two_batchnorms():
    # BatchNorm1d -> Linear -> Linear -> BatchNorm1d on a batch of two: the middle bias gradient is
    # zero in exact arithmetic, pure rounding noise (a former false alarm of the linearity check).
    layers = [
        ["BatchNorm1d", {"num_features": 3}],
        ["Linear", {"in_features": 3, "out_features": 4, "bias": True}],
        ["Linear", {"in_features": 4, "out_features": 2, "bias": True}],
        ["BatchNorm1d", {"num_features": 2}],
    ]
    for seed in range(20):
        stack = batchnorm_stack(layers, 3, seed)
        x = torch.randn(2, 3, dtype=torch.float64)
        report = check_gradients(stack, x, reference=twin_of(stack), seed=seed)
        assert report["linearity"].ok, str(report)


ZEROED = {
    "feature 1": [[0.4, -0.3], [-0.9, -1.1]],
    "both features": [[-0.4, -0.3], [-0.9, -1.1]],
    "both features, three rows": [[-0.4, -0.3], [-0.9, -1.1], [-2.0, -1.0]],
}


@pytest.mark.parametrize("zeroed", ZEROED)
@pytest.mark.parametrize("seed", range(12))
def test_a_channel_a_relu_zeroes_passes_two_batchnorms(zeroed, seed):
    # A feature negative in every row: the ReLU zeroes it, the first BatchNorm outputs its bias in
    # every row, and the second divides a zero spread by sqrt(eps), 1/300: the first BatchNorm's
    # bias gradient is a sum of terms 300 times the upstream gradient, cancelling to rounding noise,
    # in the target and in the reference each its own (where one sums exactly, the other need not).
    layers = [["ReLU", {}], ["BatchNorm1d", {"num_features": 2}], ["BatchNorm1d", {"num_features": 2}]]
    stack = batchnorm_stack(layers, 2, seed)
    x = torch.tensor(ZEROED[zeroed], dtype=torch.float64)
    report = check_gradients(stack, x, reference=twin_of(stack), seed=seed)
    assert report.ok, str(report)


class ShiftThenCentre(Function):
    """y = 300 (z - mean(z)) + v with z = relu(x) + b: the centring removes b exactly, so dy/db = 0,
    which this backward computes as the sum of 300 (g_i - mean(g)). Whether that sum rounds to
    exactly zero hangs on g's values (two within a factor of two of each other sum exactly)."""

    @staticmethod
    def forward(ctx, x, b, v):
        ctx.save_for_backward(x)
        z = x.clamp(min=0) + b
        return 300.0 * (z - z.mean()) + v

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        g_z = 300.0 * (g - g.mean())
        return g_z * (x > 0), g_z.sum().reshape(1), g


def test_a_residue_that_hangs_on_the_upstream_gradient_passes_linearity_at_every_seed():
    # The linearity check's backward calls each have their own upstream gradient: one that sums
    # exactly says nothing of another's residue, so each call's noise is measured with its own.
    x = torch.full((2,), -0.7, dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.5, -1.2], dtype=torch.float64, requires_grad=True)
    failed = [seed for seed in range(30) if not check_gradients(ShiftThenCentre, x, b, v, seed=seed).ok]
    assert failed == []


THREE_BATCHNORMS = [["ReLU", {}], *[["BatchNorm1d", {"num_features": 2}]] * 3]


@pytest.mark.parametrize("seed", range(10))
def test_three_batchnorms_behind_a_dead_channel_pass(seed):
    # Every measurement of the residue's noise can sum exactly (two values within a factor of two
    # do, under any jitter and in float32 too) where the compared call does not: elements no output
    # changes with are left to finite differences, and the report says so.
    stack = batchnorm_stack(THREE_BATCHNORMS, 2, seed)
    x = torch.tensor(ZEROED["both features"], dtype=torch.float64)
    report = check_gradients(stack, x, reference=twin_of(stack), seed=seed)
    assert report.ok, str(report)
    assert any("left to finite_differences" in note for note in report.notes)


def test_a_wrong_gradient_where_no_output_changes_still_fails():
    # Left to finite differences is not left unjudged: a backward that puts 1e-9 into the bias in
    # front of the last BatchNorm (whose gradient is zero there) fails finite_differences.
    class WrongWhereInvariant(type(batchnorm_stack(THREE_BATCHNORMS, 2, 0))):
        def backward(self, grad_output):
            grad = super().backward(grad_output)
            for name, _, g in self.named_param():
                if name == "2.bias":
                    g.add_(1e-9)
            return grad

    stack = batchnorm_stack(THREE_BATCHNORMS, 2, 0)
    stack.__class__ = WrongWhereInvariant
    report = check_gradients(stack, torch.tensor(ZEROED["both features"], dtype=torch.float64), seed=0)
    assert report["finite_differences"].status == "failed", str(report)
    assert "2.bias" in report["finite_differences"].detail
