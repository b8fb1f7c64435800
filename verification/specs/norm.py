"""Specs of framework/norm.py."""

import torch
from hypothesis import strategies as st

import framework as fw

from ..spec import Input, Spec
from ..strategies import booleans, sizes


def _kwargs():
    return st.fixed_dictionaries(
        {
            "num_features": sizes(1, 4),
            "eps": st.sampled_from([1e-5, 1e-3, 0.1]),
            "momentum": st.none() | st.sampled_from([0.1, 0.5, 1.0]),
            "affine": booleans(),
            "track_running_stats": booleans(),
        }
    )


def _random_running_stats(module, generator: torch.Generator) -> None:
    # Running statistics far from their initial zeros and ones, so evaluation mode is not the
    # identity on the normalisation and a mix-up of mean and variance shows.
    if module.running_mean is None:
        return
    c = module.num_features
    module.running_mean.copy_(torch.empty(c, dtype=torch.float64).uniform_(-1.0, 1.0, generator=generator))
    module.running_var.copy_(torch.empty(c, dtype=torch.float64).uniform_(0.5, 2.0, generator=generator))


def _twin(cls):
    def build(m):
        # bias=False (an affine weight without bias) only when asked: older torch lacks the keyword.
        extra = {"bias": False} if m.affine and m.bias is None else {}
        return cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, **extra)

    return build


def _inputs_1d(kw):
    c = kw["num_features"]
    # More than one value per channel, as batch statistics need.
    two_d = st.tuples(st.integers(2, 4), st.just(c))
    three_d = st.tuples(st.integers(1, 3), st.just(c), st.integers(2, 5))
    return [Input(two_d | three_d)]


def _inputs_2d(kw):
    c = kw["num_features"]
    return [Input(st.tuples(st.integers(1, 3), st.just(c), st.integers(1, 4), st.integers(2, 4)))]


SPECS = [
    Spec(
        fw.BatchNorm1d,
        _kwargs(),
        _inputs_1d,
        _twin(torch.nn.BatchNorm1d),
        modes=("train", "eval"),
        prepare=_random_running_stats,
    ),
    Spec(
        fw.BatchNorm2d,
        _kwargs(),
        _inputs_2d,
        _twin(torch.nn.BatchNorm2d),
        modes=("train", "eval"),
        prepare=_random_running_stats,
    ),
]
