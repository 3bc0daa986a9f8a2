"""SSL front-ends with a tiny random encoder, fully offline."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import spoofscope  # noqa: E402
from spoofscope.errors import WeightsError  # noqa: E402
from spoofscope.models import load_checkpoint, save_checkpoint  # noqa: E402
from spoofscope.models.ssl import TINY_ENCODER, convert_fairseq_ssl_aasist  # noqa: E402


def _x(n=2, length=16000, seed=0):
    return torch.from_numpy(
        (np.random.default_rng(seed).standard_normal((n, length)) * 0.1).astype(np.float32)
    )


@pytest.mark.parametrize("kind", ["wav2vec2", "wavlm", "hubert"])
def test_encoder_families(kind):
    cfg = dict(TINY_ENCODER, model_type=kind)
    if kind != "wav2vec2":
        cfg.pop("do_stable_layer_norm")
    m = spoofscope.create_model("ssl-aasist", encoder_config=cfg).eval()
    assert type(m.ssl_model.encoder).__name__.lower().startswith(kind)
    with torch.no_grad():
        logits, emb = m(_x())
    assert logits.shape == (2, 2) and emb.shape == (2, 160)


def test_layer_selection_matches_hidden_states():
    torch.manual_seed(0)
    m = spoofscope.create_model("ssl-linear", encoder_config=TINY_ENCODER, layers=1).eval()
    x = _x(1)
    with torch.no_grad():
        hs = m.ssl_model.encoder(x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(m.ssl_model(x), hs[1])
    w = spoofscope.create_model("ssl-linear", encoder_config=TINY_ENCODER, layers="weighted").eval()
    w.ssl_model.encoder.load_state_dict(m.ssl_model.encoder.state_dict())
    with torch.no_grad():
        w.ssl_model.layer_weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
        expect = sum(
            p * h for p, h in zip(torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0), hs, strict=True)
        )
        torch.testing.assert_close(w.ssl_model(x), expect)
    with pytest.raises(ValueError, match="layers must be"):
        spoofscope.create_model("ssl-linear", encoder_config=TINY_ENCODER, layers=7)


@pytest.mark.parametrize(
    "freeze,frozen_prefixes",
    [
        ("all", ["ssl_model.encoder."]),
        ("feature_extractor", ["ssl_model.encoder.feature_extractor."]),
        (
            1,
            [
                "ssl_model.encoder.feature_extractor.",
                "ssl_model.encoder.feature_projection.",
                "ssl_model.encoder.encoder.layers.0.",
            ],
        ),
    ],
)
def test_frozen_weights_do_not_change(freeze, frozen_prefixes):
    torch.manual_seed(0)
    m = spoofscope.create_model("ssl-aasist", encoder_config=TINY_ENCODER, freeze=freeze).train()
    before = {k: v.clone() for k, v in m.named_parameters()}
    groups = m.optimizer_groups(1e-2, frontend_lr=1e-3)
    opt = torch.optim.Adam(groups)
    for _ in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(_x(4))[0], torch.tensor([0, 1, 0, 1]))
        loss.backward()
        opt.step()
    for k, v in m.named_parameters():
        frozen = any(k.startswith(p) for p in frozen_prefixes)
        if frozen:
            assert torch.equal(v, before[k]), k
    assert not torch.equal(m.out_layer.weight, before["out_layer.weight"])
    if freeze != "all":  # the trainable part of the front-end has its own learning rate
        assert groups[1]["lr"] == 1e-3 and groups[0]["lr"] == 1e-2
        changed = [
            k
            for k, v in m.named_parameters()
            if k.startswith("ssl_model.") and not torch.equal(v, before[k])
        ]
        assert changed


def test_save_load_round_trip_with_encoder_config(tmp_path):
    torch.manual_seed(0)
    cfg = dict(TINY_ENCODER, num_hidden_layers=3)
    m = spoofscope.create_model("ssl-aasist", encoder_config=cfg, layers="weighted").eval()
    p = save_checkpoint(m, tmp_path / "ssl.ckpt")
    m2, _ = load_checkpoint(p)
    x = _x(2, 20000)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0], m2(x)[0], rtol=0, atol=0)


#: a tiny encoder of XLS-R's kind: convolutions with biases and layer norm, pre-LN transformer
TINY_XLSR = dict(TINY_ENCODER, conv_bias=True, hidden_act="gelu", layer_norm_eps=1e-5)


def fairseq_encoder(cfg: dict, seed: int = 0) -> dict:
    """The state_dict keys of fairseq's ``Wav2Vec2Model`` (``wav2vec2.py``: extractor mode
    layer_norm, conv_bias, layer_norm_first) for ``cfg``, written out from that definition
    (not from our converter), with seeded random values, under ``ssl_model.model.`` as the
    published detectors save them; plus the pre-training heads they also carry."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, around=0.0):
        return around + 0.2 * torch.randn(*shape, generator=g)

    d, ffn, dims = cfg["hidden_size"], cfg["intermediate_size"], cfg["conv_dim"]
    k_pos, groups = cfg["num_conv_pos_embeddings"], cfg["num_conv_pos_embedding_groups"]
    sd = {"mask_emb": r(d)}
    c_in = 1
    for i, (c, k) in enumerate(zip(dims, cfg["conv_kernel"], strict=True)):
        # nn.Sequential(Conv1d, Dropout, nn.Sequential(TransposeLast, LayerNorm, TransposeLast), GELU)
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = r(c, c_in, k) / k**0.5
        if cfg.get("conv_bias"):
            sd[f"feature_extractor.conv_layers.{i}.0.bias"] = r(c)
        sd[f"feature_extractor.conv_layers.{i}.2.1.weight"] = r(c, around=1.0)
        sd[f"feature_extractor.conv_layers.{i}.2.1.bias"] = r(c)
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
    sd["quantizer.vars"] = r(1, 640, 384)
    sd["quantizer.weight_proj.weight"], sd["quantizer.weight_proj.bias"] = r(640, c_in), r(640)
    sd["project_q.weight"], sd["project_q.bias"] = r(256, 384), r(256)
    sd["final_proj.weight"], sd["final_proj.bias"] = r(256, d), r(256)
    return {"ssl_model.model." + k: v for k, v in sd.items()}


def fairseq_forward(sd: dict, x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """fairseq's ``Wav2Vec2Model.forward(x, features_only=True)["x"]`` for that layout, written
    from its definition: conv blocks (conv, layer norm over channels, GELU), feature layer norm,
    projection, x + GELU(same-padded weight-normed grouped conv), pre-LN transformer layers
    (q scaled by head_dim^-0.5), final layer norm."""
    import torch.nn.functional as F

    sd = {k.removeprefix("ssl_model.model."): v for k, v in sd.items()}
    eps, d, heads = 1e-5, cfg["hidden_size"], cfg["num_attention_heads"]

    def ln(h, name):
        return F.layer_norm(h, h.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)

    h = x[:, None]
    for i, stride in enumerate(cfg["conv_stride"]):
        p = f"feature_extractor.conv_layers.{i}."
        h = F.conv1d(h, sd[p + "0.weight"], sd.get(p + "0.bias"), stride=stride)
        h = F.gelu(ln(h.transpose(1, 2), p + "2.1").transpose(1, 2))
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
    b, t, _ = h.shape
    hd = d // heads
    for j in range(cfg["num_hidden_layers"]):
        p = f"encoder.layers.{j}."

        def proj(z, name, p=p):
            return F.linear(z, sd[p + f"self_attn.{name}.weight"], sd[p + f"self_attn.{name}.bias"])

        z = ln(h, p + "self_attn_layer_norm")
        q = (proj(z, "q_proj") * hd**-0.5).view(b, t, heads, hd).transpose(1, 2)
        kk = proj(z, "k_proj").view(b, t, heads, hd).transpose(1, 2)
        vv = proj(z, "v_proj").view(b, t, heads, hd).transpose(1, 2)
        att = torch.softmax(q @ kk.transpose(-1, -2), dim=-1) @ vv
        h = h + proj(att.transpose(1, 2).reshape(b, t, d), "out_proj")
        z = ln(h, p + "final_layer_norm")
        z = F.linear(F.gelu(F.linear(z, sd[p + "fc1.weight"], sd[p + "fc1.bias"])),
                     sd[p + "fc2.weight"], sd[p + "fc2.bias"])  # fmt: skip
        h = h + z
    return ln(h, "encoder.layer_norm")


def test_fairseq_checkpoint_converts_to_what_fairseq_computes(tmp_path):
    """A published-layout checkpoint (fairseq encoder keys written out from fairseq's model
    definition, the back-end's own keys, a DataParallel prefix, pre-training heads) loads
    strictly, and the converted encoder computes what fairseq's definition computes with those
    tensors: a key sent to the wrong place (q for k, fc1 for fc2, a layer norm for another)
    changes the output."""
    torch.manual_seed(1)
    src = spoofscope.create_model("ssl-aasist", encoder_config=TINY_XLSR).eval()
    backend = {k: v for k, v in src.state_dict().items() if not k.startswith("ssl_model.")}
    encoder = fairseq_encoder(TINY_XLSR, seed=3)
    ckpt = {"module." + k: v for k, v in {**encoder, **backend}.items()}
    torch.save(ckpt, tmp_path / "LA_model.pth")
    converted, dropped = convert_fairseq_ssl_aasist(
        torch.load(tmp_path / "LA_model.pth", weights_only=True)
    )
    assert sorted(dropped) == sorted(
        k for k in encoder if k.split(".")[2] in ("quantizer", "project_q", "final_proj")
    )
    m = spoofscope.load_model(
        "ssl-aasist", weights=tmp_path / "LA_model.pth", encoder_config=TINY_XLSR
    )
    for k, v in backend.items():  # the back-end keeps its names
        assert torch.equal(m.state_dict()[k], v), k
    x = _x(2, 8000)
    with torch.no_grad():
        got = m.ssl_model.encoder(x).last_hidden_state
        want = fairseq_forward(encoder, x, TINY_XLSR)
    assert got.shape == want.shape == (2, 24, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    with pytest.raises(WeightsError, match="unknown front-end key"):
        convert_fairseq_ssl_aasist({"ssl_model.model.something_new": torch.zeros(1)})


def test_training_recipe_loads(tmp_path):
    from pathlib import Path

    from spoofscope.train import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/ssl-aasist.yaml")
    assert cfg.model == "ssl-aasist" and cfg.grad_accum_steps > 1
    assert cfg.optimizer.lr == 1e-6 and cfg.batch_size * cfg.grad_accum_steps == 14
    assert cfg.augment[0]["name"] == "rawboost"
