"""pytest plugin of the benchmark suite (loaded by ``python -m benchmarks`` with ``-p benchmarks.plugin``).

Adds the ``--bench-*`` options, sets the thread count, measures the matrix-multiply peak and
the memory bandwidth before the first benchmark, and extends pytest-benchmark's
``machine_info`` with the shared environment record, that peak and that bandwidth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from .cases import SIZES
from .harness import configure, matmul_peak, memory_bandwidth
from .specs import DTYPES as SPEC_DTYPES


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bench", "framework against torch.nn benchmarks")
    group.addoption("--bench-device", default="cpu", choices=("cpu", "cuda"), help="device of the tensors")
    group.addoption("--bench-dtype", default="float32", choices=tuple(SPEC_DTYPES), help="floating dtype")
    group.addoption("--bench-sizes", default=",".join(SIZES), help="comma-separated subset of seed,medium,large")
    group.addoption("--bench-only", action="append", default=[], help="only these modules or workloads (repeatable)")
    group.addoption("--bench-threads", type=int, default=0, help="torch threads (default: the CPUs available)")
    group.addoption("--bench-specs", action="append", default=[], help="time the ops of the specs in PATH (repeatable)")


class Settings:
    """The run's options, read once from the pytest config."""

    def __init__(self, config: pytest.Config) -> None:
        self.device = config.getoption("--bench-device")
        self.dtype_name = config.getoption("--bench-dtype")
        self.dtype = SPEC_DTYPES[self.dtype_name]
        self.spec_paths: list[str] = config.getoption("--bench-specs")
        # The framework's cases have sizes seed, medium, large; a spec names its own (empty: all).
        self.sizes = [s.strip() for s in config.getoption("--bench-sizes").split(",") if s.strip()]
        unknown = set(self.sizes) - set(SIZES)
        if unknown and not self.spec_paths:
            raise pytest.UsageError(f"--bench-sizes: expected a subset of {SIZES}, got {sorted(unknown)}")
        self.only = {name for entry in config.getoption("--bench-only") for name in entry.split(",") if name}
        self.threads = config.getoption("--bench-threads") or None
        self.peak: dict[str, Any] | None = None
        self.bandwidth: dict[str, Any] | None = None
        self.failures: list[dict[str, str]] = []

    def wanted(self, name: str) -> bool:
        return not self.only or name in self.only

    def failed(self, name: str, size: str) -> Callable[[BaseException], None]:
        """What records that case ``name`` at ``size`` was not timed, and why (for the summary and the report)."""

        def record(error: BaseException) -> None:
            why = str(error) if isinstance(error, AssertionError) else f"{type(error).__name__}: {error}"
            self.failures.append(
                {"module": name, "size": size, "device": self.device, "dtype": self.dtype_name, "error": why}
            )

        return record

    def extra_info(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype_name, "threads": torch.get_num_threads()}


SETTINGS_KEY = pytest.StashKey[Settings]()


def settings(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


def pytest_configure(config: pytest.Config) -> None:
    bench = Settings(config)
    bench.threads = configure(bench.device, bench.threads)
    config.stash[SETTINGS_KEY] = bench


def pytest_collection_finish(session: pytest.Session) -> None:
    bench = settings(session.config)
    if session.items and bench.peak is None and (bench.device != "cuda" or torch.cuda.is_available()):
        # Measured before any case, in the run's dtype, so "% of peak" compares like with like.
        bench.peak = matmul_peak(bench.device, bench.dtype)
        bench.bandwidth = memory_bandwidth(bench.device, bench.dtype)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from verification.environment import environment

    bench = settings(config)
    if bench.peak is not None:
        # Measured again after the cases: the better of the two is the machine's, not its load's.
        again = matmul_peak(bench.device, bench.dtype)
        bench.peak = max(bench.peak, again, key=lambda m: m["gflops"])
    if bench.bandwidth is not None:
        again = memory_bandwidth(bench.device, bench.dtype)
        bench.bandwidth = max(bench.bandwidth, again, key=lambda m: m["gbs"])
    machine_info["environment"] = environment(bench.device)
    machine_info["matmul_peak_gflops"] = bench.peak["gflops"] if bench.peak else None
    machine_info["matmul_peak"] = bench.peak
    machine_info["memory_bandwidth_gbs"] = bench.bandwidth["gbs"] if bench.bandwidth else None
    machine_info["memory_bandwidth"] = bench.bandwidth
    machine_info["bench"] = {"device": bench.device, "dtype": bench.dtype_name, "threads": torch.get_num_threads()}
    if bench.spec_paths:  # users' ops: the hand-written side is the spec's target, the other its reference
        machine_info["bench"].update(specs=bench.spec_paths, labels={"framework": "op", "torch": "reference"})


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict[str, Any]) -> None:
    # Every round's time of every benchmark would make the file tens of megabytes; the
    # statistics stay (the same JSON as pytest-benchmark's --benchmark-save without -data).
    for bench in output_json.get("benchmarks", []):
        bench.get("stats", {}).pop("data", None)
    # The cases that were not timed: their sides disagree, or building them failed.
    output_json["failures"] = settings(config).failures
