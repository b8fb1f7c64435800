"""The spec registry, and ``@verification.spec``: declare a spec on the op it verifies.

::

    @verification.spec(inputs=lambda kw: [Input((kw["n"], 8))], kwargs={"n": sizes(1, 5)},
                       reference=torch.tanh, dtypes=(torch.float64, torch.float32, torch.bfloat16))
    class MyTanh(torch.autograd.Function):
        ...

The decorator returns the op unchanged (it stays usable as before) with the :class:`Spec` in
its ``verification_spec`` attribute, and registers the spec. :func:`register` does the same for
a plain ``Spec(...)`` object; the framework's own specs are registered through it. Registering
a spec with a ``twin`` keeps :func:`verification.twins.twin_of` consistent with it (the one
twin registry).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .spec import Spec, spec_fields

T = TypeVar("T")

_REGISTERED: list[Spec] = []


def register(spec: Spec) -> Spec:
    """Add ``spec`` to the registry (and its twin to the twin registry); returns it."""
    if not isinstance(spec, Spec):
        raise TypeError(f"register() takes a Spec, got {type(spec).__name__}")
    if spec.twin is not None and isinstance(spec.module, type):
        from .twins import register_twin

        register_twin(spec.module, spec.twin)
    if not any(s is spec for s in _REGISTERED):
        _REGISTERED.append(spec)
    return spec


def registered() -> list[Spec]:
    """Every registered spec, in registration order."""
    return list(_REGISTERED)


def spec(**declaration: Any) -> Callable[[T], T]:
    """Declare and register the spec of the decorated op (a Function class, a function, a module class).

    Takes :class:`Spec`'s keyword arguments (``kwargs``, ``inputs``, ``reference``, ``dtypes``,
    ``devices``, ``options``, ``benchmark``, ``time_limit``, ...).
    """
    unknown = sorted(set(declaration) - set(spec_fields()))
    if unknown:
        raise TypeError(f"verification.spec(): unknown arguments {unknown}; known: {spec_fields()}")

    def decorate(op: T) -> T:
        module = getattr(op, "__module__", "") or ""
        file = getattr(sys.modules.get(module), "__file__", "") or ""
        declared = Spec(op, origin=(module, file, _first_line(op)), **declaration)
        try:
            op.verification_spec = declared  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # a builtin or a frozen object: the registry still has it
            pass
        register(declared)
        return op

    return decorate


def _first_line(op: Any) -> int:
    code = getattr(op, "__code__", None)
    if code is not None:
        return code.co_firstlineno
    try:
        return inspect.getsourcelines(op)[1]
    except (OSError, TypeError):
        return 0


def spec_of(obj: Any) -> Spec | None:
    """The spec ``obj`` is, or the one declared on it with ``@verification.spec``; else None."""
    if isinstance(obj, Spec):
        return obj
    try:
        declared = getattr(obj, "verification_spec", None)
    except Exception:  # an object whose attribute lookup itself fails is no op of ours
        return None
    return declared if isinstance(declared, Spec) else None
