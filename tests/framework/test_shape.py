"""Flatten against torch.nn.Flatten: forward, backward and bad inputs."""

import pytest
import torch

import framework as fw

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("shape", "start_dim", "end_dim"),
    [
        ((2, 3, 4, 5), 1, -1),
        ((2, 3, 4, 5), 0, -1),
        ((2, 3, 4, 5), 1, 2),
        ((2, 3, 4, 5), -2, -1),
        ((3,), 0, 0),
        ((2, 3), 1, 1),
    ],
)
def test_flatten_matches_torch_forward_and_backward(device, shape, start_dim, end_dim):
    x = torch.randn(shape, dtype=torch.float64, device=device)
    ours = fw.Flatten(start_dim, end_dim)
    y = ours(x)
    expected = torch.nn.Flatten(start_dim, end_dim)(x)
    assert y.shape == expected.shape and torch.equal(y, expected)
    g = torch.randn(y.shape, dtype=torch.float64, device=device)
    assert torch.equal(ours.backward(g), g.reshape(shape))


def test_flatten_defaults_follow_torch():
    m = fw.Flatten()
    assert (m.start_dim, m.end_dim) == (torch.nn.Flatten().start_dim, torch.nn.Flatten().end_dim)


@pytest.mark.parametrize(("shape", "start_dim", "end_dim"), [((4,), 1, -1), ((2, 3), 0, 5), ((2, 3, 4), 2, 1)])
def test_flatten_rejects_dimensions_outside_the_input(shape, start_dim, end_dim):
    with pytest.raises(ValueError, match="Flatten: expected"):
        fw.Flatten(start_dim, end_dim)(torch.zeros(shape))


def test_flatten_rejects_non_integer_dimensions():
    with pytest.raises(TypeError, match="Flatten: expected start_dim"):
        fw.Flatten(1.0)


def test_flatten_backward_checks_its_argument():
    m = fw.Flatten()
    with pytest.raises(ValueError, match="Flatten: backward called before forward"):
        m.backward(torch.zeros(2, 12))
    m(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"Flatten: expected grad_output .* of shape \(2, 12\)"):
        m.backward(torch.zeros(2, 3, 4))
