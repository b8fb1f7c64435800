"""Benchmark cases as data: one entry per framework module class, three sizes each.

Sizes:
    ``seed``: the seed experiment's scale (batch 50 to 100, 2 to 25 features), dominated by
        per-call overhead;
    ``medium``: a few hundred thousand elements;
    ``large``: compute- or memory-bound (Linear 4096x1024 -> 1024, Conv2d batch 32, 16 -> 32
        channels, 32x32, elementwise 4M elements).

On a GPU those CPU sizes are launch-bound, so ``medium`` and ``large`` come from a second table
(``gpu_sizes``): compute-bound matrix products (Conv2d batch 64, 128 -> 128 channels, 56x56:
118 GFLOP a forward) and bandwidth-bound elementwise work (64M elements, 256 MB in float32).
Every result records the shapes it ran at. A case without a GPU table runs its CPU sizes there.

Activations, losses, Dropout and BatchNorm1d take elementwise (N, features) sizes; spatial
modules take image-shaped ones. ``flops`` is the forward pass's floating-point operation count
(a multiply-add counts 2) for the matrix-multiply-bound modules only; their backward costs
``backward_factor`` times the forward (input and weight gradients: two more products).
``traffic`` is, for the memory-bound modules, the bytes a pass must move at the least (every
input read once, every output written once) in units of the input's bytes, forward and
forward+backward: an activation reads x and writes y (2), and its backward reads dL/dy and x
and writes dL/dx (5 in all).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import framework as fw
from verification.domains import PROBABILITY, REAL, Domain, indices

SIZES = ("seed", "medium", "large")


@dataclass(frozen=True)
class Size:
    """Constructor arguments and forward input shape of one size of a case (and, when it depends
    on the size, the domain of the input's values: indices below the vocabulary size)."""

    kwargs: dict[str, Any]
    shape: tuple[int, ...]
    flops: float | None = None
    domain: Domain | None = None

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class BenchCase:
    """How to benchmark one framework module class against its ``torch.nn`` twin.

    Args:
        name: the framework class name (``framework.modules()``).
        sizes: ``seed``, ``medium`` and ``large`` :class:`Size` entries.
        domain: where the forward input's values come from.
        target: for losses, ``"values"`` (real), ``"unit"`` (in [0, 1]) or ``"indices"`` (classes
            along dimension 1).
        make: builds the framework module from the size's kwargs (default: the class itself).
        twin: builds the ``torch.nn`` twin (default: :func:`verification.twins.twin_of`).
        check: ``"twin"`` compares outputs and gradients with the twin; ``"dropout"`` checks the
            framework's own train-mode semantics and equality with the twin in eval mode.
        backward_factor: backward FLOPs over forward FLOPs.
        gpu_sizes: ``medium`` and ``large`` on a GPU (compute- or bandwidth-bound there).
        traffic: the least bytes a forward and a forward+backward move, in input sizes
            (memory-bound modules only).
        call: how both sides are called on the inputs and which output is differentiated, for
            modules with several inputs or outputs (attention on (x, x, x), a recurrent network's
            output sequence); by default ``module(*inputs)``.
        gradient: dL/dx from what the framework's backward returns (by default that result;
            the sum of the three for self-attention).
    """

    name: str
    sizes: dict[str, Size]
    domain: Domain = REAL
    target: str | None = None
    make: Callable[..., Any] | None = None
    twin: Callable[[Any], torch.nn.Module] | None = None
    check: str = "twin"
    backward_factor: float = 2.0
    notes: str = field(default="", compare=False)
    gpu_sizes: dict[str, Size] = field(default_factory=dict, compare=False)
    traffic: tuple[float, float] | None = None
    call: Callable[..., Any] | None = None
    gradient: Callable[[Any], Any] | None = None

    @property
    def is_loss(self) -> bool:
        return self.target is not None

    def size(self, size: str, device: str = "cpu") -> Size:
        """The :class:`Size` of ``size`` on ``device`` (``"cuda"`` takes the GPU table where there is one)."""
        if device == "cuda" and size in self.gpu_sizes:
            return self.gpu_sizes[size]
        return self.sizes[size]

    def build_module(self, size: str, device: str = "cpu") -> Any:
        kwargs = self.size(size, device).kwargs
        if self.make is not None:
            return self.make(**kwargs)
        return getattr(fw, self.name)(**kwargs)

    def run(self, module: Any, inputs: tuple[Any, ...]) -> Any:
        """The differentiated output of ``module`` (framework or torch) on ``inputs``."""
        return module(*inputs) if self.call is None else self.call(module, *inputs)

    def input_gradient(self, result: Any) -> Any:
        """dL/dx from the result of the framework's backward."""
        return result if self.gradient is None else self.gradient(result)

    def flops(self, size: str, pass_: str, device: str = "cpu") -> float | None:
        forward = self.size(size, device).flops
        if forward is None:
            return None
        return forward * (1.0 if pass_ == "forward" else 1.0 + self.backward_factor)

    def bytes(self, size: str, pass_: str, itemsize: int, device: str = "cpu") -> float | None:
        """The least bytes one call of ``pass_`` moves (memory-bound cases), for % of memory bandwidth."""
        if self.traffic is None:
            return None
        streams = self.traffic[0] if pass_ == "forward" else self.traffic[1]
        return streams * self.size(size, device).elements * itemsize

    def __str__(self) -> str:
        return self.name


# -- size tables ---------------------------------------------------------------------------------
ELEMENTWISE = {"seed": (100, 25), "medium": (256, 1024), "large": (4096, 1024)}
IMAGES = {"seed": (50, 2, 8, 8), "medium": (32, 16, 32, 32), "large": (32, 32, 64, 64)}
CLASSES = {"seed": (100, 2), "medium": (256, 1000), "large": (4096, 1000)}
# On a GPU: 16M and 64M elements (64 and 256 MB in float32), far past launch overhead and caches.
ELEMENTWISE_GPU = {"medium": (4096, 4096), "large": (16384, 4096)}
IMAGES_GPU = {"medium": (32, 64, 56, 56), "large": (128, 64, 56, 56)}
CLASSES_GPU = {"medium": (16384, 1000), "large": (65536, 1000)}
# Bytes moved per pass, in input sizes: (forward, forward+backward).
ELEMENTWISE_TRAFFIC = (2.0, 5.0)


def elementwise(
    name: str,
    domain: Domain = REAL,
    target: str | None = None,
    traffic: tuple[float, float] | None = ELEMENTWISE_TRAFFIC,
    **kwargs: Any,
) -> BenchCase:
    """An elementwise case: activations read x and write y; losses read prediction and target (2),
    and their backward reads them again and writes the gradient (5)."""
    return BenchCase(
        name,
        {s: Size(dict(kwargs), shape) for s, shape in ELEMENTWISE.items()},
        domain,
        target,
        gpu_sizes={s: Size(dict(kwargs), shape) for s, shape in ELEMENTWISE_GPU.items()},
        traffic=traffic,
    )


def images(
    name: str, kwargs: Callable[[tuple[int, ...]], dict[str, Any]], traffic: tuple[float, float] | None = None
) -> BenchCase:
    """A spatial case whose kwargs depend on the input shape (channels)."""
    return BenchCase(
        name,
        {s: Size(kwargs(shape), shape) for s, shape in IMAGES.items()},
        gpu_sizes={s: Size(kwargs(shape), shape) for s, shape in IMAGES_GPU.items()},
        traffic=traffic,
    )


def linear_size(batch: int, fan_in: int, fan_out: int) -> Size:
    return Size({"in_features": fan_in, "out_features": fan_out}, (batch, fan_in), 2.0 * batch * fan_in * fan_out)


def conv2d_size(batch: int, c_in: int, c_out: int, side: int, k: int = 3) -> Size:
    out = side  # padding k // 2 keeps the side
    flops = 2.0 * batch * c_out * out * out * c_in * k * k
    return Size(
        {"in_channels": c_in, "out_channels": c_out, "kernel_size": k, "padding": k // 2},
        (batch, c_in, side, side),
        flops,
    )


def conv1d_size(batch: int, c_in: int, c_out: int, length: int, k: int) -> Size:
    flops = 2.0 * batch * c_out * length * c_in * k
    return Size(
        {"in_channels": c_in, "out_channels": c_out, "kernel_size": k, "padding": k // 2}, (batch, c_in, length), flops
    )


def conv_transpose2d_size(batch: int, c_in: int, c_out: int, side: int) -> Size:
    # kernel 2, stride 2: every input pixel spreads into a 2x2 block (the decoder's upsampling)
    flops = 2.0 * batch * c_in * side * side * c_out * 4
    kwargs = {"in_channels": c_in, "out_channels": c_out, "kernel_size": 2, "stride": 2}
    return Size(kwargs, (batch, c_in, side, side), flops)


def mlp(widths: tuple[int, ...]) -> fw.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[fw.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers.append(fw.Linear(fan_in, fan_out))
        if index < len(widths) - 2:
            layers.append(fw.ReLU())
    return fw.Sequential(*layers)


def mlp_size(batch: int, widths: tuple[int, ...]) -> Size:
    flops = sum(2.0 * batch * a * b for a, b in itertools.pairwise(widths))
    return Size({"widths": widths}, (batch, widths[0]), flops)


def embedding_size(vocabulary: int, width: int, batch: int, length: int) -> Size:
    kwargs = {"num_embeddings": vocabulary, "embedding_dim": width}
    return Size(kwargs, (batch, length), domain=indices(vocabulary))


def attention_size(batch: int, length: int, width: int, heads: int) -> Size:
    """Self-attention, batch first: four width x width projections and two (L x L) products per head."""
    flops = 4 * 2.0 * batch * length * width * width + 2 * 2.0 * batch * length * length * width
    return Size({"embed_dim": width, "num_heads": heads, "batch_first": True}, (batch, length, width), flops)


def transformer_size(batch: int, length: int, width: int, heads: int, hidden: int) -> Size:
    """A pre-norm encoder block with a GELU MLP: attention's products plus the MLP's two."""
    flops = attention_size(batch, length, width, heads).flops + 2 * 2.0 * batch * length * width * hidden
    kwargs = {
        "d_model": width,
        "nhead": heads,
        "dim_feedforward": hidden,
        "dropout": 0.0,
        "activation": "gelu",
        "batch_first": True,
        "norm_first": True,
    }
    return Size(kwargs, (batch, length, width), flops)


def _self_attention(module: Any, x: Any) -> Any:
    return module(x, x, x, need_weights=False)[0]


def _sum_of_input_gradients(grads: Any) -> Any:
    return grads[0] + grads[1] + grads[2]


def recurrent_size(gates: int, batch: int, length: int, features: int, hidden: int) -> Size:
    """One batch-first layer: per step, gates * hidden rows times (features + hidden) columns."""
    flops = 2.0 * batch * length * gates * hidden * (features + hidden)
    kwargs = {"input_size": features, "hidden_size": hidden, "batch_first": True}
    return Size(kwargs, (batch, length, features), flops)


def recurrent(name: str, gates: int) -> BenchCase:
    return BenchCase(
        name,
        {
            "seed": recurrent_size(gates, 50, 10, 2, 25),
            "medium": recurrent_size(gates, 32, 64, 128, 128),
            "large": recurrent_size(gates, 64, 128, 256, 256),
        },
        # One product per time step: a batch of 256 makes each step's (256 x H) (H x gates H) product
        # large enough for the GPU; the sequence is the loop.
        gpu_sizes={
            "medium": recurrent_size(gates, 256, 128, 512, 512),
            "large": recurrent_size(gates, 256, 256, 1024, 1024),
        },
        call=_output_sequence,
        notes="the output sequence is differentiated (h_n gets no gradient); torch runs its fused kernels",
    )


def _output_sequence(module: Any, x: Any) -> Any:
    return module(x)[0]


def _dropout_twin(module: Any) -> torch.nn.Module:
    return torch.nn.Dropout(p=module.p)


CASES_LIST: list[BenchCase] = [
    # -- layers with weights: matrix-multiply bound at the large size --------------------------------
    BenchCase(
        "Linear",
        {
            "seed": linear_size(100, 25, 25),
            "medium": linear_size(512, 256, 256),
            "large": linear_size(4096, 1024, 1024),
        },
        gpu_sizes={"medium": linear_size(4096, 4096, 4096), "large": linear_size(8192, 4096, 4096)},
    ),
    BenchCase(
        "Sequential",
        {
            "seed": mlp_size(100, (2, 25, 25, 25, 2)),
            "medium": mlp_size(512, (256, 256, 256, 256)),
            "large": mlp_size(2048, (1024, 1024, 1024, 1024)),
        },
        gpu_sizes={"medium": mlp_size(4096, (2048,) * 4), "large": mlp_size(8192, (4096,) * 4)},
        make=mlp,
        notes="the seed's MLP shape: Linear/ReLU stack",
    ),
    BenchCase(
        "Conv1d",
        {
            "seed": conv1d_size(50, 2, 4, 25, 3),
            "medium": conv1d_size(32, 16, 32, 256, 5),
            "large": conv1d_size(32, 64, 128, 1024, 5),
        },
        gpu_sizes={"medium": conv1d_size(32, 64, 128, 4096, 5), "large": conv1d_size(64, 256, 256, 4096, 5)},
    ),
    BenchCase(
        "Conv2d",
        {"seed": conv2d_size(50, 2, 4, 8), "medium": conv2d_size(32, 8, 16, 16), "large": conv2d_size(32, 16, 32, 32)},
        gpu_sizes={"medium": conv2d_size(32, 64, 64, 56), "large": conv2d_size(64, 128, 128, 56)},
    ),
    BenchCase(
        "ConvTranspose2d",
        {
            "seed": conv_transpose2d_size(50, 4, 2, 4),
            "medium": conv_transpose2d_size(32, 16, 8, 8),
            "large": conv_transpose2d_size(32, 32, 16, 16),
        },
        gpu_sizes={
            "medium": conv_transpose2d_size(32, 128, 64, 32),
            "large": conv_transpose2d_size(64, 256, 128, 32),
        },
    ),
    BenchCase(
        "MultiheadAttention",
        {
            "seed": attention_size(50, 8, 16, 2),
            "medium": attention_size(32, 64, 128, 4),
            "large": attention_size(32, 128, 256, 4),
        },
        gpu_sizes={"medium": attention_size(16, 1024, 1024, 16), "large": attention_size(32, 1024, 1024, 16)},
        call=_self_attention,
        gradient=_sum_of_input_gradients,
        notes="self-attention (query = key = value), need_weights=False: torch takes its fused "
        "scaled_dot_product_attention path",
    ),
    BenchCase(
        "TransformerEncoderLayer",
        {
            "seed": transformer_size(8, 16, 32, 2, 64),
            "medium": transformer_size(16, 64, 128, 4, 512),
            "large": transformer_size(32, 128, 256, 4, 1024),
        },
        gpu_sizes={
            "medium": transformer_size(16, 512, 1024, 16, 4096),
            "large": transformer_size(32, 512, 1024, 16, 4096),
        },
        notes="pre-norm, GELU, dropout 0, batch first (torch.nn.TransformerEncoderLayer with the same weights)",
    ),
    recurrent("LSTM", 4),
    recurrent("GRU", 3),
    # -- spatial, memory bound ------------------------------------------------------------------------
    # 2x2 pooling reads x and writes a quarter of it; its backward reads that quarter and writes dL/dx.
    images("MaxPool2d", lambda shape: {"kernel_size": 2}, traffic=(1.25, 2.5)),
    images("AvgPool2d", lambda shape: {"kernel_size": 2}, traffic=(1.25, 2.5)),
    images("Upsample", lambda shape: {"scale_factor": 2, "mode": "nearest"}, traffic=(5.0, 10.0)),
    images("BatchNorm2d", lambda shape: {"num_features": shape[1]}, traffic=(2.0, 5.0)),
    images("Flatten", lambda shape: {}),
    BenchCase(
        "BatchNorm1d",
        {s: Size({"num_features": shape[1]}, shape) for s, shape in ELEMENTWISE.items()},
        gpu_sizes={s: Size({"num_features": shape[1]}, shape) for s, shape in ELEMENTWISE_GPU.items()},
        traffic=(2.0, 5.0),
    ),
    *(
        BenchCase(
            name,
            {s: Size({"normalized_shape": shape[-1]}, shape) for s, shape in ELEMENTWISE.items()},
            gpu_sizes={s: Size({"normalized_shape": shape[-1]}, shape) for s, shape in ELEMENTWISE_GPU.items()},
            traffic=ELEMENTWISE_TRAFFIC,  # x read, y written; dL/dy and x read, dL/dx written
        )
        for name in ("LayerNorm", "RMSNorm")
    ),
    images(
        "GroupNorm",
        lambda shape: {"num_groups": max(1, shape[1] // 4), "num_channels": shape[1]},
        traffic=ELEMENTWISE_TRAFFIC,
    ),
    BenchCase(
        "Dropout",
        {s: Size({"p": 0.5}, shape) for s, shape in ELEMENTWISE.items()},
        gpu_sizes={s: Size({"p": 0.5}, shape) for s, shape in ELEMENTWISE_GPU.items()},
        traffic=(2.0, 4.0),  # the backward reads dL/dy (and a mask) and writes dL/dx
        twin=_dropout_twin,
        check="dropout",
        notes="timed in train mode against torch.nn.Dropout; equality checked in eval mode, train mode "
        "checked against Dropout's own definition (torch's random mask cannot be reproduced)",
    ),
    BenchCase(
        "Embedding",
        {
            "seed": embedding_size(50, 25, 100, 10),
            "medium": embedding_size(10000, 256, 64, 128),
            "large": embedding_size(32000, 512, 128, 128),
        },
        gpu_sizes={"medium": embedding_size(32000, 1024, 64, 512), "large": embedding_size(128000, 4096, 64, 1024)},
        notes="a token lookup: dL/dweight is dense on both sides (torch's sparse=False)",
    ),
    # -- activations ------------------------------------------------------------------------------------
    elementwise("ReLU"),
    elementwise("Tanh"),
    elementwise("Sigmoid"),
    elementwise("LeakyReLU", negative_slope=0.01),
    elementwise("ELU", alpha=1.0),
    elementwise("SELU"),
    elementwise("Tanhshrink"),
    elementwise("Threshold", threshold=0.1, value=20.0),
    elementwise("Softplus", beta=1.0, threshold=20.0),
    elementwise("GELU"),
    elementwise("Softmax", dim=1),
    elementwise("LogSoftmax", dim=1),
    # -- losses -------------------------------------------------------------------------------------------
    elementwise("MSELoss", target="values"),
    elementwise("L1Loss", target="values"),
    elementwise("HuberLoss", target="values", delta=1.0),
    elementwise("SmoothL1Loss", target="values", beta=1.0),
    elementwise("BCELoss", domain=PROBABILITY, target="unit"),
    elementwise("BCEWithLogitsLoss", target="unit"),
    BenchCase(
        "CrossEntropyLoss",
        {s: Size({}, shape) for s, shape in CLASSES.items()},
        target="indices",
        gpu_sizes={s: Size({}, shape) for s, shape in CLASSES_GPU.items()},
        traffic=(1.0, 3.0),  # logits read; then read again and dL/dlogits written
    ),
]

CASES: dict[str, BenchCase] = {case.name: case for case in CASES_LIST}


def registered_names() -> set[str]:
    return {cls.__name__ for cls in fw.modules()}


def available_cases() -> list[BenchCase]:
    """The cases whose module class is registered in this checkout of the framework."""
    names = registered_names()
    return [case for case in CASES_LIST if case.name in names]


def shape_text(case: BenchCase, size: str, device: str = "cpu") -> str:
    spec = case.size(size, device)
    args = ", ".join(f"{k}={v}" for k, v in spec.kwargs.items())
    return f"{case.name}({args}) input {tuple(spec.shape)} [{math.prod(spec.shape)} elements]"
