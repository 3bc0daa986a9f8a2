"""What a model expects, declared beside its architecture: the model card.

Each family file registers its variants with a :class:`ModelCard` (as timm keeps
``default_cfgs`` beside each model, and pyannote ``Specifications`` on the model).
:func:`~spoofscope.models.create_model` attaches the card to the model as ``model.card``;
the detector, the exporter, the trainer, the service and the tests read it. Nothing outside a
family hard-codes a sample rate, a window or an output index.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import ConfigError

#: ONNX export modes: any length / the card's window only / not exportable.
EXPORT_MODES = ("dynamic", "fixed", "none")


#: where published weights come from: a direct URL (verified download), a Hugging Face
#: repository (``huggingface_hub``), or a page the user downloads from by hand (Drive, OneDrive)
WEIGHT_SOURCES = ("url", "hf", "manual")


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file: where it comes from, how to verify it, what it saw.

    ``sha256`` is None where the authors publish none and we could not fetch the file to
    compute one; ``hf_repo``/``revision`` name a Hugging Face file (``filename`` in it).
    ``packaged``: the file ships inside spoofscope (``spoofscope/models/weights/``, its licence
    notice beside it) and is read from there, sha256-checked, never downloaded.
    """

    url: str
    filename: str
    sha256: str | None
    licence: str
    notice: str
    trained_on: str
    published: str = ""
    source: str = "url"
    hf_repo: str | None = None
    revision: str | None = None
    packaged: bool = False

    def __post_init__(self):
        if self.source not in WEIGHT_SOURCES:
            raise ConfigError(f"weights source {self.source!r} not in {WEIGHT_SOURCES}")


@dataclass(frozen=True)
class ModelCard:
    """The contract of one registered model.

    Attributes:
        name: registry name.
        family: architecture family (one file under ``spoofscope/models``).
        description: one line.
        sample_rate: input sample rate in Hz.
        window_samples: the scoring window (what the model was trained and evaluated on).
        window_policy: how the reference evaluation turns a file into that window.
        min_length: shortest input in samples (filled in from the built model).
        max_length: longest input in samples, where the architecture has one (XLSR-SLS).
        bonafide_index: the logit index of the bona fide class.
        score: what the score means.
        export: ONNX export mode, one of :data:`EXPORT_MODES`.
        weights: published weights by tag; the first tag is the default.
        training_data: what the shipped (or checkpointed) weights were trained on.
        published_results: the authors' results, with their source.
        licence: licence of the original code and weights.
        encoder: the self-supervised encoder the model reads, and which of its outputs.
        precisions: the numeric paths this model may run in: ``fp32`` and each reduced
            precision measured to keep its scores within
            :data:`~spoofscope.infer.engines.INT8_BOUND` of fp32 (``benchmarks/precision.py
            --model``).
        int8_engine: the engine whose int8 path was measured for ``int8`` (what ``--engine
            auto`` runs): ``onnx`` (ONNX Runtime dynamic int8 of the encoder's transformer
            layers' matrix products) or ``torch`` (PyTorch's dynamic int8 of the encoder's
            feed-forward layers).
        notes: what a user must know before trusting a verdict: what the weights were trained
            on and what they are known to miss (every result carries it).
        localisation: ``frame`` where the model scores each encoder frame (a Linear over
            pooled frames), else ``window`` (scores come from windows at a fine hop).
    """

    name: str
    family: str
    description: str = ""
    sample_rate: int = 16000
    window_samples: int = 64600
    window_policy: str = "first 64,600 samples; shorter audio tiled (official evaluation)"
    min_length: int = 1
    max_length: int | None = None
    bonafide_index: int = 1
    score: str = "logits[:, 1], higher means bona fide"
    export: str = "dynamic"
    weights: dict[str, PretrainedWeights] = field(default_factory=dict)
    training_data: str = "none shipped: train it (spoofscope train)"
    published_results: str = ""
    licence: str = ""
    encoder: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    int8_engine: str = "torch"
    notes: str = ""
    localisation: str = "window"

    def __post_init__(self):
        if self.export not in EXPORT_MODES:
            raise ConfigError(f"card {self.name}: export {self.export!r} not in {EXPORT_MODES}")
        if self.int8_engine not in ("onnx", "torch"):
            raise ConfigError(f"card {self.name}: int8_engine must be onnx or torch")
        if self.bonafide_index not in (0, 1):
            raise ConfigError(f"card {self.name}: bonafide_index must be 0 or 1")

    @property
    def licence_class(self) -> str:
        """``non-commercial``, ``permissive`` or ``none stated`` (from :attr:`licence` and the
        published weights' licences: the most restrictive wins)."""
        return licence_class(" ".join([self.licence, *(w.licence for w in self.weights.values())]))

    @property
    def default_tag(self) -> str | None:
        return next(iter(self.weights), None)

    def to_dict(self) -> dict:
        """Plain types only (stored in checkpoints, loadable with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["weights"] = {t: PretrainedWeights(**w) for t, w in (d.get("weights") or {}).items()}
        if "precisions" in d:
            d["precisions"] = tuple(d["precisions"])
        return cls(**d)


_NON_COMMERCIAL = re.compile(r"\bNC\b|non-?commercial|research (use )?only", re.I)
_PERMISSIVE = re.compile(r"\b(MIT|BSD|Apache|ISC|CC[- ]BY(?![- ]N)|CC0|public domain)", re.I)


def licence_class(text: str) -> str:
    """``non-commercial`` (any NC term), ``permissive`` (MIT, BSD, Apache, CC BY, CC0 ...) or
    ``none stated``."""
    if _NON_COMMERCIAL.search(text or ""):
        return "non-commercial"
    if _PERMISSIVE.search(text or ""):
        return "permissive"
    return "none stated"


#: What a model without a card (a custom ``nn.Module``) is assumed to expect.
def default_card(model) -> ModelCard:
    return ModelCard(
        name=getattr(model, "registry_name", type(model).__name__),
        family="custom",
        min_length=int(getattr(model, "min_length", 1)),
    )


def card_of(model) -> ModelCard:
    """The card of a model (or an engine), or the default contract for a custom module."""
    card = getattr(model, "card", None)
    return card if isinstance(card, ModelCard) else default_card(model)


__all__ = [
    "EXPORT_MODES",
    "ModelCard",
    "PretrainedWeights",
    "card_of",
    "default_card",
    "licence_class",
    "replace",
]
