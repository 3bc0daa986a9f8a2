"""Inference on real recordings: Detector, policies, engines, windows, calibration, fusion,
and scoring a whole dataset."""

from .calibration import Calibration
from .detector import DetectionResult, Detector, FusedDetector
from .engines import ENGINES, PRECISIONS, OnnxEngine, TorchEngine, make_engine
from .explain import Explanation
from .fusion import Fusion
from .policy import Decision, Limits, WindowPolicy
from .scoring import score_dataset
from .windows import aggregate, official_window, sliding_windows

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
    "make_engine",
    "PRECISIONS",
    "official_window",
    "score_dataset",
    "sliding_windows",
]
