"""Users' ops against their references: the spec's target and reference at its benchmark sizes.

``python -m benchmarks PATH`` discovers the specs in PATH (as ``python -m verification PATH``
does) and, for each size in a spec's ``benchmark``, times the target ("framework" in the JSON:
the hand-written side) and the reference ("torch") on the same inputs, parameters and upstream
gradients:

* ``forward``: a forward as in training (inputs and parameters require grad, so autograd
  records its graph; a framework-protocol module saves what its backward needs);
* ``forward+backward``: gradients reset, forward, backward with the same upstream gradient.

Before timing, both sides must agree: outputs, input and parameter gradients within the
dtype's tolerance of each other (relative to the largest reference value).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from verification.context import named
from verification.discovery import discover
from verification.spec import Spec
from verification.targets import AutogradTarget, Call, ProtocolTarget, Target, as_target
from verification.twins import copy_parameters

from .harness import BenchmarkMismatchError, relative_error, synchronized

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Relative to the largest reference value: two correct implementations differ by rounding in
# another order (float32: ~1e-6 over long sums), by a few units in the last place in half
# precision; a wrong formula differs by far more.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def benchmarked_specs(paths: Sequence[str]) -> list[Spec]:
    """The specs in ``paths`` that declare benchmark sizes."""
    return [found.spec for found in discover(paths) if found.spec.benchmark]


def _floating(tree: Any) -> list[Tensor]:
    return [x for x in pytree.tree_leaves(tree) if isinstance(x, Tensor) and x.is_floating_point()]


@dataclass
class Side:
    """One implementation, ready to be timed: its arguments (differentiated tensors require grad)."""

    target: Target
    args: list[Any]
    leaves: list[Tensor]

    def zero_grad(self) -> None:
        if isinstance(self.target, ProtocolTarget):  # the framework protocol accumulates into its own tensors
            self.target.zero_grad()
            return
        for tensor in [*self.leaves, *(p for _, p in self.target.parameters())]:
            tensor.grad = None

    def forward(self) -> Any:
        if isinstance(self.target, ProtocolTarget):
            with torch.no_grad():
                return self.target.module.forward(*self.args)
        assert isinstance(self.target, AutogradTarget)
        return self.target._call(*self.args)

    def backward(self, outputs: Any, grads: list[Tensor]) -> None:
        if isinstance(self.target, ProtocolTarget):
            with torch.no_grad():
                if self.target.takes_upstream:
                    self.target.module.backward(*grads)
                else:
                    self.target.module.backward()
            return
        torch.autograd.backward(_floating(outputs), grads)


@dataclass
class SpecPair:
    """A spec's target and its reference on the same inputs, parameters and upstream gradients."""

    spec: Spec
    size: str
    device: torch.device
    dtype: torch.dtype
    ours: Side
    theirs: Side
    grad_output: list[Tensor]
    call: Call

    @property
    def context(self) -> str:
        return f"{self.spec.name}[{self.size}] on {self.device} {str(self.dtype).removeprefix('torch.')}"

    def check(self) -> None:
        """Raise :class:`BenchmarkMismatchError` unless both sides give the same results.

        Both run through the verifier's adapters (one forward and backward, on copies), so every
        output, input gradient and parameter gradient is compared, by name.
        """
        results = []
        for side in (self.ours, self.theirs):
            target = side.target.copy()
            pass_ = target.start(self.call)
            upstream = iter(self.grad_output)
            grads = [next(upstream) if x is not None and x.is_floating_point() else None for x in pass_.outputs.leaves]
            results.append(named(pass_.outputs, pass_.backward(grads), self.call, target))
        ours, theirs = results
        for name, value in ours.items():
            expected = theirs.get(name)
            if expected is None:
                raise BenchmarkMismatchError(
                    f"{self.context}: the reference gives no {name} (it gives {sorted(theirs)})"
                )
            error = relative_error(value, expected)
            if not error <= TOLERANCE[self.dtype]:
                raise BenchmarkMismatchError(
                    f"{self.context}: {name} differs from the reference's: relative error {error:.3g} > tolerance "
                    f"{TOLERANCE[self.dtype]:g} (shapes {tuple(value.shape)} and {tuple(expected.shape)})"
                )

    def callable(self, impl: str, pass_: str) -> Callable[[], Any]:
        """The function timed for ``impl`` ("framework": the target, "torch": the reference) and ``pass_``."""
        side, grads = (self.ours if impl == "framework" else self.theirs), self.grad_output
        if pass_ == "forward":
            return synchronized(side.forward, self.device)

        def step() -> None:
            side.zero_grad()
            side.backward(side.forward(), grads)

        return synchronized(step, self.device)


def _side(target: Target, call: Call) -> Side:
    args = [a.detach().clone() if isinstance(a, Tensor) else a for a in call.args]
    leaves = [args[i] for i in call.diff]
    if not isinstance(target, ProtocolTarget):
        for leaf in leaves:
            leaf.requires_grad_(True)
        args = call.handed(args)  # complex inputs: views of their real leaves, made once
    return Side(target, args, leaves)


def build(spec: Spec, size: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> SpecPair:
    """The target and its reference at benchmark size ``size``, parameters copied, inputs drawn once."""
    if not spec.has_reference:
        raise ValueError(f"{spec.name}: a benchmark compares the target with its reference; the spec declares none")
    device = torch.device(device)
    built = spec.case_for_size(size).build(dtype=dtype, device=device)
    call = Call.of(built.inputs, built.target)
    ours = as_target(built.module, spec.name).copy()
    reference = spec.reference_for(built)
    if isinstance(reference, torch.nn.Module):
        reference = copy.deepcopy(reference).to(device=device, dtype=dtype)
        params = ours.parameters()
        if params:
            copy_parameters(params, reference, spec.name)
    theirs = as_target(reference, f"reference of {spec.name}")
    ours_side, theirs_side = _side(ours, call), _side(theirs, call)
    with torch.no_grad():
        outputs = _floating(theirs_side.forward())
    generator = torch.Generator().manual_seed(0)
    grad_output = [
        torch.randn(y.shape, generator=generator, dtype=torch.float64).to(device=device, dtype=y.dtype) for y in outputs
    ]
    return SpecPair(spec, size, device, dtype, ours_side, theirs_side, grad_output, call)


def shape_text(spec: Spec, size: str) -> str:
    kwargs = spec.benchmark[size]
    shapes = ", ".join(str(tuple(s)) for s in spec.case_for_size(size).shapes)
    return f"{spec.name}({', '.join(f'{k}={v}' for k, v in kwargs.items())}) inputs {shapes}"
