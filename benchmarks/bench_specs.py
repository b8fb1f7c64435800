"""Users' ops from their specs, forward and forward+backward, target against reference.

Collected only by ``python -m benchmarks PATH`` (which passes ``--bench-specs PATH``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from .harness import PASSES, checked_once
from .plugin import settings
from .specs import SpecPair, benchmarked_specs, build, shape_text


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "spec_item" not in metafunc.fixturenames:
        return
    bench = settings(metafunc.config)
    items = [
        (spec, size, pass_, impl)
        for spec in benchmarked_specs(bench.spec_paths)
        if bench.wanted(spec.name) and bench.device in spec.devices and bench.dtype in spec.dtypes
        for size in spec.benchmark
        if not bench.sizes or size in bench.sizes
        for pass_ in PASSES
        for impl in ("framework", "torch")
    ]
    metafunc.parametrize("spec_item", items, ids=[f"{s.name}-{z}-{p}-{i}" for s, z, p, i in items])


def _checked_pair(spec: Any, size: str, dtype: torch.dtype, device: str) -> SpecPair:
    pair = build(spec, size, dtype, device)
    pair.check()
    return pair


def test_spec(benchmark: Any, spec_item: tuple[Any, str, str, str], request: pytest.FixtureRequest) -> None:
    spec, size, pass_, impl = spec_item
    bench = settings(request.config)
    if bench.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    key = (spec.name, size, bench.dtype, bench.device)
    pair = checked_once(
        key, lambda: _checked_pair(spec, size, bench.dtype, bench.device), bench.failed(spec.name, size)
    )
    benchmark.group = f"{spec.name} {size} {pass_}"
    benchmark.extra_info.update(
        bench.extra_info(),
        module=spec.name,
        size=size,
        impl=impl,
        **{"pass": pass_},
        shapes=shape_text(spec, size),
        flops=None,
        workload=False,
        spec=True,
    )
    benchmark(pair.callable(impl, pass_))
