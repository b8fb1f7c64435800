"""Losses against their torch.nn twins: values, gradients, kinks, stability and bad input."""

from __future__ import annotations

import pytest
import torch

import framework as fw

F64 = torch.float64


def real_targets(prediction: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(prediction.shape, generator=generator, dtype=prediction.dtype)


def unit_targets(prediction: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(prediction.shape, generator=generator, dtype=prediction.dtype)


def class_targets(prediction: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    shape = (prediction.shape[0], *prediction.shape[2:])
    return torch.randint(0, prediction.shape[1], shape, generator=generator)


def real_predictions(shape, generator, dtype=F64):
    return 6 * torch.rand(shape, generator=generator, dtype=dtype) - 3


def probability_predictions(shape, generator, dtype=F64):
    return 0.05 + 0.9 * torch.rand(shape, generator=generator, dtype=dtype)


ELEMENTWISE_SHAPES = [(5,), (3, 4), (2, 3, 2)]
CLASS_SHAPES = [(5, 3), (1, 4), (3, 4, 2), (2, 3, 2, 2)]

# id: (framework factory, twin factory, predictions, targets, shapes), each factory taking a reduction.
LOSSES = {
    "MSELoss": (
        lambda r: fw.MSELoss(r),
        lambda r: torch.nn.MSELoss(reduction=r),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "L1Loss": (
        lambda r: fw.L1Loss(r),
        lambda r: torch.nn.L1Loss(reduction=r),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "HuberLoss-default": (
        lambda r: fw.HuberLoss(r),
        lambda r: torch.nn.HuberLoss(reduction=r),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "HuberLoss-0.3": (
        lambda r: fw.HuberLoss(r, delta=0.3),
        lambda r: torch.nn.HuberLoss(reduction=r, delta=0.3),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "HuberLoss-2.5": (
        lambda r: fw.HuberLoss(r, delta=2.5),
        lambda r: torch.nn.HuberLoss(reduction=r, delta=2.5),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "SmoothL1Loss-default": (
        lambda r: fw.SmoothL1Loss(r),
        lambda r: torch.nn.SmoothL1Loss(reduction=r),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "SmoothL1Loss-0.4": (
        lambda r: fw.SmoothL1Loss(r, beta=0.4),
        lambda r: torch.nn.SmoothL1Loss(reduction=r, beta=0.4),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "SmoothL1Loss-0": (
        lambda r: fw.SmoothL1Loss(r, beta=0.0),
        lambda r: torch.nn.SmoothL1Loss(reduction=r, beta=0.0),
        real_predictions,
        real_targets,
        ELEMENTWISE_SHAPES,
    ),
    "BCELoss": (
        lambda r: fw.BCELoss(r),
        lambda r: torch.nn.BCELoss(reduction=r),
        probability_predictions,
        unit_targets,
        ELEMENTWISE_SHAPES,
    ),
    "BCEWithLogitsLoss": (
        lambda r: fw.BCEWithLogitsLoss(r),
        lambda r: torch.nn.BCEWithLogitsLoss(reduction=r),
        real_predictions,
        unit_targets,
        ELEMENTWISE_SHAPES,
    ),
    "CrossEntropyLoss": (
        lambda r: fw.CrossEntropyLoss(r),
        lambda r: torch.nn.CrossEntropyLoss(reduction=r),
        real_predictions,
        class_targets,
        CLASS_SHAPES,
    ),
}

CASES = [
    pytest.param(name, reduction, shape, id=f"{name}-{reduction}-{shape}")
    for name, (_, _, _, _, shapes) in LOSSES.items()
    for reduction in ("mean", "sum", "none")
    for shape in shapes
]


def torch_loss_and_gradient(twin, prediction, target, grad_output):
    leaf = prediction.detach().clone().requires_grad_(True)
    loss = twin(leaf, target)
    (grad,) = torch.autograd.grad(loss, leaf, grad_output)
    return loss.detach(), grad


def draw(name, shape, seed=0, dtype=F64):
    _, _, predictions, targets, _ = LOSSES[name]
    generator = torch.Generator().manual_seed(seed)
    prediction = predictions(shape, generator, dtype)
    return prediction, targets(prediction, generator)


@pytest.mark.parametrize(("name", "reduction", "shape"), CASES)
def test_loss_and_gradient_match_the_torch_twin_in_float64(name, reduction, shape):
    make, make_twin, *_ = LOSSES[name]
    prediction, target = draw(name, shape, seed=len(shape))
    loss_module = make(reduction)
    loss = loss_module(prediction, target)
    # A scalar for a reduced loss; for 'none' a random upstream gradient of the loss's shape.
    generator = torch.Generator().manual_seed(7)
    grad_output = torch.tensor(-1.7, dtype=F64) if reduction != "none" else torch.randn(loss.shape, generator=generator)
    grad = loss_module.backward(grad_output.to(F64))
    loss_ref, grad_ref = torch_loss_and_gradient(make_twin(reduction), prediction, target, grad_output.to(F64))
    assert loss.shape == loss_ref.shape == (() if reduction != "none" else target.shape)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_and_gradient_match_the_torch_twin_in_float32(name):
    make, make_twin, _, _, shapes = LOSSES[name]
    prediction, target = draw(name, shapes[1], seed=3, dtype=torch.float32)
    loss_module = make("mean")
    loss = loss_module(prediction, target)
    grad = loss_module.backward()
    loss_ref, grad_ref = torch_loss_and_gradient(make_twin("mean"), prediction, target, torch.tensor(1.0))
    assert loss.dtype == grad.dtype == torch.float32
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(loss, loss_ref, rtol=16 * eps, atol=16 * eps)
    torch.testing.assert_close(grad, grad_ref, rtol=16 * eps, atol=16 * eps)


@pytest.mark.parametrize("name", LOSSES)
def test_backward_without_grad_output_is_the_gradient_of_the_loss_itself(name):
    make, _, _, _, shapes = LOSSES[name]
    prediction, target = draw(name, shapes[0], seed=5)
    module = make("sum")
    module(prediction, target)
    torch.testing.assert_close(module.backward(), module.backward(torch.tensor(1.0, dtype=F64)), rtol=0, atol=0)
    torch.testing.assert_close(module.backward(2.5), 2.5 * module.backward(), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_mean_is_the_sum_divided_by_the_number_of_target_elements(name):
    make, _, _, _, shapes = LOSSES[name]
    prediction, target = draw(name, shapes[-1], seed=11)
    mean, total = make("mean"), make("sum")
    count = target.numel()
    torch.testing.assert_close(mean(prediction, target) * count, total(prediction, target), rtol=1e-13, atol=0)
    torch.testing.assert_close(mean.backward() * count, total.backward(), rtol=1e-13, atol=0)


# -- kinks: the branch torch takes at the switch points ------------------------------------------
KINKS = [
    pytest.param(fw.L1Loss("sum"), torch.nn.L1Loss(reduction="sum"), [0.0, 0.0, 1.0], id="L1-at-equality"),
    pytest.param(
        fw.HuberLoss("sum", delta=0.5),
        torch.nn.HuberLoss(reduction="sum", delta=0.5),
        [0.5, -0.5, 0.0],
        id="Huber-at-delta",
    ),
    pytest.param(
        fw.SmoothL1Loss("sum", beta=0.5),
        torch.nn.SmoothL1Loss(reduction="sum", beta=0.5),
        [0.5, -0.5, 0.0],
        id="SmoothL1-at-beta",
    ),
    pytest.param(
        fw.SmoothL1Loss("mean", beta=0.0),
        torch.nn.SmoothL1Loss(reduction="mean", beta=0.0),
        [0.0, 1.0, -1.0],
        id="SmoothL1-beta-0-at-equality",
    ),
]


@pytest.mark.parametrize(("module", "twin", "differences"), KINKS)
def test_loss_and_gradient_at_switch_points_follow_torch(module, twin, differences):
    target = torch.tensor([0.25, -1.0, 2.0], dtype=F64)
    prediction = target + torch.tensor(differences, dtype=F64)
    loss = module(prediction, target)
    grad = module.backward()
    loss_ref, grad_ref = torch_loss_and_gradient(twin, prediction, target, torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(loss, loss_ref, rtol=1e-15, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-15, atol=0)


def test_l1_gradient_is_zero_where_prediction_equals_target():
    module = fw.L1Loss("sum")
    x = torch.tensor([0.5, -2.0], dtype=F64)
    module(x, x.clone())
    assert module.backward().tolist() == [0.0, 0.0]


def test_bce_at_saturated_probabilities_is_finite_and_equals_torch():
    # log clamped at -100 in the loss, p (1 - p) at 1e-12 in the gradient, as torch.
    prediction = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=F64)
    target = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.3], dtype=F64)
    module = fw.BCELoss("sum")
    loss = module(prediction, target)
    grad = module.backward()
    loss_ref, grad_ref = torch_loss_and_gradient(torch.nn.BCELoss(reduction="sum"), prediction, target, None)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-15, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_bce_with_hard_labels_is_exactly_the_picked_clamped_log(dtype):
    # t log p + (1 - t) log(1 - p) is taken as one interpolation from log(1 - p) towards log p,
    # which is exact at its ends: a 0/1 label gives -log p or -log(1 - p) (each clamped at -100),
    # with no rounding of its own.
    generator = torch.Generator().manual_seed(0)
    prediction = torch.rand(64, generator=generator, dtype=F64).to(dtype)
    prediction[:4] = torch.tensor([0.0, 1.0, 1e-30, 1 - 1e-7], dtype=dtype)
    target = (torch.rand(64, generator=generator) < 0.5).to(dtype)
    target[:4] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype)  # log 0 and log(1 - 1) clamped at -100
    picked = torch.where(target == 1, torch.log(prediction), torch.log1p(-prediction)).clamp(min=-100)
    assert torch.equal(fw.BCELoss("none")(prediction, target), -picked)


# -- stability with huge logits -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_of_huge_logits_is_finite_and_equals_torch(dtype, reduction):
    prediction = torch.tensor([-1000.0, 1000.0, -1000.0, 1000.0, 0.0], dtype=dtype)
    target = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5], dtype=dtype)
    module = fw.BCEWithLogitsLoss(reduction)
    loss = module(prediction, target)
    grad = module.backward()
    twin = torch.nn.BCEWithLogitsLoss(reduction=reduction)
    loss_ref, grad_ref = torch_loss_and_gradient(twin, prediction, target, None)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_of_huge_logits_is_finite_and_equals_torch(dtype, reduction):
    prediction = torch.tensor(
        [[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0], [1000.0, 1000.0, -1000.0], [-1000.0, 0.0, 1000.0]],
        dtype=dtype,
    )
    target = torch.tensor([0, 1, 1, 0])
    module = fw.CrossEntropyLoss(reduction)
    loss = module(prediction, target)
    grad = module.backward()
    twin = torch.nn.CrossEntropyLoss(reduction=reduction)
    loss_ref, grad_ref = torch_loss_and_gradient(twin, prediction, target, None)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(grad, grad_ref)


def test_cross_entropy_accepts_uint8_class_indices_as_torch():
    prediction, target = draw("CrossEntropyLoss", (4, 3), seed=2)
    wide, narrow = fw.CrossEntropyLoss(), fw.CrossEntropyLoss()
    torch.testing.assert_close(narrow(prediction, target.to(torch.uint8)), wide(prediction, target), rtol=0, atol=0)


NEW_CLASSES = [fw.L1Loss, fw.HuberLoss, fw.SmoothL1Loss, fw.BCELoss, fw.BCEWithLogitsLoss, fw.CrossEntropyLoss]


@pytest.mark.parametrize("cls", NEW_CLASSES, ids=lambda c: c.__name__)
def test_every_loss_is_registered_exported_and_defaults_to_mean(cls):
    assert cls in fw.modules()
    assert cls.__name__ in fw.__all__
    assert cls().reduction == "mean"


def test_huber_and_smooth_l1_defaults_equal_torch_defaults():
    assert fw.HuberLoss().delta == torch.nn.HuberLoss().delta
    assert fw.SmoothL1Loss().beta == torch.nn.SmoothL1Loss().beta


# -- bad input ----------------------------------------------------------------------------------------
BAD_CONSTRUCTORS = [
    *[pytest.param(cls, {"reduction": "average"}, id=f"{cls.__name__}-reduction-average") for cls in NEW_CLASSES],
    pytest.param(fw.HuberLoss, {"delta": 0.0}, id="Huber-delta-0"),
    pytest.param(fw.HuberLoss, {"delta": -1.0}, id="Huber-delta-negative"),
    pytest.param(fw.HuberLoss, {"delta": float("nan")}, id="Huber-delta-nan"),
    pytest.param(fw.HuberLoss, {"delta": "1"}, id="Huber-delta-str"),
    pytest.param(fw.SmoothL1Loss, {"beta": -0.5}, id="SmoothL1-beta-negative"),
    pytest.param(fw.SmoothL1Loss, {"beta": float("inf")}, id="SmoothL1-beta-inf"),
    pytest.param(fw.SmoothL1Loss, {"beta": None}, id="SmoothL1-beta-None"),
]


@pytest.mark.parametrize(("cls", "kwargs"), BAD_CONSTRUCTORS)
def test_invalid_constructor_arguments_raise_naming_the_class(cls, kwargs):
    with pytest.raises((ValueError, TypeError), match=cls.__name__):
        cls(**kwargs)


def _raises(module, error, *args):
    with pytest.raises(error, match=type(module).__name__):
        module(*args)


ELEMENTWISE = [name for name in LOSSES if name != "CrossEntropyLoss"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_target_of_another_shape_raises_naming_the_class(name):
    prediction, target = draw(name, (3, 4))
    _raises(LOSSES[name][0]("mean"), ValueError, prediction, target.reshape(4, 3))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_target_of_another_dtype_raises_naming_the_class(name):
    prediction, target = draw(name, (3, 4))
    _raises(LOSSES[name][0]("mean"), TypeError, prediction, target.float())


@pytest.mark.parametrize("name", LOSSES)
def test_non_tensor_prediction_raises_naming_the_class(name):
    _, target = draw(name, LOSSES[name][4][0])
    _raises(LOSSES[name][0]("mean"), TypeError, [0.5] * 5, target)


@pytest.mark.parametrize("name", LOSSES)
def test_backward_before_forward_raises_naming_the_class(name):
    module = LOSSES[name][0]("mean")
    with pytest.raises(ValueError, match=f"{type(module).__name__}: backward called before forward"):
        module.backward()


@pytest.mark.parametrize("name", LOSSES)
def test_non_scalar_grad_output_raises_naming_the_class(name):
    module = LOSSES[name][0]("mean")
    module(*draw(name, LOSSES[name][4][0]))
    with pytest.raises(ValueError, match=type(module).__name__):
        module.backward(torch.ones(2, dtype=F64))


@pytest.mark.parametrize("name", LOSSES)
def test_reduction_none_backward_without_grad_output_raises_naming_the_class(name):
    module = LOSSES[name][0]("none")
    module(*draw(name, LOSSES[name][4][0]))
    with pytest.raises(ValueError, match=f"{type(module).__name__}: backward\\(\\) needs grad_output"):
        module.backward()


@pytest.mark.parametrize("name", LOSSES)
def test_reduction_none_grad_output_of_another_shape_raises_naming_the_class(name):
    module = LOSSES[name][0]("none")
    loss = module(*draw(name, LOSSES[name][4][0]))
    with pytest.raises(ValueError, match=f"{type(module).__name__}: expected grad_output"):
        module.backward(torch.ones(loss.numel() + 1, dtype=F64))
    with pytest.raises(ValueError, match=f"{type(module).__name__}: expected grad_output"):
        module.backward(torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize("name", LOSSES)
def test_reduction_none_summed_is_reduction_sum(name):
    prediction, target = draw(name, LOSSES[name][4][-1], seed=17)
    none, total = LOSSES[name][0]("none"), LOSSES[name][0]("sum")
    loss = none(prediction, target)
    torch.testing.assert_close(loss.sum(), total(prediction, target), rtol=1e-13, atol=0)
    torch.testing.assert_close(none.backward(torch.ones_like(loss)), total.backward(), rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_grad_output_of_another_dtype_raises_naming_the_class(name):
    module = LOSSES[name][0]("mean")
    module(*draw(name, LOSSES[name][4][0]))
    with pytest.raises(TypeError, match=type(module).__name__):
        module.backward(torch.tensor(1.0, dtype=torch.float32))


@pytest.mark.parametrize("bad", [1.5, -0.1, float("inf")])
def test_bce_prediction_outside_the_unit_interval_raises(bad):
    prediction = torch.tensor([0.2, bad, 0.7], dtype=F64)
    with pytest.raises(ValueError, match=r"BCELoss: expected every prediction value in \[0, 1\]"):
        fw.BCELoss()(prediction, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_bce_target_outside_the_unit_interval_raises(bad):
    target = torch.tensor([0.2, bad, 0.7], dtype=F64)
    with pytest.raises(ValueError, match=r"BCELoss: expected every target value in \[0, 1\]"):
        fw.BCELoss()(torch.full((3,), 0.5, dtype=F64), target)


@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.bool, torch.int32], ids=["float64", "float32", "bool", "int32"]
)
def test_cross_entropy_target_that_is_not_int64_class_indices_raises(dtype):
    # torch takes int64 (or uint8) class indices only, and rejects int32 too.
    prediction = torch.zeros(4, 3, dtype=F64)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: expected target to be class indices of dtype torch\.int64"):
        fw.CrossEntropyLoss()(prediction, torch.zeros(4, dtype=dtype))


@pytest.mark.parametrize(
    ("prediction_shape", "target_shape"),
    [((4, 3), (3,)), ((4, 3), (4, 1)), ((4, 3, 2), (4,)), ((4, 3, 2), (4, 3)), ((3,), (1,))],
)
def test_cross_entropy_target_of_the_wrong_shape_raises(prediction_shape, target_shape):
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected target .* of shape"):
        fw.CrossEntropyLoss()(torch.zeros(prediction_shape, dtype=F64), torch.zeros(target_shape, dtype=torch.int64))


@pytest.mark.parametrize("bad", [3, -1, -99, 7])
def test_cross_entropy_class_index_out_of_range_raises(bad):
    target = torch.tensor([0, 2, bad, 1])
    with pytest.raises(
        ValueError,
        match=rf"CrossEntropyLoss: expected every target class index in \[0, 3\) or ignore_index=-100, got {bad}",
    ):
        fw.CrossEntropyLoss()(torch.zeros(4, 3, dtype=F64), target)


def test_cross_entropy_zero_dimensional_prediction_raises():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected prediction of shape \(C\), \(N, C\)"):
        fw.CrossEntropyLoss()(torch.zeros((), dtype=F64), torch.tensor(1))


def test_cross_entropy_integer_prediction_raises():
    with pytest.raises(TypeError, match="CrossEntropyLoss"):
        fw.CrossEntropyLoss()(torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", LOSSES)
def test_cuda_results_equal_cpu_results(name):
    make, _, _, _, shapes = LOSSES[name]
    prediction, target = draw(name, shapes[-1], seed=13)
    module, module_cuda = make("mean"), make("mean")
    loss, grad = module(prediction, target), module.backward(0.5)
    loss_cuda = module_cuda(prediction.cuda(), target.cuda())
    grad_cuda = module_cuda.backward(torch.tensor(0.5, dtype=F64, device="cuda"))
    assert loss_cuda.is_cuda and grad_cuda.is_cuda
    torch.testing.assert_close(loss_cuda.cpu(), loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_cuda.cpu(), grad, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_target_on_another_device_raises_naming_the_class():
    prediction, target = draw("CrossEntropyLoss", (4, 3))
    with pytest.raises(TypeError, match="CrossEntropyLoss: expected target on device"):
        fw.CrossEntropyLoss()(prediction.cuda(), target)
    with pytest.raises(TypeError, match="L1Loss: expected target on device"):
        fw.L1Loss()(prediction.cuda(), prediction)


def test_bce_with_logits_in_float32_does_not_cancel_for_negative_logits():
    # x = -4.57, t = 0.0326: (1 - t) x + log(1 + exp(-x)) is 4.58 - 4.42, and cancels to 20 float32
    # round-offs of the loss; the loss as a sum of non-negative terms errs by about one.
    x = torch.tensor(-4.5703244629162185)
    t = torch.tensor(0.03261495443272289)
    truth = torch.nn.functional.binary_cross_entropy_with_logits(x.float().double(), t.float().double())
    ours = fw.BCEWithLogitsLoss().forward(x.float(), t.float())
    assert abs(float(ours) - float(truth)) <= 2 * torch.finfo(torch.float32).eps * float(truth)
