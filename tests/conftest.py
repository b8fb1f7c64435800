"""Every test that needs a GPU carries the ``cuda`` marker, so ``pytest -m cuda`` runs them all on a
GPU machine: those marked by hand, those parametrized over a ``"cuda"`` device, those skipped
without CUDA, and the verification plugin's spec items on CUDA. pytester runs the plugin's tests
on generated test files.

The tests run torch on one thread: their tensors are tiny, and on a shared machine a second
intra-op thread only waits for a core (a small convolution took 10x longer on two threads).
"""

import pytest
import torch

torch.set_num_threads(1)

pytest_plugins = ["pytester"]


def _needs_cuda(item: pytest.Item) -> bool:
    if getattr(item, "device", None) == "cuda":  # a spec item of the verification plugin
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(isinstance(value, str) and value.startswith("cuda") for value in params.values()):
        return True
    return any("cuda" in str(mark.kwargs.get("reason", "")).lower() for mark in item.iter_markers("skipif"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_cuda(item):
            item.add_marker(pytest.mark.cuda)
