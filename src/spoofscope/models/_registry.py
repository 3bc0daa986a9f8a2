"""The model registry: ``create_model(name, **overrides)`` and ``list_models()``.

Every registered model maps a float32 waveform batch (B, L) at its card's sample rate to
``(logits (B, 2), embedding (B, D))``, exposes ``min_length`` (samples) and ``embedding_dim``,
and carries its :class:`~spoofscope.models.ModelCard` as ``model.card``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from torch import nn

from ..errors import ConfigError, InputError
from ._card import ModelCard


def strip_module_prefix(state_dict: dict) -> dict:
    """The default foreign-layout hook: drop the ``module.`` prefix that ``nn.DataParallel``
    and DDP add (the official training scripts save through it)."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its factory, its card, and the hook that converts a foreign
    (official) state_dict to our key names (like timm's ``checkpoint_filter_fn``)."""

    factory: Callable[..., nn.Module]
    card: ModelCard
    convert: Callable[[dict], dict] = strip_module_prefix

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def family(self) -> str:
        return self.card.family

    @property
    def description(self) -> str:
        return self.card.description


_REGISTRY: dict[str, ModelEntry] = {}


def merged_config(cls, config, overrides: dict):
    """``config`` (or the defaults of ``cls``) with ``overrides`` applied."""
    cfg = config or cls()
    if not overrides:
        return cfg
    known = set(cls.__dataclass_fields__)
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown argument(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(known))}"
        )
    return cls(**{**asdict(cfg), **overrides})


def check_waveform(x, min_length: int, name: str, sample_rate: int = 16000) -> None:
    """Reject anything but a (B, L) batch with L >= ``min_length``, saying how to fix it."""
    if x.dim() != 2:
        raise InputError(f"{name} expects a waveform batch of shape (B, L), got {tuple(x.shape)}")
    if x.size(1) < min_length:
        raise InputError(
            f"{name} needs at least {min_length} samples ({min_length / sample_rate:.3f} s at "
            f"{sample_rate} Hz); got {x.size(1)}. Pad or tile the input "
            "(spoofscope.audio.official_crop)"
        )


def register_model(card: ModelCard, convert: Callable[[dict], dict] | None = None):
    """Decorator that registers a factory ``f(**overrides) -> nn.Module`` with its card."""

    def deco(fn):
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = ModelEntry(fn, card, convert or strip_module_prefix)
        return fn

    return deco


def _ensure_loaded() -> None:
    # importing the family modules runs their @register_model decorators
    from . import aasist, lcnn, rawnet2, xvector  # noqa: F401

    try:
        from . import antideepfake, hf, mamba, nes2net, sls, ssl, tcm  # noqa: F401  (transformers)
    except ImportError:  # pragma: no cover
        pass


def list_models(pretrained: bool = False) -> list[str]:
    """Names of all registered models, sorted (only those with published weights when
    ``pretrained``)."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if e.card.weights or not pretrained)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_card(name: str) -> ModelCard:
    """The card of a registered model (as registered: ``min_length`` of the defaults is filled
    in when the model is built)."""
    return get_entry(name).card


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model with freshly initialised weights.

    Args:
        name: a name from :func:`list_models`.
        **overrides: constructor arguments (the model's config fields).

    The model carries ``model.card`` (its :class:`ModelCard`), ``model.registry_name`` and
    ``model.model_args``. To get published or saved weights use
    :func:`~spoofscope.models.load_model`.
    """
    entry = get_entry(name)
    model = entry.factory(**overrides)
    model.registry_name = name
    model.model_args = dict(overrides)
    max_length = getattr(model, "max_length", None)
    model.card = replace(
        entry.card,
        **getattr(model, "card_overrides", {}),  # a model that reads its card from its files
        min_length=int(model.min_length),
        max_length=None if max_length is None else int(max_length),
    )
    return model
