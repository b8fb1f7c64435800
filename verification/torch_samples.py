"""Parity with ``torch.nn`` on torch's own sample inputs.

torch's test suite describes each of its modules by a ``ModuleInfo`` in
``torch.testing._internal.common_modules.module_db``: constructor arguments and forward
inputs that torch accepts (its samples), and inputs that torch rejects (its error inputs).
For every framework module that torch also has, each sample runs through both modules with
the same parameters, in float64 and with a random upstream gradient, and ends in one of:

``matched``
    the framework accepts it, and its output, input gradients, parameter gradients and
    buffers (running statistics) equal torch's;
``refused``
    the framework raises :class:`framework.ModuleValueError` or
    :class:`framework.ModuleTypeError` (a clean refusal: a gap in coverage, not a bug);
``mismatched``
    a number differs from torch's (a bug);
``crashed``
    any other exception (a bug).

Every error input must be ``rejected`` with a clean error (``accepted`` is a bug: torch
rejects it). ``python -m verification.torch_samples`` prints the counts per module.

The database is internal to torch and needs the ``expecttest`` package; :func:`load` raises
``ImportError`` when it cannot be imported.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import framework as fw

OUTCOMES = ("matched", "refused", "mismatched", "crashed")
RTOL, ATOL = 1e-10, 1e-12


@dataclass(frozen=True)
class SampleResult:
    module: str
    description: str
    training: bool
    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        mode = "train" if self.training else "eval"
        return f"{self.module}[{self.description or 'default'}, {mode}]: {self.outcome}" + (
            f": {self.detail}" if self.detail else ""
        )


def load() -> list[Any]:
    """torch's ``module_db``, the entries whose class the framework also has."""
    frozen = torch.backends.flags_frozen()
    from torch.testing._internal.common_modules import module_db

    # Importing torch's test utilities freezes torch.backends' flags for the whole process;
    # undo that so code that sets them afterwards (the CUDA benchmarks) still can.
    if not frozen:
        torch.backends.__allow_nonbracketed_mutation_flag = True
    ours = {cls.__name__ for cls in fw.modules()}
    return [info for info in module_db if info.module_cls.__name__ in ours]


def _samples(info: Any, training: bool, errors: bool = False) -> list[Any]:
    func = info.module_error_inputs_func if errors else info.module_inputs_func
    if func is None:
        return []
    # torch draws the sample values from its global stream: pin it, and leave it as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return list(func(info, device="cpu", dtype=torch.float64, requires_grad=True, training=training))


def _modes(info: Any) -> tuple[bool, ...]:
    return (True, False) if info.train_and_eval_differ else (True,)


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else value


def _build(info: Any, constructor: Any) -> Any:
    """The framework module of the same class and constructor arguments, in float64."""
    args, kwargs = constructor.args, constructor.kwargs
    ours = getattr(fw, info.module_cls.__name__)(*map(_clone, args), **{k: _clone(v) for k, v in kwargs.items()})
    return ours.to(dtype=torch.float64)


def _unsupported_argument(error: Exception) -> bool:
    """Python's own refusal of a keyword the framework's constructor does not take."""
    return isinstance(error, TypeError) and "unexpected keyword argument" in str(error)


def _copy_state(theirs: torch.nn.Module, ours: Any) -> None:
    params, buffers = dict(theirs.named_parameters()), dict(theirs.named_buffers())
    for name, value, _ in ours.named_param():
        value.copy_(params[name].detach())
    for name, value in ours.named_buffers():
        if name in buffers:
            value.copy_(buffers[name])


def _close(what: str, ours: Tensor, theirs: Tensor) -> str:
    if tuple(ours.shape) != tuple(theirs.shape):
        return f"{what}: shape {tuple(ours.shape)}, torch's {tuple(theirs.shape)}"
    if ours.dtype != theirs.dtype:
        return f"{what}: dtype {ours.dtype}, torch's {theirs.dtype}"
    try:
        torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=ATOL, equal_nan=True)
    except AssertionError as error:
        return f"{what}: {str(error).splitlines()[0]} {' '.join(str(error).split()[-12:])}"
    return ""


def run_sample(info: Any, sample: Any, training: bool) -> SampleResult:
    """One sample through torch and the framework; the outcome and, unless matched, why."""
    name = info.module_cls.__name__

    def result(outcome: str, detail: str = "") -> SampleResult:
        return SampleResult(name, sample.desc, training, outcome, detail)

    theirs = info.module_cls(*sample.constructor_input.args, **sample.constructor_input.kwargs)
    theirs.to(dtype=torch.float64).train(training)
    args = [_clone(a) for a in sample.forward_input.args]
    kwargs = {k: _clone(v) for k, v in sample.forward_input.kwargs.items()}
    ours, refusal = None, None
    try:
        ours = _build(info, sample.constructor_input)
        _copy_state(theirs, ours)  # before torch's forward updates its running statistics
        ours.train(training)
    except (fw.ModuleValueError, fw.ModuleTypeError) as error:
        refusal = f"constructor: {error}"
    except Exception as error:
        if _unsupported_argument(error):
            refusal = f"constructor: {error}"
        else:
            return result("crashed", f"constructor: {type(error).__name__}: {error}")
    for value in [*args, *kwargs.values()]:
        if isinstance(value, Tensor) and value.is_floating_point():
            value.requires_grad_(True)
    try:
        their_out = theirs(*args, **kwargs)
    except Exception as error:  # torch rejects its own sample: not ours to judge
        return result("skipped", f"torch raised {type(error).__name__}: {error}")
    if refusal is not None:
        return result("refused", refusal)
    try:
        our_out = ours(*map(_clone, args), **{k: _clone(v) for k, v in kwargs.items()})
    except (fw.ModuleValueError, fw.ModuleTypeError) as error:
        return result("refused", str(error))
    except Exception as error:
        return result("crashed", f"forward: {type(error).__name__}: {error}")
    try:
        leaves = [*args, *kwargs.values()]  # keyword tensors (Linear's input=) after the positional ones
        return result(*_compare(ours, theirs, leaves, their_out, our_out, isinstance(ours, fw.Loss)))
    except (fw.ModuleValueError, fw.ModuleTypeError) as error:
        return result("refused", f"backward: {error}")
    except Exception as error:
        return result("crashed", f"backward: {type(error).__name__}: {error}")


def _compare(
    ours: Any, theirs: torch.nn.Module, leaves: list[Any], their_out: Any, our_out: Any, is_loss: bool
) -> tuple[str, str]:
    problems = []
    if isinstance(their_out, tuple):  # (values, indices) of MaxPool2d(return_indices=True)
        if not isinstance(our_out, tuple) or len(our_out) != len(their_out):
            return "mismatched", f"output: {type(our_out).__name__}, torch's a tuple of {len(their_out)}"
        problems += [_close(f"output[{i}]", o, t.detach()) for i, (o, t) in enumerate(zip(our_out[1:], their_out[1:]))]
        their_out, our_out = their_out[0], our_out[0]
    problems.append(_close("output", our_out, their_out.detach()))
    generator = torch.Generator().manual_seed(1)
    grad_output = torch.randn(their_out.shape, generator=generator, dtype=torch.float64)
    differentiable = [leaf for leaf in leaves if isinstance(leaf, Tensor) and leaf.requires_grad]
    if is_loss:
        differentiable = differentiable[:1]  # the framework's losses differentiate the prediction only
    params = [p for _, p in theirs.named_parameters()]
    their_grads = torch.autograd.grad(their_out, differentiable + params, grad_output, allow_unused=True)
    our_grads = ours.backward(grad_output.clone())
    our_grads = [our_grads] if isinstance(our_grads, Tensor) else list(our_grads)
    for i, (mine, other) in enumerate(zip(our_grads, their_grads)):
        other = torch.zeros_like(differentiable[i]) if other is None else other
        problems.append(_close(f"input[{i}].grad", mine, other))
    for (pname, p), other in zip(theirs.named_parameters(), their_grads[len(differentiable) :]):
        other = torch.zeros_like(p) if other is None else other
        problems.append(_close(f"{pname}.grad", ours.grad(pname), other))
    buffers = dict(theirs.named_buffers())
    for bname, value in ours.named_buffers():
        if bname in buffers:
            problems.append(_close(bname, value, buffers[bname]))
    problems = [p for p in problems if p]
    return ("mismatched", "; ".join(problems)) if problems else ("matched", "")


def run_error_sample(info: Any, error_input: Any) -> SampleResult:
    """One of torch's error inputs: the framework must raise a clean error, at construction or forward."""
    name = info.module_cls.__name__
    sample = error_input.module_error_input

    def result(outcome: str, detail: str = "") -> SampleResult:
        return SampleResult(name, f"error: {error_input.error_regex}", True, outcome, detail)

    try:
        ours = _build(info, sample.constructor_input)
        if sample.forward_input is not None:
            ours(*[_clone(a) for a in sample.forward_input.args], **sample.forward_input.kwargs)
    except (fw.ModuleValueError, fw.ModuleTypeError) as error:
        return result("rejected", str(error))
    except Exception as error:
        if _unsupported_argument(error):
            return result("rejected", str(error))
        return result("crashed", f"{type(error).__name__}: {error}")
    return result("accepted", "torch rejects this input")


def run(infos: Iterable[Any] | None = None) -> Iterator[SampleResult]:
    """Every sample and every error input of every shared module."""
    for info in load() if infos is None else infos:
        for training in _modes(info):
            for sample in _samples(info, training):
                yield run_sample(info, sample, training)
        for error_input in _samples(info, True, errors=True):
            yield run_error_sample(info, error_input)


def summary(results: Iterable[SampleResult]) -> dict[str, Counter[str]]:
    table: dict[str, Counter[str]] = {}
    for r in results:
        table.setdefault(r.module, Counter())[r.outcome] += 1
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verification.torch_samples", description="The framework on torch's own module samples."
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="module class names")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every sample that is not matched")
    args = parser.parse_args(argv)
    infos = [i for i in load() if not args.only or i.module_cls.__name__ in args.only]
    results = list(run(infos))
    columns = (*OUTCOMES, "rejected", "accepted")
    print(f"{'module':<20}" + "".join(f"{c:>11}" for c in columns))
    table = summary(results)
    for name, counts in sorted(table.items()):
        print(f"{name:<20}" + "".join(f"{counts[c]:>11}" for c in columns))
    total = sum(table.values(), Counter())
    print(f"{'total':<20}" + "".join(f"{total[c]:>11}" for c in columns))
    if args.verbose:
        for r in results:
            if r.outcome not in ("matched", "rejected"):
                print(r)
    bad = total["mismatched"] + total["crashed"] + total["accepted"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
