"""BatchNorm1d/2d against their torch.nn twins: outputs, gradients, running statistics, bad inputs."""

import pytest
import torch

import framework as fw
from framework import _blocks
from verification.twins import copy_state


@pytest.fixture(autouse=True, params=["two-pass", "one-pass"])
def moments(request, monkeypatch):
    """Every test runs with BatchNorm's mean and variance in two passes (the CPU's way) and in one
    torch.var_mean pass (a GPU's way)."""
    monkeypatch.setattr(_blocks, "one_pass_moments", lambda x: request.param == "one-pass")
    return request.param


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
TWINS = {fw.BatchNorm1d: torch.nn.BatchNorm1d, fw.BatchNorm2d: torch.nn.BatchNorm2d}
SHAPES = {fw.BatchNorm1d: [(5, 3), (3, 3, 7)], fw.BatchNorm2d: [(2, 3, 4, 5), (1, 3, 3, 2)]}
CASES = [(cls, shape) for cls, shapes in SHAPES.items() for shape in shapes]


def pair(cls, dtype, device, **kwargs):
    gen = torch.Generator().manual_seed(0)
    ours = cls(3, **kwargs, dtype=dtype, device=device)
    for _, p, _ in ours.named_param():
        p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-1, 1, generator=gen))
    theirs = TWINS[cls](3, **kwargs)
    copy_state(ours, theirs)
    theirs.to(device=device, dtype=dtype)
    return ours, theirs


def step(ours, theirs, x):
    """One forward and backward of both with a random upstream gradient; the maximal differences."""
    leaf = x.clone().requires_grad_(True)
    y, expected = ours(x), theirs(leaf)
    g = torch.randn_like(expected)
    expected.backward(g)
    diffs = {"output": (y - expected).abs().max().item(), "input grad": (ours.backward(g) - leaf.grad).abs().max()}
    for name, p in theirs.named_parameters():
        diffs[name + " grad"] = (ours.grad(name) - p.grad).abs().max().item()
    ours.zero_grad()
    theirs.zero_grad()
    return diffs


def assert_close(diffs, dtype):
    assert max(float(d) for d in diffs.values()) < TOLERANCE[dtype], diffs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("cls", "shape"), CASES)
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"affine": False}, {"track_running_stats": False}, {"momentum": None}, {"eps": 0.1, "momentum": 0.3}],
    ids=str,
)
def test_training_and_evaluation_match_torch(cls, shape, kwargs, dtype, device):
    torch.manual_seed(1)
    ours, theirs = pair(cls, dtype, device, **kwargs)
    for _ in range(3):
        assert_close(step(ours, theirs, torch.randn(shape, dtype=dtype, device=device) * 2 + 1), dtype)
    ours.eval()
    theirs.eval()
    assert_close(step(ours, theirs, torch.randn(shape, dtype=dtype, device=device)), dtype)


@pytest.mark.parametrize("momentum", [0.1, None, 0.7])
@pytest.mark.parametrize(("cls", "shape"), CASES)
def test_running_statistics_match_torch_after_several_steps(cls, shape, momentum):
    torch.manual_seed(2)
    ours, theirs = pair(cls, torch.float64, "cpu", momentum=momentum)
    for _ in range(4):
        x = torch.randn(shape, dtype=torch.float64) * 3 - 1
        ours(x)
        theirs(x)
    assert torch.allclose(ours.running_mean, theirs.running_mean, rtol=0, atol=1e-12)
    assert torch.allclose(ours.running_var, theirs.running_var, rtol=0, atol=1e-12)
    assert ours.num_batches_tracked.dtype == torch.int64 and int(ours.num_batches_tracked) == 4


def test_evaluation_mode_leaves_running_statistics_alone():
    m = fw.BatchNorm1d(3)
    m.eval()
    m(torch.randn(4, 3))
    assert torch.equal(m.running_mean, torch.zeros(3)) and int(m.num_batches_tracked) == 0


def test_parameters_and_buffers_have_torch_names_shapes_and_defaults():
    ours, theirs = fw.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    assert [(n, p.shape) for n, p, _ in ours.named_param()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    for (_, a), (_, b) in zip(ours.named_buffers(), theirs.named_buffers()):
        assert torch.equal(a, b) and a.dtype == b.dtype
    assert torch.equal(ours.weight, theirs.weight.detach()) and torch.equal(ours.bias, theirs.bias.detach())


def test_without_tracking_there_are_no_buffers_and_without_affine_no_parameters():
    m = fw.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert m.param() == [] and m.named_buffers() == []
    assert m.running_mean is None and m.weight is None


def test_bias_false_keyword_keeps_only_the_weight():
    ours = fw.BatchNorm1d(3, bias=False)
    assert [n for n, _, _ in ours.named_param()] == ["weight"]


@pytest.mark.parametrize(
    ("cls", "shape"), [(fw.BatchNorm1d, (1, 3)), (fw.BatchNorm1d, (1, 3, 1)), (fw.BatchNorm2d, (1, 3, 1, 1))]
)
def test_one_value_per_channel_in_training_mode_is_rejected(cls, shape):
    with pytest.raises(ValueError, match=f"{cls.__name__}: expected more than 1 value per channel"):
        cls(3)(torch.zeros(shape))


def test_one_value_per_channel_is_fine_in_evaluation_mode():
    m = fw.BatchNorm1d(3).eval()
    assert m(torch.ones(1, 3)).shape == (1, 3)


@pytest.mark.parametrize(
    ("cls", "shape", "match"),
    [
        (fw.BatchNorm1d, (4, 2), "num_features"),
        (fw.BatchNorm1d, (4, 3, 2, 2), "2-D or 3-D"),
        (fw.BatchNorm2d, (4, 3, 5), "4-D"),
        (fw.BatchNorm2d, (4, 5, 2, 2), "num_features"),
    ],
)
def test_wrong_rank_or_channel_count_is_rejected(cls, shape, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}: expected .*{match}"):
        cls(3)(torch.zeros(shape))


def test_dtype_differing_from_the_statistics_is_rejected_even_without_parameters():
    m = fw.BatchNorm1d(3, affine=False)
    with pytest.raises(TypeError, match=r"BatchNorm1d: expected input of dtype torch\.float32"):
        m(torch.zeros(4, 3, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs", [{"num_features": 0}, {"num_features": 3, "eps": 0.0}, {"num_features": 3, "momentum": 1.5}], ids=str
)
def test_invalid_constructor_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError, match="BatchNorm2d: expected"):
        fw.BatchNorm2d(**kwargs)


def test_backward_checks_call_order_and_shape():
    m = fw.BatchNorm1d(3)
    with pytest.raises(ValueError, match="BatchNorm1d: backward called before forward"):
        m.backward(torch.zeros(4, 3))
    m(torch.randn(4, 3))
    with pytest.raises(ValueError, match="BatchNorm1d: expected grad_output"):
        m.backward(torch.zeros(4, 2))


def test_float32_gradient_with_a_large_mean_is_as_accurate_as_torchs():
    """Centring before the reductions: no cancellation when the mean dwarfs the spread."""
    torch.manual_seed(0)
    x = 1000 + torch.randn(4, 3, 5, 5)
    g = torch.randn(4, 3, 5, 5)
    exact = x.double().requires_grad_(True)
    torch.nn.BatchNorm2d(3).double()(exact).backward(g.double())
    ours = fw.BatchNorm2d(3)
    ours(x)
    leaf = x.clone().requires_grad_(True)
    torch.nn.BatchNorm2d(3)(leaf).backward(g)
    ours_error = (ours.backward(g).double() - exact.grad).abs().max()
    torch_error = (leaf.grad.double() - exact.grad).abs().max()
    assert ours_error <= 2 * torch_error + 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("cls", "shape"), [(fw.BatchNorm1d, (2, 3)), (fw.BatchNorm2d, (2, 3, 2, 2))])
def test_a_channel_whose_values_are_all_equal_comes_out_as_its_bias(cls, shape, dtype):
    """x - mean is exactly zero there (a channel a ReLU zeroed, or a BatchNorm's output over a
    batch of two fed to another), so the output is exactly the bias: not x a + (bias - mean a) with
    a = weight / sqrt(eps) over 300, whose roundings do not cancel."""
    torch.manual_seed(0)
    ours = cls(3, dtype=dtype)
    for _, p, _ in ours.named_param():
        p.copy_(torch.randn(p.shape, dtype=dtype))
    x = torch.randn(shape, dtype=dtype)
    x[:, 1] = 0.8372
    y = ours(x)
    assert torch.equal(y[:, 1], torch.full_like(y[:, 1], float(ours.bias[1])))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_input_on_another_device_than_the_statistics_is_rejected():
    with pytest.raises(TypeError, match="BatchNorm1d: expected input on device cpu"):
        fw.BatchNorm1d(3, affine=False)(torch.zeros(4, 3, device="cuda"))
