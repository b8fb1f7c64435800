"""Run every check of a spec over many hypothesis-drawn cases, and summarise.

A spec's property is "every check passes on every drawn case". Hypothesis draws cases,
and on a failure shrinks it to a minimal case (fewest dimensions, smallest sizes, simplest
hyper-parameters) which is reported with a command that replays it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from .check import CHECKS, check_gradients
from .report import CheckResult, GradientReport
from .spec import Case, Spec
from .twins import twin_of

# The float64 checks, then the float32 run of the same case (the library's low_precision check).
ALL_CHECKS = (*(c for c in CHECKS if c not in ("low_precision", "second_order")), "float32")

PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 8, "probes": 4},
    "ci": {"max_examples": 50, "probes": 8},
    "thorough": {"max_examples": 250, "probes": 16},
}


def check_float32(case: Case, device: str) -> CheckResult:
    """The float32 forward and backward against the float64 truth on the same case.

    The library's ``low_precision`` check on the case built in float32: the module's float32
    outputs and gradients against its float64 copy (same upcast parameters and inputs), under
    the bar set by the torch twin's own float32 error (or the modelled one without a twin).
    """
    built = case.build(dtype=torch.float32, device=device)
    reference = twin_of(built.module) if case.spec.twin is not None else None
    report = check_gradients(
        built.module,
        *built.inputs,
        target=built.target,
        reference=reference,
        seed=case.seed,
        name=case.spec.name,
        checks=["low_precision"],
    )
    result = report["low_precision"]
    result.name = "float32"
    return result


def check_case(case: Case, device: str = "cpu", probes: int = 8) -> GradientReport:
    """Every check on one case: float64 checks (with the twin when the spec has one) and float32."""
    built = case.build(dtype=torch.float64, device=device)
    reference = twin_of(built.module) if case.spec.twin is not None else None
    report = check_gradients(
        built.module,
        *built.inputs,
        target=built.target,
        reference=reference,
        seed=case.seed,
        name=case.spec.name,
        probes=probes,
        checks=[c for c in CHECKS if c not in ("low_precision", "second_order")],
    )
    if reference is None:
        report["twin"].skipped = "no torch.nn twin for this module"
    report.checks.append(check_float32(case, device))
    if case.spec.semantics is not None:
        semantics = CheckResult("semantics")
        try:
            case.spec.semantics(case.build(dtype=torch.float64, device=device))
        except AssertionError as error:
            semantics.fail(str(error))
        report.checks.append(semantics)
    report.case = str(case)
    return report


@dataclass
class CheckSummary:
    ok: bool = True
    cases: int = 0
    worst_error: float = 0.0
    worst_ratio: float = 0.0
    skipped: str = ""

    def add(self, result: CheckResult) -> None:
        if result.skipped:
            self.skipped = result.skipped
            return
        self.cases += 1
        self.ok = self.ok and result.ok
        self.worst_error = max(self.worst_error, result.worst_error)
        self.worst_ratio = max(self.worst_ratio, result.worst_ratio)


@dataclass
class SpecResult:
    name: str
    ok: bool = True
    cases: int = 0
    seconds: float = 0.0
    checks: dict[str, CheckSummary] = field(default_factory=dict)
    failure: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "cases": self.cases,
            "seconds": round(self.seconds, 3),
            "checks": {
                k: {
                    "ok": v.ok,
                    "cases": v.cases,
                    "worst_error": _finite(v.worst_error),
                    "worst_ratio": _finite(v.worst_ratio),
                    **({"skipped": v.skipped} if v.skipped else {}),
                }
                for k, v in self.checks.items()
            },
            "failure": self.failure,
        }


def _finite(x: float) -> float | str:
    return x if x == x and abs(x) != float("inf") else str(x)


def replay_command(case: Case, device: str = "cpu") -> str:
    extra = f" --device {device}" if device != "cpu" else ""
    return f"python -m verification --only {case.spec.name}{extra} --replay '{case.to_json()}'"


def run_spec(
    spec: Spec,
    profile: str = "ci",
    seed: int = 0,
    device: str = "cpu",
    shrink: bool = True,
    max_examples: int | None = None,
) -> SpecResult:
    """Check ``spec`` over the profile's number of drawn cases (its ``case_share`` of them); stop at
    the first failure."""
    options = PROFILES[profile]
    result = SpecResult(spec.name)
    last_failure: dict[str, Any] = {}
    start = time.perf_counter()

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(
        max_examples=max_examples or max(1, round(options["max_examples"] * spec.case_share)),
        deadline=None,
        database=None,
        phases=phases,
        verbosity=Verbosity.quiet,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(case=spec.cases())
    def every_check_passes(case: Case) -> None:
        try:
            report = check_case(case, device=device, probes=options["probes"])
        except Exception as error:  # a crash on a valid case is a failure too
            last_failure.update(case=case, check="exception", message=f"{type(error).__name__}: {error}")
            raise AssertionError(f"{type(error).__name__}: {error}") from error
        result.cases += 1
        for check in report.checks:
            result.checks.setdefault(check.name, CheckSummary()).add(check)
        if not report.ok:
            failed = ", ".join(c.name for c in report.failures())
            last_failure.update(case=case, check=failed, message=str(report))
            raise AssertionError(str(report))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second intra-op thread only adds waiting
    try:
        every_check_passes()
    except AssertionError:
        result.ok = False
        case = last_failure["case"]
        result.failure = {
            "check": last_failure["check"],
            "message": last_failure["message"],
            "case": case.to_json(),
            "replay": replay_command(case, device),
        }
        for name in last_failure["check"].split(", "):
            result.checks.setdefault(name, CheckSummary()).ok = False
    finally:
        torch.set_num_threads(threads)
    result.seconds = time.perf_counter() - start
    return result
