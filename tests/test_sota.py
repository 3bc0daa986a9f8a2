"""The published XLS-R detectors against the official back-ends run on fixed features
(``../shared/reference/sota/``): strict loading of the official state_dicts, outputs, scores
and every recorded intermediate; batch = items; the fairseq checkpoint layout converts."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import spoofscope  # noqa: E402
from spoofscope.models import load_model  # noqa: E402
from spoofscope.models.ssl import TINY_ENCODER  # noqa: E402

#: (golden prefix, registry name)
SYSTEMS = {
    "sls": "xlsr-sls",
    "mamba": "xlsr-mamba",
    "nes2net_x": "nes2net-x",
    "ssl_aasist": "ssl-aasist",
    "tcm": "xlsr-tcm",
}
#: an encoder as narrow as the tests allow but 1024 wide, as the official back-ends expect
WIDE_TINY = dict(
    TINY_ENCODER,
    hidden_size=1024,
    num_attention_heads=4,
    intermediate_size=64,
    num_conv_pos_embedding_groups=16,
)
#: the smallest encoder every back-end takes (Nes2Net-X splits the width into 8 x 8 groups)
TINY64 = dict(TINY_ENCODER, hidden_size=64)
BACKEND_PARAMS = {
    "sls": 23399429,
    "mamba": 1936950,
    "nes2net_x": 512039,
    "ssl_aasist": 447242,
    "tcm": 3822628,
}


@pytest.fixture(scope="module")
def sota_dir(reference_dir):
    return reference_dir / "sota"


def _official(sota_dir, system):
    """The model with the golden back-end weights (strict over the back-end keys)."""
    sd = torch.load(
        sota_dir / f"{system}_backend_seed0_fp16.pt", map_location="cpu", weights_only=True
    )
    keys = [ln.split("\t")[0] for ln in (sota_dir / f"{system}_keys.txt").read_text().splitlines()]
    assert list(sd) == keys
    torch.manual_seed(0)
    m = spoofscope.create_model(SYSTEMS[system], encoder_config=WIDE_TINY).eval()
    sd = spoofscope.models.get_entry(SYSTEMS[system]).convert(sd)  # SLS: the module. prefix
    own = m.state_dict()
    backend = [k for k in own if not k.startswith("ssl_model.")]
    assert sorted(backend) == sorted(sd), set(backend) ^ set(sd)
    for k, v in sd.items():
        assert own[k].shape == v.shape, k
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert unexpected == [] and all(k.startswith("ssl_model.") for k in missing)
    n = sum(p.numel() for n_, p in m.named_parameters() if not n_.startswith("ssl_model."))
    assert n == BACKEND_PARAMS[system]
    return m


def _cases(g):
    return sorted({k[len("input_") :] for k in g.files if k.startswith("input_")})


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_backend_reproduces_the_official_outputs_and_intermediates(system, sota_dir):
    g = np.load(sota_dir / f"{system}_golden.npz")
    m = _official(sota_dir, system)
    names = {k.rsplit("_b", 1)[0] for k in g.files} - {"input", "output", "score"}
    assert names, system
    worst = 0.0
    for case in _cases(g):
        inter: dict = {}
        with torch.no_grad():
            out, _ = m.backend(torch.from_numpy(g[f"input_{case}"]), inter)
        ref = g[f"output_{case}"]
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-4, rtol=0)
        np.testing.assert_allclose(out[:, 1].numpy(), g[f"score_{case}"], atol=1e-4, rtol=0)
        worst = max(worst, float(np.abs(out.numpy() - ref).max()))
        for name in names:
            ref = g[f"{name}_{case}"]
            got = inter[name].numpy()
            assert got.shape == ref.shape, (name, got.shape, ref.shape)
            # large intermediates: abs 1e-4 x max(1, |ref|) (the reference README's rule)
            tol = 1e-4 * np.maximum(1.0, np.abs(ref))
            assert np.all(np.abs(got - ref) <= tol), (name, float(np.abs(got - ref).max()))
    assert worst < 1e-4


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_batch_equals_items(system, sota_dir):
    g = np.load(sota_dir / f"{system}_golden.npz")
    m = _official(sota_dir, system)
    x = torch.from_numpy(g["input_b2_t201"])
    with torch.no_grad():
        batch = m.backend(x)[0]
        items = torch.cat([m.backend(x[i : i + 1])[0] for i in range(len(x))])
    torch.testing.assert_close(batch, items, atol=1e-5, rtol=0)


def test_sls_reads_the_layers_before_the_final_layer_norm():
    """XLSR-SLS consumes every layer's output before the encoder's final LayerNorm (fairseq's
    layer_results), not transformers' last hidden state."""
    torch.manual_seed(0)
    m = spoofscope.create_model("xlsr-sls", encoder_config=dict(TINY_ENCODER, num_hidden_layers=3))
    assert len(m.ssl_model(torch.randn(1, 64600))[0]) == 3  # training mode: no layer skipped
    m.eval()
    x = torch.randn(1, 64600) * 0.1
    with torch.no_grad():
        feats = m.ssl_model(x)
        out = m.ssl_model.encoder(x, output_hidden_states=True)
        ln = m.ssl_model.encoder.encoder.layer_norm
    assert feats.shape == (1, 3, 201, 32)
    torch.testing.assert_close(ln(feats[:, -1]), out.last_hidden_state)
    with pytest.raises(ValueError, match="takes 64400-65359 samples"):
        m(torch.randn(1, 66800))


@pytest.mark.parametrize("name", sorted(SYSTEMS.values()))
def test_published_checkpoint_layout_converts(name, tmp_path):
    """A checkpoint in the official layout (fairseq encoder keys ssl_model.model.*, back-end
    keys, DataParallel prefix, pre-training heads) loads through load_model with the back-end
    exactly as written. (What the encoder's keys become is tested once, against fairseq's own
    computation: test_ssl.test_fairseq_checkpoint_converts_to_what_fairseq_computes.)"""
    from test_ssl import fairseq_encoder

    torch.manual_seed(1)
    src = spoofscope.create_model(name, encoder_config=TINY64).eval()
    backend = {k: v for k, v in src.state_dict().items() if not k.startswith("ssl_model.")}
    enc = fairseq_encoder(TINY64, seed=5)
    fake = {"module." + k: v for k, v in {**enc, **backend}.items()}
    torch.save(fake, tmp_path / "official.pth")
    torch.manual_seed(2)
    dst = load_model(name, weights=tmp_path / "official.pth", encoder_config=TINY64)
    got = dst.state_dict()
    for k, v in backend.items():
        assert torch.equal(got[k], v), k
    masked = next(k for k in got if k.endswith("masked_spec_embed"))
    assert torch.equal(got[masked], enc["ssl_model.model.mask_emb"])
    # a key the converter does not know, and a missing back-end key: errors that name them
    from spoofscope.errors import WeightsError

    bad = dict(fake, **{"module.ssl_model.model.something_new": torch.zeros(1)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="something_new"):
        load_model(name, weights=tmp_path / "bad.pth", encoder_config=TINY64)
    gone = next(k for k in fake if not k.startswith("module.ssl_model."))
    torch.save({k: v for k, v in fake.items() if k != gone}, tmp_path / "short.pth")
    with pytest.raises(WeightsError, match="1 missing key"):
        load_model(name, weights=tmp_path / "short.pth", encoder_config=TINY64)


def test_weights_by_name_manual_hf_and_cache(tmp_path, monkeypatch):
    """Nothing is downloaded: manual weights say what to fetch and where; Hugging Face weights
    go through huggingface_hub (replaced here by a local file) into the cache; a file in the
    cache is used."""
    from safetensors.torch import save_file
    from test_ssl import fairseq_encoder

    from spoofscope.errors import WeightsError
    from spoofscope.models import weights_status

    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError) as e:
        load_model("xlsr-tcm", encoder_config=TINY64)
    msg = str(e.value)
    assert "'xlsr-tcm-df.pth'" in msg
    assert "sharepoint.com" in msg and str(tmp_path / "cache" / "xlsr-tcm-df.pth") in msg
    assert "--weights" in msg and weights_status("xlsr-tcm") == "manual"

    # the user puts the file where the message said: it is used (no sha256 published)
    def published(name, seed):
        """A checkpoint in the published layout, and the model the user's own copy of that
        file gives (--weights PATH): what the name must give too."""
        torch.manual_seed(seed)
        m = spoofscope.create_model(name, encoder_config=TINY64)
        sd = {k: v for k, v in m.state_dict().items() if not k.startswith("ssl_model.")}
        sd.update(fairseq_encoder(TINY64, seed=seed))
        own = tmp_path / f"{name}-own.pth"
        torch.save(sd, own)
        return sd, load_model(name, weights=own, encoder_config=TINY64)

    sd, src = published("xlsr-tcm", 3)
    (tmp_path / "cache").mkdir()
    torch.save(sd, tmp_path / "cache" / "xlsr-tcm-df.pth")
    got = load_model("xlsr-tcm:df", encoder_config=TINY64)
    assert got.source == "xlsr-tcm:df" and weights_status("xlsr-tcm") == "downloaded"
    x = torch.randn(1, 20000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(got(x)[0], src(x)[0], rtol=0, atol=0)

    # Hugging Face: the published repo and file name, through huggingface_hub
    sd, mamba = published("xlsr-mamba", 4)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, st)
    calls = []

    def fake_download(repo, filename, revision=None, cache_dir=None):
        calls.append((repo, filename))
        return str(st)

    import socket

    import huggingface_hub

    # the hub's host must answer a TCP connection before the client is asked (offline, the
    # error comes at once): a listening socket on this machine stands in for it
    hub = socket.socket()
    hub.bind(("127.0.0.1", 0))
    hub.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = load_model("xlsr-mamba:la", encoder_config=TINY64)
    assert calls == [("AustinXiao/XLSR-Mamba-LA", "model.safetensors")]
    with torch.no_grad():
        torch.testing.assert_close(got(x)[0], mamba(x)[0], rtol=0, atol=0)
    assert weights_status("xlsr-mamba", "la") == "downloaded"

    def offline(*a, **k):
        raise OSError("We have no connection to the Hub (HF_HUB_OFFLINE=1)")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsError) as e:
        load_model("xlsr-mamba:df", encoder_config=TINY64)
    assert "AustinXiao/XLSR-Mamba-DF" in str(e.value) and "by hand" in str(e.value)
    # the host gone: the error comes from the connection check, without the client's retries
    hub.close()
    calls.clear()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(WeightsError) as e:
        load_model("xlsr-mamba:df", encoder_config=TINY64)
    assert "no connection to 127.0.0.1" in str(e.value) and "by hand" in str(e.value)
    assert calls == []


def test_detector_scores_a_zoo_model_with_its_window(tmp_path):
    """Sliding windows of the card's length over a long file, batched, for an XLS-R model."""
    import soundfile as sf

    from spoofscope.infer import Detector, Limits

    torch.manual_seed(0)
    m = spoofscope.create_model("xlsr-tcm", encoder_config=TINY64).eval()
    x = (np.random.default_rng(0).standard_normal(16000 * 20) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.flac", x, 16000)
    r = Detector(m, limits=Limits(batch_size=4))(tmp_path / "a.flac")
    assert r.error is None and r.window_samples == 66800
    # starts 0, 2, ..., 14 s (14 + 4.175 <= 20) and a last window ending at 20 s
    assert [w["start_s"] for w in r.windows] == pytest.approx([*range(0, 16, 2), 20 - 4.175])
    with torch.no_grad():
        first = m(torch.from_numpy(x[:66800])[None])[0][0, 1].item()
    assert r.windows[0]["score"] == pytest.approx(first, abs=1e-4)


def test_int8_feed_forward_path_quantises_only_the_encoder_ffn():
    from spoofscope.models.ssl import quantize_feed_forward

    torch.manual_seed(0)
    m = spoofscope.create_model("xlsr-tcm", encoder_config=TINY64).eval()
    q = quantize_feed_forward(m)
    layer, orig = q.ssl_model.encoder.encoder.layers[0], m.ssl_model.encoder.encoder.layers[0]
    assert type(layer.feed_forward.intermediate_dense) is not torch.nn.Linear  # int8
    assert type(layer.feed_forward.output_dense) is not torch.nn.Linear
    # attention, back-end and the original model stay fp32
    assert type(layer.attention.q_proj) is torch.nn.Linear and type(q.LL) is torch.nn.Linear
    assert type(orig.feed_forward.intermediate_dense) is torch.nn.Linear
    x = torch.randn(2, 20000) * 0.1
    with torch.no_grad():
        diff = (q(x)[0] - m(x)[0]).abs().max().item()
    assert 0 < diff < 1e-2


def test_nes2net_refuses_an_encoder_it_cannot_split():
    """Nes2Net-X splits the encoder width into 8 groups, each a Res2Net of 8 branches: a width
    that is not a multiple of 64 leaves empty branches; the error names the width and the rule."""
    from spoofscope.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of 64.*32"):
        spoofscope.create_model("nes2net-x", encoder_config=TINY_ENCODER)
    m = spoofscope.create_model("nes2net-x", encoder_config=dict(TINY_ENCODER, hidden_size=128))
    assert m.embedding_dim == 128
