"""Public hypothesis strategies for sizes and shapes (the values come from domains)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Strategy = st.SearchStrategy


def sizes(low: int = 1, high: int = 6) -> Strategy[int]:
    """A dimension size in ``[low, high]`` (shrinks towards ``low``)."""
    return st.integers(min_value=low, max_value=high)


def as_strategy(value: Any) -> Strategy[Any]:
    """A strategy unchanged, any other value as ``st.just(value)``."""
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def batched(*features: int | Strategy[int], batch: int | Strategy[int] | None = None) -> Strategy[tuple[int, ...]]:
    """Shape ``(N, *features)`` with ``N`` drawn from ``batch`` (1 to 5 by default)."""
    dims = [as_strategy(sizes(1, 5) if batch is None else batch), *map(as_strategy, features)]
    return st.tuples(*dims)


def shapes(min_dims: int = 1, max_dims: int = 3, min_side: int = 1, max_side: int = 5) -> Strategy[tuple[int, ...]]:
    """Any shape of ``min_dims`` to ``max_dims`` dimensions."""
    return st.lists(sizes(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def booleans() -> Strategy[bool]:
    return st.booleans()


def reductions() -> Strategy[str]:
    """A loss's reduction; ``'none'`` makes the upstream gradient a tensor of the loss's shape."""
    return st.sampled_from(["mean", "sum", "none"])


TINY_HYPERPARAMETER = 1e-100


def floats(low: float, high: float) -> Strategy[float]:
    """Bounded finite floats for hyper-parameters (slopes, alphas, betas): 0 or at least 1e-100 in
    magnitude. A slope near 1e-308 makes subnormal outputs (below 2.2e-308, where float64's
    precision is absolute), through which no finite difference resolves a gradient: the check
    would be inconclusive."""
    drawn = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    return drawn.filter(lambda v: v == 0 or abs(v) >= TINY_HYPERPARAMETER)
