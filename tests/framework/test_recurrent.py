"""LSTM and GRU against torch.nn: outputs, final states and every gradient through time, over
layers, directions, layouts and initial states; parameter names; bad arguments."""

import pytest
import torch

import framework as fw
from verification.twins import copy_state, twin_of

F64 = torch.float64
PAIRS = [(fw.LSTM, torch.nn.LSTM), (fw.GRU, torch.nn.GRU)]
IDS = ["LSTM", "GRU"]


def pair(ours_cls, theirs_cls, input_size=3, hidden_size=4, **kwargs):
    ours = ours_cls(input_size, hidden_size, **kwargs, dtype=F64, generator=torch.Generator().manual_seed(0))
    theirs = theirs_cls(input_size, hidden_size, **kwargs, dtype=F64)
    copy_state(ours, theirs)
    return ours, theirs


def states(ours, n):
    count = ours.num_layers * ours.num_directions
    shape = (count, ours.state_size) if n is None else (count, n, ours.state_size)
    cell = (*shape[:-1], ours.hidden_size)
    h0 = torch.randn(shape, dtype=F64)
    return (h0, torch.randn(cell, dtype=F64)) if ours.has_cell else h0


def assert_matches_torch(ours, theirs, x, hx=None, hidden_gradient=True):
    leaves = [x.clone().requires_grad_(True)]
    torch_hx = None
    if hx is not None:
        torch_hx = (
            tuple(h.clone().requires_grad_(True) for h in hx) if ours.has_cell else hx.clone().requires_grad_(True)
        )
        leaves += list(torch_hx) if ours.has_cell else [torch_hx]
    out, hidden = theirs(leaves[0], torch_hx)
    hidden = hidden if ours.has_cell else (hidden,)
    g = torch.randn_like(out)
    gh = [torch.randn_like(h) if hidden_gradient else None for h in hidden]
    loss = (out * g).sum() + sum((h * gi).sum() for h, gi in zip(hidden, gh) if gi is not None)
    loss.backward()
    y, our_hidden = ours(x, hx)
    our_hidden = our_hidden if ours.has_cell else (our_hidden,)
    torch.testing.assert_close(y, out.detach(), rtol=1e-12, atol=1e-12)
    for a, b in zip(our_hidden, hidden):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
    result = ours.backward(g, (tuple(gh) if ours.has_cell else gh[0]) if hidden_gradient else None)
    if hx is None:
        grads = [result]
    else:
        grad_x, grad_hx = result
        grads = [grad_x, *(grad_hx if ours.has_cell else (grad_hx,))]
    assert len(grads) == len(leaves)
    for ours_grad, leaf in zip(grads, leaves):
        torch.testing.assert_close(ours_grad, leaf.grad, rtol=1e-11, atol=1e-12)
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(ours.grad(name), p.grad, rtol=1e-11, atol=1e-12)


CONSTRUCTORS = [
    {},
    {"batch_first": True},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 3, "bidirectional": True, "batch_first": True},
    {"num_layers": 2, "bias": False},
]
PROJECTED = [{"proj_size": 2}, {"proj_size": 3, "num_layers": 2, "bidirectional": True, "batch_first": True}]


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero state", "h0 given"])
@pytest.mark.parametrize("kwargs", CONSTRUCTORS, ids=str)
@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_matches_torch_through_time(ours_cls, theirs_cls, kwargs, initial_state):
    torch.manual_seed(0)
    ours, theirs = pair(ours_cls, theirs_cls, **kwargs)
    x = torch.randn((2, 5, 3) if kwargs.get("batch_first") else (5, 2, 3), dtype=F64)
    assert_matches_torch(ours, theirs, x, states(ours, 2) if initial_state else None)


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero state", "h0 given"])
@pytest.mark.parametrize("kwargs", PROJECTED, ids=str)
def test_lstm_with_a_projection_matches_torch(kwargs, initial_state):
    torch.manual_seed(4)
    ours, theirs = pair(fw.LSTM, torch.nn.LSTM, **kwargs)
    x = torch.randn((2, 5, 3) if kwargs.get("batch_first") else (5, 2, 3), dtype=F64)
    assert_matches_torch(ours, theirs, x, states(ours, 2) if initial_state else None)
    assert repr(ours) == repr(theirs)


def test_the_projection_is_lstm_only():
    with pytest.raises(ValueError, match="GRU: proj_size is only supported for LSTM"):
        fw.GRU(3, 4, proj_size=2)


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero state", "h0 given"])
@pytest.mark.parametrize("kwargs", [{}, {"num_layers": 2, "bidirectional": True}], ids=str)
@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_unbatched_sequences_match_torch(ours_cls, theirs_cls, kwargs, initial_state):
    torch.manual_seed(1)
    ours, theirs = pair(ours_cls, theirs_cls, **kwargs)
    assert_matches_torch(ours, theirs, torch.randn(4, 3, dtype=F64), states(ours, None) if initial_state else None)


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_without_a_gradient_for_the_final_state(ours_cls, theirs_cls):
    ours, theirs = pair(ours_cls, theirs_cls, num_layers=2, bidirectional=True)
    assert_matches_torch(ours, theirs, torch.randn(6, 3, 3, dtype=F64), states(ours, 3), hidden_gradient=False)


def test_lstm_takes_the_gradient_of_c_n_alone():
    ours, theirs = pair(fw.LSTM, torch.nn.LSTM)
    x = torch.randn(4, 2, 3, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    _, (_, c_n) = theirs(leaf)
    g = torch.randn_like(c_n)
    c_n.backward(g)
    ours(x)
    torch.testing.assert_close(ours.backward(torch.zeros(4, 2, 4, dtype=F64), (None, g)), leaf.grad)


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_a_long_sequence_carries_the_gradient_to_the_first_step(ours_cls, theirs_cls):
    """Only the last output has a gradient: the first input's gradient must come through time."""
    ours, theirs = pair(ours_cls, theirs_cls, hidden_size=3)
    x = torch.randn(20, 1, 3, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    out, _ = theirs(leaf)
    g = torch.zeros_like(out)
    g[-1] = 1.0
    out.backward(g)
    ours(x)
    grad = ours.backward(g)
    assert grad[0].abs().sum() > 0
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_parameter_names_shapes_order_and_repr_are_torchs(ours_cls, theirs_cls):
    for kwargs in CONSTRUCTORS:
        ours, theirs = ours_cls(3, 4, **kwargs), theirs_cls(3, 4, **kwargs)
        assert [(n, p.shape) for n, p, _ in ours.named_param()] == [(n, p.shape) for n, p in theirs.named_parameters()]
        assert repr(ours) == repr(theirs)
        bound = 1 / 4**0.5
        assert all(p.abs().max() <= bound for p in ours.param()[0][:1])


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_twin_of_builds_the_torch_module(ours_cls, theirs_cls):
    ours = ours_cls(2, 3, num_layers=2, bidirectional=True, batch_first=True).to(dtype=F64)
    twin = twin_of(ours)
    assert isinstance(twin, theirs_cls)
    x = torch.randn(2, 4, 2, dtype=F64)
    torch.testing.assert_close(ours(x)[0], twin(x)[0].detach())


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), PAIRS, ids=IDS)
def test_dropout_between_layers_uses_one_mask_in_forward_and_backward(ours_cls, theirs_cls):
    from verification import assert_gradients_close
    from verification.specs.recurrent import GRUCase, LSTMCase

    case_cls = LSTMCase if ours_cls is fw.LSTM else GRUCase
    case = case_cls(input_size=2, hidden_size=3, num_layers=3, dropout=0.5, batch=2, length=3, initial_state=False)
    case.to(dtype=F64)
    assert_gradients_close(case, torch.randn(3, 2, 2, dtype=F64))  # the generator is re-seeded per forward
    case.eval()
    ours, theirs = pair(ours_cls, theirs_cls, num_layers=3, dropout=0.5)
    ours.eval()
    theirs.eval()
    x = torch.randn(3, 2, 3, dtype=F64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0].detach())


def with_dropout(cls, seed, device="cpu"):
    """A 3-layer network with dropout 0.5 between layers (the same weights every time), its mask
    generator seeded with ``seed``, and an input for it."""
    module = cls(3, 8, num_layers=3, dropout=0.5, generator=torch.Generator().manual_seed(0)).to(device=device)
    module.generator.manual_seed(seed)
    return module, torch.ones(5, 4, 3, device=device)


@pytest.mark.parametrize("cls", [fw.LSTM, fw.GRU], ids=IDS)
def test_the_same_dropout_seed_gives_the_same_masks_and_another_seed_others(cls):
    first, again, other = (m(x)[0] for m, x in (with_dropout(cls, 1), with_dropout(cls, 1), with_dropout(cls, 2)))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [fw.LSTM, fw.GRU], ids=IDS)
def test_on_cuda_dropout_masks_are_drawn_on_the_device_without_a_host_sync(cls):
    (module, x), (twin, _) = with_dropout(cls, 1, "cuda"), with_dropout(cls, 1, "cuda")
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = module(x)[0]
        module.backward(torch.ones_like(first))
        again = twin(x)[0]
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert module.generator.device.type == "cuda" and first.is_cuda
    assert torch.equal(first, again)


@pytest.mark.parametrize("cls", [fw.LSTM, fw.GRU], ids=IDS)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden_size": 0}, ValueError, "expected hidden_size >= 1"),
        ({"num_layers": 0}, ValueError, "expected num_layers >= 1"),
        ({"dropout": 1.5}, ValueError, "expected dropout in"),
        (
            {"proj_size": 4},
            ValueError,
            r"(expected proj_size < hidden_size \(4\)|proj_size is only supported for LSTM)",
        ),
        ({"bias": 1}, TypeError, "expected bias to be a bool"),
        ({"batch_first": "yes"}, TypeError, "expected batch_first to be a bool"),
        ({"dtype": torch.int32}, TypeError, "expected a floating-point dtype"),
    ],
    ids=str,
)
def test_invalid_constructor_arguments_are_rejected(cls, kwargs, error, match):
    arguments = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error, match=f"{cls.__name__}: {match}"):
        cls(**arguments)


@pytest.mark.parametrize("cls", [fw.LSTM, fw.GRU], ids=IDS)
def test_dropout_with_one_layer_warns_like_torch(cls):
    with pytest.warns(UserWarning, match="dropout") as record:
        cls(3, 4, dropout=0.2)
    assert record[0].filename == __file__  # the user's line, as torch's warnings point at it


@pytest.mark.parametrize(
    ("cls", "x", "hx", "match"),
    [
        (fw.LSTM, (5, 2, 4), None, "expected input with input_size = 3"),
        (fw.GRU, (2, 5, 2, 3), None, "expected input to be 2-D or 3-D"),
        (fw.GRU, (5, 2, 3), (2, 2, 4), r"expected hx of shape \(1, 2, 4\)"),
        (fw.LSTM, (5, 3), ((1, 4), (1, 2, 4)), r"expected c_0 of shape \(1, 4\)"),
    ],
)
def test_bad_inputs_and_states_are_rejected(cls, x, hx, match):
    if hx is not None:
        hx = tuple(torch.zeros(s) for s in hx) if isinstance(hx[0], tuple) else torch.zeros(hx)
    with pytest.raises(ValueError, match=f"{cls.__name__}: {match}"):
        cls(3, 4)(torch.zeros(x), hx)


def test_lstm_state_must_be_a_pair():
    with pytest.raises(TypeError, match=r"LSTM: expected hx to be a pair \(h_0, c_0\)"):
        fw.LSTM(3, 4)(torch.zeros(5, 2, 3), torch.zeros(1, 2, 4))


@pytest.mark.parametrize("cls", [fw.LSTM, fw.GRU], ids=IDS)
def test_backward_checks_its_gradients(cls):
    m = cls(3, 4)
    with pytest.raises(ValueError, match=f"{cls.__name__}: backward called before forward"):
        m.backward(torch.zeros(5, 2, 4))
    m(torch.zeros(5, 2, 3))
    with pytest.raises(ValueError, match=f"{cls.__name__}: expected grad_output"):
        m.backward(torch.zeros(5, 2, 3))
    wrong = torch.zeros(2, 2, 4)
    with pytest.raises((ValueError, TypeError), match=f"{cls.__name__}: expected grad_hidden"):
        m.backward(torch.zeros(5, 2, 4), (wrong, wrong) if cls is fw.LSTM else wrong)
