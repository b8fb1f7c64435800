"""Every registered module keeps its input's dtype: in float16 and bfloat16 (on the CPU), its
outputs, the input gradients backward returns and its parameter gradients are all of that dtype,
never promoted to float32 by an internal tensor (a mask, a constant, a buffer).

Cases are drawn from the verification specs, so a new module is covered as soon as it is specced.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils import _pytree as pytree

from verification.composition import STACK_SPEC
from verification.specs import SPECS

FEW = settings(max_examples=5, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _forward_and_backward(built) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The floating outputs and the returned gradients of one forward and backward (a random
    upstream gradient per floating output; none for a 0-d loss)."""
    module, target = built.module, built.target
    out = module(*built.inputs, target) if target is not None else module(*built.inputs)
    leaves, structure = pytree.tree_flatten(out)
    if target is not None and isinstance(out, torch.Tensor) and out.dim() == 0:
        returned = module.backward()
    else:
        grads = [torch.randn_like(x) if isinstance(x, torch.Tensor) and x.is_floating_point() else None for x in leaves]
        upstream = pytree.tree_unflatten(grads, structure)
        returned = module.backward(*upstream) if isinstance(upstream, tuple) else module.backward(upstream)
    outputs = [x for x in leaves if isinstance(x, torch.Tensor) and x.is_floating_point()]
    return outputs, [g for g in pytree.tree_leaves(returned) if isinstance(g, torch.Tensor)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", [*SPECS, STACK_SPEC], ids=str)
@FEW
@given(data=st.data())
def test_outputs_and_gradients_keep_a_low_precision_dtype(spec, dtype, data):
    built = data.draw(spec.cases()).build(dtype, "cpu")
    outputs, gradients = _forward_and_backward(built)
    parameters = [(name, g) for name, _, g in built.module.named_param() if g is not None]
    assert outputs, f"{spec}: no floating output"
    for i, y in enumerate(outputs):
        assert y.dtype == dtype, f"{spec}: output {i} is {y.dtype}"
    for i, g in enumerate(gradients):
        if g.is_floating_point():
            assert g.dtype == dtype, f"{spec}: input gradient {i} is {g.dtype}"
    for name, g in parameters:
        assert g.dtype == dtype, f"{spec}: the gradient of {name} is {g.dtype}"
