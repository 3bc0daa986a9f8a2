"""SSL front-ends with a tiny random encoder, fully offline."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import spoofscope  # noqa: E402
from spoofscope.errors import WeightsError  # noqa: E402
from spoofscope.models import load_checkpoint, save_checkpoint  # noqa: E402
from spoofscope.models.ssl import FAIRSEQ_KEY_MAP, TINY_ENCODER, convert_fairseq_ssl_aasist  # noqa: E402,E501


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


def _fairseq_layout(ours: dict) -> dict:
    """Rename our keys into the fairseq SSL-AASIST layout (the inverse of the converter), as a
    published checkpoint would have them, plus pre-training heads it would also carry."""
    import re

    inverse = {
        r"ssl_model\.encoder\.masked_spec_embed": "ssl_model.model.mask_emb",
        r"ssl_model\.encoder\.feature_extractor\.conv_layers\.(\d+)\.conv\.weight": r"ssl_model.model.feature_extractor.conv_layers.\1.0.weight",
        r"ssl_model\.encoder\.feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)": r"ssl_model.model.feature_extractor.conv_layers.\1.2.1.\2",
        r"ssl_model\.encoder\.feature_projection\.layer_norm\.(weight|bias)": r"ssl_model.model.layer_norm.\1",
        r"ssl_model\.encoder\.feature_projection\.projection\.(weight|bias)": r"ssl_model.model.post_extract_proj.\1",
        r"ssl_model\.encoder\.encoder\.pos_conv_embed\.conv\.bias": "ssl_model.model.encoder.pos_conv.0.bias",
        r"ssl_model\.encoder\.encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0": "ssl_model.model.encoder.pos_conv.0.weight_g",
        r"ssl_model\.encoder\.encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1": "ssl_model.model.encoder.pos_conv.0.weight_v",
        r"ssl_model\.encoder\.encoder\.layer_norm\.(weight|bias)": r"ssl_model.model.encoder.layer_norm.\1",
        r"ssl_model\.encoder\.encoder\.layers\.(\d+)\.attention\.(k|v|q|out)_proj\.(weight|bias)": r"ssl_model.model.encoder.layers.\1.self_attn.\2_proj.\3",
        r"ssl_model\.encoder\.encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)": r"ssl_model.model.encoder.layers.\1.self_attn_layer_norm.\2",
        r"ssl_model\.encoder\.encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)": r"ssl_model.model.encoder.layers.\1.fc1.\2",
        r"ssl_model\.encoder\.encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)": r"ssl_model.model.encoder.layers.\1.fc2.\2",
        r"ssl_model\.encoder\.encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)": r"ssl_model.model.encoder.layers.\1.final_layer_norm.\2",
    }
    out = {}
    for k, v in ours.items():
        for pat, rep in inverse.items():
            if re.fullmatch(pat, k):
                k = re.sub(pat, rep, k)
                break
        else:
            assert not k.startswith("ssl_model."), k
        out["module." + k] = v.clone()
    out["module.ssl_model.model.quantizer.vars"] = torch.randn(1, 640, 384)
    out["module.ssl_model.model.project_q.weight"] = torch.randn(768, 768)
    return out


def test_converter_loads_a_fairseq_layout_checkpoint(tmp_path):
    torch.manual_seed(1)
    src = spoofscope.create_model("ssl-aasist", encoder_config=TINY_ENCODER).eval()
    fake = _fairseq_layout(src.state_dict())
    assert any(".self_attn.k_proj." in k for k in fake)
    assert any(k.endswith("pos_conv.0.weight_g") for k in fake)
    torch.save(fake, tmp_path / "LA_model.pth")
    loaded = torch.load(tmp_path / "LA_model.pth", weights_only=True)
    converted, dropped = convert_fairseq_ssl_aasist(loaded)
    assert sorted(dropped) == ["ssl_model.model.project_q.weight", "ssl_model.model.quantizer.vars"]
    torch.manual_seed(2)
    dst = spoofscope.create_model("ssl-aasist", encoder_config=TINY_ENCODER).eval()
    dst.load_state_dict(converted, strict=True)
    x = _x(2)
    with torch.no_grad():
        torch.testing.assert_close(dst(x)[0], src(x)[0], rtol=0, atol=0)
    with pytest.raises(WeightsError, match="unknown front-end key"):
        convert_fairseq_ssl_aasist({"ssl_model.model.something_new": torch.zeros(1)})
    assert len(FAIRSEQ_KEY_MAP) >= 10


@pytest.mark.parametrize("name", ["ssl-linear", "ssl-aasist"])
def test_onnx_export_and_detector(name, tmp_path):
    from spoofscope.export import check_onnx, export_onnx
    from spoofscope.infer import Detector, OnnxEngine, WindowPolicy

    torch.manual_seed(0)
    m = spoofscope.create_model(name, encoder_config=TINY_ENCODER).eval()
    path = export_onnx(m, tmp_path / f"{name}.onnx")
    x = _x(2, 64600).numpy()
    assert check_onnx(m, path, x, atol=1e-3) <= 1e-3
    if name == "ssl-linear":  # dynamic length
        assert check_onnx(m, path, _x(1, 30000).numpy(), atol=1e-3) <= 1e-3
    det = Detector(OnnxEngine(m, path), windows=WindowPolicy(kind="official"))
    r = det(x[0])
    with torch.no_grad():
        assert r.score == pytest.approx(m(torch.from_numpy(x[:1]))[0][0, 1].item(), abs=1e-3)


def test_training_recipe_loads_and_trains_with_accumulation(tmp_path):
    from pathlib import Path

    from spoofscope.train import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/ssl-aasist.yaml")
    assert cfg.model == "ssl-aasist" and cfg.grad_accum_steps > 1
    assert cfg.optimizer.lr == 1e-6 and cfg.batch_size * cfg.grad_accum_steps == 14
    assert cfg.augment[0]["name"] == "rawboost"
