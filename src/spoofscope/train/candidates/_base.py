"""What every adaptation candidate works on and returns: plain data, and the folds.

:class:`AdaptData` is the output of ``adapt``'s one embedding pass; a candidate
(:class:`Candidate`) learns a final layer from some of its files (``fit``) and scores others
(``score``). Nothing here reads audio or runs the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ...data.protocols import BONAFIDE
from ...errors import ConfigError
from ...metrics import compute_eer
from ..finetune import head_logits


@dataclass
class AdaptData:
    """The labelled files as arrays, after the embedding pass.

    Attributes:
        labels: (N,) 1 bona fide, 0 spoof.
        groups: N group names (``-``: none given).
        keys: N sha256 of the files' bytes (their seeds and their place in the folds).
        files: (N, D) each file's embedding as ``detect`` judges it: the mean of its judged
            windows' embeddings.
        before: (N,) the starting model's ``detect`` score of each file.
        windows: (W, D) the embeddings of every judged window; ``window_file`` (W,) their file.
        crops: (C, D) the embeddings of the augmented random crops; ``crop_file`` (C,) their file.
        head: the published final layer (a Linear on the embedding).
        bona: the head's bona fide output index.
    """

    labels: np.ndarray
    groups: list[str]
    keys: list[str]
    files: np.ndarray
    before: np.ndarray
    windows: np.ndarray
    window_file: np.ndarray
    crops: np.ndarray
    crop_file: np.ndarray
    head: torch.nn.Linear
    bona: int

    @property
    def grouped(self) -> bool:
        return any(g != "-" for g in self.groups)

    def head_scores(self, layer: torch.nn.Linear, files) -> np.ndarray:
        """(len(files),) the bona fide logit of ``layer`` on the files' embeddings: the score
        ``detect`` gives with that layer (the mean of the windows' logits)."""
        with torch.no_grad():
            x = torch.from_numpy(self.files[np.asarray(files)])
            return head_logits(layer, x)[:, self.bona].double().numpy()


@dataclass
class Fitted:
    """A candidate's final layer and what its fit chose (e.g. ``{"probe_c": 0.1}``)."""

    layer: torch.nn.Linear
    info: dict = field(default_factory=dict)


class Candidate(Protocol):
    """One way to get a final layer from labelled files. ``fit`` sees only ``files``;
    ``score`` gives the ``detect`` score of other files under the fitted layer."""

    name: str

    def fit(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Fitted: ...

    def score(self, fitted: Fitted, data: AdaptData, files: np.ndarray) -> np.ndarray: ...

    def describe(self, fitted: Fitted) -> str:
        """How the final layer was trained, for the report (one sentence)."""
        ...


def folds(labels: np.ndarray, groups: list[str], k: int, seed: int, keys=None) -> np.ndarray:
    """Fold index of each file: whole groups per fold (largest first, to the emptiest fold)
    when groups are given, else stratified by class. ``keys`` (one string per file, e.g. its
    content's sha256) fix the order before the shuffle, so the folds depend on the files and
    not on the order or spelling of the list."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), int)
    if any(g != "-" for g in groups):
        names = sorted(set(groups))
        if len(names) < k:
            raise ConfigError(
                f"{len(names)} group{'s' if len(names) != 1 else ''} cannot fill {k} folds: "
                + (f"use --folds {len(names)}" if len(names) >= 2 else "give at least 2 groups")
            )
        rng.shuffle(names)
        sizes = {g: groups.count(g) for g in names}
        load = np.zeros(k)
        where = {}
        for g in sorted(names, key=lambda g: -sizes[g]):
            where[g] = int(np.argmin(load))
            load[where[g]] += sizes[g]
        return np.array([where[g] for g in groups])
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        if keys is not None:
            idx = idx[np.argsort([keys[i] for i in idx], kind="stable")]
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def eer(scores, labels) -> float:
    """The EER in percent."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    return float(compute_eer(scores[labels == BONAFIDE], scores[labels != BONAFIDE])[0] * 100)


def balanced_log_loss(s: np.ndarray, y: np.ndarray) -> float:
    """Mean log loss of log-odds ``s``, each class weighted one half (nats)."""
    pos = np.asarray(y) == BONAFIDE
    return float(0.5 * np.mean(np.logaddexp(0, -s[pos])) + 0.5 * np.mean(np.logaddexp(0, s[~pos])))
