"""x-vector TDNN embeddings on hand-crafted LFCC or CQCC features.

Paper: A. Tomilov et al., "STC antispoofing systems for the ASVspoof2021 challenge" and the
modular design of x-vector countermeasures (SLT 2022): a TDNN over LFCC/CQCC frames with
statistics pooling gives a 512-dimensional embedding; a light classifier head (or a separate
classifier trained on extracted embeddings, see :mod:`spoofscope.models.embedding_classifiers`)
decides.
Architecture as in D. Snyder et al., "X-vectors: robust DNN embeddings for speaker
recognition", ICASSP 2018: frame layers with contexts [-2..2], {-2,0,2}, {-3,0,3}, {0}, {0}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..features.cqcc import CQCC
from ..features.lfcc import LFCC
from ._card import ModelCard
from ._registry import check_waveform, merged_config, register_model


@dataclass
class XVectorConfig:
    frontend: str = "lfcc"  # "lfcc" or "cqcc"
    cqcc_deltas: str = "official"  # or "time"
    hidden: int = 512
    stats_dim: int = 1500
    embedding_dim: int = 512
    cmvn: bool = True  # per-utterance mean/variance normalisation of the features
    dropout: float = 0.0


class TDNNLayer(nn.Sequential):
    """Conv1d over frames (context = kernel/dilation), ReLU, BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int):
        super().__init__(
            nn.Conv1d(c_in, c_out, kernel, dilation=dilation), nn.ReLU(), nn.BatchNorm1d(c_out)
        )


class XVector(nn.Module):
    """Features -> TDNN -> mean+std pooling -> embedding (B, 512) -> head logits (B, 2).

    Index 1 of the logits is bona fide. The embedding is the affine output of the segment
    layer, before its non-linearity (Kaldi's "embedding a").
    """

    #: fine-tuning groups: the feature front-end and the frame-level TDNN
    frontend_modules = ("frontend", "tdnn")

    @property
    def min_length(self) -> int:
        """0.15 s: LFCC gives 16 frames, more than the 15 the TDNN needs."""
        return 2400

    def __init__(self, config: XVectorConfig | None = None, **overrides):
        super().__init__()
        cfg = merged_config(XVectorConfig, config, overrides)
        self.config = cfg
        if cfg.frontend == "lfcc":
            self.frontend = LFCC()
        elif cfg.frontend == "cqcc":
            self.frontend = CQCC(deltas=cfg.cqcc_deltas)
        else:
            raise ConfigError(f"frontend must be 'lfcc' or 'cqcc', not {cfg.frontend!r}")
        d, h = self.frontend.out_dim, cfg.hidden
        self.tdnn = nn.Sequential(
            TDNNLayer(d, h, 5, 1),  # [-2..2]
            TDNNLayer(h, h, 3, 2),  # {-2, 0, 2}
            TDNNLayer(h, h, 3, 3),  # {-3, 0, 3}
            TDNNLayer(h, h, 1, 1),  # {0}
            TDNNLayer(h, cfg.stats_dim, 1, 1),  # {0}
        )
        self.segment = nn.Linear(2 * cfg.stats_dim, cfg.embedding_dim)
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(cfg.embedding_dim),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.embedding_dim, 2),
        )

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, D, T) normalised features."""
        check_waveform(x, self.min_length, "x-vector")
        f = self.frontend(x).transpose(1, 2)
        if self.config.cmvn:
            f = (f - f.mean(-1, keepdim=True)) / (f.std(-1, keepdim=True) + 1e-5)
        return f

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tdnn(self.features(x))
        stats = torch.cat([h.mean(-1), torch.sqrt(F.relu(h.var(-1, unbiased=False)) + 1e-5)], 1)
        return self.segment(stats)

    def forward(self, x: torch.Tensor):
        emb = self.embed(x)
        return self.head(emb), emb


_XVECTOR = dict(
    family="xvector",
    published_results="no published number we reproduce; design of Tomilov et al. (SLT 2022)",
    licence="spoofscope (MIT); no weights shipped",
)


@register_model(
    ModelCard(
        name="lfcc-xvector",
        description="x-vector TDNN on 60-dim LFCC (20 static + deltas + delta-deltas)",
        **_XVECTOR,
    )
)
def lfcc_xvector(**overrides) -> XVector:
    """x-vector TDNN on 60-dim LFCC (20 static + deltas + delta-deltas)."""
    return XVector(None, **{"frontend": "lfcc", **overrides})


@register_model(
    ModelCard(
        name="cqcc-xvector",
        description="x-vector TDNN on 60-dim CQCC (the 2021 baseline front-end)",
        export="none",  # CQCC is computed in numpy
        **_XVECTOR,
    )
)
def cqcc_xvector(**overrides) -> XVector:
    """x-vector TDNN on 60-dim CQCC (the 2021 baseline front-end)."""
    return XVector(None, **{"frontend": "cqcc", **overrides})
