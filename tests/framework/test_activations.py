"""Activations against their torch.nn twins: values, gradients, kinks, stability and bad input."""

from __future__ import annotations

import math
import re

import pytest
import torch

import framework as fw
from framework import ModuleValueError, _blocks, activations

SMALL_BLOCK = 1024  # patched in for the blocked formulas' path, so that small tensors take it

F64 = torch.float64

# (framework module, torch.nn twin) factories over several hyper-parameter values.
PAIRS = [
    pytest.param(lambda: fw.ReLU(), lambda: torch.nn.ReLU(), id="ReLU"),
    pytest.param(lambda: fw.Tanh(), lambda: torch.nn.Tanh(), id="Tanh"),
    pytest.param(lambda: fw.Sigmoid(), lambda: torch.nn.Sigmoid(), id="Sigmoid"),
    pytest.param(lambda: fw.LeakyReLU(), lambda: torch.nn.LeakyReLU(), id="LeakyReLU-default"),
    pytest.param(lambda: fw.LeakyReLU(0.3), lambda: torch.nn.LeakyReLU(0.3), id="LeakyReLU-0.3"),
    pytest.param(lambda: fw.LeakyReLU(-0.5), lambda: torch.nn.LeakyReLU(-0.5), id="LeakyReLU-negative"),
    pytest.param(lambda: fw.LeakyReLU(2.0), lambda: torch.nn.LeakyReLU(2.0), id="LeakyReLU-2"),
    pytest.param(lambda: fw.ELU(), lambda: torch.nn.ELU(), id="ELU-default"),
    pytest.param(lambda: fw.ELU(0.25), lambda: torch.nn.ELU(0.25), id="ELU-0.25"),
    pytest.param(lambda: fw.ELU(2.5), lambda: torch.nn.ELU(2.5), id="ELU-2.5"),
    pytest.param(lambda: fw.SELU(), lambda: torch.nn.SELU(), id="SELU"),
    pytest.param(lambda: fw.Tanhshrink(), lambda: torch.nn.Tanhshrink(), id="Tanhshrink"),
    pytest.param(lambda: fw.Threshold(0.5, -2.0), lambda: torch.nn.Threshold(0.5, -2.0), id="Threshold-0.5"),
    pytest.param(lambda: fw.Threshold(-1.0, 3.0), lambda: torch.nn.Threshold(-1.0, 3.0), id="Threshold--1"),
    pytest.param(lambda: fw.Softplus(), lambda: torch.nn.Softplus(), id="Softplus-default"),
    pytest.param(lambda: fw.Softplus(2.0, 3.0), lambda: torch.nn.Softplus(2.0, 3.0), id="Softplus-2-3"),
    pytest.param(lambda: fw.Softplus(0.5, 1.0), lambda: torch.nn.Softplus(0.5, 1.0), id="Softplus-0.5-1"),
    pytest.param(lambda: fw.GELU(), lambda: torch.nn.GELU(), id="GELU-none"),
    pytest.param(lambda: fw.GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh"), id="GELU-tanh"),
]

SHAPES = [(7,), (3, 4), (2, 3, 5)]


def torch_forward_backward(twin: torch.nn.Module, x: torch.Tensor, grad_output: torch.Tensor):
    """The twin's output and dL/dx, with L = <y, grad_output>, through torch.autograd."""
    leaf = x.detach().clone().requires_grad_(True)
    y = twin(leaf)
    (dx,) = torch.autograd.grad(y, leaf, grad_output)
    return y.detach(), dx


def ours_forward_backward(module: fw.Module, x: torch.Tensor, grad_output: torch.Tensor):
    y = module(x)
    return y, module.backward(grad_output)


@pytest.mark.parametrize("select", [False, True], ids=["steps", "select"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("make", "make_twin"), PAIRS)
def test_forward_and_backward_match_the_torch_twin_in_float64(make, make_twin, shape, select, monkeypatch):
    monkeypatch.setattr(activations, "selects", lambda t: select)  # both paths: the CPU's and a GPU's
    generator = torch.Generator().manual_seed(hash(shape) % 2**31)
    x = 8 * torch.rand(shape, generator=generator, dtype=torch.float64) - 4
    grad_output = torch.randn(shape, generator=generator, dtype=torch.float64)
    y, dx = ours_forward_backward(make(), x, grad_output)
    y_ref, dx_ref = torch_forward_backward(make_twin(), x, grad_output)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("select", [False, True], ids=["steps", "select"])
@pytest.mark.parametrize(("make", "make_twin"), PAIRS)
def test_forward_and_backward_match_the_torch_twin_in_float32(make, make_twin, select, monkeypatch):
    monkeypatch.setattr(activations, "selects", lambda t: select)
    generator = torch.Generator().manual_seed(7)
    x = 8 * torch.rand((4, 6), generator=generator) - 4
    grad_output = torch.randn((4, 6), generator=generator)
    y, dx = ours_forward_backward(make(), x, grad_output)
    y_ref, dx_ref = torch_forward_backward(make_twin(), x, grad_output)
    assert y.dtype == dx.dtype == torch.float32
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(y, y_ref, rtol=16 * eps, atol=16 * eps)
    torch.testing.assert_close(dx, dx_ref, rtol=16 * eps, atol=16 * eps)


@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("select", [False, True], ids=["sign-multiply", "select"])
def test_relu_backward_is_torchs_bit_for_bit_on_both_paths(select, dtype, inplace, monkeypatch):
    monkeypatch.setattr(activations, "selects", lambda t: select)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4099, generator=generator, dtype=torch.float64).to(dtype)
    x[::7] = 0.0  # the kink: derivative 0, as torch
    g = torch.randn(4099, generator=generator, dtype=torch.float64).to(dtype)
    x_ref = x.clone().requires_grad_(True)
    torch.nn.functional.relu(x_ref).backward(g)
    module = fw.ReLU(inplace)
    y = module(x.clone())
    assert torch.equal(y, torch.nn.functional.relu(x))
    dx = module.backward(g)
    assert dx.dtype == dtype and torch.equal(dx, x_ref.grad)


@pytest.mark.parametrize("select", [False, True], ids=["sign-multiply", "select"])
def test_relu_backward_at_nan_is_zero_on_the_cpu_path_and_passes_the_gradient_on_as_torch_on_the_gpu_path(
    select, monkeypatch
):
    monkeypatch.setattr(activations, "selects", lambda t: select)
    module = fw.ReLU()
    module(torch.tensor([math.nan, 1.0, -1.0], dtype=torch.float64))
    dx = module.backward(torch.full((3,), 2.0, dtype=torch.float64))
    assert dx[1:].tolist() == [2.0, 0.0]
    assert dx[0].item() == (2.0 if select else 0.0)


@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("slope", [0.01, 0.0, 1.0, 0.3, -0.5, 2.5], ids=lambda s: f"slope={s}")
@pytest.mark.parametrize("size", [7, 5 * SMALL_BLOCK + 3], ids=["small", "blocked"])
def test_leaky_relu_is_torchs_bit_for_bit(size, slope, dtype, inplace, monkeypatch):
    """y = x f'(x) and dL/dx = f'(x) dL/dy from the kept slope (in float32 for bfloat16 and float16):
    torch's exactly, every product rounded once, at the kink, at -0, at the infinities and at NaN.
    (A maximum of x and slope x turns +inf into NaN at slope 0; the slope rounded to a half
    precision makes a second rounding.)"""
    monkeypatch.setattr(_blocks, "BLOCK", SMALL_BLOCK)
    generator = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45], dtype=dtype)
    x = torch.cat([special, (10 * torch.randn(size, generator=generator, dtype=torch.float64)).to(dtype)])
    g = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(dtype)
    x_ref = x.clone().requires_grad_(True)
    expected = torch.nn.functional.leaky_relu(x_ref, slope)
    expected.backward(g)
    module = fw.LeakyReLU(slope, inplace=inplace)
    y = module(x.clone())
    assert torch.equal(y.nan_to_num(7.0), expected.detach().nan_to_num(7.0))
    numbers = ~y.isnan()
    assert torch.equal(torch.signbit(y[numbers]), torch.signbit(expected.detach()[numbers]))  # -0 stays -0
    assert torch.equal(module.backward(g), x_ref.grad)


def test_leaky_relu_derivative_at_zero_is_the_negative_slope():
    module = fw.LeakyReLU(0.2)
    module(torch.zeros(3, dtype=torch.float64))
    assert module.backward(torch.ones(3, dtype=torch.float64)).tolist() == [0.2, 0.2, 0.2]


def test_threshold_at_threshold_gives_value_and_zero_derivative():
    module = fw.Threshold(1.5, -7.0)
    x = torch.tensor([1.5], dtype=torch.float64)
    assert module(x).item() == -7.0
    assert module.backward(torch.ones_like(x)).item() == 0.0


# (threshold, value, dtypes where threshold + (value - threshold) rounds to exactly value)
THRESHOLD_PAIRS = [
    (0.1, 20.0, {torch.float32, torch.float64}),
    (-0.47657051501493, -14.4649949824222, set()),
    (2.205616652956685, -15.365347386772081, {torch.float32}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("threshold, value, shifted", THRESHOLD_PAIRS, ids=["exact", "inexact", "float32-only"])
@pytest.mark.parametrize("size", [7, 5 * SMALL_BLOCK + 3], ids=["small", "blocked"])
@pytest.mark.parametrize("select", [False, True], ids=["steps", "select"])
def test_threshold_output_is_torchs_bit_for_bit(threshold, value, shifted, dtype, size, select, monkeypatch):
    """Whichever formula the dtype allows (three operations where threshold + (value - threshold)
    is exactly value, else five; a comparison and a select on a GPU), output and gradient are
    torch's exactly: at, next to and far from the threshold, at the infinities (and the output at
    NaN; the gradient at NaN too where the formula selects)."""
    monkeypatch.setattr(activations, "selects", lambda t: select)
    monkeypatch.setattr(_blocks, "BLOCK", SMALL_BLOCK)
    module = fw.Threshold(threshold, value)
    assert (dtype in module._shifted) == (dtype in shifted)
    t = torch.tensor(threshold, dtype=dtype)
    special = torch.stack(
        [t, torch.nextafter(t, torch.tensor(1e9, dtype=dtype)), torch.nextafter(t, torch.tensor(-1e9, dtype=dtype))]
    )
    special = torch.cat([special, torch.tensor([math.inf, -math.inf, math.nan, 0.0], dtype=dtype)])
    x = torch.cat([special, 10 * torch.randn(size, generator=torch.Generator().manual_seed(0)).to(dtype)])
    leaf = x.clone().requires_grad_(True)
    expected = torch.nn.Threshold(threshold, value)(leaf)
    assert torch.equal(module(x).nan_to_num(7.0), expected.nan_to_num(7.0))
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    expected.backward(g)
    # At NaN torch passes the gradient on, as do a select and the kept indicator of x <= threshold
    # (the three-operation forward's); a 0/1 step of x > threshold gives f'(x) = 0 there.
    passes_at_nan = select or dtype in module._shifted
    compared = torch.ones_like(x, dtype=torch.bool) if passes_at_nan else ~x.isnan()
    assert torch.equal(module.backward(g)[compared], leaf.grad[compared])


def test_threshold_changed_after_construction_still_gives_torchs_output():
    module = fw.Threshold(0.1, 20.0)
    module.threshold, module.value = -0.47657051501493, -14.4649949824222
    x = torch.cat([torch.tensor([module.threshold, -math.inf]), torch.randn(100)])
    assert torch.equal(module(x), torch.nn.Threshold(module.threshold, module.value)(x))


HUGE = [
    pytest.param(lambda: fw.Sigmoid(), lambda: torch.nn.Sigmoid(), id="Sigmoid"),
    pytest.param(lambda: fw.Softplus(), lambda: torch.nn.Softplus(), id="Softplus"),
    pytest.param(lambda: fw.Softplus(3.0, 5.0), lambda: torch.nn.Softplus(3.0, 5.0), id="Softplus-3-5"),
    pytest.param(lambda: fw.ELU(), lambda: torch.nn.ELU(), id="ELU"),
    pytest.param(lambda: fw.SELU(), lambda: torch.nn.SELU(), id="SELU"),
    pytest.param(lambda: fw.GELU(), lambda: torch.nn.GELU(), id="GELU-none"),
    pytest.param(lambda: fw.GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh"), id="GELU-tanh"),
    pytest.param(lambda: fw.Tanhshrink(), lambda: torch.nn.Tanhshrink(), id="Tanhshrink"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(("make", "make_twin"), HUGE)
def test_huge_inputs_give_finite_results_equal_to_torch(make, make_twin, dtype):
    x = torch.tensor([-1000.0, -100.0, 100.0, 1000.0], dtype=dtype)
    grad_output = torch.tensor([0.5, -1.0, 2.0, 1.0], dtype=dtype)
    y, dx = ours_forward_backward(make(), x, grad_output)
    y_ref, dx_ref = torch_forward_backward(make_twin(), x, grad_output)
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(dx, dx_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_softplus_never_overflows_even_with_a_huge_threshold(dtype):
    # torch's own softplus returns inf here (exp(beta x) overflows); the stable form does not.
    module = fw.Softplus(beta=1.0, threshold=1e6)
    x = torch.tensor([-1000.0, 0.0, 1000.0], dtype=dtype)
    y = module(x)
    dx = module.backward(torch.ones_like(x))
    torch.testing.assert_close(y, torch.tensor([0.0, math.log(2.0), 1000.0], dtype=dtype))
    torch.testing.assert_close(dx, torch.tensor([0.0, 0.5, 1.0], dtype=dtype))


def test_defaults_equal_torch_defaults():
    assert fw.LeakyReLU().negative_slope == torch.nn.LeakyReLU().negative_slope
    assert fw.ELU().alpha == torch.nn.ELU().alpha
    assert (fw.Softplus().beta, fw.Softplus().threshold) == (torch.nn.Softplus().beta, torch.nn.Softplus().threshold)
    assert fw.GELU().approximate == torch.nn.GELU().approximate


NEW_CLASSES = [fw.LeakyReLU, fw.ELU, fw.SELU, fw.Tanhshrink, fw.Threshold, fw.Softplus, fw.GELU]


@pytest.mark.parametrize("cls", NEW_CLASSES, ids=lambda c: c.__name__)
def test_every_activation_is_registered_and_exported(cls):
    assert cls in fw.modules()
    assert cls.__name__ in fw.__all__


BAD_CONSTRUCTORS = [
    pytest.param(fw.LeakyReLU, (math.nan,), {}, id="LeakyReLU-nan"),
    pytest.param(fw.LeakyReLU, (math.inf,), {}, id="LeakyReLU-inf"),
    pytest.param(fw.LeakyReLU, ("0.1",), {}, id="LeakyReLU-str"),
    pytest.param(fw.LeakyReLU, (True,), {}, id="LeakyReLU-bool"),
    pytest.param(fw.ELU, (math.nan,), {}, id="ELU-nan"),
    pytest.param(fw.ELU, (-math.inf,), {}, id="ELU-inf"),
    pytest.param(fw.ELU, (None,), {}, id="ELU-None"),
    pytest.param(fw.Threshold, (math.nan, 0.0), {}, id="Threshold-threshold-nan"),
    pytest.param(fw.Threshold, (0.0, math.inf), {}, id="Threshold-value-inf"),
    pytest.param(fw.Threshold, (0.0, "x"), {}, id="Threshold-value-str"),
    pytest.param(fw.Softplus, (), {"beta": 0.0}, id="Softplus-beta-0"),
    pytest.param(fw.Softplus, (), {"beta": -1.0}, id="Softplus-beta-negative"),
    pytest.param(fw.Softplus, (), {"beta": math.inf}, id="Softplus-beta-inf"),
    pytest.param(fw.Softplus, (), {"threshold": math.nan}, id="Softplus-threshold-nan"),
    pytest.param(fw.GELU, ("erf",), {}, id="GELU-unknown-approximation"),
    pytest.param(fw.GELU, (None,), {}, id="GELU-None"),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), BAD_CONSTRUCTORS)
def test_invalid_constructor_arguments_raise_naming_the_class(cls, args, kwargs):
    with pytest.raises((ValueError, TypeError), match=cls.__name__):
        cls(*args, **kwargs)


ALL = [pytest.param(make, id=p.id) for p in PAIRS for make in [p.values[0]]]


@pytest.mark.parametrize("make", ALL)
def test_backward_before_forward_raises_naming_the_class(make):
    module = make()
    with pytest.raises(ValueError, match=f"{type(module).__name__}: backward called before forward"):
        module.backward(torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("make", ALL)
def test_grad_output_of_the_wrong_shape_raises_naming_the_class(make):
    module = make()
    module(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=type(module).__name__):
        module.backward(torch.ones(3, 2, dtype=torch.float64))


@pytest.mark.parametrize("make", ALL)
def test_grad_output_of_another_dtype_raises_naming_the_class(make):
    module = make()
    module(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=type(module).__name__):
        module.backward(torch.ones(2, 3, dtype=torch.float32))


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("bad", [[1.0, 2.0], torch.arange(3)], ids=["list", "int64-tensor"])
def test_non_floating_tensor_input_raises_naming_the_class(make, bad):
    module = make()
    with pytest.raises(TypeError, match=type(module).__name__):
        module(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("make", ALL)
def test_cuda_results_equal_cpu_results(make):
    generator = torch.Generator().manual_seed(9)
    x = 8 * torch.rand((4, 5), generator=generator, dtype=F64) - 4
    grad_output = torch.randn((4, 5), generator=generator, dtype=F64)
    y, dx = ours_forward_backward(make(), x, grad_output)
    y_cuda, dx_cuda = ours_forward_backward(make(), x.cuda(), grad_output.cuda())
    assert y_cuda.is_cuda and dx_cuda.is_cuda
    torch.testing.assert_close(y_cuda.cpu(), y, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dx_cuda.cpu(), dx, rtol=1e-12, atol=1e-14)


# -- inplace=True, as torch: the input is overwritten with the output and returned ----------------------------
IN_PLACE = [
    pytest.param(lambda inplace: fw.ReLU(inplace), lambda: torch.nn.ReLU(inplace=True), id="ReLU"),
    pytest.param(lambda inplace: fw.LeakyReLU(0.2, inplace), lambda: torch.nn.LeakyReLU(0.2, True), id="LeakyReLU"),
    pytest.param(lambda inplace: fw.ELU(0.7, inplace), lambda: torch.nn.ELU(0.7, True), id="ELU"),
    pytest.param(lambda inplace: fw.SELU(inplace), lambda: torch.nn.SELU(True), id="SELU"),
    pytest.param(
        lambda inplace: fw.Threshold(0.3, 2.0, inplace), lambda: torch.nn.Threshold(0.3, 2.0, True), id="Threshold"
    ),
]


@pytest.mark.parametrize(("make", "make_twin"), IN_PLACE)
@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 2)], ids=str)
@pytest.mark.parametrize("select", [False, True], ids=["steps", "select"])
def test_inplace_overwrites_and_returns_the_input_and_its_gradient_matches_torchs_inplace(
    make, make_twin, shape, select, monkeypatch
):
    monkeypatch.setattr(activations, "selects", lambda t: select)  # both paths: the CPU's and a GPU's
    generator = torch.Generator().manual_seed(len(shape))
    x = 4 * torch.rand(shape, generator=generator, dtype=torch.float64) - 2
    g = torch.randn(shape, generator=generator, dtype=torch.float64)
    given = x.clone()
    module = make(True)
    y = module(given)
    grad = module.backward(g)
    leaf = x.clone().requires_grad_(True)
    y_ref = make_twin()(leaf.clone())  # torch's in-place version needs a non-leaf
    y_ref.backward(g)
    assert y is given
    torch.testing.assert_close(given, y_ref.detach(), rtol=1e-15, atol=0)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-14, atol=0)
    out_of_place = make(False)
    torch.testing.assert_close(out_of_place(x), y, rtol=0, atol=0)
    torch.testing.assert_close(out_of_place.backward(g), grad, rtol=0, atol=0)


def test_inplace_relu_inside_a_network_matches_torch():
    torch.manual_seed(0)
    model = fw.Sequential(fw.Linear(3, 5), fw.ReLU(inplace=True), fw.Linear(5, 2), fw.ELU(inplace=True)).to(
        dtype=torch.float64
    )
    twin = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(True), torch.nn.Linear(5, 2), torch.nn.ELU(True))
    twin.double().load_state_dict({n: p for n, p, _ in model.named_param()})
    x = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 2, dtype=torch.float64)
    y = model(x)
    grad = model.backward(g)
    leaf = x.clone().requires_grad_(True)
    y_ref = twin(leaf)
    y_ref.backward(g)
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-13, atol=1e-15)
    ours = {name: grad for name, _, grad in model.named_param()}
    for name, p in twin.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-13, atol=1e-15)


def test_inplace_leaky_relu_with_a_negative_slope_is_correct_where_torch_refuses_it():
    x = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    g = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    module = fw.LeakyReLU(-0.5, inplace=True)
    module(x.clone())
    torch.testing.assert_close(module.backward(g), g * torch.tensor([-0.5, 1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("make", [lambda v: fw.ReLU(v), lambda v: fw.SELU(v), lambda v: fw.Threshold(0.0, 0.0, v)])
def test_inplace_that_is_not_a_bool_raises_naming_the_class(make):
    with pytest.raises(TypeError, match="expected inplace to be a bool"):
        make(1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    ("make", "make_twin", "positive"),
    [
        pytest.param(lambda: fw.SELU(), lambda: torch.nn.SELU(), fw.SELU.scale, id="SELU"),
        pytest.param(lambda: fw.ELU(2.5), lambda: torch.nn.ELU(2.5), 1.0, id="ELU-2.5"),
        pytest.param(lambda: fw.ELU(-0.5), lambda: torch.nn.ELU(-0.5), 1.0, id="ELU-negative-alpha"),
        # No exact difference of the two slopes, and alpha beyond the half-precision ranges.
        pytest.param(lambda: fw.ELU(1e30), lambda: torch.nn.ELU(1e30), 1.0, id="ELU-1e30"),
    ],
)
def test_elu_family_slope_above_zero_is_exact_and_the_rest_is_torchs(make, make_twin, positive, dtype):
    x = torch.tensor([-3.0, -0.25, 0.0, 1e-3, 0.5, 7.0, math.inf, -math.inf], dtype=dtype)
    grad_output = torch.ones_like(x)
    y, dx = ours_forward_backward(make(), x, grad_output)
    y_ref, dx_ref = torch_forward_backward(make_twin(), x, grad_output)
    assert torch.equal(dx[3:7], torch.tensor(positive, dtype=dtype).expand(4))
    assert dx[7] == 0
    # Below 0 (the exponential branch, overflowing with alpha = 1e30), as torch up to its rounding;
    # in float32 f'(x) is alpha (expm1(x) + 1), within an ulp of the slope at 0 rather than of f'(x).
    tolerance = {"rtol": 2 * torch.finfo(dtype).eps, "atol": 0}
    slope_ulp = torch.finfo(dtype).eps * dx_ref[:3].abs().max().item() if dtype == torch.float32 else 0.0
    torch.testing.assert_close(dx[:3], dx_ref[:3], rtol=tolerance["rtol"], atol=slope_ulp)
    torch.testing.assert_close(y, y_ref, **tolerance)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_threshold_beyond_a_half_precision_range_thresholds_as_torch(dtype):
    """torch compares in float32: a threshold above the dtype's largest number is not infinity."""
    x = torch.tensor([-3.0, 0.5, 2.0, math.inf, -math.inf], dtype=dtype)
    for threshold in (1e5, -1e5) if dtype == torch.float16 else (1e38 * 3, -1e38 * 3):
        y, dx = ours_forward_backward(fw.Threshold(threshold, 0.0), x, torch.ones_like(x))
        y_ref, dx_ref = torch_forward_backward(torch.nn.Threshold(threshold, 0.0), x, torch.ones_like(x))
        assert torch.equal(y, y_ref) and torch.equal(dx, dx_ref), (threshold, y, y_ref, dx, dx_ref)


@pytest.mark.parametrize(
    ("threshold", "value", "dtype", "named"),
    [
        (1e300, 0.0, torch.float32, "threshold=1e+300"),
        (0.0, 1e300, torch.float32, "value=1e+300"),
        (0.0, 1e5, torch.float16, "value=100000"),
    ],
)
def test_threshold_refuses_numbers_beyond_the_dtypes_range_by_name(threshold, value, dtype, named):
    module = fw.Threshold(threshold, value)  # constructing it is fine: the dtype comes with the input
    with pytest.raises(ModuleValueError, match=re.escape(named)):
        module(torch.zeros(3, dtype=dtype))
    with pytest.raises(RuntimeError, match="overflow"):  # torch refuses them too
        torch.nn.Threshold(threshold, value)(torch.zeros(3, dtype=dtype))


def test_threshold_beyond_float32_still_works_in_float64():
    x = torch.tensor([-3.0, 0.5, math.inf, -math.inf], dtype=torch.float64)
    for threshold, value in ((1e300, 0.0), (-1e300, 0.0), (0.0, 1e300)):
        y, dx = ours_forward_backward(fw.Threshold(threshold, value), x, torch.ones_like(x))
        y_ref, dx_ref = torch_forward_backward(torch.nn.Threshold(threshold, value), x, torch.ones_like(x))
        assert torch.equal(y, y_ref) and torch.equal(dx, dx_ref), (threshold, value)


def test_softplus_with_a_tiny_beta_overflows_to_infinity_as_torch():
    """log(1 + exp(beta x)) / beta is about 69,000 at beta = 1e-5: beyond float16's range it is inf,
    not float16's largest number; x = +-inf still take their branch."""
    x = torch.tensor([-3.0, 0.0, 2.0, math.inf, -math.inf], dtype=torch.float16)
    y, dx = ours_forward_backward(fw.Softplus(1e-5), x, torch.ones_like(x))
    y_ref, dx_ref = torch_forward_backward(torch.nn.Softplus(1e-5), x, torch.ones_like(x))
    assert torch.equal(y, y_ref), (y, y_ref)
    torch.testing.assert_close(dx, dx_ref, rtol=2 * torch.finfo(torch.float16).eps, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_a_scalar_is_held_in_each_dtype_as_torch_holds_it(dtype):
    """The pure-Python rounding behind ELU's exact slope difference agrees with torch's own
    conversion of a Python float (bfloat16 and float16 through float32), overflow included."""
    generator = torch.Generator().manual_seed(0)
    mantissas = torch.rand(2000, generator=generator, dtype=torch.float64) * 2 - 1
    exponents = torch.randint(-45, 39, (2000,), generator=generator)
    for number in [*(mantissas * 10.0**exponents).tolist(), 0.1, 1 / 3, 65504.0, 65520.0, 3.4e38]:
        assert activations._as_held(number, dtype) == torch.full((), number, dtype=dtype).item(), number


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_softplus_without_its_switch_is_the_identity_above_the_threshold_to_the_bit(dtype):
    """With beta = 1 and threshold 20 these dtypes round log(1 + exp(x)) to x and sigmoid(x) to 1
    above the threshold, so the switch is skipped: above it y = x and f'(x) = 1 exactly, as torch."""
    module = fw.Softplus()
    assert module._switch_is_invisible(dtype) and not module._switch_is_invisible(torch.float64)
    x = torch.linspace(19.0, 60.0, 40001, dtype=torch.float64).to(dtype)
    x = torch.cat([x, torch.tensor([math.inf, -math.inf, -30.0, 0.0, 5.0], dtype=dtype)])
    y, dx = ours_forward_backward(module, x, torch.ones_like(x))
    y_ref, dx_ref = torch_forward_backward(torch.nn.Softplus(), x, torch.ones_like(x))
    above = x.double() > 20
    assert torch.equal(y[above], x[above]) and torch.equal(dx[above], torch.ones_like(x[above]))
    torch.testing.assert_close(y, y_ref, rtol=2 * torch.finfo(dtype).eps, atol=0)
    torch.testing.assert_close(dx, dx_ref, rtol=2 * torch.finfo(dtype).eps, atol=0)


HALF_PRECISION = [
    pytest.param(fw.ReLU, id="ReLU"),
    pytest.param(fw.Tanh, id="Tanh"),
    pytest.param(fw.Sigmoid, id="Sigmoid"),
    pytest.param(lambda: fw.LeakyReLU(0.01), id="LeakyReLU"),
    pytest.param(fw.ELU, id="ELU"),
    pytest.param(fw.SELU, id="SELU"),
    pytest.param(fw.Tanhshrink, id="Tanhshrink"),
    pytest.param(lambda: fw.Threshold(0.1, 20.0), id="Threshold"),
    pytest.param(fw.Softplus, id="Softplus"),
    pytest.param(fw.GELU, id="GELU"),
    pytest.param(lambda: fw.GELU("tanh"), id="GELU-tanh"),
]


@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("make", HALF_PRECISION)
def test_half_precision_output_and_gradient_are_the_float64_values_rounded_once(make, dtype, inplace):
    """As torch's kernels: computed in float32 and rounded once to the half precision, so within half
    a unit in its last place of the float64 values, plus float32's own error. (Rounded after every
    operation, GELU's gradient near x = -0.75, where Phi(x) + x phi(x) cancels, had the wrong sign.)"""
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-0.76, -0.74, 64), 3 * torch.randn(4000, generator=generator)]).to(dtype)
    g = torch.randn(x.shape, generator=generator).to(dtype)
    exact = make()
    y64, g64 = exact(x.double()), exact.backward(g.double())
    module = make()
    if inplace and hasattr(module, "inplace"):
        module.inplace = True
    y = module(x.clone())
    grad = module.backward(g)
    assert y.dtype == grad.dtype == dtype
    eps = torch.finfo(dtype).eps
    for computed, truth in ((y, y64), (grad, g64)):
        floor = 64 * torch.finfo(torch.float32).eps * float(truth.abs().max())
        assert bool(((computed.double() - truth).abs() <= eps / 2 * truth.abs() + floor).all())


@pytest.mark.parametrize("blocked", [False, True], ids=["whole", "blocked"])
def test_gelu_tanh_in_float32_is_accurate_on_its_left_tail_where_one_plus_tanh_cancels(blocked, monkeypatch):
    """y = x (1 + tanh u) / 2 computed as written loses everything where tanh(u) is near -1 (torch's
    float32 kernel: 30 % off at x = -5, 0 below -5.5). Here output and gradient stay within what
    float32 allows: (|x f'(x) / f(x)| + 4) eps relative error for y (the function's own
    conditioning, plus a few roundings), the same with f'' for the gradient."""
    if blocked:
        monkeypatch.setattr(_blocks, "BLOCK", SMALL_BLOCK)
    x = torch.linspace(-9.0, -3.0, 8 * SMALL_BLOCK)
    module = fw.GELU("tanh")
    y = module.forward(x)
    gradient = module.backward(torch.ones_like(x))

    # The truth in float64 from exp alone, another formula than the module's sigmoid: s = 1 / (1 + e^-2u).
    k, c = math.sqrt(2 / math.pi), 0.044715
    xs = x.double()
    two_u = 2 * k * (xs + c * xs**3)
    s = 1 / (1 + torch.exp(-two_u))
    du = 2 * k * (1 + 3 * c * xs**2)  # d(2u)/dx
    f, df = xs * s, s + xs * s * (1 - s) * du
    d2f = 2 * s * (1 - s) * du + xs * s * (1 - s) * ((1 - 2 * s) * du**2 + 12 * k * c * xs)
    eps = torch.finfo(torch.float32).eps
    for name, ours, value, slope in (("y", y, f, df), ("dL/dx", gradient, df, d2f)):
        relative = (ours.double() - value).abs() / value.abs()
        allowed = ((xs * slope / value).abs() + 4) * eps
        worst = (relative / allowed).argmax()
        assert relative[worst] <= allowed[worst], (
            f"{name} at x = {x[worst].item()}: {ours[worst].item()} vs {value[worst].item()}"
        )
