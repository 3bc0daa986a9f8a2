"""Hostile inputs to ``spoofscope explain`` and ``POST /v1/explain`` (the band-and-span model of
tests/_bandspan.py): a recording or segment shorter than one STFT frame, tiles finer than the
STFT resolves, an unwritable --out, Integrated Gradients on an int8 detector each get one
line (CLI exit 2, HTTP 422), never a traceback or tiles that hold nothing; every tile holds
a frame; the one-line summary says what the JSON's tiles hold."""

import io
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from _bandspan import SR, detector, two_second_mix

from spoofscope.cli import main
from spoofscope.infer import Decision, Detector, make_engine
from spoofscope.infer.explain import ExplainError, TileGrid, summarise
from spoofscope.models._card import ModelCard


@pytest.fixture
def built(monkeypatch):
    """The CLI's detector is the band-and-span model; ``built`` counts how often it is built."""
    import spoofscope.cli as cli

    calls = []

    def build(a, **kw):
        calls.append(a)
        return detector(window=32000, kind="official")

    monkeypatch.setattr(cli, "_build_detector", build)
    return calls


def _one_line_error(capsys, *argv) -> str:
    assert main(["explain", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_too_short_recording_or_segment_is_one_line(tmp_path, built, capsys):
    sf.write(tmp_path / "tiny.wav", two_second_mix()[:100], SR)
    sf.write(tmp_path / "a.wav", two_second_mix(), SR)
    out = tmp_path / "o"
    err = _one_line_error(capsys, tmp_path / "tiny.wav", "--out", out)
    assert "recording is 0.006 s long, shorter than one 0.032-s STFT frame" in err
    err = _one_line_error(capsys, tmp_path / "a.wav", "--start", 1, "--end", 1.01, "--out", out)
    assert "segment is 0.010 s long" in err and "at least 0.032 s" in err
    err = _one_line_error(capsys, tmp_path / "a.wav", "--start", 5, "--out", out)
    assert "start 5 s is not within the recording (0-2.000 s)" in err
    err = _one_line_error(capsys, tmp_path / "a.wav", "--start", 1.5, "--end", 1, "--out", out)
    assert "end is not after its start" in err


def test_tiles_finer_than_the_stft_are_refused(tmp_path, built, capsys):
    """Finer tiles would hold no STFT coefficient: a relevance of 0 nothing measured."""
    sf.write(tmp_path / "a.wav", two_second_mix(), SR)
    out = tmp_path / "o"
    err = _one_line_error(capsys, tmp_path / "a.wav", "--tile-s", 0.001, "--out", out)
    assert "--tile-s 0.001 is shorter than the STFT's hop of 0.008 s" in err
    err = _one_line_error(capsys, tmp_path / "a.wav", "--bands", 300, "--out", out)
    assert "--bands 300 is more than the STFT's 256 frequency steps" in err


def test_every_tile_holds_an_stft_frame(tmp_path, built, capsys):
    """36008 samples in 0.25-s tiles: the last 0.0005 s holds no frame centre (frames every
    128 samples), so it joins the tile before."""
    n = 36008
    sf.write(tmp_path / "a.wav", np.resize(two_second_mix(), n), SR)
    args = ["explain", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o"), "--bands", "1"]
    assert main(args) == 0
    d = json.loads((tmp_path / "o" / "a.explain.json").read_text())
    centres = np.arange(n // 128 + 1) * 128 / SR
    assert d["tiles"][-1]["end_s"] == pytest.approx(n / SR, abs=1e-4)
    assert len(d["tiles"]) == 9  # 2.0-2.2505 s the last
    for t in d["tiles"]:
        assert ((centres >= t["start_s"] - 1e-9) & (centres < t["end_s"])).any(), t


@pytest.mark.parametrize("tile_s", [0.008, 0.009, 0.25])
@pytest.mark.parametrize("n", [SR * 3, 36008, 600])
def test_every_tile_of_the_grid_holds_a_frame(tile_s, n):
    """Each STFT frame goes to the tile its centre falls in, a centre on an edge included
    (0.008 s = one hop: every tile one frame), and no tile is left without one."""
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    g = TileGrid(x, SR, tile_s, 8)
    held = np.bincount(g.frame_tile.numpy(), minlength=g.n_time)
    assert held.min() >= 1 and len(held) == g.n_time
    assert g.t_edges[-1] == n / SR


def test_unwritable_out_is_refused_before_the_work(tmp_path, built, capsys):
    sf.write(tmp_path / "a.wav", two_second_mix(), SR)
    (tmp_path / "file").write_text("x")
    err = _one_line_error(capsys, tmp_path / "a.wav", "--out", tmp_path / "file" / "sub")
    assert err.endswith(f"--out {tmp_path / 'file' / 'sub'}: cannot create the folder (Not a "
                        "directory); give a writable one")  # fmt: skip
    assert built == []  # no detector built, nothing explained


class _Int8Able(torch.nn.Module):
    """bona fide logit = a Linear of the window's energy, inside an ``ssl_model`` whose
    feed-forward layer spoofscope's int8 path quantises."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ssl_model = torch.nn.ModuleDict({"feed_forward": torch.nn.Linear(1, 1)})
        self.card = ModelCard(
            name="int8able", family="test", window_samples=16000, precisions=("fp32", "int8")
        )

    def forward(self, x):
        s = self.ssl_model["feed_forward"](x.pow(2).mean(1, keepdim=True) * 100)
        return torch.cat([-s, s], 1), s


def test_integrated_gradients_refuses_an_int8_detector():
    """int8 layers have no gradient: one line pointing to occlusion, which explains the int8
    model as it runs."""
    det = Detector(
        make_engine(_Int8Able().eval(), "torch", precision="int8"),
        decision=Decision(vad="energy", min_speech_s=0.1),
    )
    x = two_second_mix()[:SR]
    with pytest.raises(ExplainError, match="needs the fp32 model; this detector runs int8"):
        det.explain(x, method="integrated-gradients")
    assert det.explain(x, method="occlusion", tile_s=0.25, n_bands=2).tiles


def _box_share(summary: str, tiles: list[dict]) -> float:
    """The share of the positive relevance inside the box the summary names (from the
    JSON's tiles)."""
    m = re.search(r"([\d.]+)-([\d.]+) kHz between ([\d.]+) and ([\d.]+) s", summary)
    f0, f1 = float(m[1]) * 1000, float(m[2]) * 1000
    t0, t1 = float(m[3]), float(m[4])
    pos = [t for t in tiles if t["relevance"] > 0]
    inside = [
        t for t in pos
        if f0 - 1 <= t["f_lo_hz"] and t["f_hi_hz"] <= f1 + 1
        and t0 - 0.006 <= t["start_s"] and t["end_s"] <= t1 + 0.006
    ]  # fmt: skip
    return 100 * sum(t["relevance"] for t in inside) / sum(t["relevance"] for t in pos)


@pytest.mark.parametrize("bands,tile_s", [("8", "0.25"), ("16", "0.25")])
def test_the_summary_says_what_the_tiles_hold(tmp_path, built, capsys, bands, tile_s):
    """'mostly' only where the named box holds at least half the relevance towards the
    verdict; the share the line gives is the one the JSON's tiles give."""
    sf.write(tmp_path / "a.wav", two_second_mix(), SR)
    args = ["--out", tmp_path / "o", "--bands", bands, "--tile-s", tile_s, "--budget", 2000]
    assert main(["explain", str(tmp_path / "a.wav"), *map(str, args)]) == 0
    d = json.loads((tmp_path / "o" / "a.explain.json").read_text())
    share = _box_share(d["summary"], d["tiles"])
    said = float(re.search(r"(\d+) % of the relevance", d["summary"])[1])
    assert said == pytest.approx(share, abs=0.51)
    assert ("mostly" in d["summary"]) == (share >= 50), d["summary"]


def test_summary_of_spread_relevance_does_not_say_mostly():
    """Three equal tiles on an anti-diagonal of 3 bands x 3 spans: each marginal span of two
    holds 2/3, but their box holds one tile, a third."""
    tiles = [
        {"start_s": k * 0.5, "end_s": (k + 1) * 0.5, "f_lo_hz": b * 1000.0,
         "f_hi_hz": (b + 1) * 1000.0, "relevance": float((b, k) in {(0, 0), (1, 2), (2, 1)})}
        for k in range(3) for b in range(3)
    ]  # fmt: skip
    s = summarise(tiles, "spoof")
    assert "mostly" not in s and "only 33 %" in s
    assert _box_share(s, tiles) == pytest.approx(100 / 3)


def test_explain_api_answers_422_for_a_too_short_upload_or_segment(tmp_path):
    pytest.importorskip("fastapi")
    import sqlite3

    from fastapi.testclient import TestClient

    from spoofscope.serve import ServiceSettings, create_app

    def wav(x):
        buf = io.BytesIO()
        sf.write(buf, np.asarray(x, np.float32), SR, format="WAV", subtype="FLOAT")
        return buf.getvalue()

    db = tmp_path / "audit.sqlite"
    app = create_app(detector(kind="official"), ServiceSettings(audit_db=str(db)))
    with TestClient(app, raise_server_exceptions=False) as c:
        tiny = c.post("/v1/explain", files={"file": ("t.wav", wav(two_second_mix()[:100]), "x")})
        seg = c.post(
            "/v1/explain?start_s=1&end_s=1.01",
            files={"file": ("a.wav", wav(two_second_mix()), "x")},
        )
    for r, what in ((tiny, "t.wav: the recording"), (seg, "a.wav: the segment")):
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_request"
        assert r.json()["error"]["message"].startswith(what)
    rows = sqlite3.connect(db).execute("SELECT endpoint, status FROM rejections").fetchall()
    assert rows == [("/v1/explain", 422)] * 2


class _Detached(torch.nn.Module):
    """A front end without a gradient (features computed under ``no_grad``), then a read-out."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[-1.0, 1.0]]))
        self.card = ModelCard(name="detached", family="test", window_samples=16000)

    def forward(self, x):
        with torch.no_grad():
            e = x.pow(2).mean(1, keepdim=True) * 100
        logits = e * self.w.detach()
        return logits, e


def test_gradients_of_a_model_without_gradient_are_one_line(tmp_path, monkeypatch, capsys):
    import spoofscope.cli as cli

    det = Detector(make_engine(_Detached().eval(), "torch"), decision=Decision(vad="energy"))
    monkeypatch.setattr(cli, "_build_detector", lambda a, **kw: det)
    sf.write(tmp_path / "a.wav", two_second_mix(), SR)
    err = _one_line_error(
        capsys, tmp_path / "a.wav", "--method", "integrated-gradients", "--out", tmp_path / "o"
    )
    assert "differentiable in the waveform" in err and "--method occlusion" in err


def test_an_unexpected_failure_is_answered_counted_and_audited(tmp_path, monkeypatch):
    """An engine that fails mid-explanation: a 500 with its request id, one rejection row,
    and a count in /metrics (the error no longer escapes the middleware that records them)."""
    pytest.importorskip("fastapi")
    import sqlite3

    from fastapi.testclient import TestClient

    from spoofscope.infer.explain import Scorer
    from spoofscope.serve import ServiceSettings, create_app

    def broken(self, windows):
        raise RuntimeError("engine lost its device")

    monkeypatch.setattr(Scorer, "window_scores", broken)
    buf = io.BytesIO()
    sf.write(buf, two_second_mix(), SR, format="WAV")
    db = tmp_path / "audit.sqlite"
    app = create_app(detector(kind="official"), ServiceSettings(audit_db=str(db)))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/explain", files={"file": ("a.wav", buf.getvalue(), "x")})
        metrics = c.get("/metrics").text
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "engine lost its device" in r.json()["error"]["message"]
    rows = sqlite3.connect(db).execute("SELECT request_id, status, reason FROM rejections")
    assert rows.fetchall() == [(r.headers["X-Request-ID"], 500, "internal_error")]
    assert 'endpoint="/v1/explain",outcome="internal_error"} 1.0' in metrics
