"""Prior-weighted logistic regression of scores to log-likelihood ratios (numpy + scipy).

The objective is the standard one of score calibration and fusion (as in BOSARIS / FoCal):
minimise  P * mean(log(1 + exp(-(w.s + b + logit P))))  over bona fide trials
       + (1-P) * mean(log(1 + exp( (w.s + b + logit P)))) over spoof trials,
so that ``w.s + b`` is a natural-log likelihood ratio (bona fide vs spoof).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ..errors import ConfigError


def fit_llr_map(bona: np.ndarray, spoof: np.ndarray, prior: float = 0.5, l2: float = 1e-6):
    """Fit ``llr = X @ w + b`` on bona fide rows and spoof rows of X (N, K).

    Returns ``(w (K,), b)``.
    """
    bona = np.atleast_2d(np.asarray(bona, dtype=np.float64).T).T
    spoof = np.atleast_2d(np.asarray(spoof, dtype=np.float64).T).T
    if len(bona) == 0 or len(spoof) == 0:
        raise ConfigError("calibration needs both bona fide and spoof scores")
    k = bona.shape[1]
    offset = np.log(prior / (1 - prior))
    # standardise for a well-conditioned optimisation, then map back
    allx = np.vstack([bona, spoof])
    with np.errstate(all="ignore"):  # scores near the float range: refused here
        mu, sd = allx.mean(0), allx.std(0) + 1e-12
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd))):
        raise _too_large(allx)
    zb, zs = (bona - mu) / sd, (spoof - mu) / sd

    def obj(theta):
        w, b = theta[:k], theta[k]
        lb = zb @ w + b + offset
        ls = zs @ w + b + offset
        cb = np.logaddexp(0, -lb)
        cs = np.logaddexp(0, ls)
        f = prior * cb.mean() + (1 - prior) * cs.mean() + l2 * w @ w
        gb = -1 / (1 + np.exp(lb))  # d/dl log(1+exp(-l))
        gs = 1 / (1 + np.exp(-ls))  # d/dl log(1+exp(l))
        gw = prior * (zb.T @ gb) / len(zb) + (1 - prior) * (zs.T @ gs) / len(zs) + 2 * l2 * w
        gbias = prior * gb.mean() + (1 - prior) * gs.mean()
        return f, np.concatenate([gw, [gbias]])

    res = minimize(obj, np.zeros(k + 1), jac=True, method="L-BFGS-B")
    w_z, b_z = res.x[:k], res.x[k]
    with np.errstate(all="ignore"):
        w = w_z / sd
        b = b_z - float(np.sum(w_z * mu / sd))
    if not (np.all(np.isfinite(w)) and np.isfinite(b)):
        raise _too_large(allx)
    return w, float(b)


def _too_large(x: np.ndarray) -> ConfigError:
    return ConfigError(
        f"the scores are too large for a logistic fit (largest |score| "
        f"{float(np.max(np.abs(x))):.3g}): their spread overflows; divide them by a constant "
        "first"
    )
