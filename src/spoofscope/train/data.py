"""Training data: random crops, augmentation, class weights, samplers, a decoded-audio cache."""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio, official_crop, random_crop

log = logging.getLogger(__name__)


class AudioCache:
    """Decoded 16 kHz float32 audio stored as ``.npy`` under ``root``, keyed by path, size and
    modification time, so that epochs after the first do not decode FLAC again (and worker
    processes share it)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _key(self, path: Path) -> Path:
        st = path.stat()
        h = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        return self.root / h[:2] / f"{h}.npy"

    def load(self, path) -> np.ndarray:
        path = Path(path)
        key = self._key(path)
        if key.is_file():
            return np.load(key)
        x = load_audio(path)
        key.parent.mkdir(exist_ok=True)
        # a unique name per writer (workers may race); no draw from numpy's global RNG
        tmp = key.with_name(f"{key.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, x)
        tmp.replace(key)
        return x


class TrainSet:
    """Random ``crop`` samples per item, augmented with a per-(seed, epoch, item) generator so
    that runs repeat exactly whatever the number of worker processes."""

    def __init__(
        self, trials, crop: int, augment=None, seed: int = 0, cache: AudioCache | None = None
    ):
        self.trials, self.crop, self.augment, self.seed, self.cache = (
            trials,
            crop,
            augment,
            seed,
            cache,
        )
        self.epoch = 0

    def __len__(self):
        return len(self.trials)

    def _read(self, path):
        return self.cache.load(path) if self.cache else load_audio(path)

    def __getitem__(self, i):
        t = self.trials[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        x = random_crop(self._read(t.path), self.crop, rng)
        if self.augment is not None:
            x = self.augment(x, rng)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), t.label


class ScoreSet:
    """The official fixed crop for scoring; returns ``(x, index)``."""

    def __init__(self, trials, samples: int, cache: AudioCache | None = None):
        self.trials, self.samples, self.cache = trials, samples, cache

    def __len__(self):
        return len(self.trials)

    def __getitem__(self, i):
        p = self.trials[i].path
        x = self.cache.load(p) if self.cache else load_audio(p)
        return torch.from_numpy(official_crop(x, self.samples).astype(np.float32)), i


def class_weights(labels, spec) -> torch.Tensor | None:
    """CE weights ``[w_spoof, w_bonafide]``: ``"inverse"`` frequency (normalised to sum to 1),
    a fixed list, or None."""
    if spec is None or spec == "none":
        return None
    if spec == "inverse":
        labels = np.asarray(labels)
        counts = np.array([np.sum(labels == 0), np.sum(labels == 1)], dtype=np.float64)
        if np.any(counts == 0):
            raise ValueError("the training list needs both bona fide and spoof trials")
        w = (1 / counts) / np.sum(1 / counts)
        return torch.tensor(w, dtype=torch.float32)
    w = [float(v) for v in spec]
    if len(w) != 2:
        raise ValueError("class_weights must be 'inverse', null or [w_spoof, w_bonafide]")
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
