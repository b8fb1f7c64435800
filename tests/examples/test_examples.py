"""The worked examples (examples/): both ops pass in every declared dtype, and the verifier
catches the classic bugs of each when they are planted (by the check that should)."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from verification import given_cases
from verification.discovery import discover
from verification.runner import run_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

from attention import ATTENTION, Attention, attention_backward  # noqa: E402
from layer_norm import FusedLayerNorm  # noqa: E402
from spectral_conv import SpectralConv1d, _adjoint_of_rfft, _first, _gradient_of_modes  # noqa: E402

LAYER_NORM = FusedLayerNorm.verification_spec
SPECTRAL = SpectralConv1d.verification_spec


def test_the_examples_declare_their_ops_and_the_real_ones_benchmark_sizes_in_three_dtypes():
    specs = {found.spec.name: found.spec for found in discover([str(EXAMPLES)])}
    assert set(specs) == {"Attention", "FusedLayerNorm", "SpectralConv1d"}
    for name in ("Attention", "FusedLayerNorm"):
        assert specs[name].dtypes == (torch.float64, torch.float32, torch.bfloat16)
        assert {"small", "medium"} <= set(specs[name].benchmark) and specs[name].reference is not None
    assert specs["SpectralConv1d"].dtypes == (torch.float64, torch.float32)  # no complex bfloat16


@pytest.mark.parametrize("spec", [LAYER_NORM, ATTENTION], ids=str)
def test_each_example_passes_every_check_in_every_dtype(spec):
    result = run_spec(spec, profile="dev", seed=1, max_examples=5)
    assert result.ok, result.failure["message"]
    assert {"float32", "bfloat16"} <= set(result.checks)


def test_the_spectral_convolution_passes_every_check_its_jvp_and_its_batched_passes_included():
    result = run_spec(SPECTRAL, profile="dev", seed=1, max_examples=5)
    assert result.ok, result.failure["message"]
    assert {"float32", "forward_mode", "batched"} <= set(result.checks)


@settings(max_examples=10, deadline=None, database=None)
@given_cases(LAYER_NORM, dtype=torch.float32)
def test_rows_are_normalised(built):  # the README's given_cases example
    x, weight, bias, eps = built.inputs
    y = FusedLayerNorm.apply(x, torch.ones_like(weight), torch.zeros_like(bias), eps)
    assert y.mean(-1).abs().max() < 1e-5


class LayerNormWeightGradientOfTheFirstRow(FusedLayerNorm):
    """dL/dweight from the first row only: wrong whenever there is more than one row."""

    @staticmethod
    def backward(ctx, grad_output):
        dx, dweight, dbias, _ = FusedLayerNorm.backward(ctx, grad_output)
        x, _, mean, rstd = ctx.saved_tensors
        first = (grad_output * (x - mean) * rstd).reshape(-1, x.shape[-1])[0]
        return dx, first.to(dweight.dtype), dbias, None


class LayerNormWithoutTheProjection(FusedLayerNorm):
    """dL/dx = rstd (gy - mean(gy)): forgets the term along xhat (the variance's dependence on x)."""

    @staticmethod
    def backward(ctx, grad_output):
        _, dweight, dbias, _ = FusedLayerNorm.backward(ctx, grad_output)
        _, weight, _, rstd = ctx.saved_tensors
        gy = grad_output * weight
        return rstd * (gy - gy.mean(-1, keepdim=True)), dweight, dbias, None


class AttentionUnmaskedBackward(Attention):
    """Backward recomputes the softmax without the causal mask: wrong only with causal=True."""

    @staticmethod
    def backward(ctx, grad_output):
        q, k, v, p = ctx.saved_tensors
        unmasked = torch.softmax((q.to(p.dtype) @ k.to(p.dtype).transpose(-2, -1)) * ctx.scale, dim=-1)
        return (*attention_backward(q, k, v, unmasked, grad_output, ctx.scale), None)


class AttentionKeyGradientUnscaled(Attention):
    """dK without the 1/sqrt(d) of the scores."""

    @staticmethod
    def backward(ctx, grad_output):
        dq, dk, dv, _ = Attention.backward(ctx, grad_output)
        return dq, dk / ctx.scale, dv, None


@pytest.mark.parametrize(
    ("spec", "broken"),
    [
        (LAYER_NORM, LayerNormWeightGradientOfTheFirstRow),
        (LAYER_NORM, LayerNormWithoutTheProjection),
        (ATTENTION, AttentionUnmaskedBackward),
        (ATTENTION, AttentionKeyGradientUnscaled),
    ],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_a_planted_bug_in_an_example_is_caught_by_the_finite_differences(spec, broken):
    broken_spec = dataclasses.replace(spec, module=broken, name=broken.__name__)
    result = run_spec(broken_spec, profile="dev", shrink=False, dtypes=[torch.float64])
    assert not result.ok and "finite_differences" in result.failure["check"], result.failure


class SpectralConvWithoutTheDoubledModes(SpectralConv1d):
    """gY = rfft(gy) / n: forgets that a mode other than 0 and n/2 stands for its conjugate too."""

    @staticmethod
    def backward(ctx, grad_output):
        spectrum, weight = ctx.saved_tensors
        grad_mixed = _first(torch.fft.rfft(grad_output, dim=-1), weight.shape[-1]) / ctx.n
        grad_weight = (spectrum.conj().unsqueeze(2) * grad_mixed.unsqueeze(1)).sum(0)
        grad_spectrum = (grad_mixed.unsqueeze(1) * weight.conj().unsqueeze(0)).sum(2)
        return _adjoint_of_rfft(grad_spectrum, ctx.n), grad_weight


class SpectralConvWeightGradientWithoutTheConjugate(SpectralConv1d):
    """dL/dW = sum over the batch of X gY, the holomorphic derivative, not torch's conj(X) gY."""

    @staticmethod
    def backward(ctx, grad_output):
        grad_x, _ = SpectralConv1d.backward(ctx, grad_output)
        spectrum, weight = ctx.saved_tensors
        grad_mixed = _gradient_of_modes(grad_output, ctx.n, weight.shape[-1])
        return grad_x, (spectrum.unsqueeze(2) * grad_mixed.unsqueeze(1)).sum(0)


@pytest.mark.parametrize(
    "broken", [SpectralConvWithoutTheDoubledModes, SpectralConvWeightGradientWithoutTheConjugate], ids=str
)
def test_a_planted_bug_in_the_spectral_convolution_is_caught_by_the_finite_differences(broken):
    broken_spec = dataclasses.replace(SPECTRAL, module=broken, name=broken.__name__)
    result = run_spec(broken_spec, profile="dev", shrink=False, dtypes=[torch.float64])
    assert not result.ok and "finite_differences" in result.failure["check"], result.failure


class SpectralConvJvpWithoutTheWeightsTangent(SpectralConv1d):
    """y' = irfft(W X'): forgets the term of the weights' tangent."""

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent):
        _, weight = ctx.saved_tensors
        mixed = torch.einsum("bim,iom->bom", torch.fft.rfft(x_tangent, dim=-1)[..., : weight.shape[-1]], weight)
        return torch.fft.irfft(mixed, n=ctx.n, dim=-1)


def test_a_jvp_that_forgets_the_weights_tangent_is_caught_by_forward_mode():
    broken_spec = dataclasses.replace(
        SPECTRAL, module=SpectralConvJvpWithoutTheWeightsTangent, name="SpectralConvJvpWithoutTheWeightsTangent"
    )
    result = run_spec(broken_spec, profile="dev", shrink=False, dtypes=[torch.float64])
    assert not result.ok and result.failure["check"] == "forward_mode", result.failure
