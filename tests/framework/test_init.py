"""Initialisers: torch's gains and bounds, the right variance, reproducible from a seed."""

import math

import pytest
import torch

from framework import ModuleValueError, init

SHAPE = (400, 300)  # fan_in 300, fan_out 400


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("nonlinearity", "param"),
    [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", 0.2), ("selu", None)],
)
def test_gains_equal_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param))


@pytest.mark.parametrize(
    ("fill", "expected_std"),
    [
        (lambda t, g: init.xavier_uniform_(t, gain=2.0, generator=g), 2.0 * math.sqrt(2.0 / 700)),
        (lambda t, g: init.xavier_normal_(t, gain=2.0, generator=g), 2.0 * math.sqrt(2.0 / 700)),
        (lambda t, g: init.kaiming_uniform_(t, nonlinearity="relu", generator=g), math.sqrt(2.0 / 300)),
        (lambda t, g: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g), math.sqrt(2.0 / 400)),
        (lambda t, g: init.lecun_normal_(t, generator=g), math.sqrt(1.0 / 300)),
        (lambda t, g: init.torch_default_(t, generator=g), 1.0 / math.sqrt(300) / math.sqrt(3.0)),
    ],
)
def test_the_drawn_standard_deviation_matches_the_formula(fill, expected_std):
    tensor = torch.empty(SHAPE, dtype=torch.float64)
    fill(tensor, seeded())
    # 120,000 draws: the sample std is within 1% of the true one with overwhelming probability.
    assert tensor.std().item() == pytest.approx(expected_std, rel=0.01)
    assert abs(tensor.mean().item()) < 0.1 * expected_std  # 30 standard errors of the mean


def test_uniform_schemes_stay_within_their_bound():
    tensor = torch.empty(SHAPE, dtype=torch.float64)
    init.xavier_uniform_(tensor, gain=1.0, generator=seeded())
    assert tensor.abs().max() <= math.sqrt(6.0 / 700)
    init.torch_default_(tensor, generator=seeded())
    assert tensor.abs().max() <= 1.0 / math.sqrt(300)


def test_the_same_seed_gives_the_same_values_and_another_seed_others():
    a, b, c = (torch.empty(5, 4) for _ in range(3))
    init.kaiming_normal_(a, generator=seeded(1))
    init.kaiming_normal_(b, generator=seeded(1))
    init.kaiming_normal_(c, generator=seeded(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_zeros_and_the_named_schemes_zero_the_bias():
    weight, bias = torch.ones(3, 2), torch.ones(3)
    init.initialise(weight, bias, "xavier_normal", "tanh", seeded())
    assert torch.equal(bias, torch.zeros(3)) and weight.abs().sum() > 0
    init.zeros_(weight)
    assert not weight.any()


def test_unknown_scheme_or_nonlinearity_is_rejected():
    with pytest.raises(ModuleValueError, match="scheme"):
        init.initialise(torch.ones(2, 2), None, "golden")
    with pytest.raises(ModuleValueError, match="nonlinearity"):
        init.calculate_gain("swish")


def test_a_vector_has_no_fans():
    with pytest.raises(ModuleValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(torch.ones(3))
