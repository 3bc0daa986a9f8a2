"""TCM: XLS-R 300M with a Temporal-Channel Modeling conformer back-end.

Paper: D.-T. Truong, R. Tao, T. Nguyen, H.-T. Luong, K. A. Lee and E. S. Chng, "Temporal-Channel
Modeling in Multi-head Self-Attention for Synthetic Speech Detection", Interspeech 2024.
Original code: github.com/ductuantruong/tcm_add (MIT, (c) 2024 Truong Duc Tuan), ``model.py``
and ``conformer.py`` (``MyConformer``: emb 144, 4 heads, kernel 31, 4 blocks). Independent
implementation under the official names. Each block's attention adds one "head token" per head
(the mean of the head's channels, projected back to the model width) and merges the head
tokens' outputs into the class token, which ``fc5`` classifies.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._card import ModelCard, PretrainedWeights
from ._registry import register_model
from .ssl import XLSRDetector, convert_fairseq


def sinusoidal_embedding(n: int, dim: int) -> torch.Tensor:
    """(1, n, dim) sin/cos table with the official exponent 2 * (i // 2) / dim."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(dim, dtype=torch.float64)[None, :]
    pe = pos / (10000 ** (2 * (i // 2) / dim))
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pe[:, 0::2]), torch.cos(pe[:, 1::2])
    return pe.float().unsqueeze(0)


class Scale(nn.Module):
    def __init__(self, scale: float, fn: nn.Module):
        super().__init__()
        self.scale, self.fn = scale, fn

    def forward(self, x):
        return self.fn(x) * self.scale


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn, self.norm = fn, nn.LayerNorm(dim)

    def forward(self, x):
        return self.fn(self.norm(x))


class Swish(nn.Module):
    def forward(self, x):
        return x * x.sigmoid()


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult),
            Swish(),
            nn.Dropout(0.0),
            nn.Linear(dim * mult, dim),
            nn.Dropout(0.0),
        )

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention with head tokens (class token first in the sequence)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        self.qkv = nn.Linear(dim, dim_head * heads * 3, bias=False)
        self.proj = nn.Linear(dim_head * heads, dim)
        self.ht_proj = nn.Linear(dim_head, dim)
        self.ht_norm = nn.LayerNorm(dim_head)
        self.pos_embed = nn.Parameter(torch.zeros(1, heads, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        # one head token per head: the head's channels averaged over the sequence
        ht = x.reshape(B, N, h, d).permute(0, 2, 1, 3).mean(dim=2)  # (B, h, d)
        ht = self.ht_proj(ht).reshape(B, h, h, d)
        ht = F.gelu(self.ht_norm(ht)).flatten(2) + self.pos_embed  # (B, h, C)
        x = torch.cat([x, ht], dim=1)
        q, k, v = self.qkv(x).reshape(B, N + h, 3, h, d).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = self.proj((attn @ v).transpose(1, 2).reshape(B, N + h, C))
        cls, patch, ht = torch.split(x, [1, N - 1, h], dim=1)
        cls = cls + ht.mean(dim=1, keepdim=True) + patch.mean(dim=1, keepdim=True)
        return torch.cat([cls, patch], dim=1)


class DepthWiseConv1d(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.padding = (pad, pad - (kernel_size + 1) % 2)
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x):
        return self.conv(F.pad(x, self.padding))


class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class _GLU(nn.Module):
    def forward(self, x):
        out, gate = x.chunk(2, dim=1)
        return out * gate.sigmoid()


class ConvModule(nn.Module):
    def __init__(self, dim: int, expansion: int = 2, kernel_size: int = 31):
        super().__init__()
        inner = dim * expansion
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            _Transpose(),
            nn.Conv1d(dim, inner * 2, 1),
            _GLU(),
            DepthWiseConv1d(inner, kernel_size),
            nn.BatchNorm1d(inner),
            Swish(),
            nn.Conv1d(inner, dim, 1),
            _Transpose(),
            nn.Dropout(0.0),
        )

    def forward(self, x):
        return self.net(x)


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, kernel_size: int, ff_mult: int = 4):
        super().__init__()
        self.ff1 = Scale(0.5, PreNorm(dim, FeedForward(dim, ff_mult)))
        self.attn = PreNorm(dim, Attention(dim, heads, dim // heads))
        self.conv = ConvModule(dim, 2, kernel_size)
        self.ff2 = Scale(0.5, PreNorm(dim, FeedForward(dim, ff_mult)))
        self.post_norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.ff1(x) + x
        x = self.attn(x) + x
        x = self.conv(x) + x
        x = self.ff2(x) + x
        return self.post_norm(x)


class MyConformer(nn.Module):
    def __init__(self, emb_size=144, heads=4, kernel_size=31, n_encoders=4, max_len=10000):
        super().__init__()
        self.positional_emb = nn.Parameter(
            sinusoidal_embedding(max_len, emb_size), requires_grad=False
        )
        self.encoder_blocks = nn.ModuleList(
            ConformerBlock(emb_size, heads, kernel_size) for _ in range(n_encoders)
        )
        self.class_token = nn.Parameter(torch.rand(1, emb_size))
        self.fc5 = nn.Linear(emb_size, 2)

    def forward(self, x: torch.Tensor, intermediates: dict | None = None):
        x = x + self.positional_emb[:, : x.size(1), :]
        x = torch.cat([self.class_token.expand(x.size(0), 1, -1), x], dim=1)
        for i, block in enumerate(self.encoder_blocks):
            x = block(x)
            if i == 0 and intermediates is not None:
                intermediates["block0_out"] = x
        emb = x[:, 0, :]
        if intermediates is not None:
            intermediates["embedding"] = emb
        return self.fc5(emb), emb


class TCM(XLSRDetector):
    """(B, L) -> (logits (B, 2), class-token embedding (B, 144)); score ``logits[:, 1]``."""

    def _build(self, hidden: int) -> None:
        self.LL = nn.Linear(hidden, 144)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.conformer = MyConformer(emb_size=144, heads=4, kernel_size=31, n_encoders=4)
        self.embedding_dim = 144

    @property
    def max_length(self) -> int:
        """The positional table has 10,000 rows: at most 10,000 frames (about 200 s)."""
        return 400 + 320 * self.conformer.positional_emb.size(1) - 1

    def _check(self, x):
        from ..errors import InputError

        super()._check(x)
        if x.size(1) > self.max_length:
            raise InputError(
                f"TCM takes at most {self.max_length} samples (10,000 frames); got {x.size(1)}"
            )

    def backend(self, feats: torch.Tensor, intermediates: dict | None = None):
        """``feats``: (B, T, H), the encoder output after its final LayerNorm."""
        x = self.LL(feats)
        c = F.selu(self.first_bn(x.unsqueeze(1))).squeeze(1)
        if intermediates is not None:
            intermediates.update(LL_out=x, conformer_in=c)
        return self.conformer(c, intermediates)


@register_model(
    ModelCard(
        name="xlsr-tcm",
        family="tcm",
        description="XLS-R 300M + Temporal-Channel Modeling conformer (Truong et al., 2024)",
        window_samples=66800,
        window_policy="ASVspoof 2021: first 66,800 samples, tiled; the authors' inference "
        "script scores whole files",
        export="dynamic",
        precisions=("fp32", "int8"),  # int8 feed-forward: scores within 4e-3 (README)
        weights={
            "df": PretrainedWeights(
                url="https://entuedu-my.sharepoint.com/:f:/g/personal/truongdu001_e_ntu_edu_sg/"
                "El7AV62BKkdKhOYCyB3s2EkBLr-aVdj0doH0HNj9mTIsGA?e=aOlRCB",
                filename="xlsr-tcm-df.pth",
                sha256=None,
                licence="MIT (c) 2024 Truong Duc Tuan",
                notice="MIT License, Copyright (c) 2024 Truong Duc Tuan "
                "(github.com/ductuantruong/tcm_add)",
                trained_on="ASVspoof 2019 LA train",
                published="no EER in the authors' README; third-party (Nes2Net README): "
                "2021 LA 1.03 %, DF 2.06 %, In-the-Wild 7.79 %",
                source="manual",
            )
        },
        training_data="ASVspoof 2019 LA train (published checkpoint)",
        published_results="the authors' README states no EER; the Nes2Net README reports "
        "2021 LA EER 1.03 %, 2021 DF 2.06 %, In-the-Wild 7.79 %",
        licence="code MIT (c) 2024 Truong Duc Tuan",
        encoder="XLS-R 300M, last layer after the final LayerNorm, fine-tuned",
    ),
    convert=convert_fairseq,
)
def xlsr_tcm(**overrides) -> TCM:
    """XLS-R 300M + TCM conformer (2,382,628 trainable back-end parameters)."""
    return TCM(None, **overrides)
