"""One benchmark case made concrete: the framework module, its ``torch.nn`` twin, the inputs,
the agreement check run once before timing, and the callables that are timed.

What is timed, on both sides, is what a training step pays:

* ``forward``: the forward pass as in training. The framework saves what its backward needs;
  PyTorch records its graph (parameters and input require gradients).
* ``forward+backward``: zero the gradients, forward, backward with the same ``grad_output``
  (``y.backward(g)`` on the torch side), producing dL/d(input) and every parameter gradient.

On CUDA every timed callable ends with ``torch.cuda.synchronize()``, so a round measures the
kernels, not their launches.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from verification.domains import REAL, UNIT
from verification.spec import class_indices, values
from verification.twins import copy_state, twin_of

from .cases import BenchCase

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PASSES = ("forward", "forward+backward")
# Relative to the largest reference value: float32 sums of 1e3 to 1e6 terms in another order
# differ by ~1e-6 relative; a wrong formula differs by far more.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}


_CHECKED: dict[str, Any] = {}


def checked_once(
    key: tuple[Any, ...], make: Callable[[], Any], failed: Callable[[BaseException], None] | None = None
) -> Any:
    """What ``make`` builds and checks (a pair or a training step) for ``key``, made once and kept
    while consecutive benchmarks share the key: the agreement check runs before any timing (never
    time a wrong computation), and only the latest case's tensors stay alive.

    If ``make`` fails, ``failed`` hears of it once and the first benchmark of the key fails (a
    disagreement in one line: what differs, by how much; anything else with its traceback); the
    key's other benchmarks are skipped, pointing to that failure, rather than failing it again."""
    import pytest

    if _CHECKED.get("key") != key:
        _CHECKED.clear()
        _CHECKED["key"] = key
        try:
            _CHECKED["value"] = make()
        except BenchmarkMismatchError as error:
            _CHECKED["error"] = error
        except Exception as error:
            _CHECKED["error"] = error
            if failed is not None:
                failed(error)
            raise
        if "error" in _CHECKED:  # outside the except clause: one line, no chained traceback
            if failed is not None:
                failed(_CHECKED["error"])
            pytest.fail(str(_CHECKED["error"]), pytrace=False)
    if "error" in _CHECKED:
        pytest.skip("not timed: the case failed its first benchmark (see that failure)")
    return _CHECKED["value"]


class BenchmarkMismatchError(AssertionError):
    """The framework and its torch twin disagree: the case must not be timed."""


def thread_count(text: str) -> int:
    """A thread count for --threads or $THREADS: a whole number >= 0 (0: all available CPUs)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads (0: all CPUs), got {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads (0: all CPUs), got {count}")
    return count


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure(device: str, threads: int | None = None) -> int:
    """Set torch's thread count and full float32 precision on CUDA; returns the thread count."""
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    if device == "cuda":
        # TF32 would let cuDNN's convolutions drop to 10 mantissa bits while the framework's
        # matrix products keep 23: both sides run true float32 so the ratio compares like with like.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return threads


def synchronized(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """``fn`` followed by a device synchronisation on CUDA (unchanged on the CPU)."""
    if device.type != "cuda":
        return fn

    def run() -> Any:
        result = fn()
        torch.cuda.synchronize(device)
        return result

    return run


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected| (the scale of the whole tensor)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    if actual.shape != expected.shape:
        return float("inf")
    if actual.numel() == 0:
        return 0.0
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / max(scale, 1e-30)


def assert_close(what: str, actual: Tensor, expected: Tensor, dtype: torch.dtype, context: str) -> None:
    error = relative_error(actual, expected)
    tolerance = TOLERANCE[dtype]
    if not error <= tolerance:
        raise BenchmarkMismatchError(
            f"{context}: {what} differs from the torch twin's: relative error {error:.3g} > tolerance {tolerance:g} "
            f"(framework shape {tuple(actual.shape)}, torch shape {tuple(expected.shape)})"
        )


def _randomize_parameters(module: Any, generator: torch.Generator) -> None:
    # Random weights and biases (not BatchNorm's ones and zeros), scaled like torch's default
    # initialisation so that deep stacks keep activations of order one.
    for _, p, _ in module.named_param():
        bound = 1.0 if p.dim() < 2 else 1.0 / (p[0].numel() ** 0.5)
        p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-bound, bound, generator=generator))


@dataclass
class Pair:
    """A framework module and its twin on the same parameters, inputs and ``grad_output``."""

    case: BenchCase
    size: str
    device: torch.device
    dtype: torch.dtype
    module: Any
    twin: torch.nn.Module
    x: Tensor
    x_twin: Tensor
    target: Tensor | None
    grad_output: Tensor

    @property
    def context(self) -> str:
        return f"{self.case.name}[{self.size}] on {self.device} {str(self.dtype).removeprefix('torch.')}"

    def _fw_inputs(self) -> tuple[Tensor, ...]:
        return (self.x,) if self.target is None else (self.x, self.target)

    def _twin_inputs(self) -> tuple[Tensor, ...]:
        return (self.x_twin,) if self.target is None else (self.x_twin, self.target)

    # -- the agreement check -------------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`BenchmarkMismatchError` unless both sides give the same results."""
        if self.case.check == "dropout":
            self._check_dropout()
        else:
            self._check_twin()

    def _run_both(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.module.zero_grad()
        self.twin.zero_grad()
        self.x_twin.grad = None
        y = self.case.run(self.module, self._fw_inputs())
        gx = self.case.input_gradient(self.module.backward(self.grad_output))
        y_twin = self.case.run(self.twin, self._twin_inputs())
        y_twin.backward(self.grad_output)
        return y, gx, y_twin.detach(), self.x_twin.grad

    def _check_twin(self) -> None:
        y, gx, y_twin, gx_twin = self._run_both()
        assert_close("output", y, y_twin, self.dtype, self.context)
        if self.x.is_floating_point():  # indices have no gradient
            assert_close("dL/d(input)", gx, gx_twin, self.dtype, self.context)
        twin_params = dict(self.twin.named_parameters())
        for name, _, grad in self.module.named_param():
            assert_close(f"dL/d({name})", grad, twin_params[name].grad, self.dtype, self.context)

    def _check_dropout(self) -> None:
        # Train mode: PyTorch's mask comes from its own generator and cannot be reproduced, so
        # the framework is checked against the definition: y = x * m / (1 - p), m ~ Bernoulli(1 - p),
        # dL/dx = dL/dy * m / (1 - p) with the same mask.
        p = float(self.module.p)
        self.module.train()
        y = self.module(self.x)
        gx = self.module.backward(self.grad_output)
        kept = y != 0
        scale = 1.0 / (1.0 - p)
        assert_close("kept outputs", y[kept], self.x[kept] * scale, self.dtype, self.context)
        assert_close("gradient of kept outputs", gx[kept], self.grad_output[kept] * scale, self.dtype, self.context)
        if (~kept).any() and gx[~kept].abs().max().item() != 0:
            raise BenchmarkMismatchError(f"{self.context}: dropped elements have a nonzero gradient")
        if self.x.numel() >= 1000:
            dropped = 1.0 - kept.double().mean().item()
            if abs(dropped - p) > 0.05:
                raise BenchmarkMismatchError(
                    f"{self.context}: dropped a fraction {dropped:.3f} of elements, expected p = {p}"
                )
        # Eval mode: both are the identity, so they must agree exactly.
        self.module.eval()
        self.twin.eval()
        try:
            self._check_twin()
        finally:
            self.module.train()
            self.twin.train()

    # -- the timed callables ---------------------------------------------------------------------
    def callable(self, impl: str, pass_: str) -> Callable[[], Any]:
        """The function timed for ``impl`` ("framework" or "torch") and ``pass_``."""
        module, twin, g, run = self.module, self.twin, self.grad_output, self.case.run
        fw_inputs, twin_inputs, x_twin = self._fw_inputs(), self._twin_inputs(), self.x_twin
        if impl == "framework" and pass_ == "forward":

            def fn() -> Any:
                return run(module, fw_inputs)

        elif impl == "framework":

            def fn() -> Any:
                module.zero_grad()
                run(module, fw_inputs)
                return module.backward(g)

        elif pass_ == "forward":

            def fn() -> Any:
                return run(twin, twin_inputs)

        else:

            def fn() -> Any:
                twin.zero_grad()
                x_twin.grad = None
                run(twin, twin_inputs).backward(g)

        return synchronized(fn, self.device)


def build(
    case: BenchCase, size: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0
) -> Pair:
    """Build the framework module, its twin with the same parameters, inputs and ``grad_output``."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = case.build_module(size, device.type)
    _randomize_parameters(module, generator)
    module.to(device=device, dtype=dtype)
    module.train()
    twin = case.twin(module) if case.twin is not None else twin_of(module)
    twin.to(device=device, dtype=dtype)
    twin.train()
    if case.twin is not None:
        copy_state(module, twin)

    size_spec = case.size(size, device.type)
    x = (size_spec.domain or case.domain).sample(size_spec.shape, generator)
    x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)  # indices stay integers
    target = None
    if case.target == "indices":
        target = class_indices()(x, generator).to(device)
    elif case.target is not None:
        target = values(UNIT if case.target == "unit" else REAL)(x, generator).to(device=device, dtype=dtype)
    x_twin = x.clone().requires_grad_(x.is_floating_point())
    with torch.no_grad():
        y = case.run(twin, (x,) if target is None else (x, target))
    grad_output = REAL.sample(tuple(y.shape), generator).to(device=device, dtype=dtype)
    return Pair(case, size, device, dtype, module, twin, x, x_twin, target, grad_output)


def matmul_peak(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None, budget_s: float = 3.0
) -> dict:
    """This machine's matrix-multiply rate: the best of repeated n x n products, in GFLOP/s.

    The best, not the median: on a shared machine the other products measure the neighbours.
    """
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    product = synchronized(lambda: a @ b, device)
    product()  # warm-up: thread pool, cuBLAS handle, allocator
    best, spent, repeats = float("inf"), 0.0, 0
    while repeats < 3 or (spent < budget_s and repeats < 50):
        start = time.perf_counter()
        product()
        elapsed = time.perf_counter() - start
        best, spent, repeats = min(best, elapsed), spent + elapsed, repeats + 1
    return {
        "gflops": 2.0 * n**3 / best / 1e9,
        "n": n,
        "seconds": best,
        "repeats": repeats,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }


def memory_bandwidth(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    megabytes: int | None = None,
    budget_s: float = 2.0,
) -> dict:
    """This machine's memory bandwidth: the best of repeated copies of a buffer far larger than any
    cache (a copy reads and writes it: 2 bytes moved per byte), in GB/s, for % of bandwidth."""
    device = torch.device(device)
    megabytes = megabytes or (1024 if device.type == "cuda" else 256)
    n = megabytes * 2**20 // (torch.finfo(dtype).bits // 8)
    source = torch.ones(n, dtype=dtype, device=device)
    target = torch.empty_like(source)
    copy = synchronized(lambda: target.copy_(source), device)
    copy()  # warm-up: the pages of both buffers are mapped
    best, spent, repeats = float("inf"), 0.0, 0
    while repeats < 3 or (spent < budget_s and repeats < 50):
        start = time.perf_counter()
        copy()
        elapsed = time.perf_counter() - start
        best, spent, repeats = min(best, elapsed), spent + elapsed, repeats + 1
    moved = 2 * source.numel() * source.element_size()
    return {
        "gbs": moved / best / 1e9,
        "megabytes": megabytes,
        "seconds": best,
        "repeats": repeats,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
