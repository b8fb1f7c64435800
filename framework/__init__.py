"""A mini deep-learning framework with hand-written backward passes.

Every module implements ``forward(*inputs)``, ``backward(*grad_outputs)`` and ``param()``
with torch tensor operations only: no neural-network library and no automatic differentiation.
"""

from . import cuda_graph, init, optim
from ._checks import ModuleTypeError, ModuleValueError
from .activations import ELU, GELU, SELU, Elementwise, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh, Tanhshrink, Threshold
from .containers import Sequential
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .cuda_graph import CapturedStep
from .dropout import Dropout
from .linear import Linear
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, SmoothL1Loss
from .module import Loss, Module, iter_modules, modules
from .norm import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, MaxPool2d, Upsample
from .shape import Flatten

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "CapturedStep",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Elementwise",
    "Flatten",
    "HuberLoss",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleTypeError",
    "ModuleValueError",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SmoothL1Loss",
    "Softplus",
    "Tanh",
    "Tanhshrink",
    "Threshold",
    "Upsample",
    "cuda_graph",
    "init",
    "iter_modules",
    "modules",
    "optim",
]
