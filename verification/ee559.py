"""``python -m verification.ee559``: verify a student's EE-559 framework with no code written.

The EE-559 protocol: a module has ``forward(*input)``, ``backward(*gradwrtoutput)`` returning
the input gradients and accumulating the parameter gradients, and ``param()`` returning
``[parameter, gradient]`` pairs; a loss's ``backward()`` takes nothing (its result is scaled by
the upstream gradient the verifier draws). Point the command at the student's file, name the
class, its ``torch.nn`` twin and the shapes::

    python -m verification.ee559 student.py --module Linear --args 4 3 --twin torch.nn.Linear \\
        --input-shape 8 4
    python -m verification.ee559 student.py --module LossMSE --twin torch.nn.MSELoss \\
        --input-shape 8 3 --loss values
    python -m verification.ee559 student.py --config course.toml      # every module of a course

Each module gets every check (finite differences, the twin, linearity, accumulation, side
effects, determinism, layouts) over drawn cases in float64, and float32 against the float64
truth, with the same table, shrunk failing case, replay command, JSON and HTML report as
``python -m verification``. The twin is built with ``--twin-args`` (default: ``--args``) and gets
the student's parameter values (by name, else in ``param()`` order; shapes must match).

A course file (TOML, or JSON with the same keys) lists the modules::

    [[module]]
    name = "Linear"              # the class in the student's file
    args = [4, 3]                # its constructor arguments (kwargs = {...} too)
    twin = "torch.nn.Linear"     # optional; twin_args = [...] when they differ
    input_shape = [8, 4]         # input_shapes = [[...], [...]] for several inputs
    domain = "real"              # where input values come from (see --domain)

    [[module]]
    name = "LossMSE"
    twin = "torch.nn.MSELoss"
    input_shape = [8, 3]
    loss = "values"              # the target: values, unit, indices (class indices along dim 1)
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import domains
from .__main__ import label, payload_of, print_failures, print_table, verify, write_results
from .discovery import DiscoveryError, ImportFailedError, import_file
from .runner import PROFILES, SpecResult, check_case, positive_seconds, torch_threads
from .spec import Case, Input, Spec, TargetMaker, class_indices, values

DOMAINS = {
    "real": domains.REAL,
    "wide": domains.WIDE,
    "positive": domains.POSITIVE,
    "probability": domains.PROBABILITY,
    "unit": domains.UNIT,
    "away_from_zero": domains.AWAY_FROM_ZERO,
    "distinct": domains.DISTINCT,
}
LOSS_TARGETS: dict[str, TargetMaker] = {
    "values": values(domains.REAL),
    "unit": values(domains.UNIT),
    "indices": class_indices(),
}


COURSE_KEYS = frozenset(
    {"name", "args", "kwargs", "twin", "twin_args", "twin_kwargs", "input_shape", "input_shapes", "domain", "loss"}
)


class CourseError(ValueError):
    """A module that cannot be found or built as the command or the course file describes it."""


class StudentError(CourseError):
    """The student's file lacks a module the course lists, or has it without the protocol: with a
    course file, that module's failure, and the others are still verified."""


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string


def _keyword(item: str) -> tuple[str, str]:
    """``--kwargs`` ``KEY=VALUE``, split at its first ``=``."""
    key, equals, value = item.partition("=")
    if not equals or not key:
        raise CourseError(f"--kwargs {item!r}: expected KEY=VALUE (bias=False)")
    return key, value


def _resolve(dotted: str) -> Any:
    """``torch.nn.Linear`` -> the class (any importable ``package.module.attribute``)."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise CourseError(f"--twin {dotted}: cannot import it ({error})") from error


def module_spec(student: Any, entry: dict[str, Any]) -> Spec:
    """The spec of one student module described by ``entry`` (the keys of a course file)."""
    name = entry.get("name")
    cls = getattr(student, name or "", None)
    if not isinstance(cls, type):
        classes = sorted(
            n for n, v in vars(student).items() if isinstance(v, type) and v.__module__ == student.__name__
        )
        raise StudentError(f"{student.__file__}: no class {name!r}; it defines {classes}")
    missing = [m for m in ("forward", "backward", "param") if not callable(getattr(cls, m, None))]
    if missing:
        raise StudentError(f"{name}: not an EE-559 module, it has no {missing}")
    args, kwargs = _arguments(name, entry, "args", "kwargs")
    shapes = entry.get("input_shapes") or ([entry["input_shape"]] if "input_shape" in entry else None)
    if not shapes:
        raise CourseError(f"{name}: give the input shape (--input-shape / input_shape)")
    shapes = _shapes(name, shapes)
    domain_name = entry.get("domain", "real")
    if domain_name not in DOMAINS:
        raise CourseError(f"{name}: unknown domain {domain_name!r}; known: {sorted(DOMAINS)}")
    loss = entry.get("loss")
    if loss is not None and loss not in LOSS_TARGETS:
        raise CourseError(f"{name}: unknown loss target {loss!r}; known: {sorted(LOSS_TARGETS)}")
    twin_cls = _resolve(entry["twin"]) if entry.get("twin") else None
    if loss is None:
        _require_loss_target_if_needed(name, cls, len(shapes), entry.get("twin"), twin_cls)
    twin = None
    if twin_cls is not None:
        twin_args, twin_kwargs = _arguments(
            name, {"twin_args": args, "twin_kwargs": kwargs, **entry}, "twin_args", "twin_kwargs"
        )
        twin = lambda module: twin_cls(*twin_args, **twin_kwargs)  # noqa: E731
    _construct(name, cls, args, kwargs)
    return Spec(
        cls,
        build=lambda: cls(*args, **kwargs),
        inputs=[Input(shape, DOMAINS[domain_name]) for shape in shapes],
        twin=twin,
        target=LOSS_TARGETS[loss] if loss else None,
        devices=("cpu",),
        name=name,
        origin=(student.__name__, student.__file__ or "", 0),
    )


def _arguments(name: str, entry: dict[str, Any], args_key: str, kwargs_key: str) -> tuple[list[Any], dict[str, Any]]:
    """The constructor's positional and keyword arguments of ``entry``: a list and a table (a string
    such as ``args = "4, 3"`` would be unpacked character by character)."""
    args, kwargs = entry.get(args_key, []), entry.get(kwargs_key, {})
    if not isinstance(args, list | tuple):
        raise CourseError(f"{name}: {args_key} must be a list (args = [4, 3]), got {args!r}")
    if not isinstance(kwargs, dict):
        raise CourseError(f"{name}: {kwargs_key} must be a table (kwargs = {{ bias = false }}), got {kwargs!r}")
    return list(args), dict(kwargs)


def _shapes(name: str, shapes: Any) -> list[tuple[int, ...]]:
    """The input shapes of ``entry``: each a list of sizes >= 0."""
    if not isinstance(shapes, list | tuple) or not all(isinstance(shape, list | tuple) for shape in shapes):
        raise CourseError(f"{name}: input_shape must be a list of sizes (input_shape = [8, 4]), got {shapes!r}")
    for shape in shapes:
        if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape):
            raise CourseError(f"{name}: an input shape holds sizes >= 0 (integers), got {list(shape)!r}")
    return [tuple(shape) for shape in shapes]


def _construct(name: str, cls: type, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Builds the module once, before any case: a constructor that refuses the arguments given is
    named with them (which the course file or --args may have wrong), not as a failure of a case."""
    try:
        cls(*args, **kwargs)
    except Exception as error:
        given = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        raise StudentError(
            f"{name}({given}) raised {type(error).__name__}: {error} (check the arguments, --args/--kwargs or "
            "args/kwargs in the course file, and the constructor)"
        ) from error


def _require_loss_target_if_needed(name: str, cls: type, n_inputs: int, twin: str | None, twin_cls: Any) -> None:
    """A loss given without its target (``--loss`` / ``loss =``) is named as such, before any case
    runs: its forward wants one argument more than the inputs given, or its twin is a torch loss."""
    try:
        parameters = list(inspect.signature(cls.forward).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        parameters = []
    required = [
        p for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    wants_more = len(required) > n_inputs and not any(p.kind is p.VAR_POSITIONAL for p in parameters)
    twin_is_loss = isinstance(twin_cls, type) and issubclass(twin_cls, torch.nn.modules.loss._Loss)
    if wants_more or twin_is_loss:
        why = (
            f"its forward takes {len(required)} arguments and {n_inputs} input shape(s) were given"
            if wants_more
            else f"its twin {twin} is a torch loss"
        )
        raise CourseError(
            f"{name} looks like a loss ({why}): say what its target is with --loss (loss = in a course file): "
            f"{', '.join(sorted(LOSS_TARGETS))}"
        )


def course_entries(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.config:
        text = Path(args.config).read_text()
        try:
            if args.config.endswith(".json"):
                data = json.loads(text)
            else:
                import tomllib

                data = tomllib.loads(text)
        except ValueError as error:  # json's and tomllib's decoding errors
            kind = "JSON" if args.config.endswith(".json") else "TOML"
            raise CourseError(f"{args.config}: not valid {kind}: {error}") from error
        if not isinstance(data, dict):
            raise CourseError(f"{args.config}: expected [[module]] tables")
        entries = data.get("module", data.get("modules", []))
        if not isinstance(entries, list) or not entries:
            raise CourseError(f"{args.config}: expected [[module]] tables")
        for index, entry in enumerate(entries):
            unknown = sorted(set(entry) - COURSE_KEYS) if isinstance(entry, dict) else []
            if unknown:
                close = difflib.get_close_matches(unknown[0], sorted(COURSE_KEYS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise CourseError(
                    f"{args.config}: module {index + 1} ({entry.get('name', '?')}) has the unknown key "
                    f"{unknown[0]!r}{hint}; the keys are {', '.join(sorted(COURSE_KEYS))}"
                )
        return entries
    if not args.module:
        raise CourseError("name the module to check (--module NAME) or give a course file (--config FILE)")
    return [
        {
            "name": args.module,
            "args": [_literal(a) for a in args.args],
            "kwargs": {k: _literal(v) for k, v in map(_keyword, args.kwargs)},
            "twin": args.twin,
            **({"twin_args": [_literal(a) for a in args.twin_args]} if args.twin_args is not None else {}),
            "input_shapes": args.input_shape,
            "domain": args.domain,
            **({"loss": args.loss} if args.loss else {}),
        }
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verification.ee559",
        description="Verify an EE-559 student's modules against their torch.nn twins.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("student", help="the student's Python file (its folder is put on sys.path)")
    parser.add_argument("--module", metavar="CLASS", help="the class to check")
    parser.add_argument("--args", nargs="*", default=[], metavar="ARG", help="constructor arguments (Python literals)")
    parser.add_argument("--kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="constructor keyword arguments")
    parser.add_argument("--twin", metavar="DOTTED", help="the torch.nn twin, e.g. torch.nn.Linear")
    parser.add_argument("--twin-args", nargs="*", default=None, metavar="ARG", help="the twin's (default: --args)")
    parser.add_argument(
        "--input-shape", nargs="+", type=int, action="append", metavar="N", help="repeat for several inputs"
    )
    parser.add_argument("--domain", default="real", choices=sorted(DOMAINS), help="input values (default real)")
    parser.add_argument("--loss", choices=sorted(LOSS_TARGETS), help="a loss: what its target is")
    parser.add_argument("--config", metavar="FILE", help="a course file (TOML or JSON) listing modules")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these modules of the course file")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci", help="cases per module (default ci)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-limit", type=positive_seconds, default=None, metavar="SECONDS", help="per module (default 600)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results JSON here")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write DIR/verification.json and DIR/html/")
    parser.add_argument("--replay", metavar="CASE_JSON", help="re-run one case printed by a failure")
    return parser


def _command(argv: list[str]) -> str:
    """The command as given, without the options a replay replaces or does not need."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--replay", "--json", "--report", "--seed", "--profile", "--time-limit"):
            skip = True
            continue
        if arg == "--only" or arg.startswith(("--replay=", "--json=", "--report=", "--only=")):
            skip = arg == "--only"
            continue
        kept.append(arg)
    return " ".join(["python -m verification.ee559", *map(shlex.quote, kept)])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    # With a course file, what the student's file lacks is the failure of the modules concerned
    # (check 'missing'), and the others are still verified: a file that does not import, all of them.
    absent: list[SpecResult] = []
    try:
        entries = course_entries(args)
        if not Path(args.student).is_file():
            raise CourseError(f"{args.student}: no such file")
        try:
            student = import_file(Path(args.student))
        except ImportFailedError as error:
            if not args.config:
                raise
            student, failed_import = None, error
        specs = []
        for entry in entries:
            try:
                if student is None:
                    raise StudentError(str(failed_import))
                specs.append(module_spec(student, entry))
            except StudentError as error:
                if not args.config:
                    raise
                result = SpecResult(str(entry.get("name")), dtypes=[])
                result.fail("missing", f"{entry.get('name')}: {error}")
                absent.append(result)
    except (CourseError, DiscoveryError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.only:
        listed = [s.name for s in specs] + [r.name for r in absent]
        unknown = sorted(set(args.only) - set(listed))
        if unknown:
            print(f"error: unknown module(s) {unknown}; the course has {listed}", file=sys.stderr)
            return 2
        specs = [s for s in specs if s.name in args.only]
        absent = [r for r in absent if r.name in args.only]
    if args.replay:
        try:
            case = Case.from_json(args.replay, {s.name: s for s in specs})
        except (ValueError, KeyError) as error:
            print(f"error: --replay: {error}", file=sys.stderr)
            return 2
        with torch_threads(1):  # as the run that printed the case
            report = check_case(case, probes=PROFILES[args.profile]["probes"])
        print(report)
        return 0 if report.ok else 1
    args.device, args.dtype, args.isolate, args.threads = "cpu", None, False, 1
    start = time.perf_counter()
    print(f"verifying {len(specs)} modules of {args.student} ({args.profile} profile, seed {args.seed})")
    for result in absent:
        print(f"not verified: {result.failure['message']}")
    results = verify(specs, args, [], _command(argv)) + absent
    print_table(results)
    print_failures(results)
    ok = all(r.ok for r in results)
    elapsed = time.perf_counter() - start
    failed = [label(r) for r in results if not r.ok]
    print(f"\n{'ALL GRADIENTS VERIFIED' if ok else 'VERIFICATION FAILED: ' + ', '.join(failed)} in {elapsed:.0f}s")
    if args.json or args.report:
        payload = payload_of(results, args, ok, elapsed, student=str(args.student))
        write_results(payload, args.json, args.report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
