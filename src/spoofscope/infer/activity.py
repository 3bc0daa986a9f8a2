"""Is there anything to judge? An energy-based speech-activity meter.

A recording is cut into 20-ms frames; a frame is active when its RMS reaches the threshold
(``WindowPolicy.silence_db``, -50 dBFS by default). The detector abstains (label
``"no_speech"``) when the active frames add up to less than ``Decision.min_speech_s``
(0.5 s): digital silence, low-level noise (hiss, hum below the threshold) and isolated clicks
never reach it, while speech with long pauses does. It is an energy detector, not a speech
classifier: loud non-speech sound (music, noise at speech level) counts as activity, and is
judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


class SpeechMeter:
    """Counts active frames in a stream of mono chunks, over the first ``limit`` samples (all
    when None), while passing the chunks through unchanged (:meth:`wrap`)."""

    def __init__(
        self, sample_rate: int, threshold_db: float, limit: int | None = None, frame_s: float = 0.02
    ):
        self.frame = max(1, int(round(frame_s * sample_rate)))
        self.sample_rate = sample_rate
        self.threshold = 10 ** (threshold_db / 10)  # on the mean square
        self.limit = limit
        self.seen = 0
        self.active_frames = 0
        self._rest = np.zeros(0, np.float32)
        self._mask: list[np.ndarray] = []  # activity of each whole frame, in order

    def _count(self, x: np.ndarray) -> None:
        if self.limit is not None:
            x = x[: max(self.limit - self.seen, 0)]
        if not x.size:
            return
        self.seen += x.size
        buf = np.concatenate([self._rest, x]) if self._rest.size else x
        n = buf.size // self.frame
        if n:
            ms = np.mean(
                np.square(buf[: n * self.frame].reshape(n, self.frame), dtype=np.float64), axis=1
            )
            on = ms >= self.threshold
            self.active_frames += int(np.sum(on))
            self._mask.append(on)
        self._rest = buf[n * self.frame :].copy()

    def wrap(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for c in chunks:
            self._count(c)
            yield c

    @property
    def mask(self) -> np.ndarray:
        """Activity of every 20-ms frame read so far (a partial last frame included)."""
        parts = list(self._mask)
        if self._rest.size:
            parts.append(
                np.array([np.mean(np.square(self._rest, dtype=np.float64)) >= self.threshold])
            )
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    @property
    def active_s(self) -> float:
        """Seconds of active frames (a partial last frame counts if active)."""
        rest = 0
        if self._rest.size and np.mean(np.square(self._rest, dtype=np.float64)) >= self.threshold:
            rest = self._rest.size
        return (self.active_frames * self.frame + rest) / self.sample_rate
