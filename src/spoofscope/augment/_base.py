"""Transforms on (L,) float32 waveforms at 16 kHz, each applied with its own probability.

Every transform is ``transform(x, rng) -> y`` with a numpy ``Generator``: the same seed gives
the same output. Transforms keep the length unless their docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_TRANSFORMS: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        _TRANSFORMS[name] = cls
        cls.registry_name = name
        return cls

    return deco


def list_transforms() -> list[str]:
    from . import codecs, noise, rawboost, speed  # noqa: F401  (registration)

    return sorted(_TRANSFORMS)


class Transform:
    """Base class: subclasses implement ``apply(x, rng)``."""

    sample_rate = 16000

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        y = self.apply(np.asarray(x, dtype=np.float32), rng)
        return np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to ``n`` samples."""
    if y.size >= n:
        return y[:n]
    return np.pad(y, (0, n - y.size))


class Compose:
    """Apply each ``(transform, p)`` in turn with probability p."""

    def __init__(self, steps: list[tuple[Callable, float]]):
        self.steps = steps

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t, p in self.steps:
            if rng.random() < p:
                x = t(x, rng)
        return x

    def __len__(self) -> int:
        return len(self.steps)


def build_augmentation(spec: list[dict] | None) -> Compose | None:
    """Build from the YAML list ``[{name: rawboost, p: 0.5, algo: 5}, {name: noise, ...}]``."""
    if not spec:
        return None
    names = list_transforms()
    steps = []
    for item in spec:
        item = dict(item)
        name = item.pop("name", None)
        p = float(item.pop("p", 1.0))
        if name not in _TRANSFORMS:
            raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(names)}")
        try:
            steps.append((_TRANSFORMS[name](**item), p))
        except TypeError as e:
            raise ValueError(f"augmentation {name!r}: {e}") from None
    return Compose(steps)
