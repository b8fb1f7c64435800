"""BCELoss's weight, BCEWithLogitsLoss's weight and pos_weight (broadcast as torch), and every loss
on an empty batch and on a single 0-d sample, against torch in float64."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import framework as fw

F64 = torch.float64
SHAPE = (3, 4)
# No weight, one number (0-d), one per entry of the last dimension, one per row (broadcast over
# columns), one per element.
WEIGHT_SHAPES = [None, (), (4,), (3, 1), (3, 4)]


def torch_loss_and_gradient(twin, prediction, target, grad_output):
    leaf = prediction.detach().clone().requires_grad_(True)
    loss = twin(leaf, target)
    (grad,) = torch.autograd.grad(loss, leaf, grad_output)
    return loss.detach(), grad


def positive(shape, seed):
    if shape is None:
        return None
    return 0.25 + 2 * torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def draw(shape, logits, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if logits:
        prediction = 8 * torch.rand(shape, generator=generator, dtype=F64) - 4
    else:
        prediction = 0.05 + 0.9 * torch.rand(shape, generator=generator, dtype=F64)
    return prediction, torch.rand(shape, generator=generator, dtype=F64)


def assert_matches(ours, theirs, prediction, target):
    loss = ours(prediction, target)
    g = torch.randn(loss.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    grad = ours.backward(g)
    loss_ref, grad_ref = torch_loss_and_gradient(theirs, prediction, target, g)
    assert loss.shape == loss_ref.shape and grad.shape == grad_ref.shape
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", WEIGHT_SHAPES, ids=str)
def test_bce_weight_matches_torch(weight, reduction):
    w = positive(weight, 1)
    prediction, target = draw(SHAPE, logits=False)
    assert_matches(fw.BCELoss(reduction, weight=w), torch.nn.BCELoss(weight=w, reduction=reduction), prediction, target)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("weight", "pos_weight"), list(itertools.product(WEIGHT_SHAPES, WEIGHT_SHAPES)), ids=str)
def test_bce_with_logits_weight_and_pos_weight_match_torch(weight, pos_weight, reduction):
    w, pw = positive(weight, 1), positive(pos_weight, 2)
    prediction, target = draw(SHAPE, logits=True)
    twin = torch.nn.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=pw)
    assert_matches(fw.BCEWithLogitsLoss(reduction, weight=w, pos_weight=pw), twin, prediction, target)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_bce_with_logits_pos_weight_of_huge_logits_is_finite_and_equals_torch(dtype):
    prediction = torch.tensor([-1000.0, 1000.0, -1000.0, 1000.0, 0.0], dtype=dtype)
    target = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5], dtype=dtype)
    pw = torch.tensor(3.0, dtype=dtype)
    ours = fw.BCEWithLogitsLoss("sum", pos_weight=pw)
    loss, grad = ours(prediction, target), ours.backward()
    twin = torch.nn.BCEWithLogitsLoss(reduction="sum", pos_weight=pw)
    loss_ref, grad_ref = torch_loss_and_gradient(twin, prediction, target, None)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(grad, grad_ref)


def test_weights_are_buffers_named_as_torchs_and_follow_to():
    w, pw = torch.ones(4), torch.full((4,), 2.0)
    ours = fw.BCEWithLogitsLoss(weight=w, pos_weight=pw)
    theirs = torch.nn.BCEWithLogitsLoss(weight=w, pos_weight=pw)
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    ours.to(dtype=F64)
    assert ours.weight.dtype == ours.pos_weight.dtype == F64
    assert fw.BCELoss().weight is None and fw.BCEWithLogitsLoss().pos_weight is None


@pytest.mark.parametrize(
    ("cls", "name"), [(fw.BCELoss, "weight"), (fw.BCEWithLogitsLoss, "weight"), (fw.BCEWithLogitsLoss, "pos_weight")]
)
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (4, 3)], ids=str)
def test_a_weight_that_does_not_broadcast_to_the_prediction_raises_as_torch(cls, name, shape):
    prediction, target = draw(SHAPE, logits=cls is fw.BCEWithLogitsLoss)
    weight = torch.ones(shape, dtype=F64)
    twin = getattr(torch.nn, cls.__name__)(**{name: weight})
    with pytest.raises(RuntimeError):
        twin(prediction, target)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected {name} broadcastable to the prediction's shape"):
        cls(**{name: weight})(prediction, target)


@pytest.mark.parametrize(
    ("cls", "name"), [(fw.BCELoss, "weight"), (fw.BCEWithLogitsLoss, "weight"), (fw.BCEWithLogitsLoss, "pos_weight")]
)
def test_a_weight_that_is_not_a_floating_tensor_raises(cls, name):
    with pytest.raises(TypeError, match=cls.__name__):
        cls(**{name: [1.0, 2.0]})
    with pytest.raises(TypeError, match=cls.__name__):
        cls(**{name: torch.ones(4, dtype=torch.int64)})
    prediction, target = draw(SHAPE, logits=True)
    with pytest.raises(TypeError, match=rf"{cls.__name__}: expected {name} of dtype torch\.float64"):
        cls(**{name: torch.ones(4)})(prediction.clamp(0.1, 0.9), target)


# -- an empty batch and a single 0-d sample, every loss ------------------------------------------------------
ELEMENTWISE = {
    "MSELoss": (fw.MSELoss, torch.nn.MSELoss, False),
    "L1Loss": (fw.L1Loss, torch.nn.L1Loss, False),
    "HuberLoss": (fw.HuberLoss, torch.nn.HuberLoss, False),
    "SmoothL1Loss": (fw.SmoothL1Loss, torch.nn.SmoothL1Loss, False),
    "BCELoss": (fw.BCELoss, torch.nn.BCELoss, False),
    "BCEWithLogitsLoss": (fw.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss, True),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(0,), (0, 4)], ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_an_empty_batch_gives_torchs_result(name, shape, reduction):
    ours, theirs, logits = ELEMENTWISE[name]
    prediction, target = draw(shape, logits)
    assert_matches(ours(reduction), theirs(reduction=reduction), prediction, target)
    if reduction == "mean":  # torch's mean of nothing is nan
        assert ours(reduction)(prediction, target).isnan()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_a_single_zero_dimensional_sample_gives_torchs_result(name, reduction):
    ours, theirs, logits = ELEMENTWISE[name]
    prediction, target = draw((), logits, seed=3)
    assert_matches(ours(reduction), theirs(reduction=reduction), prediction, target)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    ("make", "make_twin"),
    [
        pytest.param(lambda: fw.HuberLoss(delta=1e5), lambda: torch.nn.HuberLoss(delta=1e5), id="Huber-delta-1e5"),
        pytest.param(lambda: fw.SmoothL1Loss(beta=1e5), lambda: torch.nn.SmoothL1Loss(beta=1e5), id="SmoothL1-1e5"),
        pytest.param(lambda: fw.SmoothL1Loss(beta=1e-9), lambda: torch.nn.SmoothL1Loss(beta=1e-9), id="SmoothL1-1e-9"),
        pytest.param(lambda: fw.HuberLoss(delta=1e-9), lambda: torch.nn.HuberLoss(delta=1e-9), id="Huber-delta-1e-9"),
    ],
)
def test_half_precision_losses_with_a_constant_outside_the_dtypes_normal_range_are_accurate(make, make_twin, dtype):
    """beta = 1e-9 rounds to 0 in float16 (every SmoothL1 term was lost: loss 0 against the true 1.1),
    delta = 1e5 does not convert to float16 (a clamp refused it): the terms are taken in float32 and
    match the float64 twin's, rounded. (torch's float16 SmoothL1 with beta = 1e5 converts beta to
    float16, infinity, and gives a loss of 0.)"""
    generator = torch.Generator().manual_seed(3)
    prediction = torch.randn(6, 5, generator=generator).to(dtype)
    target = torch.randn(6, 5, generator=generator).to(dtype)
    loss_module = make()
    loss = loss_module(prediction, target)
    grad = loss_module.backward()
    expected_loss, expected_grad = torch_loss_and_gradient(
        make_twin(), prediction.double(), target.double(), torch.ones((), dtype=torch.float64)
    )
    expected_loss, expected_grad = expected_loss.to(dtype), expected_grad.to(dtype)
    info = torch.finfo(dtype)
    tolerance = {"rtol": 4 * info.eps, "atol": 4 * info.smallest_normal * info.eps}  # a few subnormal steps
    torch.testing.assert_close(loss, expected_loss, **tolerance)
    torch.testing.assert_close(grad, expected_grad, **tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("delta", [1.0, 0.5, 3.0, 0.1])
def test_huber_terms_are_torchs_to_the_bit(delta, dtype):
    """c (d - c/2) with c = clamp(d, -delta, delta) rounds as torch's 0.5 d^2 and delta (|d| - delta/2)."""
    generator = torch.Generator().manual_seed(5)
    prediction = (3 * torch.randn(20000, generator=generator)).to(dtype)
    target = torch.randn(20000, generator=generator).to(dtype)
    prediction[:6] = torch.tensor([math.inf, -math.inf, 5.0, -5.0, 0.0, math.nan], dtype=dtype)
    ours = fw.HuberLoss(reduction="none", delta=delta)(prediction, target)
    theirs = torch.nn.HuberLoss(reduction="none", delta=delta)(prediction, target)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True)
