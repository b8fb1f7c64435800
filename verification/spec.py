"""Specs: how to build a target, draw its arguments and inputs, and what to check it against.

A :class:`Spec` is data, and it describes any target the verifier accepts: a framework module
class, an EE-559 protocol class, a ``torch.autograd.Function`` subclass, a plain function (a
``torch.library`` custom op too), or a ``torch.nn.Module`` class. ``Spec.cases()`` is a
hypothesis strategy of :class:`Case`: the arguments and input shapes are drawn by hypothesis
(so failures shrink), the values from a seeded generator and the spec's named domains (so a
case replays from JSON). The framework's own specs (``verification/specs/``) are Specs too.
"""

from __future__ import annotations

import copy
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from .domains import REAL, Domain
from .strategies import as_strategy
from .targets import custom_op_name

# (prediction, generator, the case's constructor arguments) -> target; the arguments let a
# target follow them (CrossEntropyLoss's ignore_index). Makers that ignore them may omit them.
TargetMaker = Callable[..., Tensor]


def _make_target(maker: TargetMaker, prediction: Tensor, generator: torch.Generator, kwargs: dict[str, Any]) -> Tensor:
    try:
        takes_kwargs = len(inspect.signature(maker).parameters) >= 3
    except (TypeError, ValueError):
        takes_kwargs = True
    return maker(prediction, generator, kwargs) if takes_kwargs else maker(prediction, generator)


DEFAULT_DTYPES = (torch.float64, torch.float32)
DEFAULT_DEVICES = ("cpu", "cuda")
# The options of check_gradients a spec may set; the runner sets the others (seed, name, checks, target).
# forward_mode and batched (True) add those opt-in checks for a target that does not declare them
# (a callable using a Function with jvp, a module under torch.vmap).
SPEC_OPTIONS = ("order", "nondet_tol", "eps", "safety", "full_jacobian_limit", "probes", "forward_mode", "batched")
OPT_IN_CHECKS = ("forward_mode", "batched")


@dataclass(frozen=True)
class Input:
    """One tensor argument: a shape (or a strategy of shapes) and the domain its values come from.

    ``requires_grad=False`` passes the tensor through undifferentiated (a mask, a fixed table);
    by default every floating-point tensor argument is differentiated. ``complex=True`` makes it
    complex (complex128 in a float64 case, complex64 in float32), its real and imaginary parts each
    drawn from ``domain``.
    """

    shape: st.SearchStrategy[tuple[int, ...]] | tuple[int, ...]
    domain: Domain = REAL
    requires_grad: bool = True
    complex: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.shape, st.SearchStrategy):
            shape = self.shape
            if not isinstance(shape, tuple | list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
            ):
                raise ValueError(
                    f"Input: expected a shape (a tuple of sizes >= 0) or a hypothesis strategy of shapes, got {shape!r}"
                )
            object.__setattr__(self, "shape", tuple(shape))
        if not isinstance(self.domain, Domain):
            raise TypeError(
                f"Input: expected a verification.domains.Domain (REAL, POSITIVE, UNIT, away_from(0.0), ...), "
                f"got {self.domain!r}"
            )


# -- targets of losses ---------------------------------------------------------------------------
def values(domain: Domain) -> TargetMaker:
    """A target of the prediction's shape with values from ``domain``."""

    def make(prediction: Tensor, generator: torch.Generator, kwargs: dict[str, Any] | None = None) -> Tensor:
        return domain.sample(tuple(prediction.shape), generator)

    make.description = f"values({domain})"  # type: ignore[attr-defined]
    return make


def offset(domain: Domain) -> TargetMaker:
    """target = prediction - d, d from ``domain``: keeps |prediction - target| off a kink."""

    def make(prediction: Tensor, generator: torch.Generator, kwargs: dict[str, Any] | None = None) -> Tensor:
        return prediction.double().cpu() - domain.sample(tuple(prediction.shape), generator)

    make.description = f"prediction - {domain}"  # type: ignore[attr-defined]
    return make


def class_indices(dim: int = 1) -> TargetMaker:
    """Integer class indices in ``[0, prediction.shape[dim])``, the prediction's shape without ``dim``."""

    def make(prediction: Tensor, generator: torch.Generator, kwargs: dict[str, Any] | None = None) -> Tensor:
        shape = tuple(prediction.shape[:dim]) + tuple(prediction.shape[dim + 1 :])
        return torch.randint(0, prediction.shape[dim], shape, generator=generator)

    make.description = "class indices"  # type: ignore[attr-defined]
    return make


def _randomize_parameters(module: Any, generator: torch.Generator) -> None:
    # Random parameters, never the initialiser's ones and zeros, so a backward that confuses
    # weight and bias, or drops a factor of the weight, cannot pass by luck.
    if callable(getattr(module, "named_param", None)):
        params = [p for _, p, _ in module.named_param()]
    elif _protocol(module):  # another EE-559 framework, on torch.nn.Module too: [parameter, gradient] pairs
        params = [pair[0] for pair in module.param()]
    elif isinstance(module, torch.nn.Module):
        params = [p for p in module.parameters() if p.is_floating_point()]
    else:
        return
    with torch.no_grad():
        for p in params:
            p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-1.0, 1.0, generator=generator))


def _protocol(module: Any) -> bool:
    """An EE-559 module (forward, backward, param()), written on torch.nn.Module or not."""
    return all(callable(getattr(module, m, None)) for m in ("forward", "backward", "param"))


def _move(module: Any, device: str | torch.device, dtype: torch.dtype) -> None:
    if callable(getattr(module, "to", None)):
        module.to(device=device, dtype=dtype)
        if not _protocol(module) or all(p.dtype == dtype for pair in module.param() for p in pair):
            return
    # An EE-559 module without .to(), or on torch.nn.Module, whose .to() moves Parameters and buffers
    # only: every floating-point tensor it holds, cast in place.
    from .targets import _cast_tree

    _cast_tree(module, dtype, {})


def _declared_at() -> tuple[str, str, int]:
    """(module name, file, line) of the code that declared a spec: the first frame outside this
    module and ``dataclasses`` (discovery collects a module's own specs, not imported ones)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "dataclasses", "verification.registry"):
        frame = frame.f_back
    if frame is None:
        return "", "", 0
    return frame.f_globals.get("__name__", ""), frame.f_code.co_filename, frame.f_lineno


def _is_function_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.autograd.Function)


@dataclass(repr=False)
class Spec:
    """How to verify one target.

    Args:
        module: what is verified. A class (a framework or EE-559 module, a ``torch.nn.Module``)
            is instantiated with the drawn ``kwargs``; a ``torch.autograd.Function`` subclass,
            a function (a ``torch.library`` custom op) or an object is called as it is, and then
            ``kwargs`` only feed ``inputs``.
        kwargs: arguments, each a strategy or a fixed value; or one strategy of whole dicts,
            for arguments that depend on each other (groups and channels).
        inputs: the call's positional arguments, given the drawn kwargs: an :class:`Input` per
            tensor (shape strategy, named value domain, kink margins), any other value passed
            through as it is (a flag, a size); or a fixed list.
        twin: builds the ``torch.nn`` reference from the built instance (framework modules:
            ``lambda m: torch.nn.Linear(m.in_features, ...)``). Declaring it registers it with
            :func:`verification.twins.register_twin`, the one twin registry.
        target: for losses, makes the target (passed after the inputs) from the prediction,
            the case's generator and, if it takes them, the case's kwargs.
        tensors: kwargs drawn as (nested) lists of numbers, so a case stays JSON and replays,
            and passed to the constructor as float64 tensors (class weights).
        modes: ``"train"`` and/or ``"eval"``, drawn per case (modules).
        prepare: called on a fresh instance with the case's generator (random running stats).
        randomize_parameters: draw the instance's parameters uniformly in [-1, 1].
        random: the module draws random numbers from ``module.generator``; the checker
            re-seeds it before every forward so finite differences see one fixed function.
        kinks: points where the derivative jumps, documented (and kept away from by the domains).
        semantics: an extra property of the forward (e.g. Dropout's), given a built case;
            raises ``AssertionError`` when it does not hold.
        case_share: the share of the profile's cases drawn for this spec, below 1 for specs
            whose every case is a small network (attention, recurrence, a transformer block):
            each of their many parameter tensors is a separate finite difference over many
            operations, so a case costs several times another module's.
        name: defaults to the class or function name.
        reference: computes the same function from the same arguments with plain torch ops: a
            callable (``torch.nn.functional.layer_norm`` wrapped to the target's signature), a
            ``torch.autograd.Function``, or a ``torch.nn.Module`` class, instantiated with the
            drawn kwargs (its parameters are then set to the target's).
        build: ``build(**kwargs)`` makes the target, when calling ``module`` is not how.
        dtypes: the precisions checked. float64 gets every check; each lower one (float32,
            float16, bfloat16) is judged against the float64 truth (``low_precision``, reported
            under the dtype's name), plus ``low_precision_checks``.
        devices: where to check, each where available (``"cuda"`` is skipped without a GPU,
            unless asked for explicitly).
        options: options of :func:`~verification.check_gradients` for every case: ``order``,
            ``nondet_tol``, ``eps``, ``safety``, ``full_jacobian_limit``, ``probes``; and
            ``forward_mode=True``, ``batched=True`` to run those checks on a target that does not
            declare them (they run anyway for a Function that defines ``jvp`` or declares vmap support).
        benchmark: size name -> fixed kwargs (every input shape then fixed), for
            ``python -m benchmarks``: the target against its reference at these sizes.
        time_limit: seconds for verifying the spec on one device (a hang is a failure, not a
            stuck run); the command line can override it.
        low_precision_checks: the checks run in each lower precision. Default: for a Function,
            a callable or a ``torch.nn.Module`` (whose low-precision kernels are often separate
            code), ``low_precision``, ``layouts`` and ``determinism``; for a framework-protocol
            module (the same torch code in every precision), ``low_precision``.
    """

    module: Any
    kwargs: dict[str, Any] | st.SearchStrategy[dict[str, Any]] = field(default_factory=dict)
    inputs: Callable[[dict[str, Any]], Sequence[Any]] | Sequence[Any] = ()
    twin: Callable[[Any], torch.nn.Module] | None = None
    target: TargetMaker | None = None
    tensors: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("train",)
    prepare: Callable[[Any, torch.Generator], None] | None = None
    randomize_parameters: bool = True
    random: bool = False
    kinks: str = ""
    semantics: Callable[[Built], None] | None = None
    name: str = ""
    case_share: float = 1.0
    reference: Any = None
    build: Callable[..., Any] | None = None
    dtypes: tuple[torch.dtype, ...] = DEFAULT_DTYPES
    devices: tuple[str, ...] = DEFAULT_DEVICES
    options: dict[str, Any] = field(default_factory=dict)
    benchmark: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_limit: float | None = None
    low_precision_checks: tuple[str, ...] | None = None
    origin: tuple[str, str, int] = field(default=("", "", 0), compare=False)
    _cases: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._cases = None  # derived from the fields: never carried over by dataclasses.replace
        if not self.origin[0]:
            self.origin = _declared_at()
        if not self.name:
            qualified = custom_op_name(self.module)  # "probe::mysin": ":" would split a pytest node id
            if qualified:
                self.name = qualified.replace("::", ".")
            else:
                self.name = getattr(self.module, "__name__", "") or type(self.module).__name__
            if self.name == "<lambda>":
                raise ValueError("Spec of a lambda: give it a name=")
        self.dtypes = tuple(self.dtypes)
        self.devices = tuple(self.devices)
        self._validate()
        if self.twin is not None and isinstance(self.module, type):
            from .twins import register_twin

            register_twin(self.module, self.twin)

    def _validate(self) -> None:
        where = f"Spec {self.name!r}"
        if not self.dtypes or not all(isinstance(d, torch.dtype) and d.is_floating_point for d in self.dtypes):
            raise ValueError(f"{where}: dtypes must be floating-point torch dtypes, got {self.dtypes!r}")
        unknown = sorted(set(self.devices) - {"cpu", "cuda"})
        if unknown or not self.devices:
            raise ValueError(f"{where}: devices must be 'cpu' and/or 'cuda', got {self.devices!r}")
        unknown = sorted(set(self.options) - set(SPEC_OPTIONS))
        if unknown:
            raise ValueError(f"{where}: unknown options {unknown}; a spec may set {list(SPEC_OPTIONS)}")
        for name in OPT_IN_CHECKS:
            if not isinstance(self.options.get(name, False), bool):
                raise TypeError(f"{where}: option {name} must be True or False, got {self.options[name]!r}")
        if self.twin is not None and self.reference is not None:
            raise ValueError(f"{where}: give twin (built from the instance) or reference, not both")
        if self.low_precision_checks is not None:
            from .checks import CHECKS

            unknown = sorted(set(self.low_precision_checks) - set(CHECKS))
            if unknown or "low_precision" not in self.low_precision_checks:
                raise ValueError(
                    f"{where}: low_precision_checks must include 'low_precision' and name checks of {list(CHECKS)}"
                )
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"{where}: time_limit must be a positive number of seconds, got {self.time_limit!r}")
        if not callable(self.inputs) and not isinstance(self.inputs, Sequence):
            raise TypeError(f"{where}: inputs must be a list of arguments or a function of the kwargs")

    # -- what a case is made of ---------------------------------------------------------------------
    @property
    def is_loss(self) -> bool:
        return self.target is not None

    @property
    def order(self) -> int:
        return int(self.options.get("order", 1))

    def arguments(self, kwargs: dict[str, Any]) -> list[Any]:
        """The call's positional arguments for these kwargs: :class:`Input` entries and plain values."""
        return list(self.inputs(kwargs) if callable(self.inputs) else self.inputs)

    def tensor_inputs(self, kwargs: dict[str, Any]) -> list[Input]:
        return [a for a in self.arguments(kwargs) if isinstance(a, Input)]

    def kwargs_strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        if isinstance(self.kwargs, st.SearchStrategy):
            return self.kwargs
        return st.fixed_dictionaries({k: as_strategy(v) for k, v in self.kwargs.items()})

    def cases(self) -> st.SearchStrategy[Case]:
        """Hypothesis strategy of concrete cases for this target."""
        if self._cases is None:
            self._cases = st.composite(_draw_case)(self)
        return self._cases

    def simplest_case(self) -> Case:
        """The simplest case (hypothesis' minimal example: fewest dimensions, smallest sizes,
        simplest arguments), the same one every call and every run."""
        from hypothesis import Phase, find, settings

        # Generate and shrink only: the explain phase, which annotates a failing example, would
        # take most of the time and change nothing here.
        quick = settings(database=None, derandomize=True, phases=[Phase.generate, Phase.shrink])
        return find(self.cases(), lambda case: True, settings=quick)

    def make(self, kwargs: dict[str, Any]) -> Any:
        """The target for these kwargs: a fresh instance, or the Function or callable itself."""
        if self.build is not None:
            return self.build(**kwargs)
        if _is_function_class(self.module):
            return self.module
        if isinstance(self.module, type):
            return self.module(**kwargs)
        if isinstance(self.module, torch.nn.Module):
            return copy.deepcopy(self.module)  # the caller's module is never moved or cast
        return self.module

    def reference_for(self, built: Built) -> Any:
        """The reference of a built case: the registered twin of the instance, or ``reference``."""
        if self.twin is not None:
            from .twins import twin_of

            # A framework module's parameters and buffers are copied by the twin registry's
            # copy_state; any other's (a torch.nn.Module, another EE-559 framework's module) by
            # check_gradients, by name, else by position.
            framework = callable(getattr(built.module, "named_param", None))
            return twin_of(built.module, copy=framework and not isinstance(built.module, torch.nn.Module))
        reference = self.reference
        if isinstance(reference, type) and issubclass(reference, torch.nn.Module):
            assert built.case is not None
            return reference(**built.case.constructor_kwargs())
        return reference

    def lower_precision_checks(self, target: Any) -> tuple[str, ...]:
        """The checks run in each precision below float64 (see ``low_precision_checks``)."""
        if self.low_precision_checks is not None:
            return tuple(self.low_precision_checks)
        if callable(getattr(target, "param", None)) and not isinstance(target, torch.nn.Module):
            return ("low_precision",)
        return ("low_precision", "layouts", "determinism")

    @property
    def has_reference(self) -> bool:
        return self.twin is not None or self.reference is not None

    def case_for_size(self, size: str) -> Case:
        """The benchmark size ``size`` as a case (its kwargs fixed, so every input shape is fixed)."""
        if size not in self.benchmark:
            raise KeyError(f"{self.name}: no benchmark size {size!r}; it has {sorted(self.benchmark)}")
        kwargs = dict(self.benchmark[size])
        shapes = []
        for i, entry in enumerate(self.tensor_inputs(kwargs)):
            if isinstance(entry.shape, st.SearchStrategy):
                raise ValueError(
                    f"{self.name}: benchmark size {size!r} leaves input {i}'s shape drawn; its kwargs must fix it"
                )
            shapes.append(tuple(entry.shape))
        return Case(self, kwargs, shapes, seed=0, mode="train")

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' pretty-printer
        printer.text(str(self))


def _draw_case(draw: Callable[[st.SearchStrategy[Any]], Any], spec: Spec) -> Case:
    kwargs = draw(spec.kwargs_strategy())
    shapes = [tuple(draw(as_strategy(i.shape))) for i in spec.tensor_inputs(kwargs)]
    mode = draw(st.sampled_from(spec.modes))
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    return Case(spec, kwargs, shapes, seed, mode)


@dataclass
class Built:
    """A case made concrete on a dtype and device.

    ``module`` is the target (an instance, or the Function or callable), ``inputs`` the call's
    positional arguments (tensors and passed-through values), ``target`` a loss's target.
    """

    module: Any
    inputs: list[Any]
    target: Tensor | None
    generator_seed: int
    case: Case | None = None


@dataclass(repr=False)
class Case:
    """One drawn case: arguments, input shapes, value seed and mode."""

    spec: Spec
    kwargs: dict[str, Any]
    shapes: list[tuple[int, ...]]
    seed: int
    mode: str = "train"

    def build(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Built:
        """Construct the target and draw inputs (values drawn in float64, then cast)."""
        generator = torch.Generator().manual_seed(self.seed)
        spec = self.spec
        module = spec.make(self.constructor_kwargs())
        instance = not _is_function_class(module) and (
            isinstance(module, torch.nn.Module) or callable(getattr(module, "param", None))
        )
        if instance:
            if spec.randomize_parameters:
                _randomize_parameters(module, generator)
            if spec.prepare is not None:
                spec.prepare(module, generator)
            if spec.random:
                module.generator.manual_seed(self.seed)  # the same random stream on every build
            _move(module, device, dtype)
            if callable(getattr(module, "train", None)):
                module.train(self.mode == "train")
        arguments = spec.arguments(self.kwargs)
        tensors = [a for a in arguments if isinstance(a, Input)]
        if len(tensors) != len(self.shapes):
            raise ValueError(
                f"{spec.name}: the case has {len(self.shapes)} input shapes, the spec declares {len(tensors)} inputs"
            )
        drawn = iter(_draw(entry, shape, generator) for entry, shape in zip(tensors, self.shapes))
        inputs64 = [next(drawn) if isinstance(a, Input) else a for a in arguments]
        target = None
        if spec.target is not None:
            first = next(x for x in inputs64 if isinstance(x, Tensor))
            target = _make_target(spec.target, first, generator, self.kwargs)
            if target.is_floating_point():
                target = target.to(device=device, dtype=dtype)
            else:
                target = target.to(device=device)
        partial = any(not a.requires_grad for a in tensors)
        inputs = []
        for argument, value in zip(arguments, inputs64):
            if isinstance(argument, Input):
                # Integer inputs (indices) are passed as they are: only floating inputs take the dtype.
                if value.is_complex():
                    value = value.to(device=device, dtype=_complex_dtype(spec.name, dtype))
                else:
                    value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
                if partial and (value.is_floating_point() or value.is_complex()) and argument.requires_grad:
                    value.requires_grad_(True)
            inputs.append(value)
        return Built(module, inputs, target, self.seed, self)

    def constructor_kwargs(self) -> dict[str, Any]:
        """The drawn kwargs, with the spec's ``tensors`` made float64 tensors."""
        return {
            k: torch.tensor(v, dtype=torch.float64) if k in self.spec.tensors and v is not None else v
            for k, v in self.kwargs.items()
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "module": self.spec.name,
                "kwargs": self.kwargs,
                "shapes": [list(s) for s in self.shapes],
                "seed": self.seed,
                "mode": self.mode,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, specs: dict[str, Spec]) -> Case:
        data = json.loads(text)
        spec = specs[data["module"]]
        return cls(spec, data["kwargs"], [tuple(s) for s in data["shapes"]], data["seed"], data["mode"])

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        shapes = ", ".join(str(s) for s in self.shapes)
        return f"{self.spec.name}({args}) mode={self.mode} inputs={shapes} seed={self.seed}"

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' pretty-printer
        printer.text(str(self))


def spec_fields() -> list[str]:
    """The keyword arguments of :class:`Spec` (the decorator takes the same, but ``module``)."""
    return [f.name for f in fields(Spec) if not f.name.startswith("_") and f.name not in ("module", "origin")]


_COMPLEX_DTYPES = {torch.float64: torch.complex128, torch.float32: torch.complex64, torch.float16: torch.complex32}


def _draw(entry: Input, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """One input's values in float64 (complex128 for ``complex=True``: real, then imaginary parts)."""
    real = entry.domain.sample(shape, generator)
    if not entry.complex:
        return real
    return torch.complex(real.double(), entry.domain.sample(shape, generator).double())


def _complex_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    if dtype not in _COMPLEX_DTYPES:
        raise ValueError(
            f"{name}: an Input(complex=True) has no complex dtype of {str(dtype).replace('torch.', '')}; "
            f"leave it out of the spec's dtypes (complex dtypes: complex128, complex64, complex32)"
        )
    return _COMPLEX_DTYPES[dtype]
