"""One spec per registered module, one file per family (mirroring ``framework/``).

``SPECS`` lists them all; a test fails when a registered module has none.
"""

from __future__ import annotations

from ..registry import register
from ..spec import Spec
from ..twins import register_twin
from . import (
    activations,
    attention,
    containers,
    conv,
    dropout,
    embedding,
    linear,
    losses,
    norm,
    normalization,
    pooling,
    recurrent,
    shape,
    softmax,
    transformer,
)

SPECS: list[Spec] = [
    *linear.SPECS,
    *activations.SPECS,
    *losses.SPECS,
    *containers.SPECS,
    *conv.SPECS,
    *pooling.SPECS,
    *norm.SPECS,
    *normalization.SPECS,
    *softmax.SPECS,
    *dropout.SPECS,
    *embedding.SPECS,
    *attention.SPECS,
    *recurrent.SPECS,
    *transformer.SPECS,
    *shape.SPECS,
]

_BY_CLASS: dict[type, Spec] = {}
_BY_NAME: dict[str, Spec] = {}


def register_spec(spec: Spec) -> Spec:
    """Add a framework spec to the public registry (:func:`verification.register`, which also
    registers its twin for twin_of) and to the lookups by class and name below."""
    register(spec)
    _BY_CLASS[spec.module] = spec
    _BY_NAME[spec.name] = spec
    return spec


for _spec in SPECS:
    register_spec(_spec)
# Modules whose spec verifies an adapter (masks and initial states fixed per case) have their
# own twins too, for twin_of on any instance.
for _cls, _build in (*attention.TWINS.items(), *recurrent.TWINS.items()):
    register_twin(_cls, _build)


def spec_for(cls: type) -> Spec:
    try:
        return _BY_CLASS[cls]
    except KeyError:
        raise KeyError(f"no verification spec for {cls.__name__}; add one to verification/specs/") from None


def spec_named(name: str) -> Spec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no verification spec named {name!r}; known: {sorted(_BY_NAME)}") from None


def all_specs() -> dict[str, Spec]:
    return dict(_BY_NAME)
