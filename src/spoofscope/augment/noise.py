"""Additive noise at a chosen SNR, reverberation with room impulse responses, gain, clipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from ..audio import AudioError, load_audio
from ._base import Transform, register


def coloured_noise(n: int, rng, colour: str = "white") -> np.ndarray:
    """Gaussian noise with a 1/f^k power spectrum: white k=0, pink k=1, brown k=2."""
    k = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}[colour]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spec *= f ** (-k / 2)
    y = np.fft.irfft(spec, n)
    return y / (np.std(y) + 1e-12)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + a * noise with a chosen so that 10 log10(P_x / P_(a noise)) = snr_db."""
    px = np.mean(np.square(x, dtype=np.float64))
    pn = np.mean(np.square(noise, dtype=np.float64))
    if px == 0 or pn == 0:
        return x.astype(np.float64)
    return x + noise * np.sqrt(px / (pn * 10 ** (snr_db / 10)))


def _audio_files(folder) -> list[Path]:
    exts = {".wav", ".flac", ".ogg", ".mp3"}
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise ValueError(f"no audio files under {folder}")
    return files


@register("noise")
class AddNoise(Transform):
    """Additive noise at a random SNR in [snr_min, snr_max] dB: synthetic coloured noise
    (``colours``) or excerpts of files under ``folder`` (e.g. MUSAN)."""

    def __init__(
        self,
        snr_min: float = 5.0,
        snr_max: float = 30.0,
        colours=("white", "pink", "brown"),
        folder: str | None = None,
    ):
        self.snr_min, self.snr_max = snr_min, snr_max
        self.colours = list(colours)
        self.files = _audio_files(folder) if folder else None

    def _noise(self, n, rng):
        if self.files is None:
            return coloured_noise(n, rng, self.colours[rng.integers(len(self.colours))])
        path = self.files[rng.integers(len(self.files))]
        try:
            z = load_audio(path, self.sample_rate)
        except AudioError:
            return coloured_noise(n, rng, "white")
        if z.size < n:
            z = np.tile(z, n // z.size + 1)
        start = int(rng.integers(0, z.size - n + 1))
        return z[start : start + n].astype(np.float64)

    def apply(self, x, rng):
        snr = rng.uniform(self.snr_min, self.snr_max)
        return mix_at_snr(x, self._noise(x.size, rng), snr)


@register("reverb")
class Reverb(Transform):
    """Convolution with a room impulse response from ``folder`` (or a synthetic exponentially
    decaying one with RT60 in [rt60_min, rt60_max] s); aligned on the direct path and cut to
    the input length."""

    def __init__(self, folder: str | None = None, rt60_min: float = 0.2, rt60_max: float = 0.8):
        self.files = _audio_files(folder) if folder else None
        self.rt60 = (rt60_min, rt60_max)

    def _rir(self, rng):
        sr = self.sample_rate
        if self.files is not None:
            return load_audio(self.files[rng.integers(len(self.files))], sr).astype(np.float64)
        rt60 = rng.uniform(*self.rt60)
        n = int(rt60 * sr)
        t = np.arange(n) / sr
        rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
        rir[0] = 1.0
        return rir

    def apply(self, x, rng):
        rir = self._rir(rng)
        rir = rir / (np.sqrt(np.sum(rir**2)) + 1e-12)
        d = int(np.argmax(np.abs(rir)))
        y = fftconvolve(x, rir)[d : d + x.size]
        peak = np.max(np.abs(y))
        return y / peak * np.max(np.abs(x)) if peak > 0 else y


@register("gain")
class Gain(Transform):
    """Gain in dB drawn from [min_db, max_db]; the result is clipped to [-1, 1]."""

    def __init__(self, min_db: float = -6.0, max_db: float = 6.0):
        self.range = (min_db, max_db)

    def apply(self, x, rng):
        return np.clip(x * 10 ** (rng.uniform(*self.range) / 20), -1, 1)


@register("clip")
class Clip(Transform):
    """Hard clipping at a fraction of the peak drawn from [min_ratio, max_ratio]."""

    def __init__(self, min_ratio: float = 0.3, max_ratio: float = 0.9):
        self.range = (min_ratio, max_ratio)

    def apply(self, x, rng):
        level = rng.uniform(*self.range) * np.max(np.abs(x))
        return np.clip(x, -level, level) if level > 0 else x
