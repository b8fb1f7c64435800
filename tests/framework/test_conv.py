"""Conv1d, Conv2d and ConvTranspose2d against their torch.nn twins, and their bad inputs."""

import copy
import itertools

import pytest
import torch

import framework as fw
from framework import _sliding as sliding
from verification.twins import copy_state, twin_of

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]
# torch warns that it copies the input for an asymmetric 'same' padding; the result is what is compared.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")
TOLERANCE = {torch.float64: 1e-11, torch.float32: 2e-4}


@pytest.fixture(autouse=True, params=["indexed", "strided"])
def window_path(request, monkeypatch):
    """Every test runs on both ways of making and scattering windows on the CPU: one indexed
    operation (how small tensors go) and one strided operation per kernel offset (large ones)."""
    monkeypatch.setattr(sliding, "SMALL", 1 << 40 if request.param == "indexed" else -1)
    return request.param


def assert_matches_twin(ours, theirs, x, *extra):
    """Output, input gradient and parameter gradients equal the twin's, for a random upstream gradient."""
    copy_state(ours, theirs)
    leaf = x.clone().requires_grad_(True)
    y, expected = ours(x, *extra), theirs(leaf, *extra)
    assert y.shape == expected.shape
    g = torch.randn_like(expected)
    expected.backward(g)
    diffs = {"output": y - expected, "input grad": ours.backward(g) - leaf.grad}
    for name, p in theirs.named_parameters():
        diffs[name + " grad"] = ours.grad(name) - p.grad
    worst = {k: v.abs().max().item() for k, v in diffs.items()}
    scale = max(1.0, expected.abs().max().item(), leaf.grad.abs().max().item())
    assert max(worst.values()) <= TOLERANCE[x.dtype] * scale, worst


def randomised(module):
    gen = torch.Generator().manual_seed(0)
    for _, p, _ in module.named_param():
        p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-1, 1, generator=gen))
    return module


CONV2D_GRID = [
    dict(kernel_size=k, stride=s, padding=p, dilation=d, groups=g, bias=b)
    for k, s, p, d, (g, b) in itertools.product(
        [3, (2, 3)], [1, (3, 1)], [0, (2, 1), "same", "valid"], [1, 2], [(1, True), (2, False)]
    )
    if not (p == "same" and s != 1)
]


@pytest.mark.parametrize("kwargs", CONV2D_GRID, ids=str)
def test_conv2d_matches_torch_float64(kwargs):
    torch.manual_seed(0)
    ours = randomised(fw.Conv2d(4, 6, **kwargs, dtype=torch.float64))
    theirs = torch.nn.Conv2d(4, 6, **kwargs)
    assert_matches_twin(ours, theirs, torch.randn(2, 4, 7, 8, dtype=torch.float64))


@pytest.mark.parametrize("kwargs", CONV2D_GRID, ids=str)
def test_conv1d_matches_torch_float64(kwargs):
    torch.manual_seed(0)
    kwargs = {k: v[1] if isinstance(v, tuple) else v for k, v in kwargs.items()}
    ours = randomised(fw.Conv1d(4, 6, **kwargs, dtype=torch.float64))
    theirs = torch.nn.Conv1d(4, 6, **kwargs)
    assert_matches_twin(ours, theirs, torch.randn(3, 4, 9, dtype=torch.float64))


PADDING_MODE_GRID = [
    dict(kernel_size=k, stride=s, padding=p, dilation=d, padding_mode=mode)
    for mode, k, s, p, d in itertools.product(
        ["reflect", "replicate", "circular"], [3, (2, 3)], [1, 2], [1, (2, 4), "same"], [1, 2]
    )
    if not (p == "same" and s != 1)
]


@pytest.mark.parametrize("kwargs", PADDING_MODE_GRID, ids=str)
def test_padding_modes_match_torch(kwargs):
    """Reflect, replicate and circular padding copy input entries; their gradient flows back to them."""
    torch.manual_seed(0)
    ours = randomised(fw.Conv2d(4, 6, **kwargs, groups=2, dtype=torch.float64))
    theirs = torch.nn.Conv2d(4, 6, **kwargs, groups=2)
    assert_matches_twin(ours, theirs, torch.randn(2, 4, 5, 6, dtype=torch.float64))
    conv1d = {k: v[1] if isinstance(v, tuple) else v for k, v in kwargs.items()}
    ours = randomised(fw.Conv1d(4, 6, **conv1d, dtype=torch.float64))
    assert_matches_twin(ours, torch.nn.Conv1d(4, 6, **conv1d), torch.randn(2, 4, 5, dtype=torch.float64))


@pytest.mark.parametrize(("mode", "padding"), [("reflect", 5), ("circular", 6)])
def test_copy_padding_beyond_torchs_limit_is_rejected(mode, padding):
    with pytest.raises(ValueError, match=f"Conv1d: expected {mode} padding of at most"):
        fw.Conv1d(1, 1, 3, padding=padding, padding_mode=mode)(torch.zeros(1, 1, 5))


def test_replicate_padding_has_no_size_limit_as_in_torch():
    assert fw.Conv1d(1, 1, 3, padding=9, padding_mode="replicate")(torch.zeros(1, 1, 5)).shape == (1, 1, 21)


def _pairs(*values):
    return [v if isinstance(v, tuple) else (v, v) for v in values]


def _transposed_ok(k, s, p, op, d):
    """torch's rules: output_padding below stride or dilation, and a positive output for a 3x4 input."""
    k, s, p, op, d = _pairs(k, s, p, op, d)
    if any(o >= max(st, dl) for o, st, dl in zip(op, s, d)):
        return False
    return all((n - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 >= 1 for i, n in enumerate((3, 4)))


TRANSPOSED_GRID = [
    dict(kernel_size=k, stride=s, padding=p, output_padding=op, groups=g, bias=g == 1, dilation=d)
    for k, s, p, op, d, g in itertools.product([1, (2, 3)], [1, (3, 2)], [0, (2, 1)], [0, 1], [1, (1, 3)], [1, 2])
    if _transposed_ok(k, s, p, op, d)
]


@pytest.mark.parametrize("kwargs", TRANSPOSED_GRID, ids=str)
def test_conv_transpose2d_matches_torch_float64(kwargs):
    torch.manual_seed(0)
    ours = randomised(fw.ConvTranspose2d(4, 6, **kwargs, dtype=torch.float64))
    theirs = torch.nn.ConvTranspose2d(4, 6, **kwargs)
    assert_matches_twin(ours, theirs, torch.randn(2, 4, 3, 4, dtype=torch.float64))


@pytest.mark.parametrize("output_size", [(9, 9), (10, 10), (1, 2, 9, 10)])
def test_conv_transpose2d_output_size_chooses_output_padding_as_torch(output_size):
    ours = randomised(fw.ConvTranspose2d(4, 2, 3, stride=2, padding=1, dtype=torch.float64))
    theirs = torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1)
    assert_matches_twin(ours, theirs, torch.randn(1, 4, 5, 5, dtype=torch.float64), output_size)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("cls", "kwargs", "shape"),
    [
        (fw.Conv1d, dict(kernel_size=3, stride=2, padding=1, dilation=2, groups=2), (2, 4, 11)),
        (fw.Conv2d, dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2), (2, 4, 9, 8)),
        (fw.Conv2d, dict(kernel_size=4, padding="same", dilation=3, bias=False), (1, 4, 6, 7)),
        (fw.ConvTranspose2d, dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 4, 5)),
        (fw.ConvTranspose2d, dict(kernel_size=(2, 3), stride=1, output_padding=1, dilation=2), (1, 4, 3, 3)),
    ],
)
def test_every_layer_matches_torch_on_each_dtype_and_device(cls, kwargs, shape, dtype, device):
    torch.manual_seed(0)
    ours = randomised(cls(4, 6, **kwargs)).to(device=device, dtype=dtype)
    theirs = getattr(torch.nn, cls.__name__)(4, 6, **kwargs)
    assert_matches_twin(ours, theirs, torch.randn(shape, dtype=dtype, device=device))


@pytest.mark.parametrize(
    ("cls", "shape"),
    [(fw.Conv1d, (6, 2, 3)), (fw.Conv2d, (6, 2, 3, 3)), (fw.ConvTranspose2d, (4, 3, 3, 3))],
)
def test_parameters_have_torch_names_and_shapes(cls, shape):
    m = cls(4, 6, 3, groups=2)
    assert [(n, tuple(p.shape)) for n, p, _ in m.named_param()] == [("weight", shape), ("bias", (6,))]


def test_default_init_is_torchs_bound_and_follows_the_generator():
    def make(seed):
        return fw.Conv2d(3, 5, (2, 4), generator=torch.Generator().manual_seed(seed))

    bound = 1 / (3 * 2 * 4) ** 0.5
    m = make(7)
    assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
    assert m.weight.abs().max() > 0.8 * bound  # drawn over the whole interval, not a narrower one
    assert torch.equal(make(7).weight, m.weight) and not torch.equal(make(8).weight, m.weight)


def test_named_init_scheme_zeroes_the_bias():
    m = fw.ConvTranspose2d(3, 4, 3, init="xavier_uniform", nonlinearity="tanh")
    assert torch.equal(m.bias, torch.zeros(4)) and m.weight.abs().max() > 0


def test_hyper_parameters_are_stored_as_torch_does():
    ours, theirs = fw.Conv2d(2, 4, 3, 2, 1, 1, 2), torch.nn.Conv2d(2, 4, 3, 2, 1, 1, 2)
    for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize(
    ("make", "shape", "match"),
    [
        (lambda: fw.Conv2d(3, 4, 3), (3, 5), "3-D or 4-D"),
        (lambda: fw.Conv1d(3, 4, 3), (2, 3, 5, 5), "2-D or 3-D"),
        (lambda: fw.Conv2d(3, 4, 3), (2, 5, 5), "channels = 3"),
        (lambda: fw.Conv2d(3, 4, 3), (2, 2, 5, 5), "channels = 3"),
        (lambda: fw.ConvTranspose2d(3, 4, 3), (2, 4, 5, 5), "channels = 3"),
        (lambda: fw.Conv2d(3, 4, 3, dilation=2), (1, 3, 4, 9), "dilated kernel"),
        (lambda: fw.Conv1d(3, 4, 5, padding=1), (1, 3, 2), "dilated kernel"),
        (lambda: fw.ConvTranspose2d(3, 4, 1, padding=1), (1, 3, 2, 2), "positive output size"),
    ],
)
def test_bad_inputs_are_rejected_with_the_layer_named(make, shape, match):
    m = make()
    with pytest.raises(ValueError, match=f"{type(m).__name__}: expected .*{match}"):
        m(torch.zeros(shape))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fw.Conv2d(3, 4, 3, groups=2), "in_channels divisible by groups = 2"),
        (lambda: fw.Conv2d(4, 3, 3, groups=2), "out_channels divisible by groups = 2"),
        (lambda: fw.Conv2d(3, 4, 0), "kernel_size >= 1"),
        (lambda: fw.Conv1d(3, 4, 3, stride=0), "stride >= 1"),
        (lambda: fw.Conv2d(3, 4, 3, dilation=(1, 0)), "dilation >= 1"),
        (lambda: fw.Conv2d(3, 4, 3, padding=-1), "padding >= 0"),
        (lambda: fw.Conv2d(3, 4, 3, stride=2, padding="same"), "stride 1 with padding='same'"),
        (lambda: fw.Conv2d(3, 4, 3, padding="full"), "padding to be one of"),
        (lambda: fw.Conv2d(3, 4, 3, padding_mode="mirror"), "padding_mode"),
        (lambda: fw.ConvTranspose2d(3, 4, 3, padding_mode="reflect"), "padding_mode"),
        (lambda: fw.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), "output_padding smaller than stride"),
        (lambda: fw.ConvTranspose2d(3, 4, 3, stride=2, dilation=3, output_padding=3), "output_padding smaller"),
        (lambda: fw.Conv2d(0, 4, 3), "in_channels >= 1"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("value", [(3, 3, 3), 2.5, "3"])
def test_kernel_size_of_the_wrong_type_is_rejected(value):
    with pytest.raises(TypeError, match="Conv2d: expected kernel_size to be an int or a tuple of 2 ints"):
        fw.Conv2d(3, 4, value)


def test_dtype_differing_from_the_weight_is_rejected():
    with pytest.raises(TypeError, match=r"Conv2d: expected input of dtype torch\.float32"):
        fw.Conv2d(3, 4, 3)(torch.zeros(1, 3, 5, 5, dtype=torch.float64))


def test_backward_checks_call_order_and_grad_output_shape():
    m = fw.ConvTranspose2d(3, 4, 3)
    with pytest.raises(ValueError, match="ConvTranspose2d: backward called before forward"):
        m.backward(torch.zeros(1, 4, 7, 7))
    m(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="ConvTranspose2d: expected grad_output"):
        m.backward(torch.zeros(1, 4, 5, 5))


@pytest.mark.parametrize("kwargs", CONV2D_GRID[::5], ids=str)
def test_input_gradient_made_a_few_samples_at_a_time_matches_torch(kwargs, monkeypatch):
    """The input gradient's columns go a chunk of samples at a time through one reused buffer: with
    chunks of one or two samples (a batch of 5, the last chunk short) it is still torch's."""
    torch.manual_seed(0)
    ours = randomised(fw.Conv2d(4, 6, **kwargs, dtype=torch.float64))
    x = torch.randn(5, 4, 7, 8, dtype=torch.float64)
    grad_output = ours(x)
    per_sample = 4 * ours.weight.shape[2:].numel() * grad_output.shape[2:].numel()
    monkeypatch.setattr(sliding, "CHUNK", 2 * per_sample)
    assert sliding.input_grad_chunk(grad_output, ours.weight, kwargs["groups"])[0] == 2
    assert_matches_twin(ours, torch.nn.Conv2d(4, 6, **kwargs), x)


def test_reused_buffers_carry_nothing_from_one_call_to_the_next():
    """The padded canvas and the column buffers are reused: calls with other values and another batch
    size in between leave the result of a call what torch gives for it alone."""
    torch.manual_seed(0)
    ours = randomised(fw.Conv2d(3, 5, 3, padding=(2, 1), dtype=torch.float64))
    theirs = torch.nn.Conv2d(3, 5, 3, padding=(2, 1))
    ours.backward(torch.randn_like(ours(torch.randn(4, 3, 6, 6, dtype=torch.float64) * 100)))
    ours.backward(torch.randn_like(ours(torch.randn(7, 3, 6, 6, dtype=torch.float64) * 100)))
    ours.zero_grad()
    assert_matches_twin(ours, theirs, torch.randn(4, 3, 6, 6, dtype=torch.float64))


@pytest.mark.parametrize("bias", [True, False])
def test_a_reused_buffers_border_and_row_of_ones_are_written_when_it_is_made(bias, monkeypatch):
    """The canvas's zero border and the columns' row of ones (the bias) are written once, when the
    buffer is made, and never by a call: every new floating tensor starts as NaN here (a fresh
    page is often zeros by luck), so a part left unwritten would show in the results."""
    real_new_empty = torch.Tensor.new_empty

    def new_nan(self, *args, **kwargs):
        made = real_new_empty(self, *args, **kwargs)
        return made.fill_(float("nan")) if made.is_floating_point() else made

    monkeypatch.setattr(torch.Tensor, "new_empty", new_nan)
    torch.manual_seed(0)
    ours = randomised(fw.Conv2d(3, 5, 3, padding=(2, 1), bias=bias, dtype=torch.float64))
    theirs = torch.nn.Conv2d(3, 5, 3, padding=(2, 1), bias=bias)
    for batch in (4, 4, 7):  # a new buffer, the same one again, another new one
        ours.zero_grad()
        theirs.zero_grad()
        assert_matches_twin(ours, theirs, torch.randn(batch, 3, 6, 6, dtype=torch.float64))


def test_transposed_convolution_is_the_adjoint_of_convolution():
    """<conv(x), y> = <x, conv_transpose(y)> with the same weight and geometry, no bias."""
    torch.manual_seed(3)
    kw = dict(kernel_size=3, stride=2, padding=1, dilation=2, groups=2, bias=False, dtype=torch.float64)
    conv = randomised(fw.Conv2d(4, 6, **kw))
    transposed = fw.ConvTranspose2d(6, 4, **kw)
    transposed.weight = conv.weight.clone()
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    y = torch.randn_like(conv(x))
    assert torch.allclose((conv(x) * y).sum(), (x * transposed(y, x.shape)).sum(), rtol=1e-12, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_input_on_another_device_than_the_weight_is_rejected():
    with pytest.raises(TypeError, match="Conv2d: expected input on device cpu"):
        fw.Conv2d(3, 4, 3)(torch.zeros(1, 3, 5, 5, device="cuda"))


# -- one sample without its batch dimension, as torch takes it ------------------------------------------------
UNBATCHED = [
    pytest.param(lambda: fw.Conv1d(2, 3, 2, padding=1, groups=1), (2, 5), id="Conv1d"),
    pytest.param(lambda: fw.Conv2d(2, 4, (2, 3), stride=(1, 2), padding="valid", groups=2), (2, 5, 6), id="Conv2d"),
    pytest.param(lambda: fw.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 4, 4), id="Conv2d-reflect"),
    pytest.param(lambda: fw.ConvTranspose2d(2, 3, 3, stride=2, output_padding=1), (2, 3, 4), id="ConvTranspose2d"),
]


@pytest.mark.parametrize(("make", "shape"), UNBATCHED)
def test_one_sample_without_a_batch_dimension_matches_torch_and_the_batch_of_one(make, shape):
    ours = make().to(dtype=torch.float64)
    twin = twin_of(ours)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    y = ours(x)
    g = torch.randn(y.shape, generator=generator, dtype=torch.float64)
    grad = ours.backward(g)
    leaf = x.clone().requires_grad_(True)
    y_ref = twin(leaf)
    y_ref.backward(g)
    assert y.shape == y_ref.shape and grad.shape == x.shape
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-12, atol=1e-13)
    for name, p in twin.named_parameters():
        torch.testing.assert_close(ours.grad(name), p.grad, rtol=1e-12, atol=1e-13)
    batched = copy.deepcopy(ours)
    batched.zero_grad()
    torch.testing.assert_close(batched(x.unsqueeze(0)).squeeze(0), y, rtol=0, atol=0)
    torch.testing.assert_close(batched.backward(g.unsqueeze(0)).squeeze(0), grad, rtol=0, atol=0)


@pytest.mark.parametrize(("make", "shape"), UNBATCHED)
def test_backward_to_params_on_one_sample_without_a_batch_dimension_accumulates_what_backward_does(make, shape):
    ours = make().to(dtype=torch.float64)
    params_only = copy.deepcopy(ours)
    x = torch.randn(shape, dtype=torch.float64)
    g = torch.randn(ours(x).shape, dtype=torch.float64)
    ours.backward(g)
    params_only(x)
    assert params_only.backward_to_params(g) is None
    for name, _, expected in ours.named_param():
        assert torch.equal(params_only.grad(name), expected), name


@pytest.mark.parametrize(("make", "shape"), UNBATCHED)
def test_an_empty_batch_gives_an_empty_output_and_gradient_as_torch(make, shape):
    ours = make().to(dtype=torch.float64)
    x = torch.zeros((0, *shape), dtype=torch.float64)
    y = ours(x)
    assert y.shape == twin_of(ours)(x).shape
    assert ours.backward(torch.zeros_like(y)).shape == x.shape
    assert not ours.grad("weight").any()
