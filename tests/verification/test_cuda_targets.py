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
