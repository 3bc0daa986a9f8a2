"""Published weights on the cards, the cache and the verified download, and ``load_model``: the
one loading path for names, tags, checkpoints and foreign state_dicts."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

import spoofscope
from spoofscope.models import (
    WeightsError,
    _registry,
    get_card,
    load_model,
    resolve_weights,
    save_checkpoint,
    weights_status,
)
from spoofscope.models._pretrained import PACKAGED_DIR, PACKAGED_NOTICE, sha256_of


def _with_url(monkeypatch, name, url):
    """Point the published weights of ``name`` at ``url`` (a local server or a closed port), as
    weights that are not packaged (cache, else download)."""
    entry = _registry.get_entry(name)
    tag = entry.card.default_tag
    w = dataclasses.replace(entry.card.weights[tag], url=url, packaged=False)
    card = dataclasses.replace(entry.card, weights={tag: w})
    monkeypatch.setitem(_registry._REGISTRY, name, dataclasses.replace(entry, card=card))


def test_cards_declare_source_checksum_licence_contract(reference_dir):
    for name, fname in (("aasist", "official_AASIST.pth"), ("aasist-l", "official_AASIST-L.pth")):
        card = get_card(name)
        e = card.weights["official"]
        assert card.default_tag == "official"
        assert e.url.startswith("https://github.com/clovaai/aasist/")
        assert e.url.endswith(f"models/weights/{e.filename}")
        assert e.sha256 == sha256_of(reference_dir / fname)
        assert "MIT" in e.licence and "NAVER" in e.notice
        # shipped inside the package, byte for byte the official file, notice beside it
        assert (
            e.packaged
            and (PACKAGED_DIR / e.filename).read_bytes() == (reference_dir / fname).read_bytes()
        )
        assert "Copyright (c) 2021-present NAVER Corp." in PACKAGED_NOTICE.read_text()
        assert e.notice == PACKAGED_NOTICE.read_text() and "WITHOUT WARRANTY" in e.notice
        assert (card.sample_rate, card.window_samples, card.bonafide_index) == (16000, 64600, 1)
        assert card.export == "fixed" and "2019 LA" in card.training_data


def test_packaged_weights_give_official_scores_without_the_cache(
    reference_dir, golden, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path))
    # the cache is for downloads only: wrong bytes under AASIST's name there are not read
    shutil.copy(reference_dir / "official_AASIST-L.pth", tmp_path / "AASIST.pth")
    for source in ("aasist", "aasist:official"):
        m = load_model(source)
        assert not m.training and m.source == "aasist:official"
        assert m.weights_file == PACKAGED_DIR / "AASIST.pth"
        with torch.no_grad():
            logits, _ = m(torch.from_numpy(golden["input_0"])[None])
        np.testing.assert_allclose(logits[0].numpy(), golden["AASIST_logits_0"], atol=1e-4)
    with pytest.raises(WeightsError, match="no weights tagged 'df'"):
        load_model("aasist:df")
    # an explicit path wins over the cache
    m2 = load_model("aasist-l", weights=reference_dir / "official_AASIST-L.pth")
    with torch.no_grad():
        np.testing.assert_allclose(
            m2(torch.from_numpy(golden["input_1"])[None])[0][0].numpy(),
            golden["AASIST-L_logits_1"],
            atol=1e-4,
        )


def test_missing_offline_names_url_file_and_placement_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path / "cache"))
    # no network in tests: point the entry at a closed loopback port
    _with_url(monkeypatch, "aasist", "http://127.0.0.1:9/AASIST.pth")
    with pytest.raises(WeightsError) as e:
        load_model("aasist")
    msg = str(e.value)
    assert "http://127.0.0.1:9/AASIST.pth" in msg and "AASIST.pth" in msg
    assert str(tmp_path / "cache" / "AASIST.pth") in msg
    assert msg.count("by hand") == 1  # the advice once, not twice
    with pytest.raises(WeightsError, match="not in the cache"):
        resolve_weights("aasist", download=False)


def test_packaged_weights_are_checked(tmp_path, monkeypatch, reference_dir):
    """A damaged installation (other bytes under the packaged name) is refused by sha256."""
    from spoofscope.models import _pretrained

    shutil.copy(reference_dir / "official_AASIST-L.pth", tmp_path / "AASIST.pth")
    monkeypatch.setattr(_pretrained, "PACKAGED_DIR", tmp_path)
    with pytest.raises(WeightsError, match="installation is damaged.*force-reinstall"):
        load_model("aasist")
    assert weights_status("aasist") == "packaged"
    assert weights_status("aasist-l") == "available"  # not in this folder: would download


def test_download_fails_within_3_s_when_the_name_lookup_hangs(tmp_path, monkeypatch):
    """Offline with a resolver that never answers: the first run stops after the 3-s connection
    bound with the one-line advice, instead of waiting on the resolver's retries."""
    import socket
    import threading

    release = threading.Event()

    def hang(*a, **k):
        release.wait(60)
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hang)
    _with_url(monkeypatch, "aasist", "https://weights.invalid/AASIST.pth")
    try:
        with pytest.raises(WeightsError) as e:
            resolve_weights("aasist", cache=tmp_path)
    finally:
        release.set()
    msg = str(e.value)
    assert "no connection to weights.invalid within 3 s; offline?" in msg
    assert str(tmp_path / "AASIST.pth") in msg and msg.count("by hand") == 1


def test_hub_download_fails_within_3_s_when_the_name_lookup_hangs(tmp_path, monkeypatch):
    """The same bound for weights on the Hugging Face Hub: the reachability check stops at 3 s
    (a hang of 10 s here: a longer bound would end on the resolver's own error instead)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    import socket
    import threading

    release = threading.Event()

    def hang(*a, **k):
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    try:
        with pytest.raises(WeightsError) as e:
            resolve_weights("antideepfake-w2v-small", cache=tmp_path)
    finally:
        release.set()
    msg = str(e.value)
    assert "no connection to hub.invalid within 3 s; offline?" in msg
    assert "wav2vec-small-anti-deepfake" in msg and msg.count("by hand") == 1


def test_checksum_applies_to_the_cache_not_to_a_named_file(tmp_path, monkeypatch, reference_dir):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path))
    _with_url(monkeypatch, "aasist", get_card("aasist").weights["official"].url)
    # the AASIST-L file under AASIST's name in the cache: the wrong bytes, refused
    shutil.copy(reference_dir / "official_AASIST-L.pth", tmp_path / "AASIST.pth")
    with pytest.raises(WeightsError, match="does not match"):
        load_model("aasist")
    # the same file named explicitly is checked by key and shape: AASIST-L does not fit AASIST
    with pytest.raises(WeightsError) as e:
        load_model("aasist", weights=tmp_path / "AASIST.pth")
    assert "does not fit aasist" in str(e.value) and "shape mismatch" in str(e.value)
    with pytest.raises(WeightsError, match="no published weights"):
        load_model("rawnet2")


def test_own_finetuned_weights_load_without_checksum(tmp_path, reference_dir, golden):
    """A user's fine-tuned AASIST (other values, same keys) loads, DataParallel prefix too."""
    sd = torch.load(reference_dir / "official_AASIST.pth", map_location="cpu", weights_only=True)
    sd["out_layer.bias"] = sd["out_layer.bias"] + torch.tensor([0.0, 0.5])
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "mine.pth")
    m = load_model("aasist", weights=tmp_path / "mine.pth")
    with torch.no_grad():
        logits, _ = m(torch.from_numpy(golden["input_0"])[None])
    np.testing.assert_allclose(
        logits[0].numpy(), golden["AASIST_logits_0"] + np.array([0.0, 0.5]), atol=1e-4
    )
    # a bare state_dict names no architecture: found among the published ones by keys/shapes
    guessed = load_model(tmp_path / "mine.pth")
    assert guessed.registry_name == "aasist"


@pytest.mark.parametrize("name", ["rawnet2", "lfcc-lcnn"])
def test_foreign_state_dicts_of_unpublished_architectures(name, tmp_path):
    torch.manual_seed(0)
    ref = spoofscope.create_model(name).eval()
    torch.save(ref.state_dict(), tmp_path / "sd.pth")
    m = load_model(name, weights=tmp_path / "sd.pth")
    x = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0], ref(x)[0], rtol=0, atol=0)
    # without the architecture, a state_dict that matches no published model is refused
    with pytest.raises(WeightsError, match="say which architecture"):
        load_model(tmp_path / "sd.pth")
    # the wrong architecture names missing and unexpected keys
    with pytest.raises(WeightsError) as e:
        load_model("aasist-l" if name != "aasist-l" else "rawnet2", weights=tmp_path / "sd.pth")
    assert "missing key(s)" in str(e.value) and "unexpected key(s)" in str(e.value)


def test_checkpoint_roundtrip_keeps_card_window(tmp_path):
    m = spoofscope.create_model("lfcc-lcnn")
    m.card = dataclasses.replace(m.card, window_samples=24000, training_data="demo")
    save_checkpoint(m, tmp_path / "m.ckpt")
    back = load_model(tmp_path / "m.ckpt")
    assert back.card.window_samples == 24000 and back.card.training_data == "demo"
    assert back.card.min_length == 2400 and back.checkpoint["arch"] == "lfcc-lcnn"
    with pytest.raises(WeightsError, match="is a lfcc-lcnn checkpoint, not aasist"):
        load_model(tmp_path / "m.ckpt", arch="aasist")


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="file not found"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="unknown model 'wav2vec-magic'"):
        load_model("wav2vec-magic")


def test_loading_is_weights_only(tmp_path):
    # a pickle that would run code is refused by torch.load(weights_only=True)
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, p)
    from spoofscope.models import load_state_dict_file

    with pytest.raises(WeightsError, match="refused, it holds Python objects .*print"):
        load_state_dict_file(p)


def test_download_verifies_and_writes_the_notice(reference_dir, tmp_path, monkeypatch):
    """A verified download from a local server lands in the cache with its licence notice."""
    import http.server
    import threading

    payload = (reference_dir / "official_AASIST-L.pth").read_bytes()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/AASIST-L.pth"
        _with_url(monkeypatch, "aasist-l", url)
        path = resolve_weights("aasist-l", cache=tmp_path)
        assert path == tmp_path / "AASIST-L.pth" and path.read_bytes() == payload
        notice = (tmp_path / "AASIST-L.pth.LICENSE.txt").read_text()
        assert "NAVER" in notice and "MIT" in notice
        # a mirror URL through the CLI (what the Dockerfile runs): still sha256-checked
        from spoofscope.cli import main

        monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path / "mirror"))
        assert main(["models", "fetch", "aasist-l", "--url", url]) == 0
        assert (tmp_path / "mirror" / "AASIST-L.pth").read_bytes() == payload
        # a server that sends other bytes: refused and removed
        payload = b"not the weights"
        with pytest.raises(WeightsError, match="not the expected .* it was deleted and not used"):
            resolve_weights("aasist-l", cache=tmp_path / "other")
        assert not (tmp_path / "other" / "AASIST-L.pth").exists()
    finally:
        srv.shutdown()


def test_official_config_model_saves_and_reloads_as_itself(reference_dir, golden, tmp_path):
    """AASIST-L loaded from its official .conf records its constructor arguments, so a
    checkpoint of it rebuilds AASIST-L (not the registry's default AASIST)."""
    m = load_model(
        reference_dir / "official_AASIST-L.pth", config=reference_dir / "aasist_l_config.json"
    )
    save_checkpoint(m, tmp_path / "l.ckpt")
    back = load_model(tmp_path / "l.ckpt")
    x = torch.from_numpy(golden["input_1"])[None]
    with torch.no_grad():
        np.testing.assert_allclose(back(x)[0][0].numpy(), golden["AASIST-L_logits_1"], atol=1e-4)
