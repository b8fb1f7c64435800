r"""``forward_mode``: a Function's ``jvp`` (forward-mode derivatives) against finite differences.

A ``torch.autograd.Function`` may define ``jvp`` for forward-mode AD (``torch.func.jvp``,
``jacfwd``, ``torch.autograd.forward_ad``): the Jacobian times a tangent, :math:`J d`, code of its
own, separate from ``backward``, and as easily wrong. With the same random upstream gradients
``g`` as ``finite_differences``, :math:`\langle g, J d\rangle` is the directional derivative of
:math:`\phi = \sum_k \langle g_k, y_k\rangle` along ``d``, so it is judged by the same machinery and
error model: one tangent per element :math:`d = e_j` on small tensors (every element of tensors up to
``LOCATE_LIMIT`` elements is computed, so a failing probe names the element), random Gaussian
tangents on large ones (a failing probe halved to an element). Always in float64, on a float64 copy.

Runs by default for a Function that defines ``jvp``; for any other autograd target (a callable
using such Functions inside, a module) when asked, ``checks=[..., "forward_mode"]``. A module's
parameters get tangents too, swapped in as dual tensors (``torch.func.functional_call``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from ..context import Context
from ..report import CheckResult, error_line
from ..targets import AutogradTarget, Call, Gradients, Outputs, as_complex, real_leaves
from .finite_differences import LOCATE_LIMIT, _accurate_sum, absorb, compare, each_output_alone


def defines_jvp(fn: object) -> bool:
    """Whether ``fn`` is a Function subclass with a ``jvp`` of its own."""
    return (
        isinstance(fn, type)
        and issubclass(fn, torch.autograd.Function)
        and getattr(fn, "jvp", None) is not torch.autograd.Function.jvp
    )


class Tangents:
    """Forward-mode derivatives of ``target`` at ``call``, projected on the upstream gradients ``grads``,
    for each differentiated tensor by its name: ``input[i]``, or a parameter's (a module target's)."""

    def __init__(self, target: AutogradTarget, call: Call, grads: Sequence[Tensor | None]) -> None:
        self.target, self.call = target, call
        self.weights = [None if g is None else g.detach().double() for g in grads]
        self.inputs = dict(zip(call.names(), call.diff))
        module = target.fn if isinstance(target.fn, torch.nn.Module) else None
        self.module = module
        self.parameters = dict(target.autograd_parameters())  # complex ones complex
        self.tensors = {**dict(zip(call.names(), call.tensors())), **dict(target.parameters())}
        self.vectors: dict[str, Tensor] = {}

    def jvp(self, name: str, tangent: Tensor) -> list[Tensor | None]:
        """The outputs' tangents when ``name`` moves along ``tangent`` (real, its real view's shape for a
        complex tensor). Every other differentiated tensor gets a zero tangent: a jvp written for
        torch.func.jvp, which gives every input one, may not take None for them."""
        args = self.call.fresh()
        with fwad.dual_level(), warnings.catch_warnings():
            # torch's first dual tensor loads its jvp decompositions through torch.jit.script, which warns.
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning
            )
            for input_name, i in self.inputs.items():
                args[i] = _dual(args[i], tangent if input_name == name else None)
            if self.module is None or not self.parameters:
                outputs = self.target._run(args, self.call)
            else:  # the parameters as dual tensors too, swapped in for this call
                values = {n: _dual_parameter(p, tangent if n == name else None) for n, p in self.parameters.items()}
                result = torch.func.functional_call(self.module, values, tuple(self.call.handed(args)))
                outputs = Outputs.of(result, self.target.name)
                outputs.leaves, outputs.complex_ = real_leaves(outputs.leaves)
            return [None if y is None else fwad.unpack_dual(y).tangent for y in outputs.leaves]

    def project(self, name: str, direction: Tensor) -> tuple[float, float]:
        """:math:`\\langle g, J d\\rangle` for ``d = direction``, with its summation's rounding bound."""
        terms = [
            torch.mul(t.double(), g).reshape(-1)
            for t, g in zip(self.jvp(name, direction), self.weights)
            if t is not None and g is not None
        ]
        if not terms:
            return 0.0, 0.0
        return _accurate_sum(torch.cat(terms).cpu())

    def _unit(self, name: str, index: int) -> Tensor:
        unit = torch.zeros(self.tensors[name].numel(), dtype=torch.float64)
        unit[index] = 1.0
        return unit

    def element(self, name: str, index: int) -> float:
        if name in self.vectors:
            return float(self.vectors[name].reshape(-1)[index])
        return self.project(name, self._unit(name, index))[0]

    def vector(self, name: str) -> Tensor:
        """Every element's :math:`\\langle g, J e_j\\rangle`: one forward-mode evaluation per element."""
        tensor = self.tensors[name]
        values = [self.project(name, self._unit(name, j))[0] for j in range(tensor.numel())]
        self.vectors[name] = torch.tensor(values, dtype=torch.float64).reshape(tensor.shape)
        return self.vectors[name]

    def elementwise(self, name: str) -> bool:
        return name in self.vectors


def _dual(x: Tensor, tangent: Tensor | None) -> Tensor:
    """``x`` as a dual tensor with ``tangent`` (reshaped to it), or a zero tangent."""
    moved = torch.zeros_like(x) if tangent is None else tangent.to(device=x.device, dtype=x.dtype).reshape(x.shape)
    return fwad.make_dual(x.detach(), moved)


def _dual_parameter(p: Tensor, tangent: Tensor | None) -> Tensor:
    """A parameter as a dual tensor; a complex one through its real view, as it is checked."""
    if not p.is_complex():
        return _dual(p, tangent)
    return as_complex(_dual(torch.view_as_real(p.detach()), tangent))


def check_forward_mode(ctx: Context) -> CheckResult:
    result = CheckResult("forward_mode")
    if not isinstance(ctx.pristine, AutogradTarget):
        result.skipped = f"a {ctx.pristine.kind} object has a backward only; forward mode is autograd's"
        return result
    has_jvp = defines_jvp(ctx.pristine.fn)
    if not has_jvp and not ctx.asked_for("forward_mode"):
        result.skipped = "the target defines no jvp; for a callable's forward mode: checks=[..., 'forward_mode']"
        return result
    if ctx.target64 is None:
        result.inconclusive = f"{ctx.why_no_float64}: forward-mode derivatives are checked in float64"
        return result
    base = ctx.target64
    assert isinstance(base, AutogradTarget)
    call, grads = ctx.call64, ctx.grads64
    tangents = Tangents(base.copy(), call, grads)
    first = next(iter(tangents.tensors))  # an input's, or with none, a parameter's
    try:
        tangents.project(first, torch.ones(tangents.tensors[first].shape, dtype=torch.float64))
    except Exception as error:
        why = error_line(error)
        if has_jvp:
            result.fail(f"forward-mode evaluation (torch.autograd.forward_ad) raised {why}")
        else:
            result.skipped = f"the target has no forward-mode derivative: {why}"
        return result
    _compare(result, ctx, base, tangents, grads, grads)
    for index, alone in each_output_alone(grads):
        # Each output's tangent at its own scale, as finite_differences does for outputs of very
        # different scales (see each_output_alone); always, since the jvp is the code under test.
        part = CheckResult(result.name)
        zeroed = [g if g is None or i == index else torch.zeros_like(g) for i, g in enumerate(grads)]
        _compare(part, ctx, base, Tangents(base.copy(), call, alone), alone, zeroed)
        absorb(result, part, f"with output[{index}]'s upstream gradient alone (the others zero)")
    return result


def _compare(
    result: CheckResult,
    ctx: Context,
    base: AutogradTarget,
    tangents: Tangents,
    grads: Sequence[Tensor | None],
    backward_grads: Sequence[Tensor | None],
) -> None:
    """The jvp projected on ``grads`` against finite differences, merged into ``result``
    (``backward_grads``: the same upstream gradients as the backward takes them)."""
    call = ctx.call64
    names = list(tangents.tensors)
    large = [tangents.tensors[name].numel() > LOCATE_LIMIT for name in names]
    # Large tensors: the backward's gradients, which set the tolerances' scale only (probes project the jvp).
    scales = base.copy().start(call).backward(backward_grads).all() if any(large) else [None] * len(names)
    vectors: list[Tensor | None] = [
        (torch.zeros_like(tangents.tensors[name]) if g is None else g) if big else tangents.vector(name)
        for name, big, g in zip(names, large, scales)
    ]
    n_inputs = len(call.diff)
    gradients = Gradients(vectors[:n_inputs], vectors[n_inputs:])
    target = base.copy()  # shifted in place by the finite differences
    compare(result, target, call, grads, gradients, ctx.options, ctx.generator, ctx.upstream_drawn, tangents)
