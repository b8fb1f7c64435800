"""Every registered module, forward and forward+backward, framework against its torch.nn twin.

Collected only by ``python -m benchmarks`` (the default test run collects ``tests/``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from .cases import BenchCase, available_cases, shape_text
from .harness import PASSES, Pair, build, checked_once
from .plugin import settings


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "item" not in metafunc.fixturenames:
        return
    bench = settings(metafunc.config)
    # One parameter per (case, size, pass, impl), in that order: both sides of a comparison run
    # back to back on one built pair, which is then dropped before the next, larger case.
    items = [
        (case, size, pass_, impl)
        for case in available_cases()
        if bench.wanted(case.name)
        for size in bench.sizes
        for pass_ in PASSES
        for impl in ("framework", "torch")
    ]
    ids = [f"{c.name}-{s}-{p}-{i}" for c, s, p, i in items]
    metafunc.parametrize("item", items, ids=ids)


def _checked_pair(case: BenchCase, size: str, dtype: torch.dtype, device: str) -> Pair:
    pair = build(case, size, dtype, device)
    pair.check()
    return pair


def test_module(benchmark: Any, item: tuple[BenchCase, str, str, str], request: pytest.FixtureRequest) -> None:
    case, size, pass_, impl = item
    bench = settings(request.config)
    if bench.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    key = (case.name, size, bench.dtype, bench.device)
    pair = checked_once(
        key, lambda: _checked_pair(case, size, bench.dtype, bench.device), bench.failed(case.name, size)
    )
    benchmark.group = f"{case.name} {size} {pass_}"
    benchmark.extra_info.update(
        bench.extra_info(),
        module=case.name,
        size=size,
        impl=impl,
        **{"pass": pass_},
        shapes=shape_text(case, size, bench.device),
        size_table="gpu" if bench.device == "cuda" and size in case.gpu_sizes else "cpu",
        flops=case.flops(size, pass_, bench.device),
        bytes=case.bytes(size, pass_, torch.finfo(bench.dtype).bits // 8, bench.device),
        workload=False,
    )
    benchmark(pair.callable(impl, pass_))
