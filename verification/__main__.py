"""``python -m verification [PATH ...]``: verify gradients over drawn cases; the CI gate.

Without PATH: every registered framework module, the optimizers and the mutants. With PATH
(files, folders or importable modules): the specs declared there (see
:mod:`verification.discovery`), each in its dtypes and on its devices.

Exit status 0 if and only if every check passed on every drawn case (and every mutant was
caught); 1 otherwise; 2 on a usage error (e.g. ``--device cuda`` without a GPU, a PATH that
does not import).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

import framework as fw

from .discovery import DiscoveryError, discover, framework_specs
from .mutants import MUTANTS, mutant_spec, run_mutant
from .optimizers import OPTIMIZER_SPECS, check_optimizer, run_optimizer_spec
from .parallel import Runner, Settings, Task, spec_task
from .runner import (
    ALL_CHECKS,
    DEFAULT_COMMAND,
    PROFILES,
    SpecResult,
    check_case,
    dtype_name,
    positive_seconds,
    run_spec,
    torch_threads,
)
from .spec import Case, Spec
from .specs import SPECS, all_specs

DEFAULT_TIME_LIMIT = 600.0  # seconds per spec and device, when neither the spec nor --time-limit says
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COLUMNS = (
    *ALL_CHECKS,
    "bfloat16",
    "float16",
    "second_order",
    "forward_mode",
    "batched",
    "undefined_grad",
    "semantics",
    "torch_optim",
)
FAILURE_COLUMNS = ("exception", "timeout", "crashed")
SHORT = {
    "finite_differences": "fin.diff",
    "twin": "twin",
    "linearity": "linear",
    "accumulation": "accum",
    "side_effects": "effects",
    "determinism": "determ.",
    "layouts": "layouts",
    "float32": "float32",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "second_order": "2nd ord.",
    "forward_mode": "fwd mode",
    "batched": "batched",
    "undefined_grad": "undef.",
    "semantics": "semantic",
    "torch_optim": "optim",
    "exception": "raised",
    "timeout": "timeout",
    "crashed": "crashed",
}


def _parser(prog: str = "python -m verification") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="files, folders or modules declaring specs (default: the framework)"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="specs, optimizers or mutants to run")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci", help="cases per spec (default ci)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="only this device (default: each spec's, if available)"
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=sorted(DTYPES),
        metavar="DTYPE",
        help="only these of each spec's dtypes (and float64 with a lower one: the lower ones are judged against it)",
    )
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument(
        "--time-limit",
        type=positive_seconds,
        metavar="SECONDS",
        help=f"per spec and device; overrides the specs' own (default: the spec's, else {DEFAULT_TIME_LIMIT:g})",
    )
    parser.add_argument(
        "--isolate", action="store_true", help="verify each spec in its own process (a crashing target is reported)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N", help="torch threads while verifying (default 1; 0: torch's)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="worker processes that verify specs, optimizers and mutants side by side (default 1: in this "
        "process; 0: one per CPU)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results JSON here")
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="write DIR/verification.json and the HTML page DIR/html/"
    )
    parser.add_argument("--no-mutants", action="store_true", help="skip the mutation run")
    parser.add_argument("--replay", metavar="CASE_JSON", help="re-run one case printed by a failure")
    parser.add_argument("--list", action="store_true", help="list what can be verified and exit")
    return parser


def _cell(result: SpecResult, column: str) -> str:
    summary = result.checks.get(column)
    if summary is None:
        return "-"
    if column in FAILURE_COLUMNS:
        return "FAIL"
    if summary.skipped and not summary.cases:
        return "n/a"
    if not summary.ok:
        return "FAIL"
    return f"{summary.worst_ratio:.2f}"


def label(result: SpecResult) -> str:
    return result.name if result.device == "cpu" else f"{result.name} ({result.device})"


def columns_of(results: list[SpecResult]) -> list[str]:
    known = [c for c in (*COLUMNS, *FAILURE_COLUMNS) if any(c in r.checks for r in results)]
    extra = [c for r in results for c in r.checks if c not in known]
    return known + list(dict.fromkeys(extra))


def print_table(results: list[SpecResult]) -> None:
    columns = columns_of(results)
    width = max(len(label(r)) for r in results) + 2
    head = f"{'spec':<{width}}{'verdict':<9}{'cases':>6}  " + "".join(f"{SHORT.get(c, c[:9]):>10}" for c in columns)
    print("\nworst error/tolerance per check (pass <= 1; n/a: not applicable; -: not run for that spec)")
    print(head)
    print("-" * len(head))
    for r in results:
        cells = "".join(f"{_cell(r, c):>10}" for c in columns)
        print(f"{label(r):<{width}}{'ok' if r.ok else 'FAILED':<9}{r.cases:>6}  {cells}")


def progress(index: int, total: int, result: SpecResult) -> None:
    verdict = "ok" if result.ok else "FAILED"
    print(
        f"[{index:>2}/{total}] {label(result):<38} {verdict:<6} {result.cases:>4} cases {result.seconds:6.1f}s",
        flush=True,
    )


def _targets(only: list[str] | None, specs: list[Spec], framework: bool) -> tuple[list[Any], list[Any], list[Any]]:
    """(specs, optimizer specs, mutants) selected by ``--only``."""
    optimizers = list(OPTIMIZER_SPECS) if framework else []
    mutants = list(MUTANTS) if framework else []
    if not only:
        return specs, optimizers, mutants
    known = {s.name for s in specs} | {o.name for o in optimizers} | {m.name for m in mutants}
    unknown = sorted(set(only) - known)
    if unknown:
        raise SystemExit(f"error: unknown name(s) {unknown}; see --list")
    return (
        [s for s in specs if s.name in only],
        [o for o in optimizers if o.name in only],
        [m for m in mutants if m.name in only],
    )


def _replay(
    names: list[str] | None, text: str, device: str, specs: list[Spec], framework: bool, profile: str = "ci"
) -> int:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        print(f"error: --replay: not valid JSON ({error})", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print(f"error: --replay: expected a JSON object as printed by a failure, got {text[:60]!r}", file=sys.stderr)
        return 2
    try:
        return _replay_case(names, data, text, device, specs, framework, profile)
    except (KeyError, TypeError, ValueError) as error:  # ModuleValueError/ModuleTypeError are among these
        if isinstance(error, KeyError) and error.args:
            message = (
                f"no {error.args[0]!r} in it (a case holds the module, its kwargs, shapes, seed and mode, "
                "as a failure's replay command prints them)"
            )
        else:
            message = str(error)
        print(f"error: --replay: cannot build the case: {message}", file=sys.stderr)
        return 2


def _replay_case(
    names: list[str] | None,
    data: dict[str, Any],
    text: str,
    device: str,
    specs: list[Spec],
    framework: bool,
    profile: str = "ci",
) -> int:
    name = data.get("module") or (names[0] if names else None)
    optimizers = {o.name: o for o in OPTIMIZER_SPECS} if framework else {}
    if name in optimizers or (names and names[0] in optimizers):
        spec = optimizers[name if name in optimizers else names[0]]
        result = check_optimizer(spec, data)
        print(f"{spec.name}: {result}")
        return 0 if result.ok else 1
    known = {s.name: s for s in specs}
    if framework:
        known = {**all_specs(), **known}
        known.update({m.name: mutant_spec(m, known[m.target]) for m in MUTANTS if m.target in known})
    if name not in known:
        raise KeyError(f"no module, optimizer or mutant named {name!r}; see --list")
    case = Case.from_json(text, known)
    report = check_case(case, device=device, probes=PROFILES[profile]["probes"])
    print(report)
    return 0 if report.ok else 1


def available(device: str) -> bool:
    return device == "cpu" or (device == "cuda" and torch.cuda.is_available())


def devices_for(spec: Spec, requested: str | None) -> list[str]:
    if requested is not None:
        return [requested] if requested in spec.devices else []
    return [d for d in spec.devices if available(d)]


def dtypes_for(spec: Spec, requested: list[str] | None) -> list[torch.dtype]:
    if not requested:
        return list(spec.dtypes)
    return [d for d in spec.dtypes if dtype_name(d) in requested]


def planned_runs(specs: list[Spec], args: argparse.Namespace) -> list[tuple[Spec, str, list[torch.dtype]]]:
    """(spec, device, dtypes) for every spec on each of its devices that is selected and available."""
    runs = [(spec, device, dtypes_for(spec, args.dtype)) for spec in specs for device in devices_for(spec, args.device)]
    return [(spec, device, dtypes) for spec, device, dtypes in runs if dtypes]


def _announced_runs(specs: list[Spec], args: argparse.Namespace) -> list[tuple[Spec, str, list[torch.dtype]]]:
    """:func:`planned_runs`, after printing the specs that none of them covers."""
    runs = planned_runs(specs, args)
    not_run = sorted({s.name for s in specs} - {s.name for s, _, _ in runs})
    if not_run:
        print(f"not run here (none of their devices or dtypes selected or available): {not_run}")
    return runs


def _time_limit(spec: Spec, args: argparse.Namespace) -> float:
    return args.time_limit or spec.time_limit or DEFAULT_TIME_LIMIT


def final_verdict(
    ok: bool, specs: list[Spec], results: list[SpecResult], checked_anything: bool, mutants: int = 0
) -> str:
    """The last line: what was verified and where, never "all" about what could not run here."""
    if not ok:
        return "VERIFICATION FAILED"
    if not checked_anything:
        return "NOTHING VERIFIED: no spec could run here (see the line above)"
    if not results:
        return f"MUTATION RUN ONLY: all {mutants} wrong backward passes caught; no module's gradients were verified"
    ran = {r.name for r in results} & {s.name for s in specs}
    devices = sorted({r.device for r in results})
    where = f" on {', '.join(devices)}" if devices else ""
    not_run = sorted({s.name for s in specs} - ran)
    unchecked = sorted({d for s in specs if s.name in ran for d in s.devices} - set(devices))
    if not_run:
        text = f"GRADIENTS VERIFIED for {len(ran)} of {len(specs)} specs{where}; NOT RUN here: {', '.join(not_run)}"
    else:
        text = f"ALL GRADIENTS VERIFIED{where}"
    if unchecked:
        text += f" (also declared, not checked here: {', '.join(unchecked)})"
    return text


def verify(
    specs: list[Spec],
    args: argparse.Namespace,
    paths: list[str],
    command: str = DEFAULT_COMMAND,
) -> list[SpecResult]:
    """Run every spec on each of its devices (in-process, or isolated); print progress."""
    from .isolation import run_isolated

    runs = _announced_runs(specs, args)
    results: list[SpecResult] = []
    for spec, device, dtypes in runs:
        seconds = _time_limit(spec, args)
        threads = getattr(args, "threads", 1)
        if args.isolate:
            result = run_isolated(spec, paths, args.profile, args.seed, device, dtypes, seconds, command, threads)
        else:
            result = run_spec(
                spec, args.profile, args.seed, device, dtypes=dtypes, seconds=seconds, command=command, threads=threads
            )
        results.append(result)
        progress(len(results), len(runs), result)
    return results


def print_failures(results: list[SpecResult]) -> None:
    for r in results:
        if r.failure is None:
            continue
        replay = f"\n\nreplay: {r.failure['replay']}" if r.failure.get("replay") else ""
        print(f"\n{'=' * 80}\n{r.failure['message']}{replay}")


def write_results(payload: dict[str, Any], json_path: Path | None, report: Path | None) -> None:
    """The results JSON (``--json``), and with ``--report DIR`` the JSON and HTML page in DIR."""
    paths = [json_path] if json_path else []
    if report:
        paths.append(report / "verification.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1))
        print(f"results written to {path}")
    if report:
        from reports.render import render

        written, errors = render(report, "verification")
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        print(f"report written to {written[0]}")


def payload_of(
    results: list[SpecResult], args: argparse.Namespace, ok: bool, elapsed: float, **extra: Any
) -> dict[str, Any]:
    from .environment import environment

    device = args.device or ("cuda" if any(r.device == "cuda" for r in results) else "cpu")
    modules = []
    for r in results:
        entry = r.to_json()
        entry["spec"], entry["name"] = r.name, label(r)
        modules.append(entry)
    return {
        "kind": "verification",
        "environment": environment(device),
        "profile": args.profile,
        "device": device,
        "seed": args.seed,
        "ok": ok,
        "seconds": round(elapsed, 1),
        "checks": [c for c in columns_of(results) if c not in FAILURE_COLUMNS],
        "modules": modules,
        "missing_specs": [],
        "mutation": None,
        "only": list(getattr(args, "only", None) or []),  # a run of these alone, not of every spec
        **extra,
    }


def _verify_all(
    args: argparse.Namespace, specs: list[Spec], optimizers: list[Any], mutants: list[Any], command: str
) -> tuple[list[SpecResult], list[dict[str, Any]]]:
    """Every spec on its devices, every optimizer, then the mutation run (in ``args.runner``'s
    worker processes when there is one): the results, and one row per mutant."""
    runner = getattr(args, "runner", None)
    if runner is not None:  # the specs and the optimizers in one queue
        tasks = [
            spec_task(spec.name, device, dtypes, _time_limit(spec, args))
            for spec, device, dtypes in _announced_runs(specs, args)
        ] + [Task("optimizer", spec.name) for spec in optimizers]
        count = iter(range(1, len(tasks) + 1))
        results = runner.run(tasks, lambda result: progress(next(count), len(tasks), result))
    else:
        results = verify(specs, args, args.paths, command)
        total = len(results) + len(optimizers)
        for spec in optimizers:
            results.append(run_optimizer_spec(spec, args.profile, args.seed))
            progress(len(results), total, results[-1])

    mutation_rows: list[dict[str, Any]] = []
    if not mutants:
        return results, mutation_rows
    print(f"\nmutation run: {len(mutants)} deliberately wrong modules and optimizers, each must fail")
    device = args.device or "cpu"
    finished = 0

    def caught_or_not(mutant: Any, outcome: SpecResult) -> None:
        nonlocal finished
        finished += 1
        caught, check = _caught(outcome)
        verdict = f"caught by {check}" if caught else ("CRASHED the checker" if check else "SURVIVED")
        print(f"[{finished:>2}/{len(mutants)}] {mutant.name:<38} {verdict}", flush=True)

    if runner is not None:
        by_name = {m.name: m for m in mutants}
        outcomes = runner.run(
            [Task("mutant", m.name, device) for m in mutants],
            lambda outcome: caught_or_not(by_name[outcome.name], outcome),
        )
    else:
        outcomes = []
        for mutant in mutants:
            outcomes.append(run_mutant(mutant, args.profile, args.seed, device))
            caught_or_not(mutant, outcomes[-1])
    for mutant, outcome in zip(mutants, outcomes):
        caught, check = _caught(outcome)
        row = {"name": mutant.name, "target": mutant.target, "description": mutant.description}
        mutation_rows.append({**row, "caught": caught, "check": check})
    return results, mutation_rows


def _caught(outcome: SpecResult) -> tuple[bool, str | None]:
    """Whether a mutant's run caught it, and the check that failed: a crash of the checker (an
    exception in it, or its worker process dying) is not a catch."""
    check = outcome.failure["check"] if outcome.failure else None
    return not outcome.ok and check not in ("exception", "crashed"), check


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 0:
        parser.error(f"--jobs must be 0 (one per CPU) or more, got {args.jobs}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    framework = not args.paths
    command = DEFAULT_COMMAND
    if framework:
        specs = framework_specs()
    else:
        try:
            specs = [found.spec for found in discover(args.paths)]
        except DiscoveryError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        command = " ".join([DEFAULT_COMMAND, *map(shlex.quote, args.paths)])
        if not specs:
            print(f"error: no spec found in {args.paths} (see python -m verification --help)", file=sys.stderr)
            return 2
    if args.list:
        print("specs:     ", " ".join(s.name for s in specs))
        if framework:
            print("optimizers:", " ".join(o.name for o in OPTIMIZER_SPECS))
            print("mutants:   ", " ".join(m.name for m in MUTANTS))
        return 0
    if args.replay:
        with torch_threads(args.threads):  # as the run that printed the case
            return _replay(args.only, args.replay, args.device or "cpu", specs, framework, args.profile)

    missing = sorted({cls.__name__ for cls in fw.modules()} - {s.name for s in SPECS}) if framework else []
    specs, optimizers, mutants = _targets(args.only, specs, framework)
    if args.no_mutants:
        mutants = []
    start = time.perf_counter()
    where = args.device or "each spec's devices"
    what = f"{len(specs) + len(optimizers)} modules and optimizers" if framework else f"{len(specs)} specs"
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    in_workers = f", {jobs} worker processes" if jobs > 1 else ""
    print(f"verifying {what} ({args.profile} profile, {where}, seed {args.seed}{in_workers})")
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            settings = Settings(tuple(args.paths), args.profile, args.seed, command, args.threads, args.isolate)
            args.runner = stack.enter_context(Runner(jobs, settings))
        results, mutation_rows = _verify_all(args, specs, optimizers, mutants, command)

    if results:
        print_table(results)
    print_failures(results)
    failures = [r for r in results if not r.ok]
    caught = sum(row["caught"] for row in mutation_rows)
    mutation = None
    if mutation_rows:
        mutation = {
            "score": caught / len(mutation_rows),
            "caught": caught,
            "total": len(mutation_rows),
            "mutants": mutation_rows,
        }
        print(f"\nmutation score: {caught}/{len(mutation_rows)} deliberately wrong backward passes caught")
        for row in mutation_rows:
            if not row["caught"]:
                print(f"  SURVIVED: {row['name']} ({row['description']})")
    if missing and not args.only:
        print(f"\nmodules without a verification spec: {missing}")
    checked_anything = bool(results or mutation_rows)
    ok = not failures and caught == len(mutation_rows) and not (missing and not args.only) and checked_anything
    elapsed = time.perf_counter() - start
    verdict = final_verdict(ok or not checked_anything, specs, results, checked_anything, len(mutation_rows))
    print(f"\n{verdict} in {elapsed:.0f}s")
    if args.json or args.report:
        payload = payload_of(results, args, ok, elapsed, mutation=mutation, missing_specs=missing, paths=args.paths)
        write_results(payload, args.json, args.report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
