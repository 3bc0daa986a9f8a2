"""LFCC-LCNN: the ASVspoof 2021 LA/DF baseline (light CNN with max-feature-map, BLSTM, pooling).

Papers: G. Lavrentyeva et al., "STC antispoofing systems for the ASVspoof2019 challenge",
Interspeech 2019; X. Wang and J. Yamagishi, "A comparative study on recent neural spoofing
countermeasures for synthetic speech detection", Interspeech 2021. Original code:
github.com/asvspoof-challenge/2021, LA/Baseline-LFCC-LCNN (BSD 3-Clause, (c) 2020 Xin Wang,
National Institute of Informatics). Independent implementation under the official parameter
names; an official state_dict loads with ``strict=True``.

Output: the baseline produces one score s (raw Linear output, higher = bona fide, trained with
sigmoid + BCE). To fit the registry's two-logit contract we return logits ``[0, s]``: the
bona fide logit equals the official score and ``softmax(logits)[:, 1] == sigmoid(s)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..features.lfcc import LFCC
from ._card import ModelCard
from ._registry import check_waveform, merged_config, register_model


class MaxFeatureMap2D(nn.Module):
    """Element-wise max of the two halves of the channel axis: (B, C, ...) -> (B, C/2, ...).

    The channel count is fixed at construction so that exported graphs keep static channels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.half = channels // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x[:, : self.half], x[:, self.half : 2 * self.half])


class BLSTMLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.l_blstm = nn.LSTM(in_dim, out_dim // 2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l_blstm(x)[0]


@dataclass
class LCNNConfig:
    n_filters: int = 20
    dropout: float = 0.7
    emb_dim: int = 96


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=False)


class LFCCLCNN(nn.Module):
    """LFCC-LCNN countermeasure: (B, L) -> (logits [0, s] (B, 2), pooled embedding (B, 96))."""

    #: fine-tuning groups: the LFCC front-end and the CNN
    frontend_modules = ("m_frontend", "m_transform")
    head_modules = ("m_output_act",)

    def __init__(self, config: LCNNConfig | None = None, **overrides):
        super().__init__()
        cfg = merged_config(LCNNConfig, config, overrides)
        self.config = cfg
        # framework placeholders of the NII code, kept so that official state_dicts load
        for name, v in (
            ("input_mean", 0.0),
            ("input_std", 1.0),
            ("output_mean", 0.0),
            ("output_std", 1.0),
        ):
            setattr(self, name, nn.Parameter(torch.full((1,), v), requires_grad=False))
        self.m_frontend = nn.ModuleList([LFCC(cfg.n_filters)])
        mfm, pool = MaxFeatureMap2D, lambda: nn.MaxPool2d(2, 2)
        self.m_transform = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(1, 64, 5, 1, padding=2),
                    mfm(64),
                    pool(),
                    nn.Conv2d(32, 64, 1, 1),
                    mfm(64),
                    _bn(32),
                    nn.Conv2d(32, 96, 3, 1, padding=1),
                    mfm(96),
                    pool(),
                    _bn(48),
                    nn.Conv2d(48, 96, 1, 1),
                    mfm(96),
                    _bn(48),
                    nn.Conv2d(48, 128, 3, 1, padding=1),
                    mfm(128),
                    pool(),
                    nn.Conv2d(64, 128, 1, 1),
                    mfm(128),
                    _bn(64),
                    nn.Conv2d(64, 64, 3, 1, padding=1),
                    mfm(64),
                    _bn(32),
                    nn.Conv2d(32, 64, 1, 1),
                    mfm(64),
                    _bn(32),
                    nn.Conv2d(32, 64, 3, 1, padding=1),
                    mfm(64),
                    pool(),
                    nn.Dropout(cfg.dropout),
                )
            ]
        )
        d = cfg.emb_dim
        self.m_output_act = nn.ModuleList([nn.Linear(d, 1)])
        self.m_before_pooling = nn.ModuleList([nn.Sequential(BLSTMLayer(d, d), BLSTMLayer(d, d))])

    @property
    def min_length(self) -> int:
        """1 + L // 160 frames must reach 16 (four 2x2 poolings)."""
        return 2400

    @property
    def embedding_dim(self) -> int:
        return 96

    def cnn(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, 60) features -> (B, 32, T // 16, 3)."""
        return self.m_transform[0](feats.unsqueeze(1))

    def forward(self, x: torch.Tensor):
        check_waveform(x, self.min_length, "LFCC-LCNN")
        h = self.cnn(self.m_frontend[0](x))
        h = h.permute(0, 2, 1, 3).reshape(x.size(0), h.size(2), -1)  # (B, T', 32*3)
        pooled = (self.m_before_pooling[0](h) + h).mean(dim=1)
        s = self.m_output_act[0](pooled)
        return torch.cat([torch.zeros_like(s), s], dim=1), pooled


@register_model(
    ModelCard(
        name="lfcc-lcnn",
        family="lcnn",
        description="LFCC-LCNN, the ASVspoof 2021 baseline (275,253 parameters)",
        score="logits[:, 1], the baseline's single score (logits[:, 0] is 0); higher means "
        "bona fide",
        published_results="2021 LA eval baseline: EER 9.26 %, min t-DCF 0.3445 "
        "(ASVspoof 2021 overview, Yamagishi et al., 2021)",
        licence="architecture of the ASVspoof 2021 baseline (BSD 3-Clause); no weights shipped",
    )
)
def lfcc_lcnn(**overrides) -> LFCCLCNN:
    """LFCC-LCNN, the ASVspoof 2021 baseline (275,253 parameters, 269,729 trainable)."""
    return LFCCLCNN(None, **overrides)
