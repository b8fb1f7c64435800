"""MaxPool2d, AvgPool2d and Upsample against their torch.nn twins, ties, and bad inputs."""

import itertools

import pytest
import torch

import framework as fw
from framework import _sliding as sliding
from framework import pooling
from verification import check_gradients

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


def pytest_generate_tests(metafunc):
    paths = ["indexed", "strided"] + (["reduced"] if metafunc.function.__name__.startswith("test_max_pool") else [])
    metafunc.parametrize("window_path", paths, indirect=True)


@pytest.fixture(autouse=True)
def window_path(request, monkeypatch):
    """Every test runs on each way of making and scattering windows: one indexed operation (how
    small CPU tensors go), one strided operation per kernel offset (large CPU ones, whose maxima
    are then also taken one sample at a time, as a large batch is taken a chunk of samples at a
    time), and, for the max-pooling tests, the windows copied and reduced in one operation, as
    MaxPool2d takes its maxima on a GPU."""
    monkeypatch.setattr(sliding, "SMALL", 1 << 40 if request.param == "indexed" else -1)
    monkeypatch.setattr(sliding, "POOL_CHUNK", 1 if request.param == "strided" else sliding.POOL_CHUNK)
    monkeypatch.setattr(sliding, "reduces_windows", lambda canvas: request.param == "reduced")
    return request.param


TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def assert_matches_twin(ours, theirs, x):
    """Output and input gradient equal the twin's, for a random upstream gradient."""
    leaf = x.clone().requires_grad_(True)
    y, expected = ours(x), theirs(leaf)
    assert y.shape == expected.shape
    g = torch.randn_like(expected)
    expected.backward(g)
    dx = ours.backward(g)
    worst = max((y - expected).abs().max().item(), (dx - leaf.grad).abs().max().item())
    assert worst <= TOLERANCE[x.dtype], worst


def distinct(shape, dtype=torch.float64, device="cpu"):
    """Values without ties: a random permutation of 0..n-1."""
    n = torch.Size(shape).numel()
    return torch.randperm(n).reshape(shape).to(dtype=dtype, device=device)


MAX_GRID = [
    dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=c)
    for k, s, p, d, c in itertools.product([2, 3, (2, 3)], [None, 1, (3, 2)], [0, 1], [1, (2, 1)], [False, True])
]


@pytest.mark.parametrize("kwargs", MAX_GRID, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (3, 6, 5)], ids=str)
def test_max_pool_matches_torch(kwargs, shape):
    torch.manual_seed(0)
    assert_matches_twin(fw.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), distinct(shape))


@pytest.mark.parametrize("kwargs", MAX_GRID[::3], ids=str)
def test_max_pool_ties_send_the_gradient_to_torchs_element(kwargs):
    torch.manual_seed(1)
    x = torch.randint(0, 2, (2, 3, 7, 8)).double()  # many ties in every window
    assert_matches_twin(fw.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), x)


def test_max_pool_tie_gradient_lands_on_exactly_one_element_per_window():
    m = fw.MaxPool2d(2)
    m(torch.ones(1, 1, 4, 6))
    grad = m.backward(torch.ones(1, 1, 2, 3))
    # One element per window, the first in row-major order (its top-left corner).
    expected = torch.zeros(1, 1, 4, 6)
    expected[..., ::2, ::2] = 1
    assert torch.equal(grad, expected)


def test_max_pool_window_of_padding_only_gives_minus_infinity_and_no_gradient():
    # Kernel 2, dilation 2, padding 1 on a height of 1: the rows read are -1 and 1, both padding.
    # (Not compared with torch: its backward corrupts memory on this window.)
    m = fw.MaxPool2d(2, stride=1, padding=1, dilation=2, ceil_mode=True)
    x = torch.randn(1, 2, 1, 2, dtype=torch.float64)
    y = m(x)
    assert y.shape == (1, 2, 1, 2) and torch.isneginf(y).all()
    assert torch.equal(m.backward(torch.ones_like(y)), torch.zeros_like(x))


def test_max_pool_propagates_nan_and_points_at_it_as_torch():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 1, 1] = x[0, 0, 2, 3] = float("nan")
    y, indices = fw.MaxPool2d(2, return_indices=True)(x)
    expected, expected_indices = torch.nn.MaxPool2d(2, return_indices=True)(x)
    assert torch.equal(y.isnan(), expected.isnan()) and torch.equal(indices, expected_indices)


def test_max_pool_picks_the_first_tie_and_the_last_nan_of_a_window_as_torch():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)  # every window ties (ReLU outputs often do)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 0, 3, 3] = float("nan")  # windows with two NaNs
    y, indices = fw.MaxPool2d(3, stride=1, return_indices=True)(x)
    expected, expected_indices = torch.nn.MaxPool2d(3, stride=1, return_indices=True)(x)
    assert torch.equal(y.isnan(), expected.isnan()) and torch.equal(indices, expected_indices)


def test_max_pool_overlapping_windows_accumulate():
    m = fw.MaxPool2d(3, stride=1)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0  # the maximum of all nine windows
    m(x)
    assert m.backward(torch.ones(1, 1, 3, 3))[0, 0, 2, 2] == 9


@pytest.mark.parametrize(
    "kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)], ids=str
)
def test_max_pool_indices_match_torch(kwargs):
    x = distinct((2, 3, 7, 8))
    y, indices = fw.MaxPool2d(**kwargs, return_indices=True)(x)
    expected, expected_indices = torch.nn.MaxPool2d(**kwargs, return_indices=True)(x)
    assert torch.equal(y, expected) and torch.equal(indices, expected_indices)


AVG_GRID = [
    dict(kernel_size=k, stride=s, padding=p, ceil_mode=c, count_include_pad=i, divisor_override=o)
    for k, s, p, c, i, o in itertools.product(
        [2, 3, (2, 3)], [None, 1, (3, 2)], [0, 1], [False, True], [True, False], [None, 4]
    )
    if not (o is not None and i is False)
]


@pytest.mark.parametrize("kwargs", AVG_GRID, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (3, 6, 5)], ids=str)
def test_avg_pool_matches_torch(kwargs, shape):
    torch.manual_seed(0)
    assert_matches_twin(fw.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs), torch.randn(shape, dtype=torch.float64))


UPSAMPLE_CASES = [
    (dict(scale_factor=2), (2, 3, 4, 5)),
    (dict(scale_factor=3), (1, 2, 3, 3)),
    (dict(scale_factor=(2, 3)), (2, 2, 3, 4)),
    (dict(scale_factor=1.5), (1, 2, 5, 4)),
    (dict(size=(7, 5)), (2, 2, 3, 4)),
    (dict(size=3), (1, 2, 7, 5)),
    (dict(scale_factor=2), (2, 3, 5)),
    (dict(scale_factor=2), (1, 2, 2, 3, 4)),
    (dict(scale_factor=(1.7, 2.2), recompute_scale_factor=True), (1, 2, 4, 5)),
    # Power-of-two factors repeat blocks instead of gathering: one dimension, unequal factors,
    # a factor of 1, a size that is an exact multiple, and no change at all.
    (dict(scale_factor=4), (2, 3, 5)),
    (dict(scale_factor=(1, 2)), (2, 2, 3, 4)),
    (dict(size=(8, 20)), (2, 2, 4, 5)),
    (dict(scale_factor=(2, 4, 1)), (1, 2, 2, 3, 4)),
    (dict(scale_factor=1), (2, 2, 3, 4)),
]


@pytest.mark.parametrize(("kwargs", "shape"), UPSAMPLE_CASES, ids=str)
def test_upsample_matches_torch(kwargs, shape):
    torch.manual_seed(0)
    assert_matches_twin(fw.Upsample(**kwargs), torch.nn.Upsample(**kwargs), torch.randn(shape, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [(dict(scale_factor=2), (2, 3, 4, 5)), (dict(scale_factor=(4, 2, 1)), (1, 2, 2, 3, 4)), (dict(size=8), (2, 3, 2))],
    ids=str,
)
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_power_of_two_blocks_equal_the_gather(kwargs, shape, mode, monkeypatch):
    x = torch.randn(shape, dtype=torch.float64)
    blocks = fw.Upsample(mode=mode, **kwargs)
    y = blocks(x)
    g = torch.randn_like(y)
    grad = blocks.backward(g)
    assert blocks._saved_tensors()["factors"] is not None
    monkeypatch.setattr(pooling, "_block_factors", lambda geometry: None)
    gather = fw.Upsample(mode=mode, **kwargs)
    assert torch.equal(gather(x), y)
    torch.testing.assert_close(gather.backward(g), grad, rtol=1e-15, atol=1e-15)  # sums in another order


def test_an_upsample_by_one_returns_a_new_tensor_and_gradient():
    x, g = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    m = fw.Upsample(scale_factor=1)
    y = m(x)
    grad = m.backward(g)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    assert torch.equal(grad, g) and grad.data_ptr() != g.data_ptr()


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (1, 1, 2, 1), (1, 1, 1, 1), (2, 1, 1, 3)])
@pytest.mark.parametrize("scale", [2, (2, 1), (1, 2)], ids=str)
def test_a_block_upsample_of_size_one_dimensions_returns_its_own_tensor(shape, scale):
    # Where the dimension before a repeated one has size 1, reshaping the broadcast view is itself
    # a view: the output was then a reused buffer (or x itself), overwritten by the next call.
    m = fw.Upsample(scale_factor=scale)
    x = torch.randn(shape)
    y = m(x)
    kept = y.clone()
    m(torch.randn(shape))
    assert torch.equal(y, kept)
    assert y.is_contiguous() and y.data_ptr() != x.data_ptr()
    y.add_(1)  # its own memory: every element written once


INTERPOLATION_CASES = [
    (dict(mode=mode, align_corners=corners, **size), shape)
    for (mode, shape), corners, size in itertools.product(
        [("linear", (2, 3, 5)), ("bilinear", (2, 2, 4, 5)), ("trilinear", (1, 2, 3, 4, 2))],
        [False, True],
        [{"scale_factor": 2}, {"scale_factor": 1.7}, {"scale_factor": 0.6}, {"size": 7}, {"size": 1}],
    )
] + [(dict(mode="nearest-exact", scale_factor=s), (2, 2, 5, 3)) for s in (2, 1.5, 0.7)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("kwargs", "shape"), INTERPOLATION_CASES, ids=str)
def test_upsample_interpolation_modes_match_torch(kwargs, shape, dtype):
    torch.manual_seed(0)
    assert_matches_twin(fw.Upsample(**kwargs), torch.nn.Upsample(**kwargs), torch.randn(shape, dtype=dtype))


# Bicubic: align_corners both ways, up and down (a source index below 0 and taps clamped at both
# borders), a side of 1; area: torch's adaptive average pooling, windows that overlap or not.
BICUBIC_AND_AREA_CASES = [
    (dict(mode="bicubic", align_corners=corners, **size), (2, 2, 4, 5))
    for corners, size in itertools.product(
        [None, False, True],
        [{"scale_factor": 2}, {"scale_factor": 1.7}, {"scale_factor": 0.6}, {"size": (7, 3)}, {"size": 1}],
    )
] + [
    (dict(mode="bicubic", scale_factor=(2.5, 0.5), recompute_scale_factor=True), (1, 2, 4, 6)),
    (dict(mode="bicubic", size=(5, 4)), (1, 1, 1, 2)),
    *[
        (dict(mode="area", **size), shape)
        for size, shape in itertools.product(
            [{"scale_factor": 2}, {"scale_factor": 0.5}, {"scale_factor": 0.7}, {"size": 3}],
            [(2, 3, 7), (2, 2, 5, 6), (1, 2, 3, 4, 5)],
        )
    ],
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("kwargs", "shape"), BICUBIC_AND_AREA_CASES, ids=str)
def test_upsample_bicubic_and_area_match_torch(kwargs, shape, dtype):
    torch.manual_seed(0)
    assert_matches_twin(fw.Upsample(**kwargs), torch.nn.Upsample(**kwargs), torch.randn(shape, dtype=dtype))


def test_bicubic_reproduces_a_constant_and_area_averages_it():
    x = torch.full((1, 2, 4, 5), 2.5, dtype=torch.float64)
    for kwargs in ({"mode": "bicubic", "scale_factor": 1.7}, {"mode": "area", "size": (3, 2)}):
        torch.testing.assert_close(fw.Upsample(**kwargs)(x), torch.full_like(torch.nn.Upsample(**kwargs)(x), 2.5))


def test_bilinear_upsample_backward_is_the_transposed_interpolation():
    """<up(x), g> = <x, up^T(g)>: the backward is the adjoint of the (linear) forward."""
    torch.manual_seed(2)
    m = fw.Upsample(scale_factor=(2.5, 1.5), mode="bilinear")
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    y = m(x)
    g = torch.randn_like(y)
    assert torch.allclose((y * g).sum(), (x * m.backward(g)).sum(), rtol=1e-12, atol=0)


def test_upsample_backward_sums_each_block():
    m = fw.Upsample(scale_factor=(2, 3))
    m(torch.zeros(1, 1, 2, 2))
    g = torch.arange(24.0).reshape(1, 1, 4, 6)
    assert torch.equal(m.backward(g), g.reshape(1, 1, 2, 2, 2, 3).sum((3, 5)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (fw.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
        (fw.AvgPool2d(3, 2, 1, count_include_pad=False), torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
        (fw.Upsample(scale_factor=2), torch.nn.Upsample(scale_factor=2)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_layer_matches_torch_on_each_dtype_and_device(ours, theirs, dtype, device):
    torch.manual_seed(0)
    assert_matches_twin(ours, theirs, distinct((2, 3, 7, 6), dtype, device) / 10)


def test_stride_defaults_to_the_kernel_size_as_torch():
    assert fw.MaxPool2d(3).stride == torch.nn.MaxPool2d(3).stride == 3
    assert fw.AvgPool2d((2, 3)).stride == torch.nn.AvgPool2d((2, 3)).stride == (2, 3)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fw.MaxPool2d(3, padding=2), "padding at most half the kernel size"),
        (lambda: fw.AvgPool2d((2, 4), padding=(1, 3)), "padding at most half the kernel size"),
        (lambda: fw.MaxPool2d(0), "kernel_size >= 1"),
        (lambda: fw.MaxPool2d(2, stride=0), "stride >= 1"),
        (lambda: fw.MaxPool2d(2, dilation=0), "dilation >= 1"),
        (lambda: fw.AvgPool2d(2, padding=-1), "padding >= 0"),
        (lambda: fw.AvgPool2d(2, divisor_override=0), "divisor_override >= 1"),
        (lambda: fw.Upsample(), "exactly one of size and scale_factor"),
        (lambda: fw.Upsample(scale_factor=2, mode="bicubical"), "mode"),
        (lambda: fw.Upsample(scale_factor=2, align_corners=True), "align_corners=None with mode 'nearest'"),
        (lambda: fw.Upsample(scale_factor=2, mode="area", align_corners=False), "align_corners=None with mode 'area'"),
        (lambda: fw.Upsample(size=3, recompute_scale_factor=True), "not meaningful with an explicit size"),
        (lambda: fw.Upsample(scale_factor=-1), "scale_factor in"),
        (lambda: fw.Upsample(size=0), "size >= 1"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("module", "shape", "match"),
    [
        (fw.MaxPool2d(2), (2, 3, 4, 4, 4), "3-D or 4-D"),
        (fw.AvgPool2d(2), (4, 4), "3-D or 4-D"),
        (fw.MaxPool2d(3, dilation=2), (1, 1, 4, 9), "at least the dilated kernel"),
        (fw.AvgPool2d(4), (1, 1, 3, 9), "at least the dilated kernel"),
        (fw.Upsample(scale_factor=(2, 2)), (1, 1, 4), "scale_factor with 1 entries"),
        (fw.Upsample(scale_factor=0.1), (1, 1, 4, 4), "positive output size"),
        (fw.Upsample(scale_factor=2), (4, 4), "3-D or 4-D or 5-D"),
        (fw.Upsample(scale_factor=2, mode="bilinear"), (1, 1, 4), "4-D"),
        (fw.Upsample(scale_factor=2, mode="bicubic"), (1, 1, 4, 4, 4), "4-D"),
        (fw.Upsample(scale_factor=2, mode="area"), (4, 4), "3-D or 4-D or 5-D"),
    ],
    ids=str,
)
def test_bad_inputs_are_rejected_with_the_layer_named(module, shape, match):
    with pytest.raises(ValueError, match=f"{type(module).__name__}: expected .*{match}"):
        module(torch.zeros(shape))


@pytest.mark.parametrize(
    "make",
    [lambda: fw.MaxPool2d(2), lambda: fw.AvgPool2d(2), lambda: fw.Upsample(scale_factor=2)],
    ids=["MaxPool2d", "AvgPool2d", "Upsample"],
)
def test_backward_checks_call_order_and_grad_output_shape(make):
    module = make()
    name = type(module).__name__
    with pytest.raises(ValueError, match=f"{name}: backward called before forward"):
        module.backward(torch.zeros(1, 1, 2, 2))
    module(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=f"{name}: expected grad_output"):
        module.backward(torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bicubic_upsampling_of_one_pixel_repeats_it_exactly_in_low_precision(scale, dtype):
    # Keys' kernel sums to one, so every output is the pixel: the resampling matrices, rounded once
    # from float64, hold exact ones (summed in the low precision, the four coefficients miss by ulps).
    x = torch.tensor([[[[2.8203125]]]], dtype=dtype)
    y = fw.Upsample(scale_factor=scale, mode="bicubic")(x)
    assert torch.equal(y, x.expand_as(y))


def test_max_pool_returning_indices_takes_none_for_their_gradient_and_refuses_a_tensor():
    """The protocol for several outputs: one gradient per output, None (or nothing) for one that does
    not reach the loss. The indices are integers: a gradient for them is refused by name."""
    x = distinct((2, 3, 6, 6))
    module = fw.MaxPool2d(2, return_indices=True)
    y, indices = module(x)
    g = torch.randn_like(y)
    assert torch.equal(module.backward(g, None), module.backward(g))
    with pytest.raises(ValueError, match=r"MaxPool2d: got a gradient for the indices .* integers, with no gradient"):
        module.backward(g, indices)
    assert check_gradients(fw.MaxPool2d(2, return_indices=True), x).ok
