"""Verification spread over worker processes: ``python -m verification --jobs N``.

Each check of a spec, an optimizer or a mutant is independent of the others, so N processes
take them from one queue (``concurrent.futures.ProcessPoolExecutor``). The workers are
spawned, not forked, so each starts torch afresh (no intra-op thread pool copied mid-state);
each imports the framework once and is sent names, not objects: it finds the spec among the
framework's or rediscovers it from the same PATHs (as an isolated worker does), the optimizer
and the mutant in their tables. Results come back as the in-process runs make them, in the
order asked for, whatever order the workers finish in; each case is drawn from the same seed,
so a result does not depend on the number of workers.

A worker that dies (a crash in native code) takes the pool down: every run it left unfinished
is reported as crashed, naming ``--isolate``, which gives each spec its own process and names
the case that crashed.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import torch

from .runner import SpecResult, dtype_name, run_spec


@dataclass(frozen=True)
class Task:
    """One run, by name: ``kind`` is ``"spec"`` (on ``device`` in ``dtypes``), ``"optimizer"`` or
    ``"mutant"``."""

    kind: str
    name: str
    device: str = "cpu"
    dtypes: tuple[str, ...] = ()
    seconds: float | None = None


@dataclass(frozen=True)
class Settings:
    """What every run of one invocation shares."""

    paths: tuple[str, ...] = ()
    profile: str = "ci"
    seed: int = 0
    command: str = "python -m verification"
    threads: int | None = 1
    isolate: bool = False


def spec_task(name: str, device: str, dtypes: Sequence[torch.dtype], seconds: float | None) -> Task:
    return Task("spec", name, device, tuple(dtype_name(d) for d in dtypes), seconds)


def run_task(task: Task, settings: Settings) -> SpecResult:
    """One run, in a worker process (or, isolated, in a process of its own)."""
    from .isolation import _find, run_isolated
    from .mutants import MUTANTS, run_mutant
    from .optimizers import OPTIMIZER_SPECS, run_optimizer_spec

    if task.kind == "spec":
        spec = _find(settings.paths, task.name)
        dtypes = [getattr(torch, name) for name in task.dtypes]
        if settings.isolate:
            return run_isolated(
                spec,
                settings.paths,
                settings.profile,
                settings.seed,
                task.device,
                dtypes,
                task.seconds,
                settings.command,
                settings.threads,
            )
        return run_spec(
            spec,
            settings.profile,
            settings.seed,
            task.device,
            dtypes=dtypes,
            seconds=task.seconds,
            command=settings.command,
            threads=settings.threads,
        )
    if task.kind == "optimizer":
        optimizer = next(o for o in OPTIMIZER_SPECS if o.name == task.name)
        return run_optimizer_spec(optimizer, settings.profile, settings.seed)
    if task.kind == "mutant":
        mutant = next(m for m in MUTANTS if m.name == task.name)
        return run_mutant(mutant, settings.profile, settings.seed, task.device)
    raise ValueError(f"unknown task kind {task.kind!r}")


def _crashed(task: Task, error: BaseException) -> SpecResult:
    result = SpecResult(task.name, device=task.device, dtypes=list(task.dtypes))
    result.fail(
        "crashed",
        f"{task.name}: its worker process failed ({type(error).__name__}: {error}); run with --isolate to "
        "give each spec its own process and name the case that crashed",
    )
    return result


class Runner:
    """Runs tasks in ``jobs`` worker processes (with ``settings.isolate``, in threads that each
    start an isolated process)."""

    def __init__(self, jobs: int, settings: Settings) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.settings = settings
        self._pool: Executor
        if settings.isolate:  # each task starts its own process already
            self._pool = ThreadPoolExecutor(max_workers=jobs)
        else:
            self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: Sequence[Task], done: Callable[[SpecResult], None] | None = None) -> list[SpecResult]:
        """The results of ``tasks`` in their order; ``done`` is called on each as it finishes."""
        futures: dict[Future[SpecResult], int] = {}
        results: dict[int, SpecResult] = {}
        for index, task in enumerate(tasks):
            try:
                futures[self._pool.submit(run_task, task, self.settings)] = index
            except Exception as error:  # the pool broke in an earlier batch: no worker is left
                results[index] = _crashed(task, error)
                if done:
                    done(results[index])
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:  # a worker died (BrokenProcessPool), or the run itself raised
                result = _crashed(tasks[index], error)
            results[index] = result
            if done:
                done(result)
        return [results[index] for index in range(len(tasks))]
