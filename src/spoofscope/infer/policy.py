"""The small frozen policies a :class:`~spoofscope.infer.Detector` is built from.

* :class:`WindowPolicy`: how a recording becomes windows and window scores one score;
* :class:`Decision`: the threshold and the low-confidence band;
* :class:`Limits`: batch size (memory) and the longest recording accepted.

Each checks its values when built and raises :class:`~spoofscope.errors.ConfigError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..errors import ConfigError, choices_error
from .activity import VADS, default_vad

WINDOW_KINDS = ("sliding", "official")
AGGREGATES = ("mean", "quantile", "min")
#: inference engines and numeric paths (:mod:`.engines`; here so that the CLI's options do not
#: import PyTorch)
ENGINES = ("auto", "onnx", "torch")
PRECISIONS = ("fp32", "int8")
#: the localisation windows (length, hop in seconds) chosen on real partial fakes
#: (benchmarks/localisation_real.py; docs/localise.md)
WHERE = (1.0, 0.25)


@dataclass(frozen=True)
class WindowPolicy:
    """Args:
    kind: ``"sliding"`` (the whole file in windows every ``hop_s``) or ``"official"`` (the
        first window, tiled when the file is shorter: the reference evaluation).
    samples: window length; None takes the model card's ``window_samples``.
    hop_s: hop between sliding windows, in seconds.
    aggregate: ``"mean"``, ``"quantile"`` (at ``quantile``) or ``"min"`` of window scores.
    quantile: the quantile for ``aggregate="quantile"``.
    silence_db: windows quieter than this RMS (dBFS) are skipped when the file has speech.
    where_s, where_hop_s: windows of this length (seconds) every ``where_hop_s`` judged for
        the timeline and segments only (the verdict stays on the windows above); None: the
        timeline is read off the verdict's windows. :data:`WHERE` is the measured default of
        ``--segments``, ``--rttm``, the service and streams.
    """

    kind: str = "sliding"
    samples: int | None = None
    hop_s: float = 2.0
    aggregate: str = "mean"
    quantile: float = 0.1
    silence_db: float = -50.0
    where_s: float | None = None
    where_hop_s: float | None = None

    def __post_init__(self):
        if self.kind not in WINDOW_KINDS:
            raise choices_error("window", self.kind, WINDOW_KINDS)
        if self.aggregate not in AGGREGATES:
            raise choices_error("aggregate", self.aggregate, AGGREGATES)
        if self.samples is not None and int(self.samples) < 1:
            raise ConfigError(f"window samples must be >= 1, got {self.samples}")
        if not (math.isfinite(self.hop_s) and self.hop_s > 0):
            raise ConfigError(f"hop must be a positive number of seconds, got {self.hop_s}")
        if not 0.0 <= self.quantile <= 1.0:
            raise ConfigError(f"quantile must lie in [0, 1], got {self.quantile}")
        if not math.isfinite(self.silence_db):
            raise ConfigError(f"silence_db must be finite, got {self.silence_db}")
        if (self.where_s is None) != (self.where_hop_s is None):
            raise ConfigError("where_s and where_hop_s go together (both set, or neither)")
        for name in ("where_s", "where_hop_s"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {v}")

    def localising(self) -> WindowPolicy:
        """This policy with the measured localisation windows (:data:`WHERE`) added."""
        return replace(self, where_s=WHERE[0], where_hop_s=WHERE[1])


@dataclass(frozen=True)
class Decision:
    """Args:
    threshold: score threshold of the label; None takes the calibration's threshold, else
        the natural boundary (equal logits).
    band: half-width of the low-confidence band around the threshold, in probability;
        None takes the calibration's band, else 0.1.
    min_speech_s: the detector abstains (label ``"no_speech"``, no score) on a recording
        with less speech than this (see :mod:`spoofscope.infer.activity`).
    vad: the activity meter: ``"silero"`` (a speech detector; the default, or
        ``SPOOFSCOPE_VAD``) or ``"energy"`` (sound above ``WindowPolicy.silence_db``).
    """

    threshold: float | None = None
    band: float | None = None
    min_speech_s: float = 0.5
    vad: str = field(default_factory=default_vad)

    def __post_init__(self):
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError(f"threshold must be a finite number, got {self.threshold}")
        if self.band is not None and not 0.0 <= self.band <= 0.5:
            raise ConfigError(f"band must lie in [0, 0.5], got {self.band}")
        if not (math.isfinite(self.min_speech_s) and self.min_speech_s >= 0):
            raise ConfigError(f"min_speech_s must be >= 0 seconds, got {self.min_speech_s}")
        if self.vad not in VADS:
            raise choices_error("vad", self.vad, VADS)


@dataclass(frozen=True)
class Limits:
    """Args:
    batch_size: windows per forward pass (memory is bounded by it, not by the file).
    max_duration_s: longer recordings are refused (None: no limit).
    timeout_s: compute deadline of one ``detect_many`` call (one service request): files not
        finished by then get a ``timeout`` error (checked between windows; None: no deadline).
    """

    batch_size: int = 8
    max_duration_s: float | None = None
    timeout_s: float | None = None

    def __post_init__(self):
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.max_duration_s is not None and not (
            math.isfinite(self.max_duration_s) and self.max_duration_s > 0
        ):
            raise ConfigError(f"max duration must be positive, got {self.max_duration_s}")
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout_s}")
