"""A mini deep-learning framework with hand-written backward passes.

Every module implements ``forward(*inputs)``, ``backward(*grad_outputs)`` and ``param()``
with torch tensor operations only: no ``torch.nn``, no autograd.
"""

from . import init, optim
from ._checks import ModuleTypeError, ModuleValueError
from .activations import Elementwise, ReLU, Sigmoid, Tanh
from .containers import Sequential
from .linear import Linear
from .losses import MSELoss
from .module import Loss, Module, iter_modules, modules

__all__ = [
    "Elementwise",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "ModuleTypeError",
    "ModuleValueError",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "init",
    "iter_modules",
    "modules",
    "optim",
]
