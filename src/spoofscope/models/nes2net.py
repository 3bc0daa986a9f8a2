"""Nes2Net-X: XLS-R 300M with a nested Res2Net TDNN back-end.

Paper: T. Liu, D.-T. Truong, R. K. Das, K. A. Lee and H. Li, "Nes2Net: A Lightweight Nested
Architecture for Foundation Model Driven Speech Anti-spoofing", 2025. Original code:
github.com/Liu-Tianchi/Nes2Net_ASVspoof_ITW (no licence stated), class
``wav2vec2_Nes2Net_no_Res_w_allT`` with ``Nes_ratio=[8, 8]``, ``dilation=2``,
``pool_func='mean'``, ``SE_ratio=[1]``. Independent implementation under the official names.

The 1024 encoder channels are split into 8 groups of 128; seven ``Bottle2neck`` blocks (each
itself a Res2Net of 8 groups of 16 channels whose cumulative branches are mixed by learned
weights, then squeeze-excitation) run on the cumulative sums of the groups; the outputs and the
last group are concatenated, batch-normalised, ReLU, averaged over time and classified.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ._card import ModelCard, PretrainedWeights
from ._registry import register_model
from .ssl import XLSRDetector, convert_fairseq


class SEModule(nn.Module):
    def __init__(self, channels: int, se_ratio: int = 8):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, channels // se_ratio, kernel_size=1),
            nn.ReLU(),
            nn.Conv1d(channels // se_ratio, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.se(x)


class Bottle2neck(nn.Module):
    """The inner Res2Net: (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_ratio: int):
        super().__init__()
        width = channels // scale
        self.width, self.nums = width, scale - 1
        self.conv1 = nn.Conv1d(channels, width * scale, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(width * scale)
        pad = math.floor(kernel_size / 2) * dilation
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, (kernel_size, 1), dilation=(dilation, 1), padding=(pad, 0))
            for _ in range(self.nums)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(self.nums))
        self.weighted_sum = nn.ParameterList(
            nn.Parameter(torch.full((1, 1, 1, i + 2), 1.0 / (i + 2))) for i in range(self.nums)
        )
        self.conv3 = nn.Conv1d(width * scale, channels, kernel_size=1)
        self.bn3 = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU()
        self.se = SEModule(channels, se_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.relu(self.conv1(x))).unsqueeze(-1)  # (B, C, T, 1)
        spx = torch.split(out, self.width, 1)
        sp, outs = spx[self.nums], []
        for i in range(self.nums):
            # the branches seen so far stacked on the last axis, mixed by learned weights
            sp = torch.cat((sp, spx[i]), -1)
            sp = self.bns[i](self.relu(self.convs[i](sp)))
            outs.append(torch.sum(sp * self.weighted_sum[i], dim=-1))
        out = torch.cat(outs + [spx[self.nums].squeeze(-1)], 1)
        out = self.se(self.bn3(self.relu(self.conv3(out))))
        return out + x


class NestedRes2NetTDNN(nn.Module):
    def __init__(
        self, nes_ratio=(8, 8), channels: int = 1024, dilation: int = 2, se_ratio: int = 1
    ):
        super().__init__()
        self.n = nes_ratio[0]
        self.C = channels // nes_ratio[0]
        self.Build_in_Res2Nets = nn.ModuleList(
            Bottle2neck(self.C, 3, dilation, nes_ratio[1], se_ratio) for _ in range(self.n - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.C) for _ in range(self.n - 1))
        self.bn = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor, intermediates: dict | None = None):
        """(B, C, T) -> (logits (B, 2), pooled (B, C))."""
        spx = torch.split(x, self.C, 1)
        outs, sp = [], None
        for i in range(self.n - 1):
            sp = spx[i] if i == 0 else sp + spx[i]
            block_out = self.Build_in_Res2Nets[i](sp)
            if i == 0 and intermediates is not None:
                intermediates["block0_out"] = block_out
            sp = self.bns[i](self.relu(block_out))
            outs.append(sp)
        pre_bn = torch.cat(outs + [spx[-1]], 1)
        pooled = torch.mean(self.relu(self.bn(pre_bn)), dim=-1)
        if intermediates is not None:
            intermediates.update(pre_bn=pre_bn, pooled=pooled)
        return self.fc(pooled), pooled


class Nes2NetX(XLSRDetector):
    """(B, L) -> (logits (B, 2), pooled (B, 1024)); score ``logits[:, 1]``."""

    def _build(self, hidden: int) -> None:
        if hidden % 64:  # 8 nested groups, each a Res2Net of 8 branches
            raise ConfigError(
                "Nes2Net-X splits the encoder width into 8 groups of 8 branches, so it needs "
                f"a width that is a multiple of 64; this encoder's is {hidden}"
            )
        self.Nested_Res2Net_TDNN = NestedRes2NetTDNN((8, 8), hidden, 2, 1)
        self.embedding_dim = hidden

    def backend(self, feats: torch.Tensor, intermediates: dict | None = None):
        """``feats``: (B, T, H), the encoder output after its final LayerNorm."""
        return self.Nested_Res2Net_TDNN(feats.permute(0, 2, 1), intermediates)


_DRIVE = "https://drive.google.com/file/d/"
_NOTICE = (
    "Liu-Tianchi/Nes2Net_ASVspoof_ITW states no licence; ask the authors before "
    "redistributing the weights"
)


def _weights(file_id: str, filename: str, trained_on: str, published: str) -> PretrainedWeights:
    return PretrainedWeights(
        url=f"{_DRIVE}{file_id}/view",
        filename=filename,
        sha256=None,
        licence="no licence stated by the authors",
        notice=_NOTICE,
        trained_on=trained_on,
        published=published,
        source="manual",
    )


@register_model(
    ModelCard(
        name="nes2net-x",
        family="nes2net",
        description="XLS-R 300M + Nes2Net-X nested Res2Net back-end (Liu et al., 2025)",
        window_policy="ASVspoof 2021: first 64,600 samples, tiled; In-the-Wild: the whole "
        "file (the authors' 'full' protocol)",
        export="dynamic",
        weights={
            "itw": _weights(
                "14YD8A54HLkXzlp7PWZ5iTW56WmQTIeEy",
                "nes2net-x-itw-valaug.pth",
                "ASVspoof 2019 LA train, validation with augmentation",
                "EER 5.15 % on In-the-Wild (authors' README)",
            ),
            "itw-noaug": _weights(
                "1rKuzoo-Trngjae8sPOduxG9jofgcVkRz",
                "nes2net-x-itw.pth",
                "ASVspoof 2019 LA train",
                "EER 5.52 % on In-the-Wild (authors' README)",
            ),
            "df": _weights(
                "1tjuSdbzgCnJSfy_eE_P52jRAonHY4YUT",
                "nes2net-x-df.pth",
                "ASVspoof 2019 LA train",
                "EER 1.65 % on ASVspoof 2021 DF (authors' README)",
            ),
            "df-avg5": _weights(
                "1JFGv_2TONMnTLGbiOIuHFfMvuo4SIIpg",
                "nes2net-x-df-avg5.pth",
                "ASVspoof 2019 LA train, average of 5 checkpoints",
                "EER 1.49 % on ASVspoof 2021 DF (authors' README)",
            ),
        },
        training_data="ASVspoof 2019 LA train (published checkpoints)",
        published_results="authors: In-the-Wild EER 5.15 % (5.52 % without validation "
        "augmentation); 2021 DF EER 1.49-1.65 %, 2021 LA 1.66-1.88 % (README of "
        "Liu-Tianchi/Nes2Net_ASVspoof_ITW)",
        licence="code and weights: no licence stated (Liu-Tianchi/Nes2Net_ASVspoof_ITW)",
        encoder="XLS-R 300M, last layer after the final LayerNorm, fine-tuned",
    ),
    convert=convert_fairseq,
)
def nes2net_x(**overrides) -> Nes2NetX:
    """XLS-R 300M + Nes2Net-X (512,039 back-end parameters)."""
    return Nes2NetX(None, **overrides)
