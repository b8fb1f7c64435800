"""Sequential: forward in order, backward in reverse, parameters concatenated."""

from typing import ClassVar

import pytest
import torch

import framework as fw
from framework import ModuleTypeError, ModuleValueError

F64 = torch.float64


class Recorder(fw.Module):
    """Identity that logs its calls, to observe the order."""

    log: ClassVar[list] = []

    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x):
        Recorder.log.append(("forward", self.name))
        self._save_for_backward(ran=True)
        return x

    def backward(self, grad_output):
        Recorder.log.append(("backward", self.name))
        return grad_output


def test_forward_runs_in_order_and_backward_in_reverse():
    Recorder.log = []
    net = fw.Sequential(Recorder("a"), Recorder("b"), Recorder("c"))
    net.backward(net(torch.zeros(1)))
    assert Recorder.log == [("forward", "a"), ("forward", "b"), ("forward", "c"),
                            ("backward", "c"), ("backward", "b"), ("backward", "a")]  # fmt: skip


def test_param_concatenates_the_children_with_torch_names():
    net = fw.Sequential(fw.Linear(2, 3), fw.ReLU(), fw.Linear(3, 1, bias=False))
    assert [n for n, _, _ in net.named_param()] == ["0.weight", "0.bias", "2.weight"]
    assert [p for p, _ in net.param()] == [net[0].weight, net[0].bias, net[2].weight]


def test_indexing_slicing_and_len():
    layers = [fw.Linear(2, 2), fw.Tanh(), fw.Linear(2, 1)]
    net = fw.Sequential(*layers)
    assert len(net) == 3 and net[1] is layers[1] and net[-1] is layers[2]
    assert isinstance(net[:2], fw.Sequential) and len(net[:2]) == 2


def test_backward_gives_every_layer_its_gradient_like_torch():
    g = torch.Generator().manual_seed(0)
    net = fw.Sequential(fw.Linear(3, 4, generator=g, dtype=F64), fw.Tanh(), fw.Linear(4, 2, generator=g, dtype=F64))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(F64)
    with torch.no_grad():
        for (_, ours, _), theirs in zip(net.named_param(), twin.parameters()):
            theirs.copy_(ours)
    x, upstream = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    twin(x).backward(upstream)
    net(x)
    net.backward(upstream)
    for (_, _, grad), theirs in zip(net.named_param(), twin.parameters()):
        torch.testing.assert_close(grad, theirs.grad, rtol=1e-13, atol=1e-13)


def test_eval_and_to_reach_every_child():
    net = fw.Sequential(fw.Linear(2, 2), fw.Sequential(fw.Linear(2, 2)))
    net.eval()
    assert not net[1][0].training
    net.to(dtype=F64)
    assert net[1][0].weight.dtype == F64


def test_only_modules_can_be_chained():
    with pytest.raises(ModuleTypeError, match="position 1"):
        fw.Sequential(fw.ReLU(), torch.nn.ReLU())


def test_backward_before_forward_is_rejected():
    with pytest.raises(ModuleValueError, match="Sequential: backward called before forward"):
        fw.Sequential(fw.ReLU()).backward(torch.zeros(1))


class NoInputGradient(fw.Linear):
    """A Linear whose input gradient must not be asked for."""

    def backward(self, grad_output):
        raise AssertionError("the input gradient was computed")


def test_backward_to_params_stops_at_the_first_layer_with_parameters_without_its_input_gradient():
    torch.manual_seed(0)
    layers = [Recorder("head"), NoInputGradient(3, 4), fw.ReLU(), fw.Linear(4, 2), Recorder("tail")]
    reference = fw.Sequential(Recorder("head"), fw.Linear(3, 4), fw.ReLU(), fw.Linear(4, 2), Recorder("tail"))
    model = fw.Sequential(*layers).to(dtype=F64)
    reference.to(dtype=F64)
    for (_, p, _), (_, q, _) in zip(model.named_param(), reference.named_param()):
        q.copy_(p)
    x, g = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    reference(x)
    reference.backward(g)
    Recorder.log.clear()
    model(x)
    assert model.backward_to_params(g) is None
    assert Recorder.log == [("forward", "head"), ("forward", "tail"), ("backward", "tail")]
    for (name, _, got), (_, _, expected) in zip(model.named_param(), reference.named_param(), strict=True):
        assert torch.equal(got, expected), name


def test_backward_to_params_without_any_parameters_runs_no_backward():
    model = fw.Sequential(Recorder("a"), fw.ReLU(), Recorder("b"))
    model(torch.randn(3, dtype=F64))
    Recorder.log.clear()
    assert model.backward_to_params(torch.randn(3, dtype=F64)) is None
    assert Recorder.log == []


def test_has_parameters_looks_through_nested_containers():
    assert not fw.ReLU().has_parameters()
    assert fw.Linear(3, 2).has_parameters()
    assert not fw.Sequential(fw.ReLU(), fw.Sequential(fw.Tanh())).has_parameters()
    assert fw.Sequential(fw.ReLU(), fw.Sequential(fw.Tanh(), fw.Linear(3, 2))).has_parameters()


def test_backward_to_params_runs_down_to_a_nested_first_layer_with_parameters():
    torch.manual_seed(0)
    model = fw.Sequential(Recorder("head"), fw.Sequential(fw.ReLU(), fw.Linear(3, 2)), Recorder("tail")).to(dtype=F64)
    reference = fw.Sequential(fw.ReLU(), fw.Linear(3, 2)).to(dtype=F64)
    for (_, p, _), (_, q, _) in zip(model.named_param(), reference.named_param(), strict=True):
        q.copy_(p)
    x, g = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    reference(x)
    reference.backward(g)
    model(x)
    Recorder.log.clear()
    model.backward_to_params(g)
    assert Recorder.log == [("backward", "tail")]
    for (name, _, got), (_, _, expected) in zip(model.named_param(), reference.named_param(), strict=True):
        assert torch.equal(got, expected), name
