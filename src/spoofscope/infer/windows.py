"""Window policies over whole recordings, streamed with bounded memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..audio import official_crop
from ..errors import ConfigError


@dataclass(frozen=True)
class Window:
    start: int  # samples
    end: int  # samples (exclusive); may exceed the file for a tiled short file
    samples: np.ndarray  # (W,) float32
    rms: float
    total: int | None = None  # length of the whole recording, when the policy knows it


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def official_window(chunks: Iterable[np.ndarray], size: int) -> Iterator[Window]:
    """The official evaluation: the first ``size`` samples, tiled when the file is shorter.

    The rest of the stream is decoded only to count its length (so the reported duration is
    the file's) and to surface a corrupt tail; it is not kept.
    """
    buf, n = [], 0
    for c in chunks:
        if n < size:
            buf.append(c)
        n += c.size
    x = np.concatenate(buf) if buf else np.zeros(0, np.float32)
    w = official_crop(x[:size], size).astype(np.float32, copy=False)
    yield Window(0, min(n, size), w, _rms(w), total=n)


def sliding_windows(chunks: Iterable[np.ndarray], size: int, hop: int) -> Iterator[Window]:
    """Windows of ``size`` samples every ``hop`` samples covering the whole stream.

    A last window ending exactly at the end of the file is added when the regular grid
    stops short of it; a file shorter than one window gives one tiled window. Memory holds at
    most ``size + hop`` samples plus one decoded chunk.
    """
    if hop <= 0:
        raise ConfigError("hop must be positive")
    buf = np.zeros(0, np.float32)
    buf_start = 0  # absolute index of buf[0]
    next_start = 0
    last_end = 0
    total = 0
    for c in chunks:
        buf = np.concatenate([buf, c]) if buf.size else c
        total += c.size
        while next_start + size <= total:
            a = next_start - buf_start
            w = buf[a : a + size]
            yield Window(next_start, next_start + size, w, _rms(w))
            last_end = next_start + size
            next_start += hop
        # keep only what a later window can still need (the last `size` samples at most)
        keep_from = max(min(next_start, total - size), 0)
        if keep_from > buf_start:
            buf = buf[keep_from - buf_start :].copy()
            buf_start = keep_from
    if total == 0:
        return
    if total < size:
        w = official_crop(buf, size).astype(np.float32, copy=False)
        yield Window(0, total, w, _rms(buf))
    elif last_end < total:
        w = buf[total - size - buf_start :]
        yield Window(total - size, total, w, _rms(w))


def aggregate(scores: np.ndarray, how: str = "mean", quantile: float = 0.1) -> float:
    """Combine window scores: ``mean``, a low ``quantile`` (the most spoof-like part) or
    ``min``."""
    scores = np.asarray(scores, dtype=np.float64)
    if how == "mean":
        return float(scores.mean())
    if how == "min":
        return float(scores.min())
    if how == "quantile":
        return float(np.quantile(scores, quantile))
    raise ConfigError(f"aggregate must be mean, quantile or min, not {how!r}")
