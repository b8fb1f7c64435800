"""Small matrix products run on one intra-op thread, large ones on all of them, and the thread count
is always restored (framework._threads)."""

import pytest
import torch

import framework as fw
from framework import _threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def threads_seen_by(monkeypatch, name: str) -> list[int]:
    """Records torch.get_num_threads() inside every call of torch.<name>."""
    seen: list[int] = []
    original = getattr(torch, name)

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, name, recording)
    return seen


@pytest.mark.parametrize(
    ("batch", "width", "threads"),
    [(50, 25, 1), (2048, 256, 2)],
    ids=["small: one thread", "large: both threads"],
)
def test_linear_products_run_on_one_thread_only_when_small(batch, width, threads, two_threads, monkeypatch):
    assert (batch * width * width < _threads.SERIAL_BELOW) == (threads == 1)
    linear = fw.Linear(width, width)
    x, g = torch.randn(batch, width), torch.randn(batch, width)
    forward, backward = threads_seen_by(monkeypatch, "addmm"), threads_seen_by(monkeypatch, "mm")
    linear(x)
    linear.backward(g)
    assert forward == [threads] and backward == [threads]
    assert torch.get_num_threads() == 2


def test_the_thread_count_is_restored_when_the_product_raises(two_threads, monkeypatch):
    def failing(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(torch, "addmm", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        fw.Linear(4, 3)(torch.randn(5, 4))
    assert torch.get_num_threads() == 2


def test_a_small_product_on_one_thread_equals_the_same_product_computed_on_one_thread(two_threads):
    generator = torch.Generator().manual_seed(0)
    linear = fw.Linear(25, 25, generator=generator)
    x, g = torch.randn(50, 25, generator=generator), torch.randn(50, 25, generator=generator)
    y, dx = linear(x), linear.backward(g)
    torch.set_num_threads(1)
    reference = fw.Linear(25, 25)
    reference.weight.copy_(linear.weight)
    reference.bias.copy_(linear.bias)
    assert torch.equal(reference(x), y) and torch.equal(reference.backward(g), dx)
