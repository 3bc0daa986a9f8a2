"""RawNet2: fixed sinc front-end, residual blocks with filter-wise feature-map scaling, GRU.

Paper: H. Tak et al., "End-to-end anti-spoofing with RawNet2", ICASSP 2021. Original code: the
ASVspoof 2021 baseline (github.com/asvspoof-challenge/2021, LA/Baseline-RawNet2, MIT, (c) 2021
eurecom-asp) and clovaai/aasist ``RawNet2Spoof`` (same architecture). Independent
implementation under the official parameter names; an official state_dict loads with
``strict=True``. The output is the official log-softmax (index 1 = bona fide, score
``out[:, 1]``); the embedding is the ``fc1_gru`` output (the clovaai ``last_hidden``).

As in the official code, ``bn1`` of blocks 1-5 is computed on a path whose result is discarded
(``conv1`` takes the block input), so its weights have no effect.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ._card import ModelCard
from ._registry import check_waveform, merged_config, register_model
from ._sinc import SincConv


@dataclass
class RawNet2Config:
    """The official ``model`` block of ``model_config_RawNet.yaml`` (nb_samp, blocks and
    filts[3] are unused, as there)."""

    first_conv: int = 1024
    in_channels: int = 1
    filts: list = field(default_factory=lambda: [20, [20, 20], [20, 128], [128, 128]])
    blocks: list = field(default_factory=lambda: [2, 4])
    nb_fc_node: int = 1024
    gru_node: int = 1024
    nb_gru_layer: int = 3
    nb_classes: int = 2
    nb_samp: int = 64600
    sample_rate: int = 16000

    @classmethod
    def from_official(cls, d: dict) -> RawNet2Config:
        d = dict(d.get("model", d.get("model_config", d)))
        d.pop("architecture", None)
        return cls(**d)


class Residual_block(nn.Module):  # noqa: N801 (official name)
    def __init__(self, nb_filts, first: bool = False):
        super().__init__()
        c_in, c_out = nb_filts
        self.first = first
        if not first:
            self.bn1 = nn.BatchNorm1d(c_in)  # without effect, as in the official code
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size=3, padding=1)
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv1d(c_in, c_out, kernel_size=1)
        self.mp = nn.MaxPool1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.leaky_relu(self.bn2(self.conv1(x)), 0.3))
        identity = self.conv_downsample(x) if self.downsample else x
        return self.mp(out + identity)


class RawNet2(nn.Module):
    """RawNet2 countermeasure. Input (B, L) at 16 kHz, L >= ``min_length``.

    ``forward(x)`` returns ``(log-probabilities (B, 2), embedding (B, nb_fc_node))``.
    """

    #: fine-tuning groups: the sinc stage and the first residual stage
    frontend_modules = ("Sinc_conv", "first_bn", "block0", "block1")

    def __init__(self, config: RawNet2Config | None = None, **overrides):
        super().__init__()
        cfg = merged_config(RawNet2Config, config, overrides)
        self.config = cfg
        filts = copy.deepcopy(cfg.filts)
        self.Sinc_conv = SincConv(filts[0], cfg.first_conv, cfg.sample_rate)
        self.first_bn = nn.BatchNorm1d(filts[0])
        self.block0 = nn.Sequential(Residual_block(filts[1], first=True))
        self.block1 = nn.Sequential(Residual_block(filts[1]))
        self.block2 = nn.Sequential(Residual_block(filts[2]))
        wide = filts[2][1]
        for i in (3, 4, 5):
            setattr(self, f"block{i}", nn.Sequential(Residual_block([wide, wide])))
        for i, c in enumerate([filts[1][-1]] * 2 + [wide] * 4):
            setattr(self, f"fc_attention{i}", nn.Sequential(nn.Linear(c, c)))
        self.bn_before_gru = nn.BatchNorm1d(wide)
        self.gru = nn.GRU(wide, cfg.gru_node, num_layers=cfg.nb_gru_layer, batch_first=True)
        self.fc1_gru = nn.Linear(cfg.gru_node, cfg.nb_fc_node)
        self.fc2_gru = nn.Linear(cfg.nb_fc_node, cfg.nb_classes)

    @property
    def min_length(self) -> int:
        return self.Sinc_conv.kernel_size - 1 + 3**7

    @property
    def embedding_dim(self) -> int:
        return self.config.nb_fc_node

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> first_bn output (B, F, T0), before the SELU."""
        check_waveform(x, self.min_length, "RawNet2")
        return self.first_bn(F.max_pool1d(torch.abs(self.Sinc_conv(x.unsqueeze(1))), 3))

    def forward(self, x: torch.Tensor):
        h = F.selu(self.frontend(x))
        for i in range(6):
            h = getattr(self, f"block{i}")(h)
            # filter-wise feature-map scaling: x * s + s with s = sigmoid(fc(mean over time))
            s = torch.sigmoid(getattr(self, f"fc_attention{i}")(h.mean(dim=-1))).unsqueeze(-1)
            h = h * s + s
        h = F.selu(self.bn_before_gru(h)).transpose(1, 2)
        h, _ = self.gru(h)
        emb = self.fc1_gru(h[:, -1, :])
        return F.log_softmax(self.fc2_gru(emb), dim=1), emb


@register_model(
    ModelCard(
        name="rawnet2",
        family="rawnet2",
        description="RawNet2, the ASVspoof 2021 baseline configuration (17,621,410 parameters)",
        published_results="2021 LA eval baseline: EER 9.50 %, min t-DCF 0.4257 "
        "(ASVspoof 2021 overview, Yamagishi et al., 2021)",
        licence="architecture of the ASVspoof 2021 baseline (MIT); no weights shipped",
    )
)
def rawnet2(**overrides) -> RawNet2:
    """RawNet2, the ASVspoof 2021 baseline configuration (17,621,410 parameters)."""
    return RawNet2(None, **overrides)
