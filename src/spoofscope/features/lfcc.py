"""Linear-frequency cepstral coefficients exactly as the ASVspoof 2021 LFCC-LCNN baseline.

Recipe (every convention of the NII baseline, including its quirks): pre-emphasis 0.97; STFT
with n_fft 1024, hop 160, a periodic Hamming window of 320 centred in the frame, zero padding
of 512 on each side; power of bins 0..255; 20 linear triangles on the nominal axis
4000 k / 255 Hz; log10 with float32 eps; orthonormal DCT-II; c0 replaced by the log frame
energy; deltas d[t] = c[t+1] - c[t-1] (edges replicated, no division by 2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EPS32 = float(np.finfo(np.float32).eps)


def lfcc_filterbank(n_bins: int = 256, n_filters: int = 20, f_max: float = 4000.0) -> np.ndarray:
    """(n_bins, n_filters) triangular filters on the nominal axis ``f_max * k / (n_bins - 1)``."""
    f = f_max * np.arange(n_bins) / (n_bins - 1)
    edges = np.linspace(0.0, f_max, n_filters + 2)
    fb = np.zeros((n_bins, n_filters))
    for j in range(n_filters):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        rise = (f - lo) / (mid - lo)
        fall = (hi - f) / (hi - mid)
        fb[:, j] = np.clip(np.minimum(rise, fall), 0.0, None)
    return fb


def dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II matrix W: ``y = x @ W.T``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    w = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    w[0] /= np.sqrt(2.0)
    return w


def delta_edge(c: torch.Tensor) -> torch.Tensor:
    """d[t] = c[t+1] - c[t-1] along dim -2 (time), edges replicated, no division."""
    padded = torch.cat([c[..., :1, :], c, c[..., -1:, :]], dim=-2)
    return padded[..., 2:, :] - padded[..., :-2, :]


def _power_by_dft(y, window, n_fft: int, hop: int, n_bins: int) -> torch.Tensor:
    """The same power spectrum as the centred STFT, as a strided convolution with windowed
    cosine and sine kernels (ONNX has no complex STFT). (B, L) -> (B, T, n_bins)."""
    left = (n_fft - window.numel()) // 2
    win = torch.zeros(n_fft, dtype=y.dtype)
    win[left : left + window.numel()] = window
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_bins, dtype=torch.float64)[:, None]
    ang = 2 * torch.pi * k * n / n_fft
    kern = torch.cat([torch.cos(ang), -torch.sin(ang)]).to(y.dtype) * win
    padded = torch.nn.functional.pad(y.unsqueeze(1), (n_fft // 2, n_fft // 2))
    out = torch.nn.functional.conv1d(padded, kern.unsqueeze(1), stride=hop)  # (B, 2K, T)
    re, im = out[:, :n_bins], out[:, n_bins:]
    return (re * re + im * im).transpose(1, 2)


def lfcc(
    x: torch.Tensor,
    filterbank: torch.Tensor | None = None,
    dct: torch.Tensor | None = None,
    win_length: int = 320,
    hop: int = 160,
    n_fft: int = 1024,
    n_filters: int = 20,
    with_energy: bool = True,
    with_delta: bool = True,
) -> torch.Tensor:
    """LFCC of a waveform batch.

    Args:
        x: (B, L) float waveform.
    Returns:
        (B, 1 + L // hop, 3 * n_filters) with deltas, else (B, T, n_filters).
    """
    if filterbank is None:
        filterbank = torch.tensor(lfcc_filterbank(256, n_filters), dtype=x.dtype)
    if dct is None:
        dct = torch.tensor(dct_matrix(n_filters), dtype=x.dtype)
    y = torch.cat([x[:, :1], x[:, 1:] - 0.97 * x[:, :-1]], dim=1)
    window = torch.hamming_window(win_length, periodic=True, dtype=x.dtype, device=x.device)
    n_bins = filterbank.shape[0]
    if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        power = _power_by_dft(y, window, n_fft, hop, n_bins)
    else:
        spec = torch.stft(
            y,
            n_fft,
            hop,
            win_length,
            window=window,
            center=True,
            pad_mode="constant",
            onesided=True,
            return_complex=True,
        )
        power = torch.view_as_real(spec).norm(dim=-1).pow(2).transpose(1, 2)[..., :n_bins]
    fb_e = torch.log10(power @ filterbank.to(power) + EPS32)
    c = fb_e @ dct.to(power).T
    if with_energy:
        energy = torch.log10(power.sum(dim=-1) / n_fft + EPS32)
        c = torch.cat([energy.unsqueeze(-1), c[..., 1:]], dim=-1)
    if with_delta:
        d = delta_edge(c)
        c = torch.cat([c, d, delta_edge(d)], dim=-1)
    return c


class LFCC(nn.Module):
    """LFCC front-end module (B, L) -> (B, T, 60). The filterbank and DCT are frozen parameters
    named as in the baseline (``lfcc_fb``, ``l_dct.weight``) so that its state_dict loads."""

    def __init__(self, n_filters: int = 20, with_energy: bool = True, with_delta: bool = True):
        super().__init__()
        fb = torch.tensor(lfcc_filterbank(256, n_filters), dtype=torch.float32)
        # a frozen Parameter (not a buffer), as in the baseline, so parameter counts agree
        self.lfcc_fb = nn.Parameter(fb, requires_grad=False)
        self.l_dct = nn.Linear(n_filters, n_filters, bias=False)
        self.l_dct.weight.data.copy_(torch.tensor(dct_matrix(n_filters)))
        self.l_dct.weight.requires_grad_(False)
        self.with_energy, self.with_delta = with_energy, with_delta
        self.n_filters = n_filters

    @property
    def out_dim(self) -> int:
        return self.n_filters * (3 if self.with_delta else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return lfcc(
                x,
                self.lfcc_fb,
                self.l_dct.weight,
                with_energy=self.with_energy,
                with_delta=self.with_delta,
            )
