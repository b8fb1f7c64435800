"""Run every check of a spec over many hypothesis-drawn cases, and summarise.

A spec's property is "every check passes on every drawn case". Hypothesis draws cases,
and on a failure shrinks it to a minimal case (fewest dimensions, smallest sizes, simplest
hyper-parameters) which is reported with a command that replays it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from .check import (
    CHECKS,
    CheckResult,
    GradientReport,
    _collect,
    _collect_torch,
    _fresh,
    _jitter,
    _jittered_copy,
    check_gradients,
    unit_roundoff,
)
from .spec import Case, Spec
from .twins import twin_of

ALL_CHECKS = (*CHECKS, "float32")

PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 8, "probes": 4},
    "ci": {"max_examples": 50, "probes": 8},
    "thorough": {"max_examples": 250, "probes": 16},
}


def _float32_run(case: Case, dtype: torch.dtype, device: str) -> dict[str, Any]:
    """Framework and twin results on one case in ``dtype``, and the jitter spread of the reference.

    The spread comes from two more evaluations of the reference (the twin, or the module when
    it has none) with inputs, parameters and ``grad_output`` moved by 8 units in the last place
    of ``dtype``: the rounding noise of quantities that cancel, which a zero result hides.
    """
    built = case.build(dtype=dtype, device=device)
    module = built.module
    twin = twin_of(module) if case.spec.twin is not None else None
    generator = torch.Generator().manual_seed(case.seed + 1)
    inputs = _fresh(module, built.inputs)  # an in-place module overwrites what it is given
    out = module(*inputs, built.target) if built.target is not None else module(*inputs)
    g = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    ours = _collect(module, built.inputs, built.target, g)
    theirs = _collect_torch(copy.deepcopy(twin), built.inputs, built.target, g) if twin is not None else {}
    base, collect = (twin, _collect_torch) if twin is not None else (module, _collect)
    reference = theirs or ours
    size = 8 * unit_roundoff(dtype)
    spread = {name: torch.zeros_like(value, dtype=torch.float64) for name, value in reference.items()}
    for _ in range(2):
        jittered = collect(
            _jittered_copy(base, generator, size),
            [_jitter(x, generator, size) for x in built.inputs],
            built.target,
            _jitter(g, generator, size),
        )
        for name in spread:
            spread[name] = torch.maximum(spread[name], (jittered[name].double() - reference[name].double()).abs())
    sizes = [out.numel(), *[x.numel() for x in built.inputs], *[p.numel() for _, p, _ in module.named_param()]]
    return {"ours": ours, "twin": theirs, "spread": spread, "n": max(sizes)}


def check_float32(case: Case, device: str, safety: float = 4.0) -> CheckResult:
    """The float32 forward and backward against the float64 ones on the same case.

    Tolerance of element j: ``safety * (e_j + max(e) + u32 * n * (|ref_j| + max(mean|ref|, s)))``
    where ``e`` is the float32 error of the reference implementation on the same data: the
    larger of torch's own float32-vs-float64 difference and its float32 jitter spread (the
    precision float32 can deliver for this function, cancellations included), and the last
    term the rounding bound of an accumulation of ``n`` terms (``n`` the largest tensor's size),
    floored normwise at ``s``, the largest mean magnitude of the case's outputs and gradients.
    """
    result = CheckResult("float32")
    run64 = _float32_run(case, torch.float64, device)
    run32 = _float32_run(case, torch.float32, device)
    u = unit_roundoff(torch.float32)
    # Normwise floor, as in the float64 checks: rounding is relative to the gradients flowing through.
    scale = max(float(t.double().abs().mean()) for t in run64["ours"].values() if t.numel())
    for name, ref in run64["ours"].items():
        ref = ref.double().cpu()
        tolerance = u * run64["n"] * (ref.abs() + max(float(ref.abs().mean()), scale))
        error = run32["spread"].get(name, torch.zeros(())).double().cpu()
        if name in run32["twin"] and name in run64["twin"]:
            difference = (run32["twin"][name].double().cpu() - run64["twin"][name].double().cpu()).abs()
            error = torch.maximum(error, difference)
        tolerance = tolerance + error + error.max()
        result.merge(name, run32["ours"][name], ref, safety * tolerance, ("float32", "float64"))
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
    """Check ``spec`` over the profile's number of drawn cases; stop at the first failure."""
    options = PROFILES[profile]
    result = SpecResult(spec.name)
    last_failure: dict[str, Any] = {}
    start = time.perf_counter()

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(
        max_examples=max_examples or options["max_examples"],
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
    result.seconds = time.perf_counter() - start
    return result
