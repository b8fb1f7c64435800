"""The spec registry, and ``@verification.spec``: declare a spec on the op it verifies.

::

    @verification.spec(inputs=lambda kw: [Input((kw["n"], 8))], kwargs={"n": sizes(1, 5)},
                       reference=torch.tanh, dtypes=(torch.float64, torch.float32, torch.bfloat16))
    class MyTanh(torch.autograd.Function):
        ...

The decorator returns the op unchanged (it stays usable as before) with the :class:`Spec` in
its ``verification_spec`` attribute, and registers the spec. :func:`register` registers a plain
``Spec(...)`` object (the framework's own specs are registered through it), or declares one on
an op in a call: ``register(MyOp, inputs=..., reference=...)``. Registering a spec with a
``twin`` keeps :func:`verification.twins.twin_of` consistent with it (the one twin registry).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from .spec import Spec, spec_fields
from .targets import custom_op_name

T = TypeVar("T")

_REGISTERED: list[Spec] = []
# The specs of register(op, ...) calls, with the namespace of the module that called (a file
# imported twice in one process, as pytest's in-process runs do, owns only its own import's).
_DECLARED_IN_CALLS: list[tuple[Spec, dict[str, Any]]] = []


def register(target: Any, /, **declaration: Any) -> Spec:
    """Add a spec to the registry (and its twin to the twin registry); return the spec.

    ``target`` is a :class:`Spec`, or an op (a Function class, a function, a module class) with
    :class:`Spec`'s keyword arguments: ``register(MyOp, inputs=[Input((8, 16))], reference=ref)``
    declares the spec that ``@verification.spec(inputs=..., reference=ref)`` on ``MyOp`` would, and
    returns it. Such a spec belongs to the module that calls (discovery finds it there, on an op
    it imports too); the op is left unchanged.
    """
    if not isinstance(target, Spec):
        if isinstance(target, str) or not callable(target):
            raise TypeError(
                f"register() takes a Spec, or an op (a Function class, a function, a module class) with "
                f"Spec's keyword arguments, got {type(target).__name__}"
            )
        _check_fields(declaration, "register()")
        declaration = _named(target, declaration)
        # Owned by the calling file (discovery finds it through registered_by, not the op): the
        # op's own verification_spec, if another file declared one, stays as it was.
        declared = Spec(target, **declaration)  # its origin: the caller, as the namespace below
        _DECLARED_IN_CALLS.append((declared, sys._getframe(1).f_globals))
        return register(declared)
    if declaration:
        raise TypeError(f"register(): a Spec comes complete; give {sorted(declaration)} to Spec(...) instead")
    spec = target
    if spec.twin is not None and isinstance(spec.module, type):
        from .twins import register_twin

        register_twin(spec.module, spec.twin)
    if not any(s is spec for s in _REGISTERED):
        _REGISTERED.append(spec)
    return spec


def registered() -> list[Spec]:
    """Every registered spec, in registration order."""
    return list(_REGISTERED)


def registered_by(module: ModuleType) -> list[Spec]:
    """The specs that ``module``'s own ``register(op, ...)`` calls declared, in their order."""
    namespace = vars(module)
    return [spec for spec, caller in _DECLARED_IN_CALLS if caller is namespace]


def spec(**declaration: Any) -> Callable[[T], T]:
    """Declare and register the spec of the decorated op (a Function class, a function, a module class).

    Takes :class:`Spec`'s keyword arguments (``kwargs``, ``inputs``, ``reference``, ``dtypes``,
    ``devices``, ``options``, ``benchmark``, ``time_limit``, ...).
    """
    _check_fields(declaration, "verification.spec()")

    def decorate(op: T) -> T:
        # A torch.library custom op is an object of torch's: its function says where it was declared.
        defined = getattr(op, "_init_fn", op) if custom_op_name(op) is not None else op
        module = getattr(defined, "__module__", "") or ""
        file = getattr(sys.modules.get(module), "__file__", "") or ""
        declared = Spec(op, origin=(module, file, _first_line(defined)), **_named(op, declaration))
        try:
            op.verification_spec = declared  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # a builtin or a frozen object: the registry still has it
            pass
        register(declared)
        return op

    return decorate


def _named(op: Any, declaration: dict[str, Any]) -> dict[str, Any]:
    """``declaration`` with a ``name`` for a ``torch.library`` custom op that was given none: its
    qualified name, ``probe::mysin`` spelt ``probe.mysin`` as ``torch.ops.probe.mysin`` is (``::``
    separates the parts of a pytest node id, whose last part the spec's name is). Every custom op is
    a ``CustomOpDef`` object, so Spec's default, the op's class name, would name them all alike."""
    qualified = custom_op_name(op)
    if declaration.get("name") or qualified is None:
        return declaration
    return {**declaration, "name": qualified.replace("::", ".")}


def _check_fields(declaration: dict[str, Any], caller: str) -> None:
    unknown = sorted(set(declaration) - set(spec_fields()))
    if unknown:
        raise TypeError(f"{caller}: unknown arguments {unknown}; known: {spec_fields()}")


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
