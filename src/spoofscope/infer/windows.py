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


class WindowCutter:
    """Windows of ``size`` samples every ``hop`` samples, cut from audio pushed in pieces of
    any size (the one scheduler behind files and streams: :func:`sliding_windows` pulls
    chunks through it). A last window ending exactly at the end is added by :meth:`finish`
    when the regular grid stops short of it; audio shorter than one window gives one tiled
    window. Memory holds at most ``size + hop`` samples plus one pushed piece."""

    def __init__(self, size: int, hop: int):
        if hop <= 0:
            raise ConfigError("hop must be positive")
        self.size, self.hop = int(size), int(hop)
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0  # absolute index of buf[0]
        self.next_start = 0
        self.last_end = 0
        self.total = 0

    def push(self, c: np.ndarray) -> list[Window]:
        size, out = self.size, []
        self.buf = np.concatenate([self.buf, c]) if self.buf.size else c
        self.total += c.size
        while self.next_start + size <= self.total:
            a = self.next_start - self.buf_start
            w = self.buf[a : a + size]
            out.append(Window(self.next_start, self.next_start + size, w, _rms(w)))
            self.last_end = self.next_start + size
            self.next_start += self.hop
        # keep only what a later window can still need (the last `size` samples at most)
        keep_from = max(min(self.next_start, self.total - size), 0)
        if keep_from > self.buf_start:
            self.buf = self.buf[keep_from - self.buf_start :].copy()
            self.buf_start = keep_from
        return out

    def finish(self) -> list[Window]:
        size, total = self.size, self.total
        if total == 0:
            return []
        if total < size:
            w = official_crop(self.buf, size).astype(np.float32, copy=False)
            return [Window(0, total, w, _rms(self.buf))]
        if self.last_end < total:
            w = self.buf[total - size - self.buf_start :]
            return [Window(total - size, total, w, _rms(w))]
        return []


def sliding_windows(chunks: Iterable[np.ndarray], size: int, hop: int) -> Iterator[Window]:
    """Windows of ``size`` samples every ``hop`` samples covering the whole stream (see
    :class:`WindowCutter`)."""
    for _, w in grid_windows(chunks, [WindowCutter(size, hop)]):
        yield w


def grid_windows(
    chunks: Iterable[np.ndarray], cutters: list[WindowCutter]
) -> Iterator[tuple[int, Window]]:
    """The windows of several cutters (grids of other lengths or hops) over one pass of the
    stream, each as ``(index of its cutter, window)``."""
    for c in chunks:
        for i, cut in enumerate(cutters):
            for w in cut.push(c):
                yield i, w
    for i, cut in enumerate(cutters):
        for w in cut.finish():
            yield i, w


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
