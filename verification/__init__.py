"""Gradient verification of hand-written backward passes.

``check_gradients(module, *inputs, ...)`` checks any object with ``forward``, ``backward``
and ``param()`` against finite differences and, given a reference, ``torch.autograd``;
``python -m verification`` runs every registered module's spec over hypothesis-drawn cases.
"""

from .check import CheckResult, GradientReport, Options, assert_gradients_close, check_gradients
from .domains import Domain, away_from
from .spec import Case, Input, Spec

__all__ = [
    "Case",
    "CheckResult",
    "Domain",
    "GradientReport",
    "Input",
    "Options",
    "Spec",
    "assert_gradients_close",
    "away_from",
    "check_gradients",
]
