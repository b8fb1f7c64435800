"""Training loops of the two implementations, side by side.

Both loops see the same data, the same initial weights (the torch.nn twin is a copy of the
framework network) and the same batch order (one permutation per epoch, drawn once from the
run's seed and shared). Each records the mean training loss of every epoch and the time
spent in its epochs; re-initialisations and evaluation are not timed.

Restart (Ferrot and Richter): when, ``restart`` epochs after an initialisation and within
the first half of training, the epoch loss is not ``restart_threshold`` (relative) below
the first epoch's, the network is stuck (typically a dead ReLU network predicting one
class): it is re-initialised from the next ``init/<attempt>`` seed, the optimizer state is
dropped, and training goes on with the epochs left. Each implementation decides from its
own losses, so in float64 both restart at the same epochs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import framework as fw
from verification.twins import twin_of

from .model import Config, build_loss, build_model, derived_seed, generator, targets, torch_twin

Progress = Callable[[int, float], None]


@dataclass
class History:
    """What one training produced.

    Attributes:
        loss: mean training loss of each epoch (weighted by batch size).
        epoch_seconds: time spent in each epoch's batches (forward, loss, backward, step).
        restarts: epochs after which the network was re-initialised.
        model: the trained network (a framework Module or a torch.nn.Module).
    """

    loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    model: Any = None

    @property
    def seconds_per_epoch(self) -> float:
        """The median epoch time: one epoch preempted by another process on a shared machine does not move it."""
        return statistics.median(self.epoch_seconds) if self.epoch_seconds else 0.0


def epoch_orders(seed: int, epochs: int, n: int) -> list[Tensor]:
    """One permutation of the training indices per epoch, shared by both implementations."""
    g = generator(seed, "order")
    return [torch.randperm(n, generator=g) for _ in range(epochs)]


def should_restart(config: Config, losses: list[float], since: int, restarts: int) -> bool:
    """True when the network initialised at epoch ``since`` has not learnt in ``config.restart`` epochs."""
    epoch = len(losses)
    if config.restart == 0 or restarts >= config.max_restarts or epoch > config.epochs // 2:
        return False
    if epoch - since != config.restart:
        return False
    return losses[-1] > (1 - config.restart_threshold) * losses[since]


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


# One SGD step of each implementation, side by side: the only place where they differ.
def framework_step(model: fw.Module, optimizer: fw.optim.SGD, criterion: fw.Loss, x: Tensor, t: Tensor) -> Tensor:
    loss = criterion(model(x), t)
    optimizer.zero_grad()
    model.backward_to_params(criterion.backward())  # dL/dx of the data is not needed
    optimizer.step()
    return loss


def torch_step(
    model: torch.nn.Module, optimizer: torch.optim.SGD, criterion: torch.nn.Module, x: Tensor, t: Tensor
) -> Tensor:
    loss = criterion(model(x), t)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


Start = Callable[[int], tuple[Any, Any]]
Step = Callable[[Any, Any, Any, Tensor, Tensor], Tensor]


def _train(
    config: Config,
    x: Tensor,
    t: Tensor,
    orders: list[Tensor],
    start: Start,
    step: Step,
    criterion: Any,
    progress: Progress | None,
) -> History:
    """The epoch loop both implementations share: batches, timing, loss record, restarts."""
    history = History()
    spans = _batches(len(x), config.batch_size)
    # Batch weights of the epoch's mean loss; the batch losses stay where they were computed and
    # are read once per epoch (on a GPU a read per batch would wait for every batch's kernels).
    weights = torch.tensor([b - a for a, b in spans], dtype=torch.float64, device=x.device) / len(x)
    model, optimizer = start(0)
    since = 0
    for epoch, order in enumerate(orders):
        began = time.perf_counter()
        xe, te = x[order], t[order]
        losses = [step(model, optimizer, criterion, xe[a:b], te[a:b]).detach() for a, b in spans]
        mean_loss = float(torch.stack(losses).to(torch.float64).mul_(weights).sum())
        history.epoch_seconds.append(time.perf_counter() - began)
        history.loss.append(mean_loss)
        if progress is not None:
            progress(epoch, history.loss[-1])
        if should_restart(config, history.loss, since, len(history.restarts)):
            history.restarts.append(epoch + 1)
            model, optimizer = start(len(history.restarts))
            since = epoch + 1
    history.model = model.eval().to("cpu")
    return history


def run_framework(
    config: Config,
    seed: int,
    x: Tensor,
    labels: Tensor,
    orders: list[Tensor],
    progress: Progress | None = None,
) -> History:
    """Train the framework network of ``config`` and ``seed`` on ``(x, labels)`` with framework.optim.SGD."""
    criterion = build_loss(config)

    def start(attempt: int) -> tuple[fw.Module, fw.optim.SGD]:
        model = build_model(config, seed, attempt).to(device=config.device)
        sgd = fw.optim.SGD(model.param(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        return model, sgd

    t = targets(criterion, labels, x.dtype)
    return _train(config, x, t, orders, start, framework_step, criterion, progress)


def run_torch(
    config: Config,
    seed: int,
    x: Tensor,
    labels: Tensor,
    orders: list[Tensor],
    progress: Progress | None = None,
) -> History:
    """Train the torch.nn twin of the same initial network with torch.optim.SGD."""
    framework_loss = build_loss(config)
    criterion = twin_of(framework_loss)
    # torch.nn.Dropout draws from the global generator: seed it so a torch run replays too.
    torch.manual_seed(derived_seed(seed, "torch-dropout"))

    def start(attempt: int) -> tuple[torch.nn.Module, torch.optim.SGD]:
        model = torch_twin(build_model(config, seed, attempt)).to(config.device)
        sgd = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        return model, sgd

    t = targets(framework_loss, labels, x.dtype)
    return _train(config, x, t, orders, start, torch_step, criterion, progress)
