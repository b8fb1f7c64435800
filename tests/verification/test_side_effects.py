"""check_gradients leaves the caller's target, inputs and reference exactly as they were."""

import copy

import torch

import framework as fw
from verification import check_gradients


def snapshot(*tensors):
    return [(t.dtype, t.device, t.detach().clone()) for t in tensors]


def unchanged(before, tensors):
    return all(
        t.dtype == dtype and t.device == device and torch.equal(t.detach(), value)
        for (dtype, device, value), t in zip(before, tensors)
    )


def test_batchnorm_running_statistics_and_parameters_are_untouched():
    module = fw.BatchNorm1d(3)
    x = torch.randn(5, 3, dtype=torch.float64)
    module.to(dtype=torch.float64)
    state = [module.running_mean, module.running_var, *(p for _, p, _ in module.named_param())]
    grads = [g for _, _, g in module.named_param()]
    before, before_grads, before_x = snapshot(*state), snapshot(*grads), snapshot(x)
    assert check_gradients(module, x, reference=torch.nn.BatchNorm1d(3)).ok
    assert unchanged(before, state) and unchanged(before_grads, grads) and unchanged(before_x, [x])


def test_the_reference_keeps_its_dtype_values_and_mode():
    reference = torch.nn.Linear(4, 2).eval()
    before = copy.deepcopy(reference.state_dict())
    check_gradients(
        fw.Linear(4, 2).to(dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64), reference=reference
    )
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in reference.state_dict().items())
    assert not reference.training


def test_a_float32_target_and_its_inputs_stay_float32():
    module = fw.Linear(4, 2)
    x = torch.randn(3, 4)
    check_gradients(module, x, reference=torch.nn.Linear(4, 2))
    assert module.weight.dtype == x.dtype == torch.float32


def test_a_torch_module_target_keeps_its_parameters_and_has_no_grad_left_behind():
    layer = torch.nn.Linear(3, 2)
    before = snapshot(*layer.parameters())
    check_gradients(layer, torch.randn(4, 3))
    assert unchanged(before, list(layer.parameters()))
    assert all(p.grad is None for p in layer.parameters())
