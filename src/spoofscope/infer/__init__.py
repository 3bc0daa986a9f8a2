"""Inference on real recordings: Detector, windows, calibration, fusion, backends."""

from .calibration import Calibration
from .detector import DetectionResult, Detector, FusedDetector
from .fusion import Fusion
from .windows import aggregate, official_window, sliding_windows

__all__ = [
    "Calibration",
    "DetectionResult",
    "Detector",
    "Fusion",
    "FusedDetector",
    "aggregate",
    "official_window",
    "sliding_windows",
]
