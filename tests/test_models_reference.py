"""Our models and features against the golden outputs of the official implementations."""

import json

import numpy as np
import pytest
import torch

from spoofscope import create_model
from spoofscope.features import cq_log_power, cqcc, dct_matrix, lfcc, lfcc_filterbank
from spoofscope.models import load_model
from spoofscope.models.aasist import AASISTConfig

TOL = 1e-4
AASIST_FILES = {
    "AASIST": ("aasist", "official_AASIST.pth", "aasist_config.json"),
    "AASIST-L": ("aasist-l", "official_AASIST-L.pth", "aasist_l_config.json"),
}


def _keys(reference_dir, fname):
    return [line.split("\t")[0] for line in (reference_dir / fname).read_text().splitlines()]


@pytest.fixture(scope="module", params=list(AASIST_FILES))
def official_aasist(request, reference_dir):
    tag = request.param
    name, weights, conf = AASIST_FILES[tag]
    model = load_model(name, weights=reference_dir / weights)
    return tag, model, reference_dir


def test_aasist_loads_strict_with_official_keys_and_counts(official_aasist):
    tag, model, ref = official_aasist
    assert list(model.state_dict()) == _keys(ref, f"state_dict_keys_{tag}.txt")
    n = sum(p.numel() for p in model.parameters())
    assert n == {"AASIST": 297866, "AASIST-L": 85306}[tag]
    assert (
        n
        == json.loads((ref / "model_info.json").read_text())["parameter_counts_official_get_model"][
            tag
        ]
    )
    assert model.min_length == 2315


def test_aasist_golden_logits_hidden_and_intermediates(official_aasist, golden):
    tag, model, _ = official_aasist
    with torch.no_grad():
        for i in range(6):
            x = torch.from_numpy(golden[f"input_{i}"])[None]
            logits, hidden = model(x)
            np.testing.assert_allclose(logits[0].numpy(), golden[f"{tag}_logits_{i}"], atol=TOL)
            np.testing.assert_allclose(hidden[0].numpy(), golden[f"{tag}_hidden_{i}"], atol=TOL)
        xb = torch.from_numpy(np.stack([golden[f"input_{i}"] for i in range(4)]))
        logits, hidden = model(xb)
        np.testing.assert_allclose(logits.numpy(), golden[f"{tag}_batch_logits"], atol=TOL)
        np.testing.assert_allclose(hidden.numpy(), golden[f"{tag}_batch_hidden"], atol=TOL)
        e = model.encode(torch.from_numpy(golden["input_0"])[None])
        np.testing.assert_allclose(e.numpy(), golden[f"{tag}_debug_encoder_out_0"], atol=TOL)
    np.testing.assert_allclose(
        model.conv_time.band_pass.numpy(), golden[f"{tag}_sinc_band_pass"], atol=1e-6
    )


def test_aasist_rejects_short_input(official_aasist):
    _, model, _ = official_aasist
    model(torch.zeros(1, 2315))
    with pytest.raises(ValueError, match="at least 2315 samples"):
        model(torch.zeros(1, 2314))


def test_aasist_accepts_official_configs(reference_dir, tmp_path):
    mc = json.loads((reference_dir / "aasist_l_config.json").read_text())
    assert AASISTConfig.from_official(mc) == AASISTConfig.from_official(
        reference_dir / "aasist_l_config.json"
    )
    # a whole official .conf: model_config nested, freq_aug as a string
    conf = {
        "database_path": "./LA/",
        "batch_size": 24,
        "num_epochs": 100,
        "model_config": mc,
        "freq_aug": "True",
    }
    (tmp_path / "AASIST-L.conf").write_text(json.dumps(conf))
    cfg = AASISTConfig.from_official(tmp_path / "AASIST-L.conf")
    assert cfg.gat_dims == [24, 32] and cfg.freq_aug is True
    from spoofscope.models import AASIST

    assert sum(p.numel() for p in AASIST(cfg).parameters()) == 85306
    # the registry takes an official model_config as is
    import spoofscope

    assert sum(p.numel() for p in spoofscope.create_model("aasist", **mc).parameters()) == 85306
    with pytest.raises(ValueError, match="unknown keys"):
        AASISTConfig.from_official({**mc, "bogus": 1})


def test_aasist_freq_aug_only_in_training(reference_dir, golden):
    model = load_model("aasist", weights=reference_dir / "official_AASIST.pth", freq_aug=True)
    x = torch.from_numpy(golden["input_0"])[None]
    with torch.no_grad():
        # eval: masking off even with freq_aug=True in the config
        np.testing.assert_allclose(model(x)[0][0].numpy(), golden["AASIST_logits_0"], atol=TOL)
        model.train()
        torch.manual_seed(3)
        outs = [model.encode(x) for _ in range(4)]
        model.train(False)
    # some filters were zeroed: the encoder input differs between draws
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_rawnet2_small_golden(reference_dir, golden):
    arch = json.loads((reference_dir / "arch_golden.json").read_text())
    g = np.load(reference_dir / "rawnet2_small_golden.npz")
    cfg = {
        "first_conv": 251,
        "filts": [20, [20, 20], [20, 32], [32, 32]],
        "nb_fc_node": 48,
        "gru_node": 64,
        "nb_gru_layer": 2,
        "blocks": [2, 4],
        "nb_classes": 2,
    }
    model = create_model("rawnet2", **cfg)
    sd = torch.load(reference_dir / "rawnet2_small_seed0.pth", weights_only=True)
    model.load_state_dict(sd, strict=True)
    model.eval()
    assert list(model.state_dict()) == _keys(reference_dir, "state_dict_keys_rawnet2_small.txt")
    assert sum(p.numel() for p in model.parameters()) == 82002
    with torch.no_grad():
        for i in range(6):
            out, _ = model(torch.from_numpy(golden[f"input_{i}"])[None])
            np.testing.assert_allclose(out[0].numpy(), g[f"out_{i}"], atol=TOL)
        xb = torch.from_numpy(np.stack([golden[f"input_{i}"] for i in range(4)]))
        np.testing.assert_allclose(model(xb)[0].numpy(), g["batch_out"], atol=TOL)
        for i in (0, 4):
            x = torch.from_numpy(golden[f"input_{i}"])[None]
            # the golden "first_bn_out" was taken by a hook on first_bn, whose output the
            # official in-place SELU then overwrote: it holds SELU(first_bn(x))
            h = torch.nn.functional.selu(model.frontend(x))
            np.testing.assert_allclose(h[0].numpy(), g[f"debug_first_bn_out_{i}"], atol=TOL)
            b0 = model.block0(h)
            np.testing.assert_allclose(b0[0].numpy(), g[f"debug_block0_out_{i}"], atol=TOL)
            _, emb = model(x)
            np.testing.assert_allclose(emb[0].numpy(), g[f"debug_fc1_out_{i}"], atol=TOL)
    full = create_model("rawnet2")
    assert sum(p.numel() for p in full.parameters()) == 17621410
    assert (
        sum(p.numel() for p in full.parameters())
        == arch["rawnet2_2021"]["params_sum_model_parameters"]
    )
    assert full.min_length == arch["rawnet2_2021"]["min_length"] == 3211
    assert [k for k in full.state_dict()] == _keys(
        reference_dir, "state_dict_keys_rawnet2_2021.txt"
    )


def test_rawnet2_sinc_and_front_end(reference_dir, golden):
    a = np.load(reference_dir / "arch_golden.npz")
    model = create_model("rawnet2")
    np.testing.assert_allclose(
        model.Sinc_conv.band_pass.numpy(), a["rawnet2_2021_sinc_band_pass"], atol=1e-6
    )
    with torch.no_grad():
        for i in (0, 4):
            x = torch.from_numpy(golden[f"input_{i}"])[None, None]
            h = torch.nn.functional.max_pool1d(torch.abs(model.Sinc_conv(x)), 3)[0, :, :100]
            np.testing.assert_allclose(
                h.numpy(), a[f"rawnet2_2021_debug_sinc_abs_pool_first100_{i}"], atol=TOL
            )


def test_lcnn_golden(reference_dir, golden):
    a = np.load(reference_dir / "arch_golden.npz")
    model = create_model("lfcc-lcnn")
    model.load_state_dict(
        torch.load(reference_dir / "lcnn_2021_seed0.pth", weights_only=True), strict=True
    )
    model.eval()
    assert list(model.state_dict()) == _keys(reference_dir, "state_dict_keys_lcnn_2021.txt")
    assert sum(p.numel() for p in model.parameters()) == 275253
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 269729
    with torch.no_grad():
        for i in range(6):
            logits, _ = model(torch.from_numpy(golden[f"input_{i}"])[None])
            assert logits[0, 0].item() == 0.0
            np.testing.assert_allclose(logits[0, 1:].numpy(), a[f"lcnn_score_{i}"], atol=TOL)
        xb = torch.from_numpy(np.stack([golden[f"input_{i}"] for i in range(4)]))
        np.testing.assert_allclose(model(xb)[0][:, 1].numpy(), a["lcnn_batch_score"], atol=TOL)
        for i in (0, 4):
            x = torch.from_numpy(golden[f"input_{i}"])[None]
            f = model.m_frontend[0](x)
            np.testing.assert_allclose(f[0].numpy(), a[f"lcnn_debug_frontend_{i}"], atol=TOL)
            h = model.cnn(f)
            np.testing.assert_allclose(h[0].numpy(), a[f"lcnn_debug_cnn_out_{i}"], atol=TOL)
            _, pooled = model(x)
            np.testing.assert_allclose(pooled[0].numpy(), a[f"lcnn_debug_pooled_{i}"], atol=TOL)
    assert model.min_length == 2400
    model(torch.zeros(1, 2400))
    with pytest.raises(ValueError, match="at least 2400"):
        model(torch.zeros(1, 2399))


def test_lfcc_matches_baseline(reference_dir, golden):
    f = np.load(reference_dir / "features_golden.npz")
    np.testing.assert_allclose(lfcc_filterbank(), f["lfcc_filterbank"], atol=2e-6)
    np.testing.assert_allclose(dct_matrix(20), f["lfcc_dct_matrix"], atol=1e-6)
    for i in (0, 4):
        y = lfcc(torch.from_numpy(golden[f"input_{i}"])[None])[0].numpy()
        assert y.shape == f[f"lfcc_input_{i}"].shape
        # float32 through an FFT: the official baseline's values to 2.0e-6 here (|x| <= 3.5)
        np.testing.assert_allclose(y, f[f"lfcc_input_{i}"], rtol=0, atol=1e-5)


def test_dct_matrix_equals_scipy():
    from scipy.fft import dct

    x = np.random.default_rng(0).standard_normal((5, 20))
    np.testing.assert_allclose(
        x @ dct_matrix(20).T, dct(x, type=2, norm="ortho", axis=1), atol=1e-12
    )


def test_cqcc_matches_baseline(reference_dir, golden):
    f = np.load(reference_dir / "features_golden.npz")
    for i in (0, 4):
        x = golden[f"input_{i}"].astype(np.float64)
        lp, _, _ = cq_log_power(x)
        # float64 throughout: the baseline's values to 4.1e-12 (log power), 1.5e-12 (CQCC) here
        np.testing.assert_allclose(lp, f[f"cqcc_logpow_input_{i}"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(cqcc(x), f[f"cqcc_input_{i}"], rtol=0, atol=1e-9)
        got = cqcc(x, deltas="time")
        np.testing.assert_allclose(got, f[f"cqcc_timedelta_input_{i}"], rtol=0, atol=1e-9)


def test_feature_batch_consistency(golden):
    x = torch.from_numpy(np.stack([golden[f"input_{i}"] for i in range(3)]))
    batch = lfcc(x)
    for i in range(3):
        np.testing.assert_allclose(batch[i].numpy(), lfcc(x[i : i + 1])[0].numpy(), atol=1e-5)
    from spoofscope.features import CQCC

    xs = x[:2, :16000]
    cb = CQCC()(xs.double())
    for i in range(2):
        np.testing.assert_allclose(cb[i].numpy(), cqcc(xs[i].double().numpy()), atol=1e-10)
