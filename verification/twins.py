"""The ``torch.nn`` twin of a framework module, with the framework's parameters copied in.

One registry: each spec registers how to build its module's twin from an instance
(:func:`register_twin`); containers are twinned child by child. :func:`copy_parameters` is
the one path that copies parameters (and buffers) into a twin or a user's reference: by name
when the names match (``weight``, ``bias``, ``running_mean``, ``0.weight``, ...), otherwise
by position, shapes checked, so both compute the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from torch import Tensor

import framework as fw

TwinBuilder = Callable[[Any], torch.nn.Module]

_TWINS: dict[type, TwinBuilder] = {}


def register_twin(cls: type, build: TwinBuilder) -> None:
    """Declare how to build the ``torch.nn`` twin of instances of ``cls``."""
    _TWINS[cls] = build


def has_twin(cls: type) -> bool:
    return issubclass(cls, fw.Sequential) or any(c in _TWINS for c in cls.__mro__)


def twin_of(module: Any, copy: bool = True) -> torch.nn.Module:
    """The ``torch.nn`` twin of ``module``, same dtype/device, parameters and buffers copied."""
    from . import specs  # noqa: F401  (the framework's specs register their twins on import)

    if isinstance(module, fw.Sequential):
        twin = torch.nn.Sequential(*(twin_of(child, copy=False) for child in module))
    else:
        build = next((_TWINS[c] for c in type(module).__mro__ if c in _TWINS), None)
        if build is None:
            raise KeyError(
                f"no torch.nn twin is declared for {type(module).__name__}; declare one in its Spec "
                f"(twin=...) or with verification.twins.register_twin"
            )
        twin = build(module)
    twin.train(getattr(module, "training", True))
    if copy:
        copy_state(module, twin)
    return twin


def _reference_tensor(module: Any) -> Tensor | None:
    for _, p, _ in module.named_param():
        return p
    for _, b in module.named_buffers():
        if b.is_floating_point():
            return b
    return None


def copy_parameters(
    params: Sequence[tuple[str, Tensor]],
    twin: torch.nn.Module,
    owner: str,
    buffers: Sequence[tuple[str, Tensor]] = (),
    layouts: dict[str, Callable[[Tensor], Tensor]] | None = None,
    transpose: Collection[str] = (),
) -> dict[str, str]:
    """Copy ``params`` into ``twin`` (by name if the names match, else by position) and buffers by name.

    Returns the name map ``{ours: the twin's}``. Raises ``ValueError`` naming ``owner`` when
    the counts or shapes differ. With ``layouts`` (a dict to fill), a parameter held in another
    layout than the twin's is copied into it where the shapes say how: a matrix stored transposed
    (a Linear's weight as (in, out), where torch's is (out, in)), or the same elements with other
    dimensions of size 1 (a bias as (1, out)); ``layouts[ours]`` then maps a tensor of the twin's
    layout (its gradient) back to ours. The names in ``transpose`` (square matrices, whose shape
    cannot tell) are copied transposed.
    """
    theirs = dict(twin.named_parameters())
    ours = [n for n, _ in params]
    by_name = set(ours) == set(theirs)
    if not by_name and len(ours) != len(theirs):
        raise ValueError(
            f"{owner}: {len(ours)} parameters ({ours}), but the reference has {len(theirs)} ({list(theirs)})"
        )
    names = dict(zip(ours, ours if by_name else list(theirs)))
    twin_buffers = dict(twin.named_buffers())
    with torch.no_grad():
        for name, value in params:
            target = theirs[names[name]]
            if target.is_complex() and not value.is_complex():  # ours is its real view (see AutogradTarget)
                target = torch.view_as_real(target)
            if name in transpose or (target.shape != value.shape and layouts is not None):
                back = _layout_map(value, target, name in transpose)
                if back is not None and layouts is not None:
                    target.copy_(back[0])
                    layouts[name] = back[1]
                    continue
            if target.shape != value.shape:
                raise ValueError(
                    f"{owner}: parameter {name} of shape {tuple(value.shape)} does not match the reference's "
                    f"{names[name]} of shape {tuple(target.shape)}"
                )
            target.copy_(value)
        for name, value in buffers:
            if name in twin_buffers and twin_buffers[name].shape == value.shape:
                twin_buffers[name].copy_(value)
    return names


def _layout_map(value: Tensor, target: Tensor, transpose: bool) -> tuple[Tensor, Callable[[Tensor], Tensor]] | None:
    """``value`` in ``target``'s layout, and the map from that layout back to ``value``'s; None if
    the shapes do not say how (see :func:`copy_parameters`)."""
    shape = value.shape
    if value.dim() == 2 and target.shape == value.mT.shape and (transpose or shape[0] != shape[1]):
        return value.mT, lambda t: t.mT
    squeezed = [n for n in shape if n != 1]
    if not transpose and squeezed == [n for n in target.shape if n != 1] and value.numel() == target.numel():
        return value.reshape(target.shape), lambda t: t.reshape(shape)
    return None


def copy_state(module: Any, twin: torch.nn.Module) -> None:
    """Copy parameters and buffers from a framework module into its twin, by name."""
    reference = _reference_tensor(module)
    if reference is not None:
        twin.to(device=reference.device, dtype=reference.dtype)
    ours = [(n, p) for n, p, _ in module.named_param()]
    if {n for n, _ in ours} != {n for n, _ in twin.named_parameters()}:
        raise ValueError(
            f"{type(module).__name__}: parameter names {sorted(n for n, _ in ours)} do not match "
            f"the twin's {sorted(n for n, _ in twin.named_parameters())}"
        )
    copy_parameters(ours, twin, type(module).__name__, buffers=module.named_buffers())


def copy_state_back(twin: torch.nn.Module, module: Any) -> None:
    """Copy the twin's parameters and buffers into the framework module."""
    twin_params = dict(twin.named_parameters())
    twin_buffers = dict(twin.named_buffers())
    for name, value, _ in module.named_param():
        value.copy_(twin_params[name].detach())
    for name, value in module.named_buffers():
        if name in twin_buffers:
            value.copy_(twin_buffers[name])
