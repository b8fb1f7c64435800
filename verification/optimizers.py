"""Optimizers against ``torch.optim``: random parameters, random gradient sequences, several
steps, every hyper-parameter explored (check 8).

Both sides apply the same update rule to the same float64 numbers in the same order, so the
only admissible difference is rounding: after ``k`` steps each parameter may differ by
``safety * u * k * c * (|p| + lr)`` where ``c`` bounds the operations of one update.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from framework import optim

from .error_model import unit_roundoff
from .report import CheckResult
from .runner import PROFILES, CheckSummary, SpecResult
from .strategies import floats, shapes

OPERATIONS_PER_STEP = 16


def _sgd_kwargs(draw: Callable[[Any], Any]) -> dict[str, Any]:
    nesterov = draw(st.booleans())
    momentum = draw(floats(0.05, 0.95)) if nesterov else draw(st.sampled_from([0.0, 0.5, 0.9]) | floats(0.0, 0.99))
    return {
        "lr": draw(floats(1e-3, 1.0)),
        "momentum": momentum,
        "dampening": 0.0 if nesterov else draw(st.sampled_from([0.0, 0.3]) | floats(0.0, 1.0)),
        "weight_decay": draw(st.sampled_from([0.0, 1e-2]) | floats(0.0, 0.1)),
        "nesterov": nesterov,
    }


def _adam_kwargs(draw: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "lr": draw(floats(1e-4, 0.5)),
        "betas": (draw(floats(0.0, 0.99)), draw(floats(0.5, 0.9999))),
        "eps": draw(st.sampled_from([1e-8, 1e-3])),
        "weight_decay": draw(st.sampled_from([0.0, 1e-2]) | floats(0.0, 0.1)),
        "amsgrad": draw(st.booleans()),
    }


def _rmsprop_kwargs(draw: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "lr": draw(floats(1e-4, 0.5)),
        "alpha": draw(floats(0.5, 0.999)),
        "eps": draw(st.sampled_from([1e-8, 1e-3])),
        "weight_decay": draw(st.sampled_from([0.0, 1e-2]) | floats(0.0, 0.1)),
        "momentum": draw(st.sampled_from([0.0, 0.9]) | floats(0.0, 0.99)),
        "centered": draw(st.booleans()),
    }


@dataclass(frozen=True)
class OptimizerSpec:
    """``options`` go to the framework's optimizer only: a switch of its own (such as Adam's
    ``capturable``), checked against torch's default update."""

    cls: type
    reference: type
    kwargs: Callable[[Callable[[Any], Any]], dict[str, Any]]
    name: str = ""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.cls.__name__)

    def cases(self) -> st.SearchStrategy[dict[str, Any]]:
        @st.composite
        def draw_case(draw: Callable[[Any], Any]) -> dict[str, Any]:
            return {
                "kwargs": draw(st.composite(lambda d: self.kwargs(d))()),
                "shapes": draw(st.lists(shapes(1, 2, 1, 4), min_size=1, max_size=3)),
                "steps": draw(st.integers(1, 6)),
                "seed": draw(st.integers(0, 2**31 - 1)),
            }

        return draw_case()


OPTIMIZER_SPECS = [
    OptimizerSpec(optim.SGD, torch.optim.SGD, _sgd_kwargs),
    OptimizerSpec(optim.Adam, torch.optim.Adam, _adam_kwargs),
    OptimizerSpec(optim.RMSprop, torch.optim.RMSprop, _rmsprop_kwargs),
    OptimizerSpec(optim.Adam, torch.optim.Adam, _adam_kwargs, name="Adam-capturable", options={"capturable": True}),
]


def check_optimizer(spec: OptimizerSpec, case: dict[str, Any], safety: float = 4.0) -> CheckResult:
    """Run ``steps`` updates of both optimizers from the same parameters and gradients."""
    result = CheckResult("torch_optim")
    generator = torch.Generator().manual_seed(case["seed"])
    params = [torch.randn(s, generator=generator, dtype=torch.float64) for s in case["shapes"]]
    grads = [torch.zeros_like(p) for p in params]
    twins = [p.clone().requires_grad_(True) for p in params]
    ours = spec.cls(list(zip(params, grads)), **case["kwargs"], **spec.options)
    theirs = spec.reference(twins, foreach=False, **case["kwargs"])
    u = unit_roundoff(torch.float64)
    for step in range(1, case["steps"] + 1):
        for p, g, t in zip(params, grads, twins):
            fresh = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            g.copy_(fresh)
            t.grad = fresh.clone()
        ours.step()
        theirs.step()
        for i, (p, t) in enumerate(zip(params, twins)):
            tolerance = safety * u * OPERATIONS_PER_STEP * step * (t.detach().abs() + case["kwargs"]["lr"])
            result.merge(f"step {step} param[{i}]", p, t.detach(), tolerance, ("framework", "torch.optim"))
    return result


def run_optimizer_spec(spec: OptimizerSpec, profile: str = "ci", seed: int = 0, shrink: bool = True) -> SpecResult:
    result = SpecResult(spec.name)
    summary = result.checks.setdefault("torch_optim", CheckSummary())
    failure: dict[str, Any] = {}
    start = time.perf_counter()

    @settings(
        max_examples=PROFILES[profile]["max_examples"] * 2,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else []),
        verbosity=Verbosity.quiet,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(case=spec.cases())
    def matches_torch(case: dict[str, Any]) -> None:
        check = check_optimizer(spec, case)
        result.cases += 1
        summary.add(check)
        if not check.ok:
            failure.update(case=case, message=f"{spec.name}: {check}")
            raise AssertionError(str(check))

    try:
        matches_torch()
    except AssertionError:
        result.ok = False
        summary.ok = False
        text = json.dumps(failure["case"], sort_keys=True)
        result.failure = {
            "check": "torch_optim",
            "message": failure["message"],
            "case": text,
            "replay": f"python -m verification --only {spec.name} --replay '{text}'",
        }
    result.seconds = time.perf_counter() - start
    return result


def with_class(spec: OptimizerSpec, cls: type, name: str) -> OptimizerSpec:
    return dataclasses.replace(spec, cls=cls, name=name)
