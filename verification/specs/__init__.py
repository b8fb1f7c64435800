"""One spec per registered module, one file per family (mirroring ``framework/``).

``SPECS`` lists them all; a test fails when a registered module has none.
"""

from __future__ import annotations

from typing import Any

from ..spec import Spec
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
    *shape.SPECS,
]

_BY_CLASS: dict[type, Spec] = {spec.module: spec for spec in SPECS}
# Twins of modules whose spec verifies an adapter (masks fixed, several outputs joined into one).
TWINS: dict[type, Any] = {**attention.TWINS, **recurrent.TWINS}
_BY_NAME: dict[str, Spec] = {spec.name: spec for spec in SPECS}


def register_spec(spec: Spec) -> Spec:
    """Add a spec for a user's own module class (its twin then works with twin_of)."""
    _BY_CLASS[spec.module] = spec
    _BY_NAME[spec.name] = spec
    return spec


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
