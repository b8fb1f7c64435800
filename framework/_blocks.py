"""Elementwise formulas evaluated block by block on the CPU.

A formula of several torch operations makes one pass over memory per operation, and each
temporary is a fresh allocation the size of the input. On a large CPU tensor every pass then
streams it from main memory; cut into blocks that fit in a core's cache, the same operations
stream each block from memory once and run their other passes in the cache. The results are
identical, element for element (every operation is elementwise), only the memory traffic
changes. On a GPU a whole tensor per operation is what the device wants, so there are no
blocks there, nor for tensors small enough to stay in the cache anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import _cpu

# Elements per block (per intra-op thread): a handful of float32 temporaries stay in the cache.
# Smaller blocks pay more in per-operation dispatch than they gain in cache locality, and where the
# balance lies depends on the processor's caches:
# - a 2-core AMD EPYC (1 MiB L2 per core, 32 MiB L3, fast): 256K elements (1 MiB per temporary, in
#   L3). Forward+backward at 4096 x 1024, one thread, framework/torch, 64K- against 256K-element
#   blocks: Softmax 1.50 -> 1.26, SELU 1.96 -> 1.46, GELU 2.02 -> 1.78, LayerNorm 2.80 -> 2.08,
#   SmoothL1Loss 1.57 -> 1.35; at 256 x 1024 (no longer blocked) Softmax 1.31 -> 0.78.
# - a 2-core Intel Xeon (2 MiB L2 per core, its L3 a mesh away and slower): 128K elements (four
#   temporaries of 512 KiB fill L2). Same measure, 256K- against 128K-element blocks, two runs
#   each: Softmax 1.65 -> 1.45, SELU 2.0 -> 1.8, LayerNorm 2.7 -> 2.4, SmoothL1Loss 1.39 -> 1.1
#   (64K: no better than 128K).
BLOCK = 1 << 17 if _cpu.is_intel() else 1 << 18


def one_pass_moments(x: Tensor) -> bool:
    """Whether a normalisation takes its mean and variance from one ``torch.var_mean`` pass (a
    Welford reduction, as accurate as two passes) rather than a mean, then the centred second
    moment: on a GPU each pass over x costs its bandwidth, on the CPU the fused reduction is
    several times slower over a batch dimension."""
    return not x.is_cpu


def blocked(*tensors: Tensor) -> bool:
    """Whether formulas on these same-shape tensors run block by block."""
    first = tensors[0]
    return first.is_cpu and first.numel() >= 4 * BLOCK and all(t.is_contiguous() for t in tensors)


def blocks(tensor: Tensor) -> tuple[Tensor, ...]:
    """Views of consecutive blocks of a contiguous tensor (one call for all of them).

    With several intra-op threads, torch splits each operation on a block between them: a block
    of BLOCK elements per thread keeps each thread's share in its own core's cache and pays the
    threads' start-up once per BLOCK elements each, not once per BLOCK / threads."""
    return tensor.view(-1).split(BLOCK * torch.get_num_threads())


def map_into(fn: Callable[..., object], out: Tensor, *tensors: Tensor) -> Tensor:
    """``fn(*blocks, out_block)`` on matching blocks of ``tensors`` and ``out`` (or once on the
    whole tensors when they are not blocked); ``fn`` writes its result into ``out_block``."""
    if not blocked(out, *tensors):
        fn(*tensors, out)
        return out
    for parts in zip(*(blocks(t) for t in tensors), blocks(out)):
        fn(*parts)
    return out


def sum_of(fn: Callable[..., Tensor], *tensors: Tensor, divisor: int = 1) -> Tensor:
    """The sum over every element of ``fn(*tensors)`` (an elementwise formula), divided by ``divisor``
    (the element count, for a mean), block by block: the partial sums of the blocks are added in a
    fixed order, so the result is deterministic for a given number of threads (as torch's own
    reductions, it may differ in the last bits between two). In bfloat16 and float16 the partial
    sums and the division are float32 (as torch accumulates), rounded once at the end: a float16
    mean of many terms is finite even where their sum is beyond float16's range, as torch's."""
    if not blocked(*tensors):
        total = fn(*tensors).sum()
        return total if divisor == 1 else total / divisor
    dtype = tensors[0].dtype
    accumulate = torch.float32 if dtype in (torch.bfloat16, torch.float16) else None
    partial = [fn(*parts).sum(dtype=accumulate) for parts in zip(*(blocks(t) for t in tensors))]
    total = torch.stack(partial).sum()
    return (total if divisor == 1 else total / divisor).to(dtype)


def dot_of(fn: Callable[..., tuple[Tensor, Tensor]], *tensors: Tensor) -> Tensor:
    """:func:`sum_of` for terms that are a product u v, with ``(u, v) = fn(*blocks)``, on blocked
    float32 or float64 tensors: one dot product per block (a fused multiply and sum: no tensor of
    the products is written). Not for bfloat16 or float16, where a dot product would round each
    block's sum to the dtype (:func:`sum_of` keeps float32 partial sums)."""
    partial = [torch.dot(*fn(*parts)) for parts in zip(*(blocks(t) for t in tensors))]
    return torch.stack(partial).sum()


def row_blocks(rows: Tensor) -> list[slice] | None:
    """Slices of consecutive whole rows of a contiguous (rows, n) CPU tensor, about BLOCK elements
    per intra-op thread each, for row-wise formulas (normalisations); None when it is not blocked."""
    if not blocked(rows) or rows.dim() != 2:
        return None
    per_block = min(rows.shape[0], max(1, BLOCK * torch.get_num_threads() // max(1, rows.shape[1])))
    return [slice(start, start + per_block) for start in range(0, rows.shape[0], per_block)]
