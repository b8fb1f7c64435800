"""Recurrent networks: LSTM and GRU, with backpropagation through time written out.

Both run each layer and direction as one matrix product for the input-to-hidden part of every
time step, then a loop over time for the hidden-to-hidden part. Backward walks the same loop in
reverse, carrying dL/dh (and dL/dc) from step t to step t - 1, and forms the weight gradients
as single products over all time steps at the end.

Outputs and gradients: ``forward(input, hx=None)`` returns ``(output, h_n)`` (GRU) or
``(output, (h_n, c_n))`` (LSTM) like torch; ``backward(grad_output, grad_hidden=None)`` takes one
gradient per output, ``grad_hidden`` shaped like the second output (``None`` parts: no gradient).
It returns dL/dinput, or ``(dL/dinput, dL/dhx)`` (dL/dhx shaped like ``hx``) when ``hx`` was given.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from . import _checks as check
from . import _threads
from . import init as initializers
from .dropout import generator_on, keep_mask
from .module import Module


class _RNNBase(Module):
    """Layers, directions, parameters, layouts and dropout; subclasses give the cell."""

    abstract = True
    gates: ClassVar[int] = 1
    has_cell: ClassVar[bool] = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = check.positive_int(self, input_size, "input_size")
        self.hidden_size = check.positive_int(self, hidden_size, "hidden_size")
        self.num_layers = check.positive_int(self, num_layers, "num_layers")
        for flag, value in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise check.ModuleTypeError(f"{name}: expected {flag} to be a bool, got {type(value).__name__}")
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = check.number(self, dropout, "dropout", 0.0, 1.0)
        if self.dropout > 0 and num_layers == 1:
            check.warn(
                f"{name}: dropout is applied between layers, so dropout={dropout} with num_layers=1 does nothing"
            )
        self.bidirectional = bool(bidirectional)
        self.proj_size = check.non_negative_int(self, proj_size, "proj_size")
        if proj_size and not self.has_cell:
            raise check.fail(self, f"proj_size is only supported for LSTM, got proj_size={proj_size}")
        if proj_size >= hidden_size:
            raise check.fail(self, f"expected proj_size < hidden_size ({hidden_size}), got {proj_size}")
        # The size of h (the output and the recurrent input): the projection's when there is one.
        self.state_size = proj_size or hidden_size
        self.num_directions = 2 if bidirectional else 1
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self.generator = generator
        dtype = dtype or torch.get_default_dtype()
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise check.ModuleTypeError(f"{name}: expected a floating-point dtype, got {dtype!r}")
        bound = 1.0 / math.sqrt(hidden_size)
        rows = self.gates * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else self.state_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = self._suffix(layer, direction)
                shapes = {"weight_ih": (rows, width), "weight_hh": (rows, self.state_size)}
                if bias:
                    shapes.update({"bias_ih": (rows,), "bias_hh": (rows,)})
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for kind, shape in shapes.items():
                    value = torch.empty(shape, device=device, dtype=dtype)
                    self.register_parameter(kind + suffix, initializers.uniform_(value, -bound, bound, generator))

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _projection(self, layer: int, direction: int) -> Tensor | None:
        return getattr(self, "weight_hr" + self._suffix(layer, direction)) if self.proj_size else None

    def _weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        s = self._suffix(layer, direction)
        if not self.bias:
            return getattr(self, "weight_ih" + s), getattr(self, "weight_hh" + s), None, None
        return (
            getattr(self, "weight_ih" + s),
            getattr(self, "weight_hh" + s),
            getattr(self, "bias_ih" + s),
            getattr(self, "bias_hh" + s),
        )

    # -- inputs --------------------------------------------------------------------------------------
    def _check_state(self, state: Any, name: str, expected: tuple[int, ...], like: Tensor) -> Tensor:
        state = check.floating(self, state, name)
        check.same_shape(self, state, expected, name)
        check.like(self, state, like, name, "parameters")
        return state

    def _initial_state(self, hx: Any, x: Tensor, batched: bool) -> tuple[Tensor, Tensor | None]:
        """(h0, c0) as (layers * directions, N, H) (h0's last size proj_size with a projection);
        zeros where hx is None."""
        n = x.shape[1]
        shape = (self.num_layers * self.num_directions, n, self.state_size)
        cell_shape = (*shape[:2], self.hidden_size)
        given = shape if batched else (shape[0], shape[2])
        given_cell = cell_shape if batched else (cell_shape[0], cell_shape[2])
        if hx is None:
            return x.new_zeros(shape), (x.new_zeros(cell_shape) if self.has_cell else None)
        if self.has_cell:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise check.ModuleTypeError(
                    f"{type(self).__name__}: expected hx to be a pair (h_0, c_0) of tensors, got {type(hx).__name__}"
                )
            h0 = self._check_state(hx[0], "h_0", given, x)
            c0 = self._check_state(hx[1], "c_0", given_cell, x)
        else:
            h0, c0 = self._check_state(hx, "hx", given, x), None
        if not batched:
            h0 = h0.unsqueeze(1)
            c0 = None if c0 is None else c0.unsqueeze(1)
        return h0, c0

    # -- forward ---------------------------------------------------------------------------------------
    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        x = self._check_input(input, (2, 3))
        check.size(self, x, -1, self.input_size, "input_size")
        batched = x.dim() == 3
        # Internally time-major (L, N, features).
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        h0, c0 = self._initial_state(hx, x, batched)
        layer_input = x
        caches, masks, h_n, c_n = [], [], [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                out, h_last, c_last, cache = self._run(
                    layer_input, h0[k], None if c0 is None else c0[k], layer, direction
                )
                outputs.append(out)
                caches.append(cache)
                h_n.append(h_last)
                c_n.append(c_last)
            layer_output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, -1)
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._dropout_mask(layer_output)
                layer_output = layer_output * mask
            masks.append(mask)
            layer_input = layer_output
        output = layer_input
        h_n, c_n = torch.stack(h_n), (torch.stack(c_n) if self.has_cell else None)
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        self._save_for_backward(
            caches=caches, masks=masks, batched=batched, given_hx=hx is not None, like=output, h_n=h_n, c_n=c_n
        )
        return output, ((h_n, c_n) if self.has_cell else h_n)

    def _dropout_mask(self, like: Tensor) -> Tensor:
        """0 or 1/(1-p) per element, drawn on ``like``'s device from ``generator`` (as ``Dropout``:
        a generator on another device is replaced by one there with the same seed)."""
        if self.dropout >= 1.0:
            return like.new_zeros(like.shape)
        self.generator = generator_on(self.generator, like.device)
        return keep_mask(like.shape, self.dropout, self.generator).to(like.dtype).div_(1.0 - self.dropout)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Module:
        super().to(device=device, dtype=dtype)
        if device is not None:
            self.generator = generator_on(self.generator, device)
        return self

    def _run(
        self, x: Tensor, h: Tensor, c: Tensor | None, layer: int, direction: int
    ) -> tuple[Tensor, Tensor, Tensor | None, dict[str, Any]]:
        """One layer in one direction over the whole sequence x (L, N, in)."""
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        projected = x @ w_ih.T  # every time step's input-to-hidden part at once
        if b_ih is not None:
            projected = projected + self._input_bias(b_ih, b_hh)
        w_hh_t = w_hh.T
        w_hr = self._projection(layer, direction)
        w_hr_t = None if w_hr is None else w_hr.T
        steps = range(x.shape[0] - 1, -1, -1) if direction else range(x.shape[0])
        outputs: list[Tensor] = [x.new_empty(0)] * x.shape[0]
        step_caches = []
        threads = _threads.serial(h.numel() * w_hh.shape[0], h)  # one step's product, small or not
        try:
            for t in steps:
                h_prev, c_prev = h, c
                h, c, step_cache = self._cell(projected[t], h_prev, c_prev, w_hh_t, b_hh)
                if w_hr_t is not None:  # LSTM's projection: h = W_hr (o * tanh(c))
                    step_cache["h_full"] = h
                    h = h @ w_hr_t
                step_caches.append(step_cache)
                outputs[t] = h
        finally:
            _threads.restore(threads)
        cache = {"x": x, "steps": step_caches, "layer": layer, "direction": direction}
        return torch.stack(outputs), h, c, cache

    def _input_bias(self, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        """The bias added to the input-to-hidden part once for all time steps."""
        return b_ih

    def _cell(
        self, projected: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor | None
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """One time step from its input-to-hidden pre-activations and the previous state."""
        raise NotImplementedError

    # -- backward --------------------------------------------------------------------------------------
    def backward(self, grad_output: Tensor, grad_hidden: Any = None) -> Any:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        batched = saved["batched"]
        grad_h_n, grad_c_n = self._hidden_gradients(grad_hidden, saved)
        if not batched:
            grad_output = grad_output.unsqueeze(1)
            grad_h_n = None if grad_h_n is None else grad_h_n.unsqueeze(1)
            grad_c_n = None if grad_c_n is None else grad_c_n.unsqueeze(1)
        elif self.batch_first:
            grad_output = grad_output.transpose(0, 1)
        d, h = self.num_directions, self.state_size
        caches, masks = saved["caches"], saved["masks"]
        grad_h0, grad_c0 = [None] * len(caches), [None] * len(caches)
        grad_layer_output = grad_output
        for layer in reversed(range(self.num_layers)):
            if masks[layer] is not None:
                grad_layer_output = grad_layer_output * masks[layer]
            grad_input = None
            for direction in range(d):
                k = layer * d + direction
                g_out = grad_layer_output[..., direction * h : (direction + 1) * h]
                g_h = None if grad_h_n is None else grad_h_n[k]
                g_c = None if grad_c_n is None else grad_c_n[k]
                g_x, grad_h0[k], grad_c0[k] = self._run_backward(caches[k], g_out, g_h, g_c)
                grad_input = g_x if grad_input is None else grad_input + g_x
            grad_layer_output = grad_input
        grad_x = grad_layer_output
        if not batched:
            grad_x = grad_x.squeeze(1)
        elif self.batch_first:
            grad_x = grad_x.transpose(0, 1)
        if not saved["given_hx"]:
            return grad_x
        grad_h0 = torch.stack(grad_h0)
        grad_c0 = torch.stack(grad_c0) if self.has_cell else None
        if not batched:
            grad_h0 = grad_h0.squeeze(1)
            grad_c0 = None if grad_c0 is None else grad_c0.squeeze(1)
        return grad_x, ((grad_h0, grad_c0) if self.has_cell else grad_h0)

    def _hidden_gradients(self, grad_hidden: Any, saved: dict[str, Any]) -> tuple[Tensor | None, Tensor | None]:
        if grad_hidden is None:
            return None, None
        if not self.has_cell:
            return self._check_grad_output(grad_hidden, saved["h_n"], "grad_hidden (h_n's gradient)"), None
        if not isinstance(grad_hidden, (tuple, list)) or len(grad_hidden) != 2:
            raise check.ModuleTypeError(
                f"{type(self).__name__}: expected grad_hidden to be a pair (dL/dh_n, dL/dc_n) (None for either), "
                f"got {type(grad_hidden).__name__}"
            )
        grad_h, grad_c = grad_hidden
        grad_h = None if grad_h is None else self._check_grad_output(grad_h, saved["h_n"], "grad_hidden[0] (h_n's)")
        grad_c = None if grad_c is None else self._check_grad_output(grad_c, saved["c_n"], "grad_hidden[1] (c_n's)")
        return grad_h, grad_c

    def _run_backward(
        self, cache: dict[str, Any], grad_out: Tensor, grad_h: Tensor | None, grad_c: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Through time for one layer and direction: (dL/dx, dL/dh0, dL/dc0); adds the weight gradients."""
        layer, direction, x = cache["layer"], cache["direction"], cache["x"]
        w_ih, w_hh, b_ih, _ = self._weights(layer, direction)
        steps = cache["steps"]
        length = x.shape[0]
        order = list(range(length - 1, -1, -1)) if direction else list(range(length))
        dh = grad_out.new_zeros(grad_out.shape[1:]) if grad_h is None else grad_h
        dc = None
        if self.has_cell:
            dc = grad_out.new_zeros((*grad_out.shape[1:-1], self.hidden_size)) if grad_c is None else grad_c
        w_hr = self._projection(layer, direction)
        grad_ih: list[Tensor] = [grad_out.new_empty(0)] * length
        grad_hh: list[Tensor] = [grad_out.new_empty(0)] * length
        previous: list[Tensor] = [grad_out.new_empty(0)] * length
        grad_projected: list[Tensor] = [grad_out.new_empty(0)] * length
        # Reverse processing order: step i handled time order[i], after step i + 1 sent its dh back.
        threads = _threads.serial(dh.numel() * w_hh.shape[0], dh)
        try:
            for i in range(length - 1, -1, -1):
                t = order[i]
                dh = dh + grad_out[t]
                if w_hr is not None:  # h = W_hr h_full: dL/dW_hr += dh^T h_full, dL/dh_full = dh W_hr
                    grad_projected[t] = dh
                    dh = dh @ w_hr
                grad_ih[t], grad_hh[t], dh, dc = self._step_backward(steps[i], dh, dc, w_hh)
                previous[t] = steps[i]["h_prev"]
        finally:
            _threads.restore(threads)
        g_ih = torch.stack(grad_ih).reshape(-1, w_ih.shape[0])
        g_hh = torch.stack(grad_hh).reshape(-1, w_hh.shape[0])
        s = self._suffix(layer, direction)
        self.grad("weight_ih" + s).add_(g_ih.T @ x.reshape(-1, x.shape[-1]))
        self.grad("weight_hh" + s).add_(g_hh.T @ torch.stack(previous).reshape(-1, self.state_size))
        if w_hr is not None:
            full = torch.stack([steps[i]["h_full"] for i in range(length)])  # processing order
            projected = torch.stack([grad_projected[t] for t in order])
            self.grad("weight_hr" + s).add_(
                projected.reshape(-1, self.proj_size).T @ full.reshape(-1, self.hidden_size)
            )
        if b_ih is not None:
            self.grad("bias_ih" + s).add_(g_ih.sum(0))
            self.grad("bias_hh" + s).add_(g_hh.sum(0))
        grad_x = (g_ih @ w_ih).reshape(*x.shape[:-1], w_ih.shape[1])
        return grad_x, dh, dc

    def _step_backward(
        self, step: dict[str, Tensor], dh: Tensor, dc: Tensor | None, w_hh: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """One time step: (dL/d(input-to-hidden pre-activations), dL/d(hidden-to-hidden ones),
        dL/dh_prev, dL/dc_prev) from dL/dh and dL/dc of the step's outputs."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout:g}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


class LSTM(_RNNBase):
    r"""Long short-term memory, torch's gate order (i, f, g, o) in the weight rows.

        [i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, then sigma, sigma, tanh, sigma
        c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
    Backward of one step, given dh = dL/dh_t (from the output at t and from step t + 1) and
    dc = dL/dc_t (from step t + 1):
        dc += dh * o * (1 - tanh(c_t)^2);   do = dh * tanh(c_t);   di = dc * g;   dg = dc * i;
        df = dc * c_{t-1};   dL/dc_{t-1} = dc * f;   dL/dh_{t-1} = dA W_hh
    with dA = [di i (1 - i), df f (1 - f), dg (1 - g^2), do o (1 - o)] the pre-activation gradient;
    dL/dW_ih += sum_t dA_t^T x_t, dL/dW_hh += sum_t dA_t^T h_{t-1}, both biases += sum_t dA_t.

    Args:
        input_size, hidden_size: feature sizes of x and h.
        num_layers: stacked layers (each layer's input is the previous layer's output).
        bias: learn ``bias_ih_l*`` and ``bias_hh_l*``.
        batch_first: input and output (N, L, features) instead of (L, N, features).
        dropout: dropout on every layer's output but the last, in training mode (masks drawn on the
            input's device from ``generator``, as Dropout's).
        bidirectional: a second direction over the reversed sequence (``*_reverse`` parameters);
            outputs concatenated, forward direction first.
        proj_size: LSTM only, below hidden_size: h_t = W_hr (o * tanh(c_t)) of that size (``weight_hr_l{k}``,
            (proj_size, H)); 0 for none.

    Shape: input (L, N, H_in) ((N, L, H_in) with batch_first, (L, H_in) unbatched); h_0, c_0
    (D * num_layers, N, H) ((D * num_layers, H) unbatched); output (L, N, D * H); h_n, c_n like h_0.
    Attributes: ``weight_ih_l{k}`` (4H, H_in or D H), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,), and ``..._reverse`` for the second direction; U(-1/sqrt(H), 1/sqrt(H)).
    """

    gates = 4
    has_cell = True

    def _input_bias(self, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        return b_ih + b_hh  # both biases are plain sums in every gate: added once, outside the loop

    def _cell(
        self, projected: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor | None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pre = torch.addmm(projected, h, w_hh_t)
        # One sigmoid over all four gates (g's is discarded): fewer calls in the time loop.
        i, f, _, o = pre.sigmoid().chunk(4, -1)
        size = c.shape[-1]  # the hidden size (h's is proj_size with a projection)
        g = pre[..., 2 * size : 3 * size].tanh()
        c_new = torch.addcmul(f * c, i, g)
        tanh_c = c_new.tanh()
        return o * tanh_c, c_new, {"i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c, "c_prev": c, "h_prev": h}

    def _step_backward(
        self, step: dict[str, Tensor], dh: Tensor, dc: Tensor | None, w_hh: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        i, f, g, o, tanh_c = step["i"], step["f"], step["g"], step["o"], step["tanh_c"]
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        d_pre = torch.cat(
            [dc * g * i * (1 - i), dc * step["c_prev"] * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
            -1,
        )
        return d_pre, d_pre, d_pre @ w_hh, dc * f


class GRU(_RNNBase):
    r"""Gated recurrent unit, torch's gate order (r, z, n) and formula (r applied after W_hn).

        r = sigma(W_ir x + b_ir + W_hr h + b_hr);   z = sigma(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));   h_t = (1 - z) * n + z * h_{t-1}
    Backward of one step, given dh = dL/dh_t, with a_n = W_hn h + b_hn:
        dn = dh (1 - z) (1 - n^2);   dz = dh (h_{t-1} - n) z (1 - z);   dr = dn a_n r (1 - r)
        input-to-hidden pre-activation gradient  [dr, dz, dn];
        hidden-to-hidden one                     [dr, dz, dn * r]   (r multiplies W_hn h + b_hn)
        dL/dh_{t-1} = dh z + [dr, dz, dn r] W_hh
    Weight and bias gradients sum over time as in :class:`LSTM`.

    Args, Shape and Attributes as :class:`LSTM` with 3H gate rows and no cell state
    (``hx`` is h_0 alone, the second output h_n alone).
    """

    gates = 3

    def _cell(
        self, projected: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor | None
    ) -> tuple[Tensor, None, dict[str, Tensor]]:
        hidden = h @ w_hh_t if b_hh is None else torch.addmm(b_hh, h, w_hh_t)
        size = h.shape[-1]
        r, z = (projected[..., : 2 * size] + hidden[..., : 2 * size]).sigmoid().chunk(2, -1)
        h_n = hidden[..., 2 * size :]
        n = torch.addcmul(projected[..., 2 * size :], r, h_n).tanh()
        h_new = torch.addcmul(n, z, h - n)
        return h_new, None, {"r": r, "z": z, "n": n, "hidden_n": h_n, "h_prev": h}

    def _step_backward(
        self, step: dict[str, Tensor], dh: Tensor, dc: Tensor | None, w_hh: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, None]:
        r, z, n, h_prev = step["r"], step["z"], step["n"], step["h_prev"]
        dn = dh * (1 - z) * (1 - n * n)
        dz = dh * (h_prev - n) * z * (1 - z)
        dr = dn * step["hidden_n"] * r * (1 - r)
        d_input = torch.cat([dr, dz, dn], -1)
        d_hidden = torch.cat([dr, dz, dn * r], -1)
        return d_input, d_hidden, dh * z + d_hidden @ w_hh, None
