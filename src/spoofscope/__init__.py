"""spoofscope: spoofing countermeasures for speech, with the official ASVspoof metrics."""

__version__ = "0.1.0"

from .audio import AudioError, load_audio, official_crop, random_crop  # noqa: E402
from .errors import ConfigError, SpoofscopeError, WeightsError  # noqa: E402
from .models import ModelCard, create_model, list_models, load_model  # noqa: E402

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
