"""Large CPU tensors run the multi-operation elementwise formulas block by block (framework/_blocks.py):
the results must be those of the whole-tensor evaluation, element for element (the verifier's cases
are too small to take the blocked path, so this test covers it for every module that has one)."""

import functools

import pytest
import torch

import framework as fw
from framework import _blocks, softmax
from verification.specs import SPECS

BLOCK = 1024  # small blocks, so that small tensors take the blocked path
SIZE = 4 * BLOCK + 123  # blocked, with a last partial block


@functools.cache
def kwargs_of(cls):
    try:
        cls()
        return {}
    except TypeError:  # no defaults for some argument: the spec's simplest case
        spec = next(s for s in SPECS if s.name == cls.__name__)
        return spec.simplest_case().kwargs


def _inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = 6 * torch.rand(SIZE, generator=generator, dtype=torch.float64) - 3
    x[:8] = torch.tensor([0.0, -0.0, 1.0, -1.0, 20.0, 0.5, float("inf"), -float("inf")], dtype=torch.float64)
    return x, torch.randn(SIZE, generator=generator, dtype=torch.float64)


def _run(module, x, g, target=None):
    y = module(x) if target is None else module(x, target)
    return y, (module.backward(g) if target is None else module.backward())


def _blocked(monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK", BLOCK)


def _whole(monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK", 1 << 62)  # nothing is large enough to be blocked


ACTIVATIONS = [cls for cls in fw.modules() if issubclass(cls, fw.Elementwise)]


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}-threads")
def threads(request):
    """torch's intra-op threads for the test (a blocked formula takes a block per thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("cls", ACTIVATIONS, ids=lambda c: c.__name__)
def test_blocked_activation_equals_the_whole_tensor_evaluation(cls, threads, monkeypatch):
    x, g = _inputs()
    _blocked(monkeypatch)
    assert _blocks.blocked(x)
    blocked = _run(cls(**kwargs_of(cls)), x, g)
    _whole(monkeypatch)
    whole = _run(cls(**kwargs_of(cls)), x, g)
    for a, b in zip(blocked, whole):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


LOSSES = [
    (fw.MSELoss, {}),
    (fw.L1Loss, {"reduction": "sum"}),
    (fw.HuberLoss, {}),
    (fw.HuberLoss, {"delta": 0.5, "reduction": "sum"}),
    (fw.SmoothL1Loss, {}),
    (fw.SmoothL1Loss, {"beta": 0.5}),
    (fw.SmoothL1Loss, {"beta": 0.0, "reduction": "sum"}),
]


@pytest.mark.parametrize(("cls", "kwargs"), LOSSES, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
@pytest.mark.parametrize("upstream", [None, 0.75], ids=["default-upstream", "0-d-upstream"])
def test_blocked_loss_sum_equals_the_whole_tensor_sum(cls, kwargs, upstream, threads, monkeypatch):
    """The difference p - t is written and its terms summed a block at a time: the same loss up to
    the order of the partial sums, the same gradient element for element."""
    x, _ = _inputs()
    x = x[8:]  # finite
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_output = None if upstream is None else torch.tensor(upstream, dtype=torch.float64)
    results = []
    for split in (_blocked, _whole):
        split(monkeypatch)
        loss = cls(**kwargs)
        results.append((loss(x, target), loss.backward(grad_output)))
    (blocked_loss, blocked_grad), (whole_loss, whole_grad) = results
    torch.testing.assert_close(blocked_loss, whole_loss, rtol=1e-13, atol=0)  # partial sums: another order
    torch.testing.assert_close(blocked_grad, whole_grad, rtol=0, atol=0)
    torch.testing.assert_close(whole_grad, _reference_gradient(cls, kwargs, x, target, grad_output), rtol=1e-15, atol=0)


@pytest.mark.parametrize(("cls", "kwargs"), LOSSES, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_a_blocked_float32_loss_is_the_float64_loss_to_float32_rounding(cls, kwargs, monkeypatch):
    """In float32 the blocks' terms are summed by dot products (MSE, Huber, SmoothL1): still the
    loss, to within float32's rounding of a sum of this many terms."""
    x, _ = _inputs()
    x = x[8:]
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _blocked(monkeypatch)
    loss = cls(**kwargs)(x.float(), target.float())
    truth = getattr(torch.nn, cls.__name__)(**kwargs)(x.float().double(), target.float().double())
    torch.testing.assert_close(loss.double(), truth, rtol=64 * torch.finfo(torch.float32).eps, atol=0)


def _reference_gradient(cls, kwargs, x, target, grad_output):
    """torch.autograd's dL/dp of the torch loss of the same name (the framework's twin)."""
    x = x.clone().requires_grad_()
    loss = getattr(torch.nn, cls.__name__)(**kwargs)(x, target)
    loss.backward(grad_output)
    return x.grad


@pytest.mark.parametrize(("cls", "kwargs"), LOSSES, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_a_large_loss_keeps_its_difference_in_a_buffer_without_changing_an_earlier_result(cls, kwargs, monkeypatch):
    """On a large input p - t goes into a buffer the loss reuses: a loss value and gradient taken
    before the next call are left as they were, and that call's gradient is its own."""
    _blocked(monkeypatch)
    x, g = _inputs()
    target = torch.zeros_like(x[8:])
    loss = cls(**kwargs)
    first_loss, first_grad = loss(x[8:], target), loss.backward()
    kept = first_loss.clone(), first_grad.clone()
    second_loss, second_grad = loss(g[8:], target), loss.backward()
    assert torch.equal(first_loss, kept[0]) and torch.equal(first_grad, kept[1])
    fresh = cls(**kwargs)
    assert torch.equal(second_loss, fresh(g[8:], target)) and torch.equal(second_grad, fresh.backward())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_a_blocked_half_precision_loss_sums_in_float32_and_rounds_once(dtype, monkeypatch):
    """Partial sums of blocks are float32, as torch accumulates: the terms' sum is rounded once to the
    dtype. Here each block's sum lies just below halfway between two numbers of the dtype: rounded
    block by block, all five would round down, and their total would be one unit off."""
    _blocked(monkeypatch)
    torch.set_num_threads(1)  # one block of BLOCK elements per thread
    block = torch.ones(BLOCK, dtype=dtype)
    block[: BLOCK // 2 - 1] += torch.finfo(dtype).eps  # sum: 1024 + 511 eps, just below 1024 + 1024 eps / 2
    d = block.repeat(5)
    loss = fw.SmoothL1Loss(beta=0.0, reduction="sum")(d, torch.zeros_like(d))  # the sum of |d|
    assert loss.dtype == dtype
    assert loss == d.double().sum().to(dtype)


@pytest.mark.parametrize(
    ("cls", "twin"),
    [
        (fw.MSELoss, torch.nn.MSELoss),
        (fw.L1Loss, torch.nn.L1Loss),
        (fw.HuberLoss, torch.nn.HuberLoss),
        (fw.SmoothL1Loss, torch.nn.SmoothL1Loss),
    ],
    ids=lambda v: v.__name__,
)
def test_a_blocked_float16_mean_is_finite_where_only_the_sum_overflows(cls, twin, monkeypatch):
    """The mean of terms whose sum is beyond float16's range (65504) is divided before it is rounded
    to float16, as torch's: 5 x 1024 + 123 terms of about 16 sum to about 83,000, a mean of about 16."""
    _blocked(monkeypatch)
    generator = torch.Generator().manual_seed(0)
    prediction = (4 + torch.rand(SIZE, generator=generator)).half()
    target = torch.zeros_like(prediction)
    assert _blocks.blocked(prediction)
    loss = cls()(prediction, target)
    expected = twin()(prediction, target)
    assert torch.isfinite(expected) and expected.dtype == loss.dtype == torch.float16
    assert loss == expected


def test_each_thread_gets_a_block_of_its_own(threads, monkeypatch):
    _blocked(monkeypatch)
    x = torch.zeros(8 * BLOCK)
    assert [b.numel() for b in _blocks.blocks(x)] == [threads * BLOCK] * (8 // threads)


@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"elementwise_affine": False}], ids=str)
def test_blocked_layer_norm_equals_the_whole_tensor_evaluation(kwargs, threads, monkeypatch):
    """A few rows at a time (with a last, shorter block): the same output and gradients; the
    parameter gradients add the blocks' column sums, another order of the same sum."""
    generator = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(37, 300, generator=generator, dtype=torch.float64) + 1
    g = torch.randn(37, 300, generator=generator, dtype=torch.float64)
    results = []
    for split in (_blocked, _whole):
        split(monkeypatch)
        module = fw.LayerNorm(300, dtype=torch.float64, **kwargs)
        for _, p, _ in module.named_param():
            p.copy_(torch.rand(p.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5)
        assert (_blocks.row_blocks(x) is not None) == (split is _blocked)
        y = module(x)
        results.append([y, module.backward(g), *(module.grad(name) for name, _, _ in module.named_param())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"elementwise_affine": False}], ids=str)
def test_a_large_layer_norm_output_survives_the_next_call(kwargs, monkeypatch):
    """The large-input path keeps x_hat in a reused buffer: an earlier output is never that buffer."""
    _blocked(monkeypatch)
    module = fw.LayerNorm(300, dtype=torch.float64, **kwargs)
    first_input = torch.randn(37, 300, dtype=torch.float64)
    first = module(first_input)
    kept = first.clone()
    module(torch.randn(37, 300, dtype=torch.float64))
    assert torch.equal(first, kept)


def _first_of_two_calls(module, x, g):
    """The output and input gradient of a forward+backward on x[0], checked unchanged after another on x[1]."""
    y = module(x[0])
    grad = module.backward(g)
    kept = y.clone(), grad.clone()
    module(x[1])
    module.backward(g)
    assert torch.equal(y, kept[0]) and torch.equal(grad, kept[1])
    return y, grad


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_a_large_group_norm_keeps_its_centred_input_in_a_buffer_without_changing_a_result(affine, monkeypatch):
    """The large-input path keeps x - mean in a reused buffer: the same output and gradients as the
    small-input path, and an earlier output and gradient survive the next call."""
    generator = torch.Generator().manual_seed(0)
    x = [3 * torch.randn(3, 8, 13, 17, generator=generator, dtype=torch.float64) + 1 for _ in range(2)]
    g = torch.randn(3, 8, 13, 17, generator=generator, dtype=torch.float64)
    results = []
    for split in (_blocked, _whole):
        split(monkeypatch)
        module = fw.GroupNorm(4, 8, affine=affine, dtype=torch.float64)
        y, grad = _first_of_two_calls(module, x, g)
        results.append([y, grad, *(module.grad(name) for name, _, _ in module.named_param())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("shape", [(6, 8, 11, 13), (600, 8)], ids=["2d", "1d"])
def test_a_large_batch_norm_keeps_its_temporaries_in_buffers_without_changing_a_result(shape, training, monkeypatch):
    """On a large input x - mean and g (x - mean) go into reused buffers: the same output, gradients
    and running statistics as the small-input path, and an earlier output and gradient survive."""
    generator = torch.Generator().manual_seed(0)
    x = [3 * torch.randn(shape, generator=generator, dtype=torch.float64) + 1 for _ in range(2)]
    g = torch.randn(shape, generator=generator, dtype=torch.float64)
    cls = fw.BatchNorm2d if len(shape) == 4 else fw.BatchNorm1d
    results = []
    for split in (_blocked, _whole):
        split(monkeypatch)
        module = cls(8, dtype=torch.float64).train(training)
        y, grad = _first_of_two_calls(module, x, g)
        results.append([y, grad, module.running_mean, module.running_var, module.grad("weight"), module.grad("bias")])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [fw.Softmax, fw.LogSoftmax], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dim", [-1, 2, 1], ids=lambda d: f"dim={d}")
def test_blocked_softmax_forward_and_backward_equal_the_whole_tensor_evaluation(cls, dim, threads, monkeypatch):
    """Along the last dimension of a large input forward and backward run a few rows at a time (with a
    last, shorter block), element for element the whole-tensor formulas; along another, never blocked."""
    generator = torch.Generator().manual_seed(0)
    x = 4 * torch.randn(5, 7, 150, generator=generator, dtype=torch.float64)
    g = torch.randn(5, 7, 150, generator=generator, dtype=torch.float64)
    results = []
    for split in (_blocked, _whole):
        split(monkeypatch)
        module = cls(dim=dim)
        results.append((module(x), module.backward(g)))
    for blocked, whole in zip(*results):
        torch.testing.assert_close(blocked, whole, rtol=0, atol=0)
    monkeypatch.setattr(_blocks, "BLOCK", BLOCK)
    assert (softmax._row_blocks(dim % 3, g, g) is not None) == (dim % 3 == 2)
