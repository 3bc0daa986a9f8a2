"""Telephony and compression: mu-law and A-law companding, band-limiting, and lossy codecs
(MP3, Opus, AAC) at low bit rates through FFmpeg (PyAV)."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
from scipy.signal import butter, sosfiltfilt

from ._base import Transform, fit_length, register


def mu_law(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """mu-law compress, quantise to ``bits`` and expand (G.711 style)."""
    y = np.sign(x) * np.log1p(mu * np.abs(np.clip(x, -1, 1))) / np.log1p(mu)
    q = 2 ** (bits - 1)
    y = np.round(y * q) / q
    return np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu


def a_law(x: np.ndarray, bits: int = 8, a: float = 87.6) -> np.ndarray:
    """A-law compress, quantise to ``bits`` and expand."""
    ax = np.abs(np.clip(x, -1, 1))
    small = ax < 1 / a
    y = np.where(
        small, a * ax / (1 + np.log(a)), (1 + np.log(np.maximum(a * ax, 1e-12))) / (1 + np.log(a))
    )
    q = 2 ** (bits - 1)
    y = np.round(y * q) / q
    inv = np.where(
        y < 1 / (1 + np.log(a)), y * (1 + np.log(a)) / a, np.exp(y * (1 + np.log(a)) - 1) / a
    )
    return np.sign(x) * inv


@register("mulaw")
class MuLaw(Transform):
    def __init__(self, bits: int = 8):
        self.bits = bits

    def apply(self, x, rng):
        return mu_law(x, self.bits)


@register("alaw")
class ALaw(Transform):
    def __init__(self, bits: int = 8):
        self.bits = bits

    def apply(self, x, rng):
        return a_law(x, self.bits)


@register("bandlimit")
class BandLimit(Transform):
    """Zero-phase Butterworth band-pass, e.g. telephone band 300-3400 Hz."""

    def __init__(self, low: float = 300.0, high: float = 3400.0, order: int = 6):
        self.sos = butter(order, [low, high], btype="bandpass", fs=self.sample_rate, output="sos")

    def apply(self, x, rng):
        return sosfiltfilt(self.sos, x)


_CODECS = {  # name -> (container, encoder, encoder sample rate)
    "mp3": ("mp3", "libmp3lame", 16000),
    "opus": ("ogg", "libopus", 16000),
    "aac": ("adts", "aac", 16000),
}


def codec_roundtrip(x: np.ndarray, codec: str, bitrate: int, sr: int = 16000) -> np.ndarray:
    """Encode with a lossy codec at ``bitrate`` bit/s and decode back (same length)."""
    import av

    fmt, enc, rate = _CODECS[codec]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        st = out.add_stream(enc, rate=rate)
        st.layout = "mono"
        st.bit_rate = int(bitrate)
        sample_fmt = st.codec_context.codec.audio_formats[0].name
        res = av.AudioResampler(format=sample_fmt, layout="mono", rate=rate)
        frame_size = 960 if codec == "opus" else 1152 if codec == "mp3" else 1024
        for i in range(0, x.size, frame_size):
            chunk = np.ascontiguousarray(x[i : i + frame_size], np.float32).reshape(1, -1)
            fr = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = sr, i, Fraction(1, sr)
            for rf in res.resample(fr):
                for p in st.encode(rf):
                    out.mux(p)
        for rf in res.resample(None):
            for p in st.encode(rf):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    y = _decode(buf.getvalue(), sr)
    # codecs add a priming delay: align on the best cross-correlation lag (up to 100 ms)
    lag = _best_lag(x, y, int(0.1 * sr))
    return fit_length(y[lag:], x.size)


def _decode(data: bytes, sr: int) -> np.ndarray:
    """Decode our own encoding back to mono float32 at ``sr``. Not ``load_audio``: a raw AAC
    (ADTS) stream declares a duration estimated from its bit rate, which the truncation check
    of user files would take for a cut file."""
    import av

    out = []
    with av.open(io.BytesIO(data)) as f:
        res = av.AudioResampler(format="flt", layout="mono", rate=sr)
        for frame in f.decode(audio=0):
            for rf in res.resample(frame):
                out.append(rf.to_ndarray().reshape(-1))
        for rf in res.resample(None):
            out.append(rf.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _best_lag(x, y, max_lag):
    n = min(x.size, y.size - max_lag)
    if n <= 0:
        return 0
    c = [np.dot(x[:n], y[k : k + n]) for k in range(max_lag)]
    return int(np.argmax(c))


@register("codec")
class Codec(Transform):
    """A lossy codec from ``codecs`` at a bit rate from ``bitrates`` (bit/s)."""

    def __init__(self, codecs=("mp3", "opus", "aac"), bitrates=(16000, 24000, 32000)):
        unknown = set(codecs) - set(_CODECS)
        if unknown:
            raise ValueError(f"unknown codecs {sorted(unknown)}; known: {sorted(_CODECS)}")
        self.codecs, self.bitrates = list(codecs), list(bitrates)

    def apply(self, x, rng):
        c = self.codecs[rng.integers(len(self.codecs))]
        b = self.bitrates[rng.integers(len(self.bitrates))]
        return codec_roundtrip(x, c, b, self.sample_rate)
