"""The candidates ``adapt`` chooses among for the final layer: each one class in one file that
follows :class:`Candidate` (``fit`` on some files, ``score`` others)."""

from ._base import AdaptData, Candidate, Fitted, balanced_log_loss, eer, folds
from .anchored import ANCHOR_C, Anchored, fit_anchored
from .fusion import Fusion
from .keep import Keep
from .probe import PROBE_C, Probe, as_head, fit_logreg
from .recipe import HeadTrainer, Recipe

__all__ = [
    "ANCHOR_C",
    "AdaptData",
    "Anchored",
    "Candidate",
    "Fitted",
    "Fusion",
    "HeadTrainer",
    "Keep",
    "PROBE_C",
    "Probe",
    "Recipe",
    "as_head",
    "balanced_log_loss",
    "eer",
    "fit_anchored",
    "fit_logreg",
    "folds",
]
