"""The checker must be able to fail: every deliberately wrong backward pass is caught."""

import pytest

import framework
from verification.mutants import MUTANTS, run_mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_caught(mutant):
    outcome = run_mutant(mutant, profile="ci", seed=0, device="cpu")
    assert not outcome.ok, f"{mutant.name} ({mutant.description}) survived {outcome.cases} cases"
    # Caught by a check, not by the checker crashing on it.
    assert outcome.failure["check"] != "exception", outcome.failure["message"]


def test_mutants_are_not_registered_modules():
    registered = set(framework.modules())
    assert not any(m.cls in registered for m in MUTANTS)


def test_every_verified_module_has_a_mutant_the_checker_must_catch():
    from verification.specs import SPECS

    assert {spec.name for spec in SPECS} <= {m.target for m in MUTANTS}
