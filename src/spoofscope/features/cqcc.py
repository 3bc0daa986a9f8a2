"""Constant-Q cepstral coefficients as the ASVspoof 2021 CQCC-GMM baseline computes them.

An independent numpy implementation of the recipe (non-stationary Gabor CQT with 'full'
rasterisation, uniform resampling of the log power along frequency by a bicubic spline,
orthonormal DCT, deltas): B=12 bins per octave from 62.5 Hz to 4 kHz, 20 coefficients with c0.

``cqcc(x)`` reproduces the shipped baseline, whose deltas run across the cepstral index (a quirk
of its Python port); ``cqcc(x, deltas="time")`` computes them along time, as the original
MATLAB ``cqcc.m`` intends.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def cq_log_power(
    x: np.ndarray, sr: int = 16000, fmin: float = 62.5, fmax: float = 4000.0, bins: int = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log power of the constant-Q transform.

    Returns:
        ``(logpow (K, M), times (M,) in s, freqs (K,) in Hz)``.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    spec = np.fft.fft(x)
    k_bins = int(np.floor(bins * np.log2(fmax / fmin))) + 1
    freqs = fmin * 2.0 ** (np.arange(k_bins) / bins)
    q = 2 ** (1 / bins) - 2 ** (-1 / bins)
    gamma = 228.7 * q
    bw = q * freqs + gamma
    centre = np.floor(freqs * n / sr).astype(np.int64)
    lg = np.maximum(np.round(bw * n / sr).astype(np.int64), 4)
    m = int(lg[-1])
    out = np.empty((k_bins, m), dtype=np.complex128)
    for k in range(k_bins):
        L = int(lg[k])
        j = np.arange(-(L // 2), -(-L // 2))
        h = 0.5 + 0.5 * np.cos(2 * np.pi * j / L)
        z = np.zeros(m, dtype=np.complex128)
        np.add.at(z, j % m, spec[(centre[k] + j) % n] * h * (2.0 * m / n))
        out[k] = np.fft.ifft(z)
    logpow = np.log(np.abs(out) ** 2 + np.finfo(np.float64).eps)
    times = (np.arange(m) + 1) * n / m / sr
    return logpow, times, freqs


def _htk_delta_last_axis(c: np.ndarray, hlen: int = 2) -> np.ndarray:
    """HTK regression (sum_t t*(c[i+t]-c[i-t]) / (2*sum t^2)) along the last axis, edges
    replicated."""
    padded = np.concatenate(
        [np.repeat(c[..., :1], hlen, -1), c, np.repeat(c[..., -1:], hlen, -1)], axis=-1
    )
    n = c.shape[-1]
    num = sum(
        t * (padded[..., hlen + t : hlen + t + n] - padded[..., hlen - t : hlen - t + n])
        for t in range(1, hlen + 1)
    )
    return num / (2 * sum(t * t for t in range(1, hlen + 1)))


def cqcc(
    x,
    sr: int = 16000,
    fmin: float = 62.5,
    fmax: float = 4000.0,
    bins: int = 12,
    n_coef: int = 20,
    d: int = 16,
    deltas: str = "official",
) -> np.ndarray:
    """CQCC with deltas and delta-deltas.

    Args:
        x: (L,) waveform (computed in float64).
        deltas: ``"official"`` (across the cepstral index, as the shipped baseline) or
            ``"time"`` (along time, as the original MATLAB).
    Returns:
        (M, 3 * n_coef) float64.
    """
    # SciPy here, not at import: every model import (and so every detect) would pay ~0.9 s
    from scipy.fft import dct as _dct
    from scipy.interpolate import RectBivariateSpline

    logpow, times, freqs = cq_log_power(x, sr, fmin, fmax, bins)
    kl = bins * np.log2(1 + 1 / d)
    new_fs = 1 / (fmin * (2 ** (kl / bins) - 1))
    n_u = int(np.ceil(len(freqs) * 9.562 / new_fs))
    f_u = np.linspace(fmin, fmax, n_u)
    uniform = RectBivariateSpline(times, freqs, logpow.T, kx=3, ky=3, s=0)(times, f_u)
    c = _dct(uniform, type=2, norm="ortho", axis=1)[:, :n_coef]
    if deltas == "official":
        dc = _htk_delta_last_axis(c)
        ddc = _htk_delta_last_axis(dc)
    elif deltas == "time":
        dc = _htk_delta_last_axis(c.T).T
        ddc = _htk_delta_last_axis(dc.T).T
    else:
        raise ValueError(f"deltas must be 'official' or 'time', not {deltas!r}")
    return np.concatenate([c, dc, ddc], axis=1)


class CQCC(nn.Module):
    """CQCC front-end module: (B, L) -> (B, M, 60), computed in float64 numpy per item and
    returned in the input's dtype (not differentiable; it has no parameters)."""

    def __init__(self, deltas: str = "official", n_coef: int = 20):
        super().__init__()
        self.deltas, self.n_coef = deltas, n_coef

    @property
    def out_dim(self) -> int:
        return 3 * self.n_coef

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [
            cqcc(w, n_coef=self.n_coef, deltas=self.deltas)
            for w in x.detach().cpu().double().numpy()
        ]
        return torch.tensor(np.stack(feats), dtype=x.dtype, device=x.device)
