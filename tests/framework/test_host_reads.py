"""No forward, backward or optimizer step reads a tensor's value into Python.

On a GPU such a read (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, a boolean-mask index, a
tensor built from Python data) stalls the host until the stream drains, and makes the step
impossible to capture in a CUDA graph; so does a tensor made on the host and moved to the data's
device (``.to(device)``: a no-op on the CPU, refused all the same). CI has no GPU, so this runs
every registered module on the CPU under a torch-function mode that raises on every such call:
the CPU stands in for the device. The one sanctioned exception in the framework is
:func:`framework._checks.within`, the value checks that read CPU tensors only (on a GPU it
asserts on the device; tests/framework/test_cuda.py runs every module there under
``torch.cuda.set_sync_debug_mode("error")``).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

import framework as fw
from framework import _checks, optim
from verification.composition import STACK_SPEC
from verification.specs import SPECS
from verification.specs import attention as attention_spec

# Calls whose result is a Python value computed from tensor data, or a host/device copy.
READS = {
    "item",
    "tolist",
    "numpy",
    "cpu",
    "cuda",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
    "__complex__",
    "__format__",
    "__repr__",
    "__array__",
    "equal",
    "allclose",
    "nonzero",
    "masked_select",
    "unique",
    "unique_consecutive",
    "from_numpy",
}
# Tensors made from Python data: a host-to-device copy when placed on a device (on the CPU, as
# scalars that torch's kernels take by value, they are harmless).
FROM_DATA = {"tensor", "as_tensor", "asarray"}
# Reads that the named framework functions make on CPU tensors only (their device path asserts),
# and the attention spec's wrapper, which turns a case's masks (Python data) into tensors on the
# query's device: the caller's input, not the module's work.
ALLOWED_IN = {_checks.within.__code__, attention_spec._forward_options.__code__}


class HostReadError(AssertionError):
    """A forward, backward or step read a tensor's value into Python."""


def _has_mask(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def _allowed() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code in ALLOWED_IN:
            return True
        frame = frame.f_back
    return False


class ForbidHostReads(TorchFunctionMode):
    """Raise :class:`HostReadError` on any call that would synchronise a device with the host."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        reads = name in READS
        if name in ("__getitem__", "__setitem__", "index_put", "index_put_") and len(args) > 1:
            reads = _has_mask(args[1])
        if name in FROM_DATA:
            reads = kwargs.get("device") is not None
        if name == "to" and args and isinstance(args[0], torch.Tensor):
            # Any explicit device, even the tensor's own: on the CPU a move to the data's device is a
            # no-op, on a GPU it is a copy from the host on every call (a tensor made on the host, a
            # mask drawn there). Nothing in a forward or backward needs one: make it on the device.
            target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), None)
            reads = target is not None or other is not None
        if reads and not _allowed():
            raise HostReadError(f"{name} reads a tensor value into Python (a host-device sync on a GPU)")
        return func(*args, **kwargs)


FEW = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _forward_backward(built: Any) -> None:
    module = built.module
    with ForbidHostReads():
        out = module(*built.inputs, built.target) if built.target is not None else module(*built.inputs)
    # A loss reduced to a 0-d tensor needs no grad_output; every other output gets one of its shape
    # (several outputs, as MultiheadAttention's or LSTM's: one each, structured like them).
    if isinstance(out, torch.Tensor):
        grads = () if built.target is not None and out.dim() == 0 else (torch.ones_like(out),)
    else:
        grads = pytree.tree_map(lambda y: None if y is None else torch.ones_like(y), out)
    with ForbidHostReads():
        module.backward(*grads)


@pytest.mark.parametrize("spec", [*SPECS, STACK_SPEC], ids=str)
@FEW
@given(data=st.data())
def test_forward_and_backward_read_no_tensor_value(spec, data):
    _forward_backward(data.draw(spec.cases()).build(torch.float64))


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (lambda: fw.LSTM(3, 4, num_layers=2, dropout=0.5), (5, 2, 3)),
        (lambda: fw.GRU(3, 4, num_layers=2, dropout=0.5), (5, 2, 3)),
        (lambda: fw.MultiheadAttention(4, 2, dropout=0.5), (5, 2, 4)),
        (lambda: fw.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.5), (5, 2, 4)),
        (lambda: fw.Dropout(0.5), (5, 2, 4)),
    ],
    ids=["LSTM", "GRU", "MultiheadAttention", "TransformerEncoderLayer", "Dropout"],
)
def test_dropout_in_training_mode_reads_no_tensor_value_and_moves_nothing_between_devices(build, shape):
    module = build().train()
    x = torch.randn(shape)
    with ForbidHostReads():
        out = module(x, x, x) if isinstance(module, fw.MultiheadAttention) else module(x)
    grads = pytree.tree_map(lambda y: None if y is None else torch.ones_like(y), out)
    with ForbidHostReads():
        module.backward(*(grads if isinstance(grads, tuple) else (grads,)))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True}),
        (optim.Adam, {"amsgrad": True, "weight_decay": 0.01}),
        (optim.Adam, {"capturable": True}),
        (optim.RMSprop, {"momentum": 0.9, "centered": True}),
    ],
    ids=["SGD", "Adam", "Adam-capturable", "RMSprop"],
)
def test_optimizer_steps_read_no_tensor_value(cls, kwargs):
    model = fw.Sequential(fw.Linear(3, 4), fw.ReLU(), fw.Linear(4, 2))
    optimizer = cls(model.param(), **kwargs)
    for _ in range(2):  # the first step creates the state, the second is the steady one
        for _, g in model.param():
            g.normal_()
        with ForbidHostReads():
            optimizer.step()
            optimizer.zero_grad()


# -- the interceptor itself: each kind of read, in a deliberately syncing module, is caught ------------
READERS = {
    "item": lambda x: x.sum().item(),
    "bool": lambda x: bool(x.sum() > 0),
    "tolist": lambda x: x.tolist(),
    "cpu": lambda x: x.cpu(),
    "int": lambda x: int(x.sum()),
    "float": lambda x: float(x.sum()),
    "mask index": lambda x: x[x > 0],
    "tensor from Python data, on a device": lambda x: torch.tensor([1.0], device=x.device),
    "copy to another device": lambda x: x.to("meta"),
    "a mask drawn on the host, moved to the data's device": lambda x: torch.rand(x.shape).to(device=x.device),
    "a tensor moved to another's device": lambda x: torch.zeros(3).to(x),
    "format": lambda x: f"{x.sum():.3f}",
}


class Syncing(fw.ReLU):
    """A ReLU whose forward also makes one host read."""

    def __init__(self, read: Any) -> None:
        super().__init__()
        self.read = read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.read(x)
        return super().forward(x)


@pytest.mark.parametrize("read", READERS.values(), ids=READERS.keys())
def test_a_module_that_reads_a_value_fails(read):
    with pytest.raises(HostReadError), ForbidHostReads():
        Syncing(read)(torch.randn(4, 3))


def test_value_checks_read_cpu_tensors_only_inside_the_sanctioned_check():
    prediction, target = torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0])
    with ForbidHostReads(), pytest.raises(ValueError, match=r"expected every prediction value in \[0, 1\]"):
        fw.BCELoss()(prediction, target)
