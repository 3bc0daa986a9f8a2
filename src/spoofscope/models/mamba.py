"""XLSR-Mamba: XLS-R 300M with a dual-column bidirectional Mamba back-end.

Paper: Y. Xiao and R. K. Das, "XLSR-Mamba: A Dual-Column Bidirectional State Space Model for
Spoofing Attack Detection", IEEE SPL 2025 (arXiv 2411.10027). Original code:
github.com/swagshaw/XLSR-Mamba (MIT, (c) 2025 Austin Xiao), on mamba_ssm 1.1.4. Independent
implementation under the official parameter names, in pure PyTorch: the selective scan is the
sequential recurrence of mamba_ssm's reference (``selective_scan_ref``), the causal convolution a
depthwise ``conv1d`` trimmed to the causal part; no CUDA kernel, no ``mamba_ssm``.

Behaviour of the official code kept on purpose (it decides the published scores):
``MixerModel`` normalises the *input* of its block stack plus the stack's residual stream,
``norm_f(x + r)``, so the last block's mixer output of each column is never used; the backward
column's residual, computed on the time-reversed input, is added to the un-reversed input; one
``norm_f`` serves both columns.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._card import ModelCard, PretrainedWeights
from ._registry import register_model
from .ssl import XLSRDetector, convert_fairseq


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + self.eps) * self.weight


def selective_scan(u, delta, A, B, C, D, z, delta_bias):
    """The Mamba recurrence. ``u``, ``delta``, ``z``: (B, D, L); ``A``: (D, N); ``B``, ``C``:
    (B, N, L). h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t; y_t = C_t h_t + D u_t, gated by
    silu(z)."""
    delta = F.softplus(delta + delta_bias[..., None])
    dA = torch.exp(torch.einsum("bdl,dn->bldn", delta, A))  # (B, L, D, N)
    dBu = torch.einsum("bdl,bnl,bdl->bldn", delta, B, u)
    Ct = C.transpose(1, 2)  # (B, L, N)
    h = u.new_zeros(u.size(0), A.size(0), A.size(1))
    ys = []
    for t in range(u.size(-1)):
        h = dA[:, t] * h + dBu[:, t]
        ys.append(torch.einsum("bdn,bn->bd", h, Ct[:, t]))
    y = torch.stack(ys, dim=-1)
    return (y + u * D[:, None]) * F.silu(z)


class Mamba(nn.Module):
    """One Mamba mixer (mamba_ssm 1.1.4 defaults: d_state 16, d_conv 4, expand 2)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        L = hidden.size(1)
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, D, L) each
        x = F.silu(self.conv1d(x)[..., :L])  # causal depthwise convolution
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # bias goes in the scan
        y = selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z,
            self.dt_proj.bias.float(),
        )
        return self.out_proj(y.transpose(1, 2))


class Block(nn.Module):
    """Pre-norm residual block with the fused add+norm of mamba_ssm: returns (mixer output,
    residual stream)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mixer = Mamba(dim)
        self.norm = RMSNorm(dim)

    def forward(self, hidden, residual=None):
        residual = hidden if residual is None else hidden + residual
        return self.mixer(self.norm(residual)), residual


class MixerModel(nn.Module):
    """Forward and backward columns of ``n_layer`` blocks, softmax attention pooling per
    column, ``LL`` and the classifier."""

    def __init__(self, d_model: int = 144, n_layer: int = 6, dropout: float = 0.1):
        super().__init__()
        self.forward_layers = nn.ModuleList(Block(d_model) for _ in range(n_layer))
        self.backward_layers = nn.ModuleList(Block(d_model) for _ in range(n_layer))
        self.norm_f = RMSNorm(d_model)
        self.f_attention_pool = nn.Linear(d_model, 1)
        self.b_attention_pool = nn.Linear(d_model, 1)
        self.LL = nn.Linear(2 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, 2)

    def _column(self, layers, x):
        hidden, residual = x, None
        for block in layers:
            hidden, residual = block(hidden, residual)
        return residual  # the last mixer output is not used (official behaviour)

    @staticmethod
    def _pool(pool, h):
        w = F.softmax(pool(h), dim=1)  # (B, L, 1), over time
        return torch.sum(w * h, dim=1)

    def forward(self, x: torch.Tensor, intermediates: dict | None = None):
        f = self.norm_f(x + self._column(self.forward_layers, x))
        b = self.norm_f(x + self._column(self.backward_layers, x.flip(1)))
        pooled = torch.cat(
            [self._pool(self.f_attention_pool, f), self._pool(self.b_attention_pool, b)], dim=-1
        )
        head = self.dropout(self.LL(pooled))
        if intermediates is not None:
            intermediates.update(pooled_fb=pooled, head_in=head)
        return self.classifier(head), head


class XLSRMamba(XLSRDetector):
    """(B, L) -> (logits (B, 2), classifier input (B, 144)); score ``logits[:, 1]``."""

    def _build(self, hidden: int) -> None:
        self.LL = nn.Linear(hidden, 144)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.conformer = MixerModel(144, 6)
        self.embedding_dim = 144

    def backend(self, feats: torch.Tensor, intermediates: dict | None = None):
        """``feats``: (B, T, H), the encoder output after its final LayerNorm."""
        x = self.LL(feats)
        m = F.selu(self.first_bn(x.unsqueeze(1))).squeeze(1)
        if intermediates is not None:
            intermediates.update(LL_out=x, mixer_in=m)
        return self.conformer(m, intermediates)


_XIAO = "https://huggingface.co/AustinXiao/"
_MIT_XIAO = "MIT License, Copyright (c) 2025 Austin Xiao (github.com/swagshaw/XLSR-Mamba)"


def _mamba_weights(track: str, published: str) -> PretrainedWeights:
    return PretrainedWeights(
        url=f"{_XIAO}XLSR-Mamba-{track}",
        filename="model.safetensors",
        sha256=None,
        licence="MIT (code; the weights are published beside it)",
        notice=_MIT_XIAO,
        trained_on="ASVspoof 2019 LA train (the authors' recipe with RawBoost)",
        published=published,
        source="hf",
        hf_repo=f"AustinXiao/XLSR-Mamba-{track}",
    )


@register_model(
    ModelCard(
        name="xlsr-mamba",
        family="mamba",
        description="XLS-R 300M + dual-column bidirectional Mamba (Xiao and Das, 2025)",
        window_samples=66800,
        window_policy="ASVspoof 2021: first 66,800 samples, tiled; In-the-Wild: 64,600",
        # the scan is a loop over frames: a trace unrolls it (12 x 208 steps, minutes to export
        # and a huge graph), so the model runs in PyTorch only
        export="none",
        precisions=("fp32", "int8"),  # int8 feed-forward: scores within 4e-3 (README)
        weights={
            "df": _mamba_weights("DF", "EER 1.88 % on ASVspoof 2021 DF; 6.71 % on In-the-Wild"),
            "la": _mamba_weights("LA", "EER 0.93 %, min t-DCF 0.208 on ASVspoof 2021 LA"),
        },
        training_data="ASVspoof 2019 LA train (published checkpoints)",
        published_results="authors: 2021 LA EER 0.93 % (min t-DCF 0.208), 2021 DF EER 1.88 %, "
        "In-the-Wild EER 6.71 % (README of swagshaw/XLSR-Mamba; average of the 5 best "
        "checkpoints)",
        licence="code MIT (c) 2025 Austin Xiao",
        encoder="XLS-R 300M, last layer after the final LayerNorm, fine-tuned",
    ),
    convert=convert_fairseq,
)
def xlsr_mamba(**overrides) -> XLSRMamba:
    """XLS-R 300M + BiMamba (1,936,950 back-end parameters)."""
    return XLSRMamba(None, **overrides)
