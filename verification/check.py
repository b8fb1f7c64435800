r"""Gradient checks of one module on concrete inputs.

The function under test is the scalar :math:`\phi(x, \theta) = \langle g, f(x, \theta)\rangle`
with a random upstream gradient ``g`` (for a reduced loss a random scalar, with ``reduction='none'``
a random tensor of the loss's shape), so ``backward(g)`` must equal :math:`\nabla\phi`.

Checks
------
``finite_differences``
    Central differences of the module's *own* forward, for every input and every tensor
    that ``param()`` returns. Small tensors: the full gradient, one element at a time. Large
    tensors: random-direction probes, :math:`\langle u, \mathrm{backward}(g)\rangle` against
    :math:`(\phi(x + h u) - \phi(x - h u)) / 2h` with Gaussian ``u``; a single wrong element
    ``j`` shifts every probe by :math:`u_j e_j`, so a handful of probes catches it unless
    all the :math:`|u_j|` are tiny.
``twin``
    Forward, input gradients, parameter gradients and buffers (running statistics) against
    ``torch.autograd`` on the ``torch.nn`` twin with the same parameters and the same ``g``.
``linearity``
    ``backward(a g1 + b g2) == a backward(g1) + b backward(g2)``: a backward that ignores or
    squares its upstream gradient fails here even when ``g`` happens to be benign.
``accumulation``
    Two backward calls add their parameter gradients; ``zero_grad()`` resets them to zero;
    forward and backward leave the inputs, the target and ``grad_output`` untouched, and a
    second backward gives the same input gradient (saved tensors were not modified).
    A module whose ``inplace`` attribute is ``True`` (torch's in-place activations) overwrites
    its input by contract: every forward of every check is handed a fresh copy of the inputs
    instead, so its backward is checked on what it saved before overwriting; that it does
    overwrite and return its input is a forward property, left to the spec's ``semantics``.

Tolerance model (float64)
-------------------------
Each numeric derivative is Richardson-extrapolated from central differences at steps ``h``
and ``h/2`` (``h = eps * max(1, |x_j|)``, ``eps = 1e-4``): :math:`R = (4 D(h/2) - D(h)) / 3`,
whose truncation error is :math:`O(h^4)`. Its two error sources are bounded separately:

* rounding: an evaluation of :math:`\phi` carries an absolute error
  :math:`\delta \le u \cdot n \cdot S` where ``u`` is the unit round-off, ``n`` the number of
  terms in the longest accumulation (bounded by the largest tensor's size) and
  :math:`S = \sum_i |g_i| |y_i|`; it reaches ``R`` amplified by at most :math:`3\delta/h`;
* truncation: estimated from the computation itself as :math:`|R - D(h/2)|`, which
  over-estimates the error left in ``R``.
* stepping: ``x + h`` is rounded, so the step actually taken is off by up to ``u |x|``, a
  relative error of at most ``3 u |x| / h`` in ``R``.

The tolerance of element ``j`` is ``safety * (3 delta / h + |R - D(h/2)| + 3 u |x_j| |R| / h)
+ safety * u * n * (|a_j| + max(mean|a|, scale))`` (the last term: the analytic gradient's own
rounding, floored at the case's gradient scale). With ``eps = 1e-4`` these
terms are ~1e-9 of the gradient's scale or less, so a gradient wrong by one part in a
million, or in a single element, fails.

Comparisons of two float64 computations of the same quantity (twin, linearity, accumulation)
allow ``safety * (u * n * (|b_j| + max(mean|b|, scale)) + e_j + mean(e))``, where ``e`` is a
measured estimate of the reference's own rounding error (see :func:`_precision_estimate`:
float32-vs-float64 precision scaling and ulp-sized jitter), which brings in the conditioning
of the computation (cancellations) that a plain rounding bound ignores. ``scale`` is the
largest mean magnitude among ``grad_output``, the output and the gradients: a normwise floor.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

CHECKS = ("finite_differences", "twin", "linearity", "accumulation")


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


@dataclass
class CheckResult:
    """The verdict of one check: the worst element over every tensor it compared."""

    name: str
    ok: bool = True
    worst_error: float = 0.0
    worst_ratio: float = 0.0
    detail: str = ""
    skipped: str = ""

    def merge(self, tensor_name: str, analytic: Tensor, expected: Tensor, tolerance: Tensor, what: str) -> None:
        """Compare ``analytic`` to ``expected`` elementwise under ``tolerance``; keep the worst."""
        analytic = analytic.detach().double().cpu().reshape(expected.shape)
        expected = expected.detach().double().cpu()
        tolerance = tolerance.detach().double().cpu().expand(expected.shape)
        if expected.numel() == 0:
            return
        finite = torch.isfinite(analytic)
        if not bool(finite.all()):
            index = int((~finite).reshape(-1).nonzero()[0])
            self._record(tensor_name, expected.shape, index, analytic, expected, tolerance, math.inf, math.inf, what)
            return
        error = (analytic - expected).abs()
        scale = expected.abs().mean().item()
        # Relative to the element, floored at the tensor's mean magnitude and at the tolerance
        # (an error below what the precision can resolve is not reported as a large one).
        floor = torch.clamp(tolerance, min=max(scale, torch.finfo(torch.float64).tiny))
        relative = error / torch.maximum(expected.abs(), floor)
        ratio = error / torch.clamp(tolerance, min=torch.finfo(torch.float64).tiny)
        index = int(ratio.reshape(-1).argmax())
        worst_ratio = float(ratio.reshape(-1)[index])
        worst_error = float(relative.max())
        self.worst_error = max(self.worst_error, worst_error)
        if worst_ratio > self.worst_ratio or (worst_ratio > 1 and self.ok):
            self._record(
                tensor_name, expected.shape, index, analytic, expected, tolerance, worst_ratio, worst_error, what
            )

    def _record(
        self,
        tensor_name: str,
        shape: torch.Size,
        index: int,
        analytic: Tensor,
        expected: Tensor,
        tolerance: Tensor,
        ratio: float,
        error: float,
        what: str,
    ) -> None:
        self.worst_ratio = max(self.worst_ratio, ratio)
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(index), shape)) if len(shape) else ()
        a = float(analytic.reshape(-1)[index])
        e = float(expected.reshape(-1)[index])
        t = float(tolerance.reshape(-1)[index])
        self.detail = (
            f"{tensor_name}{list(where)}: {what[0]} {a:.17g} vs {what[1]} {e:.17g}, "
            f"|difference| {abs(a - e):.3g}, relative error {error:.3g}, tolerance {t:.3g}"
        )
        if ratio > 1:
            self.ok = False

    def fail(self, detail: str) -> None:
        self.ok = False
        self.worst_ratio = math.inf
        self.detail = detail

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        verdict = "ok" if self.ok else "FAILED"
        text = (
            f"{self.name}: {verdict} (worst relative error {self.worst_error:.3g}, "
            f"error/tolerance {self.worst_ratio:.3g})"
        )
        return text + (f"\n    worst: {self.detail}" if self.detail else "")


@dataclass
class GradientReport:
    """Per-check results for one module on one set of inputs. ``str()`` explains failures."""

    module: str
    checks: list[CheckResult] = field(default_factory=list)
    case: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __getitem__(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def __str__(self) -> str:
        head = f"{self.module}: {'all gradient checks passed' if self.ok else 'GRADIENT CHECK FAILED'}"
        if self.case:
            head += f"\n  case: {self.case}"
        return head + "".join(f"\n  {c}" for c in self.checks)


# -- adapters for any object with forward / backward / param ---------------------------------------
def _named_params(module: Any) -> list[tuple[str, Tensor, Tensor]]:
    if hasattr(module, "named_param"):
        return list(module.named_param())
    return [(f"param[{i}]", p, g) for i, (p, g) in enumerate(module.param())]


def _named_buffers(module: Any) -> list[tuple[str, Tensor]]:
    return list(module.named_buffers()) if hasattr(module, "named_buffers") else []


def _zero_grad(module: Any) -> None:
    if hasattr(module, "zero_grad"):
        module.zero_grad()
    else:
        for _, g in module.param():
            g.zero_()


def _in_place(module: Any) -> bool:
    """Whether ``module`` overwrites its input (torch's ``inplace=True``), in itself or a child."""
    stack = [module]
    while stack:
        m = stack.pop()
        if getattr(m, "inplace", False) is True:
            return True
        if hasattr(m, "children"):
            stack.extend(m.children())
    return False


def _fresh(module: Any, inputs: Sequence[Tensor]) -> list[Tensor]:
    """The inputs, copied for a module that overwrites them, so that every forward sees the same values."""
    return [x.clone() for x in inputs] if _in_place(module) else list(inputs)


def _generators(module: Any) -> list[torch.Generator]:
    """Random number generators a module (or its children) draws from, e.g. Dropout's."""
    found, stack = [], [module]
    while stack:
        m = stack.pop()
        gen = getattr(m, "__dict__", {}).get("generator")
        if isinstance(gen, torch.Generator):
            found.append(gen)
        if hasattr(m, "children"):
            stack.extend(m.children())
    return found


class _Harness:
    """Runs forward and backward of one module on fixed inputs, with random state pinned."""

    def __init__(self, module: Any, inputs: Sequence[Tensor], target: Tensor | None) -> None:
        self.module = module
        self.inputs = list(inputs)
        self.target = target
        self.generators = [(gen, gen.get_state()) for gen in _generators(module)]

    @property
    def is_loss(self) -> bool:
        return self.target is not None

    def forward(self, inputs: Sequence[Tensor] | None = None) -> Tensor:
        for gen, state in self.generators:
            gen.set_state(state)  # the same dropout mask on every evaluation
        inputs = _fresh(self.module, self.inputs if inputs is None else inputs)
        if self.is_loss:
            return self.module.forward(*inputs, self.target)
        return self.module.forward(*inputs)

    def backward(self, grad_output: Tensor) -> list[Tensor]:
        result = self.module.backward(grad_output)
        if isinstance(result, Tensor):
            return [result]
        return list(result)

    def phi(self, output: Tensor, grad_output: Tensor) -> float:
        return float((output.double() * grad_output.double()).sum())


def _random_like(t: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(t.shape, generator=generator, dtype=torch.float64).to(device=t.device, dtype=t.dtype)


def _rounding_tolerance(reference: Tensor, n_terms: int, u: float, tol: Tolerances) -> Tensor:
    """``safety * u * n * (|ref_j| + max(mean|ref|, scale))``: the rounding bound of an accumulation
    of ``n`` terms, elementwise, floored normwise at the case's gradient scale (``tol.scale``)."""
    reference = reference.detach().double().cpu().abs()
    mean = float(reference.mean()) if reference.numel() else 0.0
    return tol.safety * u * n_terms * (reference + max(mean, tol.scale))


@dataclass
class Tolerances:
    """Knobs of the error model (see the module docstring)."""

    eps: float = 1e-4
    safety: float = 4.0
    full_jacobian_limit: int = 64
    probes: int = 8
    # The largest mean magnitude among grad_output, the output and the gradients, set per case:
    # a backward pass's rounding errors are relative to the gradients flowing through it, so a
    # gradient that vanishes in exact arithmetic (BatchNorm after BatchNorm) carries noise at
    # that scale. A floor of the comparison, not a knob.
    scale: float = 0.0

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> Tolerances:
        known = set(cls.__dataclass_fields__) - {"scale"}  # scale is measured per case, not chosen
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"unknown tolerance options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**kwargs)


def _collect(module: Any, inputs: Sequence[Tensor], target: Tensor | None, grad_output: Tensor) -> dict[str, Tensor]:
    """Output, input gradients and parameter gradients of a framework-style module."""
    _zero_grad(module)
    inputs = _fresh(module, inputs)
    out = module.forward(*inputs, target) if target is not None else module.forward(*inputs)
    grads = module.backward(grad_output)
    grads = [grads] if isinstance(grads, Tensor) else list(grads)
    result = {"output": out.detach().clone()}
    result.update({f"input[{i}].grad": g.detach().clone() for i, g in enumerate(grads) if g is not None})
    result.update({f"{n}.grad": g.detach().clone() for n, _, g in _named_params(module)})
    return result


class _ShapeMismatchError(ValueError):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__(f"the reference's output has shape {shape}")
        self.shape = shape


def _collect_torch(
    reference: Any, inputs: Sequence[Tensor], target: Tensor | None, grad_output: Tensor
) -> dict[str, Tensor]:
    """The same quantities from a torch reference through ``torch.autograd``."""
    leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    with torch.enable_grad():
        out = reference(*leaves, target) if target is not None else reference(*leaves)
        if out.shape != grad_output.shape:
            raise _ShapeMismatchError(tuple(out.shape))
        out.backward(grad_output)
    result = {"output": out.detach()}
    differentiable = [leaf for leaf in leaves if leaf.is_floating_point()]
    result.update(
        {
            f"input[{i}].grad": leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
            for i, leaf in enumerate(differentiable)
        }
    )
    if isinstance(reference, torch.nn.Module):
        result.update(
            {
                f"{n}.grad": p.grad if p.grad is not None else torch.zeros_like(p)
                for n, p in reference.named_parameters()
            }
        )
    return result


def _jitter(x: Tensor, generator: torch.Generator, size: float) -> Tensor:
    """``x`` with each element moved by a random relative ``size`` (a few units in the last place)."""
    if not x.is_floating_point():
        return x
    sign = torch.randint(0, 2, x.shape, generator=generator).to(device=x.device, dtype=x.dtype) * 2 - 1
    return x * (1 + size * sign)


def _jittered_copy(module: Any, generator: torch.Generator, size: float) -> Any:
    twin = copy.deepcopy(module)
    params = twin.parameters() if isinstance(twin, torch.nn.Module) else [p for _, p, _ in _named_params(twin)]
    with torch.no_grad():
        for p in params:
            p.copy_(_jitter(p, generator, size))
    return twin


def _precision_estimate(
    module: Any, reference: Any, inputs: Sequence[Tensor], target: Tensor | None, grad_output: Tensor
) -> dict[str, Tensor]:
    """Estimated float64 rounding error of each output and gradient element, conditioning included.

    Two estimates, the larger kept elementwise:

    * precision scaling: rounding errors scale with the unit round-off, so the discrepancy
      between a float32 and a float64 evaluation, times u64 / u32, estimates the float64
      evaluation's own error;
    * jitter: two float64 evaluations on inputs, parameters and ``grad_output`` moved by a
      few units in the last place; their spread measures how rounding noise propagates
      (it catches quantities that are exactly zero in exact arithmetic, where float32 can be
      exactly zero by luck).

    The reference implementation (torch) is used when given, so a bug of the module under
    test cannot widen its own tolerance; otherwise copies of the module. Empty when neither
    runs (the tolerance then rests on the rounding bound alone).
    """
    if grad_output.dtype != torch.float64:
        return {}
    scale = unit_roundoff(torch.float64) / unit_roundoff(torch.float32)
    jitter = 8 * unit_roundoff(torch.float64)
    generator = torch.Generator().manual_seed(1234)
    cast = [x.float() if x.is_floating_point() else x for x in inputs]
    target32 = target.float() if target is not None and target.is_floating_point() else target
    collect = _collect_torch if reference is not None else _collect
    base = reference if reference is not None else module
    try:
        ref64 = collect(copy.deepcopy(base), inputs, target, grad_output)
        if reference is not None:
            low = copy.deepcopy(reference).float()
        else:
            low = copy.deepcopy(module)
            low.to(dtype=torch.float32)
        ref32 = collect(low, cast, target32, grad_output.float())
        jittered = [
            collect(
                _jittered_copy(base, generator, jitter),
                [_jitter(x, generator, jitter) for x in inputs],
                target,
                _jitter(grad_output, generator, jitter),
            )
            for _ in range(2)
        ]
    except Exception:  # a module that cannot run in float32 or be copied: the rounding bound alone
        return {}
    estimate = {}
    for name, value in ref64.items():
        value = value.double()
        parts = [(run[name].double() - value).abs() for run in jittered if name in run]
        if name in ref32:
            parts.append((ref32[name].double() - value).abs() * scale)
        if parts:
            estimate[name] = torch.stack(parts).amax(0)
    return estimate


def _estimated(estimate: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """The estimate for one tensor, floored at its mean (errors are not exact elementwise)."""
    value = estimate.get(name)
    if value is None or value.shape != like.shape:
        return torch.zeros((), dtype=torch.float64)
    value = value.cpu()
    return value + value.mean()


def check_gradients(
    module: Any,
    *inputs: Tensor,
    target: Tensor | None = None,
    grad_output: Tensor | float | None = None,
    reference: Callable[..., Tensor] | torch.nn.Module | None = None,
    seed: int = 0,
    name: str | None = None,
    **tolerances: Any,
) -> GradientReport:
    """Run the finite-difference, twin, linearity and accumulation checks on concrete inputs.

    Args:
        module: any object with ``forward``, ``backward`` and ``param()`` (a framework module,
            another student's layer, a custom layer).
        inputs: forward inputs; floating ones are differentiated. Use float64 for a tight check.
        target: marks a loss: ``forward(*inputs, target)`` then ``backward(grad_output)``.
        grad_output: the upstream gradient (random Gaussian by default; a random scalar for a
            reduced loss, of the loss's shape for ``reduction='none'``). Never all ones, so a
            backward that forgets to multiply by it fails.
        reference: a ``torch.nn`` twin (parameters are copied into it by name, or by order)
            or any differentiable torch callable; ``None`` skips the twin check.
        seed: seeds the random upstream gradients and probe directions.
        tolerances: ``eps``, ``safety``, ``full_jacobian_limit``, ``probes`` (see :class:`Tolerances`).
    """
    tol = Tolerances.from_kwargs(tolerances)
    report = GradientReport(name or type(module).__name__)
    generator = torch.Generator().manual_seed(seed)
    harness = _Harness(module, inputs, target)
    inputs_before = [x.clone() for x in inputs]
    target_before = None if target is None else target.clone()

    if reference is not None:
        twin_state = _prepare_reference(module, reference)
    _zero_grad(module)
    output = harness.forward()
    if not isinstance(output, Tensor):
        raise TypeError(f"{report.module}: forward returned {type(output).__name__}, expected a Tensor")
    if harness.is_loss and output.dim() == 0:
        if grad_output is None:
            grad_output = torch.randn((), generator=generator, dtype=torch.float64).to(output)
        elif not isinstance(grad_output, Tensor):
            grad_output = torch.tensor(float(grad_output), dtype=output.dtype, device=output.device)
        else:
            grad_output = grad_output.reshape(())  # a reduced loss is 0-d: so is its upstream gradient
    elif grad_output is None:  # a module's output, or a loss with reduction='none': random, of its shape
        grad_output = _random_like(output, generator)
    grad_output_before = grad_output.clone()
    grads_in = harness.backward(grad_output)
    grads_param = [g.clone() for _, _, g in _named_params(module)]
    buffers_after_one_forward = [(n, b.clone()) for n, b in _named_buffers(module)]

    n_terms = max([output.numel(), *[x.numel() for x in inputs], *[p.numel() for _, p, _ in _named_params(module)]])
    tol.scale = max(
        float(t.detach().double().abs().mean())
        for t in [grad_output, output, *[g for g in grads_in if g is not None], *grads_param]
        if t.numel()
    )
    u = unit_roundoff(output.dtype)
    estimate = _precision_estimate(module, reference, inputs, target, grad_output)
    rename = {theirs: ours for ours, theirs in twin_state.get("names", {}).items()} if reference is not None else {}
    estimate = {rename.get(k, k): v for k, v in estimate.items()}  # the reference's parameter names, as ours
    harness.forward()  # the estimate ran the module again: restore its saved state for backward

    if reference is not None:
        report.checks.append(
            _check_twin(
                report.module,
                reference,
                twin_state,
                harness,
                output,
                grad_output,
                grads_in,
                grads_param,
                buffers_after_one_forward,
                n_terms,
                u,
                tol,
                estimate,
            )
        )
    else:
        report.checks.append(CheckResult("twin", skipped="no reference given"))

    buffers_snapshot = [(b, b.clone()) for _, b in _named_buffers(module)]
    report.checks.append(
        _check_finite_differences(harness, grad_output, grads_in, grads_param, n_terms, u, tol, generator)
    )
    for buffer, saved in buffers_snapshot:
        buffer.copy_(saved)

    report.checks.append(_check_linearity(harness, grad_output, n_terms, u, tol, generator, estimate))
    report.checks.append(_check_accumulation(harness, grad_output, n_terms, u, tol, generator, estimate))
    acc = report["accumulation"]
    for i, (x, before) in enumerate(zip(inputs, inputs_before)):
        if not torch.equal(x, before):
            acc.fail(f"input {i} was modified by forward or backward")
    if target is not None and not torch.equal(target, target_before):
        acc.fail("the target was modified by forward or backward")
    if not torch.equal(grad_output, grad_output_before):
        acc.fail("grad_output was modified by backward")
    return report


def assert_gradients_close(module: Any, *inputs: Tensor, **kwargs: Any) -> GradientReport:
    """:func:`check_gradients`, raising ``AssertionError`` with the readable report on failure."""
    report = check_gradients(module, *inputs, **kwargs)
    if not report.ok:
        raise AssertionError(str(report))
    return report


# -- finite differences -------------------------------------------------------------------------------
def _perturbable(harness: _Harness) -> list[tuple[str, Tensor, bool]]:
    """(name, tensor, is_input) for every floating input and every parameter."""
    items = [(f"input[{i}]", x, True) for i, x in enumerate(harness.inputs) if x.is_floating_point()]
    items += [(name, p, False) for name, p, _ in _named_params(harness.module)]
    return items


def _phi_at(harness: _Harness, grad_output: Tensor, tensor: Tensor, is_input: bool, index: int, delta: Tensor) -> float:
    """phi with ``tensor`` shifted by ``delta`` (one element at ``index``, or everywhere if index < 0)."""
    if is_input:
        shifted = tensor.clone()
        if index >= 0:
            shifted.view(-1)[index] += delta
        else:
            shifted += delta
        inputs = [shifted if x is tensor else x for x in harness.inputs]
        return harness.phi(harness.forward(inputs), grad_output)
    original = tensor.clone()
    try:
        if index >= 0:
            tensor.view(-1)[index] += delta
        else:
            tensor += delta
        return harness.phi(harness.forward(), grad_output)
    finally:
        tensor.copy_(original)


def _richardson(f: Callable[[float], float], h: float) -> tuple[float, float]:
    """(R, |R - D(h/2)|) with D the central difference of f around 0."""
    d_h = (f(h) - f(-h)) / (2 * h)
    d_half = (f(h / 2) - f(-h / 2)) / h
    r = (4 * d_half - d_h) / 3
    return r, abs(r - d_half)


def _check_finite_differences(
    harness: _Harness,
    grad_output: Tensor,
    grads_in: list[Tensor],
    grads_param: list[Tensor],
    n_terms: int,
    u: float,
    tol: Tolerances,
    generator: torch.Generator,
) -> CheckResult:
    result = CheckResult("finite_differences")
    output = harness.forward()
    spread = float((output.double().abs() * grad_output.double().abs()).sum())
    delta = u * n_terms * (spread + abs(harness.phi(output, grad_output)))
    analytic_by_tensor = iter(grads_in)
    param_grads = iter(grads_param)
    for name, tensor, is_input in _perturbable(harness):
        analytic = next(analytic_by_tensor) if is_input else next(param_grads)
        if analytic is None:
            result.fail(f"backward returned no gradient for {name}")
            continue
        if tuple(analytic.shape) != tuple(tensor.shape):
            result.fail(f"gradient of {name} has shape {tuple(analytic.shape)}, expected {tuple(tensor.shape)}")
            continue
        a = analytic.detach().double().cpu().reshape(-1)
        if tensor.numel() <= tol.full_jacobian_limit:
            numeric = torch.empty_like(a)
            bound = torch.empty_like(a)
            flat = tensor.detach().double().cpu().reshape(-1)
            for j in range(tensor.numel()):
                h = tol.eps * max(1.0, abs(float(flat[j])))

                def f(step: float, j: int = j, t: Tensor = tensor, is_input: bool = is_input) -> float:
                    return _phi_at(harness, grad_output, t, is_input, j, torch.tensor(step, dtype=t.dtype))

                numeric[j], truncation = _richardson(f, h)
                # x + h is rounded, so the step taken differs from h by up to u |x|: a relative
                # error u |x| / h in each difference, at most 3 u |x| / h after extrapolation.
                stepping = 3 * u * abs(float(flat[j])) / h * abs(float(numeric[j]))
                bound[j] = tol.safety * (3 * delta / h + truncation + stepping)
            tolerance = bound + _rounding_tolerance(a, n_terms, u, tol)
            shape = tensor.shape
            result.merge(
                name,
                a.reshape(shape),
                numeric.reshape(shape),
                tolerance.reshape(shape),
                ("backward", "finite difference"),
            )
        else:
            scale = max(1.0, float(tensor.detach().double().abs().max()))
            h = tol.eps * scale
            for k in range(tol.probes):
                direction = _random_like(tensor, generator)

                def f(step: float, d: Tensor = direction, t: Tensor = tensor, is_input: bool = is_input) -> float:
                    return _phi_at(harness, grad_output, t, is_input, -1, step * d)

                numeric, truncation = _richardson(f, h)
                d = direction.double().cpu().reshape(-1)
                projected = float((d * a).sum())
                rounding = u * n_terms * float((d.abs() * a.abs()).sum())
                x = tensor.detach().double().cpu().reshape(-1)
                stepping = 3 * u * float((x.abs() * a.abs()).sum()) / h
                tolerance = tol.safety * (3 * delta / h + truncation + rounding + stepping)
                result.merge(
                    f"{name} probe {k}",
                    torch.tensor([projected]),
                    torch.tensor([numeric]),
                    torch.tensor([tolerance]),
                    ("<u, backward>", "directional finite difference"),
                )
    return result


# -- the torch twin -----------------------------------------------------------------------------------
def _prepare_reference(module: Any, reference: Any) -> dict[str, Any]:
    """Copy the module's parameters and buffers into a torch.nn reference, before any forward."""
    state: dict[str, Any] = {}
    if isinstance(reference, torch.nn.Module):
        params = _named_params(module)
        twin_params = dict(reference.named_parameters())
        by_name = {n for n, _, _ in params} == set(twin_params)
        if not by_name and len(params) != len(twin_params):
            raise ValueError(
                f"{type(module).__name__}: {len(params)} parameters, but the reference has {len(twin_params)}"
            )
        twin_names = [n for n, _, _ in params] if by_name else list(twin_params)
        pairs = [(twin_params[t], p) for t, (_, p, _) in zip(twin_names, params)]
        ref_tensor = params[0][1] if params else None
        if ref_tensor is not None:
            reference.to(device=ref_tensor.device, dtype=ref_tensor.dtype)
        twin_buffers = dict(reference.named_buffers())
        with torch.no_grad():
            for twin_p, p in pairs:
                if twin_p.shape != p.shape:
                    raise ValueError(
                        f"{type(module).__name__}: parameter of shape {tuple(p.shape)} does not match the "
                        f"reference's {tuple(twin_p.shape)}"
                    )
                twin_p.copy_(p)
            for n, b in _named_buffers(module):
                if n in twin_buffers:
                    twin_buffers[n].copy_(b)
        # Our gradient names -> the twin's (the same when matched by name, by position otherwise).
        state["names"] = {f"{n}.grad": f"{t}.grad" for (n, _, _), t in zip(params, twin_names)}
        state["buffers"] = twin_buffers
        reference.train(getattr(module, "training", True))
    return state


def _check_twin(
    name: str,
    reference: Any,
    state: dict[str, Any],
    harness: _Harness,
    output: Tensor,
    grad_output: Tensor,
    grads_in: list[Tensor],
    grads_param: list[Tensor],
    buffers: list[tuple[str, Tensor]],
    n_terms: int,
    u: float,
    tol: Tolerances,
    estimate: dict[str, Tensor],
) -> CheckResult:
    result = CheckResult("twin")

    def tolerance(name: str, expected: Tensor) -> Tensor:
        return _rounding_tolerance(expected, n_terms, u, tol) + tol.safety * _estimated(estimate, name, expected)

    try:
        theirs = _collect_torch(reference, harness.inputs, harness.target, grad_output)
    except _ShapeMismatchError as error:
        result.fail(f"output shape {tuple(output.shape)} differs from the twin's {error.shape}")
        return result
    labels = ("framework", "torch.autograd")
    result.merge("output", output, theirs["output"], tolerance("output", theirs["output"].double().cpu()), labels)
    for i, g in enumerate(grads_in):
        name = f"input[{i}].grad"
        if name in theirs:
            result.merge(name, g, theirs[name], tolerance(name, theirs[name].double().cpu()), labels)
    for (name, twin_name), g in zip(state.get("names", {}).items(), grads_param):
        expected = theirs[twin_name]
        result.merge(name, g, expected, tolerance(name, expected.double().cpu()), labels)
    twin_buffers = state.get("buffers", {})
    for bname, value in buffers:
        if bname in twin_buffers and value.is_floating_point():
            expected = twin_buffers[bname]
            result.merge(bname, value, expected, _rounding_tolerance(expected, n_terms, u, tol), labels)
        elif bname in twin_buffers and not torch.equal(value.cpu(), twin_buffers[bname].cpu()):
            result.fail(f"buffer {bname} is {value.tolist()}, the twin's is {twin_buffers[bname].tolist()}")
    return result


# -- linearity and accumulation ------------------------------------------------------------------------
def _backward_fresh(harness: _Harness, grad_output: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    _zero_grad(harness.module)
    grads = [g.clone() for g in harness.backward(grad_output)]
    return grads, [g.clone() for _, _, g in _named_params(harness.module)]


def _check_linearity(
    harness: _Harness,
    grad_output: Tensor,
    n_terms: int,
    u: float,
    tol: Tolerances,
    generator: torch.Generator,
    estimate: dict[str, Tensor],
) -> CheckResult:
    result = CheckResult("linearity")
    harness.forward()
    g1 = grad_output
    g2 = _random_like(grad_output, generator)
    a, b = 0.75, -1.5
    in1, p1 = _backward_fresh(harness, g1)
    in2, p2 = _backward_fresh(harness, g2)
    in12, p12 = _backward_fresh(harness, a * g1 + b * g2)
    names = [f"input[{i}]" for i in range(len(in12))] + [n for n, _, _ in _named_params(harness.module)]
    for tname, x1, x2, x12 in zip(names, in1 + p1, in2 + p2, in12 + p12):
        expected = a * x1.double() + b * x2.double()
        scale = abs(a) * x1.double().abs() + abs(b) * x2.double().abs()
        # Three backward calls, each with its own rounding error (estimated for g1).
        error = (1 + abs(a) + abs(b)) * _estimated(estimate, f"{tname}.grad", expected.cpu())
        result.merge(
            tname,
            x12,
            expected,
            _rounding_tolerance(scale, n_terms, u, tol) + tol.safety * error,
            ("backward(a g1 + b g2)", "a backward(g1) + b backward(g2)"),
        )
    return result


def _check_accumulation(
    harness: _Harness,
    grad_output: Tensor,
    n_terms: int,
    u: float,
    tol: Tolerances,
    generator: torch.Generator,
    estimate: dict[str, Tensor],
) -> CheckResult:
    result = CheckResult("accumulation")
    harness.forward()
    g2 = _random_like(grad_output, generator)
    _, p1 = _backward_fresh(harness, grad_output)
    harness.backward(g2)  # without zero_grad: must add
    accumulated = [g.clone() for _, _, g in _named_params(harness.module)]
    _, p2 = _backward_fresh(harness, g2)
    for (pname, _, _), total, x1, x2 in zip(_named_params(harness.module), accumulated, p1, p2):
        expected = x1.double() + x2.double()
        error = 2 * _estimated(estimate, f"{pname}.grad", expected.cpu())
        result.merge(
            pname,
            total,
            expected,
            _rounding_tolerance(x1.double().abs() + x2.double().abs(), n_terms, u, tol) + tol.safety * error,
            ("two backward calls", "sum of each"),
        )
    _zero_grad(harness.module)
    for pname, _, g in _named_params(harness.module):
        if bool(g.ne(0).any()):
            result.fail(f"zero_grad() left non-zero values in the gradient of {pname}")
    # Saved tensors must survive a backward: a second backward gives the same input gradient.
    again, _ = _backward_fresh(harness, grad_output)
    first, _ = _backward_fresh(harness, grad_output)
    for i, (x, y) in enumerate(zip(first, again)):
        if not torch.equal(x, y):
            result.fail(f"a repeated backward gave a different gradient for input[{i}]: saved state was modified")
    _zero_grad(harness.module)
    return result
