"""Gradient verification of hand-written backward passes.

``check_gradients(target, *inputs, ...)`` checks one call of any target (a framework or EE-559
module, a ``torch.autograd.Function``, a callable, a ``torch.nn.Module``); a :class:`Spec`
declares how to draw many calls of it, and ``python -m verification [PATH]``, the pytest plugin
and ``python -m benchmarks [PATH]`` run every declared spec.

``verification.spec`` is the decorator that declares a spec on an op (the submodule of the same
name stays importable as ``from verification.spec import ...``).
"""

from . import registry
from .check import CheckResult, GradientReport, Options, assert_gradients_close, check_gradients
from .domains import Domain, away_from
from .registry import register, registered
from .spec import Case, Input, Spec
from .testing import given_cases

# The decorator, bound after the submodule ``verification.spec`` was imported (which set the
# package attribute to the module): ``@verification.spec(...)``.
spec = registry.spec

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
    "given_cases",
    "register",
    "registered",
    "spec",
]
