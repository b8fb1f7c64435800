"""CapturedStep's argument checks, which need no GPU (its replays are tested in test_cuda.py)."""

import pytest
import torch

import framework as fw
from framework.cuda_graph import CapturedStep


def mlp():
    return fw.Sequential(fw.Linear(2, 4), fw.ReLU(), fw.Linear(4, 2))


def test_an_optimizer_whose_step_cannot_be_captured_is_refused_with_the_fix():
    model = mlp()
    with pytest.raises(ValueError, match=r"CapturedStep: expected a capturable optimizer.*capturable=True"):
        CapturedStep(model, fw.MSELoss(), fw.optim.Adam(model.param()), torch.zeros(3, 2), torch.zeros(3, 2))


def test_an_example_batch_off_the_gpu_is_refused():
    model = mlp()
    optimizer = fw.optim.Adam(model.param(), capturable=True)
    with pytest.raises(TypeError, match="CapturedStep: expected example_input on a CUDA device, got cpu"):
        CapturedStep(model, fw.MSELoss(), optimizer, torch.zeros(3, 2), torch.zeros(3, 2))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((object(), fw.MSELoss()), "model"),
        ((mlp(), fw.ReLU()), "criterion"),
    ],
    ids=["model", "criterion"],
)
def test_arguments_of_the_wrong_kind_are_refused(args, match):
    optimizer = fw.optim.SGD(mlp().param(), lr=0.1)
    with pytest.raises(TypeError, match=f"CapturedStep: expected {match}"):
        CapturedStep(*args, optimizer, torch.zeros(3, 2), torch.zeros(3, 2))


def test_sgd_and_rmsprop_are_capturable_and_adam_only_when_asked():
    params = mlp().param()
    assert fw.optim.SGD(params, lr=0.1).capturable and fw.optim.RMSprop(params).capturable
    assert not fw.optim.Adam(params).capturable and fw.optim.Adam(params, capturable=True).capturable
