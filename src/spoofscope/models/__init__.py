"""Countermeasure models: one architecture family per file, a registry, pretrained entries."""

from ._checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ._pretrained import PRETRAINED, PretrainedWeights, WeightsError, resolve_weights
from ._registry import create_model, get_entry, list_models
from .aasist import AASIST, AASISTConfig
from .backend import LogisticBackend, MLPBackend, extract_embeddings
from .lcnn import LFCCLCNN
from .rawnet2 import RawNet2, RawNet2Config
from .xvector import XVector, XVectorConfig

__all__ = [
    "AASIST",
    "AASISTConfig",
    "LFCCLCNN",
    "LogisticBackend",
    "MLPBackend",
    "PRETRAINED",
    "PretrainedWeights",
    "RawNet2",
    "RawNet2Config",
    "WeightsError",
    "XVector",
    "XVectorConfig",
    "create_model",
    "extract_embeddings",
    "get_entry",
    "list_models",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "resolve_weights",
]
