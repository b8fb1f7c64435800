"""The CI gate: every registered module's backward passes every check over drawn cases."""

import pytest

import framework
from verification.composition import STACK_SPEC
from verification.optimizers import OPTIMIZER_SPECS, run_optimizer_spec
from verification.runner import run_spec
from verification.specs import SPECS


def test_every_registered_module_has_a_verification_spec():
    assert {cls.__name__ for cls in framework.modules()} == {spec.name for spec in SPECS}


def test_every_spec_verifies_a_registered_module():
    registered = set(framework.modules())
    for spec in SPECS:
        assert any(issubclass(spec.module, cls) for cls in registered), spec.name


@pytest.mark.parametrize("spec", [*SPECS, STACK_SPEC], ids=str)
def test_backward_passes_every_check(spec):
    result = run_spec(spec, profile="ci", seed=0)
    assert result.ok, f"{result.failure['message']}\nreplay: {result.failure['replay']}"


@pytest.mark.parametrize("spec", OPTIMIZER_SPECS, ids=lambda s: s.name)
def test_optimizer_matches_torch_optim(spec):
    result = run_optimizer_spec(spec, profile="ci", seed=0)
    assert result.ok, result.failure["message"]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_correct_modules_pass_with_other_seeds(spec, seed):
    result = run_spec(spec, profile="dev", seed=seed)
    assert result.ok, f"{result.failure['message']}\nreplay: {result.failure['replay']}"
