"""Dropout: random zeroing in training mode, identity in evaluation mode."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _checks as check
from .module import Module


class Dropout(Module):
    r"""Inverted dropout.

    Training: m_i ~ Bernoulli(1 - p) drawn in forward, y = x * m / (1 - p);   dL/dx = dL/dy * m / (1 - p)
    (the same mask in backward). Evaluation: y = x;   dL/dx = dL/dy.
    p = 1 zeroes everything (output and gradient) without dividing by zero; p = 0 is the identity.

    The mask is drawn on the CPU from ``self.generator`` and then moved to the input's device,
    so one seed gives one mask on every device (the torch twin draws from another stream, so
    masks are not comparable with it; the scaling convention is).

    Args:
        p: probability of zeroing an element, in [0, 1].
        inplace: write the result into the input tensor, as torch's ``inplace=True``.
        generator: a CPU ``torch.Generator``; by default a new one seeded from torch's global
            generator, so ``torch.manual_seed`` makes runs reproducible.

    Shape: input (*), output (*) the same shape.
    Attributes: ``generator``, the stream masks are drawn from (re-seed it to replay a mask).
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = check.number(self, p, "p", 0.0, 1.0)
        if not isinstance(inplace, bool):
            # A generator passed positionally would otherwise be read as inplace=True.
            raise check.ModuleTypeError(f"Dropout: expected inplace to be a bool, got {inplace!r}")
        self.inplace = inplace
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator().manual_seed(seed)
        elif not isinstance(generator, torch.Generator):
            raise check.ModuleTypeError(f"Dropout: expected generator to be a torch.Generator, got {generator!r}")
        elif generator.device.type != "cpu":
            raise check.fail(
                self, f"expected a CPU generator (masks are drawn on the CPU), got one on {generator.device}"
            )
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        if not self.training or self.p == 0.0:
            self._save_for_backward(scale=None, like=x)
            return x
        if self.p == 1.0:
            scale = torch.zeros_like(x)
        else:
            keep = torch.rand(x.shape, generator=self.generator, dtype=torch.float64) < 1.0 - self.p
            # As torch: the mask holds 0 or 1/(1-p) in the input's dtype and multiplies the input.
            scale = keep.to(device=x.device, dtype=x.dtype).div_(1.0 - self.p)
        y = x.mul_(scale) if self.inplace else x * scale
        self._save_for_backward(scale=scale, like=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        return grad_output if saved["scale"] is None else grad_output * saved["scale"]

    def extra_repr(self) -> str:
        return f"p={self.p:g}, inplace={self.inplace}"
