"""Softmax and LogSoftmax against torch.nn: every dim, large logits, infinities, bad arguments."""

import warnings

import pytest
import torch

import framework as fw

PAIRS = [(fw.Softmax, torch.nn.Softmax), (fw.LogSoftmax, torch.nn.LogSoftmax)]
IDS = ["Softmax", "LogSoftmax"]
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def compare(ours, theirs, x, g=None):
    """Output and input gradient of both, for one upstream gradient."""
    leaf = x.clone().requires_grad_(True)
    expected = theirs(leaf)
    g = torch.randn_like(expected) if g is None else g
    expected.backward(g)
    return (ours(x), ours.backward(g)), (expected.detach(), leaf.grad)


def assert_close(pair, dtype):
    (y, dx), (y_ref, dx_ref) = pair
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(y, y_ref, rtol=tolerance, atol=tolerance, equal_nan=True)
    torch.testing.assert_close(dx, dx_ref, rtol=tolerance, atol=tolerance, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    ("shape", "dim"),
    [((5,), 0), ((5,), -1), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1), ((2, 3, 4), -1), ((2, 1, 3, 2), -3), ((), 0)],
    ids=str,
)
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_matches_torch_along_every_dim(ours, theirs, shape, dim, dtype):
    torch.manual_seed(0)
    assert_close(compare(ours(dim), theirs(dim), torch.randn(shape, dtype=dtype) * 5), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("offset", [1000.0, -1000.0, 1e4, 8e4])
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_large_logits_are_finite_and_match_torch(ours, theirs, offset, dtype):
    """exp(1000) overflows float64 and exp(-1000) underflows: the shift by the maximum avoids both."""
    torch.manual_seed(1)
    x = offset + torch.randn(4, 6, dtype=dtype) * 10
    (y, dx), expected = compare(ours(1), theirs(1), x)
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    assert_close(((y, dx), expected), dtype)


def test_softmax_rows_sum_to_one_even_when_saturated():
    x = torch.tensor([[0.0, 800.0, -800.0], [1e3, 1e3, 1e3]], dtype=torch.float64)
    y = fw.Softmax(1)(x)
    torch.testing.assert_close(y.sum(1), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-15)
    assert y[0, 1] == 1.0 and y[0, 2] == 0.0


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_minus_infinity_masks_an_entry_like_torch(ours, theirs):
    x = torch.tensor([[0.5, -float("inf"), 2.0], [-float("inf")] * 3], dtype=torch.float64)
    assert_close(compare(ours(1), theirs(1), x), torch.float64)


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)], ids=str)
def test_dim_none_picks_torchs_implicit_dimension_with_its_warning(ours, theirs, shape):
    x = torch.randn(shape, dtype=torch.float64)
    with pytest.warns(UserWarning, match="Implicit dimension choice|implicit dimension choice") as record:
        y = ours()(x)
    assert record[0].filename == __file__  # the user's line, as torch's warning points at it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(y, theirs()(x))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_repr_and_default_match_torch(ours, theirs):
    assert repr(ours(1)) == repr(theirs(1)) and ours().dim is None


@pytest.mark.parametrize("cls", [fw.Softmax, fw.LogSoftmax], ids=IDS)
@pytest.mark.parametrize(("shape", "dim"), [((3, 4), 2), ((3, 4), -3), ((5,), 1), ((), 1)], ids=str)
def test_a_dim_out_of_range_is_rejected(cls, shape, dim):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected dim in \["):
        cls(dim)(torch.zeros(shape))


@pytest.mark.parametrize("cls", [fw.Softmax, fw.LogSoftmax], ids=IDS)
def test_a_dim_that_is_not_an_int_is_rejected(cls):
    with pytest.raises(TypeError, match=f"{cls.__name__}: expected dim to be an int or None"):
        cls(1.0)


@pytest.mark.parametrize("cls", [fw.Softmax, fw.LogSoftmax], ids=IDS)
def test_integer_input_and_early_backward_are_rejected(cls):
    with pytest.raises(TypeError, match=f"{cls.__name__}: expected input to be a floating-point tensor"):
        cls(0)(torch.arange(3))
    with pytest.raises(ValueError, match=f"{cls.__name__}: backward called before forward"):
        cls(0).backward(torch.zeros(3))
