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


def test_spectral_norm_as_a_parametrization_in_train_mode_is_inconclusive_not_failed():
    """Its power iteration moves the outputs by a few parts in 1e11 per call: finite differences then
    failed its right backward by 1.65 times the tolerance."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.randn(8, 5, dtype=torch.float64)
        layer = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(5, 3).double())
    report = check_gradients(layer, x)
    assert report["finite_differences"].status == "inconclusive", str(report)
    assert "updates state its output depends on" in report["finite_differences"].inconclusive


class DriftingScale(torch.nn.Module):
    """y = w x (1 + 1e-11 k) on its k-th call: a state it updates and reads, moving its outputs by
    far less than any element-by-element comparison of two calls sees, but by more, once divided
    by a finite difference's step, than the differences' tolerance. Its backward (autograd's) is
    right at every call."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.w * (1 + 1e-11 * self.calls)


def test_a_forward_that_drifts_below_what_an_element_shows_is_inconclusive_not_failed():
    report = check_gradients(DriftingScale(), x64(4, 3))
    assert report["finite_differences"].status == "inconclusive", str(report)
    assert "updates state its output depends on" in report["finite_differences"].inconclusive


class SquareWithJitter(torch.autograd.Function):
    """y = x^2 times 1 + 1e-12 N(0, 1), a fresh draw per call from a generator of its own: a kernel
    whose rounding changes from call to call (atomic adds over terms that cancel). Backward right."""

    generator = torch.Generator().manual_seed(5)

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        noise = torch.randn(x.shape, generator=SquareWithJitter.generator, dtype=x.dtype)
        return x * x * (1 + 1e-12 * noise)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x


def test_jitter_beyond_the_rounding_is_inconclusive_unless_the_caller_declares_it_with_nondet_tol():
    undeclared = check_gradients(SquareWithJitter, x64(6, 4))
    assert undeclared["finite_differences"].status == "inconclusive"
    declared = check_gradients(SquareWithJitter, x64(6, 4), nondet_tol=1e-10)
    assert declared["finite_differences"].status == "passed", str(declared)
    assert declared.ok


class SineOffByOnePartInAMillion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos() * (1 + 1e-6)


def noisy(sine):
    """sine(x) times uniform noise from a generator passed as an argument."""
    return lambda x, generator: sine(x) * torch.rand(x.shape, generator=generator, dtype=x.dtype)


def test_a_generator_passed_as_an_argument_is_fixed_on_every_call_and_left_as_it_was():
    generator = torch.Generator().manual_seed(1)
    state = generator.get_state()
    assert check_gradients(noisy(torch.sin), x64(4, 3), generator).ok
    assert torch.equal(generator.get_state(), state)


def test_a_gradient_off_by_one_part_in_a_million_fails_under_fixed_randomness():
    """float32 draws other random numbers than float64: the noise estimate must not take their difference
    for rounding (a tolerance of 1e-3, which would pass this)."""
    report = check_gradients(noisy(SineOffByOnePartInAMillion.apply), x64(4, 3), torch.Generator())
    assert report["finite_differences"].status == "failed"
    dropped = lambda x: torch.nn.functional.dropout(SineOffByOnePartInAMillion.apply(x), 0.3)  # noqa: E731
    assert check_gradients(dropped, x64(4, 3))["finite_differences"].status == "failed"


def test_random_numbers_drawn_in_memory_order_leave_layouts_inconclusive_not_failed():
    """torch's dropout draws its mask in the input's memory order: a transposed input gets another mask."""
    report = check_gradients(lambda x: torch.nn.functional.dropout(x.sin(), 0.3), x64(4, 3))
    assert report["layouts"].status == "inconclusive"
    assert "draws random numbers" in report["layouts"].inconclusive
    assert report["finite_differences"].ok
