"""The verifier judges a gradient at its own scale: inputs near 1e-100 or 1e150 are checked as
sharply as inputs near 1 (the finite-difference step follows a tensor's magnitude, the rounding
floors follow the gradients', and no tolerance overflows), so a backward off by one part in a
million fails there too."""

import pytest
import torch

from verification import check_gradients

F64 = torch.float64
SCALES = [1e-100, 1e-12, 1e-6, 1e6, 1e150]


def square(error: float = 0.0, element: int | None = None) -> type[torch.autograd.Function]:
    """y = x^2, whose backward is off by a factor 1 + error: everywhere, or at one flat element."""

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            factor = torch.ones_like(x)
            if element is None:
                factor += error
            else:
                factor.view(-1)[element] += error
            return 2 * g * x * factor

    return Square


def inputs(scale: float) -> torch.Tensor:
    return torch.randn(6, 5, dtype=F64, generator=torch.Generator().manual_seed(0)) * scale


@pytest.mark.parametrize("scale", SCALES)
def test_a_correct_backward_passes_at_any_input_scale(scale):
    assert check_gradients(square(), inputs(scale)).ok


@pytest.mark.parametrize("scale", SCALES)
def test_a_backward_off_by_one_part_in_a_million_fails_at_any_input_scale(scale):
    report = check_gradients(square(1e-6), inputs(scale))
    assert report.verdict == "failed" and report["finite_differences"].status == "failed"


@pytest.mark.parametrize("scale", SCALES)
def test_one_element_off_by_one_part_in_a_million_fails_at_any_input_scale(scale):
    report = check_gradients(square(1e-6, element=7), inputs(scale))
    assert report["finite_differences"].status == "failed"
    assert "input[0][1, 2]" in report["finite_differences"].detail


def test_inputs_near_1e200_are_judged_where_their_squares_would_overflow_a_tolerance():
    report = check_gradients(lambda x: 3 * x, inputs(1e200))
    assert report.ok, str(report)


def test_a_tensor_of_values_near_1e_minus_9_is_stepped_at_its_own_scale():
    """log at 1e-9, 2e-9, 3e-9: a step of 1e-4 would cross 0; one of eps times the tensor's scale does not."""
    report = check_gradients(torch.log, torch.tensor([1e-9, 2e-9, 3e-9], dtype=F64))
    assert report.ok, str(report)


def test_subnormal_outputs_leave_finite_differences_inconclusive_and_say_why():
    """Below 2.2e-308 float64 keeps fewer digits the smaller the value: no finite difference there
    resolves a gradient to a part in a million, so the check says so instead of passing."""
    report = check_gradients(lambda x: x * 2.2e-313, inputs(1.0))
    assert report.verdict == "inconclusive"
    assert "a subnormal number" in report["finite_differences"].inconclusive


def test_the_hyper_parameter_strategy_draws_no_magnitude_that_would_make_outputs_subnormal():
    from hypothesis import errors, find

    from verification.strategies import TINY_HYPERPARAMETER, floats

    with pytest.raises(errors.NoSuchExample):
        find(floats(-0.5, 2.0), lambda v: 0 < abs(v) < TINY_HYPERPARAMETER)


@pytest.mark.parametrize(("small", "largest"), [(1e-2, 1e3), (1e-4, 1e3), (1e-6, 1e3), (1e-1, 1e6)])
def test_a_small_elements_wrong_gradient_fails_beside_outputs_up_to_a_billion_times_larger(small, largest):
    """The rounding of outputs that a shift of the element leaves unchanged does not widen its
    tolerance (torch.autograd.gradcheck catches the case 1e-4 beside 1e3 too)."""
    x = torch.tensor([small, 0.7, -1.3, largest, 0.4], dtype=F64)
    report = check_gradients(square(-2.0, element=0), x)  # the first gradient's sign flipped
    assert report["finite_differences"].status == "failed"
    assert "input[0][0]" in report["finite_differences"].detail


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "function",
    [
        pytest.param(lambda x: x * x, id="elementwise"),
        pytest.param(lambda x: x * x.sum(), id="every-output-reads-every-input"),
        pytest.param(lambda x: torch.softmax(x, 0) * 1e6 + x.exp(), id="softmax-beside-large-outputs"),
        pytest.param(lambda x: x + 1e-12 * x.roll(1) ** 3, id="outputs-that-barely-read-another-element"),
    ],
)
def test_correct_gradients_of_mixed_scale_inputs_pass(function, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(7, dtype=F64, generator=generator) * torch.tensor([1e-6, 1e-3, 1, 1, 1e2, 1e3, 1], dtype=F64)
    assert check_gradients(function, x, seed=seed).ok
