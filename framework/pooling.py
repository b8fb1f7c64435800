"""Pooling over (H, W) windows, and upsampling (nearest, linear, bicubic, area)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import _checks as check
from . import _sliding as sliding
from .module import Module


def _pooling_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """torch's pooling output size: floor or ceil, and a ceil window may not start in the end padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class _Pool2d(Module):
    """Shared geometry of MaxPool2d and AvgPool2d (input (N, C, H, W) or (C, H, W))."""

    abstract = True

    def _geometry(self, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> None:
        self.kernel = check.pair(self, kernel_size, "kernel_size")
        self.strides = self.kernel if stride is None else check.pair(self, stride, "stride")
        self.pads = check.pair(self, padding, "padding")
        self.dilations = check.pair(self, dilation, "dilation")
        for name, values, low in (
            ("kernel_size", self.kernel, 1),
            ("stride", self.strides, 1),
            ("dilation", self.dilations, 1),
            ("padding", self.pads, 0),
        ):
            if min(values) < low:
                raise check.fail(self, f"expected {name} >= {low}, got {values}")
        if any(p > k // 2 for p, k in zip(self.pads, self.kernel)):
            raise check.fail(
                self, f"expected padding at most half the kernel size {self.kernel}, got padding={self.pads}"
            )

    def _prepare(self, x: Any, fill: float) -> tuple[Tensor, Tensor, tuple[int, int], sliding.Pads]:
        """The 4-D input, its padded canvas, the output size and the pads (ceil mode pads the end further)."""
        x = self._check_input(x, (3, 4))
        if 0 in x.shape[-3:]:
            raise check.fail(
                self,
                f"expected non-zero channel and spatial sizes (only a batch may be empty, as torch), "
                f"got input shape {tuple(x.shape)}",
            )
        x4 = x.unsqueeze(0) if x.dim() == 3 else x
        h, w = x4.shape[2:]
        out = tuple(
            _pooling_size(n, k, s, p, d, self.ceil_mode)
            for n, k, s, p, d in zip((h, w), self.kernel, self.strides, self.pads, self.dilations)
        )
        if min(out) < 1:
            raise check.fail(
                self,
                f"expected an input of spatial size at least the dilated kernel after padding "
                f"(kernel_size={self.kernel}, padding={self.pads}, dilation={self.dilations}), "
                f"got input shape {tuple(x.shape)}",
            )
        # A ceil-mode window may reach past the padded input; its canvas is extended at the end.
        extra = [
            max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
            for o, s, d, k, n, p in zip(out, self.strides, self.dilations, self.kernel, (h, w), self.pads)
        ]
        ph, pw = self.pads
        pads = (ph, ph + extra[0], pw, pw + extra[1])
        return x4, sliding.pad(x4, pads, fill), (out[0], out[1]), pads

    def _check_grad(self, grad_output: Any) -> tuple[dict[str, Any], Tensor]:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        return saved, grad_output.unsqueeze(0) if saved["unbatched"] else grad_output


@functools.lru_cache(maxsize=8)
def _like(dtype: torch.dtype) -> Tensor:
    """A 0-d CPU tensor of ``dtype``, made once: what :meth:`Module._workspace` takes for the dtype of
    MaxPool2d's index buffers (the CPU path's only: a GPU takes no workspace there)."""
    return torch.empty((), dtype=dtype)


class MaxPool2d(_Pool2d):
    r"""Maximum over each (dilated) window; padded positions are -inf.

    y[n, c, p] = max_k x_pad[n, c, s p + d k]
    dL/dx_pad[n, c, q] = sum_{p: q = argmax of window p} g[n, c, p]   (then cropped; overlapping windows add up).

    Ties: each window passes its whole gradient to one element, the first maximum in row-major window
    order (the element torch's arg-max picks), so the gradient is a subgradient, never split.
    A window holding padding only (possible with dilation) gives -inf, as torch, and passes no gradient
    (torch's own backward writes out of bounds for such a window).

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step; ``kernel_size`` by default.
        padding: -inf added on both sides, at most half the kernel size (as torch).
        dilation: spacing between window elements.
        return_indices: also return the flat index (h * W + w) of each maximum in its input plane.
        ceil_mode: round the output size up (a last, partial window), as torch.

    Shape: input (N, C, H, W) or (C, H, W); output (N, C, H_out, W_out) with
    H_out = floor((H + 2 padding - dilation (kernel - 1) - 1) / stride) + 1 (ceil in ceil mode).
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self._geometry(kernel_size, stride, padding, dilation)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        x4, canvas, out, pads = self._prepare(x, -math.inf)
        y, best = sliding.window_max(
            canvas,
            out,
            self.kernel,
            self.strides,
            self.dilations,
            lambda name, shape, dtype: self._workspace(name, shape, canvas if dtype == canvas.dtype else _like(dtype)),
        )
        unbatched = x.dim() == 3
        y = y.squeeze(0) if unbatched else y
        self._save_for_backward(
            best=best,
            out=out,
            canvas_size=tuple(canvas.shape),
            pads=pads,
            size=x4.shape[2:],
            like=y,
            unbatched=unbatched,
        )
        if not self.return_indices:
            return y
        rows, columns = self._position(best, out)
        indices = (rows - pads[0]) * x4.shape[3] + (columns - pads[2])
        return y, indices.squeeze(0) if unbatched else indices

    def _position(self, best: Tensor, out: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Canvas row and column of each window's maximum, from its kernel offset."""
        kw = self.kernel[1]
        rows = torch.arange(out[0], device=best.device).reshape(-1, 1) * self.strides[0]
        columns = torch.arange(out[1], device=best.device) * self.strides[1]
        return rows + (best // kw) * self.dilations[0], columns + (best % kw) * self.dilations[1]

    def _offsets(self, wp: int, out: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
        """Flat canvas offset of each kernel entry, and of each window's origin (made once per geometry)."""
        key = (wp, out, device)
        cache = self.__dict__.setdefault("_offset_cache", {})
        if key not in cache:
            kh, kw = self.kernel
            kernel_offset = (
                torch.arange(kh, device=device).reshape(-1, 1) * (self.dilations[0] * wp)
                + torch.arange(kw, device=device) * self.dilations[1]
            ).reshape(-1)
            origin = (
                torch.arange(out[0], device=device).reshape(-1, 1) * (self.strides[0] * wp)
                + torch.arange(out[1], device=device) * self.strides[1]
            )
            cache[key] = (kernel_offset, origin)
        return cache[key]

    def backward(self, grad_output: Tensor, grad_indices: Any = None) -> Tensor:
        """dL/dx from dL/dy; with ``return_indices``, the indices' gradient is None (or left out, as
        for every output after the first that does not reach the loss): integers have no gradient."""
        if grad_indices is not None:
            raise check.fail(
                self,
                f"got a gradient for the indices ({type(grad_indices).__name__}): they are integers, with no "
                "gradient; pass None for them, or dL/dy alone",
            )
        saved, g = self._check_grad(grad_output)
        n, c, hp, wp = saved["canvas_size"]
        out = saved["out"]
        # Flat canvas index of each maximum: window origin + the offset of its kernel entry.
        kernel_offset, origin = self._offsets(wp, out, g.device)
        best = saved["best"]
        # index_select on the small table: 4 times faster than indexing it with a tensor on the CPU.
        flat = kernel_offset.index_select(0, best.reshape(-1)).view(best.shape).add_(origin)
        canvas = g.new_zeros(n * c, hp * wp)
        positions = out[0] * out[1]  # explicit, not -1: n * c may be 0
        canvas.scatter_add_(1, flat.reshape(n * c, positions), g.reshape(n * c, positions))
        grad = sliding.crop(canvas.reshape(n, c, hp, wp), saved["pads"], saved["size"])
        return grad.squeeze(0) if saved["unbatched"] else grad

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(_Pool2d):
    r"""Mean over each window.

    y[n, c, p] = (1 / D_p) sum_k x_pad[n, c, s p + k];   dL/dx_pad[n, c, s p + k] += g[n, c, p] / D_p   (then cropped)
    with the divisor D_p = ``divisor_override``, or the number of window positions inside the padded
    input (``count_include_pad=True``, torch's default) or inside the input itself (``False``);
    positions that ceil mode adds beyond the padding never count.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step; ``kernel_size`` by default.
        padding: zeros added on both sides, at most half the kernel size (as torch).
        ceil_mode: round the output size up, as torch.
        count_include_pad: count padded zeros in the divisor.
        divisor_override: a fixed divisor (a positive int).

    Shape: input (N, C, H, W) or (C, H, W); output (N, C, H_out, W_out) with
    H_out = floor((H + 2 padding - kernel) / stride) + 1 (ceil in ceil mode).
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self._geometry(kernel_size, stride, padding, 1)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None:
            divisor_override = check.positive_int(self, divisor_override, "divisor_override")
        self.divisor_override = divisor_override

    def _divisor(self, x4: Tensor, canvas: Tensor, out: tuple[int, int]) -> Tensor | float:
        if self.divisor_override is not None:
            return float(self.divisor_override)
        key = (tuple(x4.shape[2:]), tuple(canvas.shape[2:]), out, x4.dtype, x4.device)
        cache = self.__dict__.setdefault("_divisor_cache", {})
        if key not in cache:
            cache[key] = self._counts(x4, canvas, out)
        return cache[key]

    def _counts(self, x4: Tensor, canvas: Tensor, out: tuple[int, int]) -> Tensor:
        counts = []
        for dim in range(2):
            n, p, k, s = x4.shape[2 + dim], self.pads[dim], self.kernel[dim], self.strides[dim]
            inside = torch.zeros(canvas.shape[2 + dim], dtype=x4.dtype, device=x4.device)
            if self.count_include_pad:
                inside[: n + 2 * p] = 1
            else:
                inside[p : p + n] = 1
            counts.append(inside.unfold(0, k, s)[: out[dim]].sum(-1))
        # A window may hold no counted position only without count_include_pad; torch gives 0 there.
        return (counts[0].reshape(-1, 1) * counts[1]).clamp(min=1)

    def forward(self, x: Tensor) -> Tensor:
        x4, canvas, out, pads = self._prepare(x, 0.0)
        sums = sliding.window_sum(canvas, out, self.kernel, self.strides, (1, 1))
        divisor = self._divisor(x4, canvas, out)
        y = sums / divisor
        unbatched = x.dim() == 3
        y = y.squeeze(0) if unbatched else y
        self._save_for_backward(
            divisor=divisor,
            canvas_size=tuple(canvas.shape[2:]),
            pads=pads,
            size=x4.shape[2:],
            like=y,
            unbatched=unbatched,
        )
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved, g = self._check_grad(grad_output)
        n, c, ho, wo = g.shape
        per_element = (g / saved["divisor"])[:, :, None, None].expand(n, c, *self.kernel, ho, wo)
        canvas = sliding.scatter_windows(per_element, saved["canvas_size"], self.strides, (1, 1))
        grad = sliding.crop(canvas, saved["pads"], saved["size"])
        return grad.squeeze(0) if saved["unbatched"] else grad

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


_LINEAR_MODES = {"linear": 3, "bilinear": 4, "trilinear": 5}
# Modes applied as one (out, in) matrix per spatial dimension: bicubic (4-D input only) and area.
_MATRIX_MODES = ("bicubic", "area")
_MODES = ("nearest", "nearest-exact", *_LINEAR_MODES, *_MATRIX_MODES)
_CUBIC_A = -0.75  # torch's (and Keys') cubic convolution parameter


def _cubic_near(t: Tensor) -> Tensor:
    """Keys' cubic convolution kernel for |t| <= 1: ((A + 2) t - (A + 3)) t^2 + 1."""
    return ((_CUBIC_A + 2) * t - (_CUBIC_A + 3)) * t * t + 1


def _cubic_far(t: Tensor) -> Tensor:
    """Keys' cubic convolution kernel for 1 < |t| < 2: ((A t - 5 A) t + 8 A) t - 4 A."""
    return ((_CUBIC_A * t - 5 * _CUBIC_A) * t + 8 * _CUBIC_A) * t - 4 * _CUBIC_A


def _block_factors(geometry: list[tuple[int, int, float | None]]) -> list[int] | None:
    """Per spatial dimension the factor s when nearest neighbours repeat each entry s times
    (src(p) = p // s), else None: when out = s n with s a power of two and the scale exactly 1/s,
    torch's float32 floor((p [+ 0.5]) / s) is exact, so both nearest modes reduce to blocks."""
    factors = []
    for n, out, ratio in geometry:
        s, rest = divmod(out, n)
        if rest or s & (s - 1) or (n / out if ratio is None else ratio) != 1 / s:
            return None
        factors.append(s)
    return factors


def _repeat_blocks(x: Tensor, factors: list[int], workspace: Callable[[str, tuple[int, ...]], Tensor]) -> Tensor:
    """Each entry repeated s times along its spatial dimension: one broadcast copy per dimension,
    the last first (the copies that follow move contiguous rows). 2-3 times faster than a gather.
    The intermediate results go into ``workspace(name, shape)`` buffers, reused from call to call."""
    stages = [dim for dim in reversed(range(len(factors))) if factors[dim] > 1]
    y = x
    for number, dim in enumerate(stages):
        s, d, shape = factors[dim], 2 + dim, list(y.shape)
        expanded = y.unsqueeze(d + 1).expand(*shape[: d + 1], s, *shape[d + 1 :])
        result = [*shape[:d], shape[d] * s, *shape[d + 1 :]]
        # The output is a fresh tensor; the stages before it go into reused buffers. (Not a reshape
        # of the expanded view: where the dimension before is of size 1, that reshape is itself a
        # view, and the output would alias a reused buffer or x.)
        last = number == len(stages) - 1
        y = y.new_empty(result) if last else workspace(f"repeat{dim}", tuple(result))
        y.view(expanded.shape).copy_(expanded)
    return x.clone() if y is x else y  # a fresh output even when every factor is 1


def _sum_blocks(g: Tensor, factors: list[int], workspace: Callable[[str, tuple[int, ...]], Tensor]) -> Tensor:
    """Adjoint of :func:`_repeat_blocks`: each block of s entries summed, by s - 1 additions of strided
    views per dimension, the first dimension first (its views are whole contiguous rows); the
    intermediate sums in ``workspace(name, shape)`` buffers."""
    view = list(g.shape[:2])
    for size, s in zip(g.shape[2:], factors):
        view += [size // s, s]
    t = g.reshape(view)
    last = max((i for i, s in enumerate(factors) if s > 1), default=-1)
    for i, s in enumerate(factors):
        d = 3 + i  # s_i's dimension once the i before it are summed away
        if s == 1:
            t = t.squeeze(d)
            continue
        first = t.select(d, 0)
        out = None if i == last else workspace(f"sum{i}", tuple(first.shape))
        total = torch.add(first, t.select(d, 1), out=out)
        for j in range(2, s):
            total.add_(t.select(d, j))
        t = total
    return t.clone() if last < 0 else t  # a fresh gradient even when every factor is 1


class Upsample(Module):
    r"""Upsampling (or downsampling) of the spatial dimensions by nearest neighbours, (multi-)linear or bicubic
    interpolation, or area averaging.

    Per spatial dimension i, with r_i = 1 / scale_factor_i (or size_i / out_i when ``size`` is given):
      nearest:        y[p] = x[src(p)],  src(p)_i = min(floor(p_i r_i), size_i - 1)   (float32, as torch)
      nearest-exact:  src(p)_i = min(floor((p_i + 0.5) r_i), size_i - 1)
      dL/dx[q] = sum_{p: src(p) = q} g[p]   (for an integer scale: the sum over each block).
      linear modes:   each dimension in turn (the last first), y[p] = (1 - l) x[i0(p)] + l x[i1(p)] with
                      s = p r' (align_corners, r' = (size - 1) / (out - 1)) or max((p + 0.5) r - 0.5, 0),
                      i0 = floor(s), i1 = min(i0 + 1, size - 1), l = s - i0;
                      dL/dx[i0] += (1 - l) g,  dL/dx[i1] += l g   (the transposed interpolation).
      bicubic:        y = x multiplied along each dimension by M (out x size), dL/dx = g multiplied by M^T,
                      M[p, clamp(i + k - 1)] += K(l + 1 - k) for k = 0..3 (taps clamped to [0, size - 1], so the
                      border repeats), s as above but not clamped at 0, i = min(floor(s), size - 1),
                      l = clamp(s - i, 0, 1), K Keys' cubic convolution kernel with A = -0.75, as torch.
      area:           torch's adaptive average pooling: M[p, q] = 1 / (e_p - b_p) for b_p <= q < e_p,
                      b_p = floor(p size / out), e_p = ceil((p + 1) size / out).

    Args:
        size: output spatial size (an int or one per dimension); or
        scale_factor: output size = floor(input size * scale_factor), one number or one per dimension.
        mode: ``'nearest'``, ``'nearest-exact'``, ``'linear'`` (3-D input), ``'bilinear'`` (4-D),
            ``'bicubic'`` (4-D), ``'trilinear'`` (5-D) or ``'area'``.
        align_corners: linear modes and bicubic only: map the corner pixels' centres onto each other
            (``None`` = False).
        recompute_scale_factor: ``True`` takes r_i = size_i / out_i instead of 1 / scale_factor_i, as torch.

    Shape: input (N, C, L), (N, C, H, W) or (N, C, D, H, W); output (N, C, *out).
    """

    def __init__(
        self,
        size: int | tuple[int, ...] | None = None,
        scale_factor: float | tuple[float, ...] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise check.fail(
                self, f"expected exactly one of size and scale_factor, got size={size!r}, scale_factor={scale_factor!r}"
            )
        self.mode = check.choice(self, mode, "mode", _MODES)
        if align_corners is not None and mode not in (*_LINEAR_MODES, "bicubic"):
            raise check.fail(self, f"expected align_corners=None with mode {mode!r} (as torch), got {align_corners!r}")
        if size is not None and recompute_scale_factor:
            raise check.fail(self, "recompute_scale_factor is not meaningful with an explicit size (as torch)")
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self.size = self._sizes(size) if size is not None else None
        self.scale_factor = self._scales(scale_factor) if scale_factor is not None else None

    def _sizes(self, size: Any) -> int | tuple[int, ...]:
        values = size if isinstance(size, (tuple, list)) else [size]
        for v in values:
            check.positive_int(self, v, "size")
        return tuple(values) if isinstance(size, (tuple, list)) else size

    def _scales(self, scale: Any) -> float | tuple[float, ...]:
        values = scale if isinstance(scale, (tuple, list)) else [scale]
        floats = [check.number(self, v, "scale_factor", 0.0, low_open=True) for v in values]
        return tuple(floats) if isinstance(scale, (tuple, list)) else floats[0]

    def _per_dim(self, value: Any, spatial: int, name: str, x: Tensor) -> list[Any]:
        if not isinstance(value, tuple):
            return [value] * spatial
        if len(value) != spatial:
            raise check.fail(
                self, f"expected {name} with {spatial} entries for input shape {tuple(x.shape)}, got {value!r}"
            )
        return list(value)

    def _geometry(self, x: Tensor) -> list[tuple[int, int, float | None]]:
        """(input size, output size, 1/scale_factor or None) per spatial dimension."""
        spatial = x.dim() - 2
        sizes_in = list(x.shape[2:])
        if self.size is not None:
            sizes_out = self._per_dim(self.size, spatial, "size", x)
            ratios: list[float | None] = [None] * spatial
        else:
            scales = self._per_dim(self.scale_factor, spatial, "scale_factor", x)
            sizes_out = [math.floor(n * s) for n, s in zip(sizes_in, scales)]
            ratios = [1.0 / s if self.recompute_scale_factor is not True else None for s in scales]
        if min(sizes_out) < 1:
            raise check.fail(
                self, f"expected a positive output size, got {tuple(sizes_out)} for input shape {tuple(x.shape)}"
            )
        return list(zip(sizes_in, sizes_out, ratios))

    def _nearest(self, n: int, out: int, ratio: float | None, device: torch.device) -> Tensor:
        # The indices depend on the geometry only: made once per geometry and device, on that device.
        key = (n, out, ratio, device)
        cache = self.__dict__.setdefault("_index_cache", {})
        if key not in cache:
            # float32 arithmetic, as torch's nearest kernels, so indices agree at block boundaries
            # (the Python number is rounded to float32 by the product, as torch rounds its scale).
            position = torch.arange(out, dtype=torch.float32, device=device)
            if self.mode == "nearest-exact":
                position = position + 0.5
            r = n / out if ratio is None else ratio
            cache[key] = torch.floor(position * r).to(torch.long).clamp(max=n - 1)
        return cache[key]

    def _linear(self, n: int, out: int, ratio: float | None, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Two taps per output index and the weight of the second, in the input's precision (as torch)."""
        position = torch.arange(out, dtype=x.dtype, device=x.device)
        if self.align_corners:
            source = position * ((n - 1) / (out - 1) if out > 1 else 0.0)
        else:
            r = n / out if ratio is None else ratio
            source = ((position + 0.5) * r - 0.5).clamp(min=0)
        first = source.floor().to(torch.long).clamp(max=n - 1)
        second = (first + 1).clamp(max=n - 1)
        weight = (source - first.to(x.dtype)).clamp(0, 1)
        return first, second, weight

    def _matrix(self, n: int, out: int, ratio: float | None, x: Tensor) -> Tensor:
        """The (out, n) matrix of a bicubic or area resampling along one dimension, in x's dtype.

        Its entries are computed in float64 and rounded once: a bicubic entry sums up to four
        cubic coefficients (the taps clamped at a border share it), and in float32 each would
        carry its own rounding (a 1 x 1 input's four coefficients sum to 1 - 5e-7, squared over the
        two dimensions)."""
        rows = torch.arange(out, device=x.device)
        if self.mode == "area":
            begin, end = (rows * n) // out, ((rows + 1) * n + out - 1) // out
            columns = torch.arange(n, device=x.device)
            inside = (columns >= begin.unsqueeze(1)) & (columns < end.unsqueeze(1))
            return (inside.to(torch.float64) / (end - begin).to(torch.float64).unsqueeze(1)).to(x.dtype)
        position = rows.to(torch.float64)
        if self.align_corners:
            source = position * ((n - 1) / (out - 1) if out > 1 else 0.0)
        else:
            source = (position + 0.5) * (n / out if ratio is None else ratio) - 0.5
        index = source.floor().to(torch.long).clamp(max=n - 1)
        t = (source - index.to(torch.float64)).clamp(0, 1)
        coefficients = (_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t))
        matrix = x.new_zeros(out, n, dtype=torch.float64)
        for k, coefficient in enumerate(coefficients):
            matrix.index_put_((rows, (index + k - 1).clamp(0, n - 1)), coefficient, accumulate=True)
        return matrix.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode in _LINEAR_MODES:
            x = self._check_input(x, (_LINEAR_MODES[self.mode],))
        elif self.mode == "bicubic":
            x = self._check_input(x, (4,))
        else:
            x = self._check_input(x, (3, 4, 5))
        geometry = self._geometry(x)
        if self.mode in _MATRIX_MODES:
            matrices = [self._matrix(n, out, ratio, x) for n, out, ratio in geometry]
            y = x
            for dim in reversed(range(len(matrices))):
                y = torch.matmul(y.movedim(2 + dim, -1), matrices[dim].T).movedim(-1, 2 + dim)
            self._save_for_backward(taps=None, sources=None, matrices=matrices, shape=x.shape, like=y)
            return y
        if self.mode in _LINEAR_MODES:
            taps = [self._linear(n, out, ratio, x) for n, out, ratio in geometry]
            y = x
            for dim in reversed(range(len(taps))):
                first, second, weight = taps[dim]
                weight = weight.reshape([-1] + [1] * (len(taps) - 1 - dim))
                y = torch.lerp(y.index_select(2 + dim, first), y.index_select(2 + dim, second), weight)
            self._save_for_backward(taps=taps, sources=None, shape=x.shape, like=y)
            return y
        factors = _block_factors(geometry)
        if factors is not None:
            y = _repeat_blocks(x, factors, lambda name, shape: self._workspace(name, shape, x))
            self._save_for_backward(taps=None, sources=None, factors=factors, shape=x.shape, like=y)
            return y
        sources = [self._nearest(n, out, ratio, x.device) for n, out, ratio in geometry]
        # One gather: the per-dimension indices broadcast against each other (an outer product).
        spatial = len(sources)
        grid = [index.reshape([-1] + [1] * (spatial - 1 - dim)) for dim, index in enumerate(sources)]
        y = x[(slice(None), slice(None), *grid)]
        self._save_for_backward(taps=None, sources=sources, shape=x.shape, like=y)
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        g = self._check_grad_output(grad_output, saved["like"])
        shape = saved["shape"]
        if saved.get("matrices") is not None:
            for dim, matrix in enumerate(saved["matrices"]):
                g = torch.matmul(g.movedim(2 + dim, -1), matrix).movedim(-1, 2 + dim)
            return g
        if saved["taps"] is not None:
            taps = saved["taps"]
            for dim in range(len(taps)):
                first, second, weight = taps[dim]
                weight = weight.reshape([-1] + [1] * (len(taps) - 1 - dim))
                target = list(g.shape)
                target[2 + dim] = shape[2 + dim]
                g = (
                    g.new_zeros(target)
                    .index_add_(2 + dim, first, g * (1 - weight))
                    .index_add_(2 + dim, second, g * weight)
                )
            return g
        if saved.get("factors") is not None:
            return _sum_blocks(g, saved["factors"], lambda name, shape: self._workspace(name, shape, g))
        for dim in reversed(range(len(saved["sources"]))):
            target = list(g.shape)
            target[2 + dim] = shape[2 + dim]
            g = g.new_zeros(target).index_add_(2 + dim, saved["sources"][dim], g)
        return g

    def extra_repr(self) -> str:
        what = f"scale_factor={self.scale_factor}" if self.scale_factor is not None else f"size={self.size}"
        corners = f", align_corners={self.align_corners}" if self.align_corners is not None else ""
        return f"{what}, mode={self.mode!r}{corners}"
