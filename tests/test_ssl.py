"""SSL front-ends with a tiny random encoder, fully offline."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from _fairseq_reference import fairseq_forward, fairseq_keys  # noqa: E402

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
    """fairseq's encoder keys for ``cfg`` (written from its definition, not from our converter)
    under ``ssl_model.model.``, as the published detectors save them, with the pre-training
    heads they also carry."""
    return {"ssl_model.model." + k: v for k, v in fairseq_keys(cfg, seed).items()}


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
        want = fairseq_forward(
            {k.removeprefix("ssl_model.model."): v for k, v in encoder.items()}, x, TINY_XLSR
        )
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
