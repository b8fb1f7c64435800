"""A mini deep-learning framework with hand-written backward passes.

Every module implements ``forward(*inputs)``, ``backward(*grad_outputs)`` and ``param()``
with torch tensor operations only: no ``torch.nn``, no autograd.
"""

from . import init, optim
from ._checks import ModuleTypeError, ModuleValueError
from .activations import ELU, GELU, SELU, Elementwise, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh, Tanhshrink, Threshold
from .containers import Sequential
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .dropout import Dropout
from .linear import Linear
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, SmoothL1Loss
from .module import Loss, Module, iter_modules, modules
from .norm import BatchNorm1d, BatchNorm2d
from .shape import Flatten

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
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
    "init",
    "iter_modules",
    "modules",
    "optim",
]
