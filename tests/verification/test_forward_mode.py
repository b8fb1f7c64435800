"""A Function's jvp (forward-mode derivatives) is checked against finite differences, as its backward is."""

import re

import pytest
import torch

import framework as fw
from verification import check_gradients


def x64(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class Sine(torch.autograd.Function):
    """y = sin x;   backward: g cos x;   jvp: t cos x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * x.cos()


class SineJvpOffInOneElement(Sine):
    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        out = t * x.cos()
        out.view(-1)[3] *= 1 + 1e-6
        return out


class SineJvpOffEverywhere(Sine):
    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * x.cos() * (1 + 1e-6)


class SineJvpRaises(Sine):
    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t @ x.cos()  # a matrix product where an elementwise one was meant


class SineWithoutJvp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()


SHAPES = [(3, 4), (40, 50)]  # one jvp per element; probes, a failing one halved to the element


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_a_correct_jvp_passes(shape):
    report = check_gradients(Sine, x64(*shape))
    assert report["forward_mode"].status == "passed", str(report)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_a_jvp_off_by_one_part_in_a_million_in_one_element_fails_and_names_it(shape):
    report = check_gradients(SineJvpOffInOneElement, x64(*shape))
    assert report["finite_differences"].ok  # the backward is right: the jvp alone is wrong
    assert not report["forward_mode"].ok
    assert "input[0][0, 3]: jvp" in report["forward_mode"].detail


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_a_jvp_off_by_one_part_in_a_million_everywhere_fails(shape):
    assert not check_gradients(SineJvpOffEverywhere, x64(*shape))["forward_mode"].ok


def test_a_jvp_that_raises_fails_naming_the_error():
    report = check_gradients(SineJvpRaises, x64(3, 4))
    assert not report["forward_mode"].ok
    assert "forward-mode evaluation (torch.autograd.forward_ad) raised RuntimeError" in report["forward_mode"].detail


def test_a_function_without_jvp_is_not_applicable_never_passed():
    assert check_gradients(SineWithoutJvp, x64(3))["forward_mode"].status == "not applicable"
    asked = check_gradients(lambda x: SineWithoutJvp.apply(x), x64(3), checks=["forward_mode"])["forward_mode"]
    assert asked.status == "not applicable"
    assert "no forward-mode derivative: NotImplementedError" in asked.skipped


def test_a_callable_is_checked_in_forward_mode_when_asked():
    wrong = check_gradients(lambda x: 2 * SineJvpOffInOneElement.apply(x), x64(3, 4), checks=["forward_mode"])
    assert not wrong["forward_mode"].ok
    assert check_gradients(lambda x: 2 * Sine.apply(x), x64(3, 4), checks=["forward_mode"])["forward_mode"].ok


class Product(torch.autograd.Function):
    """y = a b, in the setup_context style;   jvp: ta b + a tb."""

    @staticmethod
    def forward(a, b):
        return a * b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b.conj(), g * a.conj()

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        return ta * b + a * tb  # both tangents are used: the verifier gives each input one


class ProductJvpConjugatesOne(Product):
    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        return ta * b + a.conj() * tb  # the same for real inputs, wrong for complex ones


def test_each_input_of_a_two_input_jvp_is_checked_and_named():
    a, b = x64(3, 4), x64(3, 4, seed=1)
    assert check_gradients(Product, a, b)["forward_mode"].ok
    z, w = x64(3, 4, dtype=torch.complex128), x64(3, 4, seed=1, dtype=torch.complex128)
    assert check_gradients(Product, z, w)["forward_mode"].ok
    report = check_gradients(ProductJvpConjugatesOne, z, w)
    assert report["finite_differences"].ok and not report["forward_mode"].ok
    assert "input[1][" in report["forward_mode"].detail


def test_a_float32_function_has_its_jvp_checked_in_float64():
    report = check_gradients(SineJvpOffInOneElement, x64(3, 4, dtype=torch.float32))
    assert not report["forward_mode"].ok


def test_a_hand_written_module_has_no_forward_mode():
    report = check_gradients(fw.Tanh(), x64(3), checks=["forward_mode"])
    assert report["forward_mode"].status == "not applicable"


def test_a_module_with_only_integer_inputs_has_its_parameters_tangents_checked_and_nothing_to_batch():
    lookup = torch.nn.Embedding(10, 3).double()
    report = check_gradients(lookup, torch.tensor([1, 2, 3]), checks=["forward_mode", "batched"])
    assert report["forward_mode"].status == "passed" and report["batched"].status == "not applicable"


class Scale(torch.autograd.Function):
    """y = x w;   backward: (g w, sum over rows of g x);   jvp: tx w + x tw."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, (g * x).sum(0)

    @staticmethod
    def jvp(ctx, tx, tw):
        x, w = ctx.saved_tensors
        return tx * w + x * tw


class ScaleJvpWithoutTheWeightsTangent(Scale):
    @staticmethod
    def jvp(ctx, tx, tw):
        _, w = ctx.saved_tensors
        return tx * w


class ScaleModule(torch.nn.Module):
    def __init__(self, function, dtype=torch.float64):
        super().__init__()
        self.function = function
        self.weight = torch.nn.Parameter(x64(4, seed=3, dtype=dtype))

    def forward(self, x):
        return self.function.apply(x, self.weight)


def test_a_modules_parameters_get_tangents_and_a_jvp_that_ignores_them_fails_naming_the_parameter():
    assert check_gradients(ScaleModule(Scale), x64(3, 4), checks=["forward_mode"])["forward_mode"].ok
    report = check_gradients(ScaleModule(ScaleJvpWithoutTheWeightsTangent), x64(3, 4), checks=["forward_mode"])
    assert not report["forward_mode"].ok and re.search(
        r"weight\[\d\]: jvp 0 vs finite difference", report["forward_mode"].detail
    )


def test_a_complex_parameter_gets_its_tangent_through_its_real_view():
    module = ScaleModule(Scale, dtype=torch.complex128)
    assert check_gradients(module, x64(3, 4, dtype=torch.complex128), checks=["forward_mode"])["forward_mode"].ok


def two_scales(wrong_by: float) -> type[torch.autograd.Function]:
    """Outputs (1e6 exp(x), sin(x)), with the second output's jvp scaled by 1 + wrong_by."""

    class TwoScales(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            ctx.save_for_forward(x)
            return 1e6 * torch.exp(x), torch.sin(x)

        @staticmethod
        def backward(ctx, g_large, g_small):
            (x,) = ctx.saved_tensors
            return 1e6 * torch.exp(x) * g_large + torch.cos(x) * g_small

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 1e6 * torch.exp(x) * t, torch.cos(x) * t * (1 + wrong_by)

    return TwoScales


def test_the_jvp_of_an_output_a_million_times_smaller_than_another_is_checked_at_its_own_scale():
    x = x64(5, 3).requires_grad_()
    wrong = check_gradients(two_scales(1e-6), x)["forward_mode"]
    assert wrong.status == "failed"
    assert "output[1]'s upstream gradient alone" in wrong.detail
    assert check_gradients(two_scales(0.0), x)["forward_mode"].status == "passed"
