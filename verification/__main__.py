"""``python -m verification``: verify every registered module's gradients; the CI gate.

Exit status 0 if and only if every check passed on every drawn case and every mutant was
caught; 1 otherwise; 2 on a usage error (e.g. ``--device cuda`` without a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import framework as fw

from .composition import STACK_SPEC
from .mutants import MUTANTS, mutant_spec, run_mutant
from .optimizers import OPTIMIZER_SPECS, check_optimizer, run_optimizer_spec
from .runner import ALL_CHECKS, PROFILES, SpecResult, check_case, run_spec
from .spec import Case
from .specs import SPECS, all_specs

COLUMNS = (*ALL_CHECKS, "semantics", "torch_optim")
SHORT = {
    "finite_differences": "fin.diff",
    "twin": "twin",
    "linearity": "linear",
    "accumulation": "accum",
    "side_effects": "effects",
    "determinism": "determ.",
    "layouts": "layouts",
    "float32": "float32",
    "semantics": "semantic",
    "torch_optim": "optim",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verification", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="modules, optimizers or mutants to run")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci", help="cases per module (default ci)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results JSON here")
    parser.add_argument("--no-mutants", action="store_true", help="skip the mutation run")
    parser.add_argument("--replay", metavar="CASE_JSON", help="re-run one case printed by a failure")
    parser.add_argument("--list", action="store_true", help="list what can be verified and exit")
    return parser


def _cell(result: SpecResult, column: str) -> str:
    summary = result.checks.get(column)
    if summary is None:
        return "-"
    if summary.skipped and not summary.cases:
        return "n/a"
    if not summary.ok:
        return "FAIL"
    return f"{summary.worst_ratio:.2f}"


def _print_table(results: list[SpecResult]) -> None:
    columns = [c for c in COLUMNS if any(c in r.checks for r in results)]
    width = max(len(r.name) for r in results) + 2
    head = f"{'module':<{width}}{'verdict':<9}{'cases':>6}  " + "".join(f"{SHORT[c]:>10}" for c in columns)
    print("\nworst error/tolerance per check (pass <= 1; n/a: not applicable)")
    print(head)
    print("-" * len(head))
    for r in results:
        cells = "".join(f"{_cell(r, c):>10}" for c in columns)
        print(f"{r.name:<{width}}{'ok' if r.ok else 'FAILED':<9}{r.cases:>6}  {cells}")


def _progress(index: int, total: int, result: SpecResult) -> None:
    verdict = "ok" if result.ok else "FAILED"
    print(
        f"[{index:>2}/{total}] {result.name:<38} {verdict:<6} {result.cases:>4} cases {result.seconds:6.1f}s",
        flush=True,
    )


def _targets(only: list[str] | None) -> tuple[list[Any], list[Any], list[Any]]:
    """(module specs, optimizer specs, mutants) selected by ``--only``."""
    modules = [*SPECS, STACK_SPEC]
    optimizers = list(OPTIMIZER_SPECS)
    mutants = list(MUTANTS)
    if not only:
        return modules, optimizers, mutants
    known = {s.name for s in modules} | {o.name for o in optimizers} | {m.name for m in mutants}
    unknown = sorted(set(only) - known)
    if unknown:
        raise SystemExit(f"error: unknown name(s) {unknown}; see --list")
    return (
        [s for s in modules if s.name in only],
        [o for o in optimizers if o.name in only],
        [m for m in mutants if m.name in only],
    )


def _replay(names: list[str] | None, text: str, device: str) -> int:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        print(f"error: --replay: not valid JSON ({error})", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print(f"error: --replay: expected a JSON object as printed by a failure, got {text[:60]!r}", file=sys.stderr)
        return 2
    try:
        return _replay_case(names, data, text, device)
    except (KeyError, TypeError, ValueError) as error:  # ModuleValueError/ModuleTypeError are among these
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: --replay: cannot build the case: {message}", file=sys.stderr)
        return 2


def _replay_case(names: list[str] | None, data: dict[str, Any], text: str, device: str) -> int:
    name = data.get("module") or (names[0] if names else None)
    optimizers = {o.name: o for o in OPTIMIZER_SPECS}
    mutants = {m.name: m for m in MUTANTS}
    if name in optimizers or (names and names[0] in optimizers):
        spec = optimizers[name if name in optimizers else names[0]]
        result = check_optimizer(spec, data)
        print(f"{spec.name}: {result}")
        return 0 if result.ok else 1
    specs = {**all_specs(), STACK_SPEC.name: STACK_SPEC}
    specs.update({m.name: mutant_spec(m, specs[m.target]) for m in mutants.values() if m.target in specs})
    if name not in specs:
        raise KeyError(f"no module, optimizer or mutant named {name!r}; see --list")
    case = Case.from_json(text, specs)
    report = check_case(case, device=device)
    print(report)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.list:
        print("modules:   ", " ".join(s.name for s in [*SPECS, STACK_SPEC]))
        print("optimizers:", " ".join(o.name for o in OPTIMIZER_SPECS))
        print("mutants:   ", " ".join(m.name for m in MUTANTS))
        return 0
    if args.replay:
        return _replay(args.only, args.replay, args.device)

    missing = sorted({cls.__name__ for cls in fw.modules()} - {s.name for s in SPECS})
    modules, optimizers, mutants = _targets(args.only)
    if args.no_mutants:
        mutants = []
    start = time.perf_counter()
    total = len(modules) + len(optimizers)
    print(f"verifying {total} modules and optimizers ({args.profile} profile, {args.device}, seed {args.seed})")
    results: list[SpecResult] = []
    for spec in modules:
        results.append(run_spec(spec, args.profile, args.seed, args.device))
        _progress(len(results), total, results[-1])
    for spec in optimizers:
        results.append(run_optimizer_spec(spec, args.profile, args.seed))
        _progress(len(results), total, results[-1])

    mutation_rows = []
    if mutants:
        print(f"\nmutation run: {len(mutants)} deliberately wrong modules and optimizers, each must fail")
        for index, mutant in enumerate(mutants, 1):
            outcome = run_mutant(mutant, args.profile, args.seed, args.device)
            check = outcome.failure["check"] if outcome.failure else None
            caught = not outcome.ok and check != "exception"  # a crash of the checker is not a catch
            mutation_rows.append(
                {
                    "name": mutant.name,
                    "target": mutant.target,
                    "description": mutant.description,
                    "caught": caught,
                    "check": check,
                }
            )
            verdict = f"caught by {check}" if caught else ("CRASHED the checker" if check else "SURVIVED")
            print(f"[{index:>2}/{len(mutants)}] {mutant.name:<38} {verdict}", flush=True)

    if results:
        _print_table(results)
    failures = [r for r in results if not r.ok]
    for r in failures:
        print(f"\n{'=' * 80}\n{r.failure['message']}\n\nreplay: {r.failure['replay']}")
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
    ok = not failures and caught == len(mutation_rows) and not (missing and not args.only)
    elapsed = time.perf_counter() - start
    print(f"\n{'ALL GRADIENTS VERIFIED' if ok else 'VERIFICATION FAILED'} in {elapsed:.0f}s")
    if args.json:
        from .environment import environment

        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "kind": "verification",
            "environment": environment(args.device),
            "profile": args.profile,
            "device": args.device,
            "seed": args.seed,
            "ok": ok,
            "seconds": round(elapsed, 1),
            "checks": [c for c in COLUMNS if any(c in r.checks for r in results)],
            "modules": [r.to_json() for r in results],
            "missing_specs": missing,
            "mutation": mutation,
        }
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
