"""Deliberately wrong modules and optimizers: the verifier must catch every one.

Each mutant subclasses a framework class and reintroduces one classic mistake of
hand-written backward passes. Mutants are defined outside ``framework`` so the registry
never lists them; ``python -m verification --only NAME`` runs one, ``--mutants`` runs all
and reports the mutation score (caught / total).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import framework as fw
from framework import optim
from framework.attention import AttentionContext

from .runner import PROFILES, SpecResult, run_spec
from .spec import Spec
from .specs import SPECS
from .specs.attention import AttentionCase
from .specs.recurrent import GRUCase, LSTMCase


@dataclass(frozen=True)
class Mutant:
    target: str  # the spec (module) or optimizer it corrupts
    cls: type
    description: str

    @property
    def name(self) -> str:
        return self.cls.__name__


# -- Linear -------------------------------------------------------------------------------------------
class LinearWrongScale(fw.Linear):
    def backward(self, grad_output: Tensor) -> Tensor:
        return 2 * super().backward(grad_output)


class LinearOffByOnePartInAMillion(fw.Linear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.grad("weight").add_(
            1e-6 * (grad_output.reshape(-1, self.out_features).T @ self._saved["x"].reshape(-1, self.in_features))
        )
        return super().backward(grad_output)


class LinearWrongSignBias(fw.Linear):
    def backward(self, grad_output: Tensor) -> Tensor:
        grad = super().backward(grad_output)
        if self.bias is not None:
            self.grad("bias").sub_(2 * grad_output.reshape(-1, self.out_features).sum(0))
        return grad


class LinearMisindexedWeightGrad(fw.Linear):
    """dL/dW computed as x^T g (the transpose) and reshaped into W's shape."""

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._saved["x"].reshape(-1, self.in_features)
        g = grad_output.reshape(-1, self.out_features)
        self.grad("weight").add_((x.T @ g).reshape(self.out_features, self.in_features))
        if self.bias is not None:
            self.grad("bias").add_(g.sum(0))
        return grad_output @ self.weight


class LinearMissingBatchSum(fw.Linear):
    """The bias gradient takes the first sample only: wrong only when batch > 1."""

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._saved["x"].reshape(-1, self.in_features)
        g = grad_output.reshape(-1, self.out_features)
        self.grad("weight").add_(g.T @ x)
        if self.bias is not None:
            self.grad("bias").add_(g[0])
        return grad_output @ self.weight


class LinearOverwritesGradient(fw.Linear):
    """Assigns the parameter gradients instead of accumulating them."""

    def backward(self, grad_output: Tensor) -> Tensor:
        for _, _, g in self.named_param():
            g.zero_()
        return super().backward(grad_output)


class LinearResetsGradientsInForward(fw.Linear):
    """Zeroes its parameter gradients in forward: over two forward/backward pairs (a gradient
    accumulated over two mini-batches) only the second pair's is left."""

    def forward(self, x: Tensor) -> Tensor:
        for _, _, g in self.named_param():
            g.zero_()
        return super().forward(x)


# -- activations ----------------------------------------------------------------------------------------
class ReLUForgetsUpstream(fw.ReLU):
    def backward(self, grad_output: Tensor) -> Tensor:
        return (self._saved["y"] > 0).to(grad_output.dtype)  # y > 0 iff x > 0, and y survives inplace=True


class TanhWrongDerivative(fw.Tanh):
    def _gradient(self, x: Tensor, y: Tensor, grad_output: Tensor, out: Tensor) -> Tensor:
        return torch.mul(1 - y, grad_output, out=out)


class TanhKeepsTheFirstOutput(fw.Tanh):
    """Keeps what its first forward saved for every later backward (a cache never refreshed): right
    on a fresh copy, the first batch's derivative in training."""

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        first = self.__dict__.setdefault("_first_saved", dict(self._saved_tensors()))
        if first["y"].shape == y.shape:
            self._save_for_backward(**first)
        return y


class SigmoidReturnsItsBuffer(fw.Sigmoid):
    """Returns its output in a buffer it reuses from call to call (its gradients are right): the
    next call overwrites an output the caller kept."""

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        buffer = self.__dict__.get("_buffer")
        if buffer is None or buffer.shape != y.shape or buffer.dtype != y.dtype or buffer.device != y.device:
            buffer = self.__dict__["_buffer"] = torch.empty_like(y)
        return buffer.copy_(y)


class ReLUOverwritesItsInput(fw.ReLU):
    """Writes its output into its input and returns it, unasked (``inplace`` is False): its gradients
    are right, but in a network the layer before it would read what it kept for backward overwritten."""

    def forward(self, x: Tensor) -> Tensor:
        return x.copy_(super().forward(x))


class SigmoidOneWrongElement(fw.Sigmoid):
    """Right everywhere except the last element, off by 0.1%."""

    def backward(self, grad_output: Tensor) -> Tensor:
        grad = super().backward(grad_output).clone()
        grad.view(-1)[-1] *= 1.001
        return grad


class LeakyReLUForwardAndBackwardBothWrong(fw.LeakyReLU):
    """Uses twice the slope in forward *and* backward: self-consistent, so only the twin can tell."""

    def _forward_and_derivative(self, x: Tensor, y: Tensor, derivative: Tensor) -> None:
        derivative.copy_(torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 2 * self.negative_slope)))
        torch.mul(x, derivative, out=y)  # backward multiplies dL/dy by the same doubled slope


class SoftplusIgnoresBeta(fw.Softplus):
    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._saved["x"]
        return grad_output * torch.sigmoid(x)


# -- losses ---------------------------------------------------------------------------------------------
class MSELossForgetsMean(fw.MSELoss):
    """Drops the 1/N of reduction='mean': wrong only when N > 1 and reduction is 'mean'."""

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        diff = self._saved["diff"]
        return self._upstream(grad_output, diff) * 2 * diff


class CrossEntropyForgetsUpstream(fw.CrossEntropyLoss):
    """Backward with an upstream gradient of ones, whatever grad_output is."""

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        if self.reduction == "none":
            return super().backward(torch.ones_like(grad_output))
        return super().backward(None)


# -- spatial and stateful -----------------------------------------------------------------------------
class Conv2dWrongWhenStrided(fw.Conv2d):
    """Input gradient lost for every output row but the first when stride > 1 (a classic
    scatter-back bug), emulated by zeroing the gradient past the first stride."""

    def backward(self, grad_output: Tensor) -> Tensor:
        grad = super().backward(grad_output)
        if max(self.stride) > 1:
            grad = grad.clone()
            grad[..., self.stride[0] :, :] = 0
        return grad


class Conv2dWrongWhenDilated(fw.Conv2d):
    """Weight gradient computed as if dilation were 1 (emulated: scaled when dilation > 1)."""

    def backward(self, grad_output: Tensor) -> Tensor:
        before = self.grad("weight").clone()
        grad = super().backward(grad_output)
        if max(self.dilation) > 1:
            self.grad("weight").copy_(before + 0.5 * (self.grad("weight") - before))
        return grad


class Conv1dWrongSignWeight(fw.Conv1d):
    def backward(self, grad_output: Tensor) -> Tensor:
        before = self.grad("weight").clone()
        grad = super().backward(grad_output)
        self.grad("weight").copy_(2 * before - self.grad("weight"))
        return grad


class MaxPool2dGradientToFirstElement(fw.MaxPool2d):
    """Routes each window's gradient to the window's first element instead of its maximum
    (emulated by shifting the gradient to the top-left neighbour)."""

    def backward(self, grad_output: Tensor) -> Tensor:
        grad = super().backward(grad_output)
        return torch.roll(grad, shifts=(-1, -1), dims=(-2, -1))


class BatchNorm1dWrongEvalBackward(fw.BatchNorm1d):
    """Eval mode: backward through batch statistics, as if still training (the eval-mode
    output does not depend on the batch, so the extra terms are wrong)."""

    def backward(self, grad_output: Tensor) -> Tensor:
        if self.training:
            return super().backward(grad_output)
        rank = grad_output.dim()
        dims = [0, *range(2, rank)]
        shape = [1, self.num_features] + [1] * (rank - 2)
        grad = super().backward(grad_output)
        return grad - grad.mean(dims).reshape(shape)


class BatchNorm2dBiasedRunningVariance(fw.BatchNorm2d):
    """Updates running_var with the biased batch variance instead of the unbiased one."""

    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        super()._update_running_stats(mean, var * (n - 1) / n, n)


class DropoutForgetsRescale(fw.Dropout):
    """Backward multiplies by the 0/1 mask without the 1/(1-p) factor."""

    def backward(self, grad_output: Tensor) -> Tensor:
        mask = self._saved["mask"]
        return grad_output if mask is None else grad_output * (mask != 0).to(grad_output.dtype)


class UpsampleAveragesBlocks(fw.Upsample):
    """Backward averages each block of copies instead of summing it."""

    def backward(self, grad_output: Tensor) -> Tensor:
        saved = self._saved["sources"], self._saved["shape"]
        grad = super().backward(grad_output)
        if saved[0] is None:  # interpolation modes have no blocks of copies
            return grad
        for dim, (index, size) in enumerate(zip(saved[0], saved[1][2:])):
            view = [1] * grad.dim()
            view[2 + dim] = -1
            grad = grad / torch.bincount(index, minlength=size).clamp(min=1).reshape(view).to(grad.dtype)
        return grad


# -- per-sample normalisation ----------------------------------------------------------------------------
class LayerNormWithoutMeanTerm(fw.LayerNorm):
    """Backward forgets that the mean depends on x: no - mean(g_hat) term."""

    def _input_gradient(self, g: Tensor, x_hat: Tensor, inv_std: Tensor, mean_g: Tensor, mean_gx: Tensor) -> Tensor:
        g_hat = g if self.weight is None else g * self.weight.reshape(-1)
        return torch.addcmul(g_hat, x_hat, mean_gx, value=-1).mul_(inv_std)


class GroupNormStatisticsPerChannel(fw.GroupNorm):
    """Backward takes the mean terms over each channel instead of over its group (right only
    with one channel per group)."""

    def _group_means(self, per_channel: Tensor, positions: int) -> Tensor:
        return per_channel / positions


class RMSNormTreatsRmsAsConstant(fw.RMSNorm):
    """Backward treats the root mean square as a constant: dL/dx = g_hat / rms."""

    def _input_gradient(self, g_hat: Tensor, x_hat: Tensor, inv_rms: Tensor, mean_gx: Tensor) -> Tensor:
        return g_hat * inv_rms


class SoftmaxDiagonalOnly(fw.Softmax):
    """Backward keeps the Jacobian's diagonal y (1 - y) and drops the -y_i y_j terms."""

    def backward(self, grad_output: Tensor) -> Tensor:
        y = self._saved["y"]
        return grad_output * y * (1 - y)


class LogSoftmaxDiagonalOnly(fw.LogSoftmax):
    """Backward keeps the Jacobian's diagonal 1 - softmax and drops the sum over the other outputs."""

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * (1 - self._saved["y"].exp())


class EmbeddingOverwritesRepeatedRows(fw.Embedding):
    """weight.grad[index] = g (an assignment): a row that occurs several times keeps one
    occurrence's gradient instead of their sum."""

    def _scatter_rows(self, indices: Tensor, rows: Tensor) -> None:
        scattered = torch.zeros_like(self.grad("weight"))
        scattered[indices] = rows
        self.grad("weight").add_(scattered)


class AttentionKeyGradientWithoutScale(AttentionCase):
    """dL/dK = dL/dscores^T Q, without the 1/sqrt(d) of the scores (right only when d = 1)."""

    def _attention_backward(
        self, grad_heads: Tensor, context: AttentionContext, grad_weights: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        grad_query, grad_key, grad_value = super()._attention_backward(grad_heads, context, grad_weights)
        return grad_query, grad_key / context.scale, grad_value


class LSTMGradientStopsAtOneStep(LSTMCase):
    """Backpropagation through one time step only: dL/dh and dL/dc are not carried to step t - 1."""

    def _step_backward(
        self, step: dict[str, Tensor], dh: Tensor, dc: Tensor | None, w_hh: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        d_input, d_hidden, dh_prev, dc_prev = super()._step_backward(step, dh, dc, w_hh)
        return d_input, d_hidden, torch.zeros_like(dh_prev), torch.zeros_like(dc_prev)


class GRUResetGateOnTheWrongSide(GRUCase):
    """dL/dh_{t-1} through the candidate n as (dn W_hn) * r, the formula of the GRU variant whose r
    multiplies h before W_hn, instead of torch's (dn * r) W_hn."""

    def _step_backward(
        self, step: dict[str, Tensor], dh: Tensor, dc: Tensor | None, w_hh: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, None]:
        d_input, d_hidden, _, _ = super()._step_backward(step, dh, dc, w_hh)
        h = self.hidden_size
        dr_dz, dn = d_input[..., : 2 * h], d_input[..., 2 * h :]
        dh_prev = dh * step["z"] + dr_dz @ w_hh[: 2 * h] + (dn @ w_hh[2 * h :]) * step["r"]
        return d_input, d_hidden, dh_prev, None


class TransformerEncoderLayerDropsResidualGradient(fw.TransformerEncoderLayer):
    """Backward forgets the identity path of the residual around self-attention: src gets only the
    gradient through the attention branch."""

    def backward(self, grad_output: Tensor) -> Tensor:
        self._saved_tensors()
        if self.norm_first:
            grad_x = grad_output + self.norm2.backward(self._feedforward_block_backward(grad_output))
            return self.norm1.backward(self._attention_block_backward(grad_x))
        grad_sum = self.norm2.backward(grad_output)
        grad_src = self.norm1.backward(grad_sum + self._feedforward_block_backward(grad_sum))
        return self._attention_block_backward(grad_src)


# -- optimizers -----------------------------------------------------------------------------------------
class SGDIgnoresDampening(optim.SGD):
    def _update(self, param: Tensor, grad: Tensor, state: dict) -> None:
        dampening, self.dampening = self.dampening, 0.0
        try:
            super()._update(param, grad, state)
        finally:
            self.dampening = dampening


class AdamWithoutBiasCorrection(optim.Adam):
    """Skips the bias correction of the second moment."""

    def _update(self, param: Tensor, grad: Tensor, state: dict) -> None:
        beta1, beta2 = self.betas
        state["step"] = state.get("step", 0) + 1
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        m = state.setdefault("exp_avg", torch.zeros_like(param))
        v = state.setdefault("exp_avg_sq", torch.zeros_like(param))
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1 ** state["step"])
        param.addcdiv_(m, v.sqrt().add_(self.eps), value=-step_size)


class RMSpropIgnoresMomentum(optim.RMSprop):
    def _update(self, param: Tensor, grad: Tensor, state: dict) -> None:
        momentum, self.momentum = self.momentum, 0.0
        try:
            super()._update(param, grad, state)
        finally:
            self.momentum = momentum


MUTANTS: list[Mutant] = [
    Mutant("Linear", LinearWrongScale, "every gradient doubled"),
    Mutant("Linear", LinearOffByOnePartInAMillion, "weight gradient wrong by 1e-6 relative"),
    Mutant("Linear", LinearWrongSignBias, "bias gradient with the wrong sign"),
    Mutant("Linear", LinearMisindexedWeightGrad, "weight gradient transposed then reshaped"),
    Mutant("Linear", LinearMissingBatchSum, "bias gradient misses the sum over the batch"),
    Mutant("Linear", LinearOverwritesGradient, "gradients assigned instead of accumulated"),
    Mutant(
        "Linear", LinearResetsGradientsInForward, "gradients zeroed by forward: two forward/backward pairs keep one"
    ),
    Mutant("ReLU", ReLUForgetsUpstream, "forgets to multiply by grad_output"),
    Mutant("Tanh", TanhWrongDerivative, "derivative 1 - y instead of 1 - y^2"),
    Mutant("Sigmoid", SigmoidOneWrongElement, "one element of the gradient off by 0.1%"),
    Mutant("Tanh", TanhKeepsTheFirstOutput, "backward reads what the first forward saved, on every call"),
    Mutant("Sigmoid", SigmoidReturnsItsBuffer, "output returned in a buffer the next call overwrites"),
    Mutant("ReLU", ReLUOverwritesItsInput, "output written into the input, unasked"),
    Mutant(
        "LeakyReLU",
        LeakyReLUForwardAndBackwardBothWrong,
        "forward bug with a matching backward (slope doubled in both)",
    ),
    Mutant("Softplus", SoftplusIgnoresBeta, "derivative ignores beta"),
    Mutant("MSELoss", MSELossForgetsMean, "drops the 1/N of reduction='mean'"),
    Mutant("CrossEntropyLoss", CrossEntropyForgetsUpstream, "ignores the grad_output scalar"),
    Mutant("Conv2d", Conv2dWrongWhenStrided, "input gradient wrong only when stride > 1"),
    Mutant("Conv2d", Conv2dWrongWhenDilated, "weight gradient wrong only when dilation > 1"),
    Mutant("Conv1d", Conv1dWrongSignWeight, "weight gradient with the wrong sign"),
    Mutant(
        "MaxPool2d",
        MaxPool2dGradientToFirstElement,
        "gradient sent to the wrong element",
    ),
    Mutant(
        "BatchNorm1d",
        BatchNorm1dWrongEvalBackward,
        "eval-mode backward through batch statistics",
    ),
    Mutant(
        "BatchNorm2d",
        BatchNorm2dBiasedRunningVariance,
        "running variance updated with the biased batch variance",
    ),
    Mutant("LayerNorm", LayerNormWithoutMeanTerm, "input gradient without the mean term"),
    Mutant("GroupNorm", GroupNormStatisticsPerChannel, "mean terms per channel instead of per group"),
    Mutant("RMSNorm", RMSNormTreatsRmsAsConstant, "input gradient treats the RMS as a constant"),
    Mutant("Softmax", SoftmaxDiagonalOnly, "Jacobian's diagonal term only"),
    Mutant("LogSoftmax", LogSoftmaxDiagonalOnly, "Jacobian's diagonal term only"),
    Mutant("Embedding", EmbeddingOverwritesRepeatedRows, "repeated rows overwrite instead of accumulating"),
    Mutant("MultiheadAttention", AttentionKeyGradientWithoutScale, "key gradient without the 1/sqrt(d) scale"),
    Mutant("LSTM", LSTMGradientStopsAtOneStep, "gradient stops at one time step"),
    Mutant("GRU", GRUResetGateOnTheWrongSide, "reset gate on the wrong side of W_hn in dL/dh_{t-1}"),
    Mutant(
        "TransformerEncoderLayer",
        TransformerEncoderLayerDropsResidualGradient,
        "residual connection's identity path dropped from the gradient",
    ),
    Mutant("Dropout", DropoutForgetsRescale, "backward without the 1/(1-p) factor"),
    Mutant("Upsample", UpsampleAveragesBlocks, "backward averages blocks instead of summing"),
    Mutant("SGD", SGDIgnoresDampening, "momentum update ignores dampening"),
    Mutant("Adam", AdamWithoutBiasCorrection, "no bias correction of the second moment"),
    Mutant("RMSprop", RMSpropIgnoresMomentum, "momentum buffer ignored"),
]


def _slightly_off(base: type, label: str) -> type:
    """A subclass of ``base`` whose input gradient is 0.1% too large: wrong everywhere, by little."""

    def backward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return super(cls, self).backward(*args, **kwargs) * 1.001

    name = f"{label}GradientOffByOnePerMille"
    cls = type(name, (base,), {"backward": backward, "__module__": __name__, "__doc__": _slightly_off.__doc__})
    return cls


# Every other verified module gets at least this one mutant, so each has evidence that the
# verifier catches a wrong backward for it (the hand-written ones above cover the classic bugs).
_COVERED = {m.target for m in MUTANTS}
MUTANTS += [
    Mutant(spec.name, _slightly_off(spec.module, spec.name), "input gradient 0.1% too large")
    for spec in SPECS
    if spec.name not in _COVERED
]


def mutant_spec(mutant: Mutant, spec: Spec) -> Spec:
    """The target's spec with the mutant class in place of the module."""
    return dataclasses.replace(spec, module=mutant.cls, name=mutant.name, _cases=None)


def run_mutant(mutant: Mutant, profile: str, seed: int, device: str) -> SpecResult:
    """Run the target's checks on the mutant; it is caught when some check fails (a crash is not a catch)."""
    from .optimizers import OPTIMIZER_SPECS, run_optimizer_spec, with_class

    optimizers = {o.name: o for o in OPTIMIZER_SPECS}
    if mutant.target in optimizers:
        return run_optimizer_spec(with_class(optimizers[mutant.target], mutant.cls, mutant.name), profile, seed)
    specs = {s.name: s for s in SPECS}
    # A mutant gets at least the ci profile's cases, whatever the spec's case_share: the first
    # cases hypothesis draws are the simplest, where a bug can vanish (a 1/sqrt(d) scale with d = 1).
    cases = max(PROFILES[profile]["max_examples"], PROFILES["ci"]["max_examples"])
    return run_spec(mutant_spec(mutant, specs[mutant.target]), profile, seed, device, shrink=False, max_examples=cases)
