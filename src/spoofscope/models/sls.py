"""XLSR-SLS: XLS-R 300M with the Sensitive Layer Selection classifier.

Paper: Q. Zhang, S. Wen and T. Hu, "Audio Deepfake Detection with Self-Supervised XLS-R and
SLS Classifier", ACM MM 2024. Original code: github.com/QiShanZhang/SLSforASVspoof-2021-DF
(no licence stated). Independent implementation under the official parameter names.

Every transformer layer's output (taken before the encoder's final LayerNorm, as the authors'
modified fairseq returns it) is averaged over time, gated by ``sigmoid(fc0(.))``; the gated
layers are summed, batch-normalised, SELU, 3x3 max-pooled, flattened into ``fc1`` (whose size
fixes the number of frames: 201-203, i.e. the 64,600-sample window), SELU, ``fc3``, SELU and a
log-softmax. The score is the log-probability of bona fide, ``output[:, 1]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ._card import ModelCard, PretrainedWeights
from ._registry import register_model
from .ssl import XLSRDetector, convert_fairseq

WINDOW = 64600  # 201 XLS-R frames: fc1 has (201 // 3) * (1024 // 3) inputs


def _frames(n_samples: int) -> int:
    return (n_samples - 400) // 320 + 1


class XLSRSLS(XLSRDetector):
    """(B, L) with L giving 201-203 frames -> (log-probabilities (B, 2), fc1 output (B, 1024))."""

    layers = "all"
    min_frames = _frames(WINDOW)

    def _build(self, hidden: int) -> None:
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.fc0 = nn.Linear(hidden, 1)
        self.fc1 = nn.Linear((_frames(WINDOW) // 3) * (hidden // 3), 1024)
        self.fc3 = nn.Linear(1024, 2)
        self.embedding_dim = 1024

    @property
    def max_length(self) -> int:
        """Longest input: fc1 takes (T // 3) * (H // 3) values, so T // 3 must stay 67."""
        t_max = 3 * (_frames(WINDOW) // 3) + 2  # 203 frames
        return 400 + 320 * t_max - 1

    def _check(self, x):
        super()._check(x)
        if x.size(1) > self.max_length:
            raise InputError(
                f"XLSR-SLS takes {self.min_length}-{self.max_length} samples (its fc1 fixes "
                f"201-203 frames); got {x.size(1)}. Use 64,600-sample windows"
            )

    def backend(self, feats: torch.Tensor, intermediates: dict | None = None):
        """``feats``: (B, n_layers, T, H) per-layer outputs before the final LayerNorm."""
        pooled = feats.mean(dim=2)  # (B, L, H)
        w = torch.sigmoid(self.fc0(pooled))  # (B, L, 1)
        fused = torch.sum(feats * w.unsqueeze(-1), dim=1).unsqueeze(1)  # (B, 1, T, H)
        x = F.max_pool2d(F.selu(self.first_bn(fused)), (3, 3))
        h = self.fc1(torch.flatten(x, 1))
        z = self.fc3(F.selu(h))
        if intermediates is not None:
            intermediates.update(
                pooled_layers=pooled, layer_weights=w, fused=fused, fc1_out=h, fc3_out=z
            )
        return F.log_softmax(F.selu(z), dim=1), h


@register_model(
    ModelCard(
        name="xlsr-sls",
        family="sls",
        description="XLS-R 300M + Sensitive Layer Selection classifier (Zhang et al., ACM MM 2024)",
        window_samples=WINDOW,
        window_policy="first 64,600 samples, shorter audio tiled (LA, DF and In-the-Wild alike)",
        score="logits[:, 1] = log P(bona fide) (a log-softmax output); higher means bona fide",
        export="fixed",
        weights={
            "df": PretrainedWeights(
                url="https://drive.google.com/drive/folders/13vw_AX1jHdYndRu1edlgpdNJpCX8OnrH",
                filename="xlsr-sls-df.pth",
                sha256=None,
                licence="no licence stated by the authors",
                notice="QiShanZhang/SLSforASVspoof-2021-DF states no licence; ask the authors "
                "before redistributing the weights",
                trained_on="ASVspoof 2019 LA train (the authors' DF recipe, RawBoost)",
                published="EER 1.92 % on ASVspoof 2021 DF, 2.87 % on 2021 LA, 7.46 % on "
                "In-the-Wild (authors' README)",
                source="manual",
            )
        },
        training_data="ASVspoof 2019 LA train (published checkpoint)",
        published_results="authors: 2021 DF EER 1.92 %, 2021 LA EER 2.87 %, In-the-Wild EER "
        "7.46 % (README of QiShanZhang/SLSforASVspoof-2021-DF)",
        licence="code and weights: no licence stated (QiShanZhang/SLSforASVspoof-2021-DF)",
        encoder="XLS-R 300M, all 24 layers before the final LayerNorm, fine-tuned",
    ),
    convert=convert_fairseq,
)
def xlsr_sls(**overrides) -> XLSRSLS:
    """XLS-R 300M + SLS (23,399,429 back-end parameters)."""
    return XLSRSLS(None, **overrides)
