"""Whole training steps, framework against torch.nn + torch.optim.

Collected only by ``python -m benchmarks`` (the default test run collects ``tests/``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from .harness import checked_once
from .plugin import settings
from .workloads import Workload, available_workloads


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "step_item" not in metafunc.fixturenames:
        return
    bench = settings(metafunc.config)
    items = [
        (workload, size, impl)
        for workload in available_workloads()
        if bench.wanted(workload.name) and bench.device in workload.devices
        for size in bench.sizes
        if size in workload.sizes_for(bench.device)
        for impl in ("framework", "torch")
    ]
    metafunc.parametrize("step_item", items, ids=[f"{w.name}-{s}-{i}" for w, s, i in items])


def test_workload(benchmark: Any, step_item: tuple[Workload, str, str], request: pytest.FixtureRequest) -> None:
    workload, size, impl = step_item
    bench = settings(request.config)
    if bench.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    key = (workload.name, size, bench.dtype, bench.device)
    step = checked_once(
        key, lambda: workload.checked(size, bench.dtype, bench.device), bench.failed(workload.name, size)
    )
    benchmark.group = f"{workload.name} {size} train_step"
    benchmark.extra_info.update(
        bench.extra_info(),
        module=workload.name,
        size=size,
        impl=impl,
        **{"pass": "train_step"},
        shapes=workload.shapes(size, bench.device),
        flops=None,
        workload=True,
    )
    benchmark(step.callable(impl))
