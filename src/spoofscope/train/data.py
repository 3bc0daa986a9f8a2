"""Training data: random crops, augmentation, class weights, samplers."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..audio import load_audio, random_crop
from ..data.cache import AudioCache
from ..errors import ConfigError

log = logging.getLogger(__name__)


class TrainSet:
    """Random ``crop`` samples per item, augmented with a per-(seed, epoch, item) generator so
    that runs repeat exactly whatever the number of worker processes. With
    ``windows_per_file`` k, each file appears k times per epoch, each time with its own crop
    (several windows of a long file)."""

    def __init__(
        self,
        trials,
        crop: int,
        augment=None,
        seed: int = 0,
        cache: AudioCache | None = None,
        windows_per_file: int = 1,
    ):
        self.trials, self.crop, self.augment, self.seed, self.cache = (
            trials,
            crop,
            augment,
            seed,
            cache,
        )
        self.k = int(windows_per_file)
        self.epoch = 0

    def __len__(self):
        return len(self.trials) * self.k

    @property
    def labels(self) -> list[int]:
        return [t.label for t in self.trials] * self.k

    def _read(self, path):
        return self.cache.load(path) if self.cache else load_audio(path)

    def __getitem__(self, i):
        t = self.trials[i % len(self.trials)]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        x = random_crop(self._read(t.path), self.crop, rng)
        if self.augment is not None:
            x = self.augment(x, rng)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), t.label


def class_weights(labels, spec) -> torch.Tensor | None:
    """CE weights ``[w_spoof, w_bonafide]``: ``"inverse"`` frequency (normalised to sum to 1),
    a fixed list, or None."""
    if spec is None or spec == "none":
        return None
    if spec == "inverse":
        labels = np.asarray(labels)
        counts = np.array([np.sum(labels == 0), np.sum(labels == 1)], dtype=np.float64)
        if np.any(counts == 0):
            raise ConfigError("the training list needs both bona fide and spoof trials")
        w = (1 / counts) / np.sum(1 / counts)
        return torch.tensor(w, dtype=torch.float32)
    w = [float(v) for v in spec]
    if len(w) != 2:
        raise ConfigError("class_weights must be 'inverse', null or [w_spoof, w_bonafide]")
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(labels, seed: int, num_samples: int | None = None):
    """Draw each class with equal probability (with replacement)."""
    labels = np.asarray(labels)
    freq = np.bincount(labels, minlength=2).astype(np.float64)
    w = 1.0 / freq[labels]
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(
        torch.tensor(w), num_samples or len(labels), replacement=True, generator=g
    )
