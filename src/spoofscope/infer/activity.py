"""Is there anything to judge? Two speech-activity meters behind one interface.

* :class:`SileroMeter` (the default, ``--vad silero``): the Silero VAD (silero-vad, MIT; its
  ONNX model ships in the wheel and runs here with ONNX Runtime) gives a speech probability
  every 32 ms; a frame is speech at probability >= 0.5 (Silero's own default). Music, tones
  and noise at speech level are not speech to it, so the detector abstains on them instead of
  calling them spoof. It needs 16-kHz input (every registered model's rate).
* :class:`SpeechMeter` (``--vad energy``, dependency-free): a 20-ms frame is active when its
  RMS reaches the threshold (``WindowPolicy.silence_db``, -50 dBFS by default). Digital
  silence, low-level noise and isolated clicks never reach it; loud non-speech sound does.

The detector abstains (label ``"no_speech"``) when the active frames add up to less than
``Decision.min_speech_s`` (0.5 s); speech with long pauses is judged. ``SPOOFSCOPE_VAD``
(``silero`` or ``energy``) sets the default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import ConfigError

VADS = ("silero", "energy")


def default_vad() -> str:
    """``SPOOFSCOPE_VAD`` when set (``silero`` or ``energy``), else ``silero``."""
    v = os.environ.get("SPOOFSCOPE_VAD", "silero").strip().lower()
    if v not in VADS:
        raise ConfigError(f"SPOOFSCOPE_VAD must be one of {', '.join(VADS)}, not {v!r}")
    return v


def make_meter(vad: str, sample_rate: int, threshold_db: float, limit: int | None = None):
    """The activity meter ``vad`` names, over the first ``limit`` samples."""
    if vad == "silero":
        return SileroMeter(sample_rate, limit)
    if vad == "energy":
        return SpeechMeter(sample_rate, threshold_db, limit)
    raise ConfigError(f"vad must be one of {', '.join(VADS)}, not {vad!r}")


class _FrameMeter:
    """Cuts a stream of mono chunks into whole frames of ``frame`` samples, over the first
    ``limit`` samples (all when None), and hands each block of frames to :meth:`_frames`,
    while passing the chunks through unchanged (:meth:`wrap`)."""

    def __init__(self, sample_rate: int, frame: int, limit: int | None):
        self.sample_rate, self.frame, self.limit = sample_rate, frame, limit
        self.seen = 0
        self._rest = np.zeros(0, np.float32)

    def _frames(self, frames: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _count(self, x: np.ndarray) -> None:
        if self.limit is not None:
            x = x[: max(self.limit - self.seen, 0)]
        if not x.size:
            return
        self.seen += x.size
        buf = np.concatenate([self._rest, x]) if self._rest.size else x
        n = buf.size // self.frame
        if n:
            self._frames(buf[: n * self.frame].reshape(n, self.frame))
        self._rest = buf[n * self.frame :].copy()

    def wrap(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for c in chunks:
            self._count(c)
            yield c


class SpeechMeter(_FrameMeter):
    """The energy meter: a 20-ms frame is active when its mean square reaches the
    threshold."""

    def __init__(
        self, sample_rate: int, threshold_db: float, limit: int | None = None, frame_s: float = 0.02
    ):
        super().__init__(sample_rate, max(1, int(round(frame_s * sample_rate))), limit)
        self.threshold = 10 ** (threshold_db / 10)  # on the mean square
        self.active_frames = 0
        self._mask: list[np.ndarray] = []  # activity of each whole frame, in order

    def _frames(self, frames: np.ndarray) -> None:
        on = np.mean(np.square(frames, dtype=np.float64), axis=1) >= self.threshold
        self.active_frames += int(np.sum(on))
        self._mask.append(on)

    def _rest_active(self) -> bool:
        return bool(self._rest.size) and bool(
            np.mean(np.square(self._rest, dtype=np.float64)) >= self.threshold
        )

    @property
    def mask(self) -> np.ndarray:
        """Activity of every 20-ms frame read so far (a partial last frame included)."""
        parts = list(self._mask) + ([np.array([self._rest_active()])] if self._rest.size else [])
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    @property
    def active_s(self) -> float:
        """Seconds of active frames (a partial last frame counts if active)."""
        rest = self._rest.size if self._rest_active() else 0
        return (self.active_frames * self.frame + rest) / self.sample_rate


_SESSION = None
_SESSION_LOCK = threading.Lock()


def _silero_session():
    """One ONNX Runtime session of Silero's sequence model (a run takes every 32-ms chunk of
    a block at once, carrying the LSTM state), shared by all meters; ``run`` is thread-safe."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            try:
                from importlib.resources import files

                path = files("silero_vad") / "data" / "silero_vad_16k_sequence.onnx"
            except ModuleNotFoundError:
                raise ConfigError(
                    "the Silero VAD needs the silero-vad package (pip install silero-vad), or "
                    "use --vad energy"
                ) from None
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            _SESSION = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return _SESSION


class SileroMeter(_FrameMeter):
    """Silero speech probabilities of 32-ms chunks (512 samples at 16 kHz, each with the 64
    samples before it as context, as the Silero package feeds them) over a stream of mono
    chunks; the same interface as :class:`SpeechMeter`."""

    CHUNK, CONTEXT = 512, 64
    THRESHOLD = 0.5

    def __init__(self, sample_rate: int, limit: int | None = None):
        if sample_rate != 16000:
            raise ConfigError(
                f"the Silero VAD reads 16-kHz audio; this model takes {sample_rate} Hz: use "
                "--vad energy (Decision(vad='energy'))"
            )
        super().__init__(sample_rate, self.CHUNK, limit)
        self.session = _silero_session()
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(self.CONTEXT, np.float32)
        self._probs: list[np.ndarray] = []

    def _frames(self, frames: np.ndarray) -> None:
        frames = frames.astype(np.float32, copy=False)
        ctx = np.concatenate([self._context[None], frames[:-1, -self.CONTEXT :]])
        probs, self._h, self._c = self.session.run(
            None, {"input": np.concatenate([ctx, frames], 1), "h": self._h, "c": self._c}
        )
        self._probs.append(np.asarray(probs, np.float32).reshape(-1))
        self._context = frames[-1, -self.CONTEXT :].copy()

    @property
    def probabilities(self) -> np.ndarray:
        return np.concatenate(self._probs) if self._probs else np.zeros(0, np.float32)

    @property
    def mask(self) -> np.ndarray:
        """Speech in each 32-ms chunk read so far (a partial last chunk counts as none)."""
        return self.probabilities >= self.THRESHOLD

    @property
    def active_s(self) -> float:
        return float(self.mask.sum()) * self.CHUNK / self.sample_rate
