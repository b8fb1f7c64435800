"""Process isolation: verify one spec in a worker process, so a crash takes down the worker only.

``run_isolated`` starts ``python -m verification.isolation`` for one spec on one device. The
worker rediscovers the spec (from the same PATHs, or among the framework's), writes the case it
is about to check to a progress file before each case, and its result as JSON at the end; its
``faulthandler`` prints the Python stack to stderr on a fatal signal. The parent waits for the
time limit (plus the worker's start-up) and then kills it. What it reports:

* the worker's own result (a failed check, an exception, a timeout caught in Python);
* ``crashed``: the worker died of a signal (a segfault in an extension) or exited without a
  result; the message names the signal, the case being checked and the stack the worker printed;
* ``timeout``: the worker was killed at the limit (a hang in native code, where the worker's own
  timer cannot interrupt it).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .runner import PROFILES, SpecResult, dtype_name, replay_command, run_spec, with_truth
from .spec import Case, Spec

STARTUP_SECONDS = 120.0  # importing torch and the user's code, before the time limit starts to count
# After the time limit, the worker's own timer gets this long to report the hang itself (with its case).
GRACE_SECONDS = 2.0
TAIL_LINES = 30


def _find(paths: Sequence[str], name: str) -> Spec:
    from .discovery import discover, framework_specs

    specs = [f.spec for f in discover(paths)] if paths else framework_specs()
    for spec in specs:
        if spec.name == name:
            return spec
    raise SystemExit(f"verification.isolation: no spec named {name!r} in {list(paths) or 'the framework'}")


def _last_words(path: Path, lines: int = TAIL_LINES) -> str:
    """The worker's stderr: from faulthandler's report on, without hypothesis' and runpy's frames."""
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    start = next((i for i, line in enumerate(text) if line.startswith("Fatal Python error")), None)
    if start is None:
        return "\n".join(text[-lines:])
    noise = ("/hypothesis/", "<frozen runpy>", "/verification/isolation.py")
    kept = [line for line in text[start:] if not any(n in line for n in noise)]
    kept = [line for line in kept if not line.startswith("Extension modules:")]
    return "\n".join(kept[:lines])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_isolated(
    spec: Spec,
    paths: Sequence[str],
    profile: str = "ci",
    seed: int = 0,
    device: str = "cpu",
    dtypes: Sequence[torch.dtype] | None = None,
    seconds: float | None = None,
    command: str = "python -m verification",
    threads: int | None = 1,
    truth_checked_elsewhere: bool = False,
) -> SpecResult:
    """:func:`~verification.runner.run_spec` in a worker process (see the module docstring)."""
    dtypes = with_truth(spec.dtypes if dtypes is None else dtypes, truth_checked_elsewhere)
    with tempfile.TemporaryDirectory(prefix="verification-") as folder:
        work = Path(folder)
        result_file, progress_file, stderr_file = work / "result.json", work / "case.json", work / "stderr"
        argv = [
            sys.executable,
            "-m",
            "verification.isolation",
            "--spec",
            spec.name,
            "--profile",
            profile,
            "--seed",
            str(seed),
            "--device",
            device,
            "--result",
            str(result_file),
            "--progress",
            str(progress_file),
            "--command",
            command,
            "--dtypes",
            *(dtype_name(d) for d in dtypes),
            *(["--time-limit", str(seconds)] if seconds is not None else []),
            "--threads",
            str(threads or 0),
            *(["--truth-checked-elsewhere"] if truth_checked_elsewhere else []),
            "--",
            *paths,
        ]
        start = time.perf_counter()
        with open(stderr_file, "wb") as stderr:
            worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=os.getcwd())
            code = _wait(worker, progress_file, seconds)
        elapsed = time.perf_counter() - start
        if code == 0 and result_file.exists():
            return SpecResult.from_json(json.loads(result_file.read_text()))
        result = SpecResult(spec.name, device=device, dtypes=[dtype_name(d) for d in dtypes], seconds=elapsed)
        case = _last_case(spec, progress_file)
        during = f" while checking case {case}" if case else " before its first case"
        replay = replay_command(case, device, command, dtypes, profile, threads) if case else ""
        stack = _last_words(stderr_file)
        stack = f"\n\nthe worker's last words (stderr):\n{stack}" if stack else ""
        if code is None:
            result.fail(
                "timeout",
                f"{spec.name}: the worker was killed after {elapsed:.0f} s, past the time limit of {seconds:g} s"
                f"{during} (a hang the worker's own timer could not interrupt){stack}",
                case,
                replay,
            )
        elif code < 0:
            result.fail(
                "crashed",
                f"{spec.name}: the worker process died of {_signal_name(-code)}{during}{stack}",
                case,
                replay,
            )
        else:
            result.fail("crashed", f"{spec.name}: the worker exited with status {code}{during}{stack}", case, replay)
        return result


def _wait(worker: subprocess.Popen, progress: Path, seconds: float | None) -> int | None:
    """The worker's exit status, or None when it had to be killed: past ``seconds`` (plus a grace)
    from the moment it is ready (its progress file exists), or past the start-up allowance."""
    start, ready = time.perf_counter(), None
    while True:
        code = worker.poll()
        if code is not None:
            return code
        now = time.perf_counter()
        if ready is None and progress.exists():
            ready = now
        if seconds is not None:
            deadline = start + STARTUP_SECONDS if ready is None else ready + seconds * 1.1 + GRACE_SECONDS
            if now > deadline:
                worker.kill()
                worker.wait()
                return None
        time.sleep(0.05)


def _last_case(spec: Spec, progress: Path) -> Case | None:
    try:
        return Case.from_json(progress.read_text(), {spec.name: spec})
    except (OSError, ValueError, KeyError):
        return None


def worker_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verification.isolation", description="one spec, one device")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=None)
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--command", default="python -m verification")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--truth-checked-elsewhere", action="store_true")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    faulthandler.enable(file=sys.stderr, all_threads=False)
    spec = _find(args.paths, args.spec)
    args.progress.write_text("")  # ready: the parent's clock for the time limit starts now
    dtypes = [getattr(torch, name) for name in args.dtypes] if args.dtypes else None

    def started(case: Case) -> None:
        args.progress.write_text(case.to_json())

    result = run_spec(
        spec,
        args.profile,
        args.seed,
        args.device,
        dtypes=dtypes,
        seconds=args.time_limit,
        command=args.command,
        on_case=started,
        threads=args.threads,
        truth_checked_elsewhere=args.truth_checked_elsewhere,
    )
    args.result.write_text(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
