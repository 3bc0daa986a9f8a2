"""fairseq's wav2vec 2.0 / HuBERT, written out from its model definitions (``wav2vec2.py``,
``hubert.py``): the state_dict keys and shapes of a configuration, with seeded values, and the
``features_only`` forward pass, as an independent reference for our converters."""

import torch
import torch.nn.functional as F


def fairseq_keys(cfg: dict, seed: int) -> dict:
    """The encoder's state_dict (no prefix) for ``cfg`` (a transformers-style config dict:
    ``feat_extract_norm`` group/layer, ``conv_bias``, ``model_type``), plus the pre-training
    heads the published checkpoints carry (quantiser, project_q, final_proj; HuBERT's label
    embeddings)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, around=0.0):
        return around + 0.2 * torch.randn(*shape, generator=g)

    d, ffn, dims = cfg["hidden_size"], cfg["intermediate_size"], cfg["conv_dim"]
    k_pos, groups = cfg["num_conv_pos_embeddings"], cfg["num_conv_pos_embedding_groups"]
    group = cfg.get("feat_extract_norm", "layer") == "group"
    sd = {"mask_emb": r(d)}
    c_in = 1
    for i, (c, k) in enumerate(zip(dims, cfg["conv_kernel"], strict=True)):
        p = f"feature_extractor.conv_layers.{i}."
        sd[p + "0.weight"] = r(c, c_in, k) / k**0.5
        if cfg.get("conv_bias"):
            sd[p + "0.bias"] = r(c)
        if group and i == 0:  # Sequential(Conv1d, Dropout, Fp32GroupNorm(C, C), GELU)
            sd[p + "2.weight"], sd[p + "2.bias"] = r(c, around=1.0), r(c)
        elif not group:  # Sequential(Conv1d, Dropout, Sequential(T, LayerNorm, T), GELU)
            sd[p + "2.1.weight"], sd[p + "2.1.bias"] = r(c, around=1.0), r(c)
        c_in = c
    sd["layer_norm.weight"], sd["layer_norm.bias"] = r(c_in, around=1.0), r(c_in)
    sd["post_extract_proj.weight"], sd["post_extract_proj.bias"] = r(d, c_in), r(d)
    # pos_conv = nn.Sequential(weight_norm(Conv1d(d, d, K, groups=G), dim=2), SamePad, GELU)
    sd["encoder.pos_conv.0.weight_g"] = r(1, 1, k_pos, around=1.0)
    sd["encoder.pos_conv.0.weight_v"] = r(d, d // groups, k_pos)
    sd["encoder.pos_conv.0.bias"] = r(d)
    for j in range(cfg["num_hidden_layers"]):
        p = f"encoder.layers.{j}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd[p + f"self_attn.{proj}.weight"] = r(d, d) / d**0.5
            sd[p + f"self_attn.{proj}.bias"] = r(d)
        sd[p + "self_attn_layer_norm.weight"] = r(d, around=1.0)
        sd[p + "self_attn_layer_norm.bias"] = r(d)
        sd[p + "fc1.weight"], sd[p + "fc1.bias"] = r(ffn, d) / d**0.5, r(ffn)
        sd[p + "fc2.weight"], sd[p + "fc2.bias"] = r(d, ffn) / ffn**0.5, r(d)
        sd[p + "final_layer_norm.weight"] = r(d, around=1.0)
        sd[p + "final_layer_norm.bias"] = r(d)
    sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"] = r(d, around=1.0), r(d)
    if cfg.get("model_type") == "hubert":
        sd["label_embs_concat"] = r(504, 16)
        sd["final_proj.weight"], sd["final_proj.bias"] = r(16, d), r(16)
    else:
        sd["quantizer.vars"] = r(1, 640, 8)
        sd["quantizer.weight_proj.weight"] = r(640, c_in)
        sd["quantizer.weight_proj.bias"] = r(640)
        sd["project_q.weight"], sd["project_q.bias"] = r(16, 16), r(16)
        sd["final_proj.weight"], sd["final_proj.bias"] = r(16, d), r(16)
    return sd


def fairseq_forward(sd: dict, x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """``Wav2Vec2Model.forward(x, features_only=True)["x"]`` (HuBERT's is the same) for that
    layout: conv blocks (conv; group norm per channel over time on the first in "default"
    mode, or layer norm over channels on each in "layer_norm" mode; GELU), feature layer norm,
    projection, x + GELU(same-padded weight-normed grouped conv), then post-LN layers after the
    encoder layer norm (``layer_norm_first`` False) or pre-LN layers before it (q scaled by
    head_dim^-0.5). (B, L) -> (B, T, H)."""
    eps, d, heads = 1e-5, cfg["hidden_size"], cfg["num_attention_heads"]
    pre_ln = cfg["do_stable_layer_norm"]

    def ln(h, name):
        return F.layer_norm(h, h.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)

    h = x[:, None]
    for i, stride in enumerate(cfg["conv_stride"]):
        p = f"feature_extractor.conv_layers.{i}."
        h = F.conv1d(h, sd[p + "0.weight"], sd.get(p + "0.bias"), stride=stride)
        if p + "2.weight" in sd:
            h = F.group_norm(h, h.shape[1], sd[p + "2.weight"], sd[p + "2.bias"], eps)
        elif p + "2.1.weight" in sd:
            h = ln(h.transpose(1, 2), p + "2.1").transpose(1, 2)
        h = F.gelu(h)
    h = ln(h.transpose(1, 2), "layer_norm")
    h = F.linear(h, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    v, gain = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    w = gain * v / v.norm(dim=(0, 1), keepdim=True)  # weight_norm with dim=2
    k = w.shape[-1]
    pos = F.conv1d(
        h.transpose(1, 2), w, sd["encoder.pos_conv.0.bias"], padding=k // 2,
        groups=cfg["num_conv_pos_embedding_groups"],
    )  # fmt: skip
    if k % 2 == 0:
        pos = pos[..., :-1]
    h = h + F.gelu(pos).transpose(1, 2)
    if not pre_ln:
        h = ln(h, "encoder.layer_norm")
    b, t, _ = h.shape
    hd = d // heads
    for j in range(cfg["num_hidden_layers"]):
        p = f"encoder.layers.{j}."

        def proj(z, name, p=p):
            return F.linear(z, sd[p + f"self_attn.{name}.weight"], sd[p + f"self_attn.{name}.bias"])

        def attn(z):
            q = (proj(z, "q_proj") * hd**-0.5).view(b, t, heads, hd).transpose(1, 2)
            kk = proj(z, "k_proj").view(b, t, heads, hd).transpose(1, 2)
            vv = proj(z, "v_proj").view(b, t, heads, hd).transpose(1, 2)
            a = torch.softmax(q @ kk.transpose(-1, -2), dim=-1) @ vv
            return proj(a.transpose(1, 2).reshape(b, t, d), "out_proj")

        def ffn(z, p=p):
            z = F.gelu(F.linear(z, sd[p + "fc1.weight"], sd[p + "fc1.bias"]))
            return F.linear(z, sd[p + "fc2.weight"], sd[p + "fc2.bias"])

        if pre_ln:
            h = h + attn(ln(h, p + "self_attn_layer_norm"))
            h = h + ffn(ln(h, p + "final_layer_norm"))
        else:
            h = ln(h + attn(h), p + "self_attn_layer_norm")
            h = ln(h + ffn(h), p + "final_layer_norm")
    return ln(h, "encoder.layer_norm") if pre_ln else h
