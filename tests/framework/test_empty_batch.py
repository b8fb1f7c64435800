"""An empty batch (N = 0) through every layer that torch runs on one: an empty output and an
empty input gradient, nothing added to any parameter gradient, running statistics as torch's."""

from __future__ import annotations

import pytest
import torch

import framework as fw
from verification.twins import twin_of

F64 = torch.float64

LAYERS = [
    pytest.param(lambda: fw.Linear(3, 2), (0, 3), id="Linear"),
    pytest.param(lambda: fw.Conv1d(2, 3, 2), (0, 2, 5), id="Conv1d"),
    pytest.param(lambda: fw.Conv2d(2, 3, 2, padding=1), (0, 2, 4, 4), id="Conv2d"),
    pytest.param(lambda: fw.ConvTranspose2d(2, 3, 2, stride=2), (0, 2, 3, 3), id="ConvTranspose2d"),
    pytest.param(lambda: fw.MaxPool2d(2, padding=1), (0, 2, 4, 4), id="MaxPool2d"),
    pytest.param(lambda: fw.AvgPool2d(2, ceil_mode=True), (0, 2, 5, 5), id="AvgPool2d"),
    pytest.param(lambda: fw.Upsample(scale_factor=2), (0, 2, 3, 3), id="Upsample-nearest"),
    pytest.param(lambda: fw.Upsample(size=5, mode="bilinear"), (0, 2, 3, 3), id="Upsample-bilinear"),
    pytest.param(lambda: fw.BatchNorm1d(3), (0, 3), id="BatchNorm1d"),
    pytest.param(lambda: fw.BatchNorm2d(2, momentum=None), (0, 2, 3, 3), id="BatchNorm2d"),
    pytest.param(lambda: fw.Flatten(), (0, 2, 3), id="Flatten"),
    pytest.param(lambda: fw.ReLU(), (0, 4), id="ReLU"),
    pytest.param(lambda: fw.LayerNorm(4), (0, 4), id="LayerNorm"),
    pytest.param(lambda: fw.GroupNorm(2, 4), (0, 4, 3), id="GroupNorm"),
    pytest.param(lambda: fw.GroupNorm(2, 4), (0, 4), id="GroupNorm-no-positions"),
    pytest.param(lambda: fw.RMSNorm(4), (0, 4), id="RMSNorm"),
    pytest.param(lambda: fw.Softmax(dim=1), (0, 4), id="Softmax"),
    pytest.param(lambda: fw.LogSoftmax(dim=1), (0, 4), id="LogSoftmax"),
]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("make", "shape"), LAYERS)
def test_an_empty_batch_gives_empty_results_as_torch(make, shape, mode):
    ours = make().to(dtype=F64).train(mode == "train")
    twin = twin_of(ours)
    x = torch.zeros(shape, dtype=F64)
    y, y_ref = ours(x), twin(x.clone().requires_grad_(True))
    assert y.shape == y_ref.shape and y.numel() == 0
    grad = ours.backward(torch.zeros_like(y))
    assert grad.shape == x.shape
    for _, _, g in ours.named_param():
        assert not g.any()
    for (name, b), (_, b_ref) in zip(ours.named_buffers(), twin.named_buffers()):
        assert torch.equal(b, b_ref), name


def test_batch_norm_counts_an_empty_batch_as_torch_for_the_cumulative_average():
    ours, theirs = fw.BatchNorm1d(2, momentum=None).to(dtype=F64), torch.nn.BatchNorm1d(2, momentum=None).double()
    batch = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for x in (torch.zeros(0, 2, dtype=F64), batch):
        ours(x)
        theirs(x)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 2
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-14, atol=0)


@pytest.mark.parametrize("cls", [fw.MaxPool2d, fw.AvgPool2d])
@pytest.mark.parametrize("shape", [(2, 0, 4, 4), (0, 4, 4), (2, 3, 0, 4)], ids=str)
def test_pooling_refuses_empty_channels_or_sides_as_torch(cls, shape):
    x = torch.zeros(shape, dtype=F64)
    with pytest.raises(RuntimeError):
        getattr(torch.nn, cls.__name__)(2)(x)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected non-zero channel and spatial sizes"):
        cls(2)(x)
