"""Modules with several outputs under checks written for one.

The checks differentiate :math:`\\phi = \\langle g, y \\rangle` for one output ``y``. A module with
several outputs (``MultiheadAttention``'s output and weights, ``LSTM``'s output and final
states) is checked through an adapter whose forward returns :func:`join` of the outputs (each
flattened, then concatenated) and whose backward cuts its upstream gradient back with
:func:`split`: then :math:`\\phi = \\sum_k \\langle g_k, y_k \\rangle`, and every check covers every
output and the backward's handling of all their gradients at once. The ``torch.nn`` twin gets
the same adapter, so both sides join the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def join(outputs: Sequence[Tensor | None]) -> Tensor:
    """Every output flattened and concatenated, in order (``None`` outputs left out)."""
    return torch.cat([y.reshape(-1) for y in outputs if y is not None])


def split(grad_output: Tensor, like: Sequence[Tensor | None], owner: str) -> list[Tensor | None]:
    """``grad_output`` of the joined output cut into one gradient per output, shaped like it."""
    sizes = [0 if y is None else y.numel() for y in like]
    if grad_output.dim() != 1 or grad_output.numel() != sum(sizes):
        raise ValueError(
            f"{owner}: expected grad_output of shape ({sum(sizes)},) (the joined outputs), "
            f"got {tuple(grad_output.shape)}"
        )
    pieces = torch.split(grad_output, sizes)
    return [None if y is None else piece.reshape(y.shape) for piece, y in zip(pieces, like)]
