"""The experiment's configuration and the framework network it trains.

The network is the reports' multilayer perceptron: 2 inputs, hidden layers of 25 units
(three by default), 2 outputs scored against one-hot targets. Optional PyChrot-style blocks
put a BatchNorm1d after each hidden activation, and dropout follows each block.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

import framework as fw
from verification.twins import twin_of

# Command-line name -> framework class name; only the classes the framework has are offered.
_ACTIVATION_CLASSES = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "selu": "SELU",
    "celu": "CELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "mish": "Mish",
    "softplus": "Softplus",
    "hardtanh": "Hardtanh",
}
ACTIVATIONS: tuple[str, ...] = tuple(name for name, cls in _ACTIVATION_CLASSES.items() if hasattr(fw, cls))

_LOSS_CLASSES = {"mse": "MSELoss", "cross-entropy": "CrossEntropyLoss"}
LOSSES: tuple[str, ...] = tuple(name for name, cls in _LOSS_CLASSES.items() if hasattr(fw, cls))

# Schemes that break the symmetry between hidden units (all-zero weights cannot learn).
INITS: tuple[str, ...] = tuple(s for s in fw.init.SCHEMES if s != "zeros")

# The gain an initialiser uses for each activation; activations torch gives no gain for are
# ReLU-like, so they take ReLU's.
_GAIN_NONLINEARITY = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "leaky_relu": "leaky_relu", "selu": "selu"}

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def derived_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for one use (``"init/0"``, ``"order"``, ...) of a run's seed."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def generator(seed: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, stream))


@dataclass
class Config:
    """Every hyper-parameter of one experiment (the ``config`` object of training.json)."""

    activation: str = "relu"
    loss: str = "mse"
    lr: float = 0.5
    batch_size: int = 50
    epochs: int = 100
    runs: int = 10
    dtype: str = "float64"
    seed: int = 0
    hidden: list[int] = field(default_factory=lambda: [25, 25, 25])
    init: str = "default"
    momentum: float = 0.0
    weight_decay: float = 0.0
    batchnorm: bool = False
    dropout: float = 0.0
    restart: int = 0
    restart_threshold: float = 0.1
    max_restarts: int = 3
    n_train: int = 1000
    n_test: int = 1000
    torch: bool = True
    # Where both networks train (data, parameters and optimizer state); evaluation runs on the CPU.
    device: str = "cpu"
    # One thread: the layers are 50 x 25 products, too small for intra-op threads to pay for their
    # synchronisation, and on a machine shared with other processes extra threads only contend.
    threads: int = 1

    def __post_init__(self) -> None:
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("loss", self.loss, LOSSES)
        _choice("init", self.init, INITS)
        _choice("dtype", self.dtype, tuple(DTYPES))
        _choice("device", self.device, ("cpu", "cuda"))
        for name in ("batch_size", "epochs", "runs", "n_train", "n_test", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config: expected {name} >= 1, got {getattr(self, name)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"Config: expected hidden sizes >= 1, got {self.hidden}")
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(
                f"Config: expected lr > 0, momentum >= 0, weight_decay >= 0, "
                f"got {self.lr}, {self.momentum}, {self.weight_decay}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Config: expected dropout in [0, 1), got {self.dropout}")
        # restart compares the first and the last loss of a K-epoch window: K = 1 would compare an epoch with itself.
        if self.restart < 0 or self.restart == 1 or self.max_restarts < 0 or not 0 < self.restart_threshold < 1:
            raise ValueError(
                f"Config: expected restart = 0 (off) or >= 2, max_restarts >= 0, restart_threshold in (0, 1), "
                f"got {self.restart}, {self.max_restarts}, {self.restart_threshold}"
            )
        if self.batchnorm and not hasattr(fw, "BatchNorm1d"):
            raise ValueError("Config: batchnorm needs framework.BatchNorm1d, which this framework lacks")
        if self.batchnorm and self.n_train % self.batch_size == 1:
            raise ValueError(
                f"Config: expected at least 2 points in every batch for batchnorm, but n_train = {self.n_train} "
                f"and batch_size = {self.batch_size} leave a last batch of 1"
            )
        if self.dropout > 0 and not hasattr(fw, "Dropout"):
            raise ValueError("Config: dropout needs framework.Dropout, which this framework lacks")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def deterministic(self) -> bool:
        """Both implementations compute the same function: no random masks drawn from separate generators."""
        return self.dropout == 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"Config: expected {name} to be one of {options}, got {value!r}")


def build_model(config: Config, seed: int, attempt: int = 0) -> fw.Sequential:
    """The framework network of ``config``, initialised from ``seed`` (and ``attempt``, after restarts)."""
    init_generator = generator(seed, f"init/{attempt}")
    dropout_generator = generator(seed, f"dropout/{attempt}")
    activation = getattr(fw, _ACTIVATION_CLASSES[config.activation])
    gain = _GAIN_NONLINEARITY.get(config.activation, "relu")
    dtype = config.torch_dtype
    layers: list[fw.Module] = []
    width = 2
    for size in config.hidden:
        layers.append(
            fw.Linear(width, size, init=config.init, nonlinearity=gain, generator=init_generator, dtype=dtype)
        )
        layers.append(activation())
        if config.batchnorm:
            layers.append(fw.BatchNorm1d(size, dtype=dtype))
        if config.dropout > 0:
            layers.append(fw.Dropout(config.dropout, generator=dropout_generator))
        width = size
    layers.append(fw.Linear(width, 2, init=config.init, nonlinearity="linear", generator=init_generator, dtype=dtype))
    return fw.Sequential(*layers)


def torch_twin(model: fw.Sequential) -> torch.nn.Sequential:
    """The torch.nn twin of a network from :func:`build_model`, its parameters and buffers copied.

    Dropout has no twin in the verification specs (its masks cannot match); here it becomes
    torch.nn.Dropout with the same p, so the two networks compute the same function in eval
    mode and the same kind of function in training mode.
    """
    layers = [torch.nn.Dropout(layer.p) if isinstance(layer, fw.Dropout) else twin_of(layer) for layer in model]
    return torch.nn.Sequential(*layers).train(model.training)


def build_loss(config: Config) -> fw.Loss:
    return getattr(fw, _LOSS_CLASSES[config.loss])()


def targets(criterion: fw.Loss, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Class indices for a loss that takes them, one-hot rows otherwise (the reports' MSE targets)."""
    if getattr(criterion, "target_is_index", False):
        return labels
    return torch.eye(2, dtype=dtype, device=labels.device)[labels]
