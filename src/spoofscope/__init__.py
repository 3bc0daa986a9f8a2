"""spoofscope: spoofing countermeasures for speech, with the official ASVspoof metrics."""

__version__ = "0.1.0"

from .audio import AudioError, load_audio, official_crop, random_crop  # noqa: E402
from .models import create_model, list_models  # noqa: E402

__all__ = [
    "AudioError",
    "__version__",
    "create_model",
    "list_models",
    "load_audio",
    "official_crop",
    "random_crop",
]
