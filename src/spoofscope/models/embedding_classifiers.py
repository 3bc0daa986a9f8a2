"""Classifiers on extracted embeddings (the modular x-vector design).

Extract embeddings once with any registered model, then fit a logistic regression or a small
MLP on them. Both give a bona fide score (a log-odds, higher = bona fide).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError


@torch.no_grad()
def extract_embeddings(model: nn.Module, waveforms, batch_size: int = 16) -> np.ndarray:
    """Embeddings (N, D) of equal-length waveforms (N, L), computed in eval mode."""
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(waveforms), dtype=torch.float32)
    out = [model(x[i : i + batch_size])[1] for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy()


class _EmbeddingClassifier:
    def __init__(self, net: nn.Module, l2: float, epochs: int, lr: float, seed: int):
        self.net, self.l2, self.epochs, self.lr, self.seed = net, l2, epochs, lr, seed
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def _prep(self, emb) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(emb), dtype=torch.float32)
        return (x - self.mean) / self.std

    def fit(self, embeddings, labels) -> _EmbeddingClassifier:
        """Fit on (N, D) embeddings and labels (1 = bona fide), class-balanced."""
        torch.manual_seed(self.seed)
        x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        if not ((y == 0).any() and (y == 1).any()):
            raise ConfigError("a classifier needs both bona fide (1) and spoof (0) examples")
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        x = (x - self.mean) / self.std
        pos = y.mean()
        w = torch.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))
        opt = torch.optim.LBFGS(
            self.net.parameters(), lr=self.lr, max_iter=self.epochs, line_search_fn="strong_wolfe"
        )

        def closure():
            opt.zero_grad()
            logit = self.net(x).squeeze(-1)
            loss = (
                w * nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")
            ).mean()
            loss = loss + self.l2 * sum((p**2).sum() for p in self.net.parameters())
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def score(self, embeddings) -> np.ndarray:
        """Bona fide log-odds (N,)."""
        if self.mean is None:
            raise RuntimeError("fit the classifier before scoring")
        return self.net(self._prep(embeddings)).squeeze(-1).numpy()


class LogisticClassifier(_EmbeddingClassifier):
    """L2-regularised logistic regression on standardised embeddings."""

    def __init__(self, dim: int, l2: float = 1e-3, max_iter: int = 200, seed: int = 0):
        super().__init__(nn.Linear(dim, 1), l2, max_iter, 1.0, seed)


class MLPClassifier(_EmbeddingClassifier):
    """A one-hidden-layer MLP on standardised embeddings."""

    def __init__(
        self, dim: int, hidden: int = 64, l2: float = 1e-3, max_iter: int = 300, seed: int = 0
    ):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        super().__init__(net, l2, max_iter, 1.0, seed)
