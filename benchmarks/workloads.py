"""Whole training steps: forward, loss, backward, optimizer step, zero_grad.

* ``SeedMLP-b50`` / ``SeedMLP-b100``: the seed experiment's network, 2-25-25-25-2 with ReLU,
  MSE against one-hot targets, SGD with lr 0.5, batches of 50 and 100.
* ``SmallCNN``: Conv2d(3x3, padding 1), ReLU, MaxPool2d(2), Flatten, Linear, CrossEntropyLoss,
  SGD with lr 0.01 and momentum 0.9 (on a GPU, ``medium`` and ``large`` are bigger networks).
* ``SeedMLP-b50-graph``, ``SmallCNN-graph`` (GPU only, seed size): those steps captured in a
  CUDA graph (:class:`framework.cuda_graph.CapturedStep`) against torch's eager step.
* ``TransformerBlock``: one pre-norm encoder block (LayerNorm, MultiheadAttention, residual,
  LayerNorm, MLP with GELU, residual) against ``torch.nn.TransformerEncoderLayer(norm_first=True,
  activation='gelu', dropout=0, batch_first=True)``, MSE against a random target, SGD with lr
  0.01 and momentum 0.9; batch 32, sequence 128, width 256, 4 heads, MLP 1024 at the large size.
* ``LSTMSequence``: an LSTM over the sequence and a Linear on its last output, CrossEntropyLoss,
  SGD with lr 0.1 and momentum 0.9, against ``torch.nn.LSTM`` and ``torch.nn.Linear``.

The framework side uses ``framework.optim.SGD`` and ``backward_to_params`` (no gradient for the
data, which autograd skips too: the batch does not require grad); the torch side the twin network,
``torch.nn`` losses and ``torch.optim.SGD``. Before timing, both take two steps from the same
parameters on the same batch (the second exercises the momentum buffer) and must agree; the
two newer workloads first agree in float64 too, whatever dtype is timed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import framework as fw
from verification.twins import copy_state, twin_of

from .cases import mlp, registered_names
from .harness import BenchmarkMismatchError, _randomize_parameters, assert_close, synchronized


@dataclass(frozen=True)
class Workload:
    """A training step measured at one or more sizes.

    Args:
        name: shown in tables and stored as ``extra_info["module"]``.
        sizes: size name to the builder's keyword arguments.
        needs: framework classes the workload is made of (it runs once all are registered).
        build: ``build(dtype=, device=, **size_kwargs)`` returns a :class:`Step`.
        float64_check: before timing, both sides also take their steps in float64 and agree
            to float64's tolerance (on top of the check in the timed dtype).
    """

    name: str
    sizes: dict[str, dict[str, Any]]
    needs: tuple[str, ...]
    build: Callable[..., Step]
    float64_check: bool = False
    gpu_sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu", "cuda")

    def checked(self, size: str, dtype: torch.dtype, device: str | torch.device) -> Step:
        """The step at ``size`` on ``device``, after the agreement checks (float64 first when declared)."""
        arguments = self.sizes_for(torch.device(device).type)[size]
        if self.float64_check and dtype != torch.float64:
            self.build(dtype=torch.float64, device=device, **arguments).check()
        step = self.build(dtype=dtype, device=device, **arguments)
        step.check()
        return step

    def sizes_for(self, device: str) -> dict[str, dict[str, Any]]:
        """The sizes on ``device``: on a GPU, its own table replaces the CPU sizes it names."""
        return {**self.sizes, **self.gpu_sizes} if device == "cuda" else dict(self.sizes)

    def shapes(self, size: str, device: str = "cpu") -> str:
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.sizes_for(device)[size].items()) + ")"

    def __str__(self) -> str:
        return self.name


@dataclass
class Step:
    """Both sides of a training step, ready to run on the same batch."""

    name: str
    device: torch.device
    dtype: torch.dtype
    model: fw.Module
    criterion: fw.Module
    optimizer: fw.optim.Optimizer
    twin: torch.nn.Module
    twin_criterion: torch.nn.Module
    twin_optimizer: torch.optim.Optimizer
    x: Tensor
    target: Tensor

    def framework_step(self) -> Tensor:
        loss = self.criterion(self.model(self.x), self.target)
        # As autograd, which skips dL/dx for an input that does not require grad.
        self.model.backward_to_params(self.criterion.backward())
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss

    def torch_step(self) -> Tensor:
        loss = self.twin_criterion(self.twin(self.x), self.target)
        loss.backward()
        self.twin_optimizer.step()
        self.twin_optimizer.zero_grad()
        return loss.detach()

    def callable(self, impl: str) -> Callable[[], Any]:
        return synchronized(self.framework_step if impl == "framework" else self.torch_step, self.device)

    def check(self, steps: int = 2) -> None:
        """Both sides take ``steps`` steps and must give the same losses and parameters."""
        context = f"{self.name} on {self.device} {str(self.dtype).removeprefix('torch.')}"
        twin_params = dict(self.twin.named_parameters())
        for index in range(steps):
            ours, theirs = self.framework_step(), self.torch_step()
            assert_close(f"loss at step {index}", ours.reshape(1), theirs.reshape(1), self.dtype, context)
            for name, p, _ in self.model.named_param():
                if name not in twin_params:
                    raise BenchmarkMismatchError(f"{context}: the twin has no parameter {name!r}")
                assert_close(f"{name} after step {index}", p, twin_params[name].detach(), self.dtype, context)


def _assemble(
    model: fw.Module,
    criterion: fw.Module,
    twin_criterion: torch.nn.Module,
    x: Tensor,
    target: Tensor,
    name: str,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator,
    twin: torch.nn.Module | None = None,
    **sgd: float,
) -> Step:
    _randomize_parameters(model, generator)
    model.to(device=device, dtype=dtype)
    model.train()
    if twin is None:
        twin = twin_of(model)
    else:
        copy_state(model, twin)
    twin.train()
    return Step(
        name,
        device,
        dtype,
        model,
        criterion,
        fw.optim.SGD(model.param(), **sgd),
        twin,
        twin_criterion,
        torch.optim.SGD(twin.parameters(), **sgd),
        x,
        target,
    )


def seed_mlp(batch: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0) -> Step:
    """The seed experiment: points in [0, 1]^2, label 1 inside the disk of area 1/2, one-hot targets."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    inside = ((points - 0.5).pow(2).sum(1) < 1 / (2 * torch.pi)).long()
    target = torch.nn.functional.one_hot(inside, 2).to(device=device, dtype=dtype)
    x = points.to(device=device, dtype=dtype)
    model = mlp((2, 25, 25, 25, 2))
    return _assemble(
        model, fw.MSELoss(), torch.nn.MSELoss(), x, target, f"SeedMLP-b{batch}", dtype, device, generator, lr=0.5
    )


class CapturedStep(Step):
    """The framework side replays the step from a CUDA graph (captured after two eager steps)."""

    def framework_step(self) -> Tensor:
        captured = self.__dict__.get("captured")
        if captured is None:
            captured = fw.CapturedStep(self.model, self.criterion, self.optimizer, self.x, self.target)
            self.__dict__["captured"] = captured
        return captured(self.x, self.target)


def captured(build: Callable[..., Step]) -> Callable[..., Step]:
    """``build``'s step with the framework side replayed from a CUDA graph (:class:`CapturedStep`)."""

    def build_captured(*, device: str | torch.device = "cuda", **kwargs: Any) -> Step:
        step = build(device=device, **kwargs)
        return CapturedStep(**{f.name: getattr(step, f.name) for f in dataclasses.fields(Step)})

    return build_captured


def seed_mlp_captured(
    batch: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cuda", seed: int = 0
) -> Step:
    return captured(seed_mlp)(batch=batch, dtype=dtype, device=device, seed=seed)


def small_cnn(
    batch: int,
    channels: int,
    side: int,
    filters: int,
    classes: int = 10,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Step:
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = fw.Sequential(
        fw.Conv2d(channels, filters, kernel_size=3, padding=1),
        fw.ReLU(),
        fw.MaxPool2d(kernel_size=2),
        fw.Flatten(),
        fw.Linear(filters * (side // 2) ** 2, classes),
    )
    x = torch.randn(batch, channels, side, side, generator=generator, dtype=torch.float64).to(
        device=device, dtype=dtype
    )
    target = torch.randint(0, classes, (batch,), generator=generator).to(device)
    return _assemble(
        model,
        fw.CrossEntropyLoss(),
        torch.nn.CrossEntropyLoss(),
        x,
        target,
        "SmallCNN",
        dtype,
        device,
        generator,
        lr=0.01,
        momentum=0.9,
    )


def transformer_block(
    batch: int,
    length: int,
    width: int,
    heads: int,
    hidden: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Step:
    """A pre-norm encoder block regressing a random target of the input's shape."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = fw.TransformerEncoderLayer(
        width, heads, hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    x = torch.randn(batch, length, width, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    target = torch.randn(batch, length, width, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    return _assemble(
        model,
        fw.MSELoss(),
        torch.nn.MSELoss(),
        x,
        target,
        "TransformerBlock",
        dtype,
        device,
        generator,
        lr=0.01,
        momentum=0.9,
    )


class SequenceClassifier(fw.Module):
    """An LSTM over the sequence (batch first) and a Linear on its last output: class logits.

    backward: the Linear's input gradient goes to the last time step of the LSTM's output
    gradient (zeros elsewhere), then back through time.
    """

    def __init__(self, features: int, hidden: int, classes: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = fw.LSTM(features, hidden, num_layers, batch_first=True)
        self.head = fw.Linear(hidden, classes)

    def named_children(self) -> list[tuple[str, fw.Module]]:
        return [("lstm", self.lstm), ("head", self.head)]

    def forward(self, x: Tensor) -> Tensor:
        output, _ = self.lstm(x)
        self._save_for_backward(like=output)
        return self.head(output[:, -1])

    def backward(self, grad_output: Tensor) -> Tensor:
        like = self._saved_tensors()["like"]
        grad_sequence = torch.zeros_like(like)
        grad_sequence[:, -1] = self.head.backward(grad_output)
        return self.lstm.backward(grad_sequence)


class TorchSequenceClassifier(torch.nn.Module):
    """The twin of :class:`SequenceClassifier`, from ``torch.nn.LSTM`` and ``torch.nn.Linear``."""

    def __init__(self, features: int, hidden: int, classes: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(features, hidden, num_layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


def lstm_sequence(
    batch: int,
    length: int,
    features: int,
    hidden: int,
    classes: int,
    num_layers: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Step:
    """Classify random sequences into random classes (a training step's cost, not a task)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = SequenceClassifier(features, hidden, classes, num_layers)
    twin = TorchSequenceClassifier(features, hidden, classes, num_layers)
    x = torch.randn(batch, length, features, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    target = torch.randint(0, classes, (batch,), generator=generator).to(device)
    return _assemble(
        model,
        fw.CrossEntropyLoss(),
        torch.nn.CrossEntropyLoss(),
        x,
        target,
        "LSTMSequence",
        dtype,
        device,
        generator,
        twin=twin,
        lr=0.1,
        momentum=0.9,
    )


WORKLOADS: list[Workload] = [
    Workload("SeedMLP-b50", {"seed": {"batch": 50}}, ("Linear", "ReLU", "MSELoss", "Sequential"), seed_mlp),
    Workload("SeedMLP-b100", {"seed": {"batch": 100}}, ("Linear", "ReLU", "MSELoss", "Sequential"), seed_mlp),
    Workload(
        "SmallCNN",
        {
            "seed": {"batch": 50, "channels": 1, "side": 8, "filters": 4},
            "medium": {"batch": 64, "channels": 1, "side": 28, "filters": 8},
            "large": {"batch": 128, "channels": 3, "side": 32, "filters": 32},
        },
        ("Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "CrossEntropyLoss", "Sequential"),
        small_cnn,
        gpu_sizes={
            "medium": {"batch": 256, "channels": 3, "side": 32, "filters": 64},
            "large": {"batch": 512, "channels": 3, "side": 64, "filters": 64},
        },
    ),
    Workload(
        "SeedMLP-b50-graph",
        {"seed": {"batch": 50}},
        ("Linear", "ReLU", "MSELoss", "Sequential"),
        seed_mlp_captured,
        devices=("cuda",),
    ),
    Workload(
        "SmallCNN-graph",
        {"seed": {"batch": 50, "channels": 1, "side": 8, "filters": 4}},
        ("Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "CrossEntropyLoss", "Sequential"),
        captured(small_cnn),
        devices=("cuda",),
    ),
    Workload(
        "TransformerBlock",
        {
            "seed": {"batch": 8, "length": 16, "width": 32, "heads": 2, "hidden": 64},
            "medium": {"batch": 16, "length": 64, "width": 128, "heads": 4, "hidden": 512},
            "large": {"batch": 32, "length": 128, "width": 256, "heads": 4, "hidden": 1024},
        },
        ("TransformerEncoderLayer", "MSELoss"),
        transformer_block,
        float64_check=True,
        gpu_sizes={
            "medium": {"batch": 32, "length": 512, "width": 1024, "heads": 16, "hidden": 4096},
            "large": {"batch": 64, "length": 512, "width": 1024, "heads": 16, "hidden": 4096},
        },
    ),
    Workload(
        "LSTMSequence",
        {
            "seed": {"batch": 32, "length": 16, "features": 8, "hidden": 32, "classes": 4},
            "medium": {"batch": 64, "length": 64, "features": 32, "hidden": 128, "classes": 10},
            "large": {"batch": 64, "length": 128, "features": 64, "hidden": 256, "classes": 10},
        },
        ("LSTM", "Linear", "CrossEntropyLoss"),
        lstm_sequence,
        float64_check=True,
        gpu_sizes={
            "medium": {"batch": 256, "length": 128, "features": 256, "hidden": 512, "classes": 10},
            "large": {"batch": 256, "length": 256, "features": 512, "hidden": 1024, "classes": 10},
        },
    ),
]


def available_workloads() -> list[Workload]:
    """Workloads whose every module class is registered in this checkout of the framework."""
    names = registered_names()
    return [w for w in WORKLOADS if set(w.needs) <= names]
