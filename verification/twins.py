"""The ``torch.nn`` twin of every framework module, with the framework's parameters copied in.

``TWINS`` maps a framework class to a function building the equivalent ``torch.nn`` module
from an instance's hyper-parameters. :func:`twin_of` builds it and copies parameters and
buffers by their torch names (``weight``, ``bias``, ``running_mean``, ``0.weight``, ...), so
both compute the same function. Modules that have no ``torch.nn`` equivalent are absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import framework as fw

Builder = Callable[[Any], torch.nn.Module]

TWINS: dict[type, Builder] = {
    fw.Linear: lambda m: torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    fw.Sequential: lambda m: torch.nn.Sequential(*(twin_of(child, copy=False) for child in m)),
    fw.ReLU: lambda m: torch.nn.ReLU(),
    fw.Tanh: lambda m: torch.nn.Tanh(),
    fw.Sigmoid: lambda m: torch.nn.Sigmoid(),
    fw.MSELoss: lambda m: torch.nn.MSELoss(reduction=m.reduction),
}


def register_twin(cls: type, builder: Builder) -> None:
    """Declare the ``torch.nn`` twin of a user's own module class."""
    TWINS[cls] = builder


def twin_of(module: Any, copy: bool = True) -> torch.nn.Module:
    """The ``torch.nn`` twin of ``module``, same dtype/device, parameters and buffers copied."""
    try:
        builder = TWINS[type(module)]
    except KeyError:
        raise KeyError(
            f"no torch.nn twin is declared for {type(module).__name__}; "
            f"declare one with verification.twins.register_twin"
        ) from None
    twin = builder(module)
    twin.train(getattr(module, "training", True))
    if copy:
        copy_state(module, twin)
    return twin


def _reference_tensor(module: Any) -> torch.Tensor | None:
    for _, p, _ in module.named_param():
        return p
    for _, b in module.named_buffers():
        if b.is_floating_point():
            return b
    return None


def copy_state(module: Any, twin: torch.nn.Module) -> None:
    """Copy parameters and buffers from a framework module into its twin, by name."""
    reference = _reference_tensor(module)
    if reference is not None:
        twin.to(device=reference.device, dtype=reference.dtype)
    twin_params = dict(twin.named_parameters())
    twin_buffers = dict(twin.named_buffers())
    ours = module.named_param()
    if {n for n, _, _ in ours} != set(twin_params):
        raise ValueError(
            f"{type(module).__name__}: parameter names {sorted(n for n, _, _ in ours)} do not match "
            f"the twin's {sorted(twin_params)}"
        )
    with torch.no_grad():
        for name, value, _ in ours:
            twin_params[name].copy_(value)
        for name, value in module.named_buffers():
            if name in twin_buffers:
                twin_buffers[name].copy_(value)


def copy_state_back(twin: torch.nn.Module, module: Any) -> None:
    """Copy the twin's parameters and buffers into the framework module (after torch steps)."""
    twin_params = dict(twin.named_parameters())
    twin_buffers = dict(twin.named_buffers())
    for name, value, _ in module.named_param():
        value.copy_(twin_params[name].detach())
    for name, value in module.named_buffers():
        if name in twin_buffers:
            value.copy_(twin_buffers[name])
