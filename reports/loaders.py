"""Reading the results JSON files, with errors that name the file and the offending key.

Each loader checks only what the pages rely on (the contract in the producers' schemas), so a
producer may add keys freely, but a missing or mistyped key is reported as
``results/verification.json: modules[3].checks: expected an object, got list`` instead of a
``KeyError`` deep inside a template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGES = ("verification", "benchmarks", "training")

# The Makefile target that produces each page's results, named on a page that has none.
COMMANDS = {"verification": "make verify", "benchmarks": "make bench", "training": "make train"}

_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "true/false",
    int: "a number",
    float: "a number",
}


class ResultsError(Exception):
    """A results file that exists but cannot be read as its schema says."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)
        self.reason = message


@dataclass
class Results:
    """Everything found in one results directory; ``None`` or empty where a file is absent."""

    directory: Path
    verification: dict[str, Any] | None = None
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> pytest-benchmark JSON
    training: dict[str, Any] | None = None
    errors: dict[str, ResultsError] = field(default_factory=dict)  # file name -> why it could not be read

    def has(self, page: str) -> bool:
        return bool(self.benchmarks) if page == "benchmarks" else getattr(self, page) is not None

    def errors_for(self, page: str) -> list[ResultsError]:
        return [error for name, error in self.errors.items() if name.startswith(page)]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _expect(value: Any, kinds: tuple[type, ...], path: Path, where: str, *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return value
    # bool is an int to Python, but never a number in these files.
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        wanted = " or ".join(dict.fromkeys(_TYPE_NAMES[k] for k in kinds))
        raise ResultsError(path, f"{where}: expected {wanted}{' or null' if nullable else ''}, got {_describe(value)}")
    return value


def _key(
    obj: dict[str, Any], key: str, kinds: tuple[type, ...], path: Path, where: str, *, nullable: bool = False
) -> Any:
    at = f"{where}.{key}" if where else key
    if key not in obj:
        raise ResultsError(path, f"missing key {at!r}")
    return _expect(obj[key], kinds, path, at, nullable=nullable)


def read_json(path: Path) -> dict[str, Any]:
    """The top-level object of a JSON file, or a :class:`ResultsError` saying why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsError(path, f"cannot be read ({error})") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(
            path, f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from error
    return _expect(data, (dict,), path, "top level")


def _kind(data: dict[str, Any], path: Path, kind: str) -> None:
    if "kind" in data and data["kind"] != kind:
        raise ResultsError(path, f"expected a {kind} results file (kind {kind!r}), got kind {data['kind']!r}")


NUMBER = (int, float)


def load_verification(path: Path) -> dict[str, Any]:
    """``verification.json`` as written by ``python -m verification --json``."""
    data = read_json(path)
    _kind(data, path, "verification")
    _key(data, "environment", (dict,), path, "")
    _key(data, "ok", (bool,), path, "")
    for i, name in enumerate(_key(data, "checks", (list,), path, "")):
        _expect(name, (str,), path, f"checks[{i}]")
    if "missing_specs" in data:
        for i, name in enumerate(_key(data, "missing_specs", (list,), path, "", nullable=True) or []):
            _expect(name, (str,), path, f"missing_specs[{i}]")
    for i, module in enumerate(_key(data, "modules", (list,), path, "")):
        at = f"modules[{i}]"
        _expect(module, (dict,), path, at)
        _key(module, "name", (str,), path, at)
        _key(module, "ok", (bool,), path, at)
        for check, result in _key(module, "checks", (dict,), path, at).items():
            where = f"{at}.checks.{check}"
            _expect(result, (dict,), path, where)
            _key(result, "ok", (bool,), path, where, nullable=True)
            if "cases" in result:
                _key(result, "cases", NUMBER, path, where, nullable=True)
            # A non-finite error is written as its text ("nan", "inf"): JSON has no number for it.
            for number in ("worst_error", "worst_ratio"):
                if number in result:
                    _key(result, number, (*NUMBER, str), path, where, nullable=True)
            if "skipped" in result:
                _key(result, "skipped", (str,), path, where, nullable=True)
        failure = module.get("failure")
        if failure is not None:
            _expect(failure, (dict,), path, f"{at}.failure")
            for key in ("check", "message", "replay"):
                _key(failure, key, (str,), path, f"{at}.failure")
    mutation = data.get("mutation")
    if mutation is not None:
        _expect(mutation, (dict,), path, "mutation")
        for key in ("score", "caught", "total"):
            _key(mutation, key, NUMBER, path, "mutation")
        for i, mutant in enumerate(_key(mutation, "mutants", (list,), path, "mutation")):
            at = f"mutation.mutants[{i}]"
            _expect(mutant, (dict,), path, at)
            _key(mutant, "name", (str,), path, at)
            _key(mutant, "caught", (bool,), path, at)
    return data


def load_benchmarks(path: Path) -> dict[str, Any]:
    """``benchmarks-<device>.json``: pytest-benchmark's own JSON, extended by ``python -m benchmarks``."""
    data = read_json(path)
    machine = data.get("machine_info", {})
    _expect(machine, (dict,), path, "machine_info")
    if "environment" in machine:
        _key(machine, "environment", (dict,), path, "machine_info")
    if "matmul_peak_gflops" in machine:
        _key(machine, "matmul_peak_gflops", NUMBER, path, "machine_info", nullable=True)
    for i, bench in enumerate(_key(data, "benchmarks", (list,), path, "")):
        at = f"benchmarks[{i}]"
        _expect(bench, (dict,), path, at)
        _key(bench, "name", (str,), path, at)
        stats = _key(bench, "stats", (dict,), path, at)
        _key(stats, "median", NUMBER, path, f"{at}.stats")
        _key(stats, "iqr", NUMBER, path, f"{at}.stats")
        extra = bench.get("extra_info", {})
        _expect(extra, (dict,), path, f"{at}.extra_info")
        if "flops" in extra:
            _key(extra, "flops", NUMBER, path, f"{at}.extra_info", nullable=True)
    for i, failure in enumerate(data.get("failures") or []):  # cases not timed, and why
        at = f"failures[{i}]"
        _expect(failure, (dict,), path, at)
        for key in ("module", "size", "dtype", "error"):
            _key(failure, key, (str,), path, at)
    return data


def load_training(path: Path) -> dict[str, Any]:
    """``training.json`` as written by ``python -m experiment --json``."""
    data = read_json(path)
    _kind(data, path, "training")
    _key(data, "environment", (dict,), path, "")
    _key(data, "config", (dict,), path, "")
    for i, run in enumerate(_key(data, "runs", (list,), path, "")):
        at = f"runs[{i}]"
        _expect(run, (dict,), path, at)
        for impl in ("framework", "torch"):
            if impl in run:
                record = _key(run, impl, (dict,), path, at)
                for j, value in enumerate(_key(record, "loss", (list,), path, f"{at}.{impl}")):
                    _expect(value, NUMBER, path, f"{at}.{impl}.loss[{j}]", nullable=True)
    summary = _key(data, "summary", (dict,), path, "")
    for impl, metrics in summary.items():
        _expect(metrics, (dict,), path, f"summary.{impl}")
        for metric, value in metrics.items():
            where = f"summary.{impl}.{metric}"
            _expect(value, (dict,), path, where)
            _key(value, "mean", NUMBER, path, where, nullable=True)
    if data.get("agreement") is not None:
        _expect(data["agreement"], (dict,), path, "agreement")
    grid = data.get("decision_grid")
    if grid is not None:
        _expect(grid, (dict,), path, "decision_grid")
        _key(grid, "xs", (list,), path, "decision_grid")
        _key(grid, "ys", (list,), path, "decision_grid")
    points = data.get("test_points")
    if points is not None:
        _expect(points, (dict,), path, "test_points")
        if len(_key(points, "points", (list,), path, "test_points")) != len(
            _key(points, "labels", (list,), path, "test_points")
        ):
            raise ResultsError(path, "test_points: points and labels differ in length")
    return data


def benchmark_files(directory: Path) -> dict[str, Path]:
    """``benchmarks-<device>.json`` files by device, CPU first, then CUDA, then any other."""
    found = {p.name[len("benchmarks-") : -len(".json")]: p for p in directory.glob("benchmarks-*.json")}
    order = {"cpu": 0, "cuda": 1}
    return {device: found[device] for device in sorted(found, key=lambda d: (order.get(d, 2), d))}


def load(directory: Path | str, pages: tuple[str, ...] = PAGES) -> Results:
    """Read the results of ``pages`` from ``directory``; unreadable files are kept in ``errors``."""
    directory = Path(directory)
    results = Results(directory)
    for page in pages:
        if page == "benchmarks":
            for device, path in benchmark_files(directory).items():
                try:
                    results.benchmarks[device] = load_benchmarks(path)
                except ResultsError as error:
                    results.errors[path.name] = error
            continue
        path = directory / f"{page}.json"
        if path.exists():
            try:
                setattr(results, page, (load_verification if page == "verification" else load_training)(path))
            except ResultsError as error:
                results.errors[path.name] = error
    return results
