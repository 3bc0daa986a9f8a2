"""Helpers that write real encoded audio files for the tests (PyAV and soundfile)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def tone(sr: int, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    return x.astype(np.float32)


def tone_noise_pause(
    seconds: float,
    noise: tuple,
    pause: tuple,
    tail: float | None = None,
    seed: int = 0,
    sr: int = 16000,
) -> np.ndarray:
    """A 200-Hz tone with a stretch of white noise (``noise``: start and end in seconds), a
    pause (``pause``) and, from ``tail`` s on, silence: windows of several kinds for the
    responsive stand-in model (tests/_models.py: the tone scores high, the noise low)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 200 * t)
    a, b = int(noise[0] * sr), int(noise[1] * sr)
    x[a:b] = 0.1 * rng.standard_normal(b - a)
    x[int(pause[0] * sr) : int(pause[1] * sr)] = 0.0
    if tail is not None:
        x[int(tail * sr) :] = 0.0
    return x.astype(np.float32)


def encode_pyav(path: Path, x: np.ndarray, sr: int, fmt: str, codec: str, rate=None) -> Path:
    """Encode a mono (L,) float signal with FFmpeg through PyAV."""
    import av

    layout = "mono"
    with av.open(str(path), "w", format=fmt) as out:
        st = out.add_stream(codec, rate=rate or sr)
        st.layout = layout
        frame_size = 960 if "opus" in codec else 1024
        fmt_name = st.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt_name, layout=layout, rate=rate or sr)
        for i in range(0, len(x), frame_size):
            chunk = np.ascontiguousarray(x[i : i + frame_size].reshape(1, -1))
            fr = av.AudioFrame.from_ndarray(chunk, format="flt", layout=layout)
            fr.sample_rate = sr
            fr.pts = i
            fr.time_base = Fraction(1, sr)
            for rf in resampler.resample(fr):
                for p in st.encode(rf):
                    out.mux(p)
        for rf in resampler.resample(None):
            for p in st.encode(rf):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return path
