"""Inference on real recordings: Detector, policies, engines, windows, calibration, fusion,
and scoring a whole dataset.

Names are imported on first use (see :mod:`spoofscope._lazy`)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .calibration import Calibration
    from .detector import DetectionResult, Detector, FusedDetector, feed_streams
    from .engines import OnnxEngine, TorchEngine, make_engine
    from .explain import Explanation
    from .fusion import Fusion
    from .policy import ENGINES, PRECISIONS, Decision, Limits, WindowPolicy
    from .scoring import score_dataset
    from .windows import aggregate, official_window, sliding_windows

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".calibration": ["Calibration"],
        ".detector": ["DetectionResult", "Detector", "FusedDetector", "feed_streams"],
        ".engines": ["OnnxEngine", "TorchEngine", "make_engine"],
        ".explain": ["Explanation"],
        ".fusion": ["Fusion"],
        ".policy": ["ENGINES", "PRECISIONS", "Decision", "Limits", "WindowPolicy"],
        ".scoring": ["score_dataset"],
        ".windows": ["aggregate", "official_window", "sliding_windows"],
    },
)

__all__ = [
    "Calibration",
    "Decision",
    "DetectionResult",
    "Detector",
    "ENGINES",
    "Explanation",
    "Fusion",
    "FusedDetector",
    "Limits",
    "OnnxEngine",
    "TorchEngine",
    "WindowPolicy",
    "aggregate",
    "feed_streams",
    "make_engine",
    "PRECISIONS",
    "official_window",
    "score_dataset",
    "sliding_windows",
]
