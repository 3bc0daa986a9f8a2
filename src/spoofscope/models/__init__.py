"""Countermeasure models: one architecture family per file, each with its card; a registry;
one loading path (:func:`load_model`)."""

from ..errors import WeightsError
from ._card import EXPORT_MODES, ModelCard, PretrainedWeights, card_of
from ._checkpoint import read_checkpoint, save_checkpoint
from ._loading import load_checkpoint, load_model, load_state_dict_file
from ._pretrained import resolve_weights, weights_status
from ._registry import create_model, get_card, get_entry, list_models
from .aasist import AASIST, AASISTConfig
from .embedding_classifiers import LogisticClassifier, MLPClassifier, extract_embeddings
from .lcnn import LFCCLCNN
from .rawnet2 import RawNet2, RawNet2Config
from .xvector import XVector, XVectorConfig

__all__ = [
    "AASIST",
    "AASISTConfig",
    "EXPORT_MODES",
    "LFCCLCNN",
    "LogisticClassifier",
    "MLPClassifier",
    "ModelCard",
    "PretrainedWeights",
    "RawNet2",
    "RawNet2Config",
    "WeightsError",
    "XVector",
    "XVectorConfig",
    "card_of",
    "create_model",
    "extract_embeddings",
    "get_card",
    "get_entry",
    "list_models",
    "load_checkpoint",
    "load_model",
    "load_state_dict_file",
    "read_checkpoint",
    "resolve_weights",
    "save_checkpoint",
    "weights_status",
]
