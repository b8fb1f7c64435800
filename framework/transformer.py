"""A transformer encoder block made of the framework's own modules."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _checks as check
from .activations import GELU, ReLU
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .normalization import LayerNorm


def _torch_function(value: object) -> str:
    """The name of one of torch's functions (torch.relu, its neural-network relu and gelu), else ''."""
    module = getattr(value, "__module__", None) or ""
    return getattr(value, "__name__", "") if callable(value) and module.startswith("torch") else ""


class TransformerEncoderLayer(Module):
    r"""Self-attention and a two-layer MLP, each with a residual connection and a LayerNorm.

    Post-norm (default): x = norm1(src + sa(src));   out = norm2(x + ff(x))
    Pre-norm (norm_first): x = src + sa(norm1(src));   out = x + ff(norm2(x))
    with sa(x) = dropout1(self_attn(x, x, x)) and ff(x) = dropout2(linear2(dropout(act(linear1(x))))).
    Backward runs the children's backward passes in reverse; a residual adds the gradient that
    skips the branch to the one through it, and self-attention's input gradient is the sum of
    its query, key and value gradients (the same tensor feeds all three).

    Args:
        d_model: width of the input and output.
        nhead: attention heads (must divide d_model).
        dim_feedforward: width of the MLP's hidden layer.
        dropout: dropout after attention, inside and after the MLP, and on the attention weights.
        activation: ``"relu"`` or ``"gelu"``, torch's relu or gelu function, or a framework ``ReLU`` /
            ``GELU`` instance (any other callable would need its own backward).
        layer_norm_eps: the LayerNorms' eps.
        batch_first: input (N, L, d_model) instead of (L, N, d_model).
        norm_first: pre-norm instead of post-norm.
        bias: biases in the projections, the MLP and the LayerNorms.

    forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False): the masks as
    :class:`MultiheadAttention`'s attn_mask and key_padding_mask. ``backward(grad_output)``
    returns dL/dsrc.

    Shape: src (L, d_model), (L, N, d_model) or (N, L, d_model) with batch_first; output the same.
    Attributes (torch's names): ``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``,
    ``dropout``, ``dropout1``, ``dropout2``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Module = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        like = {"device": device, "dtype": dtype}
        self.d_model = check.positive_int(self, d_model, "d_model")
        self.dim_feedforward = check.positive_int(self, dim_feedforward, "dim_feedforward")
        self.norm_first = bool(norm_first)
        self.batch_first = bool(batch_first)
        if isinstance(activation, str):
            name = check.choice(self, activation, "activation", ("relu", "gelu"))
            self.activation = ReLU() if name == "relu" else GELU()
        elif isinstance(activation, (ReLU, GELU)):
            self.activation = activation
        elif _torch_function(activation) in ("relu", "gelu"):  # torch's own relu or gelu function
            self.activation = ReLU() if _torch_function(activation) == "relu" else GELU()
        else:
            raise check.ModuleTypeError(
                f"TransformerEncoderLayer: expected activation 'relu', 'gelu', or a framework ReLU or GELU, "
                f"got {activation!r}"
            )
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, generator=generator, **like
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, generator=generator, **like)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, generator=generator, **like)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **like)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **like)
        seeds = [int(s) for s in torch.randint(0, 2**62, (3,), generator=generator)]
        self.dropout = Dropout(dropout, generator=torch.Generator().manual_seed(seeds[0]))
        self.dropout1 = Dropout(dropout, generator=torch.Generator().manual_seed(seeds[1]))
        self.dropout2 = Dropout(dropout, generator=torch.Generator().manual_seed(seeds[2]))

    def named_children(self) -> list[tuple[str, Module]]:
        return [
            ("self_attn", self.self_attn),
            ("linear1", self.linear1),
            ("dropout", self.dropout),
            ("linear2", self.linear2),
            ("norm1", self.norm1),
            ("norm2", self.norm2),
            ("dropout1", self.dropout1),
            ("dropout2", self.dropout2),
            ("activation", self.activation),
        ]

    # -- the two branches ----------------------------------------------------------------------------
    def _attention_block(self, x: Tensor, mask: Tensor | None, padding: Tensor | None, causal: bool) -> Tensor:
        out, _ = self.self_attn(x, x, x, key_padding_mask=padding, need_weights=False, attn_mask=mask, is_causal=causal)
        return self.dropout1(out)

    def _attention_block_backward(self, grad: Tensor) -> Tensor:
        grad_query, grad_key, grad_value = self.self_attn.backward(self.dropout1.backward(grad))
        return grad_query + grad_key + grad_value

    def _feedforward_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _feedforward_block_backward(self, grad: Tensor) -> Tensor:
        grad = self.linear2.backward(self.dropout2.backward(grad))
        return self.linear1.backward(self.activation.backward(self.dropout.backward(grad)))

    # -- forward and backward ------------------------------------------------------------------------
    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        src = self._check_input(src, (2, 3), "src")
        check.size(self, src, -1, self.d_model, "d_model", "src")
        if self.norm_first:
            x = src + self._attention_block(self.norm1(src), src_mask, src_key_padding_mask, is_causal)
            out = x + self._feedforward_block(self.norm2(x))
        else:
            x = self.norm1(src + self._attention_block(src, src_mask, src_key_padding_mask, is_causal))
            out = self.norm2(x + self._feedforward_block(x))
        self._save_for_backward(like=out)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved_tensors()
        grad_output = self._check_grad_output(grad_output, saved["like"])
        if self.norm_first:
            grad_x = grad_output + self.norm2.backward(self._feedforward_block_backward(grad_output))
            return grad_x + self.norm1.backward(self._attention_block_backward(grad_x))
        grad_sum = self.norm2.backward(grad_output)
        grad_x = grad_sum + self._feedforward_block_backward(grad_sum)
        grad_src = self.norm1.backward(grad_x)
        return grad_src + self._attention_block_backward(grad_src)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, nhead={self.self_attn.num_heads}, dim_feedforward={self.dim_feedforward}, "
            f"dropout={self.dropout.p:g}, norm_first={self.norm_first}, batch_first={self.batch_first}"
        )
