"""Optimizers against torch.optim, step by step, over a grid of every hyper-parameter."""

from __future__ import annotations

import itertools

import pytest
import torch

import framework as fw
from framework import optim

F64 = torch.float64
SHAPES = [(3, 4), (5,), (1,)]
# Gradient scales that grow and shrink, so AMSGrad's running maximum and the centred
# variance estimate both change branch over the steps.
SCALES = [1.0, 5.0, 0.1, 2.0, 0.01, 3.0, 0.5]


def label(kwargs):
    return ",".join(f"{k}={v}" for k, v in kwargs.items())


def grid(**axes):
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


SGD_GRID = [
    kw
    for kw in grid(
        lr=[0.1, 0.0],
        momentum=[0.0, 0.9],
        dampening=[0.0, 0.5],
        weight_decay=[0.0, 0.1],
        nesterov=[False, True],
    )
    if not kw["nesterov"] or (kw["momentum"] > 0 and kw["dampening"] == 0)
]
ADAM_GRID = grid(
    lr=[1e-3, 0.1],
    betas=[(0.9, 0.999), (0.5, 0.9), (0.0, 0.0)],
    eps=[1e-8, 1e-3],
    weight_decay=[0.0, 0.1],
    amsgrad=[False, True],
)
RMSPROP_GRID = grid(
    lr=[1e-2, 0.1],
    alpha=[0.99, 0.5],
    eps=[1e-8, 0.1],
    weight_decay=[0.0, 0.1],
    momentum=[0.0, 0.9],
    centered=[False, True],
)

CASES = [
    *[pytest.param(optim.SGD, torch.optim.SGD, kw, id=f"SGD-{label(kw)}") for kw in SGD_GRID],
    *[pytest.param(optim.Adam, torch.optim.Adam, kw, id=f"Adam-{label(kw)}") for kw in ADAM_GRID],
    *[pytest.param(optim.RMSprop, torch.optim.RMSprop, kw, id=f"RMSprop-{label(kw)}") for kw in RMSPROP_GRID],
]


def make_pairs(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=generator, dtype=F64), torch.zeros(s, dtype=F64)) for s in SHAPES]


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CASES)
def test_steps_match_torch_optim(ours, theirs, kwargs):
    pairs = make_pairs()
    twins = [torch.nn.Parameter(p.clone()) for p, _ in pairs]
    optimizer, reference = ours(pairs, **kwargs), theirs(twins, **kwargs)
    generator = torch.Generator().manual_seed(1)
    for step, scale in enumerate(SCALES):
        for (_, grad), twin in zip(pairs, twins):
            g = scale * torch.randn(grad.shape, generator=generator, dtype=F64)
            grad.copy_(g)
            twin.grad = g.clone()
        optimizer.step()
        reference.step()
        for index, ((param, _), twin) in enumerate(zip(pairs, twins)):
            torch.testing.assert_close(
                param,
                twin.detach(),
                rtol=1e-12,
                atol=1e-15,
                msg=lambda m, step=step, index=index: f"step {step + 1}, parameter {index}: {m}",
            )


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), [CASES[3], CASES[len(SGD_GRID) + 7], CASES[-1]])
def test_step_leaves_the_gradients_unchanged(ours, theirs, kwargs):
    pairs = make_pairs()
    for _, grad in pairs:
        grad.normal_()
    before = [grad.clone() for _, grad in pairs]
    optimizer = ours(pairs, **kwargs)
    optimizer.step()
    optimizer.step()
    for (_, grad), old in zip(pairs, before):
        assert torch.equal(grad, old)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.RMSprop], ids=lambda c: c.__name__)
def test_zero_grad_zeroes_every_gradient(cls):
    pairs = make_pairs()
    for _, grad in pairs:
        grad.fill_(3.0)
    cls(pairs).zero_grad()
    assert all(torch.count_nonzero(grad) == 0 for _, grad in pairs)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.RMSprop], ids=lambda c: c.__name__)
def test_optimizer_trains_a_framework_model_like_torch_optim_trains_its_twin(cls):
    generator = torch.Generator().manual_seed(4)
    model = fw.Linear(3, 2, dtype=F64, generator=generator)
    twin = torch.nn.Linear(3, 2).to(F64)
    with torch.no_grad():
        twin.weight.copy_(model.weight)
        twin.bias.copy_(model.bias)
    criterion = fw.MSELoss()
    optimizer = cls(model.param(), lr=0.05)
    reference = getattr(torch.optim, cls.__name__)(twin.parameters(), lr=0.05)
    for _ in range(5):
        x = torch.randn(4, 3, generator=generator, dtype=F64)
        y = torch.randn(4, 2, generator=generator, dtype=F64)
        model.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        reference.zero_grad()
        torch.nn.functional.mse_loss(twin(x), y).backward()
        reference.step()
    torch.testing.assert_close(model.weight, twin.weight.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(model.bias, twin.bias.detach(), rtol=1e-12, atol=1e-14)


def test_defaults_equal_torch_optim_defaults():
    twins = [torch.nn.Parameter(torch.zeros(2, dtype=F64))]
    adam, adam_ref = optim.Adam(make_pairs()), torch.optim.Adam(twins).defaults
    assert (adam.lr, adam.betas, adam.eps, adam.weight_decay, adam.amsgrad) == (
        adam_ref["lr"],
        adam_ref["betas"],
        adam_ref["eps"],
        adam_ref["weight_decay"],
        adam_ref["amsgrad"],
    )
    rms, rms_ref = optim.RMSprop(make_pairs()), torch.optim.RMSprop(twins).defaults
    assert (rms.lr, rms.alpha, rms.eps, rms.weight_decay, rms.momentum, rms.centered) == (
        rms_ref["lr"],
        rms_ref["alpha"],
        rms_ref["eps"],
        rms_ref["weight_decay"],
        rms_ref["momentum"],
        rms_ref["centered"],
    )


BAD = [
    pytest.param(optim.SGD, {"lr": -0.1}, id="SGD-lr"),
    pytest.param(optim.SGD, {"momentum": -0.5}, id="SGD-momentum"),
    pytest.param(optim.SGD, {"weight_decay": -1.0}, id="SGD-weight_decay"),
    pytest.param(optim.SGD, {"nesterov": True}, id="SGD-nesterov-without-momentum"),
    pytest.param(optim.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, id="SGD-nesterov-dampening"),
    pytest.param(optim.Adam, {"lr": -1e-3}, id="Adam-lr"),
    pytest.param(optim.Adam, {"lr": "fast"}, id="Adam-lr-str"),
    pytest.param(optim.Adam, {"betas": (1.0, 0.999)}, id="Adam-beta1-1"),
    pytest.param(optim.Adam, {"betas": (-0.1, 0.999)}, id="Adam-beta1-negative"),
    pytest.param(optim.Adam, {"betas": (0.9, 1.0)}, id="Adam-beta2-1"),
    pytest.param(optim.Adam, {"betas": (0.9, float("nan"))}, id="Adam-beta2-nan"),
    pytest.param(optim.Adam, {"betas": 0.9}, id="Adam-betas-not-a-pair"),
    pytest.param(optim.Adam, {"betas": (0.9, 0.99, 0.999)}, id="Adam-betas-triple"),
    pytest.param(optim.Adam, {"eps": -1e-8}, id="Adam-eps"),
    pytest.param(optim.Adam, {"weight_decay": -0.1}, id="Adam-weight_decay"),
    pytest.param(optim.RMSprop, {"lr": -1e-2}, id="RMSprop-lr"),
    pytest.param(optim.RMSprop, {"alpha": -0.1}, id="RMSprop-alpha-negative"),
    pytest.param(optim.RMSprop, {"alpha": 1.5}, id="RMSprop-alpha-above-1"),
    pytest.param(optim.RMSprop, {"eps": -1.0}, id="RMSprop-eps"),
    pytest.param(optim.RMSprop, {"weight_decay": -0.1}, id="RMSprop-weight_decay"),
    pytest.param(optim.RMSprop, {"momentum": -0.9}, id="RMSprop-momentum"),
    pytest.param(optim.RMSprop, {"momentum": None}, id="RMSprop-momentum-None"),
]


@pytest.mark.parametrize(("cls", "kwargs"), BAD)
def test_invalid_hyper_parameters_raise_naming_the_class(cls, kwargs):
    with pytest.raises((ValueError, TypeError), match=cls.__name__):
        cls(make_pairs(), **kwargs)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.RMSprop], ids=lambda c: c.__name__)
def test_empty_or_malformed_parameter_lists_raise_naming_the_class(cls):
    with pytest.raises(ValueError, match=cls.__name__):
        cls([])
    with pytest.raises(TypeError, match=cls.__name__):
        cls([torch.zeros(2)])
    with pytest.raises(ValueError, match=cls.__name__):
        cls([(torch.zeros(2), torch.zeros(3))])
