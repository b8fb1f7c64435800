"""A whole training step captured in a CUDA graph and replayed.

A small network's step is a few dozen kernels of a few microseconds each; launched one by one
from Python, the launches cost more than the kernels. Captured once in a CUDA graph, the step
is replayed by one launch. This works because no framework module, loss or optimizer reads a
tensor value back to the host on its hot path (tests/framework/test_host_reads.py), and random
numbers (Dropout) come from generators on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _checks as check
from .module import Loss, Module, iter_modules
from .optim import Optimizer


class CapturedStep:
    r"""One training step of ``model``, captured in a CUDA graph on first use and replayed after.

    The step, on static input and target buffers::

        optimizer.zero_grad()
        loss = criterion(model(static_input), static_target)
        model.backward_to_params(criterion.backward(1.0))
        optimizer.step()

    ``captured(x, target)`` copies the batch into the static buffers and runs the step; it returns
    the static ``loss`` tensor, which the next call overwrites (clone it to keep it). The first
    ``warmup`` calls run the step eagerly on a side stream (they create the optimizer's state
    and every lazily built tensor, such as Dropout's generator on the device), the next one
    captures the step and replays it, and every later call only replays. Each call is one real
    training step: k calls give the parameters that k eager steps give.

    A graph replays exactly what was captured, so:

    - every batch must have the example's shape, dtype and device;
    - Python-side settings are frozen at capture: the learning rate and other hyper-parameters,
      the model's training mode, the parameter tensors themselves. After changing any of them,
      call :meth:`reset` and the next call captures again;
    - the optimizer must be :attr:`~framework.optim.Optimizer.capturable` (SGD and RMSprop are;
      Adam with ``capturable=True``, whose step count lives on the device). Python-side counters
      that the update does not use (RMSprop's ``state["step"]``) stop at the capture.

    Args:
        model: a framework module whose parameters are on one CUDA device.
        criterion: a framework loss (``forward(prediction, target)``, ``backward()``).
        optimizer: a framework optimizer over ``model.param()``.
        example_input, example_target: a batch of the shape, dtype and device of every later one.
        warmup: eager steps before the capture (at least 1).

    Attributes:
        static_input, static_target: the buffers the graph reads (filling them and calling
            ``captured(captured.static_input, captured.static_target)`` skips the copies).
        loss: the latest step's loss (``None`` before the first call).
    """

    def __init__(
        self,
        model: Module,
        criterion: Loss,
        optimizer: Optimizer,
        example_input: Tensor,
        example_target: Tensor,
        warmup: int = 2,
    ) -> None:
        owner = "CapturedStep"
        if not isinstance(model, Module):
            raise check.ModuleTypeError(f"{owner}: expected model to be a framework Module, got {type(model).__name__}")
        if not isinstance(criterion, Loss):
            raise check.ModuleTypeError(
                f"{owner}: expected criterion to be a framework Loss, got {type(criterion).__name__}"
            )
        if not isinstance(optimizer, Optimizer):
            raise check.ModuleTypeError(
                f"{owner}: expected optimizer to be a framework Optimizer, got {type(optimizer).__name__}"
            )
        if not optimizer.capturable:
            raise check.fail(
                owner,
                f"expected a capturable optimizer, got {type(optimizer).__name__} with capturable=False "
                f"(its step count would be frozen in the graph; pass capturable=True)",
            )
        example_input = check.tensor(owner, example_input, "example_input")
        example_target = check.tensor(owner, example_target, "example_target")
        if example_input.device.type != "cuda":
            raise check.ModuleTypeError(f"{owner}: expected example_input on a CUDA device, got {example_input.device}")
        for name, param, _ in model.named_param():
            if param.device != example_input.device:
                raise check.ModuleTypeError(
                    f"{owner}: expected every parameter on {example_input.device} (the example input's device), "
                    f"got {name} on {param.device}"
                )
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.warmup = check.positive_int(owner, warmup, "warmup")
        self.device = example_input.device
        self.static_input = example_input.detach().clone()
        self.static_target = example_target.detach().to(self.device).clone()
        self.loss: Tensor | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._eager_steps = 0

    def reset(self) -> None:
        """Drop the captured graph: the next call runs eagerly once, then captures again."""
        self._graph = None
        self._eager_steps = self.warmup - 1

    def _step(self) -> Tensor:
        self.optimizer.zero_grad()
        loss = self.criterion(self.model(self.static_input), self.static_target)
        self.model.backward_to_params(self.criterion.backward(1.0))
        self.optimizer.step()
        return loss

    def _generators(self) -> list[torch.Generator]:
        found = []
        for module in [*iter_modules(self.model), self.criterion]:
            generator = module.__dict__.get("generator")
            if isinstance(generator, torch.Generator) and generator.device.type == "cuda":
                found.append(generator)
        return found

    def _load(self, buffer: Tensor, value: Any, name: str) -> None:
        if value is buffer:
            return
        value = check.tensor("CapturedStep", value, name)
        if value.shape != buffer.shape or value.dtype != buffer.dtype:
            raise check.fail(
                "CapturedStep",
                f"expected {name} of shape {tuple(buffer.shape)} and dtype {buffer.dtype} (the captured example's), "
                f"got shape {tuple(value.shape)} and dtype {value.dtype}",
            )
        buffer.copy_(value, non_blocking=True)

    def __call__(self, input: Tensor, target: Tensor) -> Tensor:
        self._load(self.static_input, input, "input")
        self._load(self.static_target, target, "target")
        if self._graph is not None:
            self._graph.replay()
        elif self._eager_steps < self.warmup:
            # Eager steps on a side stream, as CUDA graph capture asks of warm-up work.
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                self.loss = self._step()
            current.wait_stream(side)
            self._eager_steps += 1
        else:
            graph = torch.cuda.CUDAGraph()
            for generator in self._generators():
                graph.register_generator_state(generator)
            with torch.cuda.graph(graph):
                self.loss = self._step()
            self._graph = graph
            graph.replay()  # the capture ran nothing: this is the step
        assert self.loss is not None
        return self.loss
