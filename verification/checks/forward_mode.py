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
using such Functions inside) when asked, ``checks=[..., "forward_mode"]``. The inputs' forward-mode
derivatives are checked, not a module's parameters'.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from ..context import Context
from ..report import CheckResult, error_line
from ..targets import AutogradTarget, Call, Gradients
from .finite_differences import LOCATE_LIMIT, _accurate_sum, compare


def defines_jvp(fn: object) -> bool:
    """Whether ``fn`` is a Function subclass with a ``jvp`` of its own."""
    return (
        isinstance(fn, type)
        and issubclass(fn, torch.autograd.Function)
        and getattr(fn, "jvp", None) is not torch.autograd.Function.jvp
    )


class _InputsOnly(AutogradTarget):
    """The target with its parameters left out: forward-mode tangents are given to the inputs."""

    def parameters(self) -> list[tuple[str, Tensor]]:
        return []


class Tangents:
    """Forward-mode derivatives of ``target`` at ``call``, projected on the upstream gradients ``grads``."""

    def __init__(self, target: AutogradTarget, call: Call, grads: Sequence[Tensor | None]) -> None:
        self.target, self.call = target, call
        self.weights = [None if g is None else g.detach().double() for g in grads]
        self.vectors: dict[int, Tensor] = {}

    def jvp(self, position: int, tangent: Tensor) -> list[Tensor | None]:
        """The outputs' tangents when input ``position`` moves along ``tangent`` (None: no tangent). The
        other differentiated inputs get zero tangents: a jvp written for torch.func.jvp, which gives every
        input one, may not take None for them."""
        args = self.call.fresh()
        with fwad.dual_level(), warnings.catch_warnings():
            # torch's first dual tensor loads its jvp decompositions through torch.jit.script, which warns.
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning
            )
            for i in self.call.diff:
                x = args[i]
                moved = tangent.to(device=x.device, dtype=x.dtype).reshape(x.shape) if i == position else None
                args[i] = fwad.make_dual(x, torch.zeros_like(x) if moved is None else moved)
            outputs = self.target._run(args, self.call)
            return [None if y is None else fwad.unpack_dual(y).tangent for y in outputs.leaves]

    def project(self, position: int, direction: Tensor) -> tuple[float, float]:
        """:math:`\\langle g, J d\\rangle` for ``d = direction``, with its summation's rounding bound."""
        terms = [
            torch.mul(t.double(), g).reshape(-1)
            for t, g in zip(self.jvp(position, direction), self.weights)
            if t is not None and g is not None
        ]
        if not terms:
            return 0.0, 0.0
        return _accurate_sum(torch.cat(terms).cpu())

    def element(self, position: int, index: int) -> float:
        if position in self.vectors:
            return float(self.vectors[position].reshape(-1)[index])
        tensor = self.call.args[position]
        unit = torch.zeros(tensor.numel(), dtype=torch.float64)
        unit[index] = 1.0
        return self.project(position, unit)[0]

    def vector(self, position: int) -> Tensor:
        """Every element's :math:`\\langle g, J e_j\\rangle`: one forward-mode evaluation per element."""
        tensor = self.call.args[position]
        values = torch.empty(tensor.numel(), dtype=torch.float64)
        for j in range(tensor.numel()):
            unit = torch.zeros(tensor.numel(), dtype=torch.float64)
            unit[j] = 1.0
            values[j] = self.project(position, unit)[0]
        self.vectors[position] = values.reshape(tensor.shape)
        return self.vectors[position]

    def elementwise(self, position: int) -> bool:
        return position in self.vectors


def check_forward_mode(ctx: Context) -> CheckResult:
    result = CheckResult("forward_mode")
    if not isinstance(ctx.pristine, AutogradTarget):
        result.skipped = f"a {ctx.pristine.kind} object has a backward only; forward mode is autograd's"
        return result
    has_jvp = defines_jvp(ctx.pristine.fn)
    if not has_jvp and not ctx.asked_for("forward_mode"):
        result.skipped = "the target defines no jvp; for a callable's forward mode: checks=[..., 'forward_mode']"
        return result
    if not ctx.call.diff:
        result.skipped = "no differentiated input: forward-mode tangents are given to inputs, not parameters"
        return result
    if ctx.target64 is None:
        result.inconclusive = f"{ctx.why_no_float64}: forward-mode derivatives are checked in float64"
        return result
    base = ctx.target64
    assert isinstance(base, AutogradTarget)
    target = _InputsOnly(base.copy().fn, base.name)
    call, grads = ctx.call64, ctx.grads64
    tangents = Tangents(target, call, grads)
    first = call.tensors()[0]
    try:
        tangents.project(call.diff[0], torch.ones(first.shape, dtype=torch.float64))
    except Exception as error:
        why = error_line(error)
        if has_jvp:
            result.fail(f"forward-mode evaluation (torch.autograd.forward_ad) raised {why}")
        else:
            result.skipped = f"the target has no forward-mode derivative: {why}"
        return result
    backward = base.copy().start(call).backward(grads)
    # Large tensors: the backward's gradients, which set the tolerances' scale only (probes project the jvp).
    inputs: list[Tensor | None] = [
        tangents.vector(i) if x.numel() <= LOCATE_LIMIT else (torch.zeros_like(x) if g is None else g)
        for i, x, g in zip(call.diff, call.tensors(), backward.inputs)
    ]
    compare(
        result, target, call, grads, Gradients(inputs, []), ctx.options, ctx.generator, ctx.upstream_drawn, tangents
    )
    if base.parameters() and result.ok:
        result.detail = (result.detail + "; " if result.detail else "") + (
            "the inputs' tangents only: the parameters' forward-mode derivatives are not checked"
        )
    return result
