"""Input validation shared by every module.

Every error names the module class, what was expected and what was given, and is a
``ValueError`` or ``TypeError`` subclass, so a user sees the mistake at the module that
received it rather than deep inside a torch kernel.

Almost every check reads only metadata (type, dtype, device, shape), which costs no device
work. The few that must read tensor *values* (BCELoss's probabilities in [0, 1],
CrossEntropyLoss's class indices in [0, C)) go through :func:`within`, which reads them only
for CPU tensors. On a GPU, reading a value would stall the stream until every queued kernel
has run (and makes a step impossible to capture in a CUDA graph), so there the same
condition is a device-side assertion (``torch._assert_async``): it never blocks, and a
violation stops the program with the message, as torch's own CUDA kernels do for an
out-of-range class index.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


class ModuleValueError(ValueError):
    """A value (shape, size, hyper-parameter, call order) that the module cannot accept."""


class ModuleTypeError(TypeError):
    """An argument of the wrong type, dtype or device."""


def _owner(owner: Any) -> str:
    return owner if isinstance(owner, str) else type(owner).__name__


def fail(owner: Any, message: str) -> ModuleValueError:
    return ModuleValueError(f"{_owner(owner)}: {message}")


def warn(message: str) -> None:
    """A ``UserWarning`` attributed to the first line outside the framework on the stack (the user's
    call), as torch's own warnings are, not to the module that noticed."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def tensor(owner: Any, value: Any, name: str = "input") -> Tensor:
    if not isinstance(value, Tensor):
        raise ModuleTypeError(f"{_owner(owner)}: expected {name} to be a torch.Tensor, got {type(value).__name__}")
    return value


def floating(owner: Any, value: Any, name: str = "input") -> Tensor:
    value = tensor(owner, value, name)
    if not value.is_floating_point():
        raise ModuleTypeError(f"{_owner(owner)}: expected {name} to be a floating-point tensor, got {value.dtype}")
    return value


def ndim(owner: Any, value: Tensor, allowed: Iterable[int], name: str = "input") -> None:
    allowed = tuple(allowed)
    if value.dim() not in allowed:
        dims = " or ".join(f"{d}-D" for d in allowed)
        raise fail(owner, f"expected {name} to be {dims}, got a {value.dim()}-D tensor of shape {tuple(value.shape)}")


def size(owner: Any, value: Tensor, dim: int, expected: int, what: str, name: str = "input") -> None:
    if value.shape[dim] != expected:
        raise fail(owner, f"expected {name} with {what} = {expected} (dimension {dim}), got shape {tuple(value.shape)}")


def same_shape(owner: Any, value: Tensor, expected: tuple[int, ...] | torch.Size, name: str) -> None:
    if tuple(value.shape) != tuple(expected):
        raise fail(owner, f"expected {name} of shape {tuple(expected)}, got {tuple(value.shape)}")


def like(owner: Any, value: Tensor, reference: Tensor, name: str, reference_name: str) -> None:
    """``value`` must share ``reference``'s dtype and device."""
    whose = f"{reference_name}'" if reference_name.endswith("s") else f"{reference_name}'s"
    if value.dtype != reference.dtype:
        raise ModuleTypeError(
            f"{_owner(owner)}: expected {name} of dtype {reference.dtype} (the {whose}), got {value.dtype}"
        )
    if value.device != reference.device:
        raise ModuleTypeError(
            f"{_owner(owner)}: expected {name} on device {reference.device} (the {whose}), got {value.device}"
        )


def positive_int(owner: Any, value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModuleTypeError(f"{_owner(owner)}: expected {name} to be an int, got {value!r}")
    if value < 1:
        raise fail(owner, f"expected {name} >= 1, got {value}")
    return value


def non_negative_int(owner: Any, value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModuleTypeError(f"{_owner(owner)}: expected {name} to be an int, got {value!r}")
    if value < 0:
        raise fail(owner, f"expected {name} >= 0, got {value}")
    return value


def number(
    owner: Any,
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A real number in ``[low, high]`` (either end open when asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModuleTypeError(f"{_owner(owner)}: expected {name} to be a number, got {value!r}")
    value = float(value)
    if value != value:
        raise fail(owner, f"expected {name} to be a number, got nan")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise fail(owner, f"expected {name} in {interval}, got {value:g}")
    return value


def choice(owner: Any, value: Any, name: str, options: Iterable[Any]) -> Any:
    options = tuple(options)
    if value not in options:
        raise fail(owner, f"expected {name} to be one of {options}, got {value!r}")
    return value


def pair(owner: Any, value: Any, name: str) -> tuple[int, int]:
    """An int or a pair of ints, as torch's 2-D layers accept."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ModuleTypeError(f"{_owner(owner)}: expected {name} to be an int or a pair of ints, got {value!r}")


def reads_on_host(value: Tensor) -> bool:
    """Whether :func:`within` reads ``value`` on the host (a CPU tensor: the error names the
    offending element) rather than asserting on the device (elsewhere: no wait for the device)."""
    return value.is_cpu


def within(
    owner: Any,
    value: Tensor,
    low: float,
    high: float,
    what: str,
    name: str,
    high_open: bool = False,
    allowed: tuple[float, str] | None = None,
) -> tuple[float, float] | None:
    """Every element of ``value`` in [low, high] (or [low, high) with ``high_open``), or equal to the
    ``allowed`` value (with its description, e.g. ``(-100, "ignore_index=-100")``); NaN is outside.

    CPU tensors: a :class:`ModuleValueError` naming the first offending element; the smallest
    and the largest element are returned (None for an empty tensor). Other devices: a
    non-blocking device-side assertion with the same message, without the element; None.
    """
    if value.numel() == 0:
        return None
    interval = _interval(low, high, high_open, allowed)
    if not reads_on_host(value):
        if allowed is None:
            assert_within_on_device(owner, value, low, high, what, name, high_open)
        else:
            ok = _inside(value, low, high, high_open).logical_or_(value == allowed[0]).all()
            torch._assert_async(ok, f"{_owner(owner)}: expected every {what} in {interval} ({name})")
        return None
    smallest, largest = (v.item() for v in torch.aminmax(value))  # they decide the common case
    if smallest >= low and (largest < high if high_open else largest <= high):
        return smallest, largest
    inside = _inside(value, low, high, high_open)
    if allowed is not None and bool(inside.logical_or_(value == allowed[0]).all()):
        return smallest, largest
    worst = value[~inside].flatten()[0].item()
    shown = f"{worst:g}" if isinstance(worst, float) else str(worst)
    raise fail(owner, f"expected every {what} in {interval}, got {shown}")


def assert_within_on_device(
    owner: Any,
    value: Tensor,
    low: float,
    high: float,
    what: str,
    name: str,
    high_open: bool = False,
    allowed: tuple[float, str] | None = None,
) -> None:
    """:func:`within`'s device-side assertion, from the smallest and the largest element of ``value``
    (a handful of kernels, no host read). ``allowed`` only names what the caller has already
    mapped into the interval (a class index that stands for an ignored position) in the message."""
    if value.numel() == 0:
        return
    smallest, largest = torch.aminmax(value)  # two numbers to test instead of every element
    ok = (smallest >= low) & ((largest < high) if high_open else (largest <= high))
    interval = _interval(low, high, high_open, allowed)
    torch._assert_async(ok, f"{_owner(owner)}: expected every {what} in {interval} ({name})")


def _interval(low: float, high: float, high_open: bool, allowed: tuple[float, str] | None) -> str:
    return f"[{low:g}, {high:g}{')' if high_open else ']'}" + (f" or {allowed[1]}" if allowed else "")


def _inside(value: Tensor, low: float, high: float, high_open: bool) -> Tensor:
    return (value >= low) & ((value < high) if high_open else (value <= high))
