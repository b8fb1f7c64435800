"""The Module protocol, on every registered module (cases drawn from the verification specs)."""

import copy
import functools
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils import _pytree as pytree

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
    return spec.simplest_case()


def run(built, module=None):
    module = module or built.module
    inputs = [x.clone() for x in built.inputs]  # an in-place module overwrites what it is given
    return module(*inputs, built.target) if built.target is not None else module(*inputs)


def backward(module, out, is_loss):
    """A reduced loss's default upstream gradient (1); otherwise one random upstream gradient per
    output, shaped and structured like the outputs (a module's output, a loss with
    reduction='none', MultiheadAttention's (output, weights), LSTM's (output, (h_n, c_n)))."""
    if isinstance(out, torch.Tensor):
        return module.backward() if is_loss and out.dim() == 0 else module.backward(torch.randn_like(out))
    upstream = pytree.tree_map(lambda x: None if x is None else torch.randn_like(x), out)
    return module.backward(*upstream)


def leaves(out):
    """The output tensors of a forward (MultiheadAttention's (output, weights), LSTM's (output, (h_n, c_n)))."""
    return [x for x in pytree.tree_leaves(out) if x is not None]


# Dropout has no torch.nn twin with the same random stream: its semantics are tested in test_dropout.py.
@pytest.mark.parametrize("spec", [s for s in SPECS if s.twin is not None], ids=str)
@FEW
@given(data=st.data())
def test_forward_equals_the_torch_twin_with_copied_parameters(spec, data):
    built = data.draw(spec.cases()).build(torch.float64)
    twin = twin_of(built.module)
    ours, theirs = leaves(run(built)), leaves(run(built, twin))
    assert [x.shape for x in ours] == [x.shape for x in theirs]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)


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


def input_gradients(grad, inputs):
    """backward's result as one entry per input (a lone tensor for a single input)."""
    grads = [grad] if grad is None or isinstance(grad, torch.Tensor) else list(grad)
    assert len(grads) == len(inputs), f"{len(grads)} gradients for {len(inputs)} inputs"
    return grads


@pytest.mark.parametrize("spec", SPECS, ids=str)
@FEW
@given(data=st.data())
def test_backward_returns_one_gradient_per_input_of_its_shape_none_for_indices(spec, data):
    built = data.draw(spec.cases()).build(torch.float64)
    out = run(built)
    grad = backward(built.module, out, built.target is not None)
    for g, x in zip(input_gradients(grad, built.inputs), built.inputs):
        if x.is_floating_point():
            assert isinstance(g, torch.Tensor) and g.shape == x.shape
        else:
            assert g is None


@pytest.mark.parametrize("spec", [s for s in SPECS if s.target is None], ids=str)
@FEW
@given(data=st.data())
def test_backward_to_params_accumulates_what_backward_does_and_returns_none(spec, data):
    built = data.draw(spec.cases()).build(torch.float64)
    twin = copy.deepcopy(built.module)  # the same state, random generators included
    out = run(built)
    run(built, twin)
    upstream = pytree.tree_map(lambda x: None if x is None else torch.randn_like(x), out)
    upstream = upstream if isinstance(upstream, tuple) else (upstream,)
    built.module.backward(*upstream)
    assert twin.backward_to_params(*upstream) is None
    for (name, _, expected), (_, _, got) in zip(built.module.named_param(), twin.named_param(), strict=True):
        assert torch.equal(got, expected), name


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


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_backward_after_a_failed_forward_refuses_rather_than_using_the_forward_before(spec):
    built = example(spec).build(torch.float64)
    out = run(built)
    with pytest.raises((ValueError, TypeError)):
        built.module("not a tensor")
    with pytest.raises(ValueError, match="backward called before forward"):
        backward(built.module, out, spec.target is not None)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.target is None], ids=str)
def test_grad_output_of_the_wrong_shape_is_rejected(spec):
    built = example(spec).build(torch.float64)
    first = leaves(run(built))[0]
    with pytest.raises(ValueError, match="grad_output"):
        built.module.backward(torch.zeros(first.numel() + 1, dtype=torch.float64))


@pytest.mark.parametrize("spec", [s for s in SPECS if s.module(**example(s).constructor_kwargs()).param()], ids=str)
def test_input_dtype_differing_from_the_parameters_is_rejected(spec):
    built = example(spec).build(torch.float64)
    with pytest.raises(TypeError, match="dtype"):
        built.module(*[x.float() for x in built.inputs])  # indices too: float indices are refused


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_to_float32_moves_parameters_and_gradients(spec):
    module = example(spec).build(torch.float64).module
    module.to(dtype=torch.float32)
    assert all(p.dtype == g.dtype == torch.float32 for p, g in module.param())


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_to_moves_parameters_gradients_and_buffers_in_place(spec):
    """The same tensor objects before and after, as torch's Module.to: an optimizer or a user holding
    param()'s pairs keeps updating (reading) the module's own tensors."""
    module = example(spec).build(torch.float64).module
    before = [t for pair in module.param() for t in pair]
    module.to(dtype=torch.float32)
    after = [t for pair in module.param() for t in pair]
    assert len(before) == len(after) and all(a is b for a, b in zip(before, after))
    assert all(t.dtype == torch.float32 for t in after)


def test_an_optimizer_built_before_to_trains_the_moved_model():
    model = framework.Sequential(framework.Linear(3, 4), framework.ReLU(), framework.Linear(4, 2))
    optimizer = framework.optim.SGD(model.param(), lr=0.1)
    model(torch.randn(5, 3))  # a float32 forward first: nothing cached from it may outlive the move
    model.to(dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    first = model[0].weight.clone()
    y = model(x)
    torch.testing.assert_close(y, torch.relu(x @ first.T + model[0].bias) @ model[2].weight.T + model[2].bias)
    loss = framework.MSELoss()
    loss(y, torch.zeros_like(y))
    model.backward(loss.backward())
    optimizer.step()
    torch.testing.assert_close(model[0].weight, first - 0.1 * model[0].grad("weight"))


def test_a_parameter_shared_by_two_modules_stays_shared_through_to():
    first, second = framework.Linear(3, 3), framework.Linear(3, 3)
    second.register_parameter("weight", first.weight)  # tied weights
    framework.Sequential(first, second).to(dtype=torch.float64)
    assert second.weight is first.weight and first.weight.dtype == torch.float64


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_outputs_carry_no_autograd_graph_even_for_inputs_that_require_grad(spec):
    built = example(spec).build(torch.float64)
    inputs = [x.clone().requires_grad_(x.is_floating_point()) for x in built.inputs]
    module = built.module
    out = module(*inputs, built.target) if built.target is not None else module(*inputs)
    assert all(x.grad_fn is None for x in leaves(out))
    grad = backward(module, out, built.target is not None)
    assert all(g is None or g.grad_fn is None for g in input_gradients(grad, inputs))


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
