"""Analytic controls with the ControlNet protocol, as oracles for the rollouts."""

import torch

from skcds._core.networks import TimeFeatures


class _AnalyticControl:
    step_conditioned = False

    def time_features(self, t, sigma, step=None):
        column = (-1, 1, 1)
        zeros = torch.zeros_like(t).reshape(column)
        return TimeFeatures(zeros, zeros, t.reshape(column), sigma.expand_as(t).reshape(column))


class ZeroControl(_AnalyticControl):
    def control(self, features, x, score):
        return torch.zeros_like(x)


class StationaryControl(_AnalyticControl):
    """u* = sigma grad log p_t = -sigma x: optimal when the target is the prior N(0, I)."""

    def control(self, features, x, score):
        return -features.sigma * x
