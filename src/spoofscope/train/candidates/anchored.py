"""The anchored probe: the probe's logistic regression, its penalty pulling towards the
published layer's direction instead of towards zero."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from ...data.protocols import BONAFIDE
from ._base import AdaptData, Fitted, balanced_log_loss, folds
from .probe import as_head

#: the anchored probe's inverse penalties, chosen among by an inner cross-validation: 0 is an
#: infinite penalty (the published layer's direction, recalibrated), 100 nearly none (the probe
#: without its penalty)
ANCHOR_C = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def published_logodds(head: torch.nn.Linear, bona: int) -> np.ndarray:
    """(D,) the weights of the published layer's ``detect`` score on the embedding: its bona
    fide row (a one-output head: its row). The anchor is the score ``detect`` gives (not the
    bona fide row minus the spoof row), so that the strongest anchor ranks files exactly as
    the published layer does."""
    w = head.weight.detach().double().numpy()
    return w[0] if head.out_features == 1 else w[bona]


def fit_anchored(
    x: np.ndarray, y: np.ndarray, w_pub: np.ndarray, c: float
) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression of the log-odds ``w.x + b`` on the features ``x``
    (N, D) whose penalty ``|w_z - s a|^2 / (2 c n)`` pulls the weights towards the published
    direction ``w_pub``: on standardised features (``w_z``, ``a``: ``w`` and ``w_pub`` in their
    scale, ``a`` of unit length), with the scale ``s`` (its sign too) and the intercept ``b``
    free. ``c = 0``:
    the weights are ``s w_pub`` (the published layer, recalibrated); a large ``c``: the probe
    (:func:`~spoofscope.train.candidates.fit_logreg`) with a vanishing penalty.
    Returns ``(w, b)`` in the features' own scale."""
    x = np.asarray(x, np.float64)
    pos = np.asarray(y) == BONAFIDE
    mu, sd = x.mean(0), x.std(0) + 1e-12
    z = (x - mu) / sd
    a = np.asarray(w_pub, np.float64) * sd
    a = a / np.linalg.norm(a)
    t = z @ a  # the published layer's (standardised) score
    wt = np.where(pos, 0.5 / pos.sum(), 0.5 / (~pos).sum())  # each class weighted one half
    sign = np.where(pos, 1.0, -1.0)
    d = z.shape[1]

    def obj(theta, free):
        v = theta[:d] if free else np.zeros(d)
        s, b = theta[-2], theta[-1]
        m = sign * (z @ v + s * t + b)  # margin: positive when right
        f = np.sum(wt * np.logaddexp(0, -m))
        g = -wt * sign / (1 + np.exp(m))  # d f / d logit
        grad = [t @ g, g.sum()]
        if not free:
            return f + 1e-8 * s * s, np.array([grad[0] + 2e-8 * s, grad[1]])
        l2 = 0.5 / (c * len(y))
        return f + l2 * v @ v, np.concatenate([z.T @ g + 2 * l2 * v, grad])

    opts = {"maxiter": 15000, "gtol": 1e-10, "ftol": 1e-15}
    sb = minimize(obj, np.zeros(2), args=(False,), jac=True, method="L-BFGS-B", options=opts).x
    theta = np.concatenate([np.zeros(d), sb])
    if c > 0:
        theta = minimize(obj, theta, args=(True,), jac=True, method="L-BFGS-B", options=opts).x
    w_z = theta[:d] + theta[-2] * a
    w = w_z / sd
    return w, float(theta[-1] - w @ mu)


class Anchored:
    """The anchored probe: :func:`fit_anchored` on the file embeddings (the mean of each
    file's judged windows), anchored on the published layer, its inverse penalty chosen
    among ``ANCHOR_C`` by a 3-fold cross-validation inside the files it is given (balanced
    log loss; ties go to the stronger anchor). What the published layer knew about attacks
    the files lack is kept unless the files say otherwise."""

    name = "anchored"

    def __init__(self, seed: int, grid: tuple[float, ...] = ANCHOR_C, inner_folds: int = 3):
        self.seed, self.grid, self.k = seed, tuple(grid), inner_folds

    def fit(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Fitted:
        files = np.asarray(files)
        x, y = data.files, data.labels[files]
        w_pub = published_logodds(data.head, data.bona)
        c = 0.0
        if min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE)) >= self.k:
            keys = [data.keys[i] for i in files]
            inner = folds(y, ["-"] * len(files), self.k, self.seed + 103 + seed, keys)
            losses = []
            for cc in self.grid:
                oof = np.zeros(len(files))
                for j in range(self.k):
                    w, b = fit_anchored(x[files[inner != j]], y[inner != j], w_pub, cc)
                    oof[inner == j] = x[files[inner == j]].astype(np.float64) @ w + b
                losses.append(balanced_log_loss(oof, y))
            c = self.grid[int(np.argmin(losses))]
        w, b = fit_anchored(x[files], y, w_pub, c)
        return Fitted(as_head(data.head, w, b, data.bona), {"anchor_c": c})

    def score(self, fitted: Fitted, data: AdaptData, files: np.ndarray) -> np.ndarray:
        return data.head_scores(fitted.layer, files)

    def describe(self, fitted: Fitted) -> str:
        c = fitted.info["anchor_c"]
        how = "the published layer's direction, recalibrated (C = 0)" if c == 0 else f"C = {c:g}"
        return (
            "anchored: class-balanced logistic regression on the file embeddings, its penalty "
            f"pulling towards the published layer; {how}, chosen by a 3-fold cross-validation "
            "on all files"
        )
