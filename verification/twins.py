"""The ``torch.nn`` twin of a framework module, with the framework's parameters copied in.

Each spec declares how to build its twin from an instance's hyper-parameters; containers
are twinned child by child. :func:`copy_state` copies parameters and buffers by their torch
names (``weight``, ``bias``, ``running_mean``, ``0.weight``, ...), so both compute the same
function.
"""

from __future__ import annotations

from typing import Any

import torch

import framework as fw


def twin_of(module: Any, copy: bool = True) -> torch.nn.Module:
    """The ``torch.nn`` twin of ``module``, same dtype/device, parameters and buffers copied."""
    from .specs import _BY_CLASS, TWINS

    if isinstance(module, fw.Sequential):
        twin = torch.nn.Sequential(*(twin_of(child, copy=False) for child in module))
    else:
        spec = next((_BY_CLASS[c] for c in type(module).__mro__ if c in _BY_CLASS), None)
        build = spec.twin if spec is not None else next((TWINS[c] for c in type(module).__mro__ if c in TWINS), None)
        if build is None:
            raise KeyError(
                f"no torch.nn twin is declared for {type(module).__name__}; declare one in its "
                f"Spec (verification.specs.register_spec)"
            )
        twin = build(module)
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
    """Copy the twin's parameters and buffers into the framework module."""
    twin_params = dict(twin.named_parameters())
    twin_buffers = dict(twin.named_buffers())
    for name, value, _ in module.named_param():
        value.copy_(twin_params[name].detach())
    for name, value in module.named_buffers():
        if name in twin_buffers:
            value.copy_(twin_buffers[name])
