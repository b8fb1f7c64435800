"""The checks, one family per file; each takes the case :class:`~verification.context.Context`.

``CHECKS`` maps each check's name to its function, in the order they run and are reported.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import Context
from ..report import CheckResult
from .algebra import check_accumulation, check_linearity
from .batched import check_batched
from .determinism import check_determinism, check_side_effects
from .finite_differences import check_finite_differences
from .forward_mode import check_forward_mode
from .layouts import check_layouts
from .precision import check_low_precision
from .second_order import check_second_order
from .twin import check_twin
from .undefined_grad import check_undefined_grad

CHECKS: dict[str, Callable[[Context], CheckResult]] = {
    "finite_differences": check_finite_differences,
    "twin": check_twin,
    "linearity": check_linearity,
    "undefined_grad": check_undefined_grad,
    "accumulation": check_accumulation,
    "side_effects": check_side_effects,
    "determinism": check_determinism,
    "layouts": check_layouts,
    "low_precision": check_low_precision,
    "second_order": check_second_order,
    "forward_mode": check_forward_mode,
    "batched": check_batched,
}

__all__ = ["CHECKS"]
