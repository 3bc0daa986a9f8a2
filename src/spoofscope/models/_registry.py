"""The model registry: ``create_model(name, **overrides)`` and ``list_models()``.

Every registered model maps a float32 waveform batch (B, L) at 16 kHz to
``(logits (B, 2), embedding (B, D))`` with logit index 1 = bona fide, and exposes
``min_length`` (samples) and ``embedding_dim``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    factory: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def merged_config(cls, config, overrides: dict):
    """``config`` (or the defaults of ``cls``) with ``overrides`` applied."""
    cfg = config or cls()
    return cls(**{**asdict(cfg), **overrides}) if overrides else cfg


def check_waveform(x, min_length: int, name: str) -> None:
    """Reject anything but a (B, L) batch with L >= ``min_length``, saying how to fix it."""
    if x.dim() != 2:
        raise ValueError(f"{name} expects a waveform batch of shape (B, L), got {tuple(x.shape)}")
    if x.size(1) < min_length:
        raise ValueError(
            f"{name} needs at least {min_length} samples ({min_length / 16000:.3f} s at 16 kHz); "
            f"got {x.size(1)}. Pad or tile the input (spoofscope.audio.official_crop)"
        )


def register_model(name: str, family: str):
    """Decorator that registers a factory ``f(**overrides) -> nn.Module`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = ModelEntry(name, family, fn, doc)
        return fn

    return deco


def _ensure_loaded() -> None:
    # importing the family modules runs their @register_model decorators
    from . import aasist, lcnn, rawnet2, xvector  # noqa: F401

    try:
        from . import ssl  # noqa: F401  (needs transformers)
    except ImportError:  # pragma: no cover
        pass


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(
    name: str, pretrained: bool = False, weights=None, cache_dir=None, **overrides
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        pretrained: load the published weights (see ``spoofscope.models._pretrained``):
            from ``weights`` if given, else the cache, else a verified download.
        weights: explicit path of a weights file (implies ``pretrained``).
        cache_dir: overrides ``$SPOOFSCOPE_CACHE`` / ``~/.cache/spoofscope``.
        **overrides: constructor arguments (the model's config fields).
    """
    entry = get_entry(name)
    model = entry.factory(**overrides)
    model.registry_name = name
    model.model_args = dict(overrides)
    if pretrained or weights is not None:
        from ._pretrained import load_pretrained

        load_pretrained(model, name, weights=weights, cache_dir=cache_dir)
    return model
