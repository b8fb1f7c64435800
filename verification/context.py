"""The case context: everything the checks of one ``check_gradients`` call share.

It holds the target (a private copy), its arguments, the upstream gradients, the main
forward/backward in the caller's precision, and, computed once when a check first asks, the
float64 copy of the target (the ground truth), the reference in float64 and in the caller's
precision with the target's parameters copied in, and the measured rounding noise.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from . import error_model
from .report import GradientReport
from .targets import (
    AutogradTarget,
    Call,
    Gradients,
    Outputs,
    Pass,
    ProtocolTarget,
    Target,
    TargetError,
    as_target,
    overlap,
    plain,
)


@dataclass
class Options:
    """The options of :func:`check_gradients` besides the target, inputs, reference and order.

    Attributes:
        target: a loss's target, passed after the inputs and never differentiated.
        seed: seeds the random upstream gradients, probe directions and jitter.
        name: the name shown in the report (default: the target's class or function name).
        eps: relative finite-difference step (``h = eps * max(c, |x_j|)``, ``c`` the tensor's largest
            magnitude capped at 1).
        safety: the factor on every rounding and truncation estimate.
        full_jacobian_limit: tensors up to this size get one central difference per element;
            larger ones get ``probes`` random-direction probes (as many evaluations as 8
            elements; a failing probe then names the element: by comparing every element up to
            1024 of them, beyond by halving the probe's direction).
        probes: random directions per large tensor.
        nondet_tol: the largest difference two backward passes on the same inputs may show
            (0: bitwise equal). A kernel that accumulates with atomic adds declares its own.
        checks: run only these checks, a name or a list of names (default: every one that applies).
    """

    target: Any = None
    seed: int = 0
    name: str | None = None
    eps: float = 1e-4
    safety: float = 4.0
    full_jacobian_limit: int = 8
    probes: int = 8
    nondet_tol: float = 0.0
    checks: Sequence[str] | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> Options:
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            tensors = sorted(k for k in unknown if isinstance(kwargs[k], Tensor))
            hint = (
                f" ({', '.join(tensors)}: tensors are passed positionally, in the target's argument order; "
                "bind keyword-only ones with functools.partial or a lambda)"
                if tensors
                else " (keyword arguments are the checker's options; bind the target's own with "
                "functools.partial(target, ...) or a lambda)"
            )
            raise TypeError(f"unknown options {sorted(unknown)}; known: {sorted(known)}{hint}")
        if isinstance(kwargs.get("checks"), str):
            kwargs = {**kwargs, "checks": [kwargs["checks"]]}  # one check, named alone
        options = cls(**kwargs)
        options._validate()
        return options

    def _validate(self) -> None:
        """A clear error naming the option whose value cannot mean anything (a NaN tolerance would
        pass any difference; a string would fail deep inside a check)."""

        def number(name: str, value: Any, ok: Callable[[float], bool], what: str) -> None:
            real = isinstance(value, int | float) and not isinstance(value, bool)
            if not real:
                raise TypeError(f"{name} must be {what}, got {value!r}")
            if math.isnan(value) or not ok(value):
                raise ValueError(f"{name} must be {what}, got {value!r}")

        def integer(name: str, value: Any, low: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer >= {low}, got {value!r}")
            if value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        number("nondet_tol", self.nondet_tol, lambda v: v >= 0, "a number >= 0 (inf accepts any difference)")
        number("eps", self.eps, lambda v: 0 < v < math.inf, "a finite number > 0")
        number("safety", self.safety, lambda v: 0 < v < math.inf, "a finite number > 0")
        integer("seed", self.seed, -(2**63))
        integer("probes", self.probes, 1)
        integer("full_jacobian_limit", self.full_jacobian_limit, 0)
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {self.name!r}")
        if self.checks is not None and (
            not isinstance(self.checks, Sequence) or not all(isinstance(c, str) for c in self.checks)
        ):
            raise TypeError(f"checks must be a check's name or a list of names, got {self.checks!r}")


def _why_no_floating(inputs: Sequence[Any]) -> str:
    """What the caller most likely meant, when no input is a floating-point tensor."""
    nested = [x for x in inputs if isinstance(x, list | tuple | dict)]
    if any(isinstance(t, Tensor) for t in pytree.tree_leaves(nested)):
        return " (tensors inside a list, tuple or dict are not differentiated: pass each tensor as its own argument)"
    if not inputs:
        return " (no inputs were given: check_gradients(target, *inputs))"
    return ""


def collect(target: Target, call: Call, grads: Sequence[Tensor | None]) -> dict[str, Tensor]:
    """Outputs, input gradients and parameter gradients of one forward + backward on a copy of
    ``target`` (so its state, e.g. running statistics, stays as it was), named, float64."""
    target = target.copy()
    pass_ = target.start(call)
    return named(pass_.outputs, pass_.backward(grads), call, target)


def named(outputs: Outputs, gradients: Gradients, call: Call, target: Target) -> dict[str, Tensor]:
    """A pass's outputs and gradients by name, as float64 copies: never the target's own tensors
    (``.double()`` of a float64 tensor is that tensor), which a later call may overwrite."""
    result = {}
    for name, value in zip(outputs.names(), outputs.leaves):
        if value is not None and value.is_floating_point():
            result[name] = value.detach().to(torch.float64, copy=True)
    for name, g in zip(call.names(), gradients.inputs):
        if g is not None:
            result[f"{name}.grad"] = g.detach().to(torch.float64, copy=True)
    for (name, _), g in zip(target.parameters(), gradients.params):
        if g is not None:
            result[f"{name}.grad"] = g.detach().to(torch.float64, copy=True)
    return result


def generator_for(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one of the checker's own random streams (upstream gradients, noise
    probes, shuffles), seeded from ``seed`` and ``purpose`` through a hash: never the stream of
    ``torch.manual_seed(seed)`` itself. Drawn from that stream, the upstream gradients would equal
    inputs a user drew right after ``torch.manual_seed(0)``, and a gradient wrong only where they
    differ (a square Linear's weight gradient transposed, x^T g for g^T x, which is right whenever
    g = x) would pass."""
    digest = hashlib.blake2b(f"{seed}/{purpose}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def random_like(t: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(t.shape, generator=generator, dtype=torch.float64).to(device=t.device, dtype=t.dtype)


class Context:
    """One target, one call, one draw of upstream gradients: shared by every check."""

    def __init__(
        self,
        target: Any,
        inputs: Sequence[Any],
        reference: Any,
        grad_output: Any,
        order: int,
        options: Options,
    ) -> None:
        self.options = options
        self.order = order
        # Per differentiated tensor (named as the finite-difference check names it), the elements no
        # weighed output changes with at all, bit for bit at every step of its differences: filled by
        # that check, read by the comparisons of two computed gradients (see invariant_kept).
        self.invariant: dict[str, Tensor] = {}
        self.left_to_differences: dict[
            str, dict[str, int]
        ] = {}  # per check, per tensor: elements left (see invariant_kept)
        # The caller's object is never touched: a pristine copy is the source of every other
        # copy (float64, reference parameters), and the checks run on copies of it.
        self.pristine = as_target(target, options.name).copy()
        self.target = self.pristine.copy()
        self.name = self.target.name
        self.call = Call.of(inputs, options.target)
        if self.call.complex_ and not isinstance(self.pristine, AutogradTarget):
            first = min(self.call.complex_)
            raise TargetError(
                f"{self.name}: input[{first}] is complex, and a {self.pristine.kind} object's backward is "
                "hand-written: complex inputs are checked for autograd targets (a torch.autograd.Function, a "
                "callable), whose gradients follow torch's convention; check this module through real and "
                "imaginary parts as real inputs"
            )
        # A module whose inputs are all integers (Embedding's indices) is differentiated in its
        # parameters alone; they then set the precision checked.
        differentiated = self.call.tensors() or [p for _, p in self.pristine.parameters()]
        if not differentiated:
            raise ValueError(
                f"{self.name}: no floating-point tensor among the inputs or parameters, nothing to differentiate"
                + _why_no_floating(inputs)
            )
        for i, x in enumerate(inputs):
            if isinstance(x, Tensor) and x.is_meta:
                raise ValueError(
                    f"{self.name}: input[{i}] is on the meta device: it has a shape but no values, and "
                    "gradients are checked on values; make it on 'cpu' or 'cuda'"
                )
            if isinstance(x, Tensor) and x.layout != torch.strided:
                raise ValueError(
                    f"{self.name}: input[{i}] has layout {x.layout}; the verifier checks dense tensors only: "
                    "pass x.to_dense() (and densify inside the target if it needs the sparse form)"
                )
        dtypes = {a.dtype for a in differentiated}
        if len(dtypes) > 1:
            given = {inputs[i].dtype for i in self.call.diff} if self.call.tensors() else dtypes
            raise ValueError(
                f"{self.name}: the differentiated inputs mix dtypes {sorted(str(d) for d in given)}; "
                f"give them one floating-point dtype"
            )
        self.dtype = dtypes.pop()
        if self.call.tensors():
            self._refuse_parameters_of_another_precision()
        self.device = differentiated[0].device
        self.generator = generator_for(options.seed, "upstream gradients")
        self.reference = None if reference is None else _as_reference(reference, self.name)
        self.report = GradientReport(self.name, kind=self.target.kind, dtype=str(self.dtype).replace("torch.", ""))
        self.report.device = str(self.device)

        if self.call.complex_:
            listed = ", ".join(f"input[{i}]" for i in sorted(self.call.complex_))
            self.report.notes.append(
                f"{listed} {'is' if len(self.call.complex_) == 1 else 'are'} complex: checked through the real "
                f"view (torch.view_as_real: one more dimension of size 2, index 0 the real part, 1 the imaginary), "
                "against torch's convention for complex gradients, dL/dRe z + i dL/dIm z"
            )
        module = getattr(self.pristine, "fn", None)
        if isinstance(module, torch.nn.Module):
            complex_params = [n for n, p in module.named_parameters() if p.requires_grad and p.is_complex()]
            if complex_params:
                self.report.notes.append(
                    f"parameters {complex_params} are complex: checked through their real views, as complex inputs"
                )
        owner = getattr(target, "__self__", None)  # a bound method: model.forward
        if isinstance(owner, torch.nn.Module) and any(p.requires_grad for p in owner.parameters()):
            self.report.notes.append(
                f"the target is a method of a {type(owner).__name__}: that module's parameters are not "
                f"differentiated; pass the {type(owner).__name__} itself to check their gradients too"
            )
        passed_through = [
            f"input[{i}]"
            for i, x in enumerate(inputs)
            if isinstance(x, Tensor) and x.is_floating_point() and i not in self.call.diff
        ]
        if passed_through:
            self.report.notes.append(
                f"{', '.join(passed_through)}: floating-point but not requiring grad, passed through and not "
                "checked (only the inputs that require grad are differentiated; with none requiring grad, all are)"
            )
        self._note_aliases(inputs)
        for name, x in zip(self.call.names(), self.call.tensors()):
            if not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).reshape(-1).nonzero()[0])
                value = float(x.detach().reshape(-1)[bad])
                self.report.notes.append(
                    f"{name} holds non-finite values ({value} at flat index {bad}): no derivative is defined there, "
                    "so the checks that need one are inconclusive"
                )
        try:
            self.main = self.target.start(self.call)
        except Exception as error:
            hint = self._placement_hint()
            if hint:
                error.add_note(hint)
            raise
        self.outputs = self.main.outputs
        if isinstance(self.pristine, ProtocolTarget):
            read = self.pristine.gradient_read_by_forward(self.call)
            if read is not None:
                raise TargetError(
                    f"{self.name}: forward reads the tensor param() gives as the gradient of {read} (the outputs "
                    "change when it does): param() must return (parameter, gradient) pairs, in that order; "
                    "(gradient, parameter) would have every check zero the weights as gradients"
                )
            self._note_identity()
            unlisted = self.pristine.unlisted_tensors_read_by_forward(self.call)
            if unlisted:
                self.report.notes.append(
                    f"forward reads tensor attribute(s) that param() does not list: {', '.join(unlisted)}; their "
                    "gradients are not checked (list each in param() with its gradient to check it)"
                )
        self._note_captured(owner)
        self.grads = self._upstream(grad_output)
        # Drawn here (independent Gaussians), not given: the finite-difference error model may treat
        # sums weighted by them probabilistically.
        self.upstream_drawn = grad_output is None
        self._note_coarser_outputs()
        self.gradients = self.main.backward(self.grads)
        self.report.notes += self.gradients.notes
        if not any(t.numel() for t in [*self.call.tensors(), *(p for _, p in self.pristine.parameters())]):
            self.report.unverifiable = "every differentiated tensor is empty"
        elif not any(out is not None and out.numel() for out in self.outputs.leaves):
            self.report.unverifiable = "every output is empty, so no gradient flows back"

    def _note_coarser_outputs(self) -> None:
        """A note naming the differentiated outputs of lower precision than the inputs (a kernel that
        returns float32 from float64 inputs): the checks judge the case at the inputs' precision, and
        such an output's own rounding, far coarser, can fail even an exact backward."""
        names, leaves = self.outputs.names(), self.outputs.leaves
        coarse = [
            i
            for i, (y, g) in enumerate(zip(leaves, self.grads))
            if y is not None and g is not None and torch.finfo(y.dtype).eps > torch.finfo(self.dtype).eps
        ]
        if not coarse:
            return
        dtypes = {leaves[i].dtype for i in coarse}  # type: ignore[union-attr]
        lowest = max(dtypes, key=lambda d: torch.finfo(d).eps)
        shown = str(lowest).removeprefix("torch.")
        listed = ", ".join(f"{names[i]} ({str(leaves[i].dtype).removeprefix('torch.')})" for i in coarse)  # type: ignore[union-attr]
        checked, u = str(self.dtype).removeprefix("torch."), error_model.unit_roundoff(lowest)
        self.report.notes.append(
            f"{listed}: of lower precision than the {checked} inputs, which set the precision checked: the checks "
            f"allow for {checked} rounding, so its {shown} rounding (about {u:.0e} relative, divided by the step in a "
            f"finite difference) can fail even an exact backward; return the inputs' dtype, or give {shown} inputs "
            f"and a reference= (the same function in plain torch ops) to judge it in {shown} against the "
            "reference's float64 truth"
        )

    def _note_aliases(self, inputs: Sequence[Any]) -> None:
        """A note where two inputs, one of them differentiated, are the same tensor or views of one
        memory: every evaluation gets a copy of each, so a path that depends on the aliasing (a fast
        path taken when ``a is b``, a write into one read through the other) is not checked."""
        tensors = [(i, x) for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.numel()]
        for k, (i, x) in enumerate(tensors):
            for j, y in tensors[k + 1 :]:
                if (i in self.call.diff or j in self.call.diff) and (x is y or overlap(x, y)):
                    how = "are the same tensor" if x is y else "share memory (views of one tensor)"
                    self.report.notes.append(
                        f"input[{i}] and input[{j}] {how}: the checks pass each as a copy of its own, so a path of the "
                        "target that depends on the aliasing (a fast path for a is b, a write into one read through "
                        "the other) is not checked; to check it, pass the tensor once and alias it inside the "
                        "target (lambda x: f(x, x))"
                    )

    def _note_identity(self) -> None:
        """A note where a hand-written module without parameters returned an input itself,
        unchanged: the identity is then all there is to check (an empty container)."""
        if self.pristine.parameters() or getattr(self.pristine.module, "inplace", False) is True:
            return
        for i, arg in enumerate(self.main.args):
            given = self.call.args[i] if i < len(self.call.args) else None
            if not isinstance(arg, Tensor) or not isinstance(given, Tensor):
                continue
            if any(y is arg for y in self.outputs.leaves) and torch.equal(arg, given):
                self.report.notes.append(
                    f"{self.name}.forward returned its input[{i}] itself, unchanged, and it has no parameters: the "
                    "identity is all there is to check here (an empty container? give it children to check them)"
                )
                return

    def _note_captured(self, owner: Any) -> None:
        """A note naming the tensors requiring grad that the target reads besides its inputs (a
        closure's parameter): their gradients are not checked, and the way to check them."""
        captured = getattr(self.main, "captured", None)
        if captured is None:
            return
        skip = {id(p) for p in owner.parameters()} if isinstance(owner, torch.nn.Module) else set()
        tensors = [t for t in captured() if id(t) not in skip]  # a bound method's module has its own note
        if tensors:
            shown = ", ".join(f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in tensors[:4])
            more = f" and {len(tensors) - 4} more" if len(tensors) > 4 else ""
            self.report.notes.append(
                f"the outputs depend on {len(tensors)} tensor(s) requiring grad that are not inputs ({shown}{more}), "
                "read by the target from elsewhere (a closure, a global): their gradients are not checked; pass "
                "them as inputs (lambda x, w: f(x, w)) to check them too"
            )

    def _refuse_parameters_of_another_precision(self) -> None:
        """Inputs and parameters are differentiated together and judged in one precision: a float32
        module given float64 inputs (which it may cast to float32 inside) computes in float32, and
        judged as float64 its correct gradients would fail; judged as float32 a float64 module's
        would be held to a looser bar than its own."""
        for name, p in self.pristine.parameters():
            if p.is_floating_point() and p.dtype != self.dtype:  # an integer entry (a step count) is no weight
                raise ValueError(
                    f"{self.name}: its parameter {name!r} is {str(p.dtype).replace('torch.', '')} and the inputs "
                    f"{str(self.dtype).replace('torch.', '')}: inputs and parameters are differentiated together and "
                    f"checked in one precision; give the parameters the inputs' dtype (a torch.nn.Module: "
                    f"module.to({self.dtype})) or the inputs the parameters' (x.to({p.dtype}))"
                )

    def _placement_hint(self) -> str | None:
        """When the target's forward raised: the first parameter whose dtype or device differs from
        the inputs' (a float32 module given float64 inputs), the usual cause, named with the fix."""
        for name, p in self.target.parameters():
            if p.is_floating_point() and (p.dtype != self.dtype or p.device != self.device):
                return (
                    f"{self.name}: its parameter {name!r} is {str(p.dtype).replace('torch.', '')} on {p.device}, the "
                    f"inputs {str(self.dtype).replace('torch.', '')} on {self.device}: move one to the other "
                    f"(module.to(dtype=..., device=...) or the inputs' .to(...))"
                )
        return None

    # -- upstream gradients ---------------------------------------------------------------------------
    def _upstream(self, grad_output: Any) -> list[Tensor | None]:
        leaves = self.outputs.leaves
        floating = self.outputs.floating()
        complex_ = [i for i, x in enumerate(leaves) if x is not None and x.is_complex()]
        how = "a hand-written module's complex outputs are not checked: return torch.view_as_real(...) of it"
        if not floating:
            raise TargetError(
                f"{self.name}: forward returned no floating-point tensor to differentiate"
                + (f" (its output is complex; {how})" if complex_ else "")
            )
        names = self.outputs.names()
        for i in complex_:
            self.report.notes.append(
                f"{names[i]} is complex: it gets no upstream gradient, so the part of the gradients that flows "
                f"back from it is not checked ({how})"
            )
        if self.outputs.complex_:
            listed = ", ".join(names[i] for i in sorted(self.outputs.complex_))
            self.report.notes.append(
                f"{listed} {'is' if len(self.outputs.complex_) == 1 else 'are'} complex: checked through the real "
                "view, as complex inputs are"
            )
        if grad_output is None:
            drawn = [random_like(x, self.generator) if i in floating else None for i, x in enumerate(leaves)]
            return self._without_non_differentiable(drawn)
        grad_output = plain(grad_output)  # a dataclass, shaped as the output: its fields
        if isinstance(grad_output, tuple | list | dict):
            given, structure = pytree.tree_flatten(grad_output)
            if structure == self.outputs.spec:  # shaped as the output: leaf by leaf, its non-floating ones skipped
                given = [given[i] for i in floating]
        else:
            given = [grad_output]
        if len(given) != len(floating):
            raise ValueError(
                f"{self.name}: {len(given)} grad_output(s) given, but forward returned {len(floating)} "
                f"floating-point output(s)"
            )
        if all(g is None for g in given):
            raise ValueError(
                f"{self.name}: every grad_output is None: no gradient flows back, and nothing could be checked"
            )
        grads: list[Tensor | None] = [None] * len(leaves)
        for i, g in zip(floating, given):
            out = leaves[i]
            assert out is not None
            if g is None:  # an output that does not reach the loss, as in torch.autograd.backward: no upstream
                continue
            if i in self.outputs.complex_:  # checked as its real view: the upstream gradient too
                g = self._real_upstream(g, out, names[i])
            if isinstance(g, int | float):
                g = torch.full_like(out, float(g))
            if not isinstance(g, Tensor):
                raise TypeError(f"{self.name}: grad_output must be a Tensor or a number, got {type(g).__name__}")
            if g.is_complex():
                raise ValueError(
                    f"{self.name}: grad_output is complex ({g.dtype}), but the output it belongs to is real "
                    f"({out.dtype}): its imaginary part would be dropped; give a real tensor"
                )
            if not bool(torch.isfinite(g).all()):
                raise ValueError(
                    f"{self.name}: grad_output holds non-finite values (inf or NaN): every gradient it weighs would "
                    "be non-finite, and nothing could be judged; give finite upstream gradients"
                )
            if g.numel() == out.numel() == 1:
                g = g.reshape(out.shape)
            if tuple(g.shape) != tuple(out.shape):
                raise ValueError(
                    f"{self.name}: grad_output has shape {tuple(g.shape)}, but the output it belongs to has shape "
                    f"{tuple(out.shape)}"
                )
            grads[i] = g.detach().to(device=out.device, dtype=out.dtype)
        # (An output that does not require grad gets no upstream gradient anyway: its own note says so.)
        none = [
            i
            for i, g in zip(floating, given)
            if g is None
            and leaves[i].numel()
            and (leaves[i].requires_grad or not isinstance(self.target, AutogradTarget))  # type: ignore[union-attr]
        ]
        return self._refuse_zeros(self._without_non_differentiable(grads), none)

    def _refuse_zeros(self, grads: list[Tensor | None], none: list[int]) -> list[Tensor | None]:
        """A given upstream gradient of zeros multiplies away whatever backward computes for its output:
        with every one zero, every backward would pass (a ValueError); with some, the notes name the
        outputs whose part of the backward is not exercised, and those given None (``none``) too."""
        names = self.outputs.names()
        given = [i for i, g in enumerate(grads) if g is not None and g.numel()]
        zero = [i for i in given if not bool(grads[i].ne(0).any())]  # type: ignore[union-attr]
        if given and len(zero) == len(given):
            raise ValueError(
                f"{self.name}: every grad_output is all zeros: every gradient it weighs is zero whatever the "
                "backward computes, so every backward would pass; give nonzero upstream gradients (or none: "
                "grad_output=None draws random ones)"
            )
        for unused, what in ((zero, "an all-zero grad_output"), (none, "no grad_output (None)")):
            if unused:
                self.report.notes.append(
                    f"{', '.join(names[i] for i in unused)} {'gets' if len(unused) == 1 else 'get'} {what}: the part "
                    "of the backward that flows back from it is not exercised, so it is not checked; give it a "
                    "nonzero upstream gradient to check it"
                )
        return grads

    def _real_upstream(self, g: Any, out: Tensor, name: str) -> Any:
        """A complex output's upstream gradient (a complex tensor, or a number: its real part) as the
        real view the output is checked through; anything else is left to the general checks."""
        shape = tuple(out.shape[:-1])
        if isinstance(g, int | float) and not isinstance(g, bool):
            g = torch.full(shape, float(g), dtype=torch.float64)
            return torch.view_as_real(torch.complex(g, torch.zeros_like(g)))
        if not isinstance(g, Tensor):
            return g
        if not g.is_complex():
            raise ValueError(
                f"{self.name}: {name} is complex, but its grad_output is {str(g.dtype).replace('torch.', '')}: "
                "give a complex tensor of the output's shape (torch.complex(re, im))"
            )
        if g.numel() == 1 == math.prod(shape):
            g = g.reshape(shape)
        if tuple(g.shape) != shape:
            raise ValueError(
                f"{self.name}: grad_output has shape {tuple(g.shape)}, but the complex output it belongs to has "
                f"shape {shape}"
            )
        return torch.view_as_real(g.resolve_conj())

    def _without_non_differentiable(self, grads: list[Tensor | None]) -> list[Tensor | None]:
        """No upstream gradient for a floating-point output that does not require grad beside one that
        does (a Function's output marked non-differentiable, as torch.max's indices are): no gradient
        flows back from it, as ``torch.autograd.gradcheck`` has it. When none requires grad, the target
        cut autograd's path, and that fails (see :class:`~verification.targets.AutogradPass`)."""
        if not isinstance(self.target, AutogradTarget):
            return grads
        leaves, names = self.outputs.leaves, self.outputs.names()
        floating = self.outputs.floating()
        cut = [i for i in floating if not leaves[i].requires_grad]  # type: ignore[union-attr]
        if not cut or len(cut) == len(floating):
            return grads
        self.report.notes.append(
            f"{', '.join(names[i] for i in cut)} {'does' if len(cut) == 1 else 'do'} not require grad (marked "
            "non-differentiable, or detached): no gradient flows back from it, so it is left out of the check"
        )
        return [None if i in cut else g for i, g in enumerate(grads)]

    def recomputed(self, name: str, expected: Tensor) -> Tensor:
        """The tolerance between ``expected`` (named as in :attr:`noise`, float64 on the CPU) and the same
        float64 value computed another way (a batched pass, a missing gradient taken as zeros): the
        rounding bound at the case's gradient scale plus ``safety`` times the measured rounding noise."""
        u, safety = error_model.unit_roundoff(torch.float64), self.options.safety
        bound = error_model.rounding_tolerance(expected.abs(), self.n_terms, u, safety, self.scale)
        return bound + safety * self.noise_of_both(name, expected)

    def asked_for(self, check: str) -> bool:
        """Whether the caller named ``check`` in ``checks=`` (an opt-in check then runs on any target)."""
        return self.options.checks is not None and check in self.options.checks

    # -- the float64 truth ----------------------------------------------------------------------------
    @functools.cached_property
    def target64(self) -> Target | None:
        """The target copied into float64, or None (see :attr:`why_no_float64`)."""
        if self.dtype == torch.float64:
            return self.pristine.copy()
        try:
            copy64 = self.pristine.copy(torch.float64)
            bad = [n for n, p in copy64.parameters() if p.dtype != torch.float64]
            if bad:
                raise TargetError(f"parameters {bad} stay in another dtype after the conversion")
            outputs = copy64.forward(self.call64)
            low = [x.dtype for x in outputs.leaves if x is not None and x.is_floating_point()]
            if any(d != torch.float64 for d in low):
                raise TargetError(f"on float64 inputs it returns {sorted({str(d) for d in low})}")
        except Exception as error:
            self.why_no_float64 = f"the target does not run in float64 ({type(error).__name__}: {error})"
            return None
        return copy64

    why_no_float64 = ""

    @functools.cached_property
    def call64(self) -> Call:
        return self.call.cast(torch.float64)

    @functools.cached_property
    def grads64(self) -> list[Tensor | None]:
        return [None if g is None else g.double() for g in self.grads]

    @functools.cached_property
    def reference64(self) -> Target | None:
        return self._reference_in(torch.float64, self.target64)

    @functools.cached_property
    def reference_low(self) -> Target | None:
        """The reference in the caller's precision, with the caller's parameter values."""
        return self._reference_in(self.dtype, self.pristine)

    def _reference_in(self, dtype: torch.dtype, source: Target | None) -> Target | None:
        if self.reference is None:
            return None
        reference = self.reference.copy(dtype)
        if isinstance(reference, AutogradTarget) and isinstance(reference.fn, torch.nn.Module):
            reference.fn.to(device=self.device)  # a reference module built on the CPU follows the inputs
            # ... and the target's mode: a fresh torch.nn module is in train mode, the target may be in eval.
            owner = _module_of(source or self.pristine)
            if isinstance(getattr(owner, "training", None), bool):
                reference.fn.train(owner.training)
            params = (source or self.pristine).parameters()
            if params:
                try:
                    self._copy_parameters_into(reference, params, source or self.pristine, dtype)
                except TargetError as error:  # twin fails, naming it; the other checks go on without it
                    self.reference_problem = str(error)
                    return None
        return reference

    reference_problem = ""  # why a reference was given but cannot be used (its parameters do not fit)

    reference_names: dict[str, str] = {}  # noqa: RUF012  (set per instance by _reference_in)
    # Our parameter name -> the map from the reference's layout of it back to ours (see copy_parameters).
    reference_layouts: dict[str, Callable[[Tensor], Tensor]] = {}  # noqa: RUF012
    _transposed: tuple[str, ...] | None = None  # square matrices the reference holds transposed: decided once

    def _copy_parameters_into(
        self, reference: AutogradTarget, params: list[tuple[str, Tensor]], source: Target, dtype: torch.dtype
    ) -> None:
        """The target's parameters into the reference module, in the reference's layout.

        A matrix whose shape is the transpose of the reference's (a Linear's weight stored (in, out))
        goes in transposed; a square one cannot say, so the first time, if the two forwards disagree
        as copied and agree with every square matrix transposed, those stay transposed. Parameters
        that fit in no layout make the reference unusable (:class:`TargetError`)."""
        from .twins import copy_parameters

        square = [n for n, p in params if p.dim() == 2 and p.shape[0] == p.shape[1] > 1]
        layouts: dict[str, Callable[[Tensor], Tensor]] = {}
        try:
            if self._transposed is None:
                self._transposed = ()
                if square:
                    trial = reference.copy()
                    copy_parameters(params, trial.fn, self.name, _buffers(source), layouts={})
                    if not self._forwards_agree(source, trial, dtype):
                        trial = reference.copy()
                        copy_parameters(params, trial.fn, self.name, _buffers(source), layouts={}, transpose=square)
                        if self._forwards_agree(source, trial, dtype):
                            self._transposed = tuple(square)
            self.reference_names = copy_parameters(
                params, reference.fn, self.name, _buffers(source), layouts=layouts, transpose=self._transposed
            )
        except ValueError as error:
            raise TargetError(f"the reference cannot take the target's parameters: {error}") from None
        if layouts and not self.reference_layouts:
            theirs = dict(reference.fn.named_parameters())
            described = ", ".join(
                f"{n} {tuple(p.shape)} as {self.reference_names[n]} {tuple(theirs[self.reference_names[n]].shape)}"
                + (
                    " (transposed)"
                    if _transposed_into(p, theirs[self.reference_names[n]], n in self._transposed)
                    else ""
                )
                for n, p in params
                if n in layouts
            )
            self.report.notes.append(
                f"twin: parameters held in another layout than the reference's were copied in its layout, and "
                f"their gradients compared in the target's: {described}"
            )
        self.reference_layouts = layouts

    def _forwards_agree(self, source: Target, reference: AutogradTarget, dtype: torch.dtype) -> bool:
        """Whether the target and the reference (parameters copied) give about the same outputs."""
        call = self.call64 if dtype == torch.float64 else self.call
        try:
            with torch.no_grad():
                ours, theirs = source.copy().forward(call).leaves, reference.forward(call).leaves
        except Exception:
            return True  # nothing learnt here: the checks will meet the error and report it
        if len(ours) != len(theirs):
            return False
        loose = 1e-6 if dtype == torch.float64 else 1e-2
        for a, b in zip(ours, theirs):
            if a is None or b is None or a.shape != b.shape:
                if a is not b:
                    return False
                continue
            a, b = a.detach().double().cpu(), b.detach().double().cpu()
            if not torch.allclose(a, b, rtol=loose, atol=loose * float(b.abs().max()) if b.numel() else 0.0):
                return False
        return True

    @functools.cached_property
    def truth(self) -> dict[str, Tensor]:
        """Float64 outputs and gradients: the target's own when it runs in float64, else the reference's."""
        if self.target64 is not None:
            return collect(self.target64, self.call64, self.grads64)
        if self.reference64 is not None:
            return self.rename(collect(self.reference64, self.call64, self.grads64))
        return {}

    def rename(self, theirs: dict[str, Tensor]) -> dict[str, Tensor]:
        """A reference's results under the target's parameter names, in the target's layouts."""
        back = {f"{t}.grad": f"{o}.grad" for o, t in self.reference_names.items()}
        renamed = {}
        for key, value in theirs.items():
            key = back.get(key, key)
            layout = self.reference_layouts.get(key.removesuffix(".grad")) if key.endswith(".grad") else None
            renamed[key] = value if layout is None else layout(value)
        return renamed

    @functools.cached_property
    def n_terms(self) -> int:
        sizes = [x.numel() for x in self.outputs.leaves if x is not None]
        sizes += [x.numel() for x in self.call.tensors()] + [p.numel() for _, p in self.target.parameters()]
        return max(sizes)

    @functools.cached_property
    def scale(self) -> float:
        """The largest mean magnitude among upstream gradients, outputs and gradients: a normwise floor."""
        values = [*(g for g in self.grads if g is not None), *self.truth.values()]
        return max((float(t.detach().double().abs().mean()) for t in values if t.numel()), default=0.0)

    @functools.cached_property
    def noise(self) -> dict[str, Tensor]:
        """Measured float64 rounding noise of the reference (or of the target without one)."""
        base = self.reference64 if self.reference64 is not None else self.target64
        if base is None:
            return {}
        rename = self.rename if base is self.reference64 else (lambda d: d)
        generator = generator_for(self.options.seed, "rounding noise")

        def run64(size: float, gen: torch.Generator | None) -> dict[str, Tensor]:
            return rename(self.jittered_collect(base, self.call64, self.grads64, size, gen))

        def run32() -> dict[str, Tensor]:
            low, call = base.copy(torch.float32), self.call64.cast(torch.float32)
            pass_ = low.start(call)
            if pass_.outputs.random:  # float32 draws other random numbers: not the same computation
                return {}
            return rename(
                named(
                    pass_.outputs, pass_.backward([None if g is None else g.float() for g in self.grads64]), call, low
                )
            )

        try:
            return error_model.rounding_noise(run64, run32, generator)
        except Exception as error:  # a reference that cannot be copied or jittered: the rounding bound alone
            self.report.notes.append(
                f"rounding noise not measured ({type(error).__name__}: {error}); "
                "tolerances are the rounding bound alone"
            )
            return {}

    def target32_pass(self) -> Pass | None:
        """A float32 copy of the float64 target after one forward at the case (precision scaling
        measures the target's own rounding with it), or None where the target cannot run in float32
        or draws random numbers (float32 would draw others: not the same computation)."""
        if self.target64 is None:
            return None
        try:
            pass_ = self.target64.copy(torch.float32).start(self.call64.cast(torch.float32))
        except Exception:
            return None
        return None if pass_.outputs.random else pass_

    @functools.cached_property
    def target_noise(self) -> dict[str, Tensor]:
        """The target's own float64 rounding noise at the case, by precision scaling (its float32 copy
        against its float64 results), where :attr:`noise` is the reference's: two implementations of
        a gradient that vanishes by cancellation each leave their own residue (one may sum exactly
        where the other does not), so a comparison between them allows both. Empty without a
        reference (:attr:`noise` is the target's then), or where the target cannot run in float32 or
        draws random numbers (float32 would draw others)."""
        if self.reference64 is None:
            return {}
        pass_ = self.target32_pass()
        if pass_ is None:
            return {}
        try:
            grads = [None if g is None else g.float() for g in self.grads64]
            results = named(pass_.outputs, pass_.backward(grads), pass_.call, pass_.target)
        except Exception:  # no float32 backward: the reference's noise alone
            return {}
        base = self.truth  # the target's own float64 results
        return {
            name: error_model.precision_scaled(value, base[name])
            for name, value in results.items()
            if name in base and value.shape == base[name].shape
        }

    def invariant_kept(self, check: str, name: str, value: Tensor, expected: Tensor) -> Tensor:
        """``expected`` with ``value`` at the elements of the gradient of ``name`` (a differentiated
        tensor) no output changes with at all (:attr:`invariant`): left to the finite-difference
        check, which judged them against its differences of 0. A gradient there is zero, each
        computation's value the rounding residue of terms cancelling inside it, at a scale nothing
        outside shows (a bias in front of a BatchNorm over a constant channel: terms 300 times the
        upstream gradient), so two computations
        compared there differ by residue, not error. The report notes it."""
        mask = self.invariant.get(name)
        if mask is None or mask.shape != expected.shape or not bool(mask.any()):
            return expected
        left = self.left_to_differences.setdefault(check, {})
        before = self._left_note(check, left) if left else None
        left[name] = int(mask.sum())
        note = self._left_note(check, left)
        if before in self.report.notes:
            self.report.notes[self.report.notes.index(before)] = note
        else:
            self.report.notes.append(note)
        value = value.detach().to(dtype=expected.dtype, device=expected.device).reshape(expected.shape)
        return torch.where(mask.to(expected.device), value, expected)

    @staticmethod
    def _left_note(check: str, left: dict[str, int]) -> str:
        counts = ", ".join(f"{count} of {name}" for name, count in left.items())
        return (
            f"{check}: gradient elements that no output changes with at all (bit for bit, at every "
            f"finite-difference step; {counts}) are left to finite_differences, which judged them: there the "
            "gradient is zero, and each computation's value is rounding residue"
        )

    def noise_of_both(self, name: str, like: Tensor) -> Tensor:
        """:func:`~verification.error_model.estimated` noise of ``name``: the reference's plus the target's own."""
        return error_model.estimated(self.noise, name, like) + error_model.estimated(self.target_noise, name, like)

    def jittered_collect(
        self, base: Target, call: Call, grads: Sequence[Tensor | None], size: float, gen: torch.Generator | None
    ) -> dict[str, Tensor]:
        """:func:`collect` on a copy of ``base`` with inputs, parameters and grads moved by relative ``size``."""
        if not size or gen is None:
            return collect(base, call, grads)
        moved = base.copy()
        with torch.no_grad():
            for _, p in moved.parameters():
                p.copy_(error_model.jitter(p, gen, size))
        jittered_call = call.with_tensors([error_model.jitter(x, gen, size) for x in call.tensors()])
        return collect(moved, jittered_call, [error_model.jitter(g, gen, size) for g in grads])

    def rounding(self, expected: Tensor, u: float | None = None) -> Tensor:
        u = error_model.unit_roundoff(torch.float64) if u is None else u
        return error_model.rounding_tolerance(expected, self.n_terms, u, self.options.safety, self.scale)


def _module_of(target: Target | None) -> Any:
    """The object a target wraps: a protocol target's module, or an autograd target's callable (a
    torch.nn.Module among them); by ``is None``, since an empty Sequential is falsy."""
    module = getattr(target, "module", None)
    return getattr(target, "fn", None) if module is None else module


def _buffers(source: Target | None) -> list[tuple[str, Tensor]]:
    module = _module_of(source)
    if module is not None and callable(getattr(module, "named_buffers", None)):
        return list(module.named_buffers())
    return []


def _transposed_into(ours: Tensor, theirs: Tensor, square_transposed: bool) -> bool:
    """Whether ``ours`` went into ``theirs`` transposed (see :func:`verification.twins.copy_parameters`)."""
    if ours.dim() != 2 or theirs.shape != ours.mT.shape:
        return False
    return square_transposed or ours.shape[0] != ours.shape[1]


def _as_reference(reference: Any, name: str) -> AutogradTarget:
    if isinstance(reference, type) and issubclass(reference, torch.autograd.Function):
        return AutogradTarget(reference, f"reference of {name}")
    if isinstance(reference, type) and issubclass(reference, torch.nn.Module):
        # Called on the inputs, the class would construct a module from them, and fail or return one.
        raise TargetError(
            f"{name}: reference is the class {reference.__name__}, not a module: pass an instance, "
            f"{reference.__name__}(...) (its parameters are then set to the target's)"
        )
    if not callable(reference):
        raise TargetError(f"{name}: reference must be a callable or a torch.nn.Module, got {type(reference).__name__}")
    return AutogradTarget(reference, f"reference of {name}").copy()
