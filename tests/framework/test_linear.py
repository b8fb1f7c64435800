"""Linear: torch.nn's shapes and results, and every bad input rejected by name."""

import pytest
import torch

import framework as fw
from framework import ModuleTypeError, ModuleValueError

F64 = torch.float64


def test_weight_and_bias_have_torch_shapes():
    layer = fw.Linear(3, 5)
    assert layer.weight.shape == (5, 3) and layer.bias.shape == (5,)
    assert [p.shape for p, _ in layer.param()] == [(5, 3), (5,)]


def test_bias_false_has_only_a_weight():
    layer = fw.Linear(3, 5, bias=False)
    assert layer.bias is None and len(layer.param()) == 1


def test_forward_and_backward_match_torch_on_leading_dimensions():
    layer = fw.Linear(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    twin = torch.nn.Linear(4, 3).to(F64)
    with torch.no_grad():
        twin.weight.copy_(layer.weight)
        twin.bias.copy_(layer.bias)
    x = torch.randn(2, 5, 4, dtype=F64)
    g = torch.randn(2, 5, 3, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    twin(leaf).backward(g)
    torch.testing.assert_close(layer(x), twin(x).detach(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(layer.backward(g), leaf.grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(layer.grad("weight"), twin.weight.grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(layer.grad("bias"), twin.bias.grad, rtol=1e-13, atol=1e-13)


def test_the_same_generator_seed_gives_the_same_weights_on_every_dtype():
    a = fw.Linear(4, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    b = fw.Linear(4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float32)
    torch.testing.assert_close(a.weight.float(), b.weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_features": 0, "out_features": 2}, "in_features >= 1"),
        ({"in_features": 2, "out_features": -1}, "out_features >= 1"),
        ({"in_features": 2.5, "out_features": 2}, "in_features to be an int"),
        ({"in_features": 2, "out_features": 2, "init": "magic"}, "scheme"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(kwargs, message):
    with pytest.raises((ModuleValueError, ModuleTypeError), match=message):
        fw.Linear(**kwargs)


def test_a_wrong_feature_size_names_the_module_and_both_sizes():
    with pytest.raises(ModuleValueError, match=r"Linear: expected input with in_features = 3.*\(4, 2\)"):
        fw.Linear(3, 2)(torch.zeros(4, 2))


def test_an_integer_input_is_a_type_error():
    with pytest.raises(ModuleTypeError, match="floating-point"):
        fw.Linear(3, 2)(torch.zeros(4, 3, dtype=torch.int64))


def test_a_non_tensor_input_is_a_type_error():
    with pytest.raises(ModuleTypeError, match=r"torch\.Tensor"):
        fw.Linear(3, 2)([[1.0, 2.0, 3.0]])


def test_an_input_of_another_dtype_than_the_weights_is_a_type_error():
    with pytest.raises(ModuleTypeError, match=r"dtype torch\.float64"):
        fw.Linear(3, 2, dtype=F64)(torch.zeros(4, 3))


def test_assigning_a_weight_of_the_wrong_shape_is_rejected():
    layer = fw.Linear(3, 2)
    with pytest.raises(ModuleValueError, match="weight of shape"):
        layer.weight = torch.zeros(3, 2)
