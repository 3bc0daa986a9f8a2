"""AASIST and AASIST-L: spectro-temporal graph attention on raw waveforms.

Paper: J.-w. Jung et al., "AASIST: Audio Anti-Spoofing using Integrated Spectro-Temporal Graph
Attention Networks", ICASSP 2022. Original code: github.com/clovaai/aasist (MIT, Copyright (c)
2021-present NAVER Corp.); this is an independent implementation that keeps the official module
and parameter names so that the official weights load with ``strict=True`` and give the official
scores. Output index 1 is bona fide; the official score is ``logits[:, 1]``.

Observed behaviour of the official code kept here on purpose (see the model card):
the residual blocks compute ``bn1`` but apply ``conv1`` to the block input; all hetero-graph
pools use ``pool_ratios[2]`` and all hetero layers ``temperatures[2]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ._card import ModelCard, PretrainedWeights
from ._pretrained import PACKAGED_NOTICE
from ._registry import check_waveform, merged_config, register_model
from ._sinc import SincConv

#: NAVER's copyright and MIT licence notice, shipped beside the packaged weights
NAVER_MIT_NOTICE = PACKAGED_NOTICE.read_text()
_CLOVA = "https://github.com/clovaai/aasist/raw/main/models/weights/"
_LA2019 = "ASVspoof 2019 LA train (bona fide + A01-A06), selected on 2019 LA dev"


@dataclass
class AASISTConfig:
    """The official ``model_config`` (``nb_samp`` and ``architecture`` are informational)."""

    first_conv: int = 128
    filts: list = field(default_factory=lambda: [70, [1, 32], [32, 32], [32, 64], [64, 64]])
    gat_dims: list = field(default_factory=lambda: [64, 32])
    pool_ratios: list = field(default_factory=lambda: [0.5, 0.7, 0.5, 0.5])
    temperatures: list = field(default_factory=lambda: [2.0, 2.0, 100.0, 100.0])
    nb_samp: int = 64600
    freq_aug: bool = False
    sample_rate: int = 16000

    @classmethod
    def from_official(cls, conf) -> AASISTConfig:
        """Build from an official ``model_config`` dict, a whole official ``.conf`` (JSON with
        a ``model_config`` key, and ``freq_aug`` as the string "True"/"False"), or a path to
        either."""
        if isinstance(conf, str | Path):
            conf = json.loads(Path(conf).read_text())
        top = dict(conf)
        mc = dict(top.get("model_config", top))
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(mc) - known - {"architecture"}
        if unknown:
            raise ConfigError(f"AASIST config: unknown keys {sorted(unknown)}")
        if mc.get("architecture", "AASIST") != "AASIST":
            raise ConfigError(f"not an AASIST config: architecture={mc['architecture']!r}")
        mc.pop("architecture", None)
        if "freq_aug" in top and "freq_aug" not in mc:
            mc["freq_aug"] = str(top["freq_aug"]).lower() == "true"
        return cls(**mc)


class GraphAttentionLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temp = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D_in) -> (B, N, D_out)."""
        x = self.input_drop(x)
        pair = x.unsqueeze(2) * x.unsqueeze(1)  # (B, N, N, D): node i times node j
        att = torch.matmul(torch.tanh(self.att_proj(pair)), self.att_weight) / self.temp
        att = F.softmax(att, dim=-2).squeeze(-1)  # (B, N, N), normalised over i
        x = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        return F.selu(_bn_nodes(self.bn, x))


def _bn_nodes(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    size = x.size()
    return bn(x.reshape(-1, size[-1])).view(size)


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous graph attention over two node types plus a master node."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        for name in ("att_weight11", "att_weight22", "att_weight12", "att_weightM"):
            setattr(self, name, nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1))))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temp = temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor):
        """(B, N1, D), (B, N2, D), master (1 or B, 1, D) -> the three updated."""
        n1, n2 = x1.size(1), x2.size(1)
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        x = self.input_drop(x)
        # attention map with one weight vector per block of node-type pairs
        a = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))  # (B, N, N, D_out)
        board = torch.zeros_like(a[..., :1])
        board[:, :n1, :n1] = torch.matmul(a[:, :n1, :n1], self.att_weight11)
        board[:, n1:, n1:] = torch.matmul(a[:, n1:, n1:], self.att_weight22)
        board[:, :n1, n1:] = torch.matmul(a[:, :n1, n1:], self.att_weight12)
        board[:, n1:, :n1] = torch.matmul(a[:, n1:, :n1], self.att_weight12)
        att = F.softmax(board / self.temp, dim=-2).squeeze(-1)
        # master node update (from the pre-projection nodes)
        am = torch.matmul(torch.tanh(self.att_projM(x * master)), self.att_weightM) / self.temp
        am = F.softmax(am, dim=-2).squeeze(-1).unsqueeze(1)  # (B, 1, N)
        master = self.proj_with_attM(torch.matmul(am, x)) + self.proj_without_attM(master)
        x = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        x = F.selu(_bn_nodes(self.bn, x))
        return x[:, :n1], x[:, n1 : n1 + n2], master


class GraphPool(nn.Module):
    """Keep the top ``max(int(N*k), 1)`` nodes by sigmoid score, scaled by that score."""

    def __init__(self, k: float, in_dim: int, p: float):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p=p) if p > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        n_keep = max(int(h.size(1) * self.k), 1)
        _, idx = torch.topk(scores, n_keep, dim=1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.size(2)))


class Residual_block(nn.Module):  # noqa: N801 (official name)
    def __init__(self, nb_filts, first: bool = False, pool: bool = True):
        super().__init__()
        c_in, c_out = nb_filts
        self.first = first
        if not first:
            # present in the official weights but, as there, without effect on the output
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1))
        self.mp = nn.MaxPool2d((1, 3)) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.selu(self.bn2(self.conv1(x))))
        identity = self.conv_downsample(x) if self.downsample else x
        return self.mp(out + identity)


class AASIST(nn.Module):
    """AASIST countermeasure. Input (B, L) float32 waveform at 16 kHz, L >= ``min_length``.

    ``forward(x)`` returns ``(logits (B, 2), embedding (B, 5 * gat_dims[1]))``; index 1 of the
    logits is bona fide. The embedding is the official ``last_hidden``.
    """

    #: fine-tuning groups (``freeze: [frontend]`` / ``all_but_head``)
    frontend_modules = ("conv_time", "first_bn", "encoder")
    head_modules = ("out_layer",)
    #: the most windows one engine call runs: the first encoder block holds 32 x 24 x 21,490
    #: floats (66 MB) per 4-s window; calls of 2 take the same time end to end as calls of 8
    #: with about a third of the peak memory (``benchmarks/inference.py --memory``)
    engine_batch = 2

    def __init__(self, config: AASISTConfig | None = None, **overrides):
        super().__init__()
        cfg = merged_config(AASISTConfig, config, overrides)
        self.config = cfg
        filts, gat, pr, temps = cfg.filts, cfg.gat_dims, cfg.pool_ratios, cfg.temperatures
        n_spec = filts[0] // 3
        self.conv_time = SincConv(filts[0], cfg.first_conv, cfg.sample_rate)
        self.first_bn = nn.BatchNorm2d(1)
        self.drop = nn.Dropout(0.5)
        self.drop_way = nn.Dropout(0.2)
        self.encoder = nn.Sequential(
            nn.Sequential(Residual_block(filts[1], first=True)),
            nn.Sequential(Residual_block(filts[2])),
            nn.Sequential(Residual_block(filts[3])),
            nn.Sequential(Residual_block(filts[4])),
            nn.Sequential(Residual_block(filts[4])),
            nn.Sequential(Residual_block(filts[4])),
        )
        build_graph_layers(self, filts[-1][-1], n_spec, gat, pr, temps)
        self.freq_aug = cfg.freq_aug

    @property
    def min_length(self) -> int:
        """Shortest input in samples: the time axis is (L - K + 1) pooled by 3 seven times."""
        return self.conv_time.kernel_size - 1 + 3**7

    @property
    def embedding_dim(self) -> int:
        return 5 * self.config.gat_dims[1]

    def encode(self, x: torch.Tensor, freq_aug: bool | None = None) -> torch.Tensor:
        """Waveform (B, L) -> encoder output (B, C, F=23, T)."""
        check_waveform(x, self.min_length, "AASIST")
        mask = self.training and (self.freq_aug if freq_aug is None else freq_aug)
        h = self.conv_time(x.unsqueeze(1), mask=mask).unsqueeze(1)
        h = F.selu(self.first_bn(F.max_pool2d(torch.abs(h), (3, 3))))
        return self.encoder(h)

    def forward(self, x: torch.Tensor, freq_aug: bool | None = None):
        e = self.encode(x, freq_aug)
        e_S = torch.amax(torch.abs(e), dim=3).transpose(1, 2) + self.pos_S  # spectral nodes
        e_T = torch.amax(torch.abs(e), dim=2).transpose(1, 2)  # temporal nodes
        return graph_head(self, e_S, e_T)


def graph_head(m: nn.Module, e_S: torch.Tensor, e_T: torch.Tensor):
    """The graph part shared by AASIST and SSL-AASIST: GAT on spectral and temporal nodes,
    two heterogeneous branches with master nodes, max of the branches, readout, output layer.

    Returns ``(logits (B, 2), hidden (B, 5 * gat_dims[1]))``.
    """
    out_S = m.pool_S(m.GAT_layer_S(e_S))
    out_T = m.pool_T(m.GAT_layer_T(e_T))
    branches = []
    for first, second, pool_S, pool_T, master in (
        (m.HtrgGAT_layer_ST11, m.HtrgGAT_layer_ST12, m.pool_hS1, m.pool_hT1, m.master1),
        (m.HtrgGAT_layer_ST21, m.HtrgGAT_layer_ST22, m.pool_hS2, m.pool_hT2, m.master2),
    ):
        t, s, mm = first(out_T, out_S, master=master)
        s, t = pool_S(s), pool_T(t)
        t_aug, s_aug, m_aug = second(t, s, master=mm)
        branches.append((m.drop_way(t + t_aug), m.drop_way(s + s_aug), m.drop_way(mm + m_aug)))
    (t1, s1, m1), (t2, s2, m2) = branches
    out_T, out_S, master = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
    hidden = torch.cat(
        [
            torch.amax(torch.abs(out_T), dim=1),
            out_T.mean(dim=1),
            torch.amax(torch.abs(out_S), dim=1),
            out_S.mean(dim=1),
            master.squeeze(1),
        ],
        dim=1,
    )
    hidden = m.drop(hidden)
    return m.out_layer(hidden), hidden


def build_graph_layers(m: nn.Module, c: int, n_spec: int, gat, pr, temps) -> None:
    """Register the graph modules (official names) on ``m``."""
    m.pos_S = nn.Parameter(torch.randn(1, n_spec, c))
    m.master1 = nn.Parameter(torch.randn(1, 1, gat[0]))
    m.master2 = nn.Parameter(torch.randn(1, 1, gat[0]))
    m.GAT_layer_S = GraphAttentionLayer(c, gat[0], temperature=temps[0])
    m.GAT_layer_T = GraphAttentionLayer(c, gat[0], temperature=temps[1])
    m.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(gat[0], gat[1], temps[2])
    m.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(gat[1], gat[1], temps[2])
    m.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(gat[0], gat[1], temps[2])
    m.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(gat[1], gat[1], temps[2])
    m.pool_S = GraphPool(pr[0], gat[0], 0.3)
    m.pool_T = GraphPool(pr[1], gat[0], 0.3)
    m.pool_hS1 = GraphPool(pr[2], gat[1], 0.3)
    m.pool_hT1 = GraphPool(pr[2], gat[1], 0.3)
    m.pool_hS2 = GraphPool(pr[2], gat[1], 0.3)
    m.pool_hT2 = GraphPool(pr[2], gat[1], 0.3)
    m.out_layer = nn.Linear(5 * gat[1], 2)


AASIST_L_CONFIG = dict(
    filts=[70, [1, 32], [32, 32], [32, 24], [24, 24]],
    gat_dims=[24, 32],
    pool_ratios=[0.4, 0.5, 0.7, 0.5],
    temperatures=[2.0, 2.0, 100.0, 100.0],
)


_AASIST_NOTES = (
    "trained on ASVspoof 2019 LA train only (six 2018-era TTS/VC systems, English read "
    "speech). Known to miss: many 2022+ generators (official AASIST: EER 30 % and 40 % on the "
    "two halves of spoofscope's real TTS/VC development clips, against 0.83 % on 2019 LA eval; "
    "docs/speed.md, 'Adaptation, on real recordings'); it judges any sound, so music and "
    "noise can be called spoof. "
    "Fit a calibration on your own labelled files before trusting a verdict"
)


def _card(name, filename, sha256, published, description) -> ModelCard:
    return ModelCard(
        name=name,
        family="aasist",
        description=description,
        window_samples=64600,
        export="fixed",  # graph pooling keeps int(N * k) nodes: the graph follows the length
        weights={
            "official": PretrainedWeights(
                url=_CLOVA + filename,
                filename=filename,
                sha256=sha256,
                licence="MIT (NAVER Corp.)",
                notice=NAVER_MIT_NOTICE,
                trained_on=_LA2019,
                published=published,
                packaged=True,  # spoofscope/models/weights/, with NAVER's notice
            )
        },
        training_data=_LA2019,
        published_results=published,
        licence="code and weights MIT (NAVER Corp.)",
        notes=_AASIST_NOTES,
    )


@register_model(
    _card(
        "aasist",
        "AASIST.pth",
        "51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0",
        "2019 LA eval: EER 0.83 %, min t-DCF 0.0275 (Jung et al., ICASSP 2022)",
        "AASIST (297,866 parameters), the official AASIST.conf model_config",
    )
)
def aasist(**overrides) -> AASIST:
    """AASIST (297,866 parameters), the official AASIST.conf model_config."""
    overrides.pop("architecture", None)  # an official model_config can be passed as is
    return AASIST(None, **overrides)


@register_model(
    _card(
        "aasist-l",
        "AASIST-L.pth",
        "814331d088032bb4c3fa61cc014789eadeed464209dd094ab3a2dd6ffbdce27a",
        "2019 LA eval: EER 0.99 %, min t-DCF 0.0309 (Jung et al., ICASSP 2022)",
        "AASIST-L (85,306 parameters), the official AASIST-L.conf model_config",
    )
)
def aasist_l(**overrides) -> AASIST:
    """AASIST-L (85,306 parameters), the official AASIST-L.conf model_config."""
    overrides.pop("architecture", None)
    return AASIST(None, **{**AASIST_L_CONFIG, **overrides})
