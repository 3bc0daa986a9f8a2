"""The fusion: the published layer's score and the probe's, weighed by how well each did on
files the probe had not seen."""

from __future__ import annotations

import numpy as np

from ...data.protocols import BONAFIDE
from ._base import AdaptData, Fitted, balanced_log_loss, folds
from .anchored import published_logodds
from .probe import PROBE_C, as_head, fit_logreg

#: the inverse penalty of the two-weight regression that fuses the scores (standardised)
FUSION_C = 1.0


class Fusion:
    """A class-balanced logistic regression on two scores of each file: the published layer's
    ``detect`` score and the probe's log-odds, the latter out of fold (an inner
    ``inner_folds``-fold cross-validation inside the files it is given, by group when they
    hold that many groups, else stratified by class), so that the weights say how far the
    probe carries to files (or sources) it was not fitted on. The same inner folds choose the
    probe's penalty among ``PROBE_C`` (balanced log loss). The final layer is the weighted sum
    of the published layer and the probe fitted on all the files: still one linear layer on
    the embedding. Where the probe does not carry, its weight shrinks and the published
    layer's knowledge of attacks the files lack is kept."""

    name = "fusion"

    def __init__(self, seed: int, grid: tuple[float, ...] = PROBE_C, inner_folds: int = 3):
        self.seed, self.grid, self.k = seed, tuple(grid), inner_folds

    def inner_folds(self, data: AdaptData, files: np.ndarray, seed: int) -> np.ndarray | None:
        """The fold of each of ``files`` (``None``: too few of a class to fill them)."""
        y = data.labels[files]
        if min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE)) < self.k:
            return None
        groups = [data.groups[i] for i in files]
        if len(set(groups) - {"-"}) < self.k:
            groups = ["-"] * len(files)
        fold = folds(y, groups, self.k, self.seed + 107 + seed, [data.keys[i] for i in files])
        if any(len(set(y[fold != j].tolist())) < 2 for j in range(self.k)):
            return None
        return fold

    def fit(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Fitted:
        files = np.asarray(files)
        x, y = data.files, data.labels[files]
        w_pub = published_logodds(data.head, data.bona)
        bias = data.head.bias
        row = 0 if data.head.out_features == 1 else data.bona
        b_pub = 0.0 if bias is None else float(bias.detach().double()[row])
        pub = data.head_scores(data.head, files)
        fold = self.inner_folds(data, files, seed)
        if fold is None:  # nothing to weigh the probe on: the published layer, recalibrated
            c = 1.0
            a, gamma = fit_logreg(pub[:, None], y, FUSION_C)
            alpha, beta = float(a[0]), 0.0
        else:
            best = None
            for cc in self.grid:
                oof = np.zeros(len(files))
                for j in range(self.k):
                    w, b = fit_logreg(x[files[fold != j]], y[fold != j], cc)
                    oof[fold == j] = x[files[fold == j]].astype(np.float64) @ w + b
                loss = balanced_log_loss(oof, y)
                if best is None or loss < best[0]:
                    best = (loss, cc, oof)
            _, c, oof = best
            a, gamma = fit_logreg(np.stack([pub, oof], 1), y, FUSION_C)
            alpha, beta = float(a[0]), float(a[1])
        w_p, b_p = fit_logreg(x[files], y, c) if beta else (np.zeros_like(w_pub), 0.0)
        w = alpha * w_pub + beta * w_p
        b = alpha * b_pub + beta * b_p + gamma
        info = {"probe_c": c, "fusion_weights": [alpha, beta]}
        return Fitted(as_head(data.head, w, b, data.bona), info)

    def score(self, fitted: Fitted, data: AdaptData, files: np.ndarray) -> np.ndarray:
        return data.head_scores(fitted.layer, files)

    def describe(self, fitted: Fitted) -> str:
        a, b = fitted.info["fusion_weights"]
        return (
            "fusion: the published layer's score and the probe's (C = "
            f"{fitted.info['probe_c']:g}), weighed {a:.3g} and {b:.3g} by a logistic "
            f"regression on the probe's scores from a {self.k}-fold cross-validation on all "
            "files"
        )
