"""spoofscope: spoofing countermeasures for speech, with the official ASVspoof metrics."""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .errors import ConfigError, SpoofscopeError, WeightsError

#: the one place the version is written (pyproject.toml and ``spoofscope --version`` read it)
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .audio import AudioError, load_audio, official_crop, random_crop
    from .models import ModelCard, create_model, list_models, load_model

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".audio": ["AudioError", "load_audio", "official_crop", "random_crop"],
        ".models": ["ModelCard", "create_model", "list_models", "load_model"],
    },
)

__all__ = [
    "AudioError",
    "ConfigError",
    "ModelCard",
    "SpoofscopeError",
    "WeightsError",
    "__version__",
    "create_model",
    "list_models",
    "load_model",
    "load_audio",
    "official_crop",
    "random_crop",
]
