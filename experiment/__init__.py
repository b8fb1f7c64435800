"""The disk-classification experiment: the framework against torch.nn on identical data and weights.

``python -m experiment`` trains a small multilayer perceptron to tell points inside a disk
from points outside it, once with the framework and once with its torch.nn twin (same
initial weights, same batch order), and writes ``training.json`` for the HTML report.
"""

from .data import Dataset, make_dataset
from .model import ACTIVATIONS, LOSSES, Config, build_model
from .train import History, run_framework, run_torch

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Config",
    "Dataset",
    "History",
    "build_model",
    "make_dataset",
    "run_framework",
    "run_torch",
]
