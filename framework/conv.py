"""Convolutions (cross-correlations, as torch) and the transposed convolution, their adjoint.

All three run on the 2-D kernels of :mod:`framework._sliding` (Conv1d as a 2-D convolution of
height 1): the forward is a strided window view contracted with the weight in one batched
product per group, the input gradient scatters the contracted windows back (one strided slice
addition per kernel offset). A transposed convolution's forward is a convolution's input
gradient and its input gradient is a convolution's forward.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from . import _checks as check
from . import _sliding as sliding
from . import init as initializers
from .module import Module, optional_batch


def _ntuple(owner: Any, value: Any, n: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int (repeated n times) or a sequence of n ints, each at least ``minimum``."""
    if isinstance(value, int) and not isinstance(value, bool):
        values = (value,) * n
    elif (
        isinstance(value, (tuple, list))
        and len(value) == n
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        values = tuple(int(v) for v in value)
    else:
        kind = "an int" if n == 1 else f"an int or a tuple of {n} ints"
        raise check.ModuleTypeError(f"{type(owner).__name__}: expected {name} to be {kind}, got {value!r}")
    if any(v < minimum for v in values):
        raise check.fail(owner, f"expected {name} >= {minimum}, got {value!r}")
    return values


class _ConvNd(Module):
    r"""Shared construction and checks of Conv1d, Conv2d and ConvTranspose2d."""

    abstract = True
    spatial: ClassVar[int] = 2
    transposed: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
        bias: bool,
        padding_mode: str,
        output_padding: Any,
        init: str,
        nonlinearity: str,
        generator: torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        n = self.spatial
        self.in_channels = check.positive_int(self, in_channels, "in_channels")
        self.out_channels = check.positive_int(self, out_channels, "out_channels")
        self.groups = check.positive_int(self, groups, "groups")
        for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                raise check.fail(self, f"expected {name} divisible by groups = {groups}, got {name} = {channels}")
        self.kernel_size = _ntuple(self, kernel_size, n, "kernel_size", 1)
        self.stride = _ntuple(self, stride, n, "stride", 1)
        self.dilation = _ntuple(self, dilation, n, "dilation", 1)
        if isinstance(padding, str) and not self.transposed:
            check.choice(self, padding, "padding", ("same", "valid"))
            if padding == "same" and any(s != 1 for s in self.stride):
                raise check.fail(self, f"expected stride 1 with padding='same' (as torch), got stride={stride!r}")
            self.padding: tuple[int, ...] | str = padding
        else:
            self.padding = _ntuple(self, padding, n, "padding", 0)
        self.output_padding = _ntuple(self, output_padding, n, "output_padding", 0)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise check.fail(
                    self,
                    f"expected output_padding smaller than stride or dilation, got output_padding="
                    f"{self.output_padding}, stride={self.stride}, dilation={self.dilation}",
                )
        # As torch, a transposed convolution pads with zeros only.
        modes = ("zeros",) if self.transposed else sliding.PADDING_MODES
        self.padding_mode = check.choice(self, padding_mode, "padding_mode", modes)
        dtype = dtype or torch.get_default_dtype()
        if self.transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        weight = torch.empty(shape, device=device, dtype=dtype)
        b = torch.empty(out_channels, device=device, dtype=dtype) if bias else None
        initializers.initialise(weight, b, init, nonlinearity, generator)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", b)

    @property
    def unbatched_ndim(self) -> int:
        """The rank of one sample without its batch dimension, (C, L) or (C, H, W), as torch takes it."""
        return self.spatial + 1

    # -- everything below works in 2-D; a 1-D layer is a 2-D one of height 1 --------------------
    def _as2d(self, values: tuple[int, ...], fill: int) -> sliding.Pair:
        return (fill, values[0]) if self.spatial == 1 else (values[0], values[1])

    def _weight2d(self) -> Tensor:
        return self.weight.unsqueeze(2) if self.spatial == 1 else self.weight

    def _pads(self) -> sliding.Pads:
        """(top, bottom, left, right) zero padding of the input."""
        if self.padding == "valid":
            per_dim = [(0, 0)] * self.spatial
        elif self.padding == "same":
            # Total d (k - 1), the odd one out on the bottom/right, as torch.
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            per_dim = [(t // 2, t - t // 2) for t in totals]
        else:
            per_dim = [(p, p) for p in self.padding]
        if self.spatial == 1:
            per_dim = [(0, 0), *per_dim]
        return (per_dim[0][0], per_dim[0][1], per_dim[1][0], per_dim[1][1])

    def _check(self, x: Any, channels: int) -> Tensor:
        x = self._check_input(x, (self.spatial + 2,))
        check.size(self, x, 1, channels, "channels")
        return x

    def _grad_bias(self, grad_output: Tensor) -> None:
        if self.bias is not None:
            self.grad("bias").add_(grad_output.sum((0, 2, 3)))

    def _with_bias(self, y: Tensor) -> Tensor:
        """The bias added onto ``y``, in place: ``y`` is always the layer's own fresh output."""
        return y if self.bias is None else y.add_(self.bias.reshape(1, -1, 1, 1))

    def _finish(self, y: Tensor) -> Tensor:
        return y.squeeze(2) if self.spatial == 1 else y

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.spatial:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.spatial:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.spatial:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class _Conv(_ConvNd):
    r"""Grouped, strided, dilated, zero-padded cross-correlation (torch's convolution).

    y[n, o, p] = b[o] + sum_{c in group(o), k} W[o, c, k] x_pad[n, c, s p + d k]
    dL/dx_pad[n, c, q] = sum_{o in group(c), p, k: s p + d k = q} W[o, c, k] g[n, o, p]   (then cropped)
    dL/dW[o, c, k] += sum_{n, p} g[n, o, p] x_pad[n, c, s p + d k];   dL/db[o] += sum_{n, p} g[n, o, p]
    (g = dL/dy; p, q, k multi-indices over the spatial dimensions).
    """

    abstract = True

    @optional_batch
    def forward(self, x: Tensor) -> Tensor:
        x = self._check(x, self.in_channels)
        x2 = x.unsqueeze(2) if self.spatial == 1 else x
        pads = self._pads()
        kernel, stride, dilation = (
            self._as2d(self.kernel_size, 1),
            self._as2d(self.stride, 1),
            self._as2d(self.dilation, 1),
        )
        size = tuple(x2.shape[2:])
        out = tuple(
            sliding.output_size(size[i], kernel[i], stride[i], dilation[i], pads[2 * i] + pads[2 * i + 1])
            for i in range(2)
        )
        if min(out) < 1:
            spatial = tuple(x.shape[2:])
            raise check.fail(
                self,
                f"expected an input of spatial size at least the dilated kernel "
                f"{tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size))} after padding "
                f"{self.padding}, got spatial size {spatial} (input shape {tuple(x.shape)})",
            )
        sources = None
        if self.padding_mode == "zeros":
            # The canvas's zero border is written once, when the buffer is made: the calls overwrite
            # its interior alone.
            buffer = self._workspace(
                f"canvas {pads}", sliding.padded_shape(x2, pads), x, init=lambda b: sliding.fill_border(b, pads)
            )
            canvas = sliding.pad(x2, pads, buffer=buffer, border_filled=True)
        else:
            self._check_copy_padding(x, pads, size)
            canvas, sources = sliding.pad_by_copy(x2, pads, self.padding_mode)
        # The columns (im2col) are kept for the weight gradient rather than rebuilt in backward, in
        # a buffer reused by the next forward (a fresh one would cost its page faults every call).
        # With a bias (on all but small CPU tensors), the columns carry a row of ones and the product
        # adds the bias, the weight's product its gradient: no pass over y or dL/dy for either.
        fused = self.bias is not None and sliding.fuses_bias(canvas)
        n, c = canvas.shape[:2]
        shape = (n, self.groups, (c // self.groups) * kernel[0] * kernel[1] + fused, out[0] * out[1])
        buffer = self._workspace("cols", shape, x, init=sliding.set_bias_row if fused else None)
        target = sliding.bias_row(buffer) if fused else buffer
        sliding.columns(canvas, self.groups, out, kernel, stride, dilation, target)
        y = sliding.correlate_columns(buffer, self._weight2d(), out, self.bias if fused else None)
        if self.bias is not None and not fused:
            y.add_(self.bias.reshape(1, -1, 1, 1))  # y is the product's fresh output
        y = self._finish(y)
        self._save_for_backward(
            cols=buffer,
            bias_row=fused,
            canvas_size=tuple(canvas.shape[2:]),
            pads=pads,
            sources=sources,
            size=size,
            like=y,
        )
        return y

    def _check_copy_padding(self, x: Tensor, pads: sliding.Pads, size: tuple[int, ...]) -> None:
        # torch's limits: reflect padding below the input size (the edge is not repeated), circular at most it.
        if self.padding_mode == "replicate":
            return
        for before, after, n in ((pads[0], pads[1], size[0]), (pads[2], pads[3], size[1])):
            limit = n - 1 if self.padding_mode == "reflect" else n
            if max(before, after) > limit:
                raise check.fail(
                    self,
                    f"expected {self.padding_mode} padding of at most {limit} for spatial size {n} "
                    f"(input shape {tuple(x.shape)}), got padding={self.padding}",
                )

    @optional_batch
    def backward(self, grad_output: Tensor) -> Tensor:
        saved, g = self._accumulate(grad_output)
        pads = saved["pads"]
        stride, dilation = self._as2d(self.stride, 1), self._as2d(self.dilation, 1)
        weight = self._weight2d()
        if saved["sources"] is not None:
            grad_canvas = sliding.correlate_input_grad(g, weight, self.groups, saved["canvas_size"], stride, dilation)
            return self._finish(sliding.unpad_by_copy(grad_canvas, saved["sources"], saved["size"]))
        # Zero padding: the windows' gradients go straight onto the input's (no padded canvas to
        # crop), a few samples at a time through a reused buffer.
        grad_input = g.new_zeros((g.shape[0], self.in_channels, *saved["size"]))
        buffer = self._workspace("input_grad_columns", sliding.input_grad_chunk(g, weight, self.groups), g)
        sliding.correlate_input_grad_into(g, weight, self.groups, grad_input, pads, stride, dilation, buffer)
        return self._finish(grad_input)

    @optional_batch
    def backward_to_params(self, grad_output: Tensor) -> None:
        self._accumulate(grad_output)

    def _accumulate(self, grad_output: Tensor) -> tuple[dict[str, Any], Tensor]:
        """Adds dL/dW and dL/db to the gradients; returns what forward saved and dL/dy (4-d)."""
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        g = grad_output.unsqueeze(2) if self.spatial == 1 else grad_output
        grad_weight = self.grad("weight")
        kernel = self._as2d(self.kernel_size, 1)
        dw, db = sliding.weight_grad_columns(g, saved["cols"], kernel, saved["bias_row"])
        grad_weight.add_(dw.reshape(grad_weight.shape))
        if db is None:
            self._grad_bias(g)
        else:
            self.grad("bias").add_(db)
        return saved, g


_CONV_ARGS = """
    Args:
        in_channels, out_channels: channels of input and output (both divisible by ``groups``).
        kernel_size, stride, dilation: an int or one per spatial dimension (each >= 1).
        padding: zeros added on both sides (an int or one per dimension), or ``'valid'`` (none) or
            ``'same'`` (output size = input size; stride 1 only; an odd total puts the extra on the end).
        groups: input and output channels split into this many independent groups.
        bias: learn an additive bias.
        padding_mode: what the padding holds: ``'zeros'``, or copies of the input (``'reflect'``,
            ``'replicate'``, ``'circular'``), whose gradient flows back to the copied entries.
        init, nonlinearity: initialisation scheme and following activation (see :func:`framework.init.initialise`);
            torch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) by default.
        generator: a seeded ``torch.Generator`` for reproducible weights.
"""


class Conv1d(_Conv):
    __doc__ = (
        (_Conv.__doc__ or "")
        + _CONV_ARGS
        + """
    Shape: input (N, C_in, L) or (C_in, L), output (N, C_out, L_out) or (C_out, L_out),
    L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1.
    Attributes: ``weight`` (C_out, C_in / groups, kernel_size), ``bias`` (C_out,).
"""
    )
    spatial = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: int | tuple[int] | str = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        init: str = "default",
        nonlinearity: str = "relu",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, 0,
            init, nonlinearity, generator, device, dtype,
        )  # fmt: skip


class Conv2d(_Conv):
    __doc__ = (
        (_Conv.__doc__ or "")
        + _CONV_ARGS
        + """
    Shape: input (N, C_in, H, W) or (C_in, H, W), output (N, C_out, H_out, W_out) or (C_out, H_out, W_out),
    H_out = floor((H + 2 padding[0] - dilation[0]
    (kernel_size[0] - 1) - 1) / stride[0]) + 1, and likewise W_out.
    Attributes: ``weight`` (C_out, C_in / groups, kh, kw), ``bias`` (C_out,).
"""
    )

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        init: str = "default",
        nonlinearity: str = "relu",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, 0,
            init, nonlinearity, generator, device, dtype,
        )  # fmt: skip


class ConvTranspose2d(_ConvNd):
    r"""Transposed convolution: the adjoint (input gradient) of Conv2d with the same weight and geometry.

    y_full[n, o, s p + d k] += W[c, o, k] x[n, c, p]   (c in group(o)), then
    y = y_full cropped by ``padding`` on each side (``output_padding`` extra rows/columns at the end) + b.
    dL/dx[n, c, p] = sum_{o in group(c), k} W[c, o, k] g_pad[n, o, s p + d k]   (Conv2d's forward on g, zero-padded);
    dL/dW[c, o, k] += sum_{n, p} x[n, c, p] g_pad[n, o, s p + d k];   dL/db[o] += sum g[n, o, :]   (g = dL/dy).

    Args:
        in_channels, out_channels: channels of input and output (both divisible by ``groups``).
        kernel_size, stride, dilation: an int or a pair (each >= 1).
        padding: rows/columns cropped from each side of the full output (an int or a pair, >= 0).
        output_padding: rows/columns added at the end of the output; each smaller than the stride or the
            dilation (as torch requires).
        groups, bias, init, nonlinearity, generator: as :class:`Conv2d`.
        padding_mode: ``'zeros'`` only, as torch.

    Shape: input (N, C_in, H, W) or (C_in, H, W), output (N, C_out, H_out, W_out) or (C_out, H_out, W_out),
    H_out = (H - 1) stride[0] - 2 padding[0] + dilation[0] (kh - 1) + output_padding[0] + 1, and likewise W_out.
    ``forward(x, output_size)`` may instead give the wanted (H_out, W_out) (choosing output_padding).
    Attributes: ``weight`` (C_in, C_out / groups, kh, kw) as torch, ``bias`` (C_out,).
    """

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        *,
        init: str = "default",
        nonlinearity: str = "relu",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
            output_padding, init, nonlinearity, generator, device, dtype,
        )  # fmt: skip

    def _output_padding(self, x: Tensor, output_size: Any) -> tuple[int, int]:
        if output_size is None:
            return (self.output_padding[0], self.output_padding[1])
        if isinstance(output_size, torch.Size):
            output_size = tuple(output_size)
        if not (isinstance(output_size, (tuple, list)) and len(output_size) in (2, 3, 4)):
            raise check.ModuleTypeError(
                f"ConvTranspose2d: expected output_size to be (H_out, W_out) (optionally with N and C first), "
                f"got {output_size!r}"
            )
        wanted = [int(v) for v in output_size[-2:]]
        result = []
        for i in range(2):
            smallest = (
                (x.shape[2 + i] - 1) * self.stride[i]
                - 2 * self.padding[i]
                + self.dilation[i] * (self.kernel_size[i] - 1)
                + 1
            )
            largest = smallest + self.stride[i] - 1
            if not smallest <= wanted[i] <= largest:
                raise check.fail(
                    self,
                    f"expected output_size within [{smallest}, {largest}] in dimension {i + 2} for input shape "
                    f"{tuple(x.shape)}, got {tuple(output_size)}",
                )
            result.append(wanted[i] - smallest)
        return (result[0], result[1])

    @optional_batch
    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        x = self._check(x, self.in_channels)
        output_padding = self._output_padding(x, output_size)
        h, w = x.shape[2:]
        p = self.padding
        full = tuple(
            (size - 1) * s + d * (k - 1) + 1 + op
            for size, s, d, k, op in zip((h, w), self.stride, self.dilation, self.kernel_size, output_padding)
        )
        out = (full[0] - 2 * p[0], full[1] - 2 * p[1])
        if min(out) < 1:
            raise check.fail(
                self,
                f"expected a positive output size, got {out} for input shape {tuple(x.shape)} "
                f"(padding={self.padding} crops too much)",
            )
        pads = (p[0], p[0], p[1], p[1])
        # The adjoint of a convolution, its windows added straight onto the cropped output.
        y = x.new_zeros((x.shape[0], self.out_channels, *out))
        buffer = self._workspace("columns", sliding.input_grad_chunk(x, self.weight, self.groups), x)
        sliding.correlate_input_grad_into(x, self.weight, self.groups, y, pads, self.stride, self.dilation, buffer)
        y = self._with_bias(y)
        self._save_for_backward(x=x, pads=pads, like=y)
        return y

    @optional_batch
    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        x, pads = saved["x"], saved["pads"]
        # Rows of output_padding beyond the padded canvas never receive input, so zero-padding g
        # back to the full canvas (plus nothing more) is enough for the windows below.
        g_pad = sliding.pad(grad_output, pads)
        in_size = (x.shape[2], x.shape[3])
        self.grad("weight").add_(
            sliding.correlate_weight_grad(x, g_pad, self.groups, self.kernel_size, self.stride, self.dilation)
        )
        self._grad_bias(grad_output)
        return sliding.correlate(g_pad, self.weight, self.groups, in_size, self.stride, self.dilation)
