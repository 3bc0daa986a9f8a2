"""hf: models (any transformers audio classifier) and adapt on the frame-pooling families."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

transformers = pytest.importorskip("transformers")

import spoofscope  # noqa: E402
from spoofscope.errors import ConfigError, WeightsError  # noqa: E402
from spoofscope.infer import Detector  # noqa: E402

TINY_W2V = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[16] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    classifier_proj_size=24,
)


def _random_biases(m):
    """Freshly initialised heads have zero biases, which would hide a bias taken with the
    wrong sign or from the wrong class: give every Linear layer a distinct non-zero one."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, torch.nn.Linear) and layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.5)


def _save_w2v(folder, labels, licence=None, seed=0):
    torch.manual_seed(seed)
    id2label = dict(enumerate(labels))
    conf = transformers.Wav2Vec2Config(
        **TINY_W2V, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    m = transformers.Wav2Vec2ForSequenceClassification(conf).eval()
    _random_biases(m)
    m.save_pretrained(folder)
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000)
    fe.save_pretrained(folder)
    if licence:
        (folder / "README.md").write_text(f"---\nlicense: {licence}\ntags: [audio]\n---\n# x\n")
    return m, fe


def _save_ast(folder, labels, seed=0):
    torch.manual_seed(seed)
    id2label = dict(enumerate(labels))
    conf = transformers.ASTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_length=100, num_mel_bins=128, id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    m = transformers.ASTForAudioClassification(conf).eval()
    _random_biases(m)
    m.save_pretrained(folder)
    fe = transformers.ASTFeatureExtractor(max_length=100)
    fe.save_pretrained(folder)
    return m, fe


def _reference_score(m, fe, wav: np.ndarray, bona_label: str) -> float:
    """What the checkpoint itself says, run as its authors run it: feature extractor, model,
    bona fide logit minus the other's."""
    inputs = fe([wav], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        z = m(**inputs).logits[0]
    bona = [int(k) for k, v in m.config.id2label.items() if v == bona_label][0]
    return float(z[bona] - z[1 - bona])


def _wav(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


@pytest.mark.parametrize("kind", ["wav2vec2", "ast"])
@pytest.mark.parametrize("labels", [("fake", "real"), ("Real", "Spoof")], ids=["0=fake", "0=real"])
def test_hf_classifier_gives_the_checkpoints_own_log_odds(tmp_path, kind, labels):
    folder = tmp_path / "clf"
    m, fe = (_save_w2v if kind == "wav2vec2" else _save_ast)(folder, labels)
    bona = "real" if "real" in labels else "Real"
    model = spoofscope.load_model(f"hf:{folder}")
    x = _wav(1.0, 1)
    with torch.no_grad():
        logits, emb = model(torch.from_numpy(x)[None])
    want = _reference_score(m, fe, x, bona)
    assert logits[0, 0] == 0 and abs(float(logits[0, 1]) - want) < 1e-4
    card = model.card
    assert card.family == "hf" and card.bonafide_index == 1 and card.sample_rate == 16000
    # AST: 100 frames of 25 ms every 10 ms; wav2vec 2.0 states no maximum: 4 s
    assert card.window_samples == (99 * 160 + 400 if kind == "ast" else 64000)
    assert card.export == ("dynamic" if kind == "wav2vec2" else "none")
    # the detector's probability is the checkpoint's softmax of its two logits
    det = Detector(model, name=f"hf:{folder.name}")
    r = det(x)
    assert r.label in ("bonafide", "spoof") and r.confident is None
    if kind == "ast":  # one 1-s file, one window
        assert abs(r.p_bonafide - 1 / (1 + np.exp(-want))) < 1e-4


def test_labels_licence_and_errors(tmp_path):
    folder = tmp_path / "clf"
    _save_w2v(folder, ("class_a", "class_b"), licence="cc-by-nc-4.0")
    with pytest.raises(ConfigError) as e:
        spoofscope.load_model(f"hf:{folder}")
    assert "0='class_a', 1='class_b'" in str(e.value) and "--bonafide-label" in str(e.value)
    m = spoofscope.load_model(f"hf:{folder}", bonafide_label="class_b")
    assert m.card.licence == "cc-by-nc-4.0" and m.card.licence_class == "non-commercial"
    with pytest.raises(ConfigError, match="not one of the model's labels"):
        spoofscope.load_model(f"hf:{folder}", bonafide_label="human")
    ok = tmp_path / "ok"
    _save_w2v(ok, ("spoof", "bonafide"), licence="apache-2.0")
    assert spoofscope.load_model(f"hf:{ok}").card.licence_class == "permissive"
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="not a transformers audio-classification model"):
        spoofscope.load_model(f"hf:{tmp_path / 'empty'}")


def test_hub_ids_come_from_the_cache_offline_and_pin_revisions(tmp_path, monkeypatch):
    """A repository in the cache (the Hub's layout: refs/ and snapshots/) loads by name with
    no network, at its main ref or a pinned commit; one not cached says where to put it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    repo = cache / "hub-cache" / "models--acme--voice-guard"
    commits = {"main": "a" * 40, "old": "b" * 40}
    for seed, (ref, commit) in enumerate(commits.items()):
        _save_w2v(repo / "snapshots" / commit, ("fake", "real"), seed=seed)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    x = torch.from_numpy(_wav(1.0, 2))[None]
    with torch.no_grad():
        main_ = spoofscope.load_model("hf:acme/voice-guard", cache_dir=cache)(x)[0][0, 1]
        pinned = spoofscope.load_model(f"hf:acme/voice-guard@{'b' * 40}", cache_dir=cache)
        old = pinned(x)[0][0, 1]
    m_main = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(
        repo / "snapshots" / commits["main"]
    )
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    assert abs(float(main_) - _reference_score(m_main, fe, x[0].numpy(), "real")) < 1e-4
    assert abs(float(main_) - float(old)) > 1e-3  # another commit, other weights
    assert pinned.source == f"hf:acme/voice-guard@{'b' * 40}"
    with pytest.raises(WeightsError) as e:
        spoofscope.load_model("hf:acme/missing", cache_dir=cache)
    assert "not in the cache" in str(e.value) and "hf:FOLDER" in str(e.value)


def test_detect_cli_on_an_hf_folder(tmp_path):
    folder = tmp_path / "clf"
    m, fe = _save_w2v(folder, ("fake", "real"), licence="cc-by-nc-sa-4.0")
    wav = tmp_path / "a.wav"
    x = _wav(3.0, 4)
    sf.write(wav, x, 16000)
    p = subprocess.run(
        [sys.executable, "-m", "spoofscope", "detect", "--model", f"hf:{folder}", "--json",
         "--engine", "torch", "--quiet", str(wav)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    r = r[0] if isinstance(r, list) else r
    assert r["model"] == f"hf:{folder}"
    # one 4-s window would be longer than the file: the file is tiled to 4 s, as every model
    tiled = np.concatenate([x, x[: 64000 - x.size]])
    assert abs(r["score"] - _reference_score(m, fe, tiled, "real")) < 1e-3
    assert "non-commercial" in p.stderr  # the licence notice, once, at start


def _files(root, n=8):
    rng = np.random.default_rng(0)
    rows = []
    for label in ("bonafide", "spoof"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            t = np.arange(16000) / 16000
            if label == "bonafide":
                x = 0.3 * np.sin(2 * np.pi * (120 + 15 * i) * t) + 0.01 * rng.standard_normal(
                    t.size
                )
            else:
                x = 0.2 * rng.standard_normal(t.size)
            p = root / label / f"{i}.wav"
            sf.write(p, x.astype(np.float32), 16000)
            rows.append(p)
    return rows


@pytest.mark.parametrize("source", ["antideepfake", "hf"])
def test_adapt_retrains_the_linear_head(tmp_path, source):
    """adapt --procedure probe on a tiny AntiDeepfake checkpoint and a tiny hf: classifier:
    the model it writes scores each file with the logistic regression on that file's
    embedding, fitted here from the starting model (half the log-odds: a two-output head)."""
    from test_adapt import _newton_logreg, _recipe

    from spoofscope.models import save_checkpoint
    from spoofscope.train.adapt import adapt

    if source == "hf":
        _save_w2v(tmp_path / "clf", ("fake", "real"))
        start = f"hf:{tmp_path / 'clf'}"
        m0 = spoofscope.load_model(start)
    else:
        torch.manual_seed(0)
        m0 = spoofscope.create_model("antideepfake-w2v-small", encoder_config=TINY_W2V).eval()
        start = tmp_path / "start.ckpt"
        save_checkpoint(m0, start)
    m0.card = spoofscope.models.ModelCard.from_dict({**m0.card.to_dict(), "window_samples": 16000})
    paths = _files(tmp_path / "data")
    cfg = _recipe(crop_samples=16000)
    r = adapt(start, tmp_path / "data", tmp_path / "out", cfg, folds=3, procedure="probe",
              progress=False, engine="torch")  # fmt: skip
    assert r["final"]["procedure"] == "probe"
    y = np.array([p.parent.name == "bonafide" for p in paths], int)
    with torch.no_grad():
        feats = np.stack(
            [
                m0(torch.from_numpy(sf.read(p, dtype="float32")[0])[None])[1][0].numpy()
                for p in paths
            ]
        ).astype(np.float64)
    w, b = _newton_logreg(feats, y, r["final"]["probe_c"])
    det = Detector.from_checkpoint(tmp_path / "out" / "model.ckpt", engine="torch")
    got = np.array([det(p).score for p in paths])
    np.testing.assert_allclose(got, (feats @ w + b) / 2, rtol=1e-3, atol=1e-3)
