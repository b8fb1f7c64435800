"""Specs: how to construct each module, draw its inputs, and build its ``torch.nn`` twin.

A :class:`Spec` is data. ``Spec.cases()`` is a hypothesis strategy of :class:`Case`: the
constructor arguments and input shapes are drawn by hypothesis (so failures shrink), the
values from a seeded generator and the spec's named domains (so a case replays from JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from .domains import REAL, Domain
from .strategies import as_strategy

# (prediction, generator, the case's constructor arguments) -> target; the arguments let a
# target follow them (CrossEntropyLoss's ignore_index). Makers that ignore them may omit them.
TargetMaker = Callable[..., Tensor]


@dataclass(frozen=True)
class Input:
    """One forward input: a shape strategy and the domain its values come from."""

    shape: st.SearchStrategy[tuple[int, ...]] | tuple[int, ...]
    domain: Domain = REAL


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
    for _, p, _ in module.named_param():
        p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-1.0, 1.0, generator=generator))


@dataclass(repr=False)
class Spec:
    """How to verify one module class.

    Args:
        module: the class under test.
        kwargs: constructor arguments, each a strategy or a fixed value; or one strategy of
            whole dicts, for arguments that depend on each other (groups and channels).
        inputs: given the drawn kwargs, one :class:`Input` per forward input.
        twin: builds the ``torch.nn`` twin from an instance (``None``: no twin exists).
        target: for losses, makes the target from the prediction, the case's generator and
            its constructor arguments.
        tensors: constructor arguments drawn as (nested) lists of numbers, so a case stays JSON
            and replays, and passed to the constructor as float64 tensors (class weights).
        modes: ``"train"`` and/or ``"eval"``, drawn per case.
        prepare: called on a fresh module with the case's generator (random running stats).
        random: the module draws random numbers from ``module.generator``; the checker
            re-seeds it before every forward so finite differences see one fixed function.
        kinks: points where the derivative jumps, documented and tested exactly elsewhere.
        semantics: an extra property of the forward (e.g. Dropout's), given a built case;
            raises ``AssertionError`` when it does not hold.
        name: defaults to the class name.
    """

    module: type
    kwargs: dict[str, Any] | st.SearchStrategy[dict[str, Any]]
    inputs: Callable[[dict[str, Any]], Sequence[Input]]
    twin: Callable[[Any], torch.nn.Module] | None
    target: TargetMaker | None = None
    tensors: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("train",)
    prepare: Callable[[Any, torch.Generator], None] | None = None
    randomize_parameters: bool = True
    random: bool = False
    kinks: str = ""
    semantics: Callable[[Built], None] | None = None
    name: str = ""
    _cases: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.module.__name__

    @property
    def is_loss(self) -> bool:
        return self.target is not None

    def kwargs_strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        if isinstance(self.kwargs, st.SearchStrategy):
            return self.kwargs
        return st.fixed_dictionaries({k: as_strategy(v) for k, v in self.kwargs.items()})

    def cases(self) -> st.SearchStrategy[Case]:
        """Hypothesis strategy of concrete cases for this module."""
        if self._cases is None:
            self._cases = st.composite(_draw_case)(self)
        return self._cases

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' pretty-printer
        printer.text(str(self))


def _draw_case(draw: Callable[[st.SearchStrategy[Any]], Any], spec: Spec) -> Case:
    kwargs = draw(spec.kwargs_strategy())
    shapes = [tuple(draw(as_strategy(i.shape))) for i in spec.inputs(kwargs)]
    mode = draw(st.sampled_from(spec.modes))
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    return Case(spec, kwargs, shapes, seed, mode)


@dataclass
class Built:
    """A case made concrete on a dtype and device."""

    module: Any
    inputs: list[Tensor]
    target: Tensor | None
    generator_seed: int


@dataclass(repr=False)
class Case:
    """One drawn case: constructor arguments, input shapes, value seed and mode."""

    spec: Spec
    kwargs: dict[str, Any]
    shapes: list[tuple[int, ...]]
    seed: int
    mode: str = "train"

    def build(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Built:
        """Construct the module and draw inputs (values drawn in float64, then cast)."""
        generator = torch.Generator().manual_seed(self.seed)
        module = self.spec.module(**self.constructor_kwargs())
        if self.spec.randomize_parameters:
            _randomize_parameters(module, generator)
        if self.spec.prepare is not None:
            self.spec.prepare(module, generator)
        if self.spec.random:
            module.generator.manual_seed(self.seed)  # the same random stream on every build
        module.to(device=device, dtype=dtype)
        module.train(self.mode == "train")
        domains = [i.domain for i in self.spec.inputs(self.kwargs)]
        inputs64 = [d.sample(shape, generator) for d, shape in zip(domains, self.shapes)]
        target = None
        if self.spec.target is not None:
            target = self.spec.target(inputs64[0], generator, self.kwargs)
            if target.is_floating_point():
                target = target.to(device=device, dtype=dtype)
            else:
                target = target.to(device=device)
        inputs = [x.to(device=device, dtype=dtype) for x in inputs64]
        return Built(module, inputs, target, self.seed)

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
