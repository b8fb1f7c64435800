"""Embedding against torch.nn.Embedding: lookups, accumulated gradients of repeated rows, the
padding row, scale_grad_by_freq, bad arguments."""

import pytest
import torch

import framework as fw
from verification.twins import copy_state


def pair(num_embeddings=6, embedding_dim=3, dtype=torch.float64, **kwargs):
    ours = fw.Embedding(
        num_embeddings, embedding_dim, **kwargs, dtype=dtype, generator=torch.Generator().manual_seed(0)
    )
    theirs = torch.nn.Embedding(num_embeddings, embedding_dim, **kwargs).to(dtype)
    copy_state(ours, theirs)
    return ours, theirs


def gradients(ours, theirs, indices, g=None):
    """(output, weight gradient) of both, and what ours' backward returned."""
    expected = theirs(indices)
    g = torch.randn_like(expected) if g is None else g
    expected.backward(g)
    y = ours(indices)
    returned = ours.backward(g)
    return (y, ours.grad("weight")), (expected.detach(), theirs.weight.grad), returned


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    "indices",
    [[0], [[1, 2], [3, 1]], [5, 5, 5, 5], [[[0, 1, 0]], [[2, 2, 2]]], 3, [], [[4, 0], [4, 0], [4, 4]]],
    ids=str,
)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"padding_idx": 1},
        {"padding_idx": -1},
        {"scale_grad_by_freq": True},
        {"padding_idx": 0, "scale_grad_by_freq": True},
    ],
    ids=str,
)
def test_lookup_and_gradients_match_torch(indices, kwargs, dtype):
    torch.manual_seed(0)
    ours, theirs = pair(dtype=dtype, **kwargs)
    (y, gw), (y_ref, gw_ref), returned = gradients(ours, theirs, torch.tensor(indices, dtype=torch.long))
    assert returned is None
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=1e-12)


def test_a_repeated_row_accumulates_every_occurrence():
    ours = fw.Embedding(3, 2, dtype=torch.float64)
    ours(torch.tensor([2, 0, 2, 2]))
    ours.backward(torch.tensor([[1.0, 2.0], [5.0, 5.0], [10.0, 20.0], [100.0, 200.0]], dtype=torch.float64))
    assert ours.grad("weight").tolist() == [[5.0, 5.0], [0.0, 0.0], [111.0, 222.0]]


def test_the_padding_row_starts_at_zero_and_gets_no_gradient():
    ours = fw.Embedding(4, 3, padding_idx=-2)
    assert ours.padding_idx == 2 and not ours.weight[2].any() and ours.weight[1].any()
    ours(torch.tensor([2, 2, 1]))
    ours.backward(torch.ones(3, 3))
    assert not ours.grad("weight")[2].any() and ours.grad("weight")[1].eq(1).all()


def test_int32_indices_are_accepted():
    ours, theirs = pair()
    indices = torch.tensor([[1, 5], [0, 1]], dtype=torch.int32)
    assert torch.equal(ours(indices), theirs(indices).detach())


def test_an_initial_weight_is_copied():
    weight = torch.arange(6.0).reshape(3, 2)
    ours = fw.Embedding(3, 2, _weight=weight)
    assert torch.equal(ours(torch.tensor([2])), weight[2:]) and ours.weight is not weight


def test_parameter_name_shape_and_repr_are_torchs():
    ours, theirs = fw.Embedding(5, 3, padding_idx=-1), torch.nn.Embedding(5, 3, padding_idx=-1)
    assert [(n, p.shape) for n, p, _ in ours.named_param()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("bad", [[6], [-1], [[0, 7]]], ids=str)
def test_indices_out_of_range_are_rejected(bad):
    with pytest.raises(ValueError, match=r"Embedding: expected every index in \[0, 5\], got -?\d"):
        fw.Embedding(6, 2)(torch.tensor(bad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.bool], ids=str)
def test_indices_of_another_dtype_are_rejected(dtype):
    with pytest.raises(TypeError, match="Embedding: expected input of an integer dtype"):
        fw.Embedding(6, 2)(torch.zeros(3, dtype=dtype))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"padding_idx": 6}, ValueError, r"expected padding_idx in \[-6, 5\]"),
        ({"padding_idx": -7}, ValueError, r"expected padding_idx .*within num_embeddings"),
        ({"padding_idx": 1.0}, TypeError, "expected padding_idx to be an int or None"),
        ({"max_norm": 1.0}, ValueError, "max_norm is not supported"),
        ({"sparse": True}, ValueError, "sparse gradients are not supported"),
        ({"_weight": torch.zeros(6, 3)}, ValueError, r"expected _weight .* of shape \(6, 2\)"),
        ({"dtype": torch.int64}, TypeError, "expected a floating-point dtype"),
    ],
    ids=str,
)
def test_invalid_constructor_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=f"Embedding: {match}"):
        fw.Embedding(6, 2, **kwargs)


def test_num_embeddings_must_be_positive():
    with pytest.raises(ValueError, match="Embedding: expected num_embeddings >= 1"):
        fw.Embedding(0, 2)


def test_backward_checks_call_order_and_shape():
    m = fw.Embedding(3, 2)
    with pytest.raises(ValueError, match="Embedding: backward called before forward"):
        m.backward(torch.zeros(1, 2))
    m(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="Embedding: expected grad_output"):
        m.backward(torch.zeros(2, 3))
