"""Containers: modules made of modules."""

from __future__ import annotations

from torch import Tensor

from . import _checks as check
from .module import Module


class Sequential(Module):
    """Chain of modules.

    forward:  y = f_n(... f_2(f_1(x)));   backward: dL/dx = J_1^T (... J_n^T dL/dy)
    (each child's backward in reverse order); ``param()`` concatenates the children's.
    ``backward_to_params`` stops at the first child with parameters, without its input gradient.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise check.ModuleTypeError(
                    f"Sequential: expected framework.Module instances, got {type(module).__name__} at position {index}"
                )
        self._modules = list(modules)

    def named_children(self) -> list[tuple[str, Module]]:
        return [(str(index), module) for index, module in enumerate(self._modules)]

    def forward(self, x: Tensor) -> Tensor:
        # Grad mode is already off here: the children's forward and backward are called
        # without switching it again.
        for module in self._modules:
            x = module._forward_unwrapped(x)
        self._save_for_backward(ran=True)
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        self._saved_tensors()
        for module in reversed(self._modules):
            grad_output = module._backward_unwrapped(grad_output)
        return grad_output

    def backward_to_params(self, grad_output: Tensor) -> None:
        # The children before the first one with parameters need no backward at all, and that
        # one only its parameters' gradients.
        self._saved_tensors()
        modules = self._modules
        first = next((i for i, module in enumerate(modules) if module.has_parameters()), len(modules))
        for module in reversed(modules[first + 1 :]):
            grad_output = module._backward_unwrapped(grad_output)
        if first < len(modules):
            modules[first]._backward_to_params_unwrapped(grad_output)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int | slice) -> Module:
        if isinstance(index, slice):
            return Sequential(*self._modules[index])
        return self._modules[index]

    def __iter__(self):
        return iter(self._modules)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {m!r}" for i, m in enumerate(self._modules))
        return f"Sequential({inner}\n)"
