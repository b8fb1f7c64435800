"""Under torch.vmap (jacrev, hessian, per-sample gradients), a Function's backward and forward agree
with themselves sample by sample, or the check says what broke."""

import torch

import framework as fw
from verification import check_gradients


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class Sine(torch.autograd.Function):
    """y = sin x, with the vmap rule torch derives."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.sin()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()


class SineBackwardReadsAValue(Sine):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        scale = 1.0 if float(g.abs().max()) < 1e300 else 0.0  # .item(): no batching rule
        return g * x.cos() * scale


class SineBackwardWritesIntoABuffer(Sine):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        out = torch.empty_like(x)  # unbatched: a batch of gradients cannot be copied into it
        out.copy_(g * x.cos())
        return out


class SineWithAWrongVmapRule(Sine):
    generate_vmap_rule = False  # its own rule instead

    @staticmethod
    def vmap(info, in_dims, x):
        return x[0].sin().expand_as(x), 0  # the first sample's result for every sample


class OldStyleSineReadsAValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos() * float(g.abs().max() < 1e300)


def test_a_function_with_a_vmap_rule_passes():
    report = check_gradients(Sine, x64(3, 4))
    assert report["batched"].status == "passed", str(report)


def test_a_backward_that_reads_a_value_fails_under_vmap_and_says_how_it_was_called():
    report = check_gradients(SineBackwardReadsAValue, x64(3, 4))
    assert report["finite_differences"].ok and not report["batched"].ok
    assert "is_grads_batched=True" in report["batched"].detail and "aten::item" in report["batched"].detail


def test_a_backward_that_writes_a_batch_into_an_unbatched_buffer_fails():
    assert not check_gradients(SineBackwardWritesIntoABuffer, x64(3, 4))["batched"].ok


def test_a_vmap_rule_that_gives_every_sample_the_first_ones_result_fails():
    report = check_gradients(SineWithAWrongVmapRule, x64(3, 4))
    assert report["finite_differences"].ok and not report["batched"].ok
    detail = report["batched"].detail
    assert "vmapped forward" in detail and "[sample " in detail and "[sample 0]" not in detail  # a later sample


def test_without_declared_vmap_support_it_runs_only_when_asked():
    assert check_gradients(OldStyleSineReadsAValue, x64(3))["batched"].status == "not applicable"
    asked = check_gradients(lambda x: OldStyleSineReadsAValue.apply(x), x64(3), checks=["batched"])["batched"]
    assert not asked.ok and "aten::item" in asked.detail


def test_a_callable_of_torch_operations_passes_when_asked():
    assert check_gradients(lambda x: x.softmax(-1), x64(3, 4), checks=["batched"])["batched"].status == "passed"


def test_a_random_target_is_inconclusive_never_passed():
    report = check_gradients(lambda x: x * torch.rand_like(x), x64(3, 4), checks=["batched"])
    assert report["batched"].status == "inconclusive"


def test_a_hand_written_module_is_not_applicable():
    assert check_gradients(fw.Tanh(), x64(3), checks=["batched"])["batched"].status == "not applicable"


class Scale(torch.autograd.Function):
    """y = x w (w broadcast over the rows);   dL/dx = g w, dL/dw = sum over rows of g x."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w):
        return x * w

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, (g * x).sum(0)


class ScaleParameterGradientIntoABuffer(Scale):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        grad_w = torch.empty_like(w)
        grad_w.copy_((g * x).sum(0))  # fine one sample at a time; a batch does not fit
        return g * w, grad_w


class ScaleModule(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function
        self.weight = torch.nn.Parameter(x64(4, seed=3))

    def forward(self, x):
        return self.function.apply(x, self.weight)


def test_a_modules_per_sample_parameter_gradients_are_checked_when_asked():
    assert check_gradients(ScaleModule(Scale), x64(3, 4), checks=["batched"])["batched"].status == "passed"
    report = check_gradients(ScaleModule(ScaleParameterGradientIntoABuffer), x64(3, 4), checks=["batched"])
    assert not report["batched"].ok
