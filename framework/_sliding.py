"""Sliding windows over the last two dimensions, shared by convolutions and pooling.

``windows`` is a strided view (no copy) of every kernel position of every output position;
``scatter_windows`` is its adjoint: it adds each window's values back onto the canvas they came
from, with one strided slice addition per kernel offset (kh * kw of them), never a loop over
samples, channels or output positions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # (top, bottom, left, right)

# Up to this many elements on the CPU, one indexed operation through a cached flat index beats
# kh * kw strided slice operations, each of which pays some 10 us of fixed cost on a tiny tensor
# (3x3 windows, one thread: scattering the columns of 50x1x8x8 outputs takes 32 us against 122 us,
# making them 14 us against 30 us; at 64x1x28x28 the strided operations win, 217 us against 391 us
# for the scatter). A small padded canvas is made fresh rather than in a reused buffer (one fill
# instead of four border fills).
SMALL = 1 << 16


def _small(tensor: Tensor) -> bool:
    return tensor.is_cpu and tensor.numel() <= SMALL


def output_size(size: int, kernel: int, stride: int, dilation: int, pad_total: int) -> int:
    """Number of window positions along one dimension (floor convention)."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pad(x: Tensor, pads: Pads, value: float = 0.0, buffer: Tensor | None = None, border_filled: bool = False) -> Tensor:
    """``x`` (N, C, H, W) placed in a canvas filled with ``value``; pads are (top, bottom, left, right).
    The canvas is ``buffer`` when given (of the padded shape, reused from call to call) and not
    small: its border is filled (unless ``border_filled``: the caller keeps it holding ``value``,
    see :func:`fill_border`) and its interior overwritten, so nothing of its earlier contents
    remains (a small fresh canvas costs less than the four border fills)."""
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    shape = (n, c, h + top + bottom, w + left + right)
    if buffer is None or _small(buffer):
        canvas = x.new_full(shape, value)
    else:
        canvas = buffer if border_filled else fill_border(buffer, pads, value)
    canvas[:, :, top : top + h, left : left + w] = x
    return canvas


def fill_border(canvas: Tensor, pads: Pads, value: float = 0.0) -> Tensor:
    """Sets the border of ``canvas`` (N, C, H + top + bottom, W + left + right) that :func:`pad`
    leaves around its input to ``value``; returns ``canvas``."""
    top, bottom, left, right = pads
    h, w = canvas.shape[2] - top - bottom, canvas.shape[3] - left - right
    canvas[:, :, :top].fill_(value)
    canvas[:, :, top + h :].fill_(value)
    canvas[:, :, top : top + h, :left].fill_(value)
    canvas[:, :, top : top + h, left + w :].fill_(value)
    return canvas


def padded_shape(x: Tensor, pads: Pads) -> tuple[int, int, int, int]:
    """Shape of :func:`pad`'s canvas for ``x``."""
    n, c, h, w = x.shape
    return (n, c, h + pads[0] + pads[1], w + pads[2] + pads[3])


def crop(canvas: Tensor, pads: Pads, size: Pair) -> Tensor:
    """The part of ``canvas`` that ``pad`` filled from an input of spatial ``size`` (its adjoint)."""
    top, _, left, _ = pads
    return canvas[:, :, top : top + size[0], left : left + size[1]]


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _sources(size: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """For each canvas position along one dimension, the input index it copies."""
    i = torch.arange(-before, size + after, device=device)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ... (the edge not repeated)
        i = i.abs()
        return torch.where(i >= size, 2 * (size - 1) - i, i)
    if mode == "replicate":
        return i.clamp(0, size - 1)
    return i.remainder(size)  # circular


def pad_by_copy(x: Tensor, pads: Pads, mode: str) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``x`` (N, C, H, W) padded with copies of its own entries (reflect, replicate or circular) by one
    gather; returns the canvas and the source indices of its rows and columns (for :func:`unpad_by_copy`)."""
    h, w = x.shape[2:]
    rows = _sources(h, pads[0], pads[1], mode, x.device)
    columns = _sources(w, pads[2], pads[3], mode, x.device)
    return x[:, :, rows[:, None], columns], (rows, columns)


def unpad_by_copy(grad: Tensor, sources: tuple[Tensor, Tensor], size: Pair) -> Tensor:
    """Adjoint of :func:`pad_by_copy`: every canvas entry's gradient added to the input entry it copied."""
    rows, columns = sources
    n, c, hp, _ = grad.shape
    by_column = grad.new_zeros((n, c, hp, size[1])).index_add_(3, columns, grad)
    return grad.new_zeros((n, c, *size)).index_add_(2, rows, by_column)


def windows(canvas: Tensor, out: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """View (N, C, Ho, Wo, kh, kw): entry [n, c, h, w, i, j] = canvas[n, c, h sh + i dh, w sw + j dw]."""
    n, c = canvas.shape[:2]
    s_n, s_c, s_h, s_w = canvas.stride()
    shape = (n, c, out[0], out[1], kernel[0], kernel[1])
    strides = (s_n, s_c, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1])
    return canvas.as_strided(shape, strides, canvas.storage_offset())


def window_offset(canvas: Tensor, i: int, j: int, out: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """View (N, C, Ho, Wo) of the entry at kernel offset (i, j) of every window: windows(...)[..., i, j]."""
    h0, w0 = i * dilation[0], j * dilation[1]
    rows = slice(h0, h0 + stride[0] * (out[0] - 1) + 1, stride[0])
    columns = slice(w0, w0 + stride[1] * (out[1] - 1) + 1, stride[1])
    return canvas[:, :, rows, columns]


@functools.lru_cache(maxsize=64)  # one index per window entry of a small tensor: a few MiB at most
def _flat_window_index(kernel: Pair, out: Pair, canvas_size: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """For each entry (i, j, h, w) of the window view, in that order, its flat position in a canvas plane."""
    i = torch.arange(kernel[0]).view(-1, 1, 1, 1) * dilation[0]
    j = torch.arange(kernel[1]).view(1, -1, 1, 1) * dilation[1]
    h = torch.arange(out[0]).view(1, 1, -1, 1) * stride[0]
    w = torch.arange(out[1]).view(1, 1, 1, -1) * stride[1]
    return ((h + i) * canvas_size[1] + (w + j)).reshape(-1)


def scatter_windows(cols: Tensor, canvas_size: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """Adjoint of :func:`windows`, kernel offsets first: cols (N, C, kh, kw, Ho, Wo) -> canvas (N, C, *canvas_size)."""
    n, c, kh, kw, ho, wo = cols.shape
    if _small(cols):
        index = _flat_window_index((kh, kw), (ho, wo), tuple(canvas_size), tuple(stride), tuple(dilation))
        flat = cols.new_zeros((n * c, canvas_size[0] * canvas_size[1]))
        flat.index_add_(1, index, cols.reshape(n * c, index.numel()))
        return flat.view(n, c, *canvas_size)
    canvas = cols.new_zeros((n, c, *canvas_size))
    for i in range(kh):
        for j in range(kw):
            window_offset(canvas, i, j, (ho, wo), stride, dilation).add_(cols[:, :, i, j])
    return canvas


def _inside(size: int, out: int, offset: int, before: int, stride: int) -> tuple[int, int, int]:
    """Along one dimension, the window positions [lo, hi) whose entry at canvas position
    ``p stride + offset`` lies on the input rather than on the padding, and the input index of the first."""
    lo = max(0, -((offset - before) // stride))  # ceil((before - offset) / stride)
    hi = min(out, (size - 1 + before - offset) // stride + 1)
    return lo, max(lo, hi), lo * stride + offset - before


def scatter_windows_into(cols: Tensor, target: Tensor, pads: Pads, stride: Pair, dilation: Pair) -> Tensor:
    """Adjoint of :func:`pad` then :func:`windows`: adds cols (N, C, kh, kw, Ho, Wo) onto ``target``
    (N, C, H, W), each entry where its window read the input and none where it read padding (the
    same sum as ``crop(scatter_windows(...))``, with no canvas)."""
    _, _, kh, kw, ho, wo = cols.shape
    h, w = target.shape[2:]
    if _small(cols):
        canvas = scatter_windows(cols, (h + pads[0] + pads[1], w + pads[2] + pads[3]), stride, dilation)
        return target.add_(crop(canvas, pads, (h, w)))
    for i in range(kh):
        r_lo, r_hi, row = _inside(h, ho, i * dilation[0], pads[0], stride[0])
        for j in range(kw):
            c_lo, c_hi, col = _inside(w, wo, j * dilation[1], pads[2], stride[1])
            if r_hi > r_lo and c_hi > c_lo:
                rows = slice(row, row + stride[0] * (r_hi - r_lo - 1) + 1, stride[0])
                columns = slice(col, col + stride[1] * (c_hi - c_lo - 1) + 1, stride[1])
                target[:, :, rows, columns].add_(cols[:, :, i, j, r_lo:r_hi, c_lo:c_hi])
    return target


def window_sum(canvas: Tensor, out: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """Sum of every window, (N, C, Ho, Wo): one strided addition per kernel offset, which beats
    reducing the 6-D window view (its innermost dimensions are tiny and strided)."""
    total = window_offset(canvas, 0, 0, out, stride, dilation).clone()
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i or j:
                total.add_(window_offset(canvas, i, j, out, stride, dilation))
    return total


# Up to this many canvas elements on the CPU, window_max's fixed handful of operations beats its
# passes per kernel offset, whose per-call cost then dominates (2x2 windows, one thread, forward:
# 6,400 elements 112 against 151 us, 12,800 157 against 171; 25,600 326 against 242).
SMALL_WINDOWS = 1 << 14


def reduces_windows(canvas: Tensor) -> bool:
    """Whether :func:`window_max` copies the windows and reduces them in one operation (on a GPU:
    a fixed handful of kernels, where a pass per kernel offset costs a launch and a pass each; on
    a small CPU canvas, where the per-call cost of many operations dominates) rather than making a
    pass per column offset, then one per row offset (on the CPU, where those passes run a few
    samples at a time in the cache)."""
    return not canvas.is_cpu or canvas.numel() <= SMALL_WINDOWS


def window_max(
    canvas: Tensor,
    out: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    workspace: Callable[[str, tuple[int, ...], torch.dtype], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Maximum of every window and its kernel offset i * kw + j, as torch's kernel picks it: the first
    maximum in row-major order (a later entry wins only when strictly greater), or the last NaN.

    On the CPU see :func:`_window_max_by_rows`, elsewhere :func:`_window_max_reduced`; both give
    the same values and indices. ``workspace(name, shape, dtype)``: a tensor the caller keeps from
    call to call, for the temporaries and the indices (never for the maxima, which are returned).
    """
    if reduces_windows(canvas):
        return _window_max_reduced(canvas, out, kernel, stride, dilation)
    if workspace is None:
        workspace = lambda name, shape, dtype: canvas.new_empty(shape, dtype=dtype)  # noqa: E731
    return _window_max_by_rows(canvas, out, kernel, stride, dilation, workspace)


# Elements of one row stage's temporaries per intra-op thread on the CPU: a chunk of samples whose
# five temporaries stay in the cache (as framework._blocks.BLOCK).
POOL_CHUNK = 1 << 18


def _window_max_by_rows(
    canvas: Tensor,
    out: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    workspace: Callable[[str, tuple[int, ...], torch.dtype], Tensor],
) -> tuple[Tensor, Tensor]:
    """:func:`window_max` in two stages, a few samples at a time: first, along every canvas row a
    window reads, the maximum over the kw column offsets of each window's columns (kw strided
    gathers, which torch runs as one long loop when the windows tile the row); then, over the kh
    rows of each window, the maximum of those row maxima (row views with contiguous rows: no
    gather). The first row holding the maximum wins, and in it the first column: the first maximum
    in row-major order. A NaN always takes the index (the last NaN keeps it) and, once the maximum
    is NaN, no number beats it: no host-side test for NaN. Indices are tracked as floats (exact
    for these small integers), updated by exact 0/1 blends: comparisons written into floating
    tensors are vectorised, boolean masks are not on every CPU.

    The one-stage form (a strided gather of every window's entry per kernel offset, kh kw of
    them) took 4 to 5 times as long per gathered element at 32x32 inputs, where each gathered
    row is 16 elements long: 128x32x32x32, 2x2 windows, one thread, 5.4 ms per offset.
    """
    n, c = canvas.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    rows = (ho - 1) * sh + (kh - 1) * dh + 1  # the canvas rows some window reads
    best = canvas.new_empty((n, c, ho, wo))
    where = workspace("window max offsets", (n, c, ho, wo), canvas.dtype)
    per_sample = c * rows * wo
    step = max(1, min(n, POOL_CHUNK * torch.get_num_threads() // max(1, per_sample)))
    chunk_shape = (min(step, n), c, rows, wo)
    row_best, row_where, entry, wins, is_nan = workspace("window max rows", (5, *chunk_shape), canvas.dtype)
    offsets = _float_offsets(kh * kw, canvas.dtype, canvas.device)
    for start in range(0, n, step):
        part = canvas[start : start + step, :, :rows] if step < n or rows < canvas.shape[2] else canvas
        m = part.shape[0]
        if m == row_best.shape[0]:
            r_best, r_where, e, w, nan = row_best, row_where, entry, wins, is_nan
        else:  # the last, shorter chunk
            r_best, r_where, e, w, nan = row_best[:m], row_where[:m], entry[:m], wins[:m], is_nan[:m]
        # Stage 1: along each row, the best of the kw column offsets (0 .. kw - 1) of every window.
        r_best.copy_(part[..., 0 : sw * (wo - 1) + 1 : sw])
        r_where.zero_()
        for j in range(1, kw):
            e.copy_(part[..., j * dw : j * dw + sw * (wo - 1) + 1 : sw])
            _take_better(r_best, r_where, e, offsets[j], w, nan)
        # Stage 2: over the kh rows of every window; row i's index is i kw + its column offset.
        y, index = (best, where) if m == n else (best[start : start + m], where[start : start + m])
        y.copy_(r_best[:, :, 0 : sh * (ho - 1) + 1 : sh])
        index.copy_(r_where[:, :, 0 : sh * (ho - 1) + 1 : sh])
        w2, nan2, candidate = (t[:, :, :ho] for t in (w, nan, e))  # spare room for (m, c, ho, wo)
        for i in range(1, kh):
            window_rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            torch.add(r_where[:, :, window_rows], offsets[i * kw], out=candidate)
            _take_better(y, index, r_best[:, :, window_rows], candidate, w2, nan2)
    indices = workspace("window max offsets int64", (n, c, ho, wo), torch.long)
    if where.numel() < POOL_CHUNK:
        return best, indices.copy_(where)
    # Through int32: float32 to int64 directly is 4 times slower than to int32 on the CPU.
    return best, indices.copy_(workspace("window max offsets int32", (n, c, ho, wo), torch.int32).copy_(where))


@functools.lru_cache(maxsize=32)  # a few 0-d tensors per (window size, dtype, device)
def _float_offsets(k: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    """0, 1, ..., k - 1 as 0-d tensors of ``dtype``, made once: the kernel offsets :func:`_take_better`
    blends in (a 0-d tensor made per call and offset costs more than a small window's pass)."""
    return tuple(torch.full((), float(offset), dtype=dtype, device=device) for offset in range(max(k, 1)))


def _take_better(best: Tensor, where: Tensor, entry: Tensor, index: Tensor, wins: Tensor, is_nan: Tensor) -> None:
    """Where ``entry`` is strictly greater than ``best``, or NaN, it becomes the best and ``index``
    (a tensor, or a 0-d one) its index; ``wins`` and ``is_nan`` are scratch of best's shape."""
    torch.gt(entry, best, out=wins)  # 0 where either is NaN
    wins.add_(torch.ne(entry, entry, out=is_nan))
    torch.lerp(where, index, wins, out=where)
    torch.maximum(best, entry, out=best)  # propagates NaN, as torch


@functools.lru_cache(maxsize=32)  # a few bytes per (window size, device)
def _window_offsets(k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """0, 1, ..., k - 1 in the smallest integer dtype that holds them, and a 0-d zero of it: made
    once, not by two kernels per call."""
    dtype = torch.uint8 if k <= 256 else torch.int32
    return torch.arange(k, device=device, dtype=dtype), torch.zeros((), device=device, dtype=dtype)


def _window_max_reduced(canvas: Tensor, out: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Tensor, Tensor]:
    """:func:`window_max` in a fixed number of operations whatever the window size: the windows
    copied to (kh kw, N, C, Ho, Wo), then one ``max`` over the first dimension, which returns the
    first maximum of each window, as torch documents. A window whose maximum is NaN points instead
    at its last NaN (torch's pooling kernel keeps the latest NaN): the largest offset j whose entry
    is NaN, from one-byte offsets.

    On an H100 (128x64x56x56, 2x2 windows) this layout, offsets first, with one-byte offsets for
    the NaN rule, ran the forward in 512 us, against 804 us with the offsets innermost and int64
    offsets. The NaN rule costs about as much as the copy and the max together (460 against 208 us
    without it); of the seven exact forms of it measured, this one was the fastest. Its final select
    is now one ``maximum`` of the two offsets instead of a NaN test and a ``where`` (one kernel fewer,
    exact as the tests show on the CPU; not yet timed on a GPU)."""
    n, c = canvas.shape[:2]
    k = kernel[0] * kernel[1]
    rows = windows(canvas, out, kernel, stride, dilation).permute(4, 5, 0, 1, 2, 3).reshape(k, n, c, *out)
    best, where = rows.max(dim=0)
    entries, zero = _window_offsets(k, rows.device)
    last_nan = torch.where(torch.isnan(rows), entries.view(k, 1, 1, 1, 1), zero).amax(dim=0)
    # Where the maximum is NaN, max points at one of the window's NaNs, at or before its last;
    # elsewhere last_nan is 0. Either way the larger offset is torch's.
    return best, torch.maximum(where, last_nan)


def columns(
    canvas: Tensor, groups: int, out: Pair, kernel: Pair, stride: Pair, dilation: Pair, buffer: Tensor | None = None
) -> Tensor:
    """im2col: (N, groups, C/groups * kh * kw, Ho * Wo), the layout one batched matrix product needs
    (copied into ``buffer`` when given: a tensor of that shape, reused from call to call)."""
    n, c = canvas.shape[:2]
    shape = (n, groups, (c // groups) * kernel[0] * kernel[1], out[0] * out[1])
    if _small(canvas) and canvas.is_contiguous():
        index = _flat_window_index(tuple(kernel), tuple(out), tuple(canvas.shape[2:]), tuple(stride), tuple(dilation))
        planes = canvas.reshape(n * c, canvas.shape[2] * canvas.shape[3])
        if buffer is None:
            return planes.index_select(1, index).view(shape)
        return torch.index_select(planes, 1, index, out=buffer.view(n * c, index.numel())).view(shape)
    view = windows(canvas, out, kernel, stride, dilation).permute(0, 1, 4, 5, 2, 3)
    if buffer is None:
        return view.reshape(shape)
    buffer.view(n, groups, c // groups, kernel[0], kernel[1], out[0], out[1]).copy_(
        view.reshape(n, groups, c // groups, kernel[0], kernel[1], out[0], out[1])
    )
    return buffer.view(shape)


# -- grouped cross-correlation and its two adjoints ------------------------------------------------
def correlate(canvas: Tensor, weight: Tensor, groups: int, out: Pair, stride: Pair, dilation: Pair) -> Tensor:
    """y[n, o] = sum_{c in o's group, i, j} weight[o, c, i, j] canvas[n, c, h sh + i dh, w sw + j dw]."""
    return correlate_columns(columns(canvas, groups, out, weight.shape[2:], stride, dilation), weight, out)


def correlate_columns(cols: Tensor, weight: Tensor, out: Pair, bias: Tensor | None = None) -> Tensor:
    """:func:`correlate` from the columns: one (C_out/g, C_in/g kh kw) x (C_in/g kh kw, Ho Wo) product per group.

    With ``bias``, ``cols`` ends each group's rows with a row of ones (see :func:`bias_row`) and the
    bias joins the weight as its last column: the product adds it, with no pass of its own over y.
    """
    n, groups = cols.shape[:2]
    c_out = weight.shape[0]
    w = weight.reshape(groups, c_out // groups, -1)
    if bias is not None:
        w = torch.cat((w, bias.reshape(groups, c_out // groups, 1)), dim=2)
    return torch.matmul(w, cols).reshape(n, c_out, *out)


def fuses_bias(canvas: Tensor) -> bool:
    """Whether a convolution's bias rides in its product (a row of ones in the columns): not for
    small CPU tensors, whose columns come from one indexed operation into a contiguous buffer."""
    return not _small(canvas)


def bias_row(buffer: Tensor) -> Tensor:
    """The columns in ``buffer`` (N, groups, rows + 1, Ho Wo) but the last row of each group, for
    :func:`columns` to fill: that row holds ones (see :func:`set_bias_row`), which multiply the
    bias in the forward product and sum dL/dy into the bias gradient in the weight's."""
    return buffer[:, :, :-1]


def set_bias_row(buffer: Tensor) -> Tensor:
    """Sets the last row of each group of the columns in ``buffer`` to ones (once per buffer:
    :func:`columns` never writes it); returns ``buffer``."""
    buffer[:, :, -1].fill_(1)
    return buffer


def correlate_input_grad(
    grad: Tensor, weight: Tensor, groups: int, canvas_size: Pair, stride: Pair, dilation: Pair
) -> Tensor:
    """Adjoint of :func:`correlate` in its input: d(canvas) from d(y) (also a transposed convolution)."""
    n, c_out, ho, wo = grad.shape
    _, c_group, kh, kw = weight.shape
    g = grad.reshape(n, groups, c_out // groups, ho * wo)
    w = weight.reshape(groups, c_out // groups, c_group * kh * kw)
    cols = torch.matmul(w.transpose(1, 2), g).reshape(n, groups * c_group, kh, kw, ho, wo)
    return scatter_windows(cols, canvas_size, stride, dilation)


# Elements of input-gradient columns made per product on the CPU: a few MiB, so that the
# scatter that follows reads them from the cache rather than from main memory.
CHUNK = 1 << 20


def chunks_input_grad(grad: Tensor) -> bool:
    """Whether the input gradient's columns are made a few samples at a time (on the CPU, where
    they are then scattered from the cache) rather than for the whole batch in one product."""
    return grad.is_cpu


def input_grad_chunk(grad: Tensor, weight: Tensor, groups: int) -> tuple[int, int, int, int]:
    """Shape of the column buffer :func:`correlate_input_grad_into` fills per product: a few
    samples' worth on the CPU (about CHUNK elements), the whole batch on a GPU."""
    n, _, ho, wo = grad.shape
    _, c_group, kh, kw = weight.shape
    rows = groups * c_group * kh * kw
    step = min(n, max(1, CHUNK // max(1, rows * ho * wo))) if chunks_input_grad(grad) else n
    return (max(step, 1), groups, rows // groups, ho * wo)


def correlate_input_grad_into(
    grad: Tensor,
    weight: Tensor,
    groups: int,
    target: Tensor,
    pads: Pads,
    stride: Pair,
    dilation: Pair,
    buffer: Tensor | None = None,
) -> Tensor:
    """:func:`correlate_input_grad` then :func:`crop`, added onto ``target`` (N, C_in, H, W). The
    columns of a chunk of samples (:func:`input_grad_chunk`) go into ``buffer`` (reused when given)
    and are scattered while still in the cache: never one column tensor of the whole batch on the CPU."""
    n, c_out, ho, wo = grad.shape
    _, c_group, kh, kw = weight.shape
    g = grad.reshape(n, groups, c_out // groups, ho * wo)
    w_t = weight.reshape(groups, c_out // groups, c_group * kh * kw).transpose(1, 2)
    if buffer is None:
        buffer = grad.new_empty(input_grad_chunk(grad, weight, groups))
    step = buffer.shape[0]
    for start in range(0, n, step):
        part = g[start : start + step]
        cols = torch.matmul(w_t, part, out=buffer[: part.shape[0]])
        scatter_windows_into(
            cols.view(part.shape[0], groups * c_group, kh, kw, ho, wo),
            target[start : start + step],
            pads,
            stride,
            dilation,
        )
    return target


def correlate_weight_grad(
    grad: Tensor, canvas: Tensor, groups: int, kernel: Pair, stride: Pair, dilation: Pair
) -> Tensor:
    """Adjoint of :func:`correlate` in its weight: dL/dweight (C_out, C_in / groups, kh, kw)."""
    cols = columns(canvas, groups, tuple(grad.shape[2:]), kernel, stride, dilation)
    return weight_grad_columns(grad, cols, kernel)[0]


def weight_grad_columns(
    grad: Tensor, cols: Tensor, kernel: Pair, with_bias: bool = False
) -> tuple[Tensor, Tensor | None]:
    """:func:`correlate_weight_grad` from the forward's columns; ``with_bias`` (columns ending
    in a row of ones, see :func:`bias_row`), also the bias gradient, sum_{n, p} g[n, o, p], from the
    same product. Returns (dW, db or None)."""
    n, c_out = grad.shape[:2]
    groups = cols.shape[1]
    c_group = (cols.shape[2] - with_bias) // (kernel[0] * kernel[1])
    # dW^T: one (C_in/g kh kw, Ho Wo) x (Ho Wo, C_out/g) product per sample and group, the columns
    # read as they lie and the small gradient transposed in place (no copy of the large column
    # tensor), summed over the samples. The same product as dW = g cols^T, in the orientation the
    # CPU's matrix-multiply kernel prefers: 2.3 times faster at the benchmarks' large Conv2d size
    # (6.4 -> 2.8 ms, one thread), no slower at the others measured.
    g = grad.reshape(n, groups, c_out // groups, grad.shape[2:].numel())  # explicit: n may be 0
    grad_t = torch.matmul(cols, g.transpose(-1, -2)).sum(0)  # (groups, C_in/g kh kw [+ 1], C_out/g)
    if not with_bias:
        return grad_t.transpose(-1, -2).reshape(c_out, c_group, *kernel), None
    grad_weight = grad_t[:, :-1].transpose(-1, -2).reshape(c_out, c_group, *kernel)
    return grad_weight, grad_t[:, -1].reshape(c_out)
