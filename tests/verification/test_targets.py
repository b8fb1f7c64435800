"""check_gradients accepts every kind of target a user has, and says clearly what it cannot take."""

import dataclasses
import re

import pytest
import torch
from torch import Tensor

import framework as fw
from verification import assert_gradients_close, check_gradients
from verification.targets import TargetError


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class Exp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class ScaledMatmul(torch.autograd.Function):
    """y = alpha * x @ w, with a non-tensor argument passed through."""

    @staticmethod
    def forward(ctx, x, w, alpha):
        ctx.save_for_backward(x, w)
        ctx.alpha = alpha
        return alpha * x @ w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return ctx.alpha * g @ w.T, ctx.alpha * x.T @ g, None


class CustomLinear(torch.nn.Module):
    """A torch.nn.Module whose forward runs a custom Function: its parameters are checked too."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(x64(3, 4, seed=5))

    def forward(self, x):
        return ScaledMatmul.apply(x, self.weight.T, 1.0)


class EE559MSE:
    """A loss in the EE-559 protocol: backward() takes no argument."""

    def forward(self, prediction, target):
        self.difference = prediction - target
        return (self.difference**2).mean()

    def backward(self):
        return 2 * self.difference / self.difference.numel()

    def param(self):
        return []


@pytest.mark.parametrize(
    "target",
    [Exp, Exp.apply, torch.exp, lambda x: Exp.apply(x) * 2 - 1],
    ids=["Function subclass", "Function.apply", "torch op", "lambda"],
)
def test_a_correct_target_of_every_kind_passes(target):
    report = check_gradients(target, x64(4, 3))
    assert report.ok, str(report)


def test_the_report_says_what_kind_of_target_it_checked():
    assert check_gradients(Exp, x64(3)).kind == "torch.autograd.Function"
    assert check_gradients(torch.sin, x64(3)).kind == "callable"
    assert check_gradients(CustomLinear(), x64(2, 4)).kind == "torch.nn.Module"
    assert check_gradients(fw.Tanh(), x64(3)).kind == "framework protocol"


def test_non_tensor_arguments_are_passed_through_and_not_differentiated():
    report = check_gradients(ScaledMatmul, x64(2, 3), x64(3, 4, seed=1), 0.5)
    assert report.ok, str(report)
    assert "input[2]" not in str(report)


class GradientForWOnly(torch.autograd.Function):
    """x @ w whose backward returns no gradient for x."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x)
        return x @ w

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return None, x.T @ g


def test_only_the_inputs_that_require_grad_are_differentiated():
    x, w = x64(2, 3), x64(3, 4, seed=1)
    assert check_gradients(GradientForWOnly, x, w.requires_grad_()).ok
    assert not x.requires_grad


def test_a_missing_gradient_for_an_input_that_requires_grad_fails_and_names_it():
    report = check_gradients(GradientForWOnly, x64(2, 3), x64(3, 4, seed=1))
    assert not report["finite_differences"].ok
    assert "no gradient (None) for the input input[0]" in report["finite_differences"].detail


def test_a_floating_input_left_out_of_the_check_is_named_in_the_report():
    x = x64(4, 3).requires_grad_()
    report = check_gradients(lambda a, b: (a @ b).tanh(), x, x64(3, 2, seed=1))
    assert report.ok
    assert "input[1]: floating-point but not requiring grad, passed through and not checked" in str(report)


def test_a_modules_bound_forward_as_target_says_its_parameters_are_not_checked():
    module = torch.nn.Linear(3, 2).double()
    report = check_gradients(module.forward, x64(4, 3))
    assert "that module's parameters are not differentiated; pass the Linear itself" in str(report)
    assert "not inputs" not in str(report)  # one note for the module's parameters, not two
    assert "not differentiated" not in str(check_gradients(module, x64(4, 3)))


class MultiplyWithWrongWeightGradient(torch.autograd.Function):
    """y = x * w; the gradient of w is 1.5 times too large."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, 1.5 * g * x


def test_a_tensor_requiring_grad_read_from_a_closure_is_named_as_not_checked():
    weight = torch.nn.Parameter(x64(3, seed=1))
    report = check_gradients(lambda x: MultiplyWithWrongWeightGradient.apply(x, weight), x64(3))
    assert report.ok  # the input's gradient is right; the weight's is not compared, and the report says so
    assert "depend on 1 tensor(s) requiring grad that are not inputs ((3,) float64)" in str(report)
    assert "their gradients are not checked; pass them as inputs" in str(report)


def test_the_same_tensor_passed_as_an_input_is_checked_and_its_wrong_gradient_fails():
    weight = x64(3, seed=1).requires_grad_()
    report = check_gradients(MultiplyWithWrongWeightGradient, x64(3).requires_grad_(), weight)
    assert not report.ok and "not inputs" not in str(report)


def test_a_target_reading_only_its_inputs_gets_no_note_about_other_tensors():
    assert check_gradients(lambda a, b: (a * b).sin(), x64(3), x64(3, seed=1)).notes == []


def test_integer_index_tensors_are_passed_through():
    index = torch.tensor([2, 0, 2, 1])
    report = check_gradients(lambda table, i: table[i] * 3, x64(3, 5), index)
    assert report.ok, str(report)


def test_a_module_with_custom_backward_code_has_its_parameters_checked():
    class WrongWeightGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x @ w

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g @ w.T, 1.01 * (x.T @ g)

    class Layer(CustomLinear):
        def forward(self, x):
            return WrongWeightGradient.apply(x, self.weight.T)

    report = check_gradients(Layer(), x64(2, 4))
    assert not report["finite_differences"].ok
    assert "weight" in report["finite_differences"].detail


def test_a_torch_library_custom_op_is_a_target():
    @torch.library.custom_op("gradcheck_harness_tests::cube", mutates_args=())
    def cube(x: torch.Tensor) -> torch.Tensor:
        return x**3

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x * x

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    cube.register_autograd(backward, setup_context=setup_context)
    assert check_gradients(cube, x64(5), reference=lambda x: x**3).ok


def test_an_ee559_loss_whose_backward_takes_no_argument_is_checked_and_the_report_says_so():
    report = check_gradients(EE559MSE(), x64(4, 3), target=x64(4, 3, seed=1))
    assert report.ok, str(report)
    assert any("takes no upstream gradient" in note for note in report.notes)


@pytest.mark.parametrize(
    ("bug", "factor"),
    [("missing 1/N", lambda n: n), ("factor 2", lambda n: 2.0), ("sign", lambda n: -1.0)],
)
def test_classic_ee559_loss_bugs_are_caught(bug, factor):
    class Wrong(EE559MSE):
        def backward(self):
            return factor(self.difference.numel()) * super().backward()

    report = check_gradients(Wrong(), x64(4, 3), target=x64(4, 3, seed=1), reference=torch.nn.MSELoss())
    assert not report["finite_differences"].ok and not report["twin"].ok


def test_a_loss_with_the_framework_protocol_takes_the_upstream_gradient():
    assert check_gradients(fw.MSELoss(), x64(3, 2), target=x64(3, 2, seed=2), reference=torch.nn.MSELoss()).ok


@pytest.mark.parametrize(
    ("target", "args", "error", "message"),
    [
        (int, (x64(3),), TypeError, "int is a class"),
        (object(), (x64(3),), TypeError, "is not a target"),
        (torch.sin, (3, "a"), ValueError, "no floating-point tensor"),
        (lambda a, b: a + b, (x64(3), x64(3).float()), ValueError, "mix dtypes"),
        (lambda x: x.sum().item(), (x64(3),), TypeError, "forward returned float, expected Tensors"),
    ],
    ids=["a class", "an object", "no tensor", "mixed dtypes", "a number out"],
)
def test_what_is_not_a_valid_target_or_call_is_a_clear_error(target, args, error, message):
    with pytest.raises(error, match=message):
        check_gradients(target, *args)


def test_a_backward_returning_fewer_gradients_than_inputs_is_a_clear_error():
    class TwoInputs:
        def forward(self, a, b):
            return a * b

        def backward(self, g):
            return g

        def param(self):
            return []

    with pytest.raises(TypeError, match=r"TwoInputs.backward returned 1 gradient\(s\), expected one per input"):
        check_gradients(TwoInputs(), x64(3), x64(3, seed=1))


def test_a_gradient_of_the_wrong_shape_is_a_clear_error():
    class WrongShape:
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return g.sum(0)

        def param(self):
            return []

    with pytest.raises(ValueError, match=r"gradient of shape \(3,\) for input\[0\], whose shape is \(2, 3\)"):
        check_gradients(WrongShape(), x64(2, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_a_gradient_in_another_dtype_than_its_input_is_a_clear_error(dtype):
    # Every value check would pass it (a float64 gradient of a float32 input is only more
    # accurate), but the layer before would receive a gradient in the wrong dtype.
    class Promotes:
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return (g * 2).to(torch.float16 if g.dtype == torch.float64 else torch.float64)

        def param(self):
            return []

    with pytest.raises(ValueError, match=rf"gradient of dtype torch\.float\d+ on cpu for input\[0\], which is {dtype}"):
        check_gradients(Promotes(), x64(2, 3).to(dtype))


def test_a_parameter_gradient_in_another_dtype_than_its_parameter_is_a_clear_error():
    class HalfGradient(fw.Linear):
        def param(self):
            return [(p, g.half()) for p, g in super().param()]

    expected = r"param\(\)\[0\]: the gradient is torch\.float16 on cpu, the parameter torch\.float64"
    with pytest.raises(TypeError, match=expected):
        check_gradients(HalfGradient(3, 2).to(dtype=torch.float64), x64(4, 3))


class _Scale:
    """y = w x with a protocol module's param() given as data: what each test's student returns."""

    def __init__(self, param):
        self.w, self._param = torch.full((3,), 2.0, dtype=torch.float64), param

    def forward(self, x):
        return x * self.w

    def backward(self, g):
        return g * self.w

    def param(self):
        return self._param(self.w)


@pytest.mark.parametrize(
    "param, message",
    [
        pytest.param(
            lambda w: [(w, None)],
            r"param\(\)\[0\]: .*got \(a float64 tensor of shape \(3,\), None\): the gradient is None\. "
            r"The protocol's gradient is a tensor of the parameter's shape from the start \(zeros\)",
            id="gradient-None-until-backward",
        ),
        pytest.param(
            lambda w: [w],
            r"param\(\)\[0\]: .*got a float64 tensor of shape \(3,\) alone: "
            r"return \[\(parameter, gradient\), \.\.\.\]$",
            id="bare-parameter",
        ),
        pytest.param(
            lambda w: [(w, w.clone(), w.clone())],
            r"param\(\)\[0\]: expected a \(parameter, gradient\) pair of tensors, got \(a float64 tensor of "
            r"shape \(3,\), a float64 tensor of shape \(3,\), a float64 tensor of shape \(3,\)\)$",
            id="triple",
        ),
    ],
)
def test_a_param_entry_that_is_not_a_pair_of_tensors_is_named_by_shape_with_the_fix(param, message):
    with pytest.raises(TypeError, match=message) as raised:
        check_gradients(_Scale(param), x64(4, 3))
    assert "2." not in str(raised.value)  # described by dtype and shape, never by its numbers


def test_tensors_inside_a_list_are_a_clear_error_naming_the_fix():
    with pytest.raises(ValueError, match=r"inside a list, tuple or dict are not differentiated: pass each tensor"):
        check_gradients(lambda xs: xs[0] * xs[1], [x64(3), x64(3, seed=1)])


def test_a_tensor_keyword_argument_is_a_clear_error_naming_the_fix():
    with pytest.raises(TypeError, match=r"w: tensors are passed positionally"):
        check_gradients(lambda x, *, w: x * w, x64(3), w=x64(3, seed=1))


def test_a_module_given_inputs_of_another_dtype_is_told_which_parameter_differs():
    told = r"parameter 'weight' is float32 and the inputs float64.*module\.to\(torch\.float64\)"
    with pytest.raises(ValueError, match=told):
        check_gradients(torch.nn.Linear(4, 3), x64(5, 4))  # a float32 module, float64 inputs


class CastsToItsParameters(torch.nn.Module):
    """A float32 layer that casts whatever it is given: it runs on float64 inputs, in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.to(self.linear.weight.dtype)).double()


def test_a_float32_module_that_casts_float64_inputs_is_refused_not_judged_as_float64():
    # Judged as float64 its correct float32 weight gradient failed finite differences by 30 times
    # the tolerance: the precision checked is the parameters' too.
    with pytest.raises(ValueError, match=r"parameter 'linear\.weight' is float32 and the inputs float64"):
        check_gradients(CastsToItsParameters(), x64(5, 4))


def test_a_module_and_inputs_of_one_dtype_are_checked_in_it():
    assert check_gradients(CastsToItsParameters().double(), x64(5, 4)).ok


def test_a_module_class_given_as_reference_is_a_clear_error_naming_the_fix():
    with pytest.raises(TypeError, match=r"reference is the class Tanh, not a module: pass an instance, Tanh\(\.\.\.\)"):
        check_gradients(torch.tanh, x64(3), reference=torch.nn.Tanh)


def test_a_grad_output_of_the_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"grad_output has shape \(4,\), but the output .* has shape \(3,\)"):
        check_gradients(torch.sin, x64(3), grad_output=x64(4))


@pytest.mark.parametrize(
    ("target", "grad_output"),
    [
        (lambda a: {"sin": a.sin(), "cos": a.cos()}, {"sin": x64(3, seed=1), "cos": x64(3, seed=2)}),
        (lambda a: (a.sin(), [a.cos(), {"exp": a.exp()}]), (x64(3, seed=1), [x64(3, seed=2), {"exp": x64(3, seed=3)}])),
        (lambda a: (a.sin(), a.argmax()), (x64(3, seed=1), None)),
    ],
    ids=["dict", "nested", "with an integer output"],
)
def test_a_grad_output_shaped_as_the_output_is_matched_to_it_leaf_by_leaf(target, grad_output):
    assert check_gradients(target, x64(3), grad_output=grad_output).ok


@dataclasses.dataclass(frozen=True)
class SineAndCosine:
    """A model's output record: a dataclass of tensors."""

    sine: torch.Tensor
    cosine: torch.Tensor


class WrongCosine(torch.autograd.Function):
    """cos, with a backward off by one part in a million."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.cos()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -g * x.sin() * (1 + 1e-6)


def test_a_dataclass_output_is_checked_field_by_field():
    assert check_gradients(lambda a: SineAndCosine(a.sin(), a.cos()), x64(3)).ok
    report = check_gradients(lambda a: SineAndCosine(a.sin(), WrongCosine.apply(a)), x64(3))
    assert report["finite_differences"].status == "failed"


def test_a_grad_output_given_as_the_outputs_dataclass_is_matched_field_by_field():
    """The wrong cosine shows only where its field's upstream gradient is not zero."""
    target = lambda a: SineAndCosine(a.sin(), WrongCosine.apply(a))  # noqa: E731
    zeros, ones = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    assert check_gradients(target, x64(3), grad_output=SineAndCosine(ones, zeros))["finite_differences"].ok
    assert not check_gradients(target, x64(3), grad_output=SineAndCosine(zeros, ones))["finite_differences"].ok


def test_an_output_given_no_upstream_gradient_is_left_out_as_torch_autograd_backward_has_it():
    target = lambda a: (a.sin(), WrongCosine.apply(a))  # noqa: E731
    ones = torch.ones(3, dtype=torch.float64)
    assert check_gradients(target, x64(3), grad_output=(ones, None))["finite_differences"].ok
    assert not check_gradients(target, x64(3), grad_output=(None, ones))["finite_differences"].ok


def test_a_grad_output_of_nones_alone_is_a_clear_error():
    with pytest.raises(ValueError, match="every grad_output is None"):
        check_gradients(lambda a: (a.sin(), a.cos()), x64(3), grad_output=(None, None))


class SineAndCosineModule:
    """The forward/backward/param() protocol, with a dataclass for output and for upstream gradient."""

    def forward(self, x):
        self.x = x
        return SineAndCosine(x.sin(), x.cos())

    def backward(self, grad):
        assert isinstance(grad, SineAndCosine), type(grad)
        return self.x.cos() * grad.sine - self.x.sin() * grad.cosine

    def param(self):
        return []


def test_a_protocol_module_returning_a_dataclass_gets_its_upstream_gradient_as_that_dataclass():
    assert check_gradients(SineAndCosineModule(), x64(3)).ok


@pytest.mark.parametrize(
    ("grad_output", "message"),
    [
        (torch.ones(3, dtype=torch.complex128), "grad_output is complex"),
        (torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64), "grad_output holds non-finite values"),
        (torch.tensor([1.0, float("inf"), 2.0], dtype=torch.float64), "grad_output holds non-finite values"),
    ],
    ids=["complex", "nan", "inf"],
)
def test_a_grad_output_that_is_complex_or_not_finite_is_a_clear_error(grad_output, message):
    with pytest.raises(ValueError, match=message):
        check_gradients(torch.sin, x64(3), grad_output=grad_output)


def test_order_two_on_hand_written_backward_code_without_a_graph_is_a_clear_error():
    with pytest.raises(TypeError, match=r"order=2 needs a backward that torch\.autograd can differentiate"):
        check_gradients(fw.Tanh(), x64(3), order=2)


def test_unknown_checks_and_orders_are_rejected():
    with pytest.raises(ValueError, match="unknown checks"):
        check_gradients(torch.sin, x64(3), checks=["no_such_check"])
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        check_gradients(torch.sin, x64(3), order=3)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("nondet_tol", float("nan")),
        ("nondet_tol", "1e-6"),
        ("nondet_tol", -1.0),
        ("eps", float("nan")),
        ("eps", float("inf")),
        ("safety", 0.0),
        ("seed", "a"),
        ("seed", 1.5),
        ("probes", 2.5),
        ("probes", 0),
        ("full_jacobian_limit", -1),
        ("full_jacobian_limit", 8.0),
        ("name", 3),
        ("checks", ["twin", 3]),
        ("order", True),
        ("order", 3),
    ],
)
def test_an_option_of_the_wrong_type_or_out_of_range_is_a_clear_error_naming_it(option, value):
    with pytest.raises((TypeError, ValueError), match=f"^{option} must be .*, got {re.escape(repr(value))}$"):
        check_gradients(torch.sin, x64(3), **{option: value})


def test_one_check_named_by_a_string_runs_that_check_alone():
    report = check_gradients(torch.sin, x64(3), checks="linearity")
    assert [check.name for check in report.checks] == ["linearity"]


def test_assert_gradients_close_takes_the_same_arguments():
    assert_gradients_close(ScaledMatmul, x64(2, 3), x64(3, 4, seed=1), 2.0, order=2)
    with pytest.raises(AssertionError, match="finite_differences: FAILED"):
        assert_gradients_close(lambda x: x.detach() * 2 + x, x64(3))


def test_a_parameter_gradient_never_written_fails_and_is_named():
    class ForgetsWeight(fw.Linear):
        def backward(self, grad_output):
            return grad_output @ self.weight  # neither gradient written

    # Whichever of the two the report shows (the one failing by more, which the draw decides).
    for seed in range(10):
        torch.manual_seed(seed)
        report = check_gradients(ForgetsWeight(3, 2).to(dtype=torch.float64), x64(4, 3, seed=seed))
        assert not report["finite_differences"].ok
        assert "never written" in report["finite_differences"].detail


def test_when_the_rounding_noise_cannot_be_measured_the_report_says_its_tolerances_are_the_bound_alone(
    monkeypatch,
):
    from verification import error_model

    def broken(*args, **kwargs):
        raise RuntimeError("cannot jitter this reference")

    monkeypatch.setattr(error_model, "rounding_noise", broken)
    report = check_gradients(fw.Tanh(), x64(4, 3), reference=torch.tanh)
    assert any("rounding noise not measured (RuntimeError: cannot jitter this reference)" in n for n in report.notes)


def test_a_forward_that_depends_on_the_memory_layout_is_named_as_such():
    # Reads its input's storage as if contiguous: a transposed input gives its values in other places.
    def reads_storage_as_contiguous(x):
        return torch.as_strided(x, x.shape, (x.shape[1], 1)).sin()

    report = check_gradients(reads_storage_as_contiguous, x64(5, 3))
    assert report["finite_differences"].ok
    assert report["layouts"].status == "failed"
    # Both layouts show it; the report names the one whose difference is the worst (which one that is
    # rests on the measured rounding noise in the tolerances, not on the claim).
    assert re.search(
        r"the forward itself gives another output with (transposed|strided) inputs: it depends on the "
        r"inputs' memory layout",
        report["layouts"].detail,
    )


def test_a_report_where_no_check_applied_is_inconclusive_never_passed():
    report = check_gradients(torch.sin, x64(3), checks=["twin"])  # no reference: the twin check cannot apply
    assert report.verdict == "inconclusive" and not report.ok
    assert "nothing was verified" in str(report)


@pytest.mark.parametrize(
    ("target", "x", "why"),
    [
        (torch.tanh, torch.empty(0, 3, dtype=torch.float64), "every differentiated tensor is empty"),
        (lambda a: a[:0].sin(), x64(3), "every output is empty"),
    ],
    ids=["empty input", "empty output"],
)
def test_a_target_with_nothing_to_compare_is_inconclusive_never_passed(target, x, why):
    report = check_gradients(target, x)
    assert report.verdict == "inconclusive" and not report.ok
    assert why in str(report)


def test_an_empty_input_beside_a_checked_one_does_not_stop_the_check():
    report = check_gradients(lambda a, b: a.sum() + b.sin(), torch.empty(0, dtype=torch.float64), x64(3))
    assert report.ok


def test_an_empty_batch_through_a_layer_with_parameters_is_inconclusive():
    # The weights are non-empty, but no output element exists for a gradient to flow from.
    report = check_gradients(torch.nn.Linear(3, 2).double(), torch.empty(0, 3, dtype=torch.float64))
    assert report.verdict == "inconclusive"


def test_a_meta_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"input\[0\] is on the meta device"):
        check_gradients(torch.sin, torch.empty(3, device="meta", dtype=torch.float64))


def test_a_keyword_argument_meant_for_the_target_is_told_how_to_bind_it():
    with pytest.raises(TypeError, match=r"unknown options \['dim'\].*functools.partial"):
        check_gradients(lambda a, dim=0: a.softmax(dim), x64(3, 2), dim=1)


def test_a_sparse_input_is_a_clear_error_naming_the_fix():
    with pytest.raises(ValueError, match=r"input\[0\] has layout torch.sparse_coo.*to_dense"):
        check_gradients(lambda a: torch.sparse.sum(a), x64(3, 2).to_sparse())


def _doubled_in_place_then_sin(x):
    x.mul_(2)
    return x.sin()


def test_a_target_that_writes_into_its_input_is_checked_and_fails_side_effects_alone():
    # The input is a fresh copy for each call: the gradients are checked as for any function.
    report = check_gradients(_doubled_in_place_then_sin, x64(4, 3))
    assert [c.name for c in report.failures()] == ["side_effects"]
    assert "input[0] was modified by forward or backward (and is not among the outputs)" in str(report)
    assert report["finite_differences"].status == "passed"


class TanhInPlace(torch.autograd.Function):
    """An in-place kernel's wrapper: writes tanh(x) into x, marks it dirty and returns it."""

    error = 0.0

    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        ctx.save_for_backward(x.tanh_())
        return x

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y) * (1 + TanhInPlace.error)


def test_an_in_place_autograd_function_that_returns_its_input_passes():
    report = check_gradients(TanhInPlace, x64(4, 3))
    assert report.ok, str(report)
    assert "in place" in report["side_effects"].detail


class ReLUWritingItsInput:
    """A hand-written ReLU that zeroes its input's negatives in place and returns it: its gradients
    are right, but a Tanh before it in a network would read its own output overwritten."""

    inplace = False

    def forward(self, x):
        self.mask = x > 0
        x[~self.mask] = 0
        return x

    def backward(self, g):
        return g * self.mask

    def param(self):
        return []


def test_a_hand_written_module_that_returns_its_input_overwritten_fails_unless_it_declares_inplace():
    report = check_gradients(ReLUWritingItsInput(), x64(4, 3))
    assert [c.name for c in report.failures()] == ["side_effects"]
    assert "input[0] was written in place and returned as the output, but ReLUWritingItsInput does not declare" in (
        report["side_effects"].detail
    )
    declared = ReLUWritingItsInput()
    declared.inplace = True  # as torch's ReLU(inplace=True): the caller asked for it
    assert check_gradients(declared, x64(4, 3)).ok


def test_an_in_place_autograd_function_one_part_in_a_million_off_fails(monkeypatch):
    monkeypatch.setattr(TanhInPlace, "error", 1e-6)
    report = check_gradients(TanhInPlace, x64(4, 3))
    assert report["finite_differences"].status == "failed"


def under_no_grad(x):
    with torch.no_grad():
        return x.sin()


@pytest.mark.parametrize("cut", [lambda x: x.detach().sin(), under_no_grad], ids=["detach", "no_grad"])
def test_a_target_that_cuts_autograds_path_fails_and_says_why(cut):
    report = check_gradients(cut, x64(3, 4))
    assert not report.ok
    assert "no output requires grad: the target cuts autograd's path from its inputs" in str(report)


class SineAndItsLargest(torch.autograd.Function):
    """(sin x, max x), the maximum marked non-differentiable: no gradient flows back from it."""

    error = 0.0

    @staticmethod
    def forward(ctx, x):
        largest = x.max()
        ctx.mark_non_differentiable(largest)
        ctx.save_for_backward(x)
        return largest, x.sin()

    @staticmethod
    def backward(ctx, g_largest, g):
        (x,) = ctx.saved_tensors
        return g * x.cos() * (1 + SineAndItsLargest.error)


def test_a_floating_output_marked_non_differentiable_is_left_out_and_named():
    report = check_gradients(SineAndItsLargest, x64(3, 4), order=2)
    assert report.ok, str(report)
    assert "output[0] does not require grad" in str(report)


def test_beside_an_output_marked_non_differentiable_a_wrong_gradient_fails(monkeypatch):
    monkeypatch.setattr(SineAndItsLargest, "error", 1e-6)
    assert check_gradients(SineAndItsLargest, x64(3, 4))["finite_differences"].status == "failed"


class MaskedByASign(torch.autograd.Function):
    """x where mask > 0, else 0: the output depends on the mask only through its sign, so the mask's
    gradient is zero, which backward says with None (torch's convention)."""

    @staticmethod
    def forward(ctx, x, mask):
        keep = (mask > 0).to(x.dtype)
        ctx.save_for_backward(keep)
        return x * keep

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g * keep, None


class WithAnUnusedParameter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(x64(3, seed=3))
        self.unused = torch.nn.Parameter(x64(3, seed=4))

    def forward(self, x):
        return x * self.weight


@pytest.mark.parametrize(
    ("target", "dtype"),
    [(MaskedByASign, torch.float64), (MaskedByASign, torch.float32), (WithAnUnusedParameter(), torch.float64)],
    ids=["input", "input-float32", "parameter"],
)
def test_a_none_gradient_where_the_derivative_is_zero_passes(target, dtype):
    inputs = (x64(4, 3).to(dtype), x64(4, 3, seed=1).to(dtype)) if target is MaskedByASign else (x64(4, 3),)
    report = check_gradients(target, *inputs)
    assert report.ok, str(report)


def test_a_hook_on_a_modules_parameter_is_part_of_its_backward_and_a_wrong_one_fails():
    module = torch.nn.Linear(4, 3).double()
    module.weight.register_hook(lambda g: 2 * g)  # as torch.autograd.grad and .backward() both apply it
    report = check_gradients(module, x64(5, 4))
    assert report["finite_differences"].status == "failed"
    assert "weight" in report["finite_differences"].detail


class LinearOnTorchModule(torch.nn.Module):
    """An EE-559 module written on torch.nn.Module: forward, a hand-written backward, param()."""

    def __init__(self, error=0.0):
        super().__init__()
        self.weight = x64(3, 4, seed=6)
        self.grad_weight = torch.zeros_like(self.weight)
        self.error = error

    def forward(self, x):
        self.x = x
        return x @ self.weight.T

    def backward(self, g):
        self.grad_weight += g.T @ self.x
        return g @ self.weight * (1 + self.error)

    def param(self):
        return [(self.weight, self.grad_weight)]


def test_a_torch_module_with_its_own_backward_and_param_is_checked_through_them():
    report = check_gradients(LinearOnTorchModule(error=1e-6), x64(5, 4))
    assert report.kind == "framework protocol"
    assert report["finite_differences"].status == "failed"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_correct_torch_module_with_its_own_backward_and_param_passes(dtype):
    module = LinearOnTorchModule()
    module.weight, module.grad_weight = module.weight.to(dtype), module.grad_weight.to(dtype)
    report = check_gradients(module, x64(5, 4).to(dtype))
    assert report.ok, str(report)


def forces(positions):
    """-dE/dx of E = sum(x^4) / 4, by autograd inside the forward (as its input requires grad in training)."""
    energy = (positions**4).sum() / 4
    return -torch.autograd.grad(energy, positions, create_graph=True)[0]


def test_a_target_that_differentiates_inside_its_forward_is_checked():
    report = check_gradients(forces, x64(3, 4), order=2)
    assert report.ok, str(report)


def test_a_module_with_sparse_parameter_gradients_is_checked_on_their_values():
    embedding = torch.nn.Embedding(6, 3, sparse=True).double()
    report = check_gradients(embedding, torch.tensor([1, 2, 2, 5]))
    assert report.ok, str(report)


@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")  # torch's, to the caller
def test_an_instance_of_an_autograd_function_is_checked_as_its_class():
    report = check_gradients(Exp(), x64(3))
    assert report.ok, str(report)
    assert report.kind == "torch.autograd.Function"


def test_a_check_called_under_inference_mode_runs_as_anywhere_else():
    with torch.inference_mode():
        report = check_gradients(Exp, x64(3))
    assert report.ok, str(report)


def test_a_torch_module_targets_buffers_are_copied_into_the_reference():
    norm = torch.nn.BatchNorm1d(4).double()  # train mode: its running statistics move from where they are
    with torch.no_grad():
        norm.running_mean.copy_(x64(4, seed=1))
        norm.running_var.copy_(x64(4, seed=2).abs() + 0.5)
    report = check_gradients(norm, x64(6, 4), reference=torch.nn.BatchNorm1d(4))
    assert report["twin"].ok, str(report)


def test_a_reference_module_is_run_in_the_targets_mode():
    norm = torch.nn.BatchNorm1d(4).double().eval()
    with torch.no_grad():
        norm.running_mean.copy_(x64(4, seed=1))
        norm.running_var.copy_(x64(4, seed=2).abs() + 0.5)
    report = check_gradients(norm, x64(6, 4), reference=torch.nn.BatchNorm1d(4))  # a fresh one: train mode
    assert report["twin"].ok, str(report)


class RebindsItsGradient:
    """Right values, but backward binds a new gradient tensor (self.dw = self.dw + ...) instead of adding
    into the one param() returned: an optimizer holding param()'s pairs from before never sees it."""

    def __init__(self):
        self.w, self.dw = x64(3, 4, seed=7), torch.zeros(3, 4, dtype=torch.float64)

    def forward(self, x):
        self.x = x
        return x @ self.w.T

    def backward(self, g):
        self.dw = self.dw + g.T @ self.x
        return g @ self.w

    def param(self):
        return [(self.w, self.dw)]


def test_a_backward_that_binds_a_new_parameter_gradient_tensor_is_named_in_the_notes():
    report = check_gradients(RebindsItsGradient(), x64(5, 4))
    assert "binds a new tensor as the gradient of param[0]" in str(report)


def test_a_function_of_one_triangle_fails_and_the_report_names_the_symmetric_convention():
    """torch.linalg.cholesky reads the lower triangle; its backward returns the symmetric part of the
    gradient. Element by element the two differ, and the report says why and how to check it."""
    a = x64(4, 3)
    spd = a @ a.T + 4 * torch.eye(4, dtype=torch.float64)
    report = check_gradients(torch.linalg.cholesky, spd)
    assert report["finite_differences"].status == "failed"
    assert "the symmetric part of the finite differences'" in report["finite_differences"].detail
    assert check_gradients(lambda m: torch.linalg.cholesky((m + m.mT) / 2), spd).ok


def test_a_wrong_square_gradient_gets_no_symmetric_convention_hint():
    report = check_gradients(lambda m: WrongCosine.apply(m), x64(3, 3))
    assert report["finite_differences"].status == "failed"
    assert "symmetric part" not in report["finite_differences"].detail


def test_a_compiled_function_whose_backward_runs_once_per_forward_passes():
    # Recompiled for the strided layout, AOTAutograd donates the backward's buffers: a second backward
    # call on one graph raises. Each backward call then gets its own forward, rather than a false failure.
    def tanh_product(x, w):
        return torch.tanh(x @ w).pow(2).sum(-1)

    compiled = torch.compile(tanh_product, backend="aot_eager")
    report = check_gradients(compiled, x64(8, 16), x64(16, 8, seed=1), reference=tanh_product)
    assert report.ok, str(report)


def test_a_compiled_function_stays_compiled_past_dynamos_recompile_limit():
    # A float32 check compiles the function for several dtypes, layouts and grad modes; past the
    # limit dynamo would run the uncompiled code without a word, and the checks would judge that.
    import torch._dynamo
    from torch._dynamo.utils import counters

    def tanh_product(x, w):  # its own code object: no graphs cached for it by another test
        return torch.tanh(x @ w)

    compiled = torch.compile(tanh_product, backend="aot_eager")
    before = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(recompile_limit=1):
        report = check_gradients(compiled, x64(4, 3).float(), x64(3, 2, seed=1).float(), reference=tanh_product)
    assert report.ok, str(report)
    assert counters["stats"]["unique_graphs"] - before >= 2  # compiled again, not run uncompiled
    assert not any("recompile limit" in note for note in report.notes)


def test_a_compiled_function_that_hits_the_recompile_limit_anyway_is_named(monkeypatch):
    import torch._dynamo

    import verification.check

    def sine_product(x, w):  # its own code object: no graphs cached for it by another test
        return torch.sin(x @ w)

    monkeypatch.setattr(verification.check, "RECOMPILE_LIMIT", 1)
    compiled = torch.compile(sine_product, backend="aot_eager")
    with torch._dynamo.config.patch(recompile_limit=1):
        report = check_gradients(compiled, x64(4, 3).float(), x64(3, 2, seed=1).float())
    assert any("torch.compile hit its recompile limit" in note for note in report.notes)


class LinearHandingOutACopy:
    """param() returns a copy of the weight: the gradient is right, but an optimizer's update of
    what param() gave out never reaches the weight forward reads."""

    def __init__(self) -> None:
        self.w, self.b = x64(3, 4, seed=5), x64(3, seed=6)
        self.dw, self.db = torch.zeros_like(self.w), torch.zeros_like(self.b)

    def forward(self, x):
        self.x = x
        return x @ self.w.t() + self.b

    def backward(self, g):
        self.dw += g.t() @ self.x
        self.db += g.sum(0)
        return g @ self.w

    def param(self):
        return [(self.w.clone(), self.dw), (self.b, self.db)]


def test_a_parameter_that_param_hands_out_as_a_copy_fails_and_says_so():
    report = check_gradients(LinearHandingOutACopy(), x64(5, 4))
    assert [c.name for c in report.failures()] == ["finite_differences"]
    assert report["finite_differences"].detail.startswith(
        "the outputs do not change at all when param[0] is shifted (every finite difference is exactly 0), yet "
        "backward gives it a gradient: if forward reads this parameter, param() hands out a copy of it"
    )


class SineIgnoringItsSecondInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a)
        return a.sin()

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a.cos(), g  # a gradient for b, on which the output does not depend


def test_a_gradient_for_an_input_the_output_does_not_depend_on_is_named_as_such():
    report = check_gradients(SineIgnoringItsSecondInput, x64(4), x64(4, seed=1))
    assert not report.ok
    assert report["finite_differences"].detail.startswith(
        "the outputs do not change at all when input[1] is shifted (every finite difference is exactly 0), yet "
        "backward gives it a gradient;"
    )


class TanhCalledNotForwarded:
    """A hand-written Tanh whose forward is named __call__: as a plain callable, autograd would
    differentiate it and its own backward (wrong here) would never run."""

    def __call__(self, x):
        self.x = x
        return x.tanh()

    def backward(self, g):
        return g * (1 - self.x.tanh())  # wrong: 1 - tanh(x), not 1 - tanh(x)^2

    def param(self):
        return []


class TanhWithoutParam:
    def forward(self, x):
        self.x = x
        return x.tanh()

    def backward(self, g):
        return g * (1 - self.x.tanh() ** 2)


@pytest.mark.parametrize(
    ("module", "told"),
    [
        (
            TanhCalledNotForwarded(),
            r"TanhCalledNotForwarded has backward\(\) and param\(\) but no forward\(\).*rename it forward",
        ),
        (TanhWithoutParam(), r"TanhWithoutParam has forward\(\) and backward\(\) but no param\(\).*return \[\]"),
    ],
    ids=["__call__ for forward", "no param()"],
)
def test_a_hand_written_module_missing_part_of_the_protocol_is_refused_naming_it(module, told):
    with pytest.raises(TargetError, match=told):
        check_gradients(module, x64(3, 4))


class LinearWithItsPairsSwapped(LinearHandingOutACopy):
    """param() gives (gradient, parameter): every check would zero the weights as gradients and
    compare zeros with zeros."""

    def param(self):
        return [(self.dw, self.w), (self.db, self.b)]


class LinearGivingItsWeightAsItsGradient(LinearHandingOutACopy):
    def param(self):
        return [(self.w, self.w), (self.b, self.db)]


class TwoLinearsNestingTheirPairs:
    def __init__(self) -> None:
        self.layers = [LinearHandingOutACopy(), LinearHandingOutACopy()]

    def forward(self, x):
        return self.layers[1].forward(self.layers[0].forward(x) @ torch.ones(3, 4, dtype=x.dtype))

    def backward(self, g):
        return self.layers[0].backward(self.layers[1].backward(g) @ torch.ones(3, 4, dtype=g.dtype).t())

    def param(self):
        return [layer.param() for layer in self.layers]


@pytest.mark.parametrize(
    ("module", "told"),
    [
        (
            LinearWithItsPairsSwapped(),
            r"forward reads the tensor param\(\) gives as the gradient of param\[0\].*\(parameter, gradient\) pairs, "
            r"in that order",
        ),
        (LinearGivingItsWeightAsItsGradient(), r"param\(\)\[0\]: the parameter and its gradient are the same tensor"),
        (
            TwoLinearsNestingTheirPairs(),
            r"param\(\)\[0\]: .*a list of pairs\. A container's param\(\) is one flat list",
        ),
    ],
    ids=["swapped", "one tensor in both places", "nested lists"],
)
def test_param_pairs_that_would_make_every_check_meaningless_are_refused(module, told):
    with pytest.raises(TargetError, match=told):
        check_gradients(module, x64(5, 4))


class LinearCountingItsSteps(LinearHandingOutACopy):
    """param() lists an integer step count beside the weights: not a weight, so no precision of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.steps, self.dsteps = torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.long)

    def param(self):
        return [(self.w, self.dw), (self.b, self.db), (self.steps, self.dsteps)]


def test_an_integer_entry_of_param_is_not_refused_as_a_parameter_of_another_precision():
    assert check_gradients(LinearCountingItsSteps(), x64(5, 4)).ok


class MSEWhoseBackwardTakesPredictionAndTarget:
    """Another framework's loss protocol: backward(prediction, target)."""

    def forward(self, p, t):
        return ((p - t) ** 2).mean()

    def backward(self, p, t):
        return 2 * (p - t) / p.numel()

    def param(self):
        return []


def test_a_backward_in_another_protocol_is_named_with_the_protocols_the_verifier_speaks():
    told = r"MSEWhoseBackwardTakesPredictionAndTarget\.backward\(p, t\) cannot be called with 1 upstream gradient"
    with pytest.raises(TargetError, match=told):
        check_gradients(MSEWhoseBackwardTakesPredictionAndTarget(), x64(4, 3), target=x64(4, 3, seed=1))


class TanhWithoutReturn:
    def forward(self, x):
        self.x = x
        return x.tanh()

    def backward(self, g):
        self.grad = g * (1 - self.x.tanh() ** 2)  # computed, never returned

    def param(self):
        return []


def test_a_hand_written_backward_that_returns_nothing_fails_and_the_report_asks_for_the_return():
    report = check_gradients(TanhWithoutReturn(), x64(4, 3))
    assert report["finite_differences"].status == "failed"
    assert "TanhWithoutReturn.backward returned None, where it returns dL/d(input): a missing return statement?" in (
        report.notes
    )


class LinearHoldingItsGradientAsAParameter(torch.nn.Module):
    """An EE-559 module on torch.nn.Module that registers its gradient as a Parameter (so that .to()
    moves it): a leaf that requires grad, which the verifier zeroes and moves under no_grad."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(x64(3, 4, seed=5))
        self.dw = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))

    def forward(self, x):
        self.x = x
        return x @ self.w.t()

    def backward(self, g):
        with torch.no_grad():
            self.dw += g.t() @ self.x
        return g @ self.w

    def param(self):
        return [(self.w, self.dw)]


def test_a_gradient_held_as_a_parameter_that_requires_grad_is_checked_like_any_other():
    assert check_gradients(LinearHoldingItsGradientAsAParameter(), x64(5, 4)).ok
