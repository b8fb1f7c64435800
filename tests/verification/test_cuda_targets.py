"""check_gradients on the GPU: every kind of target, every dtype, and the bug classes it must catch there."""

import pytest
import torch
from test_bug_classes import (
    AccumulatesInBfloat16,
    AccumulatesInRandomOrder,
    LayerNorm,
    Matmul,
    ReadsUpstreamAsContiguous,
    Softmax,
    layer_norm,
    randn,
)
from test_complex import ComplexProduct, ProductWithoutConjugate, product, z128

import framework as fw
from verification import check_gradients

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cuda(*shape, seed=0, dtype=torch.float64):
    return randn(*shape, seed=seed, dtype=dtype).cuda()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_correct_functions_pass_on_the_gpu_in_every_dtype(dtype):
    assert check_gradients(Softmax, cuda(6, 12, dtype=dtype), reference=lambda x: x.softmax(-1)).ok
    assert check_gradients(LayerNorm, cuda(6, 12, dtype=dtype), reference=layer_norm).ok


def test_a_reference_module_built_on_the_cpu_follows_the_inputs_to_the_gpu():
    module = fw.Linear(5, 3).to(device="cuda", dtype=torch.float64)
    assert check_gradients(module, cuda(4, 5), reference=torch.nn.Linear(5, 3)).ok


def test_bug_classes_are_caught_on_the_gpu():
    x, w = cuda(512, 8, dtype=torch.bfloat16), cuda(8, 4, seed=1, dtype=torch.bfloat16)
    assert not check_gradients(AccumulatesInBfloat16, x, w, reference=lambda a, b: a @ b)["low_precision"].ok
    assert check_gradients(Matmul, x, w, reference=lambda a, b: a @ b).ok
    assert not check_gradients(ReadsUpstreamAsContiguous, cuda(4, 3))["layouts"].ok
    assert not check_gradients(AccumulatesInRandomOrder, cuda(64, 3), cuda(3, 2, seed=1))["determinism"].ok


def test_the_rounding_noise_of_a_reference_on_the_gpu_is_measured_as_on_the_cpu():
    # A LayerNorm case over three values far from zero (|mean| / std about 8): its input gradient
    # cancels, and both computations err by about that conditioning times the unit round-off, which
    # only the measured noise allows for. Its noise estimate once mixed CPU and CUDA tensors and fell
    # back to the bare rounding bound, and the twin check failed on the GPU alone.
    x = torch.tensor([[-2.0660701368835532, -2.0022314560749694, -1.520417255101698]], dtype=torch.float64)
    g = torch.tensor([[-0.9187220715545735, 0.13713351065395513, -0.9124741551967064]], dtype=torch.float64)
    reports = {}
    for device in ("cpu", "cuda"):
        module = fw.LayerNorm(3).to(device=device, dtype=torch.float64)
        module.weight.copy_(torch.tensor([-0.04716446250677109, -0.29916176199913025, -0.3416759967803955]))
        module.bias.copy_(torch.tensor([0.6787415742874146, -0.48262789845466614, -0.0556318573653698]))
        reports[device] = check_gradients(
            module, x.to(device), reference=torch.nn.LayerNorm(3), grad_output=g.to(device), checks=["twin"]
        )
    for device, report in reports.items():
        assert report.ok, f"{device}: {report}"
        assert not any("rounding noise not measured" in note for note in report.notes), report.notes


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=str)
def test_complex_functions_are_checked_on_the_gpu(dtype):
    a, b = z128(4, 3).to("cuda", dtype), z128(4, 3, seed=1).to("cuda", dtype)
    assert check_gradients(ComplexProduct, a, b, reference=product).ok
    assert not check_gradients(ProductWithoutConjugate, a, b, reference=product).ok


def test_forward_mode_and_batched_passes_are_checked_on_the_gpu():
    from test_batched import Sine as VmappedSine
    from test_batched import SineBackwardReadsAValue
    from test_forward_mode import Sine, SineJvpOffInOneElement

    x = cuda(3, 4)
    assert check_gradients(Sine, x)["forward_mode"].ok
    assert not check_gradients(SineJvpOffInOneElement, x)["forward_mode"].ok
    assert check_gradients(VmappedSine, x)["batched"].ok
    assert not check_gradients(SineBackwardReadsAValue, x)["batched"].ok
