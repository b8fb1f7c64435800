"""Complex inputs and outputs are checked through their real views, against torch's convention.

For a real loss L, torch's gradient of a complex tensor z is dL/dRe z + i dL/dIm z; a backward
written to another convention (the conjugate, the Wirtinger derivative dL/dz) is wrong in torch.
"""

import pytest
import torch

import framework as fw
from verification import check_gradients


def z128(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.complex128)


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class ComplexProduct(torch.autograd.Function):
    """y = a b;   dL/da = g conj(b), dL/db = g conj(a)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b.conj(), g * a.conj()


class ProductWithoutConjugate(ComplexProduct):
    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, g * a  # the holomorphic derivative, not torch's convention


class ProductOffInOneElement(ComplexProduct):
    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        grad_a = g * b.conj()
        grad_a[1, 2] *= 1 + 1e-6
        return grad_a, g * a.conj()


class ProductDroppingUpstreamImaginary(ComplexProduct):
    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g.real * b.conj(), g.real * a.conj()


def product(a, b):
    return a * b


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
def test_a_correct_complex_function_passes_every_check(dtype):
    report = check_gradients(ComplexProduct, z128(4, 3).to(dtype), z128(4, 3, seed=1).to(dtype), reference=product)
    assert report.ok, str(report)
    assert report["layouts"].ok and report["twin"].ok
    assert any("input[0], input[1] are complex: checked through the real view" in note for note in report.notes)


def test_a_backward_without_the_conjugate_fails_against_finite_differences_and_the_twin():
    report = check_gradients(ProductWithoutConjugate, z128(4, 3), z128(4, 3, seed=1), reference=product)
    assert not report["finite_differences"].ok
    assert not report["twin"].ok


def test_an_error_of_one_part_in_a_million_in_one_complex_element_fails_and_is_named():
    report = check_gradients(ProductOffInOneElement, z128(4, 3), z128(4, 3, seed=1))
    fd = report["finite_differences"]
    assert not fd.ok
    assert "input[0][1, 2, " in fd.detail  # the element, then its real (0) or imaginary (1) part


def test_a_complex_grad_output_for_a_complex_output_is_used_as_given():
    a, b = z128(4, 3), z128(4, 3, seed=1)
    real_upstream = torch.complex(x64(4, 3, seed=2), torch.zeros(4, 3, dtype=torch.float64))
    full_upstream = torch.complex(x64(4, 3, seed=2), x64(4, 3, seed=3))
    assert check_gradients(ProductDroppingUpstreamImaginary, a, b, grad_output=real_upstream).ok
    assert not check_gradients(ProductDroppingUpstreamImaginary, a, b, grad_output=full_upstream).ok


class SineAndPhase(torch.autograd.Function):
    """(sin x, exp(i x)) of a real x;   dL/dx = g cos x + Re(conj(h) i exp(i x))."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin(), torch.polar(torch.ones_like(x), x)

    @staticmethod
    def backward(ctx, g, h):
        (x,) = ctx.saved_tensors
        return g * x.cos() + (h.conj() * 1j * torch.polar(torch.ones_like(x), x)).real


class SineAndPhaseMissingThePhase(SineAndPhase):
    @staticmethod
    def backward(ctx, g, h):
        (x,) = ctx.saved_tensors
        return g * x.cos()


def test_a_real_input_with_a_complex_output_is_checked_through_the_output():
    assert check_gradients(SineAndPhase, x64(3, 4)).ok
    report = check_gradients(SineAndPhaseMissingThePhase, x64(3, 4))
    assert not report.ok
    assert "output[1] is complex: checked through the real view" in str(report)


@pytest.mark.parametrize(
    "target",
    [torch.fft.fft, torch.fft.rfft, lambda z: z.abs(), lambda z: torch.linalg.det(z)],
    ids=["fft", "rfft", "abs", "det"],
)
def test_torch_complex_operations_pass(target):
    x = x64(4, 4) if target is torch.fft.rfft else z128(4, 4)
    assert check_gradients(target, x).ok


def _read_as_contiguous(z):
    """z's storage read as if z were contiguous: wrong for any other layout."""
    strides = torch.empty(z.shape).stride()
    return torch.as_strided(z, z.shape, strides, z.storage_offset()) * 2


def test_layouts_hand_a_transposed_complex_tensor_to_the_target():
    report = check_gradients(_read_as_contiguous, z128(3, 4), checks=["layouts"])
    assert not report["layouts"].ok


class SquareWithConstantSecondDerivative(torch.autograd.Function):
    """y = z^2: its backward is right, but half of it is detached, so its own derivative is half."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z * z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * (z.conj() + z.conj().detach())


def test_second_order_is_checked_for_complex_functions():
    assert check_gradients(lambda z: z * z, z128(3), order=2).ok
    report = check_gradients(SquareWithConstantSecondDerivative, z128(3), order=2)
    assert report["finite_differences"].ok
    assert not report["second_order"].ok


def test_a_hand_written_module_given_a_complex_input_is_a_clear_error():
    with pytest.raises(TypeError, match=r"input\[0\] is complex.*hand-written"):
        check_gradients(fw.Tanh(), z128(3))


class ComplexScale(torch.nn.Module):
    """z w, through ComplexProduct (or ``function``), with a complex parameter w."""

    def __init__(self, function=ComplexProduct, dtype=torch.complex128):
        super().__init__()
        self.function = function
        self.w = torch.nn.Parameter(z128(3, seed=2).to(dtype))

    def forward(self, z):
        return self.function.apply(z, self.w)


class PlainComplexScale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex128))

    def forward(self, z):
        return z * self.w


def test_a_modules_complex_parameter_is_checked_through_its_real_view():
    report = check_gradients(ComplexScale(), z128(3), reference=PlainComplexScale())
    assert report.ok, str(report)
    assert any("parameters ['w'] are complex: checked through their real views" in note for note in report.notes)
    wrong = check_gradients(ComplexScale(ProductWithoutConjugate), z128(3), reference=PlainComplexScale())
    assert not wrong["finite_differences"].ok and not wrong["twin"].ok
    assert "w[" in wrong["finite_differences"].detail or "input[0][" in wrong["finite_differences"].detail


def test_a_wrong_gradient_of_a_complex_parameter_alone_fails_and_is_named():
    class ParameterGradientWithoutConjugate(ComplexProduct):
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b.conj(), g * a  # right for the input, wrong for the parameter

    report = check_gradients(ComplexScale(ParameterGradientWithoutConjugate), z128(3))
    assert not report["finite_differences"].ok
    assert report["finite_differences"].detail.startswith("w[")


def test_a_complex64_module_keeps_its_complex_parameters_in_the_float64_truth():
    # Module.to(torch.float64) would cast w to real, dropping its imaginary part: a false failure.
    report = check_gradients(ComplexScale(dtype=torch.complex64), z128(3).to(torch.complex64))
    assert report["low_precision"].ok, str(report)


class ParameterGradientDetached(ComplexProduct):
    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b.conj(), (g * a.conj()).detach()  # right values, but no graph for the second order


def test_a_complex_parameter_is_differentiated_twice_at_order_two():
    assert check_gradients(ComplexScale(), z128(3), order=2).ok
    report = check_gradients(ComplexScale(ParameterGradientDetached), z128(3), order=2)
    assert report["finite_differences"].ok and not report["second_order"].ok


def test_a_complex_upstream_gradient_for_a_real_output_is_still_a_clear_error():
    with pytest.raises(ValueError, match="grad_output is complex"):
        check_gradients(lambda z: z.abs(), z128(3), grad_output=z128(3))


@pytest.mark.parametrize(
    ("grad_output", "message"),
    [
        (z128(3), r"grad_output has shape \(3,\), but the complex output it belongs to has shape \(3, 4\)"),
        (x64(3, 4), r"output is complex, but its grad_output is float64: give a complex tensor"),
    ],
    ids=["shape", "real"],
)
def test_a_grad_output_that_does_not_fit_a_complex_output_is_named_in_the_users_terms(grad_output, message):
    with pytest.raises(ValueError, match=message):
        check_gradients(lambda z: z * z, z128(3, 4), grad_output=grad_output)


def test_a_number_as_a_complex_outputs_grad_output_is_a_real_upstream_gradient():
    # 1.0 is 1 + 0i: a backward that drops the upstream's imaginary part is right for it.
    assert check_gradients(ProductDroppingUpstreamImaginary, z128(3), z128(3, seed=1), grad_output=1.0).ok
