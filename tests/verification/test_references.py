"""A hand-written module against a reference: parameters held in another layout than the
reference's, references without parameters, and parameters that fit no layout."""

import pytest
import torch

from verification import check_gradients


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class InOutLinear:
    """An EE-559 Linear holding its weight as (in, out), y = x w + b (torch.nn.Linear: (out, in)).

    ``wrong_weight_gradient``: g^T x, the (out, in) gradient, transposed for a square layer."""

    def __init__(self, inputs, outputs, bias_shape=None, wrong_weight_gradient=False):
        self.w = randn(inputs, outputs, seed=1)
        self.b = randn(*(bias_shape or (outputs,)), seed=2)
        self.dw, self.db = torch.zeros_like(self.w), torch.zeros_like(self.b)
        self.wrong = wrong_weight_gradient

    def forward(self, x):
        self.x = x
        return x @ self.w + self.b

    def backward(self, g):
        self.dw += g.T @ self.x if self.wrong else self.x.T @ g
        self.db += g.sum(0).reshape(self.b.shape)
        return g @ self.w.T

    def param(self):
        return [(self.w, self.dw), (self.b, self.db)]


def linear(inputs, outputs):
    return torch.nn.Linear(inputs, outputs).double()


@pytest.mark.parametrize(("inputs", "outputs"), [(4, 3), (4, 4)])
def test_a_weight_held_transposed_is_compared_with_the_reference_in_its_own_layout(inputs, outputs):
    report = check_gradients(InOutLinear(inputs, outputs), randn(8, inputs, seed=0), reference=linear(inputs, outputs))
    assert report.ok, str(report)
    assert report["twin"].status == "passed" and report["twin"].compared == 4  # output, input, weight, bias
    assert any(
        f"param[0] ({inputs}, {outputs}) as weight ({outputs}, {inputs}) (transposed)" in n for n in report.notes
    )


def test_a_bias_held_as_a_row_is_compared_with_the_references_vector():
    report = check_gradients(InOutLinear(4, 3, bias_shape=(1, 3)), randn(8, 4, seed=0), reference=linear(4, 3))
    assert report.ok, str(report)
    assert any("param[1] (1, 3) as bias (3,)" in n for n in report.notes)


def test_a_square_weight_gradient_transposed_still_fails_against_the_reference_in_the_targets_layout():
    wrong = InOutLinear(4, 4, wrong_weight_gradient=True)
    report = check_gradients(wrong, randn(8, 4, seed=0), reference=linear(4, 4))
    assert not report["twin"].ok and report["twin"].detail.startswith("param[0].grad")
    assert not report["finite_differences"].ok


def test_parameters_that_fit_no_layout_of_the_reference_fail_twin_naming_them_and_the_rest_is_checked():
    class NoBias(InOutLinear):
        def param(self):
            return [(self.w, self.dw)]

        def forward(self, x):
            self.x = x
            return x @ self.w

    report = check_gradients(NoBias(4, 3), randn(8, 4, seed=0), reference=linear(4, 3))
    assert not report["twin"].ok
    assert "1 parameters (['param[0]']), but the reference has 2 (['weight', 'bias'])" in report["twin"].detail
    assert report["finite_differences"].status == "passed"


class RowMajorLinear(InOutLinear):
    """A correct Linear; ``wrong`` scales its bias gradient."""

    def __init__(self, wrong=False):
        super().__init__(4, 3)
        self.scale = 1.001 if wrong else 1.0

    def backward(self, g):
        grad = super().backward(g)
        self.db *= self.scale
        return grad


def test_a_reference_function_without_parameters_leaves_the_parameter_gradients_to_finite_differences():
    module = RowMajorLinear()
    report = check_gradients(module, randn(8, 4, seed=0), reference=lambda x: x @ module.w + module.b)
    assert report.ok, str(report)
    assert any("the reference has no parameters, so the gradients of param[0], param[1]" in n for n in report.notes)
    wrong = RowMajorLinear(wrong=True)
    report = check_gradients(wrong, randn(8, 4, seed=0), reference=lambda x: x @ wrong.w + wrong.b)
    assert report["twin"].ok and not report["finite_differences"].ok


class ForgotParam:
    """A Linear whose param() lists nothing (the base class's), so its weight's gradient is never handed out."""

    def __init__(self):
        self.w, self.dw = randn(3, 4, seed=1), torch.zeros(3, 4, dtype=torch.float64)

    def forward(self, x):
        self.x = x  # kept for backward: overwritten by every forward, never a parameter
        return x @ self.w.T

    def backward(self, g):
        self.dw += 123.0  # never checked: param() does not hand it out
        return g @ self.w

    def param(self):
        return []


def test_a_tensor_forward_reads_that_param_does_not_list_is_named_as_unchecked():
    report = check_gradients(ForgotParam(), randn(8, 4, seed=0))
    (note,) = [n for n in report.notes if "param() does not list" in n]
    assert "w (3, 4)" in note and "x (" not in note and "dw" not in note


def test_a_param_that_returns_nothing_is_named_as_such():
    class NoReturn(ForgotParam):
        def param(self):
            pairs = [(self.w, self.dw)]  # noqa: F841  (the return forgotten)

    with pytest.raises(TypeError, match=r"NoReturn.param\(\) returned None: .* is a return missing\?"):
        check_gradients(NoReturn(), randn(8, 4, seed=0))


class DefaultDtypeReLU:
    """EE-559 style, written for torch's float32 default: its buffers take the default dtype."""

    def forward(self, x):
        self.positive = x > 0
        out = torch.zeros(x.shape)
        out[self.positive] = x[self.positive]
        return out

    def backward(self, g):
        grad = torch.zeros(g.shape)
        grad[self.positive] = g[self.positive]
        return grad

    def param(self):
        return []


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_module_allocating_with_the_default_dtype_runs_in_its_inputs_precision_and_the_default_is_restored(dtype):
    x = randn(6, 5, seed=0).to(dtype)
    x = x + torch.sign(x) * 0.1  # off the kink
    before = torch.get_default_dtype()
    report = check_gradients(DefaultDtypeReLU(), x)
    assert report.ok, str(report)
    assert torch.get_default_dtype() == before


def test_running_statistics_an_eval_mode_forward_reads_are_buffers_not_unlisted_parameters():
    import framework as fw

    norm = fw.BatchNorm1d(4).to(dtype=torch.float64)
    norm.eval()  # forward reads running_mean and running_var, which named_buffers() lists
    report = check_gradients(norm, randn(8, 4, seed=0))
    assert report.ok and not [n for n in report.notes if "param() does not list" in n]


def test_an_inplace_module_that_leaves_its_input_as_it_was_is_not_taken_for_an_empty_container():
    import framework as fw

    report = check_gradients(fw.ReLU(inplace=True), randn(5, seed=0).abs() + 0.5)
    assert report.ok and not [n for n in report.notes if "identity" in n]
    empty = check_gradients(fw.Sequential(), randn(5, seed=0))
    assert [n for n in empty.notes if "returned its input[0] itself, unchanged" in n]
