"""The candidate that keeps the published final layer (``none``)."""

from __future__ import annotations

import copy

import numpy as np

from ._base import AdaptData, Fitted


class Keep:
    """The published layer, unchanged: its scores are the starting model's ``detect`` scores."""

    name = "none"

    def fit(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Fitted:
        return Fitted(copy.deepcopy(data.head))

    def score(self, fitted: Fitted, data: AdaptData, files: np.ndarray) -> np.ndarray:
        return data.before[np.asarray(files)]

    def describe(self, fitted: Fitted) -> str:
        return "none: the published final layer kept; only the calibration is new"
