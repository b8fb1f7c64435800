"""``given_cases(spec)``: your own hypothesis tests over a spec's cases.

::

    @given_cases(LAYER_NORM, dtype=torch.float32)
    def test_the_output_has_zero_mean(built):
        y = built.module.apply(*built.inputs)
        ...

The test receives a :class:`~verification.spec.Built` (``module``: the target; ``inputs``: the
call's arguments; ``target``: a loss's target; ``case``: the drawn case, printed by hypothesis
on a failure), drawn and shrunk as the verifier draws them. Combine with ``@settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hypothesis import given

from .spec import Spec


def given_cases(
    spec: Spec, dtype: torch.dtype = torch.float64, device: str = "cpu"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a test to run over ``spec``'s drawn cases, built in ``dtype`` on ``device``."""
    return given(spec.cases().map(lambda case: case.build(dtype=dtype, device=device)))
