"""The probe: a class-balanced L2 logistic regression on the file embeddings."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ...data.protocols import BONAFIDE
from ._base import AdaptData, Fitted, balanced_log_loss, folds

#: the probe's inverse penalties, chosen among by an inner cross-validation
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def fit_logreg(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression with an L2 penalty ``|w|^2 / (2 c n)`` on
    standardised features: ``(w, b)`` of the log-odds (bona fide vs spoof) in the features'
    own scale. It is the calibration's prior-weighted regression at prior 0.5."""
    from ...infer._logreg import fit_llr_map

    x = np.asarray(x, np.float64)
    pos = np.asarray(y) == BONAFIDE
    w, b = fit_llr_map(x[pos], x[~pos], prior=0.5, l2=0.5 / (c * len(pos)))
    return w, b


def as_head(template: torch.nn.Linear, w: np.ndarray, b: float, bona: int) -> torch.nn.Linear:
    """A copy of the head that scores the log-odds ``w.e + b``: the bona fide logit minus the
    spoof logit (a two-output head gets half on each, so its bona fide logit, the score, is
    half the log-odds), or the single output of a one-output head."""
    layer = copy.deepcopy(template).float()
    wt = torch.from_numpy(np.asarray(w, np.float32))
    with torch.no_grad():
        if layer.out_features == 1:
            layer.weight[0], layer.bias[0] = wt, float(b)
        else:
            layer.weight[bona], layer.bias[bona] = wt / 2, float(b) / 2
            layer.weight[1 - bona], layer.bias[1 - bona] = -wt / 2, -float(b) / 2
    return layer


class Probe:
    """Class-balanced L2 logistic regression on the file embeddings (the mean of each file's
    judged windows), its penalty chosen among ``PROBE_C`` by a 3-fold cross-validation inside
    the files it is given (balanced log loss)."""

    name = "probe"

    def __init__(self, seed: int, grid: tuple[float, ...] = PROBE_C, inner_folds: int = 3):
        self.seed, self.grid, self.k = seed, tuple(grid), inner_folds

    def fit(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Fitted:
        files = np.asarray(files)
        x, y = data.files, data.labels[files]
        c = 1.0
        if min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE)) >= self.k:
            keys = [data.keys[i] for i in files]
            inner = folds(y, ["-"] * len(files), self.k, self.seed + 101 + seed, keys)
            losses = []
            for cc in self.grid:
                oof = np.zeros(len(files))
                for j in range(self.k):
                    w, b = fit_logreg(x[files[inner != j]], y[inner != j], cc)
                    oof[inner == j] = x[files[inner == j]].astype(np.float64) @ w + b
                losses.append(balanced_log_loss(oof, y))
            c = self.grid[int(np.argmin(losses))]
        w, b = fit_logreg(x[files], y, c)
        return Fitted(as_head(data.head, w, b, data.bona), {"probe_c": c})

    def score(self, fitted: Fitted, data: AdaptData, files: np.ndarray) -> np.ndarray:
        return data.head_scores(fitted.layer, files)

    def describe(self, fitted: Fitted) -> str:
        return (
            f"probe: class-balanced logistic regression on the file embeddings, "
            f"C = {fitted.info['probe_c']:g} chosen by a 3-fold cross-validation on all files"
        )
