"""The Module protocol, on every registered module (cases drawn from the verification specs)."""

import functools
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import framework
from verification.specs import SPECS
from verification.twins import twin_of

FEW = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def example(spec):
    """The simplest case of a spec (deterministic: hypothesis' minimal example)."""
    return _minimal(spec.name)


@functools.cache
def _minimal(name):
    spec = next(s for s in SPECS if s.name == name)
    return find(spec.cases(), lambda case: True, settings=settings(database=None))


def run(built, module=None):
    module = module or built.module
    inputs = [x.clone() for x in built.inputs]  # an in-place module overwrites what it is given
    return module(*inputs, built.target) if built.target is not None else module(*inputs)


def backward(module, out, is_loss):
    """A reduced loss's default upstream gradient (1); otherwise a random one of the output's shape
    (a module's output, a loss with reduction='none')."""
    return module.backward() if is_loss and out.dim() == 0 else module.backward(torch.randn_like(out))


# Dropout has no torch.nn twin with the same random stream: its semantics are tested in test_dropout.py.
@pytest.mark.parametrize("spec", [s for s in SPECS if s.twin is not None], ids=str)
@FEW
@given(data=st.data())
def test_forward_equals_the_torch_twin_with_copied_parameters(spec, data):
    built = data.draw(spec.cases()).build(torch.float64)
    twin = twin_of(built.module)
    ours, theirs = run(built), run(built, twin)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@FEW
@given(data=st.data())
def test_param_pairs_have_equal_shapes_and_zero_grad_resets_them(spec, data):
    built = data.draw(spec.cases()).build(torch.float64)
    module = built.module
    out = run(built)
    backward(module, out, built.target is not None)
    for param, grad in module.param():
        assert param.shape == grad.shape
    module.zero_grad()
    assert all(bool((g == 0).all()) for _, g in module.param())


@pytest.mark.parametrize("spec", SPECS, ids=str)
@FEW
@given(data=st.data())
def test_backward_returns_one_gradient_of_the_input_shape(spec, data):
    built = data.draw(spec.cases()).build(torch.float64)
    out = run(built)
    grad = backward(built.module, out, built.target is not None)
    assert isinstance(grad, torch.Tensor) and grad.shape == built.inputs[0].shape


@pytest.mark.parametrize("cls", framework.modules(), ids=lambda c: c.__name__)
def test_train_and_eval_set_the_training_flag(cls):
    spec = next(s for s in SPECS if s.name == cls.__name__)
    module = example(spec).build().module
    assert module.eval() is module and module.training is False
    assert all(not m.training for m in framework.iter_modules(module))
    module.train()
    assert module.training is True


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_backward_before_forward_names_the_module(spec):
    module = example(spec).build().module
    with pytest.raises((ValueError, TypeError), match=type(module).__name__.split("_")[0] or "."):
        module.backward(torch.zeros(1, dtype=torch.float64)) if spec.target is None else module.backward()


@pytest.mark.parametrize("spec", [s for s in SPECS if s.target is None], ids=str)
def test_grad_output_of_the_wrong_shape_is_rejected(spec):
    built = example(spec).build(torch.float64)
    out = run(built)
    with pytest.raises(ValueError, match="grad_output"):
        built.module.backward(torch.zeros(out.numel() + 1, dtype=torch.float64))


@pytest.mark.parametrize("spec", [s for s in SPECS if s.module(**example(s).constructor_kwargs()).param()], ids=str)
def test_input_dtype_differing_from_the_parameters_is_rejected(spec):
    built = example(spec).build(torch.float64)
    with pytest.raises(TypeError, match="dtype"):
        built.module(*[x.float() for x in built.inputs])


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_to_float32_moves_parameters_and_gradients(spec):
    module = example(spec).build(torch.float64).module
    module.to(dtype=torch.float32)
    assert all(p.dtype == g.dtype == torch.float32 for p, g in module.param())


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_outputs_carry_no_autograd_graph_even_for_inputs_that_require_grad(spec):
    built = example(spec).build(torch.float64)
    inputs = [x.clone().requires_grad_(True) for x in built.inputs]
    module = built.module
    out = module(*inputs, built.target) if built.target is not None else module(*inputs)
    assert out.grad_fn is None
    grad = backward(module, out, built.target is not None)
    assert grad.grad_fn is None


FORBIDDEN = re.compile(r"torch\.nn|from torch import nn|torch\.autograd|requires_grad|\.backward\(\)|functional")


@pytest.mark.parametrize("path", sorted(Path(framework.__file__).parent.rglob("*.py")), ids=lambda p: p.name)
def test_framework_source_uses_no_torch_nn_and_no_autograd(path):
    offending = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not offending, offending


def test_the_registry_lists_concrete_framework_classes_only():
    classes = framework.modules()
    assert framework.Linear in classes and framework.Module not in classes and framework.Loss not in classes
    assert all(c.__module__.startswith("framework.") for c in classes)


def test_a_subclass_defined_outside_the_framework_is_not_registered():
    class Mine(framework.ReLU):
        pass

    assert Mine not in framework.modules()
