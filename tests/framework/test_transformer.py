"""TransformerEncoderLayer against torch.nn.TransformerEncoderLayer: post- and pre-norm, both
activations, masks, layouts; dropout against finite differences; parameter names; bad arguments."""

import pytest
import torch

import framework as fw
from verification import assert_gradients_close
from verification.twins import copy_state

F64 = torch.float64


def pair(**kwargs):
    arguments = {"d_model": 8, "nhead": 2, "dim_feedforward": 16, "dropout": 0.0, **kwargs}
    ours = fw.TransformerEncoderLayer(**arguments, dtype=F64, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    for _, p, _ in ours.named_param():
        p.copy_(torch.empty(p.shape, dtype=F64).uniform_(-0.5, 0.5, generator=gen))
    activation = arguments.get("activation")
    if isinstance(activation, fw.Module):  # a framework activation: torch's by its name
        arguments["activation"] = "gelu" if isinstance(activation, fw.GELU) else "relu"
    theirs = torch.nn.TransformerEncoderLayer(**arguments, dtype=F64)
    copy_state(ours, theirs)
    return ours, theirs


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"norm_first": True, "activation": "gelu", "batch_first": True},
        {"norm_first": True, "bias": False},
        {"activation": "gelu", "layer_norm_eps": 1e-3},
        {"activation": fw.GELU(), "batch_first": True},
    ],
    ids=str,
)
@pytest.mark.parametrize(
    "masks",
    [
        {},
        {"src_key_padding_mask": torch.tensor([[False, False, True, False], [False, True, True, True]])},
        {"src_mask": torch.ones(4, 4, dtype=torch.bool).triu(1), "is_causal": True},
        {"src_mask": torch.randn(4, 4, dtype=F64)},
    ],
    ids=["no mask", "padding", "causal", "float mask"],
)
def test_matches_torch(kwargs, masks):
    torch.manual_seed(0)
    ours, theirs = pair(**kwargs)
    shape = (2, 4, 8) if kwargs.get("batch_first") else (4, 2, 8)
    x = torch.randn(shape, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    expected = theirs(leaf, **masks)
    g = torch.randn_like(expected)
    expected.backward(g)
    torch.testing.assert_close(ours(x, **masks), expected.detach(), rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(ours.backward(g), leaf.grad, rtol=1e-10, atol=1e-12)
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(ours.grad(name), p.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
def test_an_unbatched_sequence_matches_torch(norm_first):
    ours, theirs = pair(norm_first=norm_first)
    x = torch.randn(5, 8, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    expected = theirs(leaf)
    expected.backward(torch.ones_like(expected) * 0.3)
    torch.testing.assert_close(ours(x), expected.detach())
    torch.testing.assert_close(ours.backward(torch.ones_like(expected) * 0.3), leaf.grad)


@pytest.mark.parametrize("norm_first", [False, True])
def test_dropout_paths_match_finite_differences_with_the_masks_fixed(norm_first):
    ours = fw.TransformerEncoderLayer(4, 2, 6, dropout=0.3, norm_first=norm_first, dtype=F64)
    assert_gradients_close(ours, torch.randn(3, 2, 4, dtype=F64))  # the generators are re-seeded per forward


def test_torchs_relu_and_gelu_functions_are_taken_as_activations():
    gelu = torch.nn.functional.gelu  # torch's own function, as torch's samples pass it
    assert isinstance(fw.TransformerEncoderLayer(4, 2, activation=gelu).activation, fw.GELU)
    assert isinstance(fw.TransformerEncoderLayer(4, 2, activation=torch.relu).activation, fw.ReLU)


def test_parameter_names_and_shapes_are_torchs():
    ours = fw.TransformerEncoderLayer(8, 2, 16)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, 16)
    assert sorted((n, p.shape) for n, p, _ in ours.named_param()) == sorted(
        (n, p.shape) for n, p in theirs.named_parameters()
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"activation": "tanh"}, ValueError, "expected activation to be one of"),
        ({"activation": lambda x: x}, TypeError, "expected activation 'relu', 'gelu', or a framework ReLU or GELU"),
        ({"activation": torch.tanh}, TypeError, "expected activation 'relu', 'gelu', or a framework ReLU or GELU"),
        ({"nhead": 3}, ValueError, "MultiheadAttention: expected embed_dim divisible by num_heads"),
        ({"dropout": 2.0}, ValueError, "expected dropout in"),
    ],
    ids=["activation-name", "activation-lambda", "activation-torch-function", "nhead", "dropout"],
)
def test_invalid_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        fw.TransformerEncoderLayer(**{"d_model": 8, "nhead": 2, **kwargs})


def test_wrong_width_and_early_backward_are_rejected():
    m = fw.TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match="TransformerEncoderLayer: backward called before forward"):
        m.backward(torch.zeros(3, 2, 8))
    with pytest.raises(ValueError, match="TransformerEncoderLayer: expected src with d_model = 8"):
        m(torch.zeros(3, 2, 7))
