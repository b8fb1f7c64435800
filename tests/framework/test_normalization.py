"""LayerNorm, GroupNorm and RMSNorm against their torch.nn twins: outputs, gradients, bad inputs."""

import pytest
import torch

import framework as fw
from framework import _blocks
from verification.twins import copy_state


@pytest.fixture(autouse=True, params=["two-pass", "one-pass"])
def moments(request, monkeypatch):
    """Every test runs with LayerNorm and GroupNorm's mean and variance in two passes (the CPU's way) and in one
    torch.var_mean pass (a GPU's way)."""
    monkeypatch.setattr(_blocks, "one_pass_moments", lambda x: request.param == "one-pass")
    return request.param


TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def pair(ours, theirs, dtype):
    gen = torch.Generator().manual_seed(0)
    for _, p, _ in ours.named_param():
        p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-1, 1, generator=gen))
    ours.to(dtype=dtype)
    copy_state(ours, theirs)
    return ours, theirs


def assert_matches_torch(ours, theirs, x):
    """Forward, input gradient and every parameter gradient equal the twin's."""
    leaf = x.clone().requires_grad_(True)
    expected = theirs(leaf)
    g = torch.randn_like(expected)
    expected.backward(g)
    y = ours(x)
    tolerance = TOLERANCE[x.dtype]
    torch.testing.assert_close(y, expected.detach(), rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(ours.backward(g), leaf.grad, rtol=tolerance, atol=tolerance)
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(ours.grad(name), p.grad, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    ("normalized_shape", "shape"),
    [(5, (5,)), (5, (3, 5)), ((4, 5), (2, 3, 4, 5)), ([2, 3, 4], (2, 2, 3, 4)), (torch.Size([3]), (2, 1, 3))],
    ids=str,
)
@pytest.mark.parametrize(
    "kwargs", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 0.1}, {"eps": 0.0}], ids=str
)
def test_layer_norm_matches_torch(normalized_shape, shape, kwargs, dtype):
    torch.manual_seed(0)
    ours, theirs = pair(fw.LayerNorm(normalized_shape, **kwargs), torch.nn.LayerNorm(normalized_shape, **kwargs), dtype)
    assert_matches_torch(ours, theirs.to(dtype), torch.randn(shape, dtype=dtype) * 2 + 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("shape", [(4, 6), (2, 6, 5), (1, 6, 2, 2, 2)], ids=str)
@pytest.mark.parametrize("groups", [1, 3, 6])
@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"bias": False, "eps": 0.1}], ids=str)
def test_group_norm_matches_torch(groups, shape, kwargs, dtype):
    torch.manual_seed(1)
    ours, theirs = pair(fw.GroupNorm(groups, 6, **kwargs), torch.nn.GroupNorm(groups, 6, **kwargs), dtype)
    assert_matches_torch(ours, theirs.to(dtype), torch.randn(shape, dtype=dtype) * 2 - 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("normalized_shape", "shape"), [(5, (5,)), (5, (3, 5)), ((4, 5), (2, 3, 4, 5))], ids=str)
@pytest.mark.parametrize("kwargs", [{}, {"elementwise_affine": False}, {"eps": 1e-3}, {"eps": None}], ids=str)
def test_rms_norm_matches_torch(normalized_shape, shape, kwargs, dtype):
    torch.manual_seed(2)
    ours, theirs = pair(fw.RMSNorm(normalized_shape, **kwargs), torch.nn.RMSNorm(normalized_shape, **kwargs), dtype)
    assert_matches_torch(ours, theirs.to(dtype), torch.randn(shape, dtype=dtype))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (fw.LayerNorm((2, 3)), torch.nn.LayerNorm((2, 3))),
        (fw.LayerNorm(3, bias=False), torch.nn.LayerNorm(3, bias=False)),
        (fw.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)),
        (fw.GroupNorm(2, 4, affine=False), torch.nn.GroupNorm(2, 4, affine=False)),
        (fw.RMSNorm(3), torch.nn.RMSNorm(3)),
        (fw.RMSNorm(3, elementwise_affine=False), torch.nn.RMSNorm(3, elementwise_affine=False)),
    ],
    ids=repr,
)
def test_parameters_have_torch_names_shapes_and_defaults(ours, theirs):
    assert [(n, p.shape) for n, p, _ in ours.named_param()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    for name, p in theirs.named_parameters():
        assert torch.equal(getattr(ours, name), p.detach())


def test_rms_norm_default_eps_is_the_input_dtypes_machine_epsilon():
    x = torch.full((1, 2), 1e-5, dtype=torch.float64)
    ours, theirs = fw.RMSNorm(2).to(dtype=torch.float64), torch.nn.RMSNorm(2).double()
    torch.testing.assert_close(ours(x), theirs(x).detach(), rtol=1e-14, atol=0)
    assert ours.eps is None


def test_the_mean_does_not_cancel_in_float32():
    """Centred before the variance: a large common offset keeps float32 accurate."""
    torch.manual_seed(3)
    x = 1000 + torch.randn(4, 16)
    exact = torch.nn.LayerNorm(16).double()(x.double()).detach()
    assert (fw.LayerNorm(16)(x).double() - exact).abs().max() < 1e-3


@pytest.mark.parametrize(
    ("module", "shape", "match"),
    [
        (fw.LayerNorm((3, 2)), (2, 3), r"LayerNorm: expected input of shape \(\*, 3, 2\)"),
        (fw.LayerNorm(4), (4, 3), r"normalized_shape=\[4\]"),
        (fw.RMSNorm(4), (2,), r"RMSNorm: expected input of shape \(\*, 4\)"),
        (fw.GroupNorm(2, 4), (4,), r"GroupNorm: expected input of shape \(N, C, \*\)"),
        (fw.GroupNorm(2, 4), (2, 3, 5), "GroupNorm: expected input with num_channels = 4"),
        (fw.GroupNorm(2, 2), (1, 2), "GroupNorm: expected more than 1 value per group"),
    ],
)
def test_wrong_input_shapes_are_rejected(module, shape, match):
    with pytest.raises(ValueError, match=match):
        module(torch.zeros(shape))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: fw.LayerNorm(0), ValueError, "LayerNorm: expected normalized_shape >= 1"),
        (lambda: fw.LayerNorm([]), TypeError, "LayerNorm: expected normalized_shape"),
        (lambda: fw.LayerNorm(3, eps=-1.0), ValueError, "LayerNorm: expected eps"),
        (lambda: fw.GroupNorm(3, 4), ValueError, "GroupNorm: expected num_channels divisible by num_groups"),
        (lambda: fw.GroupNorm(0, 4), ValueError, "GroupNorm: expected num_groups >= 1"),
        (lambda: fw.RMSNorm("3"), TypeError, "RMSNorm: expected normalized_shape"),
        (lambda: fw.RMSNorm(3, dtype=torch.int64), TypeError, "RMSNorm: expected a floating-point dtype"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="LayerNorm: expected input to be a floating-point tensor"):
        fw.LayerNorm(3)(torch.zeros(2, 3, dtype=torch.long))


def test_backward_checks_call_order_and_shape():
    m = fw.GroupNorm(1, 2)
    with pytest.raises(ValueError, match="GroupNorm: backward called before forward"):
        m.backward(torch.zeros(2, 2))
    m(torch.randn(2, 2))
    with pytest.raises(ValueError, match="GroupNorm: expected grad_output"):
        m.backward(torch.zeros(2, 3))
