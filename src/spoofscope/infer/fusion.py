"""Logistic-regression score fusion of several countermeasures (learned on a dev set)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._logreg import fit_llr_map


@dataclass
class Fusion:
    """fused = sum_k w_k * score_k + b (a natural-log LLR when fitted with prior 0.5)."""

    weights: list[float]
    bias: float
    systems: list[str]
    prior: float = 0.5

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        labels: np.ndarray,
        systems: list[str] | None = None,
        prior: float = 0.5,
    ) -> Fusion:
        """scores (N, K) of K systems on N dev trials; labels (N,) with 1 = bona fide."""
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels)
        if scores.ndim != 2:
            raise ConfigError("fusion needs a (trials, systems) score matrix")
        w, b = fit_llr_map(scores[labels == 1], scores[labels != 1], prior=prior)
        names = systems or [f"system{i}" for i in range(scores.shape[1])]
        return cls([float(v) for v in w], float(b), list(names), prior)

    def apply(self, scores) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape[-1] != len(self.weights):
            raise ConfigError(
                f"fusion of {len(self.weights)} systems got {scores.shape[-1]} scores"
            )
        return scores @ np.asarray(self.weights) + self.bias

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(
            json.dumps(
                {
                    "type": "logistic-fusion",
                    "weights": self.weights,
                    "bias": self.bias,
                    "systems": self.systems,
                    "prior": self.prior,
                },
                indent=2,
            )
        )
        return path

    @classmethod
    def load(cls, path) -> Fusion:
        d = json.loads(Path(path).read_text())
        if d.get("type") != "logistic-fusion":
            raise ConfigError(f"{path}: not a spoofscope fusion file")
        return cls(d["weights"], d["bias"], d["systems"], d.get("prior", 0.5))
