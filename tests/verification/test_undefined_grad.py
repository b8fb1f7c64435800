"""An output that does not reach the loss gets no gradient (None): the backward must take it as zeros."""

import torch

import framework as fw
from verification import check_gradients


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class SineAndCosine(torch.autograd.Function):
    """(sin x, cos x), its gradients left unmaterialized: None for an output that does not reach the loss."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, g_sin, g_cos):
        (x,) = ctx.saved_tensors
        grad = torch.zeros_like(x)
        if g_sin is not None:
            grad = grad + g_sin * x.cos()
        if g_cos is not None:
            grad = grad - g_cos * x.sin()
        return grad


class MultipliesNone(SineAndCosine):
    @staticmethod
    def backward(ctx, g_sin, g_cos):
        (x,) = ctx.saved_tensors
        return g_sin * x.cos() - g_cos * x.sin()


class TakesNoneAsOnes(SineAndCosine):
    @staticmethod
    def backward(ctx, g_sin, g_cos):
        (x,) = ctx.saved_tensors
        g_sin = torch.ones_like(x) if g_sin is None else g_sin
        g_cos = torch.ones_like(x) if g_cos is None else g_cos
        return g_sin * x.cos() - g_cos * x.sin()


class SineCosineSquare(torch.autograd.Function):
    """(sin x, cos x, x^2), gradients unmaterialized; skips each missing one."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.sin(), x.cos(), x * x

    @staticmethod
    def backward(ctx, g_sin, g_cos, g_square):
        (x,) = ctx.saved_tensors
        grad = torch.zeros_like(x)
        if g_sin is not None:
            grad = grad + g_sin * x.cos()
        if g_cos is not None:
            grad = grad - g_cos * x.sin()
        if g_square is not None:
            grad = grad + 2 * x * g_square
        return grad


class WrongWhenOnlySineIsUsed(SineCosineSquare):
    """Right with any one gradient missing, 50% off when sin x alone reaches the loss: a shortcut path."""

    @staticmethod
    def backward(ctx, g_sin, g_cos, g_square):
        (x,) = ctx.saved_tensors
        if g_cos is None and g_square is None:
            return 1.5 * g_sin * x.cos()
        return SineCosineSquare.backward(ctx, g_sin, g_cos, g_square)


class FailsWhenOnlySquareIsUsed(SineCosineSquare):
    @staticmethod
    def backward(ctx, g_sin, g_cos, g_square):
        if g_sin is None and g_cos is None:
            raise RuntimeError("shortcut path not implemented")
        return SineCosineSquare.backward(ctx, g_sin, g_cos, g_square)


def test_a_backward_that_skips_a_missing_gradient_passes():
    assert check_gradients(SineAndCosine, x64(3, 4))["undefined_grad"].status == "passed"


def test_a_backward_that_fails_on_a_missing_gradient_fails_naming_the_output():
    report = check_gradients(MultipliesNone, x64(3, 4))
    assert report["finite_differences"].ok  # every gradient given: right
    detail = report["undefined_grad"].detail
    assert not report["undefined_grad"].ok and "with no gradient for output[0]" in detail and "TypeError" in detail


def test_a_backward_that_takes_a_missing_gradient_for_ones_fails():
    report = check_gradients(TakesNoneAsOnes, x64(3, 4))
    assert report["finite_differences"].ok and not report["undefined_grad"].ok
    assert "without output[0]'s gradient" in report["undefined_grad"].detail


def test_torch_operations_with_several_outputs_pass():
    assert check_gradients(lambda a: torch.linalg.eigh(a @ a.mT), x64(3, 3))["undefined_grad"].ok
    assert check_gradients(lambda a: (a.sin(), a.cos()), x64(3))["undefined_grad"].ok
    assert check_gradients(lambda a: torch.linalg.svd(a, full_matrices=False), x64(4, 3))["undefined_grad"].ok


def test_one_output_or_a_hand_written_module_is_not_applicable():
    assert check_gradients(torch.sin, x64(3))["undefined_grad"].status == "not applicable"
    assert check_gradients(fw.Tanh(), x64(3))["undefined_grad"].status == "not applicable"


def test_a_backward_that_skips_every_missing_gradient_of_three_passes():
    assert check_gradients(SineCosineSquare, x64(3, 4))["undefined_grad"].status == "passed"


def test_a_backward_wrong_only_when_one_output_alone_gets_a_gradient_fails_naming_the_missing_ones():
    report = check_gradients(WrongWhenOnlySineIsUsed, x64(3, 4))
    assert report["finite_differences"].ok  # every gradient given: right
    detail = report["undefined_grad"].detail
    assert not report["undefined_grad"].ok
    assert "backward with output[0]'s gradient only" in detail and "with zeros for output[1] and output[2]" in detail


def test_a_backward_that_raises_when_one_output_alone_gets_a_gradient_fails_naming_the_missing_ones():
    detail = check_gradients(FailsWhenOnlySquareIsUsed, x64(3, 4))["undefined_grad"].detail
    assert "with no gradient for output[0] and output[1]" in detail and "a gradient for output[2] only" in detail
    assert "shortcut path not implemented" in detail
