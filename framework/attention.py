"""Scaled dot-product attention (a pair of forward and backward functions) and MultiheadAttention."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _checks as check
from . import init as initializers
from .dropout import generator_on, keep_mask
from .linear import Linear
from .module import Module


@dataclass
class AttentionContext:
    """What :func:`scaled_dot_product_attention_backward` needs from the forward pass."""

    query: Tensor
    key: Tensor
    value: Tensor
    probabilities: Tensor  # softmax(scores), before dropout
    keep: Tensor | None  # dropout's 0 or 1/(1-p) factors, None without dropout
    scale: float
    output: Tensor


def causal_mask(target_length: int, source_length: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean (L, S) mask, True where query i may attend key j <= i (torch's ``is_causal``)."""
    return torch.ones(target_length, source_length, dtype=torch.bool, device=device).tril_()


def additive_mask(mask: Tensor, dtype: torch.dtype, allowed: bool) -> Tensor:
    """A float mask unchanged (cast to ``dtype``); a boolean one as 0 / -inf, where True means
    ``allowed`` (torch's scaled_dot_product_attention) or masked out (MultiheadAttention's masks)."""
    if mask.is_floating_point():
        return mask.to(dtype)
    blocked = ~mask if allowed else mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(blocked, float("-inf"))


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, AttentionContext]:
    r"""Attention of queries (..., L, E) over keys (..., S, E) and values (..., S, Ev).

        scores = scale Q K^T + mask;   P = softmax(scores) (over S);   P' = dropout(P);   out = P' V
    with ``scale = 1 / sqrt(E)`` by default, a boolean mask True where attention is allowed
    (False adds -inf), a float mask added as it is, and ``is_causal`` allowing key j <= query i
    (torch's conventions). A query whose every key is masked gets NaN, as in torch.

    Returns ``(output, weights, context)``: the output (..., L, Ev), the attention weights P'
    (..., L, S) and what :func:`scaled_dot_product_attention_backward` needs. Dropout draws its
    mask on the data's device, from ``generator`` (which must be on that device), or from torch's
    default stream there if None.
    """
    if is_causal and attn_mask is not None:
        raise check.fail("scaled_dot_product_attention", "expected attn_mask=None with is_causal=True, got both")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    # The scale goes on Q before the product (as torch's MultiheadAttention), not on the scores.
    scores = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        attn_mask = causal_mask(query.shape[-2], key.shape[-2], query.device)
    if attn_mask is not None:
        scores = scores + additive_mask(attn_mask, scores.dtype, allowed=True)
    # Softmax over the keys, shifted by the row maximum (no overflow for large scores). The
    # output is normalised after the product with V, (e V) / sum(e), as fused kernels do: one
    # rounding fewer than rounding each weight first.
    e = (scores - scores.amax(-1, keepdim=True)).exp_()
    total = e.sum(-1, keepdim=True)
    probabilities = e / total
    keep = None
    weights = probabilities
    if dropout_p > 0.0:
        if generator is not None and generator.device != probabilities.device:
            raise check.ModuleTypeError(
                f"scaled_dot_product_attention: expected a generator on {probabilities.device} (the data's "
                f"device: masks are drawn there), got one on {generator.device}"
            )
        if dropout_p >= 1.0:
            keep = torch.zeros(probabilities.shape, dtype=probabilities.dtype, device=probabilities.device)
        else:
            draws = keep_mask(probabilities.shape, dropout_p, generator, probabilities.device)
            keep = draws.to(probabilities.dtype).div_(1.0 - dropout_p)
        weights = probabilities * keep
        e = e * keep
    output = (e @ value).div_(total)
    return output, weights, AttentionContext(query, key, value, probabilities, keep, scale, output)


def scaled_dot_product_attention_backward(
    grad_output: Tensor, context: AttentionContext, grad_weights: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    r"""(dL/dQ, dL/dK, dL/dV) of :func:`scaled_dot_product_attention`, given dL/d(output) and,
    optionally, dL/d(weights) for the returned weights P'.

        dL/dV = P'^T g;   dL/dP' = g V^T (+ dL/d(weights));   dL/dP = dL/dP' * keep
        dL/dscores = P * (dL/dP - D),   D = sum_S(dL/dP * P)            (softmax's Jacobian)
        dL/dQ = scale dL/dscores K;   dL/dK = scale dL/dscores^T Q     (both carry the scale)
    D is computed as sum(g * out) (+ sum(P' * dL/d(weights))), equal since out = P' V: a sum over
    the value width instead of the keys, as fused kernels do.
    """
    weights = context.probabilities if context.keep is None else context.probabilities * context.keep
    grad_value = weights.transpose(-2, -1) @ grad_output
    grad_weights_total = grad_output @ context.value.transpose(-2, -1)
    row = (grad_output * context.output).sum(-1, keepdim=True)
    if grad_weights is not None:
        grad_weights_total = grad_weights_total + grad_weights
        row = row + (weights * grad_weights).sum(-1, keepdim=True)
    if context.keep is not None:
        grad_weights_total = grad_weights_total * context.keep
    # Where P is 0 (masked keys) the product is 0. Every product here is a fresh tensor of ours,
    # so the elementwise steps run in place: no further (batch, heads, L, S) allocation.
    grad_scores = grad_weights_total.sub_(row).mul_(context.probabilities)
    grad_query = (grad_scores @ context.key).mul_(context.scale)
    grad_key = (grad_scores.transpose(-2, -1) @ context.query).mul_(context.scale)
    return grad_query, grad_key, grad_value


class MultiheadAttention(Module):
    r"""Attention of L queries over S key/value pairs with ``num_heads`` heads of size d = E / heads.

        Q = query W_q^T + b_q,   K = key W_k^T + b_k,   V = value W_v^T + b_v   (split into heads)
        O_h = softmax(Q_h K_h^T / sqrt(d) + mask) V_h;   out = concat_h(O_h) W_o^T + b_o
    Backward (per head, P the attention weights, g = dL/dO_h from dL/dout through the output
    projection): dL/dV_h = P^T g;  dL/dP = g V_h^T;  dL/dS = P (dL/dP - sum(dL/dP P));
    dL/dQ_h = dL/dS K_h / sqrt(d);  dL/dK_h = dL/dS^T Q_h / sqrt(d); then through the projections.

    ``forward`` returns ``(output, weights)`` like torch (weights ``None`` with
    ``need_weights=False``); ``backward(grad_output, grad_attn_weights=None)`` takes one gradient
    per output and returns ``(dL/dquery, dL/dkey, dL/dvalue)``, one per input (for self-attention,
    add them up). The masks are not differentiated.

    Args:
        embed_dim: E, the width of queries and of the output.
        num_heads: heads, which must divide E.
        dropout: probability of zeroing an attention weight in training mode (drawn from
            ``generator``, on the data's device, as ``Dropout``).
        bias: learn ``in_proj_bias`` and ``out_proj.bias``.
        add_bias_kv: learn ``bias_k``, ``bias_v`` (1, 1, E), appended to the projected keys and values.
        add_zero_attn: append a zero key and value to each head.
        kdim, vdim: widths of keys and values (E by default); if either differs, the projections are
            ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` instead of ``in_proj_weight``.
        batch_first: inputs (N, L, E) instead of (L, N, E).

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False):
        key_padding_mask: (N, S) (or (S,) unbatched); True (bool) ignores a key, a float is added.
        attn_mask: (L, S) or (N * heads, L, S) ((heads, L, S) unbatched); True (bool) forbids a
            pair, a float is added to its score.
        need_weights: return the attention weights, averaged over heads if ``average_attn_weights``.
        is_causal: torch's hint that ``attn_mask`` is the causal mask; ``attn_mask`` is required and used.

    Shape: query (L, E) or (L, N, E) ((N, L, E) with batch_first), key (S, [N,] kdim), value
    (S, [N,] vdim); output like query; weights (N, L, S) or (N, heads, L, S) (no N unbatched).
    Attributes: ``in_proj_weight`` (3E, E) or ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim),
    ``v_proj_weight`` (E, vdim); ``in_proj_bias`` (3E,), ``bias_k``, ``bias_v``, ``out_proj`` (a Linear).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = check.positive_int(self, embed_dim, "embed_dim")
        self.num_heads = check.positive_int(self, num_heads, "num_heads")
        if embed_dim % num_heads:
            raise check.fail(self, f"expected embed_dim divisible by num_heads, got {embed_dim} and {num_heads}")
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else check.positive_int(self, kdim, "kdim")
        self.vdim = embed_dim if vdim is None else check.positive_int(self, vdim, "vdim")
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout = check.number(self, dropout, "dropout", 0.0, 1.0)
        self.batch_first = bool(batch_first)
        self.add_zero_attn = bool(add_zero_attn)
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self.generator = generator
        dtype = dtype or torch.get_default_dtype()
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise check.ModuleTypeError(f"MultiheadAttention: expected a floating-point dtype, got {dtype!r}")
        like = {"device": device, "dtype": dtype}
        e = embed_dim
        if self._qkv_same_embed_dim:
            self.register_parameter(
                "in_proj_weight", initializers.xavier_uniform_(torch.empty(3 * e, e, **like), generator=generator)
            )
        else:
            for name, width in (("q_proj_weight", e), ("k_proj_weight", self.kdim), ("v_proj_weight", self.vdim)):
                weight = initializers.xavier_uniform_(torch.empty(e, width, **like), generator=generator)
                self.register_parameter(name, weight)
        self.register_parameter("in_proj_bias", torch.zeros(3 * e, **like) if bias else None)
        for name in ("bias_k", "bias_v"):
            value = initializers.xavier_normal_(torch.empty(1, 1, e, **like), generator=generator)
            self.register_parameter(name, value if add_bias_kv else None)
        self.out_proj = Linear(e, e, bias=bias, generator=generator, **like)
        if bias:
            self.out_proj.bias.zero_()

    def named_children(self) -> list[tuple[str, Module]]:
        return [("out_proj", self.out_proj)]

    # -- projections ---------------------------------------------------------------------------------
    def _projection(self, which: int) -> tuple[Tensor, Tensor | None, str]:
        """(weight, bias, weight name) of the query (0), key (1) or value (2) projection."""
        e = self.embed_dim
        bias = None if self.in_proj_bias is None else self.in_proj_bias[which * e : (which + 1) * e]
        if self._qkv_same_embed_dim:
            return self.in_proj_weight[which * e : (which + 1) * e], bias, "in_proj_weight"
        name = ("q_proj_weight", "k_proj_weight", "v_proj_weight")[which]
        return getattr(self, name), bias, name

    def _project(self, x: Tensor, which: int) -> Tensor:
        weight, bias, _ = self._projection(which)
        if bias is None:
            return x @ weight.T
        # x W^T + b in one addmm (one rounding, as torch's linear), on a 2-D view of x.
        flat = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.T)
        return flat.reshape(*x.shape[:-1], weight.shape[0])

    def _project_backward(self, x: Tensor, grad: Tensor, which: int) -> Tensor:
        """Add the projection's parameter gradients; return dL/dx. x and grad are (N, T, width)."""
        weight, bias, name = self._projection(which)
        e = self.embed_dim
        flat_grad = grad.reshape(-1, e)
        weight_grad = flat_grad.T @ x.reshape(-1, x.shape[-1])
        if name == "in_proj_weight":
            self.grad(name)[which * e : (which + 1) * e].add_(weight_grad)
        else:
            self.grad(name).add_(weight_grad)
        if bias is not None:
            self.grad("in_proj_bias")[which * e : (which + 1) * e].add_(flat_grad.sum(0))
        return grad @ weight

    def _split_heads(self, x: Tensor) -> Tensor:
        n, t, _ = x.shape
        return x.reshape(n, t, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        n, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(n, t, self.embed_dim)

    # -- checks ----------------------------------------------------------------------------------------
    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> bool:
        """Validate the three inputs; return whether they are batched."""
        query = self._check_input(query, (2, 3), "query")
        key = self._check_input(key, (query.dim(),), "key")
        value = self._check_input(value, (query.dim(),), "value")
        check.size(self, query, -1, self.embed_dim, "embed_dim", "query")
        check.size(self, key, -1, self.kdim, "kdim", "key")
        check.size(self, value, -1, self.vdim, "vdim", "value")
        if key.shape[:-1] != value.shape[:-1]:
            raise check.fail(
                self,
                f"expected key and value with the same sequence and batch sizes, got {tuple(key.shape)} and "
                f"{tuple(value.shape)}",
            )
        batched = query.dim() == 3
        batch_dim = (0 if self.batch_first else 1) if batched else None
        if batched and query.shape[batch_dim] != key.shape[batch_dim]:
            raise check.fail(
                self,
                f"expected query and key with the same batch size (dimension {batch_dim}), got "
                f"{tuple(query.shape)} and {tuple(key.shape)}",
            )
        return batched

    def _mask(self, mask: Tensor | None, name: str, shapes: list[tuple[int, ...]], like: Tensor) -> Tensor | None:
        """A mask as an additive float tensor (True in a boolean mask: -inf), shape checked."""
        if mask is None:
            return None
        check.tensor(self, mask, name)
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise check.ModuleTypeError(
                f"MultiheadAttention: expected {name} of dtype bool or floating, got {mask.dtype}"
            )
        if tuple(mask.shape) not in shapes:
            expected = " or ".join(str(s) for s in shapes)
            raise check.fail(self, f"expected {name} of shape {expected}, got {tuple(mask.shape)}")
        if mask.device != like.device:
            raise check.ModuleTypeError(
                f"MultiheadAttention: expected {name} on device {like.device}, got {mask.device}"
            )
        return additive_mask(mask, like.dtype, allowed=False)

    # -- forward and backward ------------------------------------------------------------------------
    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batched = self._check_inputs(query, key, value)
        if is_causal and attn_mask is None:
            raise check.fail(self, "expected attn_mask with is_causal=True (torch's hint that attn_mask is causal)")
        # Internally (N, T, width): unbatched inputs get N = 1, sequence-first ones are transposed.
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, length, source = query.shape[0], query.shape[1], key.shape[1]
        heads = self.num_heads
        padding = self._mask(key_padding_mask, "key_padding_mask", [(n, source)] if batched else [(source,)], query)
        attention = self._mask(
            attn_mask,
            "attn_mask",
            [(length, source), (n * heads, length, source)] if batched else [(length, source), (heads, length, source)],
            query,
        )
        q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        extra = 0
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(n, 1, self.embed_dim)], 1)
            v = torch.cat([v, self.bias_v.expand(n, 1, self.embed_dim)], 1)
            extra += 1
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(n, heads, 1, self.head_dim)], 2)
            v = torch.cat([v, v.new_zeros(n, heads, 1, self.head_dim)], 2)
            extra += 1
        # One additive mask (N or 1, heads or 1, L, S + extra); the appended keys are never masked.
        mask = None
        if attention is not None:  # (L, S) for every sample and head, or (N * heads, L, S) per sample and head
            mask = attention.reshape(-1, heads if attention.dim() == 3 else 1, length, source)
        if padding is not None:
            padding = padding.reshape(n, 1, 1, source)
            mask = padding if mask is None else mask + padding
        if mask is not None and extra:
            mask = torch.cat([mask, mask.new_zeros(*mask.shape[:-1], extra)], -1)
        p = self.dropout if self.training else 0.0
        heads_out, weights, context = self._attention(q, k, v, mask, p)
        output = self.out_proj(self._merge_heads(heads_out))
        returned = None
        if need_weights:
            returned = weights.mean(1) if average_attn_weights else weights
            if not batched:
                returned = returned.squeeze(0)
        if not batched:
            output = output.squeeze(0)
        elif not self.batch_first:
            output = output.transpose(0, 1)
        self._save_for_backward(
            query=query,
            key=key,
            value=value,
            context=context,
            extra=extra,
            batched=batched,
            like=output,
            weights=returned,
            averaged=average_attn_weights,
        )
        return output, returned

    def _attention(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float
    ) -> tuple[Tensor, Tensor, AttentionContext]:
        if dropout_p > 0.0:
            self.generator = generator_on(self.generator, q.device)
        return scaled_dot_product_attention(q, k, v, mask, dropout_p, generator=self.generator)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Module:
        super().to(device=device, dtype=dtype)
        if device is not None:
            self.generator = generator_on(self.generator, device)
        return self

    def _attention_backward(
        self, grad_heads: Tensor, context: AttentionContext, grad_weights: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        return scaled_dot_product_attention_backward(grad_heads, context, grad_weights)

    def backward(self, grad_output: Tensor, grad_attn_weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        batched = saved["batched"]
        grad_weights = None
        if grad_attn_weights is not None:
            if saved["weights"] is None:
                raise check.fail(self, "got grad_attn_weights, but forward returned no weights (need_weights=False)")
            grad_weights = self._check_grad_output(grad_attn_weights, saved["weights"], "grad_attn_weights")
            if not batched:
                grad_weights = grad_weights.unsqueeze(0)
            if saved["averaged"]:  # the mean over heads: each head gets 1/heads of it
                grad_weights = (grad_weights / self.num_heads).unsqueeze(1)
        if not batched:
            grad_output = grad_output.unsqueeze(0)
        elif not self.batch_first:
            grad_output = grad_output.transpose(0, 1)
        grad_heads = self._split_heads(self.out_proj.backward(grad_output))
        grad_q, grad_k, grad_v = self._attention_backward(grad_heads, saved["context"], grad_weights)
        if self.add_zero_attn:
            grad_k, grad_v = grad_k[:, :, :-1], grad_v[:, :, :-1]
        grad_q, grad_k, grad_v = self._merge_heads(grad_q), self._merge_heads(grad_k), self._merge_heads(grad_v)
        if self.bias_k is not None:
            self.grad("bias_k").add_(grad_k[:, -1:].sum(0, keepdim=True))
            self.grad("bias_v").add_(grad_v[:, -1:].sum(0, keepdim=True))
            grad_k, grad_v = grad_k[:, :-1], grad_v[:, :-1]
        grads = (
            self._project_backward(saved["query"], grad_q, 0),
            self._project_backward(saved["key"], grad_k, 1),
            self._project_backward(saved["value"], grad_v, 2),
        )
        if not batched:
            return tuple(g.squeeze(0) for g in grads)  # type: ignore[return-value]
        if not self.batch_first:
            return tuple(g.transpose(0, 1) for g in grads)  # type: ignore[return-value]
        return grads

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
