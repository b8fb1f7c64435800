"""Where the function or its inputs are not finite, the verifier never passes what it could not
judge: those checks are inconclusive (and the report says why), while a NaN or infinite
gradient where the truth is finite still fails."""

import math

import torch

from verification import check_gradients
from verification.report import CheckResult

F64 = torch.float64


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_an_overflowing_function_is_inconclusive_not_failed_nor_passed():
    report = check_gradients(torch.exp, torch.tensor([700.0, 710.0], dtype=F64))  # exp(710) = inf
    assert report.verdict == "inconclusive" and not report.ok
    checks = statuses(report)
    assert checks["finite_differences"] == "inconclusive"
    assert "overflows or is undefined" in report["finite_differences"].inconclusive


def test_a_non_finite_input_is_named_in_the_report_and_nothing_passes_on_its_account():
    report = check_gradients(torch.sin, torch.tensor([math.inf, 1.0], dtype=F64))
    assert report.verdict == "inconclusive"
    assert any("input[0] holds non-finite values (inf at flat index 0)" in note for note in report.notes)


def test_a_nan_gradient_where_the_true_gradient_is_finite_still_fails():
    class ZeroOverZero(torch.autograd.Function):
        """y = x^2 with a backward that computes 2 x^2 / x: NaN at x = 0, where the truth is 0."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2 * x * x / x

    report = check_gradients(ZeroOverZero, torch.tensor([0.0, 1.5, -2.0], dtype=F64))
    assert report.verdict == "failed"
    assert statuses(report)["finite_differences"] == "failed"


def test_identical_infinities_in_two_runs_are_deterministic():
    report = check_gradients(torch.exp, torch.tensor([700.0, 710.0], dtype=F64))
    assert statuses(report)["determinism"] == "passed"


def test_an_element_whose_tolerance_is_infinite_is_not_judged_and_the_check_is_not_passed():
    result = CheckResult("example")
    result.merge(
        "output",
        torch.tensor([1.0, 5.0], dtype=F64),
        torch.tensor([1.0, 2.0], dtype=F64),
        torch.tensor([1e-9, math.inf], dtype=F64),
        ("ours", "truth"),
    )
    assert result.status == "inconclusive" and "1 element(s) not judged" in result.inconclusive


def test_equal_infinities_agree_and_a_wrong_finite_element_beside_them_still_fails():
    result = CheckResult("example")
    result.merge(
        "output",
        torch.tensor([-math.inf, 2.5], dtype=F64),
        torch.tensor([-math.inf, 2.0], dtype=F64),
        torch.tensor([1e-9, 1e-9], dtype=F64),
        ("ours", "truth"),
    )
    assert result.status == "failed"
    assert "output[1]" in result.detail


def test_outputs_that_overflow_to_both_infinities_within_a_step_are_inconclusive_not_a_crash():
    # exp(709.75) is finite, exp(709.75 + h) is not: the changes are +inf and -inf, which no exact sum takes.
    x, ones = torch.tensor([709.75], dtype=F64), torch.ones(2, 1, dtype=F64)
    report = check_gradients(lambda x: torch.stack([x.exp(), -x.exp()]), x, grad_output=ones)
    assert report.verdict == "inconclusive" and report["finite_differences"].inconclusive


def test_an_input_closer_to_zero_than_the_step_is_inconclusive_with_the_step_that_checks_it():
    """log at 1e-8: the default step (1e-4) crosses 0, where log is undefined. The report names the
    element and a step below it, and that step then checks the gradient."""
    x = torch.tensor([1e-8, 1.0, 2.0], dtype=F64)
    report = check_gradients(torch.log, x)
    assert report["finite_differences"].status == "inconclusive"
    assert "input[0][0] = 1e-08 lies within the step" in report["finite_differences"].inconclusive
    assert "(eps=1e-09)" in report["finite_differences"].inconclusive
    assert check_gradients(torch.log, x, eps=1e-9).ok


def test_a_nan_input_is_named_in_the_report_and_the_check_is_inconclusive_not_a_crash():
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[0, 0] = math.nan
    report = check_gradients(lambda t: t * t, x)
    assert report.verdict == "inconclusive"
    assert any("nan" in note for note in report.notes)


def test_outputs_whose_changes_underflow_leave_finite_differences_inconclusive_not_failed():
    """x^2 at 1e-300 is 0 at every step: the differences cannot show the gradient 2e-300."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1e-300
    report = check_gradients(lambda t: t * t, x)
    assert report["finite_differences"].status == "inconclusive"
    assert "underflows" in report["finite_differences"].inconclusive


def test_a_gradient_large_enough_to_show_still_fails_where_the_outputs_underflow():
    """The same function with a backward that returns 1e-3 where the truth is 2e-300."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1e-300
    wrong = check_gradients(lambda t: (t * t).detach() + 1e-3 * (t - t.detach()), x, checks=["finite_differences"])
    assert wrong["finite_differences"].status == "failed"


def test_a_float32_result_whose_truth_is_beyond_float32s_range_is_inconclusive_not_failed():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)) * 1e20  # x^2 near 1e40 > 3.4e38
    report = check_gradients(lambda t: t * t, x, checks=["low_precision"])
    assert report["low_precision"].status == "inconclusive"
    assert "beyond the largest float32 number" in report["low_precision"].inconclusive
