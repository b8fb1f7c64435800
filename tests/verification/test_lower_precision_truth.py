"""A lower precision is judged against the target's own float64 backward, so a run asked for a lower
precision alone checks float64 first: a backward wrong in every precision alike never passes there."""

from pathlib import Path

import torch

from verification.__main__ import main
from verification.discovery import import_file
from verification.runner import run_spec, with_truth
from verification.spec import Input, Spec

BAD = Path(__file__).resolve().parent / "user_specs" / "bad_ops.py"
bad_ops = import_file(BAD)  # WrongCube: y = x^3 with the derivative 3 x, wrong in every precision


def test_float64_is_added_first_to_lower_precisions_asked_for_alone():
    assert with_truth([torch.bfloat16, torch.float32]) == [torch.float64, torch.float32, torch.bfloat16]
    assert with_truth([torch.float32, torch.float64]) == [torch.float64, torch.float32]
    assert with_truth([torch.float32], truth_checked_elsewhere=True) == [torch.float32]


def test_a_float32_run_alone_fails_a_gradient_wrong_in_every_precision():
    result = run_spec(bad_ops.WRONG, profile="dev", dtypes=[torch.float32])
    assert not result.ok
    assert result.dtypes == ["float64", "float32"]
    assert "finite_differences" in result.failure["check"]


def test_a_spec_declaring_only_lower_precisions_is_still_checked_against_finite_differences_in_float64():
    # Built here, not bound at module level, where the verification plugin would collect it as an item.
    spec = Spec(bad_ops.WrongCube, inputs=[Input((3, 4))], dtypes=(torch.float32, torch.bfloat16))
    result = run_spec(spec, profile="dev")
    assert not result.ok and "finite_differences" in result.failure["check"]


def test_the_command_line_with_a_lower_dtype_alone_fails_it(capsys):
    assert main([str(BAD), "--only", "WrongCube", "--dtype", "float32", "--profile", "dev"]) == 1
    assert "VERIFICATION FAILED" in capsys.readouterr().out
