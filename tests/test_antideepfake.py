"""AntiDeepfake (Ge et al., 2025): the authors' checkpoint layout converts and computes what
their fairseq model computes; parameter counts of the published architectures."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from _fairseq_reference import fairseq_forward, fairseq_keys  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.errors import WeightsError  # noqa: E402
from spoofscope.models import antideepfake as ad  # noqa: E402

_BASE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[16] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    hidden_act="gelu",
    feat_extract_activation="gelu",
    layer_norm_eps=1e-5,
)
#: a tiny configuration of each architecture family the authors publish
TINY = {
    # wav2vec 2.0 base: group norm on the first convolution, no conv biases, post-LN
    "w2v-small": dict(
        _BASE, model_type="wav2vec2", feat_extract_norm="group", conv_bias=False,
        do_stable_layer_norm=False,
    ),
    # large / MMS / XLS-R: layer-norm extractor with biases, pre-LN
    "mms-300m": dict(
        _BASE, model_type="wav2vec2", feat_extract_norm="layer", conv_bias=True,
        do_stable_layer_norm=True,
    ),
    # HuBERT XL: layer-norm extractor without biases, pre-LN
    "hubert-xl": dict(
        _BASE, model_type="hubert", feat_extract_norm="layer", conv_bias=False,
        do_stable_layer_norm=True, feat_proj_layer_norm=True,
    ),
}  # fmt: skip


def _fairseq_layout(cfg: dict, seed: int) -> dict:
    """The authors' checkpoint for ``cfg``: fairseq encoder keys (and the pre-training heads)
    under ``m_ssl.model.``, written from fairseq's definitions, and ``proj_fc``."""
    out = {"m_ssl.model." + k: v for k, v in fairseq_keys(cfg, seed).items()}
    g = torch.Generator().manual_seed(seed + 100)
    d = cfg["hidden_size"]
    out["proj_fc.weight"] = 0.2 * torch.randn(2, d, generator=g)
    out["proj_fc.bias"] = 0.2 * torch.randn(2, generator=g)
    return out


def _authors_forward(sd: dict, wav: torch.Tensor, cfg: dict, frames=False) -> torch.Tensor:
    """The authors' ``Model.forward``: ``layer_norm(wav, wav.shape)`` per file, fairseq's
    ``features_only`` forward, then ``proj_fc`` on the mean over frames (or on each frame)."""
    enc = {k.removeprefix("m_ssl.model."): v for k, v in sd.items()}
    x = torch.stack([F.layer_norm(w, w.shape) for w in wav])
    h = fairseq_forward(enc, x, cfg)
    if not frames:
        h = h.mean(1)
    return F.linear(h, sd["proj_fc.weight"], sd["proj_fc.bias"])


def _wav(n=2, length=8000, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.standard_normal((n, length)) * 0.1 + 0.02).astype(np.float32))


@pytest.mark.parametrize("variant", sorted(TINY))
@pytest.mark.parametrize(
    "layout", ["hub", "zenodo", "wrapped"], ids=["safetensors", "ckpt", "module-prefix"]
)
def test_authors_checkpoint_gives_the_authors_scores(tmp_path, variant, layout):
    """A checkpoint in each layout the authors publish (and a DataParallel-wrapped one) loads
    strictly and gives the scores of the authors' model computed from fairseq's definitions;
    the pre-training heads are dropped."""
    cfg = TINY[variant]
    sd = _fairseq_layout(cfg, seed=len(variant))
    if layout == "hub":
        from safetensors.torch import save_file

        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif layout == "zenodo":  # SpeechBrain-era .ckpt: a dict with the model's state_dict
        path = tmp_path / "w2v.ckpt"
        torch.save({"model": sd}, path)
    else:
        path = tmp_path / "wrapped.pth"
        torch.save({"module." + k: v for k, v in sd.items()}, path)
    m = spoofscope.load_model(f"antideepfake-{variant}", weights=path, encoder_config=cfg)
    x = _wav()
    with torch.no_grad():
        got, emb = m(x)
        want = _authors_forward(sd, x, cfg)
        got_frames = m.frame_logits(x)
        want_frames = _authors_forward(sd, x, cfg, frames=True)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    torch.testing.assert_close(got_frames, want_frames, rtol=0, atol=1e-4)
    assert got_frames.shape == (2, 24, 2)  # 8,000 samples: (8000 - 400) // 320 + 1 frames
    # the window's logits are the mean of the 20-ms frame logits (a Linear over a mean)
    torch.testing.assert_close(got_frames.mean(1), got, rtol=0, atol=1e-5)
    assert emb.shape == (2, cfg["hidden_size"])


def test_a_wrong_key_is_named(tmp_path):
    cfg = TINY["mms-300m"]
    sd = _fairseq_layout(cfg, seed=1)
    sd["m_ssl.model.encoder.layers.0.adapter.weight"] = torch.zeros(3)
    del sd["proj_fc.bias"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as e:
        spoofscope.load_model("antideepfake-mms-300m", weights=tmp_path / "bad.pth",
                              encoder_config=cfg)  # fmt: skip
    msg = str(e.value)
    assert "proj_fc.bias" in msg and "encoder.layers.0.adapter.weight" in msg
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="does not fit antideepfake-mms-300m"):
        spoofscope.load_model("antideepfake-mms-300m", weights=tmp_path / "other.pth",
                              encoder_config=cfg)  # fmt: skip


def _encoder_params(cfg: dict) -> int:
    """Parameters of the encoder a detector uses, counted from the architecture: CNN (+ its
    norms), feature LayerNorm + projection, mask embedding, positional convolution (weight
    norm: g of K values, v), encoder LayerNorm, transformer layers."""
    d, ffn, dims, ks = (cfg[k] for k in ("hidden_size", "intermediate_size", "conv_dim",
                                          "conv_kernel"))  # fmt: skip
    n, c_in = 0, 1
    for i, (c, k) in enumerate(zip(dims, ks, strict=True)):
        n += c * c_in * k + (c if cfg["conv_bias"] else 0)
        if cfg["feat_extract_norm"] == "layer" or i == 0:
            n += 2 * c
        c_in = c
    n += 2 * c_in + c_in * d + d  # feature LayerNorm, projection
    n += d  # mask embedding
    k_pos = cfg["num_conv_pos_embeddings"]
    n += k_pos + d * (d // cfg["num_conv_pos_embedding_groups"]) * k_pos + d
    n += 2 * d
    per_layer = 4 * (d * d + d) + 2 * (2 * d) + (d * ffn + ffn) + (ffn * d + d)
    return n + cfg["num_hidden_layers"] * per_layer


def _pretraining_heads(variant: str, cfg: dict) -> int:
    """What the authors' fairseq model also holds (from their configurations)."""
    d, final = cfg["hidden_size"], ad.FINAL_DIM[variant]
    if cfg["model_type"] == "hubert":  # label_embs_concat (504 x final_dim), final_proj
        return 504 * final + d * final + final
    # quantiser codewords (2 groups x 320 of final_dim / 2), its projection from the CNN's
    # 512 channels, project_q, final_proj
    return 640 * (final // 2) + 512 * 640 + 640 + final * final + final + d * final + final


#: the authors' README: parameters of each published model
PUBLISHED = {
    "w2v-small": 95e6,
    "w2v-large": 317e6,
    "mms-300m": 317e6,
    "mms-1b": 965e6,
    "xls-r-1b": 965e6,
    "xls-r-2b": 2.2e9,
    "hubert-xl": 964e6,
}


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_parameter_counts_equal_the_published_ones(variant):
    """Built on the meta device (no memory): our model = the encoder counted from the
    architecture + proj_fc, and adding the pre-training heads the authors' fairseq model
    carries gives the published size (to its published precision)."""
    with torch.device("meta"):
        m = spoofscope.create_model(f"antideepfake-{variant}")
    ours = sum(p.numel() for p in m.parameters())
    cfg = ad.ARCHITECTURES[variant]
    assert ours == _encoder_params(cfg) + 2 * cfg["hidden_size"] + 2
    official = ours + _pretraining_heads(variant, cfg)
    # the README gives whole millions ("95M", "965M") or tenths of a billion ("2.2B"): the
    # count lies within one such unit (their figures truncate or round)
    unit = 1e8 if PUBLISHED[variant] >= 1e9 else 1e6
    assert abs(official - PUBLISHED[variant]) < unit, official


def test_cards_name_the_weights_and_the_licence():
    for variant in PUBLISHED:
        card = spoofscope.models.get_card(f"antideepfake-{variant}")
        assert set(card.weights) == {"da", "nda"} and card.default_tag == "da"
        da, nda = card.weights["da"], card.weights["nda"]
        assert da.hf_repo.startswith("nii-yamagishilab/") and nda.hf_repo == da.hf_repo + "-nda"
        assert card.licence_class == "non-commercial"
        assert card.localisation == "frame" and card.notes


def test_models_lists_each_licence_class(capsys):
    from spoofscope.cli import main

    assert main(["models", "--json"]) == 0
    rows = {
        r["name"]: r
        for r in map(__import__("json").loads, capsys.readouterr().out.split("\n")[:-1])
    }
    assert rows["antideepfake-w2v-small"]["licence_class"] == "non-commercial"
    assert rows["antideepfake-w2v-small"]["parameters"] == 94_373_250
    assert rows["aasist"]["licence_class"] == "permissive"
    assert rows["xlsr-sls"]["licence_class"] == "none stated"
    assert "2019 LA" in rows["aasist"]["notes"]
