"""A spectral convolution (a Fourier neural operator's layer) as a ``torch.autograd.Function``: a
real input, complex weights, its backward and its jvp by hand, vmap through ``generate_vmap_rule``.

``python -m verification examples/spectral_conv.py`` checks it over drawn cases in float64 (every
check, ``forward_mode`` and ``batched`` among them: the Function defines ``jvp`` and declares vmap
support) and float32; ``python -m benchmarks examples/spectral_conv.py`` times it against the same
formula through autograd; ``pytest examples/`` runs the same checks as test items. Its complex weights
are checked through their real views, against torch's convention for complex gradients.
"""

import torch
from hypothesis import strategies as st

import verification
from verification import Input
from verification.strategies import sizes


def spectral_conv_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The same function in plain torch ops (autograd through the FFTs)."""
    n, modes = x.shape[-1], weight.shape[-1]
    spectrum = torch.fft.rfft(x, dim=-1)[..., :modes]
    mixed = torch.einsum("bim,iom->bom", spectrum, weight)
    return torch.fft.irfft(mixed, n=n, dim=-1)  # irfft pads the missing modes with zeros


def _doubled(modes: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """1 for the modes that stand for themselves in a real signal of length n (mode 0, and mode n/2
    for even n), 2 for the others (themselves and their conjugates). Built without writing into a
    tensor: under torch.vmap an in-place write into an unbatched tensor has no batching rule."""
    k = torch.arange(modes, device=like.device)
    alone = (k == 0) | (2 * k == n)
    return torch.where(alone, 1.0, 2.0).to(like.dtype.to_real())


def _first(spectrum: torch.Tensor, modes: int) -> torch.Tensor:
    """The first ``modes`` modes. All of them: the spectrum itself, not a slice of its whole length,
    which is an alias, and an alias of a batch of upstream gradients has no batching rule (torch.vmap
    over the backward, as jacrev and per-sample gradients run it, would raise)."""
    return spectrum if modes == spectrum.shape[-1] else spectrum[..., :modes]


def _gradient_of_modes(grad_output: torch.Tensor, n: int, modes: int) -> torch.Tensor:
    """gY from gy for y = irfft(Y, n): rfft(gy) c / n, c = 1 for the modes that stand alone, 2 for the others."""
    return _first(torch.fft.rfft(grad_output, dim=-1), modes) * (_doubled(modes, n, grad_output) / n)


def _adjoint_of_rfft(grad_spectrum: torch.Tensor, n: int) -> torch.Tensor:
    """``x``'s gradient from the gradient of its first modes ``X_k = rfft(x)_k``: the real part of
    sum_k gX_k exp(2 pi i k t / n). irfft(Z, n) doubles every mode but those that stand alone, so Z is
    gX with the others halved, times n."""
    halved = grad_spectrum / _doubled(grad_spectrum.shape[-1], n, grad_spectrum)
    return n * torch.fft.irfft(halved, n=n, dim=-1)


@verification.spec(
    kwargs={
        "batch": sizes(1, 3),
        "channels_in": sizes(1, 3),
        "channels_out": sizes(1, 3),
        "n": sizes(2, 12),
        "modes": st.integers(1, 7),
    },
    inputs=lambda kw: [
        Input((kw["batch"], kw["channels_in"], kw["n"])),  # x: real signals
        # The weights: complex, one channel mixing per kept mode (at most n // 2 + 1 of them).
        Input((kw["channels_in"], kw["channels_out"], min(kw["modes"], kw["n"] // 2 + 1)), complex=True),
    ],
    reference=spectral_conv_reference,
    dtypes=(torch.float64, torch.float32),
    benchmark={
        "small": {"batch": 8, "channels_in": 16, "channels_out": 16, "n": 256, "modes": 32},
        "medium": {"batch": 32, "channels_in": 32, "channels_out": 32, "n": 1024, "modes": 64},
    },
)
class SpectralConv1d(torch.autograd.Function):
    r"""y = irfft(W X_m, n),   X = rfft(x) (its first ``modes`` modes X_m), W mixing channels per mode.

    With torch's convention for complex gradients (gZ = dL/dRe Z + i dL/dIm Z, for a real loss L):

        gY     = rfft(gy) c / n,   c = 1 for mode 0 and mode n/2 (even n), 2 for the others
                 (each of those stands for itself and its conjugate in y)
        gW     = sum over the batch of conj(X_m) gY        (per input, output channel and mode)
        gX_m   = sum over output channels of gY conj(W)
        gx     = Re sum_k gX_k exp(2 pi i k t / n)         (see :func:`_adjoint_of_rfft`)

    Forward mode (linear in both): y' = irfft(W X_m' + W' X_m, n), X' = rfft(x').
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight):
        return spectral_conv_reference(x, weight)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight = inputs
        spectrum = torch.fft.rfft(x, dim=-1)[..., : weight.shape[-1]]
        ctx.save_for_backward(spectrum, weight)
        ctx.save_for_forward(spectrum, weight)
        ctx.n = x.shape[-1]

    @staticmethod
    def backward(ctx, grad_output):
        spectrum, weight = ctx.saved_tensors
        n, modes = ctx.n, weight.shape[-1]
        grad_mixed = _gradient_of_modes(grad_output, n, modes)
        # Products and sums rather than einsum, which has no batching rule in a backward called on a
        # batch of upstream gradients (torch.vmap over the backward: the batched check runs it).
        grad_weight = (spectrum.conj().unsqueeze(2) * grad_mixed.unsqueeze(1)).sum(0)  # (in, out, modes)
        grad_spectrum = (grad_mixed.unsqueeze(1) * weight.conj().unsqueeze(0)).sum(2)  # (batch, in, modes)
        return _adjoint_of_rfft(grad_spectrum, n), grad_weight

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent):
        spectrum, weight = ctx.saved_tensors
        modes = weight.shape[-1]
        mixed = torch.einsum("bim,iom->bom", torch.fft.rfft(x_tangent, dim=-1)[..., :modes], weight)
        mixed = mixed + torch.einsum("bim,iom->bom", spectrum, weight_tangent)
        return torch.fft.irfft(mixed, n=ctx.n, dim=-1)
