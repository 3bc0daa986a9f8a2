"""Training: recipes, data pipeline, the trainer, SWA, distributed helpers."""

from .config import TrainConfig, load_config
from .trainer import Trainer, score_trials, train

__all__ = ["TrainConfig", "Trainer", "load_config", "score_trials", "train"]
