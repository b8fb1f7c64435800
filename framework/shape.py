"""Modules that only change the shape of their input."""

from __future__ import annotations

from torch import Tensor

from . import _checks as check
from .module import Module


class Flatten(Module):
    r"""Merge the dimensions ``start_dim`` to ``end_dim`` (inclusive) into one.

    y = x.reshape(*x.shape[:start_dim], -1, *x.shape[end_dim + 1:]);   dL/dx = (dL/dy).reshape(x.shape)

    Args:
        start_dim: first dimension to merge (negative counts from the end).
        end_dim: last dimension to merge (negative counts from the end).

    Shape: input (*, S_start, ..., S_end, *), output (*, prod(S_start..S_end), *).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = self._int(start_dim, "start_dim")
        self.end_dim = self._int(end_dim, "end_dim")

    def _int(self, value: object, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise check.ModuleTypeError(f"Flatten: expected {name} to be an int, got {value!r}")
        return value

    def _dims(self, x: Tensor) -> tuple[int, int]:
        # A 0-d tensor flattens as if it had one dimension, as in torch.
        rank = max(x.dim(), 1)
        start = self.start_dim + rank if self.start_dim < 0 else self.start_dim
        end = self.end_dim + rank if self.end_dim < 0 else self.end_dim
        if not (0 <= start < rank and 0 <= end < rank):
            raise check.fail(
                self,
                f"expected start_dim and end_dim within [{-rank}, {rank - 1}] for a {x.dim()}-D input, "
                f"got start_dim={self.start_dim}, end_dim={self.end_dim} (input shape {tuple(x.shape)})",
            )
        if start > end:
            raise check.fail(
                self, f"expected start_dim <= end_dim, got {start} > {end} for input shape {tuple(x.shape)}"
            )
        return start, end

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        start, end = self._dims(x)
        y = x.flatten(start, end)
        self._save_for_backward(shape=x.shape, like=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        return grad_output.reshape(saved["shape"])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
