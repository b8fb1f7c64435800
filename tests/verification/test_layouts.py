"""The same values in another memory layout give the same results: transposed, channels_last,
strided, and contiguous at a storage offset (a slice of a larger buffer), for inputs and upstream
gradients alike; a layout that breaks the target is named, with the tensors that break it alone."""

import pytest
import torch
import torch.nn.functional as F

import framework as fw
from verification import check_gradients


def x64(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def kernel_view(t):
    """What a kernel sees when its wrapper makes ``t`` contiguous and passes the pointer of
    ``t.untyped_storage()``, forgetting ``t.storage_offset()``: the classic wrapper bug."""
    t = t.contiguous()
    return torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0, (t.numel(),), (1,)).view(t.shape)


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x


class SquareIgnoringStorageOffset(Square):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * kernel_view(g) * kernel_view(x)


class SquareIgnoringUpstreamOffset(Square):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * kernel_view(g) * x


def wrong_when(condition):
    """Square whose backward is 1% off when ``condition(x)`` holds for its saved input."""

    class Wrong(Square):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * g * x * (1.01 if condition(x) else 1.0)

    return Wrong


def test_a_backward_that_ignores_the_storage_offset_fails_naming_the_offset_layout():
    report = check_gradients(SquareIgnoringStorageOffset, x64(4, 6))
    assert report["finite_differences"].ok  # contiguous at offset 0: right
    result = report["layouts"]
    assert result.status == "failed"
    assert "(offset)" in result.detail and "storage offset" in result.detail
    assert "each of input[0], the upstream gradient of output alone" in result.detail


def test_a_backward_that_ignores_only_the_upstream_gradients_offset_is_named_for_that_gradient():
    result = check_gradients(SquareIgnoringUpstreamOffset, x64(4, 6))["layouts"]
    assert result.status == "failed"
    assert "fails with the upstream gradient of output alone" in result.detail


def test_a_single_element_input_still_gets_the_offset_layout():
    result = check_gradients(SquareIgnoringStorageOffset, x64())["layouts"]
    assert result.status == "failed" and "(offset)" in result.detail


def test_the_target_receives_inputs_and_upstream_gradients_at_a_storage_offset():
    seen = []

    class Records(Square):
        @staticmethod
        def forward(ctx, x):
            seen.append(("input", x.storage_offset(), x.is_contiguous()))
            return Square.forward(ctx, x)

        @staticmethod
        def backward(ctx, g):
            seen.append(("grad_output", g.storage_offset(), g.is_contiguous()))
            return Square.backward(ctx, g)

    assert check_gradients(Records, x64(3, 4), checks=["layouts"])["layouts"].status == "passed"
    assert ("input", 1, True) in seen and ("grad_output", 1, True) in seen


def test_a_4d_input_goes_in_channels_last():
    channels_last = wrong_when(lambda x: not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last))
    result = check_gradients(channels_last, x64(2, 3, 4, 5))["layouts"]
    assert result.status == "failed"
    assert "input[0].grad (channels_last)" in result.detail
    assert "fails with input[0] alone" in result.detail


def test_a_matrix_with_a_trailing_dimension_of_one_still_goes_in_transposed():
    # (6, 4, 1): swapping the last two dimensions would leave it contiguous; the last two of more than
    # one element are swapped instead.
    wrong = wrong_when(lambda x: x.stride(-2) != x.shape[-1] and x.stride(-1) == 1)
    assert "(transposed)" in check_gradients(wrong, x64(6, 4, 1))["layouts"].detail


@pytest.mark.parametrize(
    "target, inputs",
    [
        (Square, (x64(4, 6),)),
        (Square, (x64(),)),
        (torch.matmul, (x64(3, 4), x64(4, 2, seed=1))),
        (lambda x, w: F.conv2d(x, w, padding=1), (x64(2, 3, 5, 5), x64(4, 3, 3, 3, seed=1))),
        (fw.Conv2d(3, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), (x64(2, 3, 5, 5),)),
        (
            lambda z: (z * z.conj()).real,
            (torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.complex128),),
        ),
    ],
    ids=["Function", "0-d", "matmul", "conv2d", "framework Conv2d", "complex"],
)
def test_correct_targets_pass_in_every_layout(target, inputs):
    result = check_gradients(target, *inputs, checks=["layouts"])["layouts"]
    assert result.status == "passed", result.detail
