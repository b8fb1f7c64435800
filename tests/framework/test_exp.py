"""exp by exp2 on the CPU in float32 where MKL's exp is slow: faster, within the error its docstring states."""

from __future__ import annotations

import pytest
import torch

from framework import _cpu, _exp

EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(params=["base 2", "MKL"])
def processor(request, monkeypatch):
    """Each processor's float32 path: exp2 (MKL's exp slow, as off Intel) or torch's exp."""
    monkeypatch.setattr(_exp, "mkl_vector_math_is_fast", lambda: request.param == "MKL")
    assert _exp.in_base_2(torch.ones(1)) == (request.param == "base 2")
    return request.param


@pytest.mark.parametrize(("vendor", "base_2"), [("AuthenticAMD", True), ("GenuineIntel", False), ("", True)])
def test_float32_exp_takes_base_2_only_off_intels_mkl(vendor, base_2, monkeypatch):
    monkeypatch.setattr(_cpu, "vendor", lambda: vendor)
    _exp.mkl_vector_math_is_fast.cache_clear()
    try:
        expected = base_2 or not torch.backends.mkl.is_available()
        assert _exp.in_base_2(torch.ones(1)) == expected
        assert not _exp.in_base_2(torch.ones(1, dtype=torch.float64))
    finally:
        _exp.mkl_vector_math_is_fast.cache_clear()


def test_float32_exp_is_within_t_eps_of_the_exact_value_over_the_whole_range(processor):
    t = torch.linspace(-103.0, 88.0, 200_001)  # from subnormal results to the edge of overflow
    exact = t.double().exp()
    computed = _exp.exp(t).double()
    normal = exact >= torch.finfo(torch.float32).tiny
    relative = ((computed - exact).abs() / exact)[normal]
    bound = ((t.double().abs() + 2) * EPS32)[normal]
    assert bool((relative <= bound).all()), f"worst: {(relative / bound).max().item():.3g} of the bound"


def test_float32_exp_overflows_and_underflows_where_exp_does(processor):
    t = torch.tensor([-1e4, -200.0, 89.0, 1e4, float("inf"), -float("inf"), float("nan")])
    assert torch.equal(_exp.exp(t).nan_to_num(7.0), t.exp().nan_to_num(7.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16], ids=str)
def test_other_dtypes_take_torchs_exp_bit_for_bit(dtype):
    t = (10 * torch.randn(1000, generator=torch.Generator().manual_seed(0))).to(dtype)
    assert not _exp.in_base_2(t)
    assert torch.equal(_exp.exp(t), t.exp())
    assert torch.equal(_exp.exp_(t.clone()), t.exp())


def test_in_place_exp_writes_into_its_argument(processor):
    t = torch.randn(100)
    expected = _exp.exp(t)
    out = t.clone()
    assert _exp.exp_(out) is out and torch.equal(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_expm1_from_exp_and_tanh_is_within_one_and_a_half_epsilons_of_the_exact_value(dtype):
    # tanh(t/2) to within an ulp, then a product and a sum rounded once each: 2.5 ulps at most.
    eps = torch.finfo(dtype).eps
    t = -torch.logspace(-30, 2, 400_001, dtype=torch.float64).to(dtype)  # from tiny to saturated
    exact = t.double().expm1()
    computed = _exp.expm1_with_exp_(t.clone(), t.exp()).double()
    relative = (computed - exact).abs() / exact.abs()
    assert bool((relative <= 1.5 * eps).all()), f"worst: {(relative / eps).max().item():.3g} eps"


def test_expm1_from_exp_and_tanh_is_exact_at_zero_and_minus_one_and_keeps_nan():
    t = torch.tensor([0.0, -0.0, -20.0, -200.0, -float("inf"), float("nan")])
    computed = _exp.expm1_with_exp_(t.clone(), t.exp())
    assert torch.equal(computed.nan_to_num(7.0), torch.tensor([0.0, 0.0, -1.0, -1.0, -1.0, 7.0]))


def test_expm1_from_exp_and_tanh_is_taken_only_on_the_cpu_where_mkl_is_fast(monkeypatch):
    for fast in (True, False):
        monkeypatch.setattr(_exp, "mkl_vector_math_is_fast", lambda fast=fast: fast)
        assert _exp.expm1_is_slow(torch.ones(1)) == fast
        assert _exp.expm1_is_slow(torch.ones(1, dtype=torch.float64)) == fast
        assert not _exp.expm1_is_slow(torch.ones(1, dtype=torch.bfloat16))


@pytest.mark.parametrize("fast", [True, False], ids=["through exp", "torch's expm1"])
def test_expm1_in_place_takes_either_route_within_the_bound(fast, monkeypatch):
    monkeypatch.setattr(_exp, "mkl_vector_math_is_fast", lambda: fast)
    t = -torch.logspace(-20, 2, 10_001)
    computed = _exp.expm1_(t.clone()).double()
    exact = t.double().expm1()
    assert bool(((computed - exact).abs() <= 1.5 * EPS32 * exact.abs()).all())
