"""Speed perturbation (resampling: changes pitch and length) and pitch-preserving tempo
change (WSOLA)."""

from __future__ import annotations

import numpy as np

from ._base import Transform, fit_length, register


def change_speed(x: np.ndarray, factor: float, sr: int = 16000) -> np.ndarray:
    """Play ``factor`` times faster: resample so that the output has len(x)/factor samples."""
    import soxr

    return soxr.resample(x.astype(np.float32), sr * factor, sr, quality="HQ")


def wsola(x: np.ndarray, rate: float, frame: int = 512, tolerance: int = 128) -> np.ndarray:
    """Time-scale by ``rate`` (>1 faster) keeping the pitch: waveform-similarity overlap-add.

    Output length is about len(x) / rate.
    """
    hop = frame // 2
    win = np.hanning(frame)
    n_out = int(len(x) / rate)
    xp = np.pad(x.astype(np.float64), (tolerance, frame + tolerance + int(hop * rate) + 1))
    out = np.zeros(n_out + frame)
    norm = np.zeros(n_out + frame)
    prev = None  # natural continuation of the previous frame in the input
    for k, o in enumerate(range(0, n_out, hop)):
        centre = int(k * hop * rate) + tolerance
        if prev is None:
            pos = centre
        else:
            seg = xp[centre - tolerance : centre + tolerance + frame]
            # the candidate most similar to where the last frame would have continued
            corr = np.correlate(seg, prev, mode="valid")
            pos = centre - tolerance + int(np.argmax(corr))
        chunk = xp[pos : pos + frame]
        out[o : o + frame] += chunk * win
        norm[o : o + frame] += win
        prev = xp[pos + hop : pos + hop + frame]
    norm[norm < 1e-8] = 1.0
    return (out / norm)[:n_out]


@register("speed")
class Speed(Transform):
    """Speed perturbation by a factor from ``factors`` (e.g. 0.9, 1.0, 1.1); pitch and length
    change with it. ``keep_length``: cut or zero-pad back to the input length."""

    def __init__(self, factors=(0.9, 1.0, 1.1), keep_length: bool = True):
        self.factors, self.keep_length = list(factors), keep_length

    def apply(self, x, rng):
        f = float(self.factors[rng.integers(len(self.factors))])
        y = change_speed(x, f, self.sample_rate) if f != 1.0 else x
        return fit_length(y, x.size) if self.keep_length else y


@register("tempo")
class Tempo(Transform):
    """Pitch-preserving tempo change by a rate drawn from [min_rate, max_rate] (WSOLA).
    ``keep_length``: cut or zero-pad back to the input length."""

    def __init__(self, min_rate: float = 0.9, max_rate: float = 1.1, keep_length: bool = True):
        self.range, self.keep_length = (min_rate, max_rate), keep_length

    def apply(self, x, rng):
        y = wsola(x, rng.uniform(*self.range))
        return fit_length(y, x.size) if self.keep_length else y
