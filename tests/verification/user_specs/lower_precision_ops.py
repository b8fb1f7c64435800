"""A Function whose bfloat16 backward is separate code with a bug of its own (the flash-attention#355
class: grad_output read as if it were contiguous); its float64 and float32 paths are right."""

import torch

from verification import Input, Spec


class ScaleByTwo(torch.autograd.Function):
    """y = 2 x;   dL/dx = 2 dL/dy"""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad_output):
        if grad_output.dtype == torch.bfloat16:
            # The bug: the storage walked in row-major order whatever the strides.
            grad_output = torch.as_strided(grad_output, grad_output.shape, torch.empty(grad_output.shape).stride())
        return 2 * grad_output


SCALE_BY_TWO = Spec(
    ScaleByTwo, inputs=[Input((3, 4))], reference=lambda x: 2 * x, dtypes=(torch.float64, torch.bfloat16)
)
