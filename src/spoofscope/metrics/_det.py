"""DET curve and EER with the conventions of the official ASVspoof evaluation code.

Conventions (shared by the ASVspoof 2019, 2021 and 5 packages):

* higher score means more bona fide (target);
* targets are concatenated before non-targets and sorted ascending with a *stable* mergesort,
  so tied scores keep that order and produce intermediate DET points;
* the curve has N + 1 points: point 0 rejects nothing (miss 0, false alarm 1) and its threshold
  is the lowest score - 0.001; point k rejects the k lowest scores and its threshold is the k-th
  lowest score;
* the EER point is the first argmin of |miss - fa|, EER = (miss + fa) / 2 there.
"""

from __future__ import annotations

import numpy as np


def _as_scores(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name}: no scores (an EER needs at least one trial of each class)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(a)))} scores are NaN or infinite")
    return a


def det_curve(target_scores, nontarget_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold, as the official ``compute_det_curve``.

    Args:
        target_scores: (Nt,) scores of bona fide (or target) trials.
        nontarget_scores: (Nn,) scores of spoof (or non-target) trials.

    Returns:
        ``(miss, fa, thresholds)``, each of shape (Nt + Nn + 1,).
    """
    tar = _as_scores(target_scores, "target scores")
    non = _as_scores(nontarget_scores, "non-target scores")
    n = tar.size + non.size
    scores = np.concatenate((tar, non))
    labels = np.concatenate((np.ones(tar.size), np.zeros(non.size)))
    order = np.argsort(scores, kind="mergesort")
    labels = labels[order]
    tar_sums = np.cumsum(labels)
    non_sums = non.size - (np.arange(1, n + 1) - tar_sums)
    miss = np.concatenate((np.zeros(1), tar_sums / tar.size))
    fa = np.concatenate((np.ones(1), non_sums / non.size))
    thresholds = np.concatenate((scores[order[:1]] - 0.001, scores[order]))
    return miss, fa, thresholds


def compute_eer(target_scores, nontarget_scores) -> tuple[float, float]:
    """Equal error rate (a fraction, not %) and its threshold, as the official ``compute_eer``."""
    miss, fa, thr = det_curve(target_scores, nontarget_scores)
    i = int(np.argmin(np.abs(miss - fa)))
    return float(np.mean((miss[i], fa[i]))), float(thr[i])
