"""A mini deep-learning framework with hand-written backward passes.

Every module implements ``forward(*inputs)``, ``backward(*grad_outputs)`` and ``param()``
with torch tensor operations only: no neural-network library and no automatic differentiation.
"""

from . import cuda_graph, init, optim
from ._checks import ModuleTypeError, ModuleValueError
from .activations import ELU, GELU, SELU, Elementwise, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh, Tanhshrink, Threshold
from .attention import MultiheadAttention
from .containers import Sequential
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .cuda_graph import CapturedStep
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, SmoothL1Loss
from .module import Loss, Module, iter_modules, modules
from .norm import BatchNorm1d, BatchNorm2d
from .normalization import GroupNorm, LayerNorm, RMSNorm
from .pooling import AvgPool2d, MaxPool2d, Upsample
from .recurrent import GRU, LSTM
from .shape import Flatten
from .softmax import LogSoftmax, Softmax
from .transformer import TransformerEncoderLayer

__all__ = [
    "ELU",
    "GELU",
    "GRU",
    "LSTM",
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
    "Embedding",
    "Flatten",
    "GroupNorm",
    "HuberLoss",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleTypeError",
    "ModuleValueError",
    "MultiheadAttention",
    "RMSNorm",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Tanh",
    "Tanhshrink",
    "Threshold",
    "TransformerEncoderLayer",
    "Upsample",
    "cuda_graph",
    "init",
    "iter_modules",
    "modules",
    "optim",
]
