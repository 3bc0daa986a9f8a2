import shutil

import numpy as np
import pytest
import torch

import spoofscope
from spoofscope.models import PRETRAINED, WeightsError, resolve_weights
from spoofscope.models._pretrained import sha256_of


def test_entries_declare_source_checksum_licence_contract(reference_dir):
    for name, fname in (("aasist", "official_AASIST.pth"), ("aasist-l", "official_AASIST-L.pth")):
        e = PRETRAINED[name]
        assert e.url.startswith("https://github.com/clovaai/aasist/")
        assert e.url.endswith(f"models/weights/{e.filename}")
        assert e.sha256 == sha256_of(reference_dir / fname)
        assert "MIT" in e.licence and "NAVER" in e.notice
        assert (e.sample_rate, e.input_length, e.bonafide_index) == (16000, 64600, 1)


def test_pretrained_from_cache_gives_official_scores(reference_dir, golden, tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path))
    shutil.copy(reference_dir / "official_AASIST.pth", tmp_path / "AASIST.pth")
    m = spoofscope.create_model("aasist", pretrained=True)
    assert not m.training
    with torch.no_grad():
        logits, _ = m(torch.from_numpy(golden["input_0"])[None])
    np.testing.assert_allclose(logits[0].numpy(), golden["AASIST_logits_0"], atol=1e-4)
    # an explicit path wins over the cache
    m2 = spoofscope.create_model("aasist-l", weights=reference_dir / "official_AASIST-L.pth")
    with torch.no_grad():
        np.testing.assert_allclose(
            m2(torch.from_numpy(golden["input_1"])[None])[0][0].numpy(),
            golden["AASIST-L_logits_1"],
            atol=1e-4,
        )


def test_missing_offline_names_url_file_and_placement(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path / "cache"))
    # no network in tests: point the entry at a closed loopback port
    import dataclasses

    from spoofscope.models import _pretrained

    entry = dataclasses.replace(PRETRAINED["aasist"], url="http://127.0.0.1:9/AASIST.pth")
    monkeypatch.setitem(_pretrained.PRETRAINED, "aasist", entry)
    with pytest.raises(WeightsError) as e:
        spoofscope.create_model("aasist", pretrained=True)
    msg = str(e.value)
    assert "http://127.0.0.1:9/AASIST.pth" in msg and "AASIST.pth" in msg
    assert str(tmp_path / "cache" / "AASIST.pth") in msg and "by hand" in msg
    with pytest.raises(WeightsError, match="not in the cache"):
        resolve_weights("aasist", download=False)


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch, reference_dir):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path))
    # the AASIST-L file under AASIST's name: a valid state_dict, the wrong bytes
    shutil.copy(reference_dir / "official_AASIST-L.pth", tmp_path / "AASIST.pth")
    with pytest.raises(WeightsError, match="does not match"):
        spoofscope.create_model("aasist", pretrained=True)
    with pytest.raises(WeightsError, match="does not match"):
        spoofscope.create_model("aasist", weights=tmp_path / "AASIST.pth")
    with pytest.raises(WeightsError, match="no published weights"):
        spoofscope.create_model("rawnet2", pretrained=True)


def test_loading_is_weights_only(tmp_path, monkeypatch):
    # a pickle that would run code is refused by torch.load(weights_only=True)
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, p)
    from spoofscope.models._pretrained import load_state_dict_file

    with pytest.raises(Exception, match="(?i)weights only"):
        load_state_dict_file(p)


def test_download_verifies_and_writes_the_notice(reference_dir, tmp_path, monkeypatch):
    """A verified download from a local server lands in the cache with its licence notice."""
    import dataclasses
    import http.server
    import threading

    from spoofscope.models import _pretrained

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
        monkeypatch.setitem(
            _pretrained.PRETRAINED, "aasist-l", dataclasses.replace(PRETRAINED["aasist-l"], url=url)
        )
        path = resolve_weights("aasist-l", cache=tmp_path)
        assert path == tmp_path / "AASIST-L.pth" and path.read_bytes() == payload
        notice = (tmp_path / "AASIST-L.pth.LICENSE.txt").read_text()
        assert "NAVER" in notice and "MIT" in notice
        # a server that sends other bytes: refused and removed
        payload = b"not the weights"
        with pytest.raises(WeightsError, match="does not match"):
            resolve_weights("aasist-l", cache=tmp_path / "other")
        assert not (tmp_path / "other" / "AASIST-L.pth").exists()
    finally:
        srv.shutdown()
