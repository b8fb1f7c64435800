"""Dropout: the mask's statistics, its scaling, reuse in backward, evaluation mode, p = 0 and p = 1."""

import math

import pytest
import torch

import framework as fw
from framework import dropout as dropout_module

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]


def seeded(p: float, seed: int = 0) -> fw.Dropout:
    return fw.Dropout(p, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_is_one_minus_p_within_six_sigma(p):
    n = 200_000
    y = seeded(p)(torch.ones(n, dtype=torch.float64))
    kept = (y != 0).double().mean().item()
    assert abs(kept - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)


@pytest.fixture(params=["float32 mask", "uint8 mask"])
def mask_kind(request, monkeypatch):
    """Each test below runs with the CPU's float32 mask and with the uint8 mask drawn elsewhere."""
    if request.param == "uint8 mask":
        monkeypatch.setattr(dropout_module, "draws_float_mask", lambda device: False)
    return request.param


def test_the_uint8_path_draws_a_uint8_mask(mask_kind):
    mask = dropout_module.keep_mask((3, 4), 0.5, torch.Generator().manual_seed(0))
    assert mask.dtype == (torch.uint8 if mask_kind == "uint8 mask" else torch.float32)


LOW_AND_FULL = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", LOW_AND_FULL, ids=str)
@pytest.mark.parametrize("p", [0.2, 0.3, 0.5, 0.75])
def test_kept_values_are_scaled_by_exactly_one_over_one_minus_p(p, dtype, mask_kind):
    x = torch.randn(1000, dtype=dtype)
    y = seeded(p)(x)
    kept = y != 0
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype)
    assert kept.any() and (~kept).any()
    assert torch.equal(y[kept], x[kept] * scale)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", LOW_AND_FULL, ids=str)
def test_output_and_gradient_keep_the_input_dtype(dtype, inplace, mask_kind):
    m = fw.Dropout(0.3, inplace=inplace, generator=torch.Generator().manual_seed(0))
    x = torch.rand(40, 9, dtype=dtype) + 1.0  # no zeros, so y == 0 marks a dropped entry
    original = x.clone()
    y = m(x)
    g = torch.randn(40, 9, dtype=dtype)
    dx = m.backward(g)
    assert y.dtype == dtype and dx.dtype == dtype
    scale = torch.tensor(1.0 / 0.7, dtype=dtype)
    assert torch.equal(y, torch.where(y != 0, original * scale, torch.zeros_like(y)))
    assert torch.equal(dx, torch.where(y != 0, g * scale, torch.zeros_like(g)))
    assert (y.data_ptr() == x.data_ptr()) == inplace


@pytest.mark.parametrize("device", DEVICES)
def test_backward_reuses_the_forward_mask(device, mask_kind):
    m = seeded(0.4)
    x = torch.rand(50, 7, dtype=torch.float64, device=device) + 1.0  # no zeros, so y == 0 marks a dropped entry
    y = m(x)
    g = torch.randn_like(x)
    assert torch.equal(m.backward(g), torch.where(y != 0, g / 0.6, torch.zeros_like(g)))


def test_evaluation_mode_is_the_identity():
    m = seeded(0.5).eval()
    x = torch.randn(10, 10)
    assert torch.equal(m(x), x)
    g = torch.randn(10, 10)
    assert torch.equal(m.backward(g), g)


def test_p_zero_is_the_identity_in_training_mode():
    m = seeded(0.0)
    x = torch.randn(10, 10)
    assert torch.equal(m(x), x)
    assert torch.equal(m.backward(x), x)


def test_p_one_zeroes_output_and_gradient_without_nan():
    m = seeded(1.0)
    y = m(torch.randn(10, 10))
    g = m.backward(torch.randn(10, 10))
    assert torch.equal(y, torch.zeros(10, 10)) and torch.equal(g, torch.zeros(10, 10))


def test_same_seed_gives_same_mask_and_another_seed_another():
    x = torch.ones(1000)
    assert torch.equal(seeded(0.5, 3)(x), seeded(0.5, 3)(x))
    assert not torch.equal(seeded(0.5, 3)(x), seeded(0.5, 4)(x))


def test_the_mask_comes_from_the_modules_generator():
    m = seeded(0.5, 3)
    before = m.generator.get_state()
    m(torch.ones(100))
    assert not torch.equal(m.generator.get_state(), before)
    m.generator.set_state(before)
    assert torch.equal(m(torch.ones(100)), seeded(0.5, 3)(torch.ones(100)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_mask_is_drawn_on_the_device_and_the_same_seed_gives_the_same_mask():
    x = torch.ones(1000, device="cuda")
    first, second = seeded(0.5, 3).to("cuda"), seeded(0.5, 3)
    y = first(x)
    assert first.generator.device.type == "cuda" and y.is_cuda
    assert torch.equal(second(x), y)  # moved by its first CUDA input, seeded alike
    assert second.generator.device.type == "cuda"
    assert not torch.equal(seeded(0.5, 4)(x), y)


def test_default_generator_follows_torch_manual_seed():
    x = torch.ones(1000)
    torch.manual_seed(11)
    first = fw.Dropout(0.5)(x)
    torch.manual_seed(11)
    assert torch.equal(fw.Dropout(0.5)(x), first)


def test_inplace_writes_into_the_input_like_torch():
    x = torch.ones(100)
    y = fw.Dropout(0.5, inplace=True, generator=torch.Generator().manual_seed(0))(x)
    assert y.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_outside_the_unit_interval_is_rejected(p):
    with pytest.raises(ValueError, match="Dropout: expected p"):
        fw.Dropout(p)


def test_non_generator_is_rejected():
    with pytest.raises(TypeError, match="Dropout: expected generator"):
        fw.Dropout(0.5, generator=0)


def test_generator_passed_in_the_inplace_position_is_rejected():
    with pytest.raises(TypeError, match="Dropout: expected inplace to be a bool"):
        fw.Dropout(0.5, torch.Generator())


def test_backward_before_forward_is_rejected():
    with pytest.raises(ValueError, match="Dropout: backward called before forward"):
        seeded(0.5).backward(torch.zeros(3))


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="Dropout: expected input to be a floating-point tensor"):
        seeded(0.5)(torch.ones(3, dtype=torch.long))
