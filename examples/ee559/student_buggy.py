"""A student's EE-559 mini framework (the course's protocol, no torch.nn, no autograd): with two classic bugs."""

import math

import torch


class Module:
    def forward(self, *input):
        raise NotImplementedError

    def backward(self, *gradwrtoutput):
        raise NotImplementedError

    def param(self):
        return []


class Linear(Module):
    def __init__(self, in_features, out_features):
        bound = 1 / math.sqrt(in_features)
        self.w = torch.empty(out_features, in_features).uniform_(-bound, bound)
        self.b = torch.empty(out_features).uniform_(-bound, bound)
        self.dw = torch.zeros_like(self.w)
        self.db = torch.zeros_like(self.b)

    def forward(self, *input):
        (self.x,) = input
        return self.x @ self.w.T + self.b

    def backward(self, *gradwrtoutput):
        (g,) = gradwrtoutput
        self.dw = g.T @ self.x  # BUG: assigns instead of accumulating
        self.db += g.sum(0)
        return g @ self.w

    def param(self):
        return [[self.w, self.dw], [self.b, self.db]]


class ReLU(Module):
    def forward(self, *input):
        (self.x,) = input
        return self.x.clamp(min=0)

    def backward(self, *gradwrtoutput):
        (g,) = gradwrtoutput
        return g * (self.x > 0).to(g.dtype)


class Tanh(Module):
    def forward(self, *input):
        (x,) = input
        self.y = x.tanh()
        return self.y

    def backward(self, *gradwrtoutput):
        (g,) = gradwrtoutput
        return g * (1 - self.y**2)


class LossMSE(Module):
    def forward(self, prediction, target):
        self.difference = prediction - target
        return (self.difference**2).mean()

    def backward(self):
        return 2 * self.difference  # BUG: the 1/N of the mean is missing
