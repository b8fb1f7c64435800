"""A lookup table of learned vectors, indexed by integers."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _checks as check
from . import init as initializers
from .module import Module


class Embedding(Module):
    r"""y[..., :] = weight[index[...], :].

    The input is integer indices, which have no gradient: ``backward`` returns ``None``. Each
    occurrence of row k sends its upstream gradient to row k, so rows that occur several times
    accumulate (an index_add, never an assignment):
        dL/dweight[k] += sum over positions p with index[p] = k of dL/dy[p]   (/ count(k) with scale_grad_by_freq)
    and the ``padding_idx`` row receives no gradient, as in torch (its forward output is the row,
    zeros unless changed).

    Args:
        num_embeddings: the number of rows (indices in [0, num_embeddings)).
        embedding_dim: the length of each vector.
        padding_idx: a row (negative counts from the end) initialised to zeros and never updated.
        max_norm: not supported (torch renormalises rows in place during forward): must be ``None``.
        norm_type: used with ``max_norm`` only.
        scale_grad_by_freq: divide each row's gradient by the number of times it occurs in the batch.
        sparse: sparse gradients are not supported: must be ``False``.
        _weight: an initial weight of shape (num_embeddings, embedding_dim), copied.
        generator: a seeded ``torch.Generator`` for the N(0, 1) initial weights.

    Shape: input (*) of int64 or int32, output (*, embedding_dim).
    Attributes: ``weight`` (num_embeddings, embedding_dim).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Tensor | None = None,
        _freeze: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = check.positive_int(self, num_embeddings, "num_embeddings")
        self.embedding_dim = check.positive_int(self, embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
                raise check.ModuleTypeError(
                    f"Embedding: expected padding_idx to be an int or None, got {padding_idx!r}"
                )
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise check.fail(
                    self,
                    f"expected padding_idx in [{-num_embeddings}, {num_embeddings - 1}] (within num_embeddings), "
                    f"got {padding_idx}",
                )
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        if max_norm is not None:
            raise check.fail(
                self,
                "max_norm is not supported (torch renormalises the looked-up rows in place during forward); "
                "pass max_norm=None",
            )
        self.max_norm, self.norm_type = None, check.number(self, norm_type, "norm_type")
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        if sparse:
            raise check.fail(self, "sparse gradients are not supported; pass sparse=False")
        self.sparse = False
        if _freeze:
            raise check.fail(self, "_freeze is not supported (every parameter is trained); pass _freeze=False")
        dtype = dtype or (_weight.dtype if _weight is not None else torch.get_default_dtype())
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise check.ModuleTypeError(f"Embedding: expected a floating-point dtype, got {dtype!r}")
        shape = (num_embeddings, embedding_dim)
        weight = torch.empty(shape, device=device, dtype=dtype)
        if _weight is None:
            initializers.normal_(weight, generator=generator)
            if padding_idx is not None:
                weight[padding_idx].zero_()
        else:
            check.floating(self, _weight, "_weight")
            check.same_shape(self, _weight, shape, "_weight (num_embeddings, embedding_dim)")
            weight.copy_(_weight)
        self.register_parameter("weight", weight)

    def forward(self, indices: Tensor) -> Tensor:
        indices = check.tensor(self, indices, "input")
        if indices.dtype not in (torch.int64, torch.int32):
            raise check.ModuleTypeError(
                f"Embedding: expected input of an integer dtype (torch.int64 or torch.int32: indices), "
                f"got {indices.dtype}"
            )
        if indices.device != self.weight.device:
            raise check.ModuleTypeError(
                f"Embedding: expected input on device {self.weight.device} (the weight's), got {indices.device}"
            )
        flat = indices.reshape(-1).long()
        # On the CPU an error naming the index; on a GPU a device-side assertion (no host read).
        check.within(self, flat, 0, self.num_embeddings - 1, "index", "index out of range")
        y = self.weight.index_select(0, flat).reshape(*indices.shape, self.embedding_dim)
        self._save_for_backward(indices=flat, like=y)
        return y

    def backward(self, grad_output: Tensor) -> None:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        indices = saved["indices"]
        rows = grad_output.reshape(-1, self.embedding_dim)
        if self.scale_grad_by_freq:
            counts = torch.bincount(indices, minlength=self.num_embeddings).to(rows.dtype)
            rows = rows / counts[indices].unsqueeze(1)
        if self.padding_idx is not None:
            rows = rows * (indices != self.padding_idx).to(rows.dtype).unsqueeze(1)
        self._scatter_rows(indices, rows)
        return None

    def _scatter_rows(self, indices: Tensor, rows: Tensor) -> None:
        """dL/dweight[indices[p]] += rows[p] for every position p (repeated indices add up)."""
        self.grad("weight").index_add_(0, indices, rows)

    def extra_repr(self) -> str:
        extra = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        extra += ", scale_grad_by_freq=True" if self.scale_grad_by_freq else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{extra}"
