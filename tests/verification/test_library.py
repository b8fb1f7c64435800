"""verification.check_gradients on users' own modules: passes right ones, catches wrong ones."""

import pytest
import torch

from verification import assert_gradients_close, check_gradients


class Affine:
    """A user's module written from scratch (not a framework subclass): y = x W^T + b."""

    def __init__(self, n_in, n_out, error=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
        self.bias = torch.randn(n_out, generator=g, dtype=torch.float64)
        self.grad_weight = torch.zeros_like(self.weight)
        self.grad_bias = torch.zeros_like(self.bias)
        self.error = error  # (index, relative error) planted in the weight gradient

    def forward(self, x):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad_output):
        grad_w = grad_output.T @ self.x
        if self.error is not None:
            index, relative = self.error
            grad_w.view(-1)[index] *= 1 + relative
        self.grad_weight += grad_w
        self.grad_bias += grad_output.sum(0)
        return grad_output @ self.weight

    def param(self):
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]


def twin(module):
    linear = torch.nn.Linear(module.weight.shape[1], module.weight.shape[0]).double()
    return linear


def x_of(n, d):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_a_correct_module_passes_every_check():
    module = Affine(4, 3)
    report = check_gradients(module, x_of(5, 4), reference=twin(module))
    assert report.ok, str(report)


def test_one_part_in_a_million_in_one_element_fails_the_finite_differences_alone():
    module = Affine(4, 3, error=(5, 1e-6))
    report = check_gradients(module, x_of(5, 4))
    assert not report["finite_differences"].ok


def test_one_part_in_a_million_in_one_element_of_a_large_weight_fails_against_the_twin():
    module = Affine(40, 30, error=(417, 1e-6))
    report = check_gradients(module, x_of(8, 40), reference=twin(module))
    assert not report["twin"].ok


def test_a_single_wrong_element_of_a_large_weight_fails_the_probes():
    module = Affine(40, 30, error=(417, 0.5))
    report = check_gradients(module, x_of(8, 40))
    assert not report["finite_differences"].ok


@pytest.mark.parametrize("index", [0, 417, 1199])
def test_one_part_in_a_million_in_one_element_of_a_large_weight_fails_the_probes_without_a_twin(index):
    module = Affine(40, 30, error=(index, 1e-6))
    report = check_gradients(module, x_of(8, 40))
    assert not report["finite_differences"].ok, str(report)


class TanhFunction(torch.autograd.Function):
    """y = tanh(x), its backward with an optional (flat index, relative error) planted."""

    @staticmethod
    def forward(ctx, x, error):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        ctx.error = error
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        grad = (g * (1 - y * y)).contiguous()
        if ctx.error is not None:
            index, relative = ctx.error
            grad.view(-1)[index] *= 1 + relative
        return grad, None


@pytest.mark.parametrize("index", [0, 12345, 39999])
def test_one_part_in_a_million_in_one_element_of_a_40000_element_input_fails_the_probes(index):
    x = torch.randn(200, 200, generator=torch.Generator().manual_seed(index), dtype=torch.float64)
    report = check_gradients(TanhFunction, x, (index, 1e-6))
    assert not report["finite_differences"].ok, str(report)


def test_the_wrong_element_of_a_40000_element_input_is_named_by_halving_the_failing_probe():
    x = torch.randn(200, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    detail = check_gradients(TanhFunction, x, (12345, 1e-6))["finite_differences"].detail
    assert detail.startswith("input[0][61, 145]: backward"), detail  # 12345 = 61 * 200 + 145


def test_the_wrong_element_of_a_weight_too_large_to_search_element_by_element_is_named():
    module = Affine(40, 30, error=(417, 1e-3))  # 1,200 elements; 417 = 10 * 40 + 17
    detail = check_gradients(module, x_of(8, 40))["finite_differences"].detail
    assert detail.startswith("param[0][10, 17]: backward"), detail


@pytest.mark.parametrize("seed", range(5))
def test_correct_large_targets_pass_the_probes_whatever_the_draw(seed):
    x = torch.randn(200, 200, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert check_gradients(TanhFunction, x, None, seed=seed)["finite_differences"].ok
    assert check_gradients(Affine(40, 30, seed=seed), x_of(8, 40), seed=seed)["finite_differences"].ok


def test_correct_large_targets_pass_the_probes_with_the_callers_own_upstream_gradient():
    x = torch.randn(200, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert check_gradients(TanhFunction, x, None, grad_output=torch.ones_like(x))["finite_differences"].ok
    assert check_gradients(Affine(40, 30), x_of(8, 40), grad_output=torch.ones(8, 30, dtype=torch.float64)).ok


def test_the_report_names_the_check_the_tensor_the_element_and_the_tolerance():
    module = Affine(4, 3, error=(5, 1e-3))
    text = str(check_gradients(module, x_of(5, 4)))
    assert "finite_differences: FAILED" in text
    assert "param[0][1, 1]" in text  # element 5 of a (3, 4) weight
    assert "tolerance" in text and "relative error" in text


@pytest.mark.parametrize("relative", [1e-6, 1e-3])
def test_the_reported_relative_error_is_the_planted_one(relative):
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0, 5] = 1.0  # |gradient| 0.42 there, above the tensor's mean magnitude: relative to itself
    result = check_gradients(TanhFunction, x, (5, relative))["finite_differences"]
    assert not result.ok
    assert result.worst_error == pytest.approx(relative, rel=1e-3), str(result)
    assert f"(relative error {relative:.3g} of |finite difference|" in result.detail, result.detail


def test_a_difference_within_the_bound_where_the_truth_is_zero_is_not_a_large_relative_error():
    from verification.report import CheckResult

    result = CheckResult("low_precision")
    zero, rounding = torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 3e-9, -1e-9], dtype=torch.float64)
    result.merge_norms("input[0]", rounding, zero, {"max": 1e-8, "mean": 1e-8}, ("float32", "float64"))
    assert result.ok and result.worst_error <= 1.0, str(result)


def test_a_failing_element_reports_its_own_relative_error_beside_a_far_larger_one():
    from verification.report import CheckResult

    result = CheckResult("finite_differences")
    expected = torch.tensor([1e12, 10.0, 0.5], dtype=torch.float64)  # 1e12: an element next to a pole
    analytic = expected * torch.tensor([1.0, 1 + 1e-6, 1.0], dtype=torch.float64)
    result.merge("input[0]", analytic, expected, torch.tensor([1e4, 1e-8, 1e-12], dtype=torch.float64), ("a", "e"))
    assert not result.ok and "input[0][1]" in result.detail
    assert result.worst_error == pytest.approx(1e-6, rel=1e-6), str(result)
    assert "relative error 1e-06 of |e| 10" in result.detail, result.detail


def test_assert_gradients_close_raises_assertion_error_with_the_report():
    with pytest.raises(AssertionError, match="finite_differences: FAILED"):
        assert_gradients_close(Affine(4, 3, error=(0, 1e-3)), x_of(5, 4))


def test_a_backward_that_ignores_grad_output_fails():
    class IgnoresUpstream(Affine):
        def backward(self, grad_output):
            return super().backward(torch.ones_like(grad_output))

    report = check_gradients(IgnoresUpstream(4, 3), x_of(5, 4))
    assert not report.ok


def test_a_backward_that_overwrites_instead_of_accumulating_fails():
    class Overwrites(Affine):
        def backward(self, grad_output):
            self.grad_weight.zero_()
            return super().backward(grad_output)

    report = check_gradients(Overwrites(4, 3), x_of(5, 4))
    assert not report["accumulation"].ok


def test_a_backward_that_modifies_grad_output_fails():
    class Mutates(Affine):
        def backward(self, grad_output):
            result = super().backward(grad_output)
            grad_output.mul_(2)
            return result

    report = check_gradients(Mutates(4, 3), x_of(5, 4))
    assert not report.ok


def test_unknown_tolerance_options_are_rejected():
    with pytest.raises(TypeError, match="unknown options"):
        check_gradients(Affine(2, 2), x_of(2, 2), rtol=1e-3)


def test_a_reference_with_another_output_shape_fails_the_twin_check_with_both_shapes():
    module = Affine(4, 3)
    wrong = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Flatten(0)).double()
    report = check_gradients(module, x_of(5, 4), reference=wrong)
    assert not report["twin"].ok and "(5, 3) differs from the reference's (15,)" in str(report)
