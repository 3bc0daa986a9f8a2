"""The fixed mel-spaced sinc band-pass filterbank of RawNet2 and AASIST (not learned)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def mel_band_edges(n_filters: int, sample_rate: int = 16000, nfft: int = 512) -> np.ndarray:
    """Band edges in Hz: ``n_filters + 1`` points uniform on the mel scale from 0 to sr/2.

    The official code takes min/max of the mel values of an ``nfft``-point frequency grid,
    which are the mels of 0 Hz and sr/2.
    """
    f = (sample_rate // 2) * np.linspace(0, 1, nfft // 2 + 1)
    mel = 2595 * np.log10(1 + f / 700)
    edges_mel = np.linspace(mel.min(), mel.max(), n_filters + 1)
    return 700 * (10 ** (edges_mel / 2595) - 1)


def sinc_filterbank(n_filters: int, kernel_size: int, sample_rate: int = 16000) -> np.ndarray:
    """(n_filters, K) Hamming-windowed ideal band-pass filters between mel-spaced edges.

    K is ``kernel_size`` forced up to an odd number, as in the official code.
    """
    k = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
    n = np.arange(-(k - 1) / 2, (k - 1) / 2 + 1)
    edges = mel_band_edges(n_filters, sample_rate)
    win = np.hamming(k)
    bank = np.empty((n_filters, k))
    for i in range(n_filters):
        lo, hi = edges[i], edges[i + 1]
        ideal = (2 * hi / sample_rate) * np.sinc(2 * hi * n / sample_rate) - (
            2 * lo / sample_rate
        ) * np.sinc(2 * lo * n / sample_rate)
        bank[i] = win * ideal
    return bank


class SincConv(nn.Module):
    """1-D convolution of a waveform with the fixed sinc filterbank.

    The filters are a non-persistent buffer: they are rebuilt from the arguments, never stored
    in a checkpoint (as in the official state_dicts). Input (B, 1, L) -> (B, F, L - K + 1).
    """

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = 16000):
        super().__init__()
        bank = sinc_filterbank(out_channels, kernel_size, sample_rate)
        self.out_channels = out_channels
        self.kernel_size = bank.shape[1]
        self.sample_rate = sample_rate
        self.register_buffer("band_pass", torch.tensor(bank, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        w = self.band_pass
        if mask:
            # frequency masking of the official AASIST front-end: zero up to 19 adjacent filters
            w = w.clone()
            width = int(torch.randint(0, 20, ()).item())
            start = int(torch.randint(0, self.out_channels - width + 1, ()).item())
            w[start : start + width] = 0
        return F.conv1d(x, w.unsqueeze(1))
