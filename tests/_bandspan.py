"""A model whose score depends only on one known band and time span, and test signals for it
(tests/test_explain.py, tests/test_explain_service.py)."""

import numpy as np
import torch
from scipy.signal import firwin

from spoofscope.infer import Decision, Detector, WindowPolicy, make_engine
from spoofscope.models._card import ModelCard

SR = 16000
BAND = (2200.0, 2800.0)  # the filter's pass band: inside the 2-3 kHz tile band
SPAN = (8000, 24000)  # the read-out's span, in samples from the window's start
GAIN = 1000.0
H = firwin(257, BAND, pass_zero=False, fs=SR)


class BandSpan(torch.nn.Module):
    """bona fide logit = -GAIN x mean over SPAN of (H * x)^2: the more energy in 2.2-2.8 kHz
    between 0.5 and 1.5 s of a window, the more spoof."""

    def __init__(self, window=32000):
        super().__init__()
        self.register_buffer("h", torch.tensor(H, dtype=torch.float32).view(1, 1, -1))
        self.card = ModelCard(name="bandspan", family="test", window_samples=window)

    def forward(self, x):
        y = torch.nn.functional.conv1d(x[:, None], self.h, padding=self.h.shape[-1] // 2)[:, 0]
        s = -GAIN * y[:, SPAN[0] : SPAN[1]].pow(2).mean(1, keepdim=True)
        return torch.cat([-s, s], 1), s


def burst(n, f, t0, amp, dur=0.15):
    """A tone at ``f`` Hz under a Hann envelope of ``dur`` s starting at ``t0`` s."""
    x = np.zeros(n)
    a = int(t0 * SR)
    m = int(dur * SR)
    t = np.arange(m) / SR
    x[a : a + m] = amp * np.hanning(m) * np.sin(2 * np.pi * f * t)
    return x


def analytic(components, window_starts):
    """Each component's contribution to the spoof score: GAIN x mean over the windows of the
    mean over SPAN of its filtered square (numpy; components do not overlap in time, so the
    cross terms vanish)."""
    out = []
    for c in components:
        y = np.convolve(c, H, mode="same")
        out.append(
            GAIN * np.mean([np.mean(y[s + SPAN[0] : s + SPAN[1]] ** 2) for s in window_starts])
        )
    return np.array(out)


def two_seconds():
    """Bursts centred in 0.25-s tiles: in band inside the span (tiles 2-5, rising), in band
    outside it (tiles 0, 7) and out of band inside it (tiles 3, 4)."""
    n = 2 * SR
    amps = (0.05, 0.10, 0.15, 0.20)
    inside = [burst(n, 2500, 0.25 * k + 0.05, amps[k - 2]) for k in range(2, 6)]
    others = [
        burst(n, 2500, 0.05, 0.3),
        burst(n, 2500, 1.80, 0.3),
        burst(n, 500, 0.80, 0.3),
        burst(n, 6000, 1.05, 0.3),
    ]
    return inside, others


def two_second_mix() -> np.ndarray:
    """All the bursts of :func:`two_seconds` in one 2-s signal."""
    inside, others = two_seconds()
    return (sum(inside) + sum(others)).astype(np.float32)


def detector(engine="torch", window=32000, **windows):
    m = BandSpan(window).eval()
    return Detector(
        make_engine(m, engine),
        windows=WindowPolicy(**windows),
        decision=Decision(vad="energy", min_speech_s=0.1),
    )
