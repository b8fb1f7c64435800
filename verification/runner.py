"""Run every check of a spec over many hypothesis-drawn cases, and summarise.

A spec's property is "every check passes on every drawn case", in each of its dtypes: every
check in float64, then each lower precision against the float64 truth. Hypothesis draws
cases, and on a failure shrinks it to a minimal case (fewest dimensions, smallest sizes,
simplest hyper-parameters) which is reported with a command that replays it.

A target that raises, returns something that is not a tensor, or hangs is that spec's failure
(with its traceback, or the time limit it exceeded), never the end of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import shlex
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from .check import CHECKS, check_gradients
from .checks.batched import declares_vmap
from .checks.forward_mode import defines_jvp
from .report import CheckResult, GradientReport
from .spec import Case, Spec
from .targets import TargetError
from .targets import _name_of as target_name

# Every check in float64 (second_order when the spec asks for order=2, forward_mode for a Function
# that defines jvp, batched for one that declares vmap support, undefined_grad for autograd targets);
# in each lower
# precision, the comparison with the float64 truth (reported under the dtype's name), plus for
# autograd targets (see Spec.low_precision_checks) the checks that run in the caller's precision.
FLOAT64_CHECKS = tuple(
    c for c in CHECKS if c not in ("low_precision", "second_order", "forward_mode", "batched", "undefined_grad")
)
ALL_CHECKS = (*FLOAT64_CHECKS, "float32")

PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 8, "probes": 4},
    "ci": {"max_examples": 50, "probes": 8},
    "thorough": {"max_examples": 250, "probes": 16},
}

DEFAULT_COMMAND = "python -m verification"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _ordered(dtypes: Sequence[torch.dtype]) -> list[torch.dtype]:
    """float64 first: the ground truth is checked before anything is judged against it."""
    return sorted(dict.fromkeys(dtypes), key=lambda d: (d != torch.float64, -torch.finfo(d).bits))


def with_truth(dtypes: Sequence[torch.dtype], truth_checked_elsewhere: bool = False) -> list[torch.dtype]:
    """``dtypes``, float64 first, with float64 added where a lower precision is asked for without it
    (unless ``truth_checked_elsewhere``): a lower precision is judged against the target's own
    float64 backward, which is a truth only once float64's checks (finite differences, the
    reference) have passed it. A float32 run alone would otherwise pass a backward that is wrong
    in every precision alike."""
    ordered = _ordered(dtypes)
    return ordered if truth_checked_elsewhere or torch.float64 in ordered else [torch.float64, *ordered]


def _absorb(into: CheckResult, other: CheckResult, label: str) -> None:
    """Merge ``other`` (the same check in another precision) into ``into``, naming the precision."""
    if other.skipped:
        return
    if into.skipped:
        into.skipped = ""
    into.compared += other.compared
    into.worst_error = max(into.worst_error, other.worst_error)
    if other.inconclusive and not into.inconclusive:
        into.inconclusive = f"in {label}: {other.inconclusive}"
    if not other.ok:
        if into.ok:
            into.detail = f"in {label}: {other.detail}"
        into.ok = False
        into.worst_ratio = max(into.worst_ratio, other.worst_ratio)
    elif other.worst_ratio > into.worst_ratio:
        into.worst_ratio = other.worst_ratio
        if into.ok:
            into.detail = f"in {label}: {other.detail}" if other.detail else into.detail


def check_dtype(case: Case, dtype: torch.dtype, device: str = "cpu", probes: int = 8) -> GradientReport:
    """The checks of one precision on one case (float64: every check; lower: against the float64 truth)."""
    spec = case.spec
    built = case.build(dtype=dtype, device=device)
    reference = spec.reference_for(built)
    options = {"probes": probes, **spec.options}
    order = int(options.pop("order", 1))
    forward_mode, batched = options.pop("forward_mode", False), options.pop("batched", False)
    if dtype == torch.float64:
        checks = [
            *FLOAT64_CHECKS,
            *(["second_order"] if order == 2 else []),
            *(["forward_mode"] if forward_mode or defines_jvp(built.module) else []),
            *(["batched"] if batched or declares_vmap(built.module) else []),
            *(["undefined_grad"] if not callable(getattr(built.module, "param", None)) else []),
        ]
    else:
        checks, order = list(spec.lower_precision_checks(built.module)), 1
    report = check_gradients(
        built.module,
        *built.inputs,
        target=built.target,
        reference=reference,
        seed=case.seed,
        name=spec.name,
        order=order,
        checks=checks,
        **options,
    )
    if "twin" in report and reference is None:
        protocol = callable(getattr(built.module, "param", None))
        report["twin"].skipped = "no torch.nn twin for this module" if protocol else "no reference in the spec"
    if "low_precision" in report:
        report["low_precision"].name = dtype_name(dtype)
    return report


def check_float32(case: Case, device: str) -> CheckResult:
    """The float32 forward and backward against the float64 truth on the same case."""
    return check_dtype(case, torch.float32, device)[dtype_name(torch.float32)]


def check_case(
    case: Case, device: str = "cpu", probes: int = 8, dtypes: Sequence[torch.dtype] | None = None
) -> GradientReport:
    """Every check on one case, in each of ``dtypes`` (default: the spec's), merged into one report.

    The lower precisions' ``low_precision`` results appear under their dtype's name (``float32``,
    ``bfloat16``); their layouts and determinism results are merged into those checks, a failure
    naming its precision.
    """
    spec = case.spec
    combined: GradientReport | None = None
    ordered = _ordered(spec.dtypes if dtypes is None else dtypes)
    for dtype in ordered:
        report = check_dtype(case, dtype, device, probes)
        if combined is None:
            combined = report
            continue
        combined.notes += [n for n in report.notes if n not in combined.notes]
        for result in report.checks:
            if result.name in combined:
                _absorb(combined[result.name], result, dtype_name(dtype))
            else:
                combined.checks.append(result)
    assert combined is not None
    combined.dtype = ", ".join(dtype_name(d) for d in ordered)
    if spec.semantics is not None and torch.float64 in ordered:
        semantics = CheckResult("semantics")
        try:
            spec.semantics(case.build(dtype=torch.float64, device=device))
        except AssertionError as error:
            semantics.fail(str(error))
        combined.checks.append(semantics)
    combined.case = str(case)
    return combined


# -- threads and time limits --------------------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` (None or 0: left as it is), restored after.

    The verifier's cases are small (hypothesis shrinks towards the smallest), too small for a
    parallel kernel to gain anything, while on cores shared with other work every parallel
    region waits for a descheduled thread: one thread verified this project's modules and the
    attention example 4 to 15 times faster on a busy 2-core machine. A CPU kernel whose parallel
    path has a bug of its own needs ``threads`` > 1 (``--threads``) and cases large enough to
    take that path.
    """
    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def positive_seconds(text: str) -> float:
    """A command line's time limit: a positive, finite number of seconds (argparse's ``type``)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


class TimeLimitExceeded(BaseException):
    """A spec's verification ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[bool]:
    """Raise :class:`TimeLimitExceeded` in this thread after ``seconds``; yields whether it is enforced.

    A SIGALRM timer: it interrupts Python code and blocking calls, on the main thread of a POSIX
    process. A hang inside native code that never returns to Python needs process isolation
    (``--isolate``), where the parent kills the worker.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # never steal a timer someone else armed
    )
    if not usable:
        yield False
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- results ------------------------------------------------------------------------------------------
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
    device: str = "cpu"
    dtypes: list[str] = field(default_factory=list)

    def fail(self, check: str, message: str, case: Case | None = None, replay: str = "") -> None:
        """Record a failure that is not a check's (an exception, a timeout, a crash)."""
        self.ok = False
        self.failure = {"check": check, "message": message, "case": case.to_json() if case else "", "replay": replay}
        self.checks.setdefault(check, CheckSummary()).ok = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "cases": self.cases,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "dtypes": self.dtypes,
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpecResult:
        result = cls(
            data["name"],
            ok=data["ok"],
            cases=data["cases"],
            seconds=data["seconds"],
            failure=data.get("failure"),
            device=data.get("device", "cpu"),
            dtypes=list(data.get("dtypes", [])),
        )
        for name, check in data["checks"].items():
            result.checks[name] = CheckSummary(
                check["ok"],
                check["cases"],
                float(check["worst_error"]),
                float(check["worst_ratio"]),
                check.get("skipped", ""),
            )
        return result


def _finite(x: float) -> float | str:
    return x if x == x and abs(x) != math.inf else str(x)


def replay_command(
    case: Case,
    device: str = "cpu",
    command: str = DEFAULT_COMMAND,
    dtypes: Sequence[torch.dtype] | None = None,
    profile: str = "ci",
    threads: int | None = 1,
) -> str:
    """The command that re-runs ``case`` as the run checked it: on ``device``, in ``dtypes`` when not
    all of the spec's, with the profile's probes and torch's thread count (a float32 matrix product
    may round differently on another count, and a case near the error model's bar then passes)."""
    extra = f" --device {device}" if device != "cpu" else ""
    if dtypes is not None and set(dtypes) != set(case.spec.dtypes):
        extra += " --dtype " + " ".join(dtype_name(d) for d in _ordered(dtypes))
    if profile != "ci":
        extra += f" --profile {profile}"
    if threads != 1:
        extra += f" --threads {threads or 0}"
    return f"{command} --only {shlex.quote(case.spec.name)}{extra} --replay {shlex.quote(case.to_json())}"


_PACKAGE = str(Path(__file__).resolve().parent)


def _traceback(error: BaseException, limit: int = 40) -> str:
    """The traceback from the first frame outside the verifier (the target's own code); only the
    message for the verifier's diagnosis of a target (a :class:`TargetError`, a shape mismatch)."""
    frames = traceback.extract_tb(error.__traceback__)
    outside = [i for i, f in enumerate(frames) if not str(Path(f.filename).resolve()).startswith(_PACKAGE)]
    if not outside and isinstance(error, TargetError | ValueError):
        return f"{type(error).__name__}: {error}"
    frames = frames[outside[0] :] if outside else frames
    lines = ["Traceback (most recent call last):", *"".join(traceback.format_list(frames)).rstrip().splitlines()]
    lines += "".join(traceback.format_exception_only(error)).rstrip().splitlines()
    if len(lines) > limit:
        lines = [lines[0], "  ...", *lines[-limit:]]
    return "\n".join(lines)


def _reference_raises_too(case: Case, device: str, command: str = DEFAULT_COMMAND) -> str:
    """For a target that raised on ``case``: a paragraph saying that the spec's reference raises on
    it too, so that the case, not the target, is at fault (inputs of a shape the arguments do not
    fit: a course file's input shape for another layer size); '' where there is no reference, or
    it runs, or it cannot even be built."""
    spec = case.spec
    if not spec.has_reference:
        return ""
    try:
        built = case.build(dtype=torch.float64, device=device)
        reference = spec.reference_for(built)
    except Exception:
        return ""
    if reference is None:
        return ""
    try:
        if isinstance(reference, torch.nn.Module):  # a copy in the case's precision, as check_gradients runs it
            reference = copy.deepcopy(reference).to(dtype=torch.float64)
    except Exception:
        return ""
    function = isinstance(reference, type) and issubclass(reference, torch.autograd.Function)
    call = reference.apply if function else reference
    try:
        call(*built.inputs, *([] if built.target is None else [built.target]))
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        ee559 = command.startswith("python -m verification.ee559")
        fix = "--input-shape and --args" if ee559 else "its inputs and kwargs"
        return (
            f"\n\nThe reference ({_name_of(reference)}) raises on this case too ({type(error).__name__}: {first}): "
            f"the case does not fit the function, so the spec is what needs fixing ({fix}), not the target."
        )
    return ""


def _name_of(reference: Any) -> str:
    """The targets' name for it, a torch module's with its ``torch.nn.`` prefix."""
    name = target_name(reference)
    from_torch = isinstance(reference, torch.nn.Module) and type(reference).__module__.startswith("torch.nn.")
    return f"torch.nn.{name}" if from_torch else name


def _per_mode(spec: Spec, examples: int) -> list[tuple[Spec, int]]:
    """The spec once per mode, with its share of the ``examples``: each mode gets its cases. Drawn
    as one of the case's choices, a mode can be all but absent from hypothesis' draws of a seed
    (50 BatchNorm1d cases at seed 36: no eval-mode case tracking running statistics, where an
    eval-mode backward through batch statistics is wrong)."""
    if len(spec.modes) < 2 or examples < len(spec.modes):
        return [(spec, examples)]
    share, extra = divmod(examples, len(spec.modes))
    return [(dataclasses.replace(spec, modes=(m,)), share + (i < extra)) for i, m in enumerate(spec.modes)]


def run_spec(
    spec: Spec,
    profile: str = "ci",
    seed: int = 0,
    device: str = "cpu",
    shrink: bool = True,
    max_examples: int | None = None,
    dtypes: Sequence[torch.dtype] | None = None,
    seconds: float | None = None,
    command: str = DEFAULT_COMMAND,
    on_case: Callable[[Case], None] | None = None,
    threads: int | None = 1,
    truth_checked_elsewhere: bool = False,
) -> SpecResult:
    """Check ``spec`` over the profile's number of drawn cases (its ``case_share`` of them) on
    ``device``; stop at the first failure.

    Args:
        dtypes: the precisions to check (default: the spec's); float64 is checked too whenever a
            lower precision is (see :func:`with_truth`), unless ``truth_checked_elsewhere``.
        seconds: the time limit (default: the spec's ``time_limit``; None: none).
        command: how the replay command starts (``python -m verification examples/``).
        on_case: called with each case before it is checked (process isolation records it).
        threads: torch's thread count during the run (see :func:`torch_threads`; 0: unchanged).
        truth_checked_elsewhere: the same run verifies this spec in float64 on this device as
            well (the pytest plugin's float64 item, when selected): the lower precisions only.
    """
    options = PROFILES[profile]
    dtypes = with_truth(spec.dtypes if dtypes is None else dtypes, truth_checked_elsewhere)
    result = SpecResult(spec.name, device=device, dtypes=[dtype_name(d) for d in dtypes])
    last_failure: dict[str, Any] = {}
    current: dict[str, Case] = {}
    limit = spec.time_limit if seconds is None else seconds
    start = time.perf_counter()

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    examples = max_examples or max(1, round(options["max_examples"] * spec.case_share))

    def check_one(case: Case) -> None:
        current["case"] = case
        if on_case is not None:
            on_case(case)
        try:
            report = check_case(case, device=device, probes=options["probes"], dtypes=dtypes)
        except Exception as error:  # a crash on a valid case is a failure too, with its traceback
            message = f"{spec.name} raised on case {case}:\n{_traceback(error)}" + _reference_raises_too(
                case, device, command
            )
            last_failure.update(case=case, check="exception", message=message)
            raise AssertionError(f"{type(error).__name__}: {error}") from error
        result.cases += 1
        for check in report.checks:
            result.checks.setdefault(check.name, CheckSummary()).add(check)
        if not report.ok:
            failed = ", ".join(c.name for c in report.failures()) or "inconclusive"
            last_failure.update(case=case, check=failed, message=str(report))
            raise AssertionError(str(report))

    def every_check_passes(part: Spec, count: int) -> None:
        @settings(
            max_examples=count,
            deadline=None,
            database=None,
            phases=phases,
            verbosity=Verbosity.quiet,
            print_blob=False,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis_seed(seed)
        @given(case=part.cases())
        def run(case: Case) -> None:
            check_one(case)

        run()

    try:
        with torch_threads(threads), time_limit(limit):
            for part, count in _per_mode(spec, examples):
                every_check_passes(part, count)
    except TimeLimitExceeded:
        case = current.get("case")
        during = f" (during case {case})" if case else ""
        result.fail(
            "timeout",
            f"{spec.name}: no verdict within its time limit of {limit:g} s{during}; the target hangs or is too "
            f"slow for this many cases (raise time_limit on the spec or --time-limit)",
            case,
            replay_command(case, device, command, dtypes, profile, threads) if case else "",
        )
    except Exception as error:
        if not last_failure:  # hypothesis itself gave up (e.g. a flaky target): still this spec's failure
            result.fail("exception", f"{spec.name}: {_traceback(error)}", current.get("case"))
        else:
            case = last_failure["case"]
            result.ok = False
            result.failure = {
                "check": last_failure["check"],
                "message": last_failure["message"],
                "case": case.to_json(),
                "replay": replay_command(case, device, command, dtypes, profile, threads),
            }
            for name in last_failure["check"].split(", "):
                result.checks.setdefault(name, CheckSummary()).ok = False
    result.seconds = time.perf_counter() - start
    return result
