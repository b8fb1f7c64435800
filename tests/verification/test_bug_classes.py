"""The verifier on deliberately wrong backward passes, one per bug class: each is caught by the
check that should catch it. Correct targets pass, in every dtype, over drawn shapes and seeds."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.function import once_differentiable

import framework as fw
from verification import check_gradients

Function = torch.autograd.Function
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# -- correct targets: like real kernels, they compute in float32 (float64 for float64) and round once --
def accumulator(dtype):
    return torch.promote_types(dtype, torch.float32)


class TanhLinear(Function):
    """y = tanh(x @ w + b)."""

    @staticmethod
    def forward(ctx, x, w, b):
        acc = accumulator(x.dtype)
        y = torch.tanh(x.to(acc) @ w.to(acc) + b.to(acc))
        ctx.save_for_backward(x, w, y)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, w, y = ctx.saved_tensors
        acc = y.dtype
        gz = g.to(acc) * (1 - y * y)
        return (gz @ w.to(acc).T).to(x.dtype), (x.to(acc).T @ gz).to(x.dtype), gz.sum(0).to(x.dtype)


class Softmax(Function):
    """Softmax over the last dimension."""

    @staticmethod
    def forward(ctx, x):
        z = x.to(accumulator(x.dtype))
        e = torch.exp(z - z.amax(-1, keepdim=True))
        y = e / e.sum(-1, keepdim=True)
        ctx.save_for_backward(y)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        g32 = g.to(y.dtype)
        return (y * (g32 - (g32 * y).sum(-1, keepdim=True))).to(g.dtype)


class LayerNorm(Function):
    """Normalisation over the last dimension, without affine parameters."""

    @staticmethod
    def forward(ctx, x):
        z = x.to(accumulator(x.dtype))
        centred = z - z.mean(-1, keepdim=True)
        rstd = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + 1e-5)
        xhat = centred * rstd
        ctx.save_for_backward(xhat, rstd)
        return xhat.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        xhat, rstd = ctx.saved_tensors
        g32 = g.to(xhat.dtype)
        grad = rstd * (g32 - g32.mean(-1, keepdim=True) - xhat * (g32 * xhat).mean(-1, keepdim=True))
        return grad.to(g.dtype)


def layer_norm(x):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-5)


CORRECT = {
    "tanh-linear": (TanhLinear, lambda x, w, b: torch.tanh(x @ w + b), 3),
    "softmax": (Softmax, lambda x: torch.softmax(x, -1), 1),
    "layer-norm": (LayerNorm, layer_norm, 1),
}


def arguments(name, batch, width, seed, dtype):
    if name == "tanh-linear":
        return [randn(batch, width, seed=seed, dtype=dtype), randn(width, 3, seed=seed + 1, dtype=dtype) / width**0.5,
                randn(3, seed=seed + 2, dtype=dtype)]  # fmt: skip
    return [randn(batch, width, seed=seed, dtype=dtype)]


@pytest.mark.parametrize("with_reference", [True, False], ids=["reference", "no reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(CORRECT))
@settings(max_examples=3, deadline=None, derandomize=True)
@given(batch=st.integers(1, 6), width=st.integers(4, 12), seed=st.integers(0, 2**16))
def test_correct_targets_pass_in_every_dtype(name, dtype, with_reference, batch, width, seed):
    # Width 4 and up: over two or three values a normalisation is so ill-conditioned (nearly
    # equal values) that its low-precision rounding noise is beyond any model without a reference.
    target, reference, _ = CORRECT[name]
    args = arguments(name, batch, width, seed, dtype)
    report = check_gradients(target, *args, reference=reference if with_reference else None, seed=seed)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", ["softmax", "tanh-linear"])
def test_correct_targets_pass_the_second_order_check(name):
    target, reference, _ = CORRECT[name]
    assert check_gradients(target, *arguments(name, 3, 4, 0, torch.float64), reference=reference, order=2).ok


def test_a_backward_from_saved_intermediates_is_right_at_first_order_and_caught_at_second():
    # LayerNorm saves rstd, an intermediate of forward: a constant to autograd, so the second
    # derivative through it is missing (what gradgradcheck reports for such Functions).
    report = check_gradients(LayerNorm, *arguments("layer-norm", 3, 4, 0, torch.float64), order=2)
    assert report["finite_differences"].ok
    assert not report["second_order"].ok


# -- one deliberately wrong target per bug class ----------------------------------------------------------
class TransposedWeight(TanhLinear):
    """Input gradient through w instead of w^T (square w, so the shapes still fit)."""

    @staticmethod
    def backward(ctx, g):
        x, w, y = ctx.saved_tensors
        gz = g * (1 - y * y)
        return gz @ w, x.T @ gz, gz.sum(0)


class LayerNormWithoutMeanTerm(LayerNorm):
    @staticmethod
    def backward(ctx, g):
        xhat, rstd = ctx.saved_tensors
        return (rstd * (g - xhat * (g * xhat).mean(-1, keepdim=True))).to(g.dtype)


class MeanSquareWithoutOneOverN(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * x).mean()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x


class ReadsUpstreamAsContiguous(Function):
    """exp whose backward reads grad_output's storage as if it were contiguous (a raw-pointer kernel)."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        strides, step = [], 1
        for size in reversed(g.shape):
            strides.insert(0, step)
            step *= size
        return torch.as_strided(g, g.shape, strides, g.storage_offset()) * y


class DetachedBackward(Function):
    """sin whose backward uses a detached copy of x: right at first order, no second derivative in x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.detach().cos()


class ForgetsBiasGradient(TanhLinear):
    @staticmethod
    def backward(ctx, g):
        gx, gw, _ = TanhLinear.backward(ctx, g)
        return gx, gw, None


_ORDER = torch.Generator().manual_seed(7)  # never re-seeded: a new order on every call


class AccumulatesInRandomOrder(Function):
    """x @ w whose weight gradient sums the batch in a random order, as atomic adds do."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = torch.zeros_like(w)
        for i in torch.randperm(x.shape[0], generator=_ORDER).tolist():
            gw = gw + torch.outer(x[i], g[i])
        return g @ w.T, gw


class Matmul(Function):
    """x @ w, every reduction accumulated in float32 (or float64) and rounded once."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        acc = accumulator(x.dtype)
        return (x.to(acc) @ w.to(acc)).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        acc = accumulator(x.dtype)
        return (g.to(acc) @ w.to(acc).T).to(x.dtype), (x.to(acc).T @ g.to(acc)).to(x.dtype)


class AccumulatesInBfloat16(Matmul):
    """The same weight gradient accumulated in the inputs' dtype, one batch row at a time."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = torch.zeros_like(w)
        for i in range(x.shape[0]):
            gw = gw + torch.outer(x[i], g[i])  # rounded to the dtype after every addition
        return (g.to(accumulator(x.dtype)) @ w.to(accumulator(x.dtype)).T).to(x.dtype), gw


class WrongOnlyInLowPrecision(Softmax):
    @staticmethod
    def backward(ctx, g):
        grad = Softmax.backward(ctx, g)
        return grad if grad.dtype == torch.float64 else grad * 1.02


class ForwardAndBackwardBothWrong(Function):
    """exp(2x) in forward with its exact derivative: self-consistent, so only the reference can tell."""

    @staticmethod
    def forward(ctx, x):
        y = (2 * x).exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return 2 * g * y


class SquaresUpstream(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 3 * x

    @staticmethod
    def backward(ctx, g):
        return 3 * g * g.abs()


class ModifiesUpstream(Function):
    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, g):
        return g.mul_(3)


def square_weight_args():
    return randn(5, 4), randn(4, 4, seed=1) / 2, randn(4, seed=2)


def test_a_transposed_term_is_caught_by_finite_differences():
    report = check_gradients(TransposedWeight, *square_weight_args())
    assert not report["finite_differences"].ok


def test_layer_norm_without_the_mean_term_is_caught_by_finite_differences():
    assert not check_gradients(LayerNormWithoutMeanTerm, randn(3, 6))["finite_differences"].ok


def test_a_missing_scale_is_caught_by_finite_differences():
    assert not check_gradients(MeanSquareWithoutOneOverN, randn(4, 3))["finite_differences"].ok


def test_reading_grad_output_as_contiguous_is_caught_by_layouts_alone():
    report = check_gradients(ReadsUpstreamAsContiguous, randn(4, 3))
    assert not report["layouts"].ok
    assert report["finite_differences"].ok


def test_a_detached_backward_is_caught_by_the_second_order_check_alone():
    report = check_gradients(DetachedBackward, randn(5), order=2)
    assert not report["second_order"].ok
    assert report["finite_differences"].ok


def test_a_once_differentiable_backward_fails_the_second_order_check_and_the_report_says_why():
    class Exp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x.exp()

    report = check_gradients(Exp, randn(5), order=2)
    assert report["finite_differences"].ok
    assert not report["second_order"].ok and "@once_differentiable" in report["second_order"].detail


def test_a_forgotten_input_gradient_fails_and_is_named():
    report = check_gradients(ForgetsBiasGradient, *square_weight_args())
    assert not report["finite_differences"].ok
    assert "input[2]" in report["finite_differences"].detail


def test_a_nondeterministic_backward_fails_the_determinism_check_with_the_size_of_the_difference():
    args = randn(64, 3), randn(3, 2, seed=1)
    report = check_gradients(AccumulatesInRandomOrder, *args)
    assert not report["determinism"].ok
    assert "largest difference" in report["determinism"].detail
    assert check_gradients(AccumulatesInRandomOrder, *args, nondet_tol=1e-12).ok


def test_a_long_reduction_accumulated_in_bfloat16_fails_and_one_accumulated_in_float32_passes():
    x, w = randn(512, 8, dtype=torch.bfloat16), randn(8, 4, seed=1, dtype=torch.bfloat16)
    reference = lambda a, b: a @ b  # noqa: E731
    wrong = check_gradients(AccumulatesInBfloat16, x, w, reference=reference)
    assert not wrong["low_precision"].ok
    assert wrong["finite_differences"].ok  # right in float64: the error is the accumulation's
    assert check_gradients(Matmul, x, w, reference=reference).ok
    assert check_gradients(Matmul, x, w).ok  # and by the model without a reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_a_bug_only_in_low_precision_is_caught_by_the_low_precision_check(dtype):
    report = check_gradients(WrongOnlyInLowPrecision, randn(4, 8, dtype=dtype), reference=lambda x: x.softmax(-1))
    assert not report["low_precision"].ok
    assert report["finite_differences"].ok


class OneElementWrongOnlyInLowPrecision(TanhLinear):
    """A kernel bug in one element of the low-precision input gradient: x[1, 3]'s is ``factor`` times too large."""

    factor = 1.0

    @staticmethod
    def backward(ctx, g):
        gx, gw, gb = TanhLinear.backward(ctx, g)
        if gx.dtype != torch.float64:
            gx = gx.clone()
            gx[1, 3] *= OneElementWrongOnlyInLowPrecision.factor
        return gx, gw, gb


@pytest.mark.parametrize(("dtype", "factor"), [(torch.float16, 1.05), (torch.bfloat16, 1.3)], ids=str)
def test_one_element_off_in_low_precision_fails_its_own_bound_where_the_norms_pass(dtype, factor, monkeypatch):
    # Of the 128 elements, the largest and the mean error stay within their bounds (the max
    # at about 0.6 and 0.45 of it): the element's own bound, from the reference's error there, does not.
    monkeypatch.setattr(OneElementWrongOnlyInLowPrecision, "factor", factor)
    args = (randn(16, 8, dtype=dtype), randn(8, 8, seed=1, dtype=dtype), randn(8, seed=2, dtype=dtype))
    reference = lambda x, w, b: torch.tanh(x @ w + b)  # noqa: E731
    report = check_gradients(OneElementWrongOnlyInLowPrecision, *args, reference=reference)
    assert not report["low_precision"].ok
    assert "input[0].grad[1, 3]" in report["low_precision"].detail
    assert "beyond this element's bound" in report["low_precision"].detail
    assert report["finite_differences"].ok
    assert check_gradients(TanhLinear, *args, reference=reference).ok


def test_a_forward_bug_with_a_matching_backward_is_caught_by_the_reference():
    report = check_gradients(ForwardAndBackwardBothWrong, randn(4), reference=torch.exp)
    assert not report["twin"].ok
    assert report["finite_differences"].ok


def test_a_backward_nonlinear_in_its_upstream_gradient_is_caught_by_linearity():
    assert not check_gradients(SquaresUpstream, randn(6))["linearity"].ok


def test_a_backward_that_modifies_grad_output_is_caught_by_side_effects():
    assert not check_gradients(ModifiesUpstream, randn(6))["side_effects"].ok


def test_a_float32_linear_with_an_input_gradient_five_percent_too_large_fails():
    class Off(fw.Linear):
        def backward(self, grad_output):
            return super().backward(grad_output) * 1.05

    report = check_gradients(Off(20, 10), torch.randn(6, 20))
    assert not report["finite_differences"].ok


def test_a_float32_conv2d_with_a_weight_gradient_one_percent_off_fails():
    class Off(fw.Conv2d):
        def backward(self, grad_output):
            before = self.grad("weight").clone()
            grad = super().backward(grad_output)
            self.grad("weight").copy_(before + 1.01 * (self.grad("weight") - before))
            return grad

    module = Off(2, 3, 3)
    report = check_gradients(module, torch.randn(2, 2, 6, 6), reference=torch.nn.Conv2d(2, 3, 3))
    assert not report["finite_differences"].ok and not report["twin"].ok


def test_a_target_that_does_not_run_in_float64_without_a_reference_is_inconclusive_not_passed():
    def half_only(x):
        if x.dtype == torch.float64:
            raise TypeError("this kernel has no float64 path")
        return x * 2

    report = check_gradients(half_only, randn(4, dtype=torch.float32))
    assert not report.ok and report.verdict == "inconclusive"
    assert "does not run in float64" in str(report)


def test_a_target_that_does_not_run_in_float64_is_judged_against_the_reference():
    def float32_only(x):
        if x.dtype == torch.float64:
            raise TypeError("this kernel has no float64 path")
        return x.exp()

    assert check_gradients(float32_only, randn(4, 3, dtype=torch.float32), reference=torch.exp).ok
    wrong = check_gradients(lambda x: float32_only(x) * 1.001, randn(4, 3, dtype=torch.float32), reference=torch.exp)
    assert not wrong["low_precision"].ok


def test_a_backward_to_params_that_forgets_the_bias_fails_while_backward_passes():
    class ForgetsBias(fw.Linear):
        def backward_to_params(self, grad_output):
            super().backward_to_params(grad_output)
            self.grad("bias").zero_()

    report = check_gradients(ForgetsBias(4, 3), randn(5, 4, dtype=torch.float32))
    assert report["finite_differences"].ok
    assert not report["determinism"].ok
    assert "backward_to_params" in report["determinism"].detail and "bias" in report["determinism"].detail


def test_a_correct_backward_to_params_passes_the_determinism_check():
    model = fw.Sequential(fw.Linear(4, 3), fw.Tanh(), fw.Linear(3, 2))
    assert check_gradients(model, randn(5, 4, dtype=torch.float32))["determinism"].ok


class ModifiesUpstreamEE559:
    """The framework protocol's ModifiesUpstream: a right gradient, written into grad_output."""

    def forward(self, x):
        return 3 * x

    def backward(self, g):
        return g.mul_(3)

    def param(self):
        return []


@pytest.mark.parametrize("target", [ModifiesUpstream, ModifiesUpstreamEE559()], ids=["Function", "EE-559"])
def test_a_backward_that_modifies_grad_output_fails_side_effects_and_no_other_check(target):
    report = check_gradients(target, randn(6))
    assert [check.name for check in report.checks if check.status == "failed"] == ["side_effects"]


class SineInFloat32(DetachedBackward):
    """sin (the same forward), whose backward computes in float32 whatever the input: autograd casts
    the result back to the input's float64 without a word."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.float() * x.float().cos()


def test_a_backward_computing_in_float32_for_a_float64_input_fails_and_is_named_as_such():
    report = check_gradients(SineInFloat32, randn(5, 4))
    assert report["finite_differences"].status == "failed"
    assert "is a float32 number, although input[0] is float64" in report["finite_differences"].detail


def test_a_wrong_gradient_of_small_integers_is_not_taken_for_a_float32_one():
    """2 instead of 1 everywhere: a float32 number too, but one of a few bits, which a float64 backward
    gives as well; no float32 hint."""

    class SumTwice(Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, g):
            return 2 * g * torch.ones(5, 4, dtype=torch.float64)

    report = check_gradients(SumTwice, randn(5, 4), grad_output=torch.tensor(1.0, dtype=torch.float64))
    assert report["finite_differences"].status == "failed"
    assert "float32" not in report["finite_differences"].detail


# -- state an earlier call left: a gradient of the previous batch --------------------------------------
class KeepsTheFirstInput:
    """y = sin(x), a hand-written module that saves x on its first forward only: every later backward
    is the first batch's derivative. On a fresh copy, one forward and one backward, it is right."""

    def __init__(self):
        self.x = None

    def forward(self, x):
        if self.x is None:
            self.x = x.clone()
        return x.sin()

    def backward(self, g):
        return g * self.x.cos()

    def param(self):
        return []


class KeepsEveryInput(KeepsTheFirstInput):
    def forward(self, x):
        self.x = x.clone()
        return x.sin()


def test_a_backward_reading_state_from_an_earlier_call_fails_determinism_and_says_why():
    report = check_gradients(KeepsTheFirstInput(), randn(6, 4))
    assert not report["determinism"].ok
    assert "after one on other inputs" in report["determinism"].detail
    assert "backward reads state an earlier call left" in report["determinism"].detail


def test_a_module_that_keeps_each_forwards_input_passes_the_check_after_other_inputs():
    report = check_gradients(KeepsEveryInput(), randn(6, 4))
    assert report.ok, str(report)


def test_a_forward_whose_outputs_follow_its_history_is_not_failed_by_the_check_after_other_inputs():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = torch.nn.utils.spectral_norm(torch.nn.Linear(4, 3).double())  # a power iteration per call
    report = check_gradients(layer, randn(5, 4))
    assert report["determinism"].ok
    assert any("after other inputs: the gradients were not compared" in note for note in report.notes)


# -- results written into a buffer the target reuses -----------------------------------------------------
class SineIntoItsOwnBuffers:
    """y = sin(x) with a right backward, whose output (``into="output"``) or input gradient
    (``into="gradient"``) is written into a buffer it reuses from call to call."""

    def __init__(self, into):
        self.into, self.buffers = into, {}

    def _buffer(self, name, like):
        if name not in self.buffers:
            self.buffers[name] = torch.empty_like(like)
        return self.buffers[name] if self.into == name else torch.empty_like(like)

    def forward(self, x):
        self.x = x
        return torch.sin(x, out=self._buffer("output", x))

    def backward(self, g):
        return torch.mul(g, self.x.cos(), out=self._buffer("gradient", g))

    def param(self):
        return []


@pytest.mark.parametrize("into", ["output", "gradient"])
def test_a_result_returned_in_a_reused_buffer_fails_side_effects_and_says_why(into):
    report = check_gradients(SineIntoItsOwnBuffers(into), randn(6, 4))
    failed = [check.name for check in report.checks if check.status == "failed"]
    assert failed == ["side_effects"]  # its values are right: the other checks hold copies, and pass it
    assert "changed during the next forward and backward: it is a buffer the target reuses" in (
        report["side_effects"].detail
    )


def test_fresh_results_pass_side_effects():
    assert check_gradients(SineIntoItsOwnBuffers(into=None), randn(6, 4)).ok


# -- a Function applied twice in one graph -----------------------------------------------------------------
class SineSavedOnTheClass(Function):
    """y = sin(x), whose forward keeps x on the class instead of in ``ctx``: right when each forward is
    followed by its backward, wrong for a layer applied twice before the backward pass."""

    @staticmethod
    def forward(ctx, x):
        SineSavedOnTheClass.x = x.detach()
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        return g * SineSavedOnTheClass.x.cos()


def test_a_function_keeping_its_state_outside_its_context_fails_when_applied_twice_in_one_graph():
    report = check_gradients(SineSavedOnTheClass, randn(6, 4))
    assert report["finite_differences"].ok  # one application at a time is right
    assert not report["determinism"].ok
    assert "a second application on other inputs before its backward" in report["determinism"].detail
    assert "rather than ctx.save_for_backward" in report["determinism"].detail


def test_a_function_keeping_its_state_in_its_context_passes_when_applied_twice():
    assert check_gradients(TanhLinear, *square_weight_args()).ok  # saves x, w and y in ctx


class SquareLinearWithTransposedWeightGradient:
    """An EE-559 Linear, weight (out, in), whose weight gradient is x^T g instead of g^T x: the
    two agree exactly when g^T x is symmetric, as when the upstream gradient equals the input."""

    def __init__(self, features: int) -> None:
        generator = torch.Generator().manual_seed(7)
        self.w = torch.randn(features, features, generator=generator, dtype=torch.float64)
        self.dw = torch.zeros_like(self.w)

    def forward(self, x):
        self.x = x
        return x @ self.w.T

    def backward(self, g):
        self.dw += self.x.T @ g  # wrong: g.T @ self.x
        return g @ self.w

    def param(self):
        return [(self.w, self.dw)]


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_upstream_gradients_never_repeat_inputs_drawn_after_torch_manual_seed_of_the_checkers_seed(seed):
    torch.manual_seed(seed)  # the user's inputs: the global stream of the seed the checker is given
    x = torch.randn(8, 4, dtype=torch.float64)
    report = check_gradients(SquareLinearWithTransposedWeightGradient(4), x, seed=seed)
    assert not report.ok and not report["finite_differences"].ok


def two_scales(wrong_by: float, only_when_both_are_weighed: bool = False) -> type[Function]:
    """Outputs (1e6 exp(x), sin(x)), with the second output's backward scaled by 1 + wrong_by (with
    ``only_when_both_are_weighed``, only when the first output's upstream gradient is non-zero too:
    a branch on it)."""

    class TwoScales(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 1e6 * torch.exp(x), torch.sin(x)

        @staticmethod
        def backward(ctx, g_large, g_small):
            (x,) = ctx.saved_tensors
            wrong = not only_when_both_are_weighed or bool(g_large.ne(0).any())
            return 1e6 * torch.exp(x) * g_large + torch.cos(x) * g_small * (1 + (wrong_by if wrong else 0.0))

    return TwoScales


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_output_a_million_times_smaller_than_another_is_checked_at_its_own_scale(seed):
    # Its part of the gradient is a millionth of the other's: in their sum a relative error of 1e-6
    # there is one part in 1e12, below any difference quotient; alone it is seen at its own scale.
    x = randn(5, 3, seed=seed).requires_grad_()
    wrong = check_gradients(two_scales(1e-6), x, seed=seed)
    assert not wrong.ok
    assert "output[1]'s upstream gradient alone" in wrong["finite_differences"].detail
    assert check_gradients(two_scales(0.0), x, seed=seed).ok


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_backward_wrong_only_when_every_output_is_weighed_fails_the_sum_over_outputs(seed):
    # Combined, the error is one part in 1e12 of the gradient; each output alone, there is none.
    report = check_gradients(two_scales(1e-6, only_when_both_are_weighed=True), randn(5, 3, seed=seed), seed=seed)
    assert report["linearity"].status == "failed", str(report)
    assert "the sum over outputs k of backward(g_k alone)" in report["linearity"].detail


class Solve(Function):
    """x = A^-1 b, with the weight of dL/dA as a parameter (1: correct)."""

    factor = 1.0

    @staticmethod
    def forward(ctx, a, b):
        x = torch.linalg.solve(a, b)
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        grad_b = torch.linalg.solve(a.mT, g)
        return -(grad_b @ x.mT) * Solve.factor, grad_b


def conditioned(condition: float, n: int = 6, seed: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A random n x n matrix of the given condition number and a right-hand side, float64."""
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    singular_values = torch.logspace(0, -torch.tensor(condition).log10().item(), n, dtype=torch.float64)
    b = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return ((u * singular_values) @ v.T).requires_grad_(), b.requires_grad_()


@pytest.mark.parametrize("condition", [1e8, 1e10])
def test_a_correct_solve_too_ill_conditioned_for_any_step_is_inconclusive_not_failed(condition, monkeypatch):
    # The matrix is within a step of singular: the differences look like kinks whose slopes grow
    # as the step shrinks, or settle only at a step too short to pass anything.
    monkeypatch.setattr(Solve, "factor", 1.0)
    report = check_gradients(Solve, *conditioned(condition), checks="finite_differences")
    check = report["finite_differences"]
    assert check.status == "inconclusive"
    assert "resolved by no step the check takes" in check.inconclusive


@pytest.mark.parametrize("condition", [1e2, 1e8, 1e10])
def test_a_solve_whose_matrix_gradient_is_doubled_fails_however_ill_conditioned(condition, monkeypatch):
    monkeypatch.setattr(Solve, "factor", 2.0)
    assert (
        check_gradients(Solve, *conditioned(condition), checks="finite_differences")["finite_differences"].status
        == "failed"
    )


class AbsPlusSquare(Function):
    """y = |x| + 300 x^2, whose backward gives 5 at the kink x = 0, outside the one-sided slopes."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.abs() + 300 * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        slope = torch.where(x == 0, torch.full_like(x, 5.0), torch.sign(x) + 600 * x)
        return g * slope


def test_a_value_outside_a_curved_kinks_slopes_fails_although_the_slopes_move_with_the_step():
    # The one-sided slopes at 0 are -1 - 300 s and 1 + 300 s: they move with the step s, as a pole's
    # do, but settle rather than grow, so the kink is told from a pole and the value judged.
    x = torch.tensor([0.0, 0.5, -0.7], dtype=torch.float64, requires_grad=True)
    check = check_gradients(AbsPlusSquare, x, checks="finite_differences")["finite_differences"]
    assert check.status == "failed" and "input[0][0]" in check.detail


def reciprocal(wrong_by: float, at: int = -1) -> type[Function]:
    """y = 1/x, with the gradient of element ``at`` (the last by default) scaled by 1 + wrong_by."""

    class Reciprocal(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 1 / x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            grad = -g / x**2
            grad[at] = grad[at] * (1 + wrong_by)
            return grad

    return Reciprocal


@pytest.mark.parametrize("wrong_by", [1.0, -2.0], ids=["doubled", "sign flipped"])
@pytest.mark.parametrize("distance", [3e-6, 1e-7])
def test_a_wrong_gradient_within_a_step_of_a_pole_fails(distance, wrong_by):
    # The steps 1e-4 and 1e-4/16 cross the pole at 0 and look like kinks; a coarse difference at
    # a smaller step once passed the doubled gradient, and the pole rule once excused both.
    x = torch.tensor([1.0, distance], dtype=torch.float64)
    assert (
        check_gradients(reciprocal(wrong_by), x, checks="finite_differences")["finite_differences"].status == "failed"
    )


def test_a_right_gradient_resolved_by_the_smaller_steps_near_a_pole_passes():
    x = torch.tensor([1.0, 3e-6], dtype=torch.float64)
    assert check_gradients(reciprocal(0.0), x, checks="finite_differences")["finite_differences"].status == "passed"


def test_a_solve_whose_matrix_gradient_is_off_by_one_part_in_a_million_fails_at_condition_number_1e6(monkeypatch):
    # A coarse difference (2% tolerance) agreed with it, while a precise one at a smaller step refuted it.
    monkeypatch.setattr(Solve, "factor", 1 + 1e-6)
    assert (
        check_gradients(Solve, *conditioned(1e6), checks="finite_differences")["finite_differences"].status == "failed"
    )


class SwampedInOneElement(Function):
    """Outputs (1e6 exp(x), sin(x) w), w = [1e9, 1, 1, 1, 1]: the second output's largest contribution
    matches the first's, but at the other elements it is thousands of times smaller. Its backward
    is off by one part in ten thousand at element 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 1e6 * torch.exp(x), torch.sin(x) * torch.tensor([1e9, 1.0, 1.0, 1.0, 1.0], dtype=x.dtype)

    @staticmethod
    def backward(ctx, g_large, g_small):
        (x,) = ctx.saved_tensors
        small = g_small * torch.cos(x) * torch.tensor([1e9, 1.0, 1.0, 1.0, 1.0], dtype=x.dtype)
        small[2] = small[2] * (1 + 1e-4)
        return g_large * 1e6 * torch.exp(x) + small


def test_an_output_swamped_in_one_element_only_is_checked_alone():
    report = check_gradients(SwampedInOneElement, randn(5), checks="finite_differences")
    assert report["finite_differences"].status == "failed"
    assert "output[1]'s upstream gradient alone" in report["finite_differences"].detail


def beside_a_pole(size: int, distance: float) -> torch.Tensor:
    """``size`` inputs of 1/x, the first ``distance`` from the pole at 0, the others between 0.3 and 4."""
    if size == 4:
        x = torch.tensor([0.0, 0.3, -0.7, 0.5], dtype=torch.float64)
    else:
        x = torch.randn(size, generator=torch.Generator().manual_seed(0), dtype=torch.float64).abs() + 0.5
    x[0] = distance
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("distance", [1e-4, 1e-6])
@pytest.mark.parametrize("size", [4, 300], ids=["elements", "probes"])
def test_an_element_wrong_by_one_part_in_a_million_beside_one_next_to_a_pole_fails(size, distance, seed):
    # The first gradient is about 1e12 (at 1e-6) and set the tensor's mean |gradient|: an allowance
    # for rounding at that scale passed the second element's error of 1e-5 (with 4 elements), and
    # in the probes of 300 elements, which that element's term dominates, one part in a thousand.
    x = beside_a_pole(size, distance)
    wrong = check_gradients(reciprocal(1e-6, at=1), x, seed=seed, checks="finite_differences")
    assert wrong["finite_differences"].status == "failed", str(wrong)
    assert "input[0][1]" in wrong["finite_differences"].detail
    right = check_gradients(reciprocal(0.0), x, seed=seed, checks="finite_differences")
    assert right["finite_differences"].status == "passed", str(right)
