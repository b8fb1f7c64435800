"""Sliding windows over the last two dimensions, shared by convolutions and pooling.

``windows`` is a strided view (no copy) of every kernel position of every output position;
``scatter_windows`` is its adjoint: it adds each window's values back onto the canvas they came
from, with one strided slice addition per kernel offset (kh * kw of them), never a loop over
samples, channels or output positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # (top, bottom, left, right)


def output_size(size: int, kernel: int, stride: int, dilation: int, pad_total: int) -> int:
    """Number of window positions along one dimension (floor convention)."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pad(x: Tensor, pads: Pads, value: float = 0.0) -> Tensor:
    """``x`` (N, C, H, W) placed in a canvas filled with ``value``; pads are (top, bottom, left, right)."""
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    canvas = x.new_full((n, c, h + top + bottom, w + left + right), value)
    canvas[:, :, top : top + h, left : left + w] = x
    return canvas


def crop(canvas: Tensor, pads: Pads, size: Pair) -> Tensor:
    """The part of ``canvas`` that ``pad`` filled from an input of spatial ``size`` (its adjoint)."""
    top, _, left, _ = pads
    return canvas[:, :, top : top + size[0], left : left + size[1]]


def windows(canvas: Tensor, out: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """View (N, C, Ho, Wo, kh, kw): entry [n, c, h, w, i, j] = canvas[n, c, h sh + i dh, w sw + j dw]."""
    n, c = canvas.shape[:2]
    s_n, s_c, s_h, s_w = canvas.stride()
    shape = (n, c, out[0], out[1], kernel[0], kernel[1])
    strides = (s_n, s_c, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1])
    return canvas.as_strided(shape, strides, canvas.storage_offset())


def scatter_windows(cols: Tensor, canvas_size: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """Adjoint of :func:`windows`: a (N, C, *canvas_size) canvas receiving the sum of every window entry."""
    n, c, ho, wo, kh, kw = cols.shape
    canvas = cols.new_zeros((n, c, *canvas_size))
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dilation[0], j * dilation[1]
            rows = slice(h0, h0 + stride[0] * (ho - 1) + 1, stride[0])
            columns = slice(w0, w0 + stride[1] * (wo - 1) + 1, stride[1])
            canvas[:, :, rows, columns] += cols[:, :, :, :, i, j]
    return canvas


# -- grouped cross-correlation and its two adjoints ------------------------------------------------
def correlate(canvas: Tensor, weight: Tensor, groups: int, out: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """y[n, o] = sum_{c in o's group, i, j} weight[o, c, i, j] canvas[n, c, h sh + i dh, w sw + j dw]."""
    n = canvas.shape[0]
    c_out, c_group, kh, kw = weight.shape
    cols = windows(canvas, out, (kh, kw), stride, dilation).reshape(n, groups, c_group, *out, kh, kw)
    w = weight.reshape(groups, c_out // groups, c_group, kh, kw)
    return torch.einsum("ngchwij,gocij->ngohw", cols, w).reshape(n, c_out, *out)


def correlate_input_grad(
    grad: Tensor, weight: Tensor, groups: int, canvas_size: Pair, stride: Pair, dilation: Pair
) -> Tensor:
    """Adjoint of :func:`correlate` in its input: d(canvas) from d(y) (also a transposed convolution)."""
    n, c_out, ho, wo = grad.shape
    _, c_group, kh, kw = weight.shape
    g = grad.reshape(n, groups, c_out // groups, ho, wo)
    w = weight.reshape(groups, c_out // groups, c_group, kh, kw)
    cols = torch.einsum("ngohw,gocij->ngchwij", g, w).reshape(n, groups * c_group, ho, wo, kh, kw)
    return scatter_windows(cols, canvas_size, stride, dilation)


def correlate_weight_grad(
    grad: Tensor, canvas: Tensor, groups: int, kernel: Pair, stride: Pair, dilation: Pair
) -> Tensor:
    """Adjoint of :func:`correlate` in its weight: dL/dweight (C_out, C_in / groups, kh, kw)."""
    n, c_out, ho, wo = grad.shape
    c_group = canvas.shape[1] // groups
    cols = windows(canvas, (ho, wo), kernel, stride, dilation).reshape(n, groups, c_group, ho, wo, *kernel)
    g = grad.reshape(n, groups, c_out // groups, ho, wo)
    return torch.einsum("ngohw,ngchwij->gocij", g, cols).reshape(c_out, c_group, *kernel)
