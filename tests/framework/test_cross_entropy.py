"""CrossEntropyLoss against torch.nn.CrossEntropyLoss in every combination torch accepts:
class indices or probabilities, weight, ignore_index, label_smoothing, every reduction, with
and without a batch dimension, extra dimensions, an empty batch; and torch's refusals."""

from __future__ import annotations

import itertools

import pytest
import torch

import framework as fw
from framework import losses

F64 = torch.float64


@pytest.fixture(autouse=True, params=["host", "device"])
def target_checks(request, monkeypatch):
    """Every test runs with the class indices read on the host (the CPU's way: a precise error,
    the shortcut when none is ignored) and checked on the device instead (a GPU's way, no host read)."""
    monkeypatch.setattr(losses, "reads_target_on_host", lambda target: request.param == "host")
    return request.param


CLASSES = 4
WEIGHT = [0.5, 2.0, 1.25, 0.75]
SHAPES = [(CLASSES,), (3, CLASSES), (2, CLASSES, 3), (2, CLASSES, 2, 3)]


def make_case(shape, kind, ignore_index, seed=0, dtype=F64):
    """Logits of ``shape`` and a target: class indices (some equal to ``ignore_index``) or probabilities."""
    generator = torch.Generator().manual_seed(seed)
    prediction = (6 * torch.rand(shape, generator=generator, dtype=F64) - 3).to(dtype)
    if kind == "probabilities":
        target = torch.rand(shape, generator=generator, dtype=F64)
        return prediction, (target / target.sum(0 if len(shape) == 1 else 1, keepdim=True)).to(dtype)
    positions = () if len(shape) == 1 else (shape[0], *shape[2:])
    target = torch.randint(0, CLASSES, positions, generator=generator)
    ignored = torch.rand(positions, generator=generator) < 0.3
    return prediction, target.masked_fill(ignored, ignore_index)


def torch_loss_and_gradient(twin, prediction, target, grad_output):
    leaf = prediction.detach().clone().requires_grad_(True)
    loss = twin(leaf, target)
    (grad,) = torch.autograd.grad(loss, leaf, grad_output)
    return loss.detach(), grad


def upstream(loss, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(loss.shape, generator=generator, dtype=F64).to(loss.dtype)


def both(reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0, dtype=F64):
    w = None if weight is None else torch.tensor(weight, dtype=dtype)
    ours = fw.CrossEntropyLoss(reduction, weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing)
    theirs = torch.nn.CrossEntropyLoss(
        weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    return ours, theirs


def _id(kind, weight, ignore, smoothing, reduction, shape):
    return f"{kind}-{'weighted' if weight else 'unweighted'}-ignore{ignore}-ls{smoothing}-{reduction}-{len(shape)}d"


COMBINATIONS = [
    pytest.param(
        kind, weight, ignore, smoothing, reduction, shape, id=_id(kind, weight, ignore, smoothing, reduction, shape)
    )
    for kind, weight, ignore, smoothing, reduction, shape in itertools.product(
        ["indices", "probabilities"], [None, WEIGHT], [-100, 1], [0.0, 0.3], ["mean", "sum", "none"], SHAPES
    )
    if not (kind == "probabilities" and ignore >= 0)  # torch refuses that (tested below)
]


@pytest.mark.parametrize(("kind", "weight", "ignore_index", "label_smoothing", "reduction", "shape"), COMBINATIONS)
def test_loss_and_gradient_match_torch_in_float64(kind, weight, ignore_index, label_smoothing, reduction, shape):
    ours, theirs = both(reduction, weight, ignore_index, label_smoothing)
    prediction, target = make_case(shape, kind, ignore_index, seed=len(shape))
    loss = ours(prediction, target)
    g = upstream(loss)
    grad = ours.backward(g)
    loss_ref, grad_ref = torch_loss_and_gradient(theirs, prediction, target, g)
    assert loss.shape == loss_ref.shape
    assert grad.shape == prediction.shape
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["indices", "probabilities"])
@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["unweighted", "weighted"])
def test_float32_matches_torch_float32(kind, weight):
    ours, theirs = both("mean", weight, -100, 0.2, dtype=torch.float32)
    prediction, target = make_case((5, CLASSES, 3), kind, -100, seed=4, dtype=torch.float32)
    loss, grad = ours(prediction, target), ours.backward()
    loss_ref, grad_ref = torch_loss_and_gradient(theirs, prediction, target, None)
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(grad, grad_ref)


def every_position_kept(shape, seed=0, dtype=F64, classes=(0, 2)):
    """Logits of ``shape`` and class indices drawn from ``classes``, none of them ignored."""
    prediction, target = make_case(shape, "indices", 0, seed=seed, dtype=dtype)
    generator = torch.Generator().manual_seed(seed + 1)
    choice = torch.randint(0, len(classes), target.shape, generator=generator)
    if choice.numel() > 1:  # the smallest and the largest class both present
        choice.view(-1)[:2] = torch.tensor([0, len(classes) - 1])
    return prediction, torch.tensor(classes)[choice]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
def test_with_no_position_ignored_loss_and_gradient_match_torch(reduction, shape):
    ours, theirs = both(reduction)
    prediction, target = every_position_kept(shape, seed=len(shape))
    loss = ours(prediction, target)
    g = upstream(loss)
    loss_ref, grad_ref = torch_loss_and_gradient(theirs, prediction, target, g)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.backward(g), grad_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=lambda s: f"{len(s)}d")  # two positions at least
@pytest.mark.parametrize("grad_output", ["default", "float", "tensor"])
def test_with_no_position_ignored_the_shortcut_equals_the_general_path_bit_for_bit(
    dtype, reduction, shape, grad_output, target_checks
):
    # On the CPU the target's values are read: with none ignored (and no weight or smoothing) the
    # masks are skipped. An ignore_index between the classes present, matching none, forces the
    # general path on the same positions. Checked on the device, nothing is known: no shortcut.
    prediction, target = every_position_kept(shape, dtype=dtype)
    shortcut, general = fw.CrossEntropyLoss(reduction), fw.CrossEntropyLoss(reduction, ignore_index=1)
    loss, loss_general = shortcut(prediction, target), general(prediction, target)
    assert ("positions" in shortcut._saved_tensors()) == (target_checks == "host")
    assert "positions" not in general._saved_tensors()
    if reduction == "none":
        g = upstream(loss)
    else:
        g = {"default": None, "float": 2.5, "tensor": torch.tensor(-1.5, dtype=dtype)}[grad_output]
    assert torch.equal(loss, loss_general)
    assert torch.equal(shortcut.backward(g), general.backward(g))


def test_ignored_positions_get_no_gradient_and_do_not_count_in_the_mean():
    prediction, _ = make_case((4, CLASSES), "indices", -100, seed=5)
    target = torch.tensor([1, -100, 3, -100])
    ours = fw.CrossEntropyLoss(label_smoothing=0.2)
    loss, grad = ours(prediction, target), ours.backward()
    kept = fw.CrossEntropyLoss(label_smoothing=0.2)
    torch.testing.assert_close(loss, kept(prediction[[0, 2]], target[[0, 2]]), rtol=1e-14, atol=0)
    assert not grad[[1, 3]].any()
    torch.testing.assert_close(grad[[0, 2]], kept.backward(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["unweighted", "weighted"])
def test_every_position_ignored_gives_a_nan_mean_and_a_zero_gradient_as_torch(weight):
    ours, theirs = both("mean", weight, 2, 0.1)
    prediction, _ = make_case((3, CLASSES), "indices", 2, seed=6)
    target = torch.full((3,), 2)
    loss, grad = ours(prediction, target), ours.backward()
    loss_ref, grad_ref = torch_loss_and_gradient(theirs, prediction, target, None)
    assert loss.isnan() and loss_ref.isnan()
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=0)
    assert not grad.any()


@pytest.mark.parametrize("kind", ["indices", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(0, CLASSES), (0, CLASSES, 3)], ids=["2d", "3d"])
def test_an_empty_batch_gives_torchs_result(kind, reduction, shape):
    ours, theirs = both(reduction, WEIGHT, -100, 0.1)
    prediction, target = make_case(shape, kind, -100)
    loss = ours(prediction, target)
    g = upstream(loss)
    grad = ours.backward(g)
    loss_ref, grad_ref = torch_loss_and_gradient(theirs, prediction, target, g)
    assert loss.shape == loss_ref.shape and grad.shape == grad_ref.shape == shape
    torch.testing.assert_close(loss, loss_ref, equal_nan=True)  # 'mean' of nothing is nan, as torch


def test_probabilities_that_are_one_hot_equal_class_indices():
    prediction, target = make_case((5, CLASSES), "indices", -100, seed=8)
    target = target.clamp(min=0)
    one_hot = torch.nn.functional.one_hot(target, CLASSES).to(F64)
    w = torch.tensor(WEIGHT, dtype=F64)
    # Unweighted: the same mean. (Weighted means differ by design: torch divides index targets by the
    # picked weights, probabilities by the number of positions.)
    by_index, by_probability = fw.CrossEntropyLoss("sum", weight=w), fw.CrossEntropyLoss("sum", weight=w)
    torch.testing.assert_close(by_index(prediction, target), by_probability(prediction, one_hot), rtol=1e-14, atol=0)
    torch.testing.assert_close(by_index.backward(), by_probability.backward(), rtol=1e-14, atol=1e-16)


def test_defaults_and_attributes_follow_torch():
    ours, theirs = fw.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    assert (ours.weight, ours.ignore_index, ours.label_smoothing) == (None, theirs.ignore_index, 0.0)
    weighted = fw.CrossEntropyLoss(weight=torch.tensor(WEIGHT))
    twin = torch.nn.CrossEntropyLoss(weight=torch.tensor(WEIGHT))
    assert [name for name, _ in weighted.named_buffers()] == [name for name, _ in twin.named_buffers()]
    assert weighted.to(dtype=F64).weight.dtype == F64


# -- what torch refuses ---------------------------------------------------------------------------------
BAD_CONSTRUCTORS = [
    pytest.param({"label_smoothing": 1.5}, ValueError, id="label-smoothing-above-1"),
    pytest.param({"label_smoothing": -0.1}, ValueError, id="label-smoothing-negative"),
    pytest.param({"ignore_index": 1.0}, TypeError, id="ignore-index-float"),
    pytest.param({"weight": [1.0, 2.0]}, TypeError, id="weight-list"),
    pytest.param({"weight": torch.tensor([1, 2])}, TypeError, id="weight-integer"),
    pytest.param({"weight": torch.ones(2, 2)}, ValueError, id="weight-2d"),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_CONSTRUCTORS)
def test_invalid_constructor_arguments_raise_naming_the_class(kwargs, error):
    with pytest.raises(error, match="CrossEntropyLoss"):
        fw.CrossEntropyLoss(**kwargs)


def test_a_weight_of_the_wrong_length_raises_at_forward_as_torch():
    prediction, target = make_case((3, CLASSES), "indices", -100)
    ours, theirs = both(weight=WEIGHT[:2])
    with pytest.raises(RuntimeError):
        theirs(prediction, target)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected weight \(one per class\) of shape \(4,\)"):
        ours(prediction, target)


def test_a_weight_of_another_dtype_raises():
    prediction, target = make_case((3, CLASSES), "indices", -100)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: expected weight of dtype torch\.float64"):
        fw.CrossEntropyLoss(weight=torch.tensor(WEIGHT, dtype=torch.float32))(prediction, target)


def test_probabilities_with_a_non_negative_ignore_index_raise_as_torch():
    prediction, target = make_case((3, CLASSES), "probabilities", -100)
    ours, theirs = both(ignore_index=1)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        theirs(prediction, target)
    with pytest.raises(ValueError, match="CrossEntropyLoss: ignore_index=1 is not supported with class probabilities"):
        ours(prediction, target)


def test_integer_targets_of_the_predictions_shape_raise_as_torch():
    prediction = torch.zeros(2, 3, dtype=F64)
    target = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="Expected floating point type for target with class probabilities"):
        torch.nn.CrossEntropyLoss()(prediction, target)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: expected class probabilities .* to be floating-point"):
        fw.CrossEntropyLoss()(prediction, target)


def test_probabilities_of_another_dtype_raise():
    prediction, target = make_case((3, CLASSES), "probabilities", -100)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: expected target of dtype torch\.float64"):
        fw.CrossEntropyLoss()(prediction, target.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["indices", "probabilities"])
def test_cuda_results_equal_cpu_results(kind):
    prediction, target = make_case((5, CLASSES, 3), kind, -100, seed=9)
    w = torch.tensor(WEIGHT, dtype=F64)
    cpu = fw.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    cuda = fw.CrossEntropyLoss(weight=w.cuda(), label_smoothing=0.1)
    loss, grad = cpu(prediction, target), cpu.backward(0.5)
    loss_cuda = cuda(prediction.cuda(), target.cuda())
    grad_cuda = cuda.backward(torch.tensor(0.5, dtype=F64, device="cuda"))
    torch.testing.assert_close(loss_cuda.cpu(), loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_cuda.cpu(), grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bad", [4, -1, -99, 7])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_a_class_index_out_of_range_is_refused_on_the_host_and_on_the_device(bad, ignore_index, target_checks):
    prediction, _ = make_case((4, CLASSES), "indices", ignore_index)
    target = torch.tensor([0, ignore_index, bad, 1])
    words = rf"CrossEntropyLoss: expected every target class index in \[0, {CLASSES}\) or ignore_index={ignore_index}"
    if target_checks == "host":  # the offending class, named
        with pytest.raises(ValueError, match=rf"{words}, got"):
            fw.CrossEntropyLoss(ignore_index=ignore_index)(prediction, target)
    else:  # a device-side assertion: the same words, without the value (reading it would stall)
        with pytest.raises(RuntimeError, match=words):
            fw.CrossEntropyLoss(ignore_index=ignore_index)(prediction, target)


def test_ignored_positions_pass_the_device_side_range_check_whatever_their_value():
    prediction, _ = make_case((4, CLASSES), "indices", -100)
    for ignore_index in (-100, 50, 3):
        target = torch.tensor([0, ignore_index, ignore_index, 1])
        loss = fw.CrossEntropyLoss(ignore_index=ignore_index)(prediction, target)
        expected = torch.nn.CrossEntropyLoss(ignore_index=ignore_index)(prediction, target)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
