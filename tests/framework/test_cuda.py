"""On a GPU: no forward or backward synchronises with the host, each replays from a CUDA graph as it
runs eagerly, and a captured training step equals the eager one. Skipped without CUDA.

Every registered module is covered (cases drawn from the verification specs), in float64 so
that the only differences between eager and replayed runs would be the order of atomic
additions (scatter and index additions), far below the tolerance.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import framework as fw
from framework.cuda_graph import CapturedStep
from verification.composition import STACK_SPEC
from verification.specs import SPECS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FEW = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
F64 = torch.float64


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _forward(built: Any) -> torch.Tensor:
    module = built.module
    return _first(module(*built.inputs, built.target) if built.target is not None else module(*built.inputs))


def _run(built: Any, grad_output: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    out = _forward(built)
    grad = built.module.backward() if grad_output is None else built.module.backward(grad_output)
    return out, grad


def _generators(module: Any) -> list[torch.Generator]:
    found = []
    for m in fw.iter_modules(module):
        generator = m.__dict__.get("generator")
        if isinstance(generator, torch.Generator) and generator.device.type == "cuda":
            found.append(generator)
    return found


def _snapshot(built: Any, out: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    return [out.clone(), grad.clone(), *(g.clone() for _, g in built.module.param())]


def _assert_dropout_semantics(module: fw.Dropout, x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, dx: torch.Tensor):
    """A replayed dropout draws a new mask: it must still be a valid one, the same in both passes."""
    scale = torch.tensor(1.0 / (1.0 - module.p), dtype=x.dtype, device=x.device)
    kept = y != 0
    assert torch.equal(y[kept], x[kept] * scale)
    assert torch.equal(dx, torch.where(kept, g * scale, torch.zeros_like(g)))


@pytest.mark.parametrize("spec", [*SPECS, STACK_SPEC], ids=str)
@FEW
@given(data=st.data())
def test_forward_and_backward_never_sync_and_replay_from_a_cuda_graph(spec, data):
    built = data.draw(spec.cases()).build(F64, "cuda")
    module = built.module
    out = _forward(built)
    # A loss reduced to a 0-d tensor needs no grad_output; every other output gets one of its shape.
    grad_output = None if built.target is not None and out.dim() == 0 else torch.randn_like(out)
    _run(built, grad_output)  # warm-up: caches built, generators moved to the device
    torch.cuda.synchronize()

    torch.cuda.set_sync_debug_mode("error")
    try:
        module.zero_grad()
        eager = _snapshot(built, *_run(built, grad_output))
    finally:
        torch.cuda.set_sync_debug_mode(0)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        _run(built, grad_output)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for generator in _generators(module):
        graph.register_generator_state(generator)
    module.zero_grad()
    with torch.cuda.graph(graph):
        static_out, static_grad = _run(built, grad_output)
    module.zero_grad()
    graph.replay()
    torch.cuda.synchronize()

    replayed = _snapshot(built, static_out, static_grad)
    if isinstance(module, fw.Dropout) and module.training and 0.0 < module.p < 1.0:
        _assert_dropout_semantics(module, built.inputs[0], grad_output, replayed[0], replayed[1])
        return
    for name, a, b in zip(["output", "input gradient", *(n for n, _, _ in module.named_param())], replayed, eager):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{spec}: {name}: {m}")


# -- a whole training step ---------------------------------------------------------------------------
def _mlp() -> fw.Module:
    g = torch.Generator().manual_seed(0)
    return fw.Sequential(
        fw.Linear(2, 25, generator=g),
        fw.ReLU(),
        fw.Linear(25, 25, generator=g),
        fw.ReLU(),
        fw.Linear(25, 2, generator=g),
    )


def _cnn() -> fw.Module:
    g = torch.Generator().manual_seed(0)
    return fw.Sequential(
        fw.Conv2d(1, 4, 3, padding=1, generator=g),
        fw.BatchNorm2d(4, momentum=None),
        fw.ReLU(),
        fw.MaxPool2d(2),
        fw.Flatten(),
        fw.Linear(4 * 4 * 4, 3, generator=g),
    )


def _batches(kind: str, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        return [
            (torch.rand(50, 2, generator=g, dtype=F64), torch.rand(50, 2, generator=g, dtype=F64)) for _ in range(n)
        ]
    return [(torch.randn(8, 1, 8, 8, generator=g, dtype=F64), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


CAPTURED = [
    pytest.param("mlp", lambda m: fw.optim.SGD(m.param(), lr=0.1, momentum=0.9), fw.MSELoss, id="MLP-SGD-momentum"),
    pytest.param(
        "cnn", lambda m: fw.optim.Adam(m.param(), lr=0.01, capturable=True), fw.CrossEntropyLoss, id="CNN-Adam"
    ),
    pytest.param("cnn", lambda m: fw.optim.RMSprop(m.param(), momentum=0.5), fw.CrossEntropyLoss, id="CNN-RMSprop"),
]


@pytest.mark.parametrize(("kind", "make_optimizer", "make_loss"), CAPTURED)
def test_captured_training_step_equals_the_eager_step(kind, make_optimizer, make_loss):
    eager_model = (_mlp() if kind == "mlp" else _cnn()).to(device="cuda", dtype=F64)
    captured_model = copy.deepcopy(eager_model)
    eager_loss, eager_optimizer = make_loss(), make_optimizer(eager_model)
    batches = [(x.cuda(), t.cuda()) for x, t in _batches(kind, 6)]
    captured = CapturedStep(captured_model, make_loss(), make_optimizer(captured_model), *batches[0])
    for step, (x, t) in enumerate(batches):
        eager_optimizer.zero_grad()
        expected = eager_loss(eager_model(x), t)
        eager_model.backward(eager_loss.backward())
        eager_optimizer.step()
        loss = captured(x, t)
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12, msg=lambda m, s=step: f"step {s}: {m}")
    for (name, ours, _), (_, theirs, _) in zip(captured_model.named_param(), eager_model.named_param()):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")
    for (name, ours), (_, theirs) in zip(captured_model.named_buffers(), eager_model.named_buffers()):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_captured_step_with_dropout_draws_a_new_mask_on_every_replay():
    model = fw.Sequential(fw.Linear(16, 64), fw.ReLU(), fw.Dropout(0.5), fw.Linear(64, 1)).to(device="cuda")
    x, t = torch.randn(32, 16, device="cuda"), torch.randn(32, 1, device="cuda")
    captured = CapturedStep(model, fw.MSELoss(), fw.optim.SGD(model.param(), lr=0.0), x, t)
    losses = [captured(x, t).item() for _ in range(5)]  # lr 0: only the mask changes the loss
    assert len(set(losses[2:])) == 3, losses  # the replays (calls 3 to 5) draw three masks
    assert all(torch.isfinite(torch.tensor(losses)))


def test_the_graph_captured_seed_step_runs_after_a_reset():
    model = _mlp().to(device="cuda", dtype=F64)
    optimizer = fw.optim.SGD(model.param(), lr=0.1)
    (x, t), *_ = [(a.cuda(), b.cuda()) for a, b in _batches("mlp", 1)]
    captured = CapturedStep(model, fw.MSELoss(), optimizer, x, t)
    first = [captured(x, t).item() for _ in range(4)]
    optimizer.lr = 0.0
    captured.reset()
    second = [captured(x, t).item() for _ in range(3)]
    assert first[-1] > second[0] and len(set(second)) == 1  # training went on, then lr 0 froze it
