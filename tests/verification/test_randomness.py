"""Targets that draw random numbers: the verifier fixes the randomness it can reach, and never passes
a gradient that finite differences of a changing function could not check."""

import torch

from verification import check_gradients


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class DropoutWithItsOwnGenerator(torch.autograd.Function):
    """Dropout whose mask comes from a generator of its own (as a kernel's Philox offset that moves
    on every call): each call draws another mask, out of the verifier's reach. Its backward forgets
    the mask."""

    generator = torch.Generator().manual_seed(1)

    @staticmethod
    def forward(ctx, x):
        keep = torch.rand(x.shape, generator=DropoutWithItsOwnGenerator.generator, dtype=x.dtype) > 0.5
        return x * keep * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


def test_a_forward_that_changes_between_calls_on_the_same_inputs_leaves_finite_differences_inconclusive():
    report = check_gradients(DropoutWithItsOwnGenerator, x64(2, 2), nondet_tol=10.0)
    assert not report.ok
    assert report["finite_differences"].status == "inconclusive"
    assert "two evaluations of the forward at the same inputs differ" in report["finite_differences"].inconclusive


def test_a_forward_that_updates_the_state_it_reads_is_inconclusive_and_named_as_such():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = torch.nn.utils.spectral_norm(torch.nn.Linear(4, 3).double())  # a power iteration per call
    report = check_gradients(layer, x64(5, 4))
    assert report["finite_differences"].status == "inconclusive"
    assert "updates state its output depends on" in report["finite_differences"].inconclusive
