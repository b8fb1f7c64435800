"""Named value domains for drawn inputs.

A domain says where a module is differentiable enough for finite differences to be
meaningful: ``away_from(0.0, margin=1e-2)`` keeps ReLU's inputs a named margin from its
kink, ``DISTINCT`` keeps MaxPool's window entries apart so the arg-max cannot flip under a
perturbation. ``indices(n)`` draws integer indices in ``[0, n)`` (an ``int64`` tensor that is
passed to the module as it is and never differentiated). Values are drawn from a seeded
``torch.Generator``: a case is replayed from its seed, and hypothesis shrinks shapes and seeds
rather than thousands of floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Domain:
    """Uniform values in ``[low, high]``, optionally kept ``margin`` away from ``avoid`` points,
    or (``distinct=True``) pairwise at least half a grid step apart, or (``integer=True``)
    integers in ``[low, high)``; then the whole tensor shifted by one of ``offsets`` (drawn)."""

    name: str
    low: float = -3.0
    high: float = 3.0
    avoid: tuple[float, ...] = ()
    margin: float = 0.0
    distinct: bool = False
    integer: bool = False
    offsets: tuple[float, ...] = ()

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """A float64 (``int64`` for an integer domain) CPU tensor of ``shape`` drawn from this domain."""
        if self.integer:
            # Uniform over [low, high) without the avoided values: draw from fewer, then step past them.
            x = torch.randint(int(self.low), int(self.high) - len(self.avoid), shape, generator=generator)
            for point in sorted(self.avoid):
                x = x + (x >= point).long()
            return x
        n = 1
        for side in shape:
            n *= side
        if self.offsets:
            offset = self.offsets[int(torch.randint(len(self.offsets), (), generator=generator))]
            return offset + Domain(self.name, self.low, self.high, self.avoid, self.margin, self.distinct).sample(
                shape, generator
            )
        if self.distinct:
            step = (self.high - self.low) / max(n, 1)
            order = torch.randperm(n, generator=generator, dtype=torch.float64)
            jitter = torch.rand(n, generator=generator, dtype=torch.float64)
            return (self.low + (order + 0.25 + 0.5 * jitter) * step).reshape(shape)
        x = self.low + (self.high - self.low) * torch.rand(shape, generator=generator, dtype=torch.float64)
        for point in self.avoid:
            near = (x - point).abs() < self.margin
            side = torch.where(x >= point, 1.0, -1.0).to(torch.float64)
            x = torch.where(near, point + side * (self.margin + (x - point).abs()), x)
        return x

    def __str__(self) -> str:
        return self.name


def away_from(
    *points: float, margin: float = 1e-2, low: float = -3.0, high: float = 3.0, name: str | None = None
) -> Domain:
    """Values at least ``margin`` away from each kink in ``points``."""
    label = name or "away_from(" + ", ".join(f"{p:g}" for p in points) + f"; margin={margin:g})"
    return Domain(label, low, high, tuple(float(p) for p in points), margin)


def indices(count: int, avoid: int | None = None) -> Domain:
    """Integer indices in ``[0, count)``, never ``avoid`` (``Embedding``'s input and padding row)."""
    name = f"indices(<{count}" + ("" if avoid is None else f", not {avoid}") + ")"
    return Domain(name, 0.0, float(count), () if avoid is None else (float(avoid),), integer=True)


REAL = Domain("real", -3.0, 3.0)
WIDE = Domain("wide", -30.0, 30.0)
POSITIVE = Domain("positive", 0.1, 3.0)
PROBABILITY = Domain("probability", 0.05, 0.95)
UNIT = Domain("unit", 0.0, 1.0)
AWAY_FROM_ZERO = away_from(0.0, name="away_from_zero")
DISTINCT = Domain("distinct", -3.0, 3.0, distinct=True)
# Logits spread over [-30, 30], the whole tensor shifted by 0 or +-100 (drawn): exp(x) would
# overflow float32 (the float32 check) or underflow without the shift by the maximum. Not
# +-1000: the finite-difference step is relative to |x| (0.1 there), too coarse for a softmax
# of spread 1; tests/framework/test_softmax.py checks +-1000 and beyond in both dtypes.
LOGITS = Domain("logits(+-100)", -30.0, 30.0, offsets=(0.0, 100.0, -100.0))
