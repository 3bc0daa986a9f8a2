"""A straightforward eager port of the official AASIST forward pass: the baseline of the
speed ratio in ``inference.py``.

It runs the operations of the official clovaai/aasist ``Model.forward`` in the same order on
the same weights (our module's parameters, which carry the official names), including the
work the official code does and then discards: ``bn1`` + SELU in every residual block, a clone
of the sinc filters on every call, pairwise node products through ``expand``, and the
four-block attention board. It is not used by the package, only measured against it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _residual(blk, x):
    identity = x
    if not blk.first:
        out = F.selu(blk.bn1(x))  # computed, then discarded, as in the official code
    out = blk.conv1(x)
    out = blk.bn2(out)
    out = F.selu(out)
    out = blk.conv2(out)
    if blk.downsample:
        identity = blk.conv_downsample(identity)
    out = out + identity
    return blk.mp(out)


def _pairwise(x):
    n = x.size(1)
    x = x.unsqueeze(2).expand(-1, -1, n, -1)
    return x * x.transpose(1, 2)


def _bn(bn, x):
    size = x.size()
    return bn(x.view(-1, size[-1])).view(size)


def _gat(layer, x):
    x = layer.input_drop(x)
    att = torch.tanh(layer.att_proj(_pairwise(x)))
    att = torch.matmul(att, layer.att_weight) / layer.temp
    att = F.softmax(att, dim=-2)
    x = layer.proj_with_att(torch.matmul(att.squeeze(-1), x)) + layer.proj_without_att(x)
    return F.selu(_bn(layer.bn, x))


def _htrg(layer, x1, x2, master):
    n1, n2 = x1.size(1), x2.size(1)
    x = torch.cat([layer.proj_type1(x1), layer.proj_type2(x2)], dim=1)
    x = layer.input_drop(x)
    att = torch.tanh(layer.att_proj(_pairwise(x)))
    board = torch.zeros_like(att[:, :, :, 0]).unsqueeze(-1)
    board[:, :n1, :n1, :] = torch.matmul(att[:, :n1, :n1, :], layer.att_weight11)
    board[:, n1:, n1:, :] = torch.matmul(att[:, n1:, n1:, :], layer.att_weight22)
    board[:, :n1, n1:, :] = torch.matmul(att[:, :n1, n1:, :], layer.att_weight12)
    board[:, n1:, :n1, :] = torch.matmul(att[:, n1:, :n1, :], layer.att_weight12)
    att = F.softmax(board / layer.temp, dim=-2)
    am = torch.tanh(layer.att_projM(x * master))
    am = F.softmax(torch.matmul(am, layer.att_weightM) / layer.temp, dim=-2)
    master = layer.proj_with_attM(torch.matmul(am.squeeze(-1).unsqueeze(1), x)) + (
        layer.proj_without_attM(master)
    )
    x = layer.proj_with_att(torch.matmul(att.squeeze(-1), x)) + layer.proj_without_att(x)
    x = F.selu(_bn(layer.bn, x))
    return x.narrow(1, 0, n1), x.narrow(1, n1, n2), master


def _pool(p, h):
    scores = torch.sigmoid(p.proj(p.drop(h)))
    n = max(int(h.size(1) * p.k), 1)
    _, idx = torch.topk(scores, n, dim=1)
    return torch.gather(h * scores, 1, idx.expand(-1, -1, h.size(2)))


def official_forward(m, x):
    """(B, L) -> (hidden, logits), as the official ``Model.forward(x)``."""
    x = x.unsqueeze(1)
    filters = m.conv_time.band_pass.clone().to(x.device).view(m.conv_time.out_channels, 1, -1)
    x = F.conv1d(x, filters)
    x = x.unsqueeze(1)
    x = F.max_pool2d(torch.abs(x), (3, 3))
    x = F.selu(m.first_bn(x))
    e = x
    for seq in m.encoder:
        e = _residual(seq[0], e)
    e_S, _ = torch.max(torch.abs(e), dim=3)
    e_S = e_S.transpose(1, 2) + m.pos_S
    out_S = _pool(m.pool_S, _gat(m.GAT_layer_S, e_S))
    e_T, _ = torch.max(torch.abs(e), dim=2)
    out_T = _pool(m.pool_T, _gat(m.GAT_layer_T, e_T.transpose(1, 2)))
    t1, s1, m1 = _htrg(m.HtrgGAT_layer_ST11, out_T, out_S, m.master1)
    s1, t1 = _pool(m.pool_hS1, s1), _pool(m.pool_hT1, t1)
    ta, sa, ma = _htrg(m.HtrgGAT_layer_ST12, t1, s1, m1)
    t1, s1, m1 = t1 + ta, s1 + sa, m1 + ma
    t2, s2, m2 = _htrg(m.HtrgGAT_layer_ST21, out_T, out_S, m.master2)
    s2, t2 = _pool(m.pool_hS2, s2), _pool(m.pool_hT2, t2)
    ta, sa, ma = _htrg(m.HtrgGAT_layer_ST22, t2, s2, m2)
    t2, s2, m2 = t2 + ta, s2 + sa, m2 + ma
    t1, t2, s1, s2 = (m.drop_way(v) for v in (t1, t2, s1, s2))
    m1, m2 = m.drop_way(m1), m.drop_way(m2)
    out_T, out_S, master = torch.max(t1, t2), torch.max(s1, s2), torch.max(m1, m2)
    T_max, _ = torch.max(torch.abs(out_T), dim=1)
    S_max, _ = torch.max(torch.abs(out_S), dim=1)
    hidden = torch.cat([T_max, out_T.mean(1), S_max, out_S.mean(1), master.squeeze(1)], dim=1)
    hidden = m.drop(hidden)
    return hidden, m.out_layer(hidden)
