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

LAYER_NORM = FusedLayerNorm.verification_spec


def test_the_examples_declare_both_ops_in_three_dtypes_with_benchmark_sizes():
    specs = {found.spec.name: found.spec for found in discover([str(EXAMPLES)])}
    assert set(specs) == {"Attention", "FusedLayerNorm"}
    for spec in specs.values():
        assert spec.dtypes == (torch.float64, torch.float32, torch.bfloat16)
        assert {"small", "medium"} <= set(spec.benchmark) and spec.reference is not None


@pytest.mark.parametrize("spec", [LAYER_NORM, ATTENTION], ids=str)
def test_each_example_passes_every_check_in_every_dtype(spec):
    result = run_spec(spec, profile="dev", seed=1, max_examples=5)
    assert result.ok, result.failure["message"]
    assert {"float32", "bfloat16"} <= set(result.checks)


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
