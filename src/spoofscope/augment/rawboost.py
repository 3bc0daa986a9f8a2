"""RawBoost data boosting (H. Tak et al., "RawBoost: A Raw Data Boosting and Augmentation
Method applied to Automatic Speaker Verification Anti-Spoofing", ICASSP 2022).

Three noises, written here from the paper's description:

1. linear and non-linear convolutive noise (LnL): a sum over orders j = 1..N_f of the signal
   raised to the power j, each filtered by a random multi-band FIR filter;
2. impulsive signal-dependent additive noise (ISD): P % of the samples get
   ``x[i] * g * z1 * z2`` added, z ~ U(-1, 1);
3. stationary signal-independent additive noise (SSI): white noise coloured by a random FIR
   filter, added at a random SNR.

``algo`` selects one or a combination, numbered as in the reference implementation:
1 LnL, 2 ISD, 3 SSI, 4 series 1+2+3, 5 series 1+2, 6 series 1+3, 7 series 2+3,
8 parallel 1 and 2 (their average).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import firwin, lfilter

from ._base import Transform, register


@dataclass
class RawBoostParams:
    n_bands: int = 5
    min_f: float = 20.0
    max_f: float = 8000.0
    min_bw: float = 100.0
    max_bw: float = 1000.0
    min_coeff: int = 10
    max_coeff: int = 100
    min_g: float = 0.0
    max_g: float = 0.0
    min_bias_lin_nonlin: float = 5.0
    max_bias_lin_nonlin: float = 20.0
    n_f: int = 5
    p_percent: float = 10.0
    g_sd: float = 2.0
    snr_min: float = 10.0
    snr_max: float = 40.0


def _random_filter(rng, prm: RawBoostParams, sr: int, gain_db: float) -> np.ndarray:
    """Sum of ``n_bands`` random band-pass FIR filters (one impulse response)."""
    taps = None
    nyq = sr / 2
    for _ in range(prm.n_bands):
        fc = rng.uniform(prm.min_f, prm.max_f)
        bw = rng.uniform(prm.min_bw, prm.max_bw)
        order = int(rng.integers(prm.min_coeff, prm.max_coeff + 1)) | 1  # odd number of taps
        lo = max(fc - bw / 2, 1.0)
        hi = min(fc + bw / 2, nyq - 1.0)
        if hi <= lo:
            lo, hi = max(nyq - bw - 1.0, 1.0), nyq - 1.0
        b = firwin(order, [lo, hi], pass_zero=False, window="hamming", fs=sr)
        taps = b if taps is None else _add_padded(taps, b)
    g = 10 ** (gain_db / 20)
    return taps * g


def _add_padded(a, b):
    n = max(a.size, b.size)
    return np.pad(a, (0, n - a.size)) + np.pad(b, (0, n - b.size))


def _normalise(y: np.ndarray) -> np.ndarray:
    m = np.max(np.abs(y))
    return y / m if m > 0 else y


def lnl_convolutive(x, rng, prm: RawBoostParams, sr: int = 16000) -> np.ndarray:
    y = np.zeros_like(x, dtype=np.float64)
    for j in range(1, prm.n_f + 1):
        gain = rng.uniform(prm.min_g, prm.max_g) - (j - 1) * rng.uniform(
            prm.min_bias_lin_nonlin, prm.max_bias_lin_nonlin
        )
        b = _random_filter(rng, prm, sr, gain)
        y += lfilter(b, 1.0, np.power(x, j))
    y = y - y.mean()
    return _normalise(y)


def isd_impulsive(x, rng, prm: RawBoostParams) -> np.ndarray:
    y = np.array(x, dtype=np.float64)
    n = int(round(x.size * prm.p_percent / 100))
    idx = rng.permutation(x.size)[:n]
    z = (2 * rng.random(n) - 1) * (2 * rng.random(n) - 1)
    y[idx] += prm.g_sd * x[idx] * z
    return _normalise(y)


def ssi_stationary(x, rng, prm: RawBoostParams, sr: int = 16000) -> np.ndarray:
    noise = rng.standard_normal(x.size)
    b = _random_filter(rng, prm, sr, rng.uniform(prm.min_g, prm.max_g))
    noise = _normalise(lfilter(b, 1.0, noise))
    snr = rng.uniform(prm.snr_min, prm.snr_max)
    px = np.sum(np.square(x, dtype=np.float64))
    pn = np.sum(noise**2)
    if pn == 0 or px == 0:
        return np.asarray(x, dtype=np.float64)
    noise *= np.sqrt(px / pn / 10 ** (snr / 10))
    return x + noise


@register("rawboost")
class RawBoost(Transform):
    """RawBoost with ``algo`` 1-8 (see the module docstring). Length-preserving."""

    def __init__(self, algo: int = 5, **params):
        if algo not in range(1, 9):
            raise ValueError("rawboost algo must be 1..8")
        self.algo = algo
        self.prm = RawBoostParams(**params)

    def apply(self, x, rng):
        p, sr = self.prm, self.sample_rate
        a = self.algo
        if a == 1:
            return lnl_convolutive(x, rng, p, sr)
        if a == 2:
            return isd_impulsive(x, rng, p)
        if a == 3:
            return ssi_stationary(x, rng, p, sr)
        if a == 4:
            return ssi_stationary(isd_impulsive(lnl_convolutive(x, rng, p, sr), rng, p), rng, p, sr)
        if a == 5:
            return isd_impulsive(lnl_convolutive(x, rng, p, sr), rng, p)
        if a == 6:
            return ssi_stationary(lnl_convolutive(x, rng, p, sr), rng, p, sr)
        if a == 7:
            return ssi_stationary(isd_impulsive(x, rng, p), rng, p, sr)
        y1 = lnl_convolutive(x, rng, p, sr)
        y2 = isd_impulsive(x, rng, p)
        return _normalise(y1 + y2)
