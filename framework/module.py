"""The Module protocol, the Loss base and the registry of every concrete module.

A module computes ``forward(*inputs)`` and, given dL/d(output), ``backward(*grad_outputs)``
returns dL/d(input) and *adds* dL/d(parameter) into each parameter's gradient. Everything
runs with torch's grad mode off: the gradients are the hand-written ones, never autograd's.

Several outputs (``MultiheadAttention``'s ``(output, weights)``, ``LSTM``'s
``(output, (h_n, c_n))``): ``backward`` takes one gradient per output, in order and shaped like
that output (a pair for ``(h_n, c_n)``); for the outputs after the first, ``None`` or leaving it
out means the output does not reach the loss (a zero gradient). Several inputs: ``backward``
returns one gradient per input, ``None`` for an integer input (``Embedding``'s indices), which
has no gradient.

The per-call cost matters as much as the kernels for small networks (a 2-25-25-25-2 network
spends most of a training step in Python), so the protocol's own work is kept to a few
attribute reads per call: grad mode is switched off once at the outermost call, parameters
and buffers are plain instance attributes, and the argument checks take a fast path that
only falls back to the detailed error messages when something is wrong.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from . import _blocks
from . import _checks as check

_REGISTRY: list[type[Module]] = []


_grad_enabled = torch.is_grad_enabled
_set_grad_enabled = torch._C._set_grad_enabled


def _releasing_saved(forward: Callable[..., Any]) -> Callable[..., Any]:
    # A new forward first lets go of what the last one kept for backward: its buffers are free
    # before the new ones are allocated, so the allocator hands the same memory back instead of
    # fresh pages (a page fault per 4 KiB on the CPU, more than an elementwise pass over them).
    # A forward that fails then leaves nothing behind for a backward to use by mistake.
    @functools.wraps(forward)
    def wrapper(self: Module, *args: Any, **kwargs: Any) -> Any:
        self.__dict__.pop("_saved", None)
        return forward(self, *args, **kwargs)

    return wrapper


def _without_grad_mode(method: Callable[..., Any]) -> Callable[..., Any]:
    # Only the outermost call switches grad mode off (a Sequential's children find it off):
    # entering ``torch.no_grad()`` costs more than a small layer's whole forward.
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _grad_enabled():
            return method(*args, **kwargs)
        _set_grad_enabled(False)
        try:
            return method(*args, **kwargs)
        finally:
            _set_grad_enabled(True)

    wrapper._grad_mode_off = True  # type: ignore[attr-defined]
    return wrapper


def _moved(tensor: Tensor, device: torch.device | str | None, dtype: torch.dtype | None) -> Tensor:
    """``tensor`` given the device and dtype, as the same tensor object (``.data`` swapped, as torch's
    ``Module._apply`` does) wherever torch allows the swap; a new tensor where it does not (to or
    from the ``meta`` device)."""
    moved = tensor.to(device=device, dtype=dtype)
    if moved is tensor or not torch._has_compatible_shallow_copy_type(tensor, moved):
        return moved
    tensor.data = moved
    return tensor


def optional_batch(method: Callable[..., Any]) -> Callable[..., Any]:
    """Lets ``forward(x, ...)`` and ``backward(grad_output)`` (or ``backward_to_params``) take one
    sample without its batch dimension, as torch's layers do: an input of rank
    ``self.unbatched_ndim`` runs as a batch of one, and the output (in backward, the input
    gradient) comes back without that dimension.
    An input of any rank but those two is refused, naming both."""
    is_forward = method.__name__ == "forward"

    @functools.wraps(method)
    def wrapper(self: Module, x: Any, *args: Any, **kwargs: Any) -> Any:
        if is_forward:
            rank = self.unbatched_ndim
            if isinstance(x, Tensor) and x.dim() not in (rank, rank + 1):
                check.ndim(self, x, (rank, rank + 1), "input")
            unbatched = isinstance(x, Tensor) and x.dim() == rank
            object.__setattr__(self, "_unbatched", unbatched)
        else:
            unbatched = self.__dict__.get("_unbatched", False)
        if unbatched and isinstance(x, Tensor):
            result = method(self, x.unsqueeze(0), *args, **kwargs)
            return None if result is None else result.squeeze(0)  # backward_to_params returns None
        return method(self, x, *args, **kwargs)

    return wrapper


class Module:
    """Base class of every layer, activation, loss and container.

    Subclasses implement ``forward`` and ``backward`` and register their tensors with
    :meth:`register_parameter` (trainable, with a gradient of the same shape) or
    :meth:`register_buffer` (state such as running statistics). Concrete subclasses defined
    in the ``framework`` package are enumerated by :func:`framework.modules`.

    Attributes:
        training: ``True`` in training mode (the default), ``False`` after :meth:`eval`.
    """

    abstract: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward", "backward_to_params"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_grad_mode_off", False):
                if name == "forward":
                    method = _releasing_saved(method)
                setattr(cls, name, _without_grad_mode(method))
                # The unwrapped method, for callers that have already switched grad mode off.
                setattr(cls, f"_{name}_unwrapped", method)
        if "abstract" not in cls.__dict__:
            cls.abstract = False
        if not cls.abstract and cls.__module__.startswith("framework."):
            _REGISTRY.append(cls)

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_gradients", {})
        object.__setattr__(self, "_buffers", {})
        self.training = True

    # -- tensors owned by the module -------------------------------------------------------
    def register_parameter(self, name: str, value: Tensor | None) -> None:
        """Register a trainable tensor (``None`` registers nothing, as for ``bias=False``)."""
        if value is None:
            object.__setattr__(self, name, None)
            return
        self._parameters[name] = value
        self._gradients[name] = torch.zeros_like(value)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Tensor | None) -> None:
        if value is None:
            object.__setattr__(self, name, None)
            return
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: parameters and buffers are mirrored as
        # instance attributes (a plain lookup is the fast one), this covers the rest.
        for store in ("_parameters", "_buffers"):
            table = self.__dict__.get(store)
            if table is not None and name in table:
                return table[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is not None and name in params:
            check.tensor(self, value, name)
            check.same_shape(self, value, params[name].shape, name)
            params[name] = value
            self._gradients[name] = torch.zeros_like(value)
            object.__setattr__(self, name, value)
            return
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            buffers[name] = value
        object.__setattr__(self, name, value)

    def named_children(self) -> list[tuple[str, Module]]:
        """Direct sub-modules with their torch attribute names (``"0"``, ``"out_proj"``, ...).

        Composite modules override this; the names prefix the children's parameter names.
        """
        return []

    def children(self) -> list[Module]:
        """Direct sub-modules."""
        return [child for _, child in self.named_children()]

    def named_param(self, prefix: str = "") -> list[tuple[str, Tensor, Tensor]]:
        """``(name, parameter, gradient)`` triples, names as in torch's ``state_dict``."""
        own = [(prefix + n, p, self._gradients[n]) for n, p in self._parameters.items()]
        for name, child in self.named_children():
            own += child.named_param(f"{prefix}{name}.")
        return own

    def has_parameters(self) -> bool:
        """Whether this module or a descendant has a parameter (without listing them)."""
        return bool(self._parameters) or any(child.has_parameters() for child in self.children())

    def named_buffers(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        own = [(prefix + n, b) for n, b in self._buffers.items()]
        for name, child in self.named_children():
            own += child.named_buffers(f"{prefix}{name}.")
        return own

    def param(self) -> list[tuple[Tensor, Tensor]]:
        """A list of ``(parameter, gradient)`` pairs of equal shapes; empty without parameters."""
        return [(p, g) for _, p, g in self.named_param()]

    def grad(self, name: str) -> Tensor:
        """The gradient accumulated for parameter ``name`` (e.g. ``"weight"``, ``"out_proj.weight"``)."""
        head, _, rest = name.partition(".")
        if name not in self._gradients and rest:
            for child_name, child in self.named_children():
                if child_name == head:
                    return child.grad(rest)
        if name not in self._gradients:
            raise check.fail(self, f"expected a parameter name in {sorted(self._gradients)}, got {name!r}")
        return self._gradients[name]

    def zero_grad(self) -> None:
        for _, _, g in self.named_param():
            g.zero_()

    # -- modes and placement -----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Module:
        """Move parameters, gradients and buffers (floating buffers only change dtype), in place as
        torch's ``Module.to``: each stays the same tensor object, so an optimizer built on
        ``param()`` before the move updates the moved parameters, and a tensor shared between two
        modules stays shared."""
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise check.ModuleTypeError(f"{type(self).__name__}: expected a floating-point torch.dtype, got {dtype!r}")
        for name in list(self._parameters):
            self._parameters[name] = _moved(self._parameters[name], device, dtype)
            self._gradients[name] = _moved(self._gradients[name], device, dtype)
            object.__setattr__(self, name, self._parameters[name])
        for name, value in list(self._buffers.items()):
            self._buffers[name] = _moved(value, device, dtype if value.is_floating_point() else None)
            object.__setattr__(self, name, self._buffers[name])
        for child in self.children():
            child.to(device=device, dtype=dtype)
        return self

    # -- the protocol ------------------------------------------------------------------------
    def forward(self, *inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def backward(self, *grad_outputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        raise NotImplementedError

    def backward_to_params(self, *grad_outputs: Tensor) -> None:
        """Backward as far as the parameters: accumulates every parameter's gradient, exactly as
        ``backward`` does, and returns nothing.

        Where that saves work the input's gradient is not computed at all, as autograd skips it
        for an input that does not require grad: a training step calls it on the whole network
        (``model.backward_to_params(criterion.backward(1.0))``), so that no one pays for dL/dx of the
        data. Linear and the convolutions skip their input gradient; a Sequential runs its children
        back to the first one with parameters, and that one to its parameters only. Any other
        module runs ``backward`` and drops its result.
        """
        self.backward(*grad_outputs)

    def _backward_to_params_unwrapped(self, *grad_outputs: Tensor) -> None:
        self._backward_unwrapped(*grad_outputs)

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        return self.forward(*inputs, **kwargs)

    def _forward_unwrapped(self, *inputs: Tensor) -> Tensor:
        return self.forward(*inputs)

    def _backward_unwrapped(self, *grad_outputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.backward(*grad_outputs)

    # -- helpers for subclasses ----------------------------------------------------------------
    def _reference_tensor(self) -> Tensor | None:
        for p in self._parameters.values():
            return p
        if type(self).named_children is Module.named_children:  # no children: no call to find out
            return None
        for _, p, _ in self.named_param():
            return p
        return None

    def _check_input(self, x: Any, allowed_ndim: tuple[int, ...] | None = None, name: str = "input") -> Tensor:
        """A floating tensor of an allowed rank, on the parameters' dtype and device."""
        # The common case first, in as few tensor attribute reads as it takes (each costs ~0.2 us,
        # and a small network's step makes a few dozen of these checks).
        if isinstance(x, Tensor) and (allowed_ndim is None or x.dim() in allowed_ndim):
            reference = self._reference_tensor()
            if reference is None:
                if x.is_floating_point():
                    return x
            elif x.dtype is reference.dtype and x.dtype.is_floating_point and x.device == reference.device:
                return x
        x = check.floating(self, x, name)
        if allowed_ndim is not None:
            check.ndim(self, x, allowed_ndim, name)
        reference = self._reference_tensor()
        if reference is not None:
            check.like(self, x, reference, name, "parameters")
        return x

    def _workspace(
        self, name: str, shape: tuple[int, ...], like: Tensor, init: Callable[[Tensor], Any] | None = None
    ) -> Tensor:
        """A tensor of ``shape`` (``like``'s dtype and device) that this module reuses from call to
        call for an internal temporary, never for anything it returns: a large fresh CPU allocation
        costs a page fault per 4 KiB on first touch, often more than the computation that fills it.
        ``init`` fills a new one once, for the parts that no call overwrites (a canvas's border):
        on a GPU each fill saved is a kernel launch per call."""
        spaces = self.__dict__.setdefault("_workspaces", {})
        space = spaces.get(name)
        if space is None or space.shape != shape or space.dtype != like.dtype or space.device != like.device:
            space = spaces[name] = like.new_empty(shape)
            if init is not None:
                init(space)
        return space

    def _constant(self, value: float, like: Tensor) -> Tensor:
        """A 0-d tensor holding ``value`` in ``like``'s dtype and device, made once per value and
        only ever read (an operand of the formulas): on a GPU a fresh one is a kernel per call."""
        return self._workspace(f"constant {value!r}", (), like, init=lambda t: t.fill_(value))

    def _scratch(self, name: str, like: Tensor) -> Tensor | None:
        """A :meth:`_workspace` of ``like``'s shape for a temporary on a large CPU input (one the
        elementwise formulas would run in blocks), else None, for the operation to allocate."""
        return self._workspace(name, tuple(like.shape), like) if _blocks.blocked(like) else None

    def _save_for_backward(self, **tensors: Any) -> None:
        self.__dict__["_saved"] = tensors  # no attribute machinery: a few calls per layer per step

    def _saved_tensors(self) -> dict[str, Any]:
        saved = self.__dict__.get("_saved")
        if saved is None:
            raise check.fail(self, "backward called before forward (or after a failed forward): call forward first")
        return saved

    def _check_grad_output(self, grad_output: Any, expected: Tensor, name: str = "grad_output") -> Tensor:
        if (
            isinstance(grad_output, Tensor)
            and grad_output.dtype is expected.dtype
            and grad_output.shape == expected.shape
            and grad_output.device == expected.device
        ):
            return grad_output
        grad_output = check.floating(self, grad_output, name)
        check.same_shape(self, grad_output, expected.shape, f"{name} (the output's shape)")
        check.like(self, grad_output, expected, name, "output")
        return grad_output

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Loss(Module):
    """A criterion: ``forward(prediction, target)`` returns the loss.

    ``reduction`` chooses the loss: ``'mean'`` (the default) or ``'sum'`` of the elementwise
    losses, a 0-d tensor; or ``'none'``, the elementwise losses themselves (shape as torch's).
    ``backward(grad_output)`` returns dL/d(prediction) for an upstream gradient of the loss's
    shape: for a reduced loss a scalar, 1 by default, so a loss can sit inside a larger
    expression; for ``'none'`` a tensor of the unreduced shape, which must be given (as torch's
    ``backward()`` of a non-scalar needs a gradient: ``backward()`` alone raises).
    """

    abstract = True
    target_is_index: ClassVar[bool] = False

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check.choice(self, reduction, "reduction", check.REDUCTIONS)

    def _check_pair(self, prediction: Any, target: Any) -> tuple[Tensor, Tensor]:
        if (
            isinstance(prediction, Tensor)
            and isinstance(target, Tensor)
            and prediction.is_floating_point()
            and target.dtype is prediction.dtype
            and target.shape == prediction.shape
            and target.device == prediction.device
        ):
            return prediction, target
        prediction = check.floating(self, prediction, "prediction")
        target = check.floating(self, target, "target")
        check.same_shape(self, target, prediction.shape, "target (the prediction's shape)")
        check.like(self, target, prediction, "target", "prediction")
        return prediction, target

    def _reduce(self, elementwise: Tensor) -> Tensor:
        if self.reduction == "none":
            return elementwise
        return elementwise.mean() if self.reduction == "mean" else elementwise.sum()

    def _reduction_scale(self, count: int) -> float:
        # An empty 'mean' is nan (as torch) and its gradient empty: any finite scale will do.
        return 1.0 / max(count, 1) if self.reduction == "mean" else 1.0

    def _upstream(self, grad_output: Any, like: Tensor, shape: tuple[int, ...] | None = None) -> Tensor | float:
        """What scales dL/d(prediction): a scalar (1 by default) for a reduced loss; for
        ``reduction='none'`` ``grad_output`` itself, of the unreduced loss's ``shape``
        (``like``'s by default)."""
        if self.reduction == "none":
            expected = tuple(like.shape) if shape is None else tuple(shape)
            if grad_output is None:
                if math.prod(expected) != 1:
                    raise check.fail(
                        self,
                        f"backward() needs grad_output with reduction='none': the loss has shape {expected}, "
                        "so pass dL/d(loss) of that shape (torch's backward() of a non-scalar needs one too)",
                    )
                return torch.ones(expected, dtype=like.dtype, device=like.device)  # one element: as torch
            grad_output = check.floating(self, grad_output, "grad_output")
            check.same_shape(self, grad_output, expected, "grad_output (the unreduced loss's shape)")
            check.like(self, grad_output, like, "grad_output", "prediction")
            return grad_output
        if grad_output is None:
            return 1.0
        if isinstance(grad_output, (int, float)) and not isinstance(grad_output, bool):
            return float(grad_output)
        grad_output = check.floating(self, grad_output, "grad_output")
        if grad_output.numel() != 1:
            raise check.fail(
                self, f"expected grad_output to be a scalar (the loss is 0-d), got shape {tuple(grad_output.shape)}"
            )
        check.like(self, grad_output, like, "grad_output", "prediction")
        return grad_output.reshape(())

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def modules() -> list[type[Module]]:
    """Every concrete module class of the framework, in a stable (alphabetical) order."""
    # Importing ``framework`` imports every family file, so every class has registered.
    return sorted(_REGISTRY, key=lambda cls: cls.__name__)


def iter_modules(module: Module) -> Iterator[Module]:
    """``module`` and all its descendants, depth first."""
    yield module
    for child in module.children():
        yield from iter_modules(child)
