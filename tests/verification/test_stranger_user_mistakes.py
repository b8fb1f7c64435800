"""What a user gets wrong is said in words, never passed and never a traceback from inside torch:
an upstream gradient of zeros, a backward whose results do not fit its inputs, a custom op without
an autograd formula, aliased inputs, an output coarser than the inputs; custom ops are named by
their qualified names."""

import pytest
import torch
from torch import Tensor

import verification
from verification import Input, check_gradients, registry
from verification.targets import TargetError

F64 = torch.float64


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def notes_with(report, text: str) -> list[str]:
    return [note for note in report.notes if text in note]


# -- an upstream gradient of zeros ------------------------------------------------------------------
class WrongSine(torch.autograd.Function):
    """y = sin(x), with a backward wrong everywhere: 5 g x for g cos(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 5 * g * x


class SineAndWrongCosine(torch.autograd.Function):
    """(sin x, cos x), with the cosine's part of the backward wrong: 7 g2 for -g2 sin(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        return g1 * x.cos() + 7 * g2


@pytest.mark.parametrize(
    "grad_output",
    [torch.zeros(3, 4, dtype=F64), 0.0],
    ids=["zeros", "the number 0"],
)
def test_an_all_zero_grad_output_is_refused_since_every_backward_would_pass(grad_output):
    with pytest.raises(ValueError, match=r"WrongSine: every grad_output is all zeros.*every backward would pass"):
        check_gradients(WrongSine, x64(3, 4), grad_output=grad_output)


def test_zeros_for_every_output_that_gets_a_gradient_are_refused_too():
    zeros = torch.zeros(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="every grad_output is all zeros"):
        check_gradients(SineAndWrongCosine, x64(3, 4), grad_output=(zeros, None))


@pytest.mark.parametrize(
    ("second", "said"),
    [(torch.zeros(3, 4, dtype=F64), "gets an all-zero grad_output"), (None, "gets no grad_output (None)")],
    ids=["zeros", "None"],
)
def test_an_output_whose_upstream_gradient_is_zero_or_none_is_named_as_not_exercised(second, said):
    report = check_gradients(
        SineAndWrongCosine, x64(3, 4), grad_output=(x64(3, 4, seed=1), second), checks=["finite_differences"]
    )
    assert report.ok  # the wrong part is multiplied by zero: only the note can tell
    assert notes_with(report, f"output[1] {said}: the part of the backward that flows back from it is not exercised")
    assert not notes_with(report, "output[0]")


def test_drawn_upstream_gradients_get_no_such_note():
    report = check_gradients(SineAndWrongCosine, x64(3, 4), checks=["finite_differences"])
    assert not report.ok
    assert not notes_with(report, "not exercised")


# -- a backward whose results do not fit its inputs ---------------------------------------------------
class TooFewGradients(torch.autograd.Function):
    """y = alpha x**k, with a backward returning a gradient for x alone (forward takes three arguments)."""

    @staticmethod
    def forward(ctx, x, k, alpha):
        ctx.save_for_backward(x)
        ctx.k, ctx.alpha = k, alpha
        return alpha * x**k

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return ctx.k * ctx.alpha * x ** (ctx.k - 1) * g


def doubling(reshape):
    """y = 2 x, whose backward returns ``reshape(2 g)``."""

    class Doubling(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            return reshape(2 * g)

    return Doubling


@pytest.mark.parametrize(
    ("reshape", "got"),
    [(lambda g: g.reshape(-1), r"\(12,\)"), (lambda g: g.sum(0), r"\(4,\)"), (lambda g: g[:1], r"\(1, 4\)")],
    ids=["flattened", "summed", "one row"],
)
def test_a_gradient_of_the_wrong_shape_is_named_with_its_input_and_both_shapes(reshape, got):
    message = rf"Doubling\.backward returned a gradient of shape {got} for input\[0\], whose shape is \(3, 4\)"
    with pytest.raises(TargetError, match=message):
        check_gradients(doubling(reshape), x64(3, 4))


def test_too_few_gradients_are_named_with_the_count_expected():
    message = r"TooFewGradients\.backward returned 1 gradient\(s\), expected 3: one per argument of forward"
    with pytest.raises(TargetError, match=message):
        check_gradients(TooFewGradients, x64(3), 3, 0.5)


class ScaledProduct(torch.autograd.Function):
    """y = alpha x w, whose backward returns w's gradient transposed."""

    @staticmethod
    def forward(ctx, x, alpha, w):
        ctx.save_for_backward(x, w)
        ctx.alpha = alpha
        return alpha * x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return ctx.alpha * g * w, None, (ctx.alpha * g * x).mT


def test_the_input_named_is_the_targets_own_position_counting_its_non_tensor_arguments():
    with pytest.raises(
        TargetError, match=r"returned a gradient of shape \(3, 2\) for input\[2\], whose shape is \(2, 3\)"
    ):
        check_gradients(ScaledProduct, x64(2, 3), 0.5, x64(2, 3, seed=1))


def test_a_gradient_for_a_non_tensor_argument_is_named():
    class GradientForAlpha(ScaledProduct):
        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return ctx.alpha * g * w, g.sum(), ctx.alpha * g * x

    with pytest.raises(
        TargetError, match=r"returned a gradient at position 1, where forward's argument 1 is not a tensor"
    ):
        check_gradients(GradientForAlpha, x64(2, 3), 0.5, x64(2, 3, seed=1))


def test_a_complex_gradient_for_a_real_input_is_named_with_both_dtypes():
    with pytest.raises(
        TargetError, match=r"Doubling\.backward returned a complex128 gradient for input\[0\], which is float64"
    ):
        check_gradients(doubling(lambda g: g.to(torch.complex128)), x64(3, 4))


def test_a_function_called_inside_a_callable_is_named_as_the_one_whose_backward_is_wrong():
    flattening = doubling(lambda g: g.reshape(-1))
    message = r"the backward of Doubling, a torch\.autograd\.Function it calls, returned a gradient of shape \(12,\)"
    with pytest.raises(TargetError, match=message):
        check_gradients(lambda x: flattening.apply(x).sin(), x64(3, 4))


@torch.library.custom_op("stranger_tests::no_formula", mutates_args=())
def no_formula(x: Tensor) -> Tensor:
    return 2 * x


def test_a_custom_op_without_an_autograd_formula_is_a_clear_error():
    message = r"the custom op stranger_tests::no_formula has no autograd formula registered \(register_autograd\)"
    with pytest.raises(TargetError, match=message + ".*no backward to check"):
        check_gradients(no_formula, x64(3))


# -- custom ops are named by their qualified names ------------------------------------------------------
def _custom_op(name: str, factor: float, wrong: float = 1.0):
    @torch.library.custom_op(f"stranger_tests::{name}", mutates_args=())
    def op(x: Tensor) -> Tensor:
        return factor * x

    op.register_fake(lambda x: torch.empty_like(x))
    op.register_autograd(lambda ctx, g: factor * wrong * g, setup_context=lambda ctx, inputs, output: None)
    return op


TRIPLE = _custom_op("triple", 3.0)
WRONG_QUADRUPLE = _custom_op("wrong_quadruple", 4.0, wrong=1.01)


@pytest.mark.parametrize("op", [WRONG_QUADRUPLE, torch.ops.stranger_tests.wrong_quadruple], ids=["op", "torch.ops"])
def test_a_custom_op_is_named_in_the_report_by_its_qualified_name(op):
    report = check_gradients(op, x64(3), checks=["finite_differences"])
    assert not report.ok
    assert str(report).startswith("stranger_tests::wrong_quadruple (callable, float64, cpu): GRADIENT CHECK FAILED")


def test_two_registered_custom_ops_get_specs_of_their_own_names(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", [])
    monkeypatch.setattr(registry, "_DECLARED_IN_CALLS", [])
    specs = [verification.register(op, inputs=[Input((4,))]) for op in (TRIPLE, WRONG_QUADRUPLE)]
    # "::" separates the parts of a pytest node id: the spec's name spells the op as torch.ops does.
    assert [spec.name for spec in specs] == ["stranger_tests.triple", "stranger_tests.wrong_quadruple"]
    assert verification.register(TRIPLE, name="mine", inputs=[Input((4,))]).name == "mine"


def test_a_spec_made_directly_of_a_custom_op_is_named_by_it_too():
    assert verification.Spec(TRIPLE, inputs=[Input((4,))]).name == "stranger_tests.triple"


# -- aliased inputs -------------------------------------------------------------------------------------
class SquareFastPath(torch.autograd.Function):
    """y = a b, with a fast path for a is b whose backward forgets the factor 2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        ctx.same = a is b
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        if ctx.same:
            return g * a, None
        return g * b, g * a


def test_the_same_tensor_passed_twice_is_named_as_checked_through_separate_copies():
    x = x64(3, 4)
    report = check_gradients(SquareFastPath, x, x, checks=["finite_differences"])
    assert notes_with(report, "input[0] and input[1] are the same tensor: the checks pass each as a copy of its own")


def test_aliasing_inside_the_target_as_the_note_says_checks_the_fast_path():
    report = check_gradients(lambda x: SquareFastPath.apply(x, x), x64(3, 4), checks=["finite_differences"])
    assert report["finite_differences"].status == "failed"


def test_overlapping_views_are_named_and_disjoint_halves_of_one_buffer_are_not():
    w = x64(4, 4)
    overlapping = check_gradients(lambda a, b: a * b, w[:, :3], w.mT[:, :3], checks=["finite_differences"])
    assert notes_with(overlapping, "input[0] and input[1] share memory (views of one tensor)")
    top, bottom = w.chunk(2)
    assert not notes_with(check_gradients(lambda a, b: a * b, top, bottom, checks=["finite_differences"]), "memory")


# -- an output coarser than the inputs ------------------------------------------------------------------
def float32_square(error=0.0):
    """y = x * x computed in the input's dtype and returned in float32 (a kernel with a fixed float32
    output), with a relative ``error`` in one element of the backward."""

    class Float32Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x * x).float()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            gradient = 2 * g.to(x.dtype) * x
            gradient[1, 1] *= 1 + error
            return gradient

    return Float32Square


def test_a_float32_output_of_float64_inputs_is_named_in_a_note():
    report = check_gradients(float32_square(), x64(3, 4), checks=["finite_differences"])
    assert notes_with(report, "output (float32): of lower precision than the float64 inputs")


def test_a_float32_output_of_float64_inputs_still_fails_a_wrong_element():
    report = check_gradients(float32_square(error=1e-3), x64(3, 4), checks=["finite_differences"])
    assert report["finite_differences"].status == "failed"


@pytest.mark.parametrize(("error", "ok"), [(0.0, True), (1e-3, False)], ids=["exact", "one element wrong"])
def test_float32_inputs_and_a_reference_judge_it_in_float32_as_the_note_advises(error, ok):
    report = check_gradients(
        float32_square(error), x64(3, 4).float(), reference=lambda x: x * x, checks=["low_precision"]
    )
    assert report.ok is ok
    assert ok or "input[0].grad[1, 1]" in report["low_precision"].detail
    assert not notes_with(report, "lower precision")


# -- empty tensors in a lower precision -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_an_empty_input_beside_a_full_one_is_judged_in_a_lower_precision_as_in_float64(dtype):
    x, empty = torch.randn(3, dtype=dtype), torch.randn(0, dtype=dtype)
    assert check_gradients(lambda x, b: x.sin() + b.sum(), x, empty).ok


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_an_empty_input_beside_a_full_one_still_fails_a_wrong_gradient_in_a_lower_precision(dtype):
    x, empty = torch.randn(3, dtype=dtype), torch.randn(0, dtype=dtype)
    report = check_gradients(lambda x, b: WrongSine.apply(x) + b.sum(), x, empty)
    assert not report.ok and not report["finite_differences"].ok


# -- an EE-559 module whose param() hands out views ------------------------------------------------
class LinearParamsAsViews:
    """y = x W^T + b, with W kept (out, in) and param() handing out W^T and b as a row: new view
    objects on every call, on the module's own memory."""

    def __init__(self, scale_of_weight_gradient: float = 1.0) -> None:
        generator = torch.Generator().manual_seed(1)
        self.w, self.b = (
            torch.randn(3, 4, generator=generator, dtype=F64),
            torch.randn(3, generator=generator, dtype=F64),
        )
        self.dw, self.db = torch.zeros_like(self.w), torch.zeros_like(self.b)
        self.scale = scale_of_weight_gradient

    def forward(self, x: Tensor) -> Tensor:
        self.x = x
        return x @ self.w.T + self.b

    def backward(self, g: Tensor) -> Tensor:
        self.dw += self.scale * (g.T @ self.x)
        self.db += g.sum(0)
        return g @ self.w

    def param(self):
        return [(self.w.T, self.dw.T), (self.b.view(1, -1), self.db.view(1, -1))]


def test_parameters_handed_out_as_views_are_checked_without_notes_about_their_memory():
    report = check_gradients(LinearParamsAsViews(), x64(5, 4))
    assert report.ok
    assert not notes_with(report, "does not list") and not notes_with(report, "binds a new tensor")


def test_a_wrong_weight_gradient_handed_out_as_a_view_fails_rather_than_raising():
    report = check_gradients(LinearParamsAsViews(scale_of_weight_gradient=1 + 1e-6), x64(5, 4))
    assert not report.ok and not report["finite_differences"].ok
