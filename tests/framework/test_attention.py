"""Scaled dot-product attention and MultiheadAttention against torch: outputs, weights, every
gradient, masks of every kind, bad arguments."""

import warnings

import pytest
import torch

import framework as fw
from framework.attention import scaled_dot_product_attention, scaled_dot_product_attention_backward
from verification import assert_gradients_close
from verification.specs.attention import AttentionCase
from verification.twins import copy_state

F64 = torch.float64


class SDPA:
    """The function pair as a module the verifier can check (masks and options fixed)."""

    def __init__(self, **options):
        self.options = options

    def forward(self, q, k, v):
        out, _, self.context = scaled_dot_product_attention(q, k, v, **self.options)
        return out

    def backward(self, grad_output):
        return scaled_dot_product_attention_backward(grad_output, self.context)

    def param(self):
        return []


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"is_causal": True},
        {"scale": 0.3},
        {"attn_mask": torch.tensor([[True, False, True, True], [True, True, False, False], [True] * 4])},
        {"attn_mask": torch.randn(2, 1, 3, 4, dtype=F64)},
    ],
    ids=["plain", "causal", "scale", "bool mask", "float mask"],
)
def test_scaled_dot_product_attention_matches_torch_and_finite_differences(options):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 3, 5, dtype=F64), torch.randn(2, 2, 4, 5, dtype=F64), torch.randn(2, 2, 4, 3, dtype=F64)
    assert_gradients_close(
        SDPA(**options), q, k, v, reference=lambda *x: torch.nn.functional.scaled_dot_product_attention(*x, **options)
    )


def test_the_returned_weights_are_the_softmax_and_their_gradient_is_taken():
    torch.manual_seed(1)
    q, k, v = (torch.randn(3, 4, dtype=F64, requires_grad=True) for _ in range(3))
    out, weights, context = scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), is_causal=True)
    expected = torch.softmax((q @ k.T) / 2 + torch.full((3, 3), float("-inf"), dtype=F64).triu(1), -1)
    torch.testing.assert_close(weights, expected.detach())
    torch.testing.assert_close(out, (expected @ v).detach())
    g, gw = torch.randn(3, 4, dtype=F64), torch.randn(3, 3, dtype=F64)
    ((expected @ v) * g).sum().add((expected * gw).sum()).backward()
    for ours, leaf in zip(scaled_dot_product_attention_backward(g, context, gw), (q, k, v)):
        torch.testing.assert_close(ours, leaf.grad)


def test_attn_mask_and_is_causal_together_are_rejected():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="scaled_dot_product_attention: expected attn_mask=None with is_causal"):
        scaled_dot_product_attention(x, x, x, torch.ones(2, 2, dtype=torch.bool), is_causal=True)


def pair(embed_dim=4, num_heads=2, **kwargs):
    ours = fw.MultiheadAttention(embed_dim, num_heads, **kwargs, dtype=F64)
    theirs = torch.nn.MultiheadAttention(embed_dim, num_heads, **kwargs, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    for _, p, _ in ours.named_param():
        p.copy_(torch.empty(p.shape, dtype=F64).uniform_(-1, 1, generator=gen))
    copy_state(ours, theirs)
    return ours, theirs


def inputs(kwargs, n=2, length=3, source=5, batched=True):
    e = 4
    widths = (e, kwargs.get("kdim") or e, kwargs.get("vdim") or e)
    lengths = (length, source, source)
    if not batched:
        return [torch.randn(t, w, dtype=F64) for t, w in zip(lengths, widths)]
    if kwargs.get("batch_first"):
        return [torch.randn(n, t, w, dtype=F64) for t, w in zip(lengths, widths)]
    return [torch.randn(t, n, w, dtype=F64) for t, w in zip(lengths, widths)]


def assert_matches_torch(ours, theirs, xs, **options):
    leaves = [x.clone().requires_grad_(True) for x in xs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation warning for masks of mixed types
        out, weights = theirs(*leaves, **options)
    g = torch.randn_like(out)
    gw = None if weights is None else torch.randn_like(weights)
    loss = (out * g).sum() + (0 if weights is None else (weights * gw).sum())
    loss.backward()
    y, w = ours(*xs, **options)
    torch.testing.assert_close(y, out.detach(), rtol=1e-12, atol=1e-12)
    if weights is None:
        assert w is None
    else:
        torch.testing.assert_close(w, weights.detach(), rtol=1e-12, atol=1e-12)
    grads = ours.backward(g, gw)
    assert len(grads) == 3
    for ours_grad, leaf in zip(grads, leaves):
        torch.testing.assert_close(ours_grad, leaf.grad, rtol=1e-11, atol=1e-12)
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(ours.grad(name), p.grad, rtol=1e-11, atol=1e-12)


CONSTRUCTORS = [
    {},
    {"batch_first": True},
    {"kdim": 3, "vdim": 6},
    {"kdim": 4, "vdim": 2, "batch_first": True},
    {"bias": False},
    {"add_bias_kv": True},
    {"add_zero_attn": True},
    {"add_bias_kv": True, "add_zero_attn": True, "kdim": 2},
]
PADDING = torch.tensor([[False, True, False, True, True], [False, False, False, False, True]])


@pytest.mark.parametrize("kwargs", CONSTRUCTORS, ids=str)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"need_weights": False},
        {"average_attn_weights": False},
        {"key_padding_mask": PADDING},
        {"key_padding_mask": torch.where(PADDING, -2.0, 0.5).double()},
        {"attn_mask": torch.tensor([[False, True, True, False, False]] * 3)},
        {"attn_mask": torch.randn(4, 3, 5, dtype=F64)},
        {"attn_mask": torch.randn(3, 5, dtype=F64), "key_padding_mask": PADDING, "average_attn_weights": False},
        {"attn_mask": torch.ones(3, 5, dtype=torch.bool).triu(1), "is_causal": True},
    ],
    ids=["plain", "no weights", "per head", "bool padding", "float padding", "bool mask", "3-D float mask",
         "mixed", "causal"],
)  # fmt: skip
def test_multihead_attention_matches_torch(kwargs, options):
    torch.manual_seed(2)
    ours, theirs = pair(**kwargs)
    assert_matches_torch(ours, theirs, inputs(kwargs), **options)


@pytest.mark.parametrize("kwargs", [{}, {"kdim": 3, "vdim": 2}, {"add_bias_kv": True, "add_zero_attn": True}], ids=str)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"average_attn_weights": False},
        {"key_padding_mask": PADDING[0]},
        {"attn_mask": torch.randn(2, 3, 5, dtype=F64)},
    ],
    ids=["plain", "per head", "padding", "3-D mask"],
)
def test_unbatched_inputs_match_torch(kwargs, options):
    torch.manual_seed(3)
    ours, theirs = pair(**kwargs)
    assert_matches_torch(ours, theirs, inputs(kwargs, batched=False), **options)


def test_self_attention_gradients_add_up_to_torchs():
    ours, theirs = pair(batch_first=True)
    x = torch.randn(2, 3, 4, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    out, _ = theirs(leaf, leaf, leaf, need_weights=False)
    g = torch.randn_like(out)
    out.backward(g)
    ours(x, x, x, need_weights=False)
    torch.testing.assert_close(sum(ours.backward(g)), leaf.grad)


def test_parameter_names_and_shapes_are_torchs():
    for kwargs in CONSTRUCTORS:
        ours, theirs = fw.MultiheadAttention(4, 2, **kwargs), torch.nn.MultiheadAttention(4, 2, **kwargs)
        assert sorted((n, p.shape) for n, p, _ in ours.named_param()) == sorted(
            (n, p.shape) for n, p in theirs.named_parameters()
        )


def test_dropout_backward_matches_finite_differences_with_the_mask_fixed():
    torch.manual_seed(4)
    case = AttentionCase(
        embed_dim=4, num_heads=2, dropout=0.4, batch_first=True,
        key_padding_mask=None, attn_mask=None, need_weights=True, average_attn_weights=False,
    )  # fmt: skip
    case.to(dtype=F64)
    q, k, v = torch.randn(2, 3, 4, dtype=F64), torch.randn(2, 5, 4, dtype=F64), torch.randn(2, 5, 4, dtype=F64)
    assert_gradients_close(case, q, k, v)
    _, weights = case(q, k, v)
    assert (weights == 0).any() and not torch.allclose(weights.sum(-1), torch.ones(2, 2, 3, dtype=F64))


def attention_with_dropout(seed, device="cpu"):
    """Self-attention with dropout 0.5 (the same weights every time), its mask generator seeded
    with ``seed``, and an input for it."""
    module = fw.MultiheadAttention(8, 2, dropout=0.5, batch_first=True, generator=torch.Generator().manual_seed(0))
    module.to(device=device)
    module.generator.manual_seed(seed)
    return module, torch.ones(2, 5, 8, device=device)


def test_the_same_dropout_seed_gives_the_same_attention_weights_and_another_seed_others():
    first, again, other = (
        m(x, x, x)[1] for m, x in (attention_with_dropout(1), attention_with_dropout(1), attention_with_dropout(2))
    )
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_attention_dropout_is_drawn_on_the_device_without_a_host_sync():
    (module, x), (twin, _) = attention_with_dropout(1, "cuda"), attention_with_dropout(1, "cuda")
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        output, first = module(x, x, x)
        module.backward(torch.ones_like(output), torch.ones_like(first))
        again = twin(x, x, x)[1]
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert module.generator.device.type == "cuda" and first.is_cuda
    assert torch.equal(first, again)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attention_dropout_refuses_a_generator_on_another_device_than_the_data():
    q = torch.randn(2, 3, 4, device="cuda")
    with pytest.raises(TypeError, match="expected a generator on cuda"):
        scaled_dot_product_attention(q, q, q, dropout_p=0.5, generator=torch.Generator().manual_seed(0))


def test_dropout_is_off_in_evaluation_mode():
    ours, theirs = pair(dropout=0.5)
    ours.eval()
    theirs.eval()
    xs = inputs({})
    torch.testing.assert_close(ours(*xs)[0], theirs(*xs)[0].detach())


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: fw.MultiheadAttention(5, 2), ValueError, "expected embed_dim divisible by num_heads"),
        (lambda: fw.MultiheadAttention(4, 0), ValueError, "expected num_heads >= 1"),
        (lambda: fw.MultiheadAttention(4, 2, dropout=1.5), ValueError, "expected dropout in"),
        (lambda: fw.MultiheadAttention(4, 2, kdim=0), ValueError, "expected kdim >= 1"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(build, error, match):
    with pytest.raises(error, match=f"MultiheadAttention: {match}"):
        build()


@pytest.mark.parametrize(
    ("shapes", "options", "match"),
    [
        ([(3, 2, 5), (4, 2, 4), (4, 2, 4)], {}, "expected query with embed_dim = 4"),
        ([(3, 2, 4), (4, 2, 4), (5, 2, 4)], {}, "expected key and value with the same sequence and batch sizes"),
        ([(3, 2, 4), (4, 3, 4), (4, 3, 4)], {}, "expected query and key with the same batch size"),
        ([(3, 2, 4), (4, 4), (4, 4)], {}, "expected key to be 3-D"),
        ([(2, 3, 2, 4)] * 3, {}, "expected query to be 2-D or 3-D"),
        ([(3, 2, 4), (4, 2, 4), (4, 2, 4)], {"key_padding_mask": torch.zeros(2, 3, dtype=torch.bool)},
         r"expected key_padding_mask of shape \(2, 4\)"),
        ([(3, 2, 4), (4, 2, 4), (4, 2, 4)], {"attn_mask": torch.zeros(4, 3)}, r"expected attn_mask of shape \(3, 4\)"),
        ([(3, 2, 4), (4, 2, 4), (4, 2, 4)], {"is_causal": True}, "expected attn_mask with is_causal=True"),
    ],
)  # fmt: skip
def test_bad_inputs_and_masks_are_rejected(shapes, options, match):
    with pytest.raises(ValueError, match=f"MultiheadAttention: {match}"):
        fw.MultiheadAttention(4, 2)(*[torch.zeros(s) for s in shapes], **options)


def test_an_integer_mask_is_rejected():
    x = torch.zeros(3, 2, 4)
    with pytest.raises(TypeError, match="MultiheadAttention: expected attn_mask of dtype bool or floating"):
        fw.MultiheadAttention(4, 2)(x, x, x, attn_mask=torch.zeros(3, 3, dtype=torch.long))


def test_backward_checks_its_gradients():
    m = fw.MultiheadAttention(4, 2)
    x = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="MultiheadAttention: backward called before forward"):
        m.backward(x)
    out, weights = m(x, x, x)
    with pytest.raises(ValueError, match=r"MultiheadAttention: expected grad_attn_weights .*of shape \(2, 3, 3\)"):
        m.backward(out, torch.zeros(2, 3))
    m(x, x, x, need_weights=False)
    with pytest.raises(ValueError, match="forward returned no weights"):
        m.backward(out, weights)
