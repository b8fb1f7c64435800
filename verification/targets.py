"""One interface over every kind of target the verifier accepts.

* :class:`ProtocolTarget`: an object with ``forward``, ``backward`` and ``param()`` (the
  framework's modules, other EE-559 frameworks' modules, a ``torch.nn.Module`` that defines them:
  its hand-written backward is checked, not autograd's). ``backward(*grad_outputs)`` returns
  the input gradients and *adds* the parameter gradients into the tensors ``param()`` pairs
  with each parameter. A loss whose ``backward()`` takes no argument is supported: its result
  is multiplied by the upstream gradient the verifier draws.
* :class:`AutogradTarget`: a ``torch.autograd.Function`` subclass (called through ``.apply``),
  or any callable on tensors (a function using custom Functions inside, a ``torch.library``
  custom op, a ``torch.nn.Module`` whose forward contains custom backward code, whose
  parameters are then checked too). Its gradients come from ``torch.autograd``, which runs
  the user's backward code.

Arguments are passed as a user passes them. Floating-point tensors are differentiated (those
that require grad, or all of them when none does). A complex tensor (an autograd target's input
or output) is checked through its real view, ``torch.view_as_real``: the call holds that view,
the target receives ``torch.view_as_complex`` of it (a view, so an in-place write shows), and a
complex output is returned as its real view. Finite differences then perturb real and
imaginary parts as two real inputs, and autograd's gradient of the real view is
``view_as_real`` of torch's complex gradient (dL/dRe z + i dL/dIm z), so a backward written to
another convention (the conjugate, or the Wirtinger derivative) fails. Every other argument
(None, flags, sizes, integer index tensors) is passed through unchanged. Each evaluation
receives fresh copies of the tensors, so a target that modifies its inputs cannot corrupt the
next evaluation, and runs with its random state pinned (the global generators, and the
``generator`` attribute of framework modules such as Dropout), so finite differences see one
fixed function.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

RNG_SEED = 20240229


class TargetError(TypeError):
    """The target or the call is not something the verifier can check (names both)."""


@dataclass
class Call:
    """The positional arguments of one call and which of them are differentiated.

    ``args`` holds the user's arguments, then the loss target when one was given with
    ``target=`` (``n_inputs`` counts the user's arguments only). ``diff`` lists the
    positions of the differentiated floating-point tensors.
    """

    args: list[Any]
    diff: list[int]
    n_inputs: int
    complex_: frozenset[int] = frozenset()  # positions of complex arguments, held as their real views

    @classmethod
    def of(cls, inputs: Sequence[Any], loss_target: Any = None) -> Call:
        complex_ = frozenset(i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.is_complex())
        inputs = [real_view(x) if i in complex_ else x for i, x in enumerate(inputs)]
        floating = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.is_floating_point()]
        wanted = [i for i in floating if inputs[i].requires_grad]
        args = list(inputs) + ([loss_target] if loss_target is not None else [])
        return cls(args, wanted or floating, len(inputs), complex_)

    @property
    def has_loss_target(self) -> bool:
        return len(self.args) > self.n_inputs

    def tensors(self) -> list[Tensor]:
        return [self.args[i] for i in self.diff]

    def replace(self, values: dict[int, Any]) -> Call:
        """The same call with some arguments replaced (by position)."""
        return Call([values.get(i, a) for i, a in enumerate(self.args)], self.diff, self.n_inputs, self.complex_)

    def with_tensors(self, tensors: Sequence[Tensor]) -> Call:
        """The same call with the differentiated tensors replaced, in ``diff`` order."""
        return self.replace(dict(zip(self.diff, tensors)))

    def cast(self, dtype: torch.dtype) -> Call:
        """Floating-point tensors cast to ``dtype`` (values upcast exactly when ``dtype`` is wider)."""
        return self.replace(
            {
                i: a.detach().to(dtype)
                for i, a in enumerate(self.args)
                if isinstance(a, Tensor) and a.is_floating_point()
            }
        )

    def fresh(self) -> list[Any]:
        """Detached copies of every tensor argument, strides kept: what one evaluation receives."""
        return [_copy(a) if isinstance(a, Tensor) else a for a in self.args]

    def names(self) -> list[str]:
        return [f"input[{i}]" for i in self.diff]

    def handed(self, args: list[Any]) -> list[Any]:
        """``args`` as the target takes them: the complex arguments' real views made complex again."""
        return [as_complex(a) if i in self.complex_ else a for i, a in enumerate(args)]


def real_view(x: Tensor) -> Tensor:
    """A complex tensor as a real one with a trailing dimension of 2 (real part, imaginary part),
    ``torch.view_as_real`` of it: a copy, its strides kept, requiring grad as ``x`` does."""
    return torch.view_as_real(x.detach().resolve_conj()).clone().requires_grad_(x.requires_grad)


def as_complex(x: Tensor) -> Tensor:
    """The complex tensor whose real view is ``x``: a view of ``x`` (differentiable, and an in-place
    write to it writes into ``x``), or a copy where ``x``'s strides allow no complex view."""
    try:
        return torch.view_as_complex(x)
    except RuntimeError:
        return torch.complex(x[..., 0], x[..., 1])


def real_leaves(leaves: Sequence[Tensor | None]) -> tuple[list[Tensor | None], frozenset[int]]:
    """Complex tensors among ``leaves`` as their real views (differentiable), and their positions."""
    complex_ = frozenset(i for i, x in enumerate(leaves) if x is not None and x.is_complex())
    return [torch.view_as_real(x.resolve_conj()) if i in complex_ else x for i, x in enumerate(leaves)], complex_


def storage_span(x: Tensor) -> int:
    """How many elements of its storage ``x`` reaches over, from its first to its last (0 if empty)."""
    return 1 + sum((n - 1) * abs(s) for n, s in zip(x.shape, x.stride())) if x.numel() else 0


def overlap(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` may share memory: the same storage, and byte ranges that meet (two
    halves of one buffer, as ``chunk`` gives, do not)."""
    if a.device != b.device or a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False

    def extent(t: Tensor) -> tuple[int, int]:
        start = t.storage_offset() * t.element_size()
        return start, start + storage_span(t) * t.element_size()

    (a0, a1), (b0, b1) = extent(a), extent(b)
    return a0 < b1 and b0 < a1


def same_memory(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` are the same elements of the same memory: the same tensor, or views
    alike of one storage (``param()`` returning ``self.dw.T`` gives a new view object on every call)."""
    return a is b or (
        a.numel() > 0
        and overlap(a, b)
        and a.storage_offset() == b.storage_offset()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
    )


def _copy(x: Tensor, differentiable: bool = False) -> Tensor:
    """A copy of ``x`` with the same strides and a storage offset like its own (so a non-contiguous
    view stays non-contiguous, and a slice of a larger buffer still starts past its storage's beginning);
    ``differentiable``: recorded by autograd (under grad mode), a function of ``x``, not a leaf."""
    x = x if differentiable else x.detach()
    # The offset modulo 64 elements (64 itself for a multiple): its alignment, without the storage
    # before it (a slice at the end of a large tensor is not copied with that whole tensor).
    offset = x.storage_offset() % 64 or (64 if x.storage_offset() else 0)
    if x.is_contiguous() and offset == 0:
        return x.clone()
    try:
        if offset:
            buffer = torch.zeros(offset + storage_span(x), dtype=x.dtype, device=x.device)
            copy = buffer.as_strided(x.size(), x.stride(), offset)
        else:
            copy = torch.empty_strided(x.size(), x.stride(), dtype=x.dtype, device=x.device)
        copy.copy_(x)
    except RuntimeError:  # overlapping memory (expanded views): a plain copy
        return x.clone()
    return copy


@dataclass
class Outputs:
    """A forward result flattened: ``leaves`` are the tensors (None for non-tensor leaves)."""

    leaves: list[Tensor | None]
    spec: Any
    result: Any = None  # the forward's own result, whose dataclasses structured() rebuilds
    random: bool = False  # the forward drew random numbers (from generators the verifier pinned)
    complex_: frozenset[int] = frozenset()  # complex outputs, given in ``leaves`` as their real views

    @classmethod
    def of(cls, result: Any, owner: str) -> Outputs:
        leaves, spec = pytree.tree_flatten(plain(result))
        if not leaves or not any(isinstance(x, Tensor) for x in leaves):
            raise TargetError(
                f"{owner}: forward returned {type(result).__name__}, expected Tensors "
                "(one, or in a tuple, list, dict or dataclass)"
            )
        for x in leaves:
            if x is not None and not isinstance(x, Tensor | int | float | bool | str):
                raise TargetError(f"{owner}: forward returned a {type(x).__name__} among its outputs, expected Tensors")
        return cls([x if isinstance(x, Tensor) else None for x in leaves], spec, result)

    def floating(self) -> list[int]:
        """Positions of the floating-point outputs: each gets an upstream gradient."""
        return [i for i, x in enumerate(self.leaves) if x is not None and x.is_floating_point()]

    def names(self) -> list[str]:
        return ["output"] if len(self.leaves) == 1 else [f"output[{i}]" for i in range(len(self.leaves))]

    def structured(self, per_leaf: Sequence[Tensor | None]) -> Any:
        return _rebuilt(self.result, pytree.tree_unflatten(list(per_leaf), self.spec))


def plain(result: Any) -> Any:
    """A forward's result with its dataclass instances (a model's output record) as dicts of their
    fields, inside tuples, lists and dicts too: torch's pytree flattens those, not dataclasses."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {f.name: plain(getattr(result, f.name)) for f in dataclasses.fields(result)}
    if type(result) in (tuple, list):
        return type(result)(plain(x) for x in result)
    if type(result) is dict:
        return {k: plain(x) for k, x in result.items()}
    return result


def _rebuilt(result: Any, shaped: Any) -> Any:
    """``shaped`` (a structure as :func:`plain` of ``result``) with ``result``'s dataclasses restored: a
    copy of each, its fields set to ``shaped``'s (frozen ones too)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        rebuilt = copy.copy(result)
        for f in dataclasses.fields(result):
            object.__setattr__(rebuilt, f.name, _rebuilt(getattr(result, f.name), shaped[f.name]))
        return rebuilt
    if type(result) in (tuple, list):
        return type(result)(_rebuilt(x, part) for x, part in zip(result, shaped))
    if type(result) is dict:
        return {k: _rebuilt(x, shaped[k]) for k, x in result.items()}
    return shaped


@dataclass
class Gradients:
    """What one backward produced: per differentiated input, per parameter (None: no gradient)."""

    inputs: list[Tensor | None]
    params: list[Tensor | None]
    notes: list[str] = field(default_factory=list)

    def all(self) -> list[Tensor | None]:
        return self.inputs + self.params


class Target:
    """The common interface. Subclasses define how to run forward and backward."""

    kind = "target"
    name = "target"
    supports_second_order = False
    accumulates = False  # parameter gradients add up over backward calls (the framework protocol)

    def parameters(self) -> list[tuple[str, Tensor]]:
        raise NotImplementedError

    def copy(self, dtype: torch.dtype | None = None) -> Target:
        raise NotImplementedError

    def forward(self, call: Call) -> Outputs:
        """Forward only, without recording anything for backward."""
        raise NotImplementedError

    def start(self, call: Call) -> Pass:
        """Forward, keeping what backward needs; the returned pass may run backward several times."""
        raise NotImplementedError

    def dtype(self) -> torch.dtype | None:
        return next((p.dtype for _, p in self.parameters()), None)


class Pass:
    """One forward, ready for one or more backward calls."""

    def __init__(self, target: Target, call: Call, outputs: Outputs, args: list[Any]) -> None:
        self.target, self.call, self.outputs = target, call, outputs
        self.args = args  # what forward received: the side-effect check inspects them afterwards
        self.modified_upstream: list[int] = []  # outputs whose upstream gradient the last backward wrote into
        self.returned: list[Tensor] = []  # a hand-written backward's results, as it returned them

    def backward(self, grads: Sequence[Tensor | None], accumulate: bool = False) -> Gradients:
        raise NotImplementedError

    def _handed(self, grads: Sequence[Tensor | None]) -> list[Tensor | None]:
        """Copies of the upstream gradients (strides kept) for the target's backward: a backward that
        writes into its ``grad_output`` corrupts its copy, never the checks' shared gradients."""
        return [g if g is None or g.requires_grad else _copy(g) for g in grads]

    def _note_modified(self, grads: Sequence[Tensor | None], handed: Sequence[Tensor | None]) -> None:
        self.modified_upstream = [
            i for i, (g, h) in enumerate(zip(grads, handed)) if g is not None and h is not None and not _same(g, h)
        ]


@dataclass
class Draws:
    """Whether a forward drew random numbers from the generators :func:`pinned_rng` pinned."""

    any: bool = False


@contextlib.contextmanager
def pinned_rng(device: torch.device | None, own: Sequence[torch.Generator] = ()) -> Iterator[Draws]:
    """Run with the default generators (CPU, and ``device``'s if CUDA) and ``own`` (a module's, or
    generators passed as arguments) at a fixed state; restore them after. Yields a :class:`Draws`,
    set on exit."""
    generators = [torch.default_generator]
    if device is not None and device.type == "cuda":
        generators.append(torch.cuda.default_generators[device.index or 0])
    generators += [g for g in own if all(g is not seen for seen in generators)]
    saved = [g.get_state() for g in generators]
    draws = Draws()
    try:
        for g in generators:
            g.manual_seed(RNG_SEED)
        seeded = [g.get_state() for g in generators]
        yield draws
        draws.any = any(not torch.equal(g.get_state(), state) for g, state in zip(generators, seeded))
    finally:
        for g, state in zip(generators, saved):
            g.set_state(state)


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal values, NaN where both hold NaN."""
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def _device_of(call: Call) -> torch.device | None:
    return next((a.device for a in call.args if isinstance(a, Tensor)), None)


# -- the framework / EE-559 protocol -----------------------------------------------------------------
def _generators(module: Any) -> list[torch.Generator]:
    """Random number generators a module (or its children) draws from, e.g. Dropout's."""
    found, stack = [], [module]
    while stack:
        m = stack.pop()
        gen = getattr(m, "__dict__", {}).get("generator")
        if isinstance(gen, torch.Generator):
            found.append(gen)
        if hasattr(m, "children") and callable(m.children):
            stack.extend(m.children())
    return found


def _cast_tree(obj: Any, dtype: torch.dtype, memo: dict[int, Any], depth: int = 0) -> Any:
    """``obj`` with every floating-point tensor it holds cast to ``dtype``, shared tensors kept shared."""
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, Tensor):
        result = obj.to(dtype) if obj.is_floating_point() else obj
    elif isinstance(obj, list):
        memo[id(obj)] = obj
        obj[:] = [_cast_tree(x, dtype, memo, depth + 1) for x in obj]
        result = obj
    elif isinstance(obj, tuple):
        result = (
            type(obj)(*(_cast_tree(x, dtype, memo, depth + 1) for x in obj))
            if hasattr(obj, "_fields")
            else tuple(_cast_tree(x, dtype, memo, depth + 1) for x in obj)
        )
    elif isinstance(obj, dict):
        memo[id(obj)] = obj
        for k in list(obj):
            obj[k] = _cast_tree(obj[k], dtype, memo, depth + 1)
        result = obj
    elif depth < 8 and hasattr(obj, "__dict__") and not isinstance(obj, type) and not inspect.isroutine(obj):
        memo[id(obj)] = obj
        for k, v in list(vars(obj).items()):
            cast = _cast_tree(v, dtype, memo, depth + 1)
            if cast is not v:
                object.__setattr__(obj, k, cast)
        result = obj
    else:
        result = obj
    memo[id(obj)] = result
    return result


def _described(value: Any) -> str:
    """A value as an error message shows it: a tensor by its dtype and shape, never its numbers."""
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_described(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return f"{value!r:.60}"


def _not_a_pair(pair: Any) -> str:
    """What is wrong with an entry of ``param()`` that is not a (parameter, gradient) pair of tensors."""
    expected = "expected a (parameter, gradient) pair of tensors"
    if isinstance(pair, Tensor):
        return f"{expected}, got {_described(pair)} alone: return [(parameter, gradient), ...]"
    if isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2 and pair[1] is None:
        return (
            f"{expected}, got {_described(pair)}: the gradient is None. The protocol's gradient is a tensor "
            "of the parameter's shape from the start (zeros), which backward adds into"
        )
    if (
        isinstance(pair, Sequence)
        and not isinstance(pair, str)
        and any(isinstance(entry, Sequence) and not isinstance(entry, str) for entry in pair)
    ):
        return (
            f"{expected}, got {_described(pair)}: a list of pairs. A container's param() is one flat list: "
            "concatenate its children's (params += module.param()), do not nest them"
        )
    return f"{expected}, got {_described(pair)}"


class ProtocolTarget(Target):
    """``forward(*inputs)`` / ``backward(*grad_outputs)`` / ``param()``."""

    kind = "framework protocol"
    accumulates = True

    def __init__(self, module: Any, name: str | None = None) -> None:
        self.module = module
        self.name = name or type(module).__name__
        self.takes_upstream = _backward_takes_upstream(module)
        self._check_param()

    def _check_param(self) -> None:
        try:
            returned = self.module.param()
        except Exception as error:
            raise TargetError(f"{self.name}.param() raised {type(error).__name__}: {error}") from error
        if isinstance(returned, (Tensor, str, bytes)) or not isinstance(returned, Iterable):
            what = "None" if returned is None else type(returned).__name__
            raise TargetError(
                f"{self.name}.param() returned {what}: it must return a list of (parameter, gradient) pairs "
                "([] for a module without parameters)" + ("; is a return missing?" if returned is None else "")
            )
        pairs = list(returned)
        for i, pair in enumerate(pairs):
            ok = isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)
            if not ok:
                raise TargetError(f"{self.name}.param()[{i}]: {_not_a_pair(pair)}")
            if pair[0].shape != pair[1].shape:
                raise TargetError(
                    f"{self.name}.param()[{i}]: the gradient has shape {tuple(pair[1].shape)}, "
                    f"the parameter {tuple(pair[0].shape)}"
                )
            if (pair[0].dtype, pair[0].device) != (pair[1].dtype, pair[1].device):
                raise TargetError(
                    f"{self.name}.param()[{i}]: the gradient is {pair[1].dtype} on {pair[1].device}, "
                    f"the parameter {pair[0].dtype} on {pair[0].device}"
                )
            if pair[0].numel() and _same_memory(pair[0], pair[1]):
                raise TargetError(
                    f"{self.name}.param()[{i}]: the parameter and its gradient are the same tensor; give the "
                    "gradient a tensor of its own (torch.zeros_like(parameter)) that backward adds into"
                )

    def gradient_read_by_forward(self, call: Call) -> str | None:
        """The name of the first parameter whose *gradient* tensor forward reads (its outputs change
        when that tensor changes), or None. Pairs given as (gradient, parameter) do that: every
        check would then zero the weights as gradients and compare zeros with zeros. Judged on a copy,
        only where two forwards with the gradients as they were agree bit for bit."""
        with torch.no_grad():  # gradients held as Parameters that require grad are moved in place too
            return self._gradient_read_by_forward(call)

    def _gradient_read_by_forward(self, call: Call) -> str | None:
        probe = self.copy()
        pairs = probe.named()
        if not pairs:
            return None

        def outputs() -> list[Tensor | None]:
            return [None if y is None else y.detach().clone() for y in probe.forward(call).leaves]

        kept = [g.detach().clone() for _, _, g in pairs]
        before = outputs()
        for _, _, g in pairs:
            g.add_(1)
        changed = outputs()
        for (_, _, g), value in zip(pairs, kept):
            g.copy_(value)
        if not _same_outputs(before, outputs()) or _same_outputs(before, changed):
            return None  # a forward that changes from call to call says nothing; or no gradient is read
        for (name, _, g), value in zip(pairs, kept):
            g.add_(1)
            moved = not _same_outputs(before, outputs())
            g.copy_(value)
            if moved:
                return name
        return None

    def unlisted_tensors_read_by_forward(self, call: Call) -> list[str]:
        """The names of the module's floating-point tensor attributes that ``param()`` does not list
        (neither as a parameter nor as a gradient; nor a buffer of ``named_buffers()``) and that
        forward reads: its outputs change when such a tensor does (a weight whose pair was left out
        of param()). Judged on a copy, only where two forwards agree bit for bit; a tensor forward
        overwrites (the input it keeps) never counts."""
        with torch.no_grad():
            probe = self.copy()
            # Listed by their memory, not their identity: param() may hand out views (self.w.T).
            listed = [t for _, p, g in probe.named() for t in (p, g)]
            buffers = getattr(probe.module, "named_buffers", None)  # running statistics: state, not parameters
            listed += [b for _, b in buffers()] if callable(buffers) else []
            attributes = [
                (name, value)
                for name, value in vars(probe.module).items()
                if isinstance(value, Tensor)
                and value.is_floating_point()
                and value.numel()
                and not any(value is t or (isinstance(t, Tensor) and overlap(value, t)) for t in listed)
            ]
            if not attributes:
                return []

            def outputs() -> list[Tensor | None]:
                return [None if y is None else y.detach().clone() for y in probe.forward(call).leaves]

            before = outputs()
            if not _same_outputs(before, outputs()):
                return []  # a forward that changes from call to call says nothing
            read = []
            for name, value in attributes:
                kept = value.clone()
                value.add_(1)
                moved = not _same_outputs(before, outputs())
                value.copy_(kept)
                if moved:
                    read.append(f"{name} {tuple(value.shape)}")
            return read

    def named(self) -> list[tuple[str, Tensor, Tensor]]:
        if hasattr(self.module, "named_param"):
            return [(n, p, g) for n, p, g in self.module.named_param()]
        return [(f"param[{i}]", p, g) for i, (p, g) in enumerate(self.module.param())]

    def parameters(self) -> list[tuple[str, Tensor]]:
        return [(n, p) for n, p, _ in self.named()]

    def copy(self, dtype: torch.dtype | None = None) -> ProtocolTarget:
        try:
            module = copy.deepcopy(self.module)
        except Exception as error:
            raise TargetError(
                f"{self.name}: the verifier works on a copy of the target, and copy.deepcopy failed: {error}"
            ) from error
        if dtype is not None:
            if callable(getattr(module, "to", None)):
                try:
                    module.to(dtype=dtype)
                except TypeError:
                    module.to(dtype)
            if any(p.is_floating_point() and p.dtype != dtype for pair in module.param() for p in pair):
                # No .to(), or one that leaves plain tensor attributes behind (torch.nn.Module.to
                # converts its Parameters and buffers only): every floating-point tensor it holds.
                _cast_tree(module, dtype, {})
        clone = ProtocolTarget.__new__(ProtocolTarget)
        clone.module, clone.name, clone.takes_upstream = module, self.name, self.takes_upstream
        return clone

    def zero_grad(self) -> None:
        # torch.nn.Module's own zero_grad() clears .grad, not the gradients param() pairs: those of
        # an EE-559 module written on torch.nn.Module are zeroed here unless it defines its own.
        own = getattr(type(self.module), "zero_grad", None) is not torch.nn.Module.zero_grad
        if own and callable(getattr(self.module, "zero_grad", None)):
            self.module.zero_grad()
        else:
            with torch.no_grad():  # a gradient held as a Parameter that requires grad
                for _, g in self.module.param():
                    g.zero_()

    def _run_forward(self, call: Call, args: list[Any]) -> Outputs:
        # The module's own generators too: the same dropout mask on every evaluation.
        own = [*_generators(self.module), *(a for a in args if isinstance(a, torch.Generator))]
        with pinned_rng(_device_of(call), own) as draws, working_dtype(call):
            result = self.module.forward(*args)
        outputs = Outputs.of(result, f"{self.name}.forward")
        outputs.random = draws.any
        return outputs

    def forward(self, call: Call) -> Outputs:
        with torch.no_grad():
            return self._run_forward(call, call.fresh())

    def start(self, call: Call) -> ProtocolPass:
        args = call.fresh()
        with torch.no_grad():
            return ProtocolPass(self, call, self._run_forward(call, args), args)


@contextlib.contextmanager
def working_dtype(call: Call) -> Iterator[None]:
    """torch's default dtype set to the call's floating dtype (float32 or float64) while a
    hand-written module runs, and restored after: what it allocates without a dtype
    (``torch.zeros(shape)``, ``torch.empty(shape)``, usual in EE-559 code written for the float32
    default) then follows its inputs, as where the module is used in that precision."""
    dtypes = {t.dtype for t in call.tensors() if t.is_floating_point()}
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    previous = torch.get_default_dtype()
    if dtype not in (torch.float32, torch.float64) or dtype == previous:
        yield
        return
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _same_memory(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _same_outputs(a: list[Tensor | None], b: list[Tensor | None]) -> bool:
    """Bit for bit, NaN where NaN."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if (x is None) != (y is None):
            return False
        if x is not None and (x.shape != y.shape or not torch.equal(torch.nan_to_num(x), torch.nan_to_num(y))):
            return False
    return True


def _check_backward_arity(name: str, module: Any, n_outputs: int) -> None:
    """A backward that cannot take one upstream gradient per output (a loss's backward(prediction,
    target), another framework's protocol) is named before it is called, with the protocols the
    verifier speaks, rather than left to raise a TypeError from inside the caller's code."""
    try:
        signature = inspect.signature(module.backward)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*([None] * n_outputs))
    except TypeError:
        raise TargetError(
            f"{name}.backward{signature} cannot be called with {n_outputs} upstream gradient(s), one per output "
            f"of forward: the protocol is backward(*gradwrtoutput), returning dL/d(input); a loss's backward may "
            "instead take nothing (backward(), the EE-559 loss protocol). Wrap another protocol in an object "
            "that speaks one of these"
        ) from None


def _backward_takes_upstream(module: Any) -> bool:
    """False for the EE-559 loss protocol, ``backward()`` with no argument."""
    try:
        signature = inspect.signature(module.backward)
    except (TypeError, ValueError):
        return True
    kinds = [p.kind for p in signature.parameters.values()]
    return any(
        k
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        )
        for k in kinds
    )


class ProtocolPass(Pass):
    target: ProtocolTarget

    def backward(self, grads: Sequence[Tensor | None], accumulate: bool = False) -> Gradients:
        target, module = self.target, self.target.module
        if not accumulate:
            target.zero_grad()
        notes = []
        given, grads = grads, self._handed(grads)
        with torch.no_grad():
            if target.takes_upstream:
                structured = self.outputs.structured(grads)
                args = structured if isinstance(structured, tuple | list) else (structured,)
                _check_backward_arity(target.name, module, len(args))
                with working_dtype(self.call):
                    result = module.backward(*args)
            else:
                floating = self.outputs.floating()
                out = self.outputs.leaves[floating[0]] if len(floating) == 1 else None
                if out is None or out.numel() != 1:
                    raise TargetError(
                        f"{target.name}.backward() takes no upstream gradient, so {target.name} must be a loss "
                        f"returning one number; its forward returned "
                        f"{[tuple(x.shape) for x in self.outputs.leaves if x is not None]}"
                    )
                upstream = grads[floating[0]]
                with working_dtype(self.call):
                    result = module.backward()
                result = _scale(result, upstream)
                notes.append(
                    f"{target.name}.backward() takes no upstream gradient (the EE-559 loss protocol): its result "
                    f"was multiplied by the upstream gradient the verifier drew"
                )
        if result is None and self.call.tensors():
            notes.append(
                f"{target.name}.backward returned None, where it returns dL/d(input): a missing return statement?"
            )
        self._note_modified(given, grads)
        # The tensors backward returned, as returned: side_effects checks a later call leaves them be.
        self.returned = [r for r in (result if isinstance(result, tuple | list) else [result]) if isinstance(r, Tensor)]
        inputs = _match_gradients(target.name, result, self.call)
        params = [g.detach().clone() for _, _, g in target.named()]
        return Gradients(inputs, params, notes)

    def backward_to_params(self, grads: Sequence[Tensor | None]) -> list[Tensor]:
        """The parameters' gradients from the module's ``backward_to_params`` (which skips the input
        gradient), after zeroing them; the module must take upstream gradients."""
        target, module = self.target, self.target.module
        target.zero_grad()
        with torch.no_grad():
            structured = self.outputs.structured(grads)
            with working_dtype(self.call):
                module.backward_to_params(*(structured if isinstance(structured, tuple | list) else (structured,)))
        return [g.detach().clone() for _, _, g in target.named()]


def has_backward_to_params(target: Any) -> bool:
    """A framework-protocol module with a ``backward_to_params`` (this framework's modules)."""
    return (
        isinstance(target, ProtocolTarget)
        and target.takes_upstream
        and callable(getattr(target.module, "backward_to_params", None))
    )


def _scale(result: Any, upstream: Tensor) -> Any:
    if isinstance(result, Tensor):
        return result * upstream.reshape(()).to(result.dtype)
    if isinstance(result, tuple | list):
        return type(result)(_scale(r, upstream) if r is not None else None for r in result)
    return result


def _match_gradients(name: str, result: Any, call: Call) -> list[Tensor | None]:
    """The gradients ``backward`` returned, one per differentiated input (None where missing)."""
    if isinstance(result, Tensor) or result is None:
        returned: list[Any] = [result]
    elif isinstance(result, tuple | list):
        returned = list(result)
    else:
        raise TargetError(f"{name}.backward returned {type(result).__name__}, expected a Tensor or a tuple of Tensors")
    inputs = call.args[: call.n_inputs]
    floating = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.is_floating_point()]
    if len(returned) == len(inputs):
        by_position = dict(enumerate(returned))
    elif len(returned) == len(floating):
        by_position = dict(zip(floating, returned))
    elif len(returned) == len(call.diff):
        by_position = dict(zip(call.diff, returned))
    else:
        hint = " (for a loss, pass the target as target=...)" if len(returned) < len(floating) else ""
        raise TargetError(
            f"{name}.backward returned {len(returned)} gradient(s), expected one per input ({len(inputs)}) "
            f"or one per floating-point input ({len(floating)}){hint}"
        )
    grads = []
    for i in call.diff:
        g = by_position.get(i)
        if g is not None and not isinstance(g, Tensor):
            raise TargetError(
                f"{name}.backward returned a {type(g).__name__} as the gradient of input[{i}], expected a Tensor"
            )
        if g is not None and tuple(g.shape) != tuple(call.args[i].shape):
            raise ValueError(
                f"{name}.backward returned a gradient of shape {tuple(g.shape)} for input[{i}], "
                f"whose shape is {tuple(call.args[i].shape)}"
            )
        if g is not None and (g.dtype, g.device) != (call.args[i].dtype, call.args[i].device):
            # A gradient in another dtype would pass every value check (a float64 gradient of a
            # float32 input is only more accurate) and then break or promote the backward of the
            # layer before it: the layer's input gradient has the input's dtype and device.
            raise ValueError(
                f"{name}.backward returned a gradient of dtype {g.dtype} on {g.device} for input[{i}], "
                f"which is {call.args[i].dtype} on {call.args[i].device}: a gradient has its input's dtype and device"
            )
        grads.append(None if g is None else g.detach().clone())
    return grads


# -- torch.autograd: Functions and callables ----------------------------------------------------------
class AutogradTarget(Target):
    """A ``torch.autograd.Function`` subclass, a callable, or a ``torch.nn.Module``."""

    supports_second_order = True

    def __init__(self, fn: Any, name: str | None = None, create_graph: bool = False) -> None:
        self.fn = fn
        if isinstance(fn, type) and issubclass(fn, torch.autograd.Function):
            self.kind, self._call = "torch.autograd.Function", fn.apply
        elif isinstance(fn, torch.nn.Module):
            self.kind, self._call = "torch.nn.Module", fn
        else:
            self.kind, self._call = "callable", fn
        self.name = name or _name_of(fn)
        self.create_graph = create_graph

    def parameters(self) -> list[tuple[str, Tensor]]:
        """The module's parameters that require grad; a complex one as its real view (``torch.view_as_real``,
        sharing its storage: shifting the view shifts the parameter), as complex inputs are checked."""
        return [(n, torch.view_as_real(p.detach()) if p.is_complex() else p) for n, p in self.autograd_parameters()]

    def autograd_parameters(self) -> list[tuple[str, Tensor]]:
        """The module's parameters that require grad, as autograd sees them (complex ones complex)."""
        if isinstance(self.fn, torch.nn.Module):
            return [(n, p) for n, p in self.fn.named_parameters() if p.requires_grad]
        return []

    def copy(self, dtype: torch.dtype | None = None) -> AutogradTarget:
        fn = self.fn
        if isinstance(fn, torch.nn.Module):
            try:
                fn = copy.deepcopy(fn)
            except Exception as error:
                raise TargetError(f"{self.name}: copy.deepcopy of the module failed: {error}") from error
            _copy_parameter_hooks(self.fn, fn)
            if dtype is not None:
                _cast_module(fn, dtype)
        return AutogradTarget(fn, self.name, self.create_graph)

    def _run(self, args: list[Any], call: Call) -> Outputs:
        with pinned_rng(_device_of(call), [a for a in args if isinstance(a, torch.Generator)]) as draws:
            result = self._call(*call.handed(args))
        outputs = Outputs.of(result, self.name)
        outputs.random = draws.any
        outputs.leaves, outputs.complex_ = real_leaves(outputs.leaves)
        return outputs

    def forward(self, call: Call) -> Outputs:
        if not self.forward_needs_grad:
            try:
                with torch.no_grad():
                    return self._run(call.fresh(), call)
            except Exception as error:
                try:
                    outputs = self._forward_with_grad(call)
                except Exception:
                    raise error from None
                self.forward_needs_grad = True
                return outputs
        return self._forward_with_grad(call)

    forward_needs_grad = False  # set when the forward raised under torch.no_grad and ran with grad

    def _forward_with_grad(self, call: Call) -> Outputs:
        """Forward with the differentiated inputs requiring grad, its outputs detached: for a target
        that calls torch.autograd.grad inside its forward (forces from an energy, a gradient penalty),
        which needs its input to require grad, as it does in training."""
        args = call.fresh()
        for i in call.diff:
            args[i].requires_grad_(True)
        with torch.enable_grad():
            outputs = self._run(args, call)
        leaves = [None if x is None else x.detach() for x in outputs.leaves]
        return dataclasses.replace(outputs, leaves=leaves)

    def start(self, call: Call) -> AutogradPass:
        args = call.fresh()
        leaves = [args[i].requires_grad_(True) for i in call.diff]
        with torch.enable_grad():
            # The target receives a differentiable copy of each leaf, not the leaf: torch refuses an
            # in-place write into a leaf that requires grad, and a target may write into its input
            # (torch's in-place operations, a Function that marks its input dirty), as it may in a
            # model, whose inputs are rarely leaves. ``side_effects`` judges such a write.
            for i, leaf in zip(call.diff, leaves):
                args[i] = _copy(leaf, differentiable=True)
            outputs = self._run(args, call)
        return AutogradPass(self, call, outputs, args, leaves)


class AutogradPass(Pass):
    target: AutogradTarget

    def __init__(
        self, target: AutogradTarget, call: Call, outputs: Outputs, args: list[Any], leaves: list[Tensor]
    ) -> None:
        super().__init__(target, call, outputs, args)
        self.leaves = leaves

    def backward(self, grads: Sequence[Tensor | None], accumulate: bool = False) -> Gradients:
        params = [p for _, p in self.target.autograd_parameters()]
        given, grads = grads, self._handed(grads)
        pairs = [
            (out, g)
            for out, g in zip(self.outputs.leaves, grads)
            if out is not None and g is not None and out.requires_grad
        ]
        wrt = self.leaves + params
        notes = []
        if not pairs or not wrt:
            found: Sequence[Tensor | None] = [None] * len(wrt)
        else:
            try:
                found = self._autograd(pairs, wrt, retain_graph=not self.once_per_forward)
            except RuntimeError as error:
                if "donated buffers" not in str(error) or self.once_per_forward:
                    raise
                self.once_per_forward = True
                notes.append(
                    "the target's backward runs once per forward (torch.compile's donated buffers): every backward "
                    "call here gets a forward of its own"
                )
            if self.once_per_forward:  # a fresh forward, whose graph this backward call consumes
                fresh = self.target.start(self.call)
                fresh_pairs = [(out, g) for out, (_, g) in zip(_requiring(fresh.outputs.leaves, grads), pairs)]
                found = fresh._autograd(fresh_pairs, fresh.leaves + params, retain_graph=False)
        self._note_modified(given, grads)
        # A sparse gradient (torch.nn.Embedding(sparse=True)) holds the same values as its dense form; a
        # complex parameter's gradient is checked as its real view, as the parameter is.
        found = [g if g is None or g.layout == torch.strided else g.to_dense() for g in found]
        found = [torch.view_as_real(g.resolve_conj()) if g is not None and g.is_complex() else g for g in found]
        found = [None if g is None else (g if self.target.create_graph else g.detach().clone()) for g in found]
        floating = [out for out in self.outputs.leaves if out is not None and out.is_floating_point()]
        if wrt and floating and not any(out.requires_grad for out in floating):
            notes.append(
                "no output requires grad: the target cuts autograd's path from its inputs (torch.no_grad, "
                ".detach(), .item(), a trip through numpy), so autograd finds no gradient"
            )
        return Gradients(list(found[: len(self.leaves)]), list(found[len(self.leaves) :]), notes)

    once_per_forward = False  # its graph refused a second backward (torch.compile's donated buffers)

    def _autograd(self, pairs: Sequence[tuple[Tensor, Tensor]], wrt: list[Tensor], retain_graph: bool) -> Sequence[Any]:
        try:
            with torch.enable_grad():
                return torch.autograd.grad(
                    [o for o, _ in pairs],
                    wrt,
                    [g for _, g in pairs],
                    retain_graph=retain_graph,
                    allow_unused=True,
                    create_graph=self.target.create_graph,
                )
        except RuntimeError as error:
            explained = self._explained(str(error), pairs if retain_graph else None)
            if explained is None:
                raise
            raise TargetError(explained) from None

    def _explained(self, message: str, pairs: Sequence[tuple[Tensor, Tensor]] | None) -> str | None:
        """What torch's engine refused in a backward's results (too few gradients, a gradient of the
        wrong shape, device or kind), or a custom op without an autograd formula, said as a wrong
        backward: the Function, the input, what it got and what it expected. None for any other error.
        ``pairs``: the outputs and upstream gradients, to find which input a complex gradient went to
        (None where the graph cannot be run again)."""
        name = self.target.name
        match = _NO_FORMULA.search(message)
        if match:
            op = _qualified(match["op"])
            return (
                f"{name}: the custom op {op} has no autograd formula registered (register_autograd), so torch "
                f"cannot differentiate it and there is no backward to check; register one with "
                f"torch.library.register_autograd({op!r}, backward, setup_context=...)"
            )
        match = _WRONG_COUNT.search(message) or _NOT_NONE.search(message) or _WRONG_GRADIENT.search(message)
        if match is None and not _COMPLEX_MISMATCH.search(message):
            return None
        # A Function target's forward runs without a graph: the only Function in it is the target.
        function = self.target.fn.__name__ if self.target.kind == "torch.autograd.Function" else None
        ours = function is not None and (match is None or match["function"] == function)
        inner = f"{match['function']}, a torch.autograd.Function it calls," if match else "a Function it calls"
        who = f"{name}.backward" if ours else f"{name}: the backward of {inner}"
        if match is None:  # a complex gradient for a real input, or the reverse (torch names neither)
            found = self._complex_gradient(pairs) if ours else None
            if found is None:
                return (
                    f"{who} returned a complex gradient for a real input, or a real one for a complex input: a "
                    "gradient is complex exactly where its input is"
                )
            i, g = found
            x = self.call.handed(self.args)[i]
            kind = "complex" if x.is_complex() else "real"
            return (
                f"{who} returned a {str(g.dtype).removeprefix('torch.')} gradient for input[{i}], which is "
                f"{str(x.dtype).removeprefix('torch.')}: a {kind} input's gradient is {kind}"
            )
        if match.re is _WRONG_COUNT:
            return (
                f"{who} returned {match['got']} gradient(s), expected {match['expected']}: one per argument of "
                "forward (after ctx), None for an argument that needs none (a number, a flag, an integer tensor)"
            )
        if match.re is _NOT_NONE:
            position = int(match["position"]) - 1  # torch counts from 1 here
            return (
                f"{who} returned a gradient at position {position}, where forward's argument {position} is not a "
                "tensor: return None there"
            )
        # torch counts the forward's tensor arguments only.
        index = int(match["index"])
        tensors = [i for i, a in enumerate(self.call.handed(self.args)) if isinstance(a, Tensor)]
        where = f"input[{tensors[index]}]" if ours and index < len(tensors) else f"its tensor argument #{index}"
        if match["got_shape"] is not None:
            got, expected = _shape(match["got_shape"]), _shape(match["expected_shape"])
            return f"{who} returned a gradient of shape {got} for {where}, whose shape is {expected}"
        return (
            f"{who} returned a gradient on {match['got_device']} for {where}, which is on {match['expected_device']}: "
            "a gradient has its input's device"
        )

    def _complex_gradient(self, pairs: Sequence[tuple[Tensor, Tensor]] | None) -> tuple[int, Tensor] | None:
        """For a Function target whose backward returned a complex gradient for a real input (or the
        reverse): (the input's position, that gradient), found by calling its backward again on the
        upstream gradients its node received; None where that cannot be done."""
        fn = self.target.fn
        node = next(
            (n for out, _ in pairs or () for n in _nodes_below(out.grad_fn, 2) if getattr(n, "_forward_cls", 0) is fn),
            None,
        )
        if node is None:
            return None
        received: list[tuple[Any, ...]] = []
        handle = node.register_prehook(lambda grads: received.append(tuple(grads)))
        try:
            with torch.enable_grad():
                torch.autograd.grad(
                    [o for o, _ in pairs or ()],
                    self.leaves,
                    [g for _, g in pairs or ()],
                    retain_graph=True,
                    allow_unused=True,
                )
        except RuntimeError:
            pass
        finally:
            handle.remove()
        if not received:
            return None
        upstream = [
            torch.zeros(m.shape, dtype=m.dtype, device=m.device) if g is None else g
            for g, m in zip(received[-1], node._input_metadata)
        ]
        try:
            returned = node.apply(*upstream)
        except Exception:
            return None
        handed = self.call.handed(self.args)
        for i, (x, g) in enumerate(zip(handed, returned if isinstance(returned, tuple) else (returned,))):
            if isinstance(x, Tensor) and isinstance(g, Tensor) and (x.is_floating_point() or x.is_complex()):
                if g.is_complex() != x.is_complex():
                    return i, g
        return None

    def captured(self) -> list[Tensor]:
        """Tensors that require grad and that the outputs depend on, other than the differentiated
        inputs and parameters: tensors the target reads from elsewhere (a closure's, a global), whose
        gradients autograd would compute but no check compares."""
        known = {id(t) for t in self.leaves} | {id(p) for _, p in self.target.autograd_parameters()}
        found: dict[int, Tensor] = {}
        stack = [out.grad_fn for out in self.outputs.leaves if out is not None and out.grad_fn is not None]
        seen: set[int] = set()
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            variable = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf
            if isinstance(variable, Tensor) and id(variable) not in known:
                found.setdefault(id(variable), variable)
            stack.extend(next_node for next_node, _ in node.next_functions)
        return list(found.values())


# What torch's engine says when a backward's results do not fit its inputs (autograd's
# python_function.cpp and engine.cpp), and when a torch.library op has no autograd formula.
_WRONG_COUNT = re.compile(
    r"function (?P<function>\w+)Backward returned an incorrect number of gradients "
    r"\(expected (?P<expected>\d+), got (?P<got>\d+)\)"
)
_NOT_NONE = re.compile(
    r"function (?P<function>\w+)Backward returned a gradient different than None at position (?P<position>\d+)"
)
_WRONG_GRADIENT = re.compile(
    r"Function (?P<function>\w+)Backward returned an invalid gradient at index (?P<index>\d+) - "
    r"(?:got (?P<got_shape>\[[\d, ]*\]) but expected shape compatible with (?P<expected_shape>\[[\d, ]*\])"
    r"|expected device (?P<expected_device>\S+) but got (?P<got_device>\S+))"
)
_COMPLEX_MISMATCH = re.compile(r"input_is_complex == grad_is_complex")
_NO_FORMULA = re.compile(r"Trying to backward through (?P<op>\S+) but no autograd formula was registered")


def _shape(listed: str) -> tuple[int, ...]:
    """torch's ``[3, 4]`` as ``(3, 4)``, as the verifier's messages show shapes."""
    return tuple(int(s) for s in listed.strip("[]").split(",") if s.strip())


def _qualified(overload: str) -> str:
    """``probe.noag.default`` (an op overload's name in torch's messages) as ``probe::noag``."""
    parts = overload.split(".")
    return f"{parts[0]}::{parts[1]}" if len(parts) >= 2 else overload


def _nodes_below(node: Any, depth: int) -> Iterator[Any]:
    """``node`` and the autograd nodes up to ``depth`` edges below it (a complex output's real view
    puts one node above the Function's)."""
    if node is None:
        return
    yield node
    if depth:
        for below, _ in node.next_functions:
            yield from _nodes_below(below, depth - 1)


_COMPLEX_OF = {torch.float64: torch.complex128, torch.float32: torch.complex64, torch.float16: torch.complex32}


def _cast_module(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """``module.to(dtype)``, but a complex parameter or buffer goes to the complex dtype of that
    precision (``Module.to`` would cast it to ``dtype``, discarding its imaginary part)."""

    def convert(t: Tensor) -> Tensor:
        if t.is_complex():
            return t.to(_COMPLEX_OF.get(dtype, t.dtype))
        return t.to(dtype) if t.is_floating_point() else t

    module._apply(convert)


def _requiring(leaves: Sequence[Tensor | None], grads: Sequence[Tensor | None]) -> list[Tensor]:
    """The outputs among ``leaves`` that get an upstream gradient and require grad, in order."""
    return [out for out, g in zip(leaves, grads) if out is not None and g is not None and out.requires_grad]


def _copy_parameter_hooks(source: torch.nn.Module, copied: torch.nn.Module) -> None:
    """Register on ``copied``'s parameters the hooks registered on ``source``'s (``p.register_hook``),
    which ``copy.deepcopy`` leaves behind: autograd applies them to the gradient it returns, so they
    are part of the backward under test."""
    for original, twin in zip(source.parameters(), copied.parameters()):
        for hook in (original._backward_hooks or {}).values():
            twin.register_hook(hook)


def _name_of(fn: Any) -> str:
    qualified = custom_op_name(fn)
    if qualified is not None:
        return qualified
    if isinstance(fn, torch.nn.Module) or not hasattr(fn, "__name__"):
        name = type(fn).__name__
    else:
        name = fn.__qualname__ if hasattr(fn, "__qualname__") else fn.__name__
    owner = getattr(fn, "__self__", None)  # MyFunction.apply
    if isinstance(owner, type):
        name = f"{owner.__name__}.apply"
    return name


def custom_op_name(fn: Any) -> str | None:
    """A ``torch.library`` op's qualified name, ``namespace::name`` (``probe::mysin``), or None for
    anything else: every ``@torch.library.custom_op`` is a ``CustomOpDef`` object, so its class name
    would name all of them alike. Covers the op itself and ``torch.ops.probe.mysin`` (an overload
    packet, whose ``__name__`` is not the op's); an overload (``.default``) has its own ``__qualname__``."""
    if isinstance(fn, torch._library.custom_ops.CustomOpDef):
        return fn._qualname
    if isinstance(fn, torch._ops.OpOverloadPacket):
        return fn._qualified_op_name
    return None


def _refuse_part_of_the_protocol(target: Any) -> None:
    """A hand-written module that has some of forward, backward and param() but not all: a
    :class:`TargetError` naming what is missing. (With backward and __call__ but no forward, it
    would otherwise be checked as a plain callable through autograd, its own backward never run.)"""
    if isinstance(target, torch.nn.Module | Tensor) or inspect.isroutine(target):
        return  # a torch module without param() is differentiated by autograd, as intended
    has = [m for m in ("forward", "backward", "param") if callable(getattr(target, m, None))]
    if not has or has == ["forward"]:
        return
    kind = type(target).__name__
    missing = [m for m in ("forward", "backward", "param") if m not in has]
    listed = " and ".join(f"{m}()" for m in has)
    fixes = {
        "forward": "forward(*input) is what the protocol calls, and a __call__ alone is not it: rename it forward",
        "backward": "backward(*gradwrtoutput) returns dL/d(input) and adds dL/d(parameter) into param()'s gradients",
        "param": "for a module without parameters, def param(self): return []",
    }
    raise TargetError(
        f"{kind} has {listed} but no {' or '.join(f'{m}()' for m in missing)}: a hand-written module needs all "
        f"three ({'; '.join(fixes[m] for m in missing)}); to check it as a plain callable through autograd "
        "instead, pass lambda *x: obj(*x)"
    )


def as_target(target: Any, name: str | None = None) -> Target:
    """The adapter for ``target``, or a :class:`TargetError` saying what was expected."""
    if isinstance(target, Target):
        return target
    if isinstance(target, torch.autograd.Function):
        # Called, an instance is taken for a legacy (non-static) Function, which torch refuses;
        # a new-style Function keeps no state in its instances: its class is the target.
        target = type(target)
    if isinstance(target, type):
        if issubclass(target, torch.autograd.Function):
            return AutogradTarget(target, name)
        raise TargetError(
            f"{target.__name__} is a class: pass an instance (a module), a torch.autograd.Function subclass, "
            f"or a callable"
        )
    # A torch.nn.Module too: one that defines backward and param() is an EE-559 module written on
    # torch.nn.Module, whose hand-written backward autograd would never call.
    if all(callable(getattr(target, m, None)) for m in ("forward", "backward", "param")):
        return ProtocolTarget(target, name)
    _refuse_part_of_the_protocol(target)
    if callable(target):
        return AutogradTarget(target, name)
    raise TargetError(
        f"{type(target).__name__} object is not a target: expected an object with forward/backward/param(), "
        f"a torch.autograd.Function subclass, or a callable on tensors"
    )
