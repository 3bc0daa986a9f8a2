"""Never a confident wrong answer, never unbounded work: abstention on non-speech, bounded
requests, validated options, offline docs, progress and messages."""

import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _server import free_port
from test_serve import _chromium

import spoofscope
from spoofscope.cli import main
from spoofscope.infer import Detector, Limits, TorchEngine
from spoofscope.models import save_checkpoint

SR = 16000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        spoofscope.create_model("lfcc-lcnn"), tmp_path_factory.mktemp("m") / "lcnn.ckpt"
    )


def _speechlike(seconds, seed=0):
    """A voiced-sounding signal: a 150 Hz harmonic series, amplitude-modulated at 4 Hz."""
    t = np.arange(int(SR * seconds)) / SR
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    rng = np.random.default_rng(seed)
    return (0.1 * x * env + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _signals():
    rng = np.random.default_rng(0)
    clicks = np.zeros(SR * 5, np.float32)
    clicks[rng.choice(SR * 5, 10, replace=False)] = 0.9
    gap = np.zeros(SR * 6, np.float32)
    gaps = np.concatenate([_speechlike(0.4), gap, _speechlike(0.4, 1), gap, _speechlike(0.4, 2)])
    return {
        "silence": np.zeros(SR * 5, np.float32),
        "low_noise": (rng.standard_normal(SR * 5) * 0.001).astype(np.float32),  # -60 dBFS
        "clicks": clicks,
        "ten_samples": (rng.standard_normal(10) * 0.1).astype(np.float32),
        "speech_with_gaps": gaps,
    }


def test_abstains_on_what_cannot_be_judged(ckpt, tmp_path, capsys):
    det = Detector.from_checkpoint(ckpt)
    sig = _signals()
    for name, x in sig.items():
        sf.write(tmp_path / f"{name}.wav", x, SR, subtype="FLOAT")
    r = {n: det(tmp_path / f"{n}.wav") for n in sig}
    for n in ("silence", "low_noise", "clicks"):
        assert r[n].label == "no_speech" and r[n].score is None and r[n].p_bonafide is None
        assert r[n].confident is False and r[n].reason.startswith("no speech"), n
    assert r["silence"].speech_s == 0 and r["low_noise"].speech_s == 0
    assert 0 < r["clicks"].speech_s < 0.5  # ten 20-ms frames at most
    assert r["ten_samples"].label == "no_speech" and r["ten_samples"].reason.startswith("too short")
    g = r["speech_with_gaps"]
    assert g.label in ("bonafide", "spoof") and g.score is not None and g.reason is None
    assert g.speech_s == pytest.approx(1.2, abs=0.15)
    scored = [w for w in g.windows if w["score"] is not None]
    assert scored and len(scored) < len(g.windows)  # the silent stretches are not scored
    # the CLI: JSON fields, table row with the reason, lower-case CSV booleans
    args = [str(tmp_path / "silence.wav"), str(tmp_path / "speech_with_gaps.wav")]
    assert main(["detect", *args, "--model", str(ckpt), "--json", "--quiet"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert rows[0]["label"] == "no_speech" and rows[0]["score"] is None and rows[0]["reason"]
    assert rows[1]["speech_s"] > 1.0
    assert (
        main(["detect", *args, "--model", str(ckpt), "--quiet", "--csv", str(tmp_path / "o.csv")])
        == 0
    )
    out = capsys.readouterr().out
    assert "no_speech" in out and "no speech:" in out
    csv = (tmp_path / "o.csv").read_text().splitlines()
    assert csv[0].split(",")[:7] == [
        "path",
        "label",
        "score",
        "p_bonafide",
        "confident",
        "duration_s",
        "speech_s",
    ]
    # the abstention is not confident; the verdict of an uncalibrated model claims nothing
    assert csv[1].split(",")[4] == "false" and csv[2].split(",")[4] == ""


def _wav(x, sr=SR, subtype="PCM_16", fmt="WAV"):
    b = io.BytesIO()
    sf.write(b, x, sr, format=fmt, subtype=subtype)
    return b.getvalue()


def test_service_answers_no_speech_and_counts_it(ckpt):
    from fastapi.testclient import TestClient

    from spoofscope.serve import ServiceSettings, create_app

    app = create_app(Detector.from_checkpoint(ckpt), ServiceSettings())
    with TestClient(app) as c:
        r = c.post("/v1/detect", files={"file": ("quiet.wav", _wav(np.zeros(SR * 5)), "x")})
        assert r.status_code == 200
        d = r.json()
        assert d["label"] == "no_speech" and d["score"] is None and d["confident"] is False
        assert d["reason"].startswith("no speech") and d["error"] is None
        # 16 silent files in one batch: all abstain
        r = c.post(
            "/v1/detect/batch",
            files=[
                ("files", (f"q{i}.flac", _wav(np.zeros(SR * 2), fmt="FLAC"), "x"))
                for i in range(16)
            ],
        )
        assert {x["label"] for x in r.json()["results"]} == {"no_speech"}
        m = c.get("/metrics").text
    assert "spoofscope_no_speech_total 17.0" in m
    assert 'spoofscope_requests_total{endpoint="/v1/detect",outcome="no_speech"} 1.0' in m


def test_absurd_sample_rates_are_refused_before_decoding(ckpt):
    from fastapi.testclient import TestClient

    from spoofscope.serve import ServiceSettings, create_app

    one_hz = _wav(np.zeros(590, np.float32), sr=1, subtype="FLOAT")  # "590 s" in 2.4 KB
    with TestClient(create_app(Detector.from_checkpoint(ckpt), ServiceSettings())) as c:
        r = c.post("/v1/detect", files={"file": ("x.wav", one_hz, "x")})
    assert r.status_code == 415
    assert "sample rate 1 Hz is below 8000 Hz" in r.json()["error"]["message"]


class _SlowEngine(TorchEngine):
    """A real engine that also sleeps per batch (stands in for a big model)."""

    delay = 0.05

    def __call__(self, batch):
        time.sleep(self.delay)
        return super().__call__(batch)


def _slow_detector(ckpt, delay):
    from spoofscope.models import load_model

    eng = _SlowEngine(load_model(ckpt))
    eng.delay = delay
    return Detector(eng, limits=Limits(batch_size=1), name="slow")


def test_deadline_batch_cap_and_metrics_reasons(ckpt):
    from fastapi.testclient import TestClient

    from spoofscope.serve import ServiceSettings, create_app

    noise = (np.random.default_rng(0).standard_normal(SR * 60) * 0.1).astype(np.float32)
    s = ServiceSettings(request_timeout_s=0.3, max_batch_audio_s=100.0, max_upload_bytes=8_000_000)
    with TestClient(create_app(_slow_detector(ckpt, 0.05), s)) as c:
        r = c.post("/v1/detect", files={"file": ("long.flac", _wav(noise, fmt="FLAC"), "x")})
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        assert "0.3 s limit" in r.json()["error"]["message"]
        two = [("files", (f"{i}.flac", _wav(noise, fmt="FLAC"), "x")) for i in range(2)]
        r = c.post("/v1/detect/batch", files=two)
        assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_long"
        big = b"0" * 9_000_000
        r = c.post("/v1/detect", files={"file": ("big.wav", big, "x")})
        assert r.status_code == 413
        m = c.get("/metrics").text
    lines = [ln for ln in m.splitlines() if ln.startswith("spoofscope_requests_total{")]
    # one request, one reason
    assert sum('outcome="payload_too_large"' in ln for ln in lines) == 1
    assert not any('outcome="too_large"' in ln for ln in lines)


def test_a_long_upload_does_not_hold_up_a_short_one(ckpt):
    """The long-audio lane: with one worker, a 10-minute upload is held in scoring until a
    4-s request has been answered. Were both in one lane, the short one would wait behind the
    long one for ever (here: the 60-s client timeout)."""
    import asyncio

    import httpx
    from test_serve import _HeldDetector, _metric, _Server

    from spoofscope.serve import ServiceSettings, create_app

    class LongHeld(_HeldDetector):
        def detect_many(self, sources, sample_rate=None):
            if len(sources[0]) > 1_000_000:  # only the long upload waits
                return super().detect_many(sources, sample_rate)
            return Detector.detect_many(self, sources, sample_rate)

    rng = np.random.default_rng(1)
    long = _wav((rng.standard_normal(SR * 600) * 0.1).astype(np.float32), fmt="FLAC")
    short = _wav((rng.standard_normal(SR * 4) * 0.1).astype(np.float32))
    det = LongHeld(load_model_for(ckpt), limits=Limits(batch_size=8), name="held").hold()
    app = create_app(det, ServiceSettings(workers=1))
    with _Server(app) as srv:

        async def go():
            async with httpx.AsyncClient(timeout=60) as cl:
                post = lambda name, data: cl.post(  # noqa: E731
                    srv.url + "/v1/detect", files={"file": (name, data, "x")}
                )
                first = asyncio.create_task(post("long", long))
                while await asyncio.to_thread(_metric, srv.url, "spoofscope_inflight") < 1:
                    await asyncio.sleep(0.01)  # the long one is in its lane, held
                quick = await post("short", short)
                assert not first.done()
                det.release.set()
                return quick, await first

        quick, slow = asyncio.run(go())
    assert quick.status_code == slow.status_code == 200
    assert quick.json()["duration_s"] == 4.0 and slow.json()["duration_s"] == 600.0


def load_model_for(ckpt):
    from spoofscope.models import load_model

    return load_model(ckpt)


def _wait_ready(port: int, tries: int = 300) -> None:
    """Until the service on ``port`` answers /readyz (the model is loaded and warmed up)."""
    import httpx

    for _ in range(tries):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def _inflight(port: int) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return float(next(ln for ln in text.splitlines() if ln.startswith("spoofscope_inflight "))[20:])


def _wait_inflight(port: int, n: int, proc) -> None:
    """Until ``n`` requests are being scored (asserted: the test is void otherwise)."""
    for _ in range(3000):
        if _inflight(port) >= n:
            return
        assert proc.poll() is None, "the service exited"
        time.sleep(0.01)
    raise AssertionError(f"{n} requests never were in flight together")


def test_sigterm_drains_then_exits_and_startup_line(ckpt, tmp_path):
    """SIGTERM with two requests in flight: the short one finishes within the grace period
    (200, a decision row); the long one is stopped after it and answered with the JSON error
    503 shutting_down (a rejection row under its request id); the process exits with 0."""
    port = free_port()
    db = tmp_path / "audit.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spoofscope",
            "serve",
            "--model",
            str(ckpt),
            "--port",
            str(port),
            "--shutdown-grace",
            "5",
            "--hop",
            "0.25",
            "--request-timeout",
            "600",
            "--audit-db",
            str(db),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}" in first and "lcnn.ckpt" in first
        assert "engine onnx" in first and "limits:" in first and "600 s per request" in first
        import httpx

        _wait_ready(port)
        long = _wav(
            (np.random.default_rng(2).standard_normal(SR * 600) * 0.1).astype(np.float32),
            fmt="FLAC",
        )
        result, short = {}, {}

        def post(into, name, data):
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/detect", files={"file": (name, data, "x")}, timeout=300
            )
            into.update(status=r.status_code, body=r.json(), id=r.headers["x-request-id"])

        th = threading.Thread(target=post, args=(result, "long.flac", long))
        th.start()
        _wait_inflight(port, 1, proc)  # the long request is being scored (2,400 windows)
        tq = threading.Thread(target=post, args=(short, "s.wav", _wav(_speechlike(10.0))))
        tq.start()
        _wait_inflight(port, 2, proc)  # both are being scored
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        th.join(60)
        tq.join(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0
    assert short["status"] == 200 and short["body"]["label"] in ("bonafide", "spoof")
    assert result["status"] == 503, result
    assert result["body"]["error"]["code"] == "shutting_down"
    assert "shutting down" in result["body"]["error"]["message"]
    import sqlite3

    con = sqlite3.connect(db)
    rejected = con.execute("SELECT request_id, status, reason FROM rejections").fetchall()
    decided = con.execute("SELECT request_id FROM decisions").fetchall()
    assert rejected == [(result["id"], 503, "shutting_down")]
    assert decided == [(short["id"],)]
    assert "Traceback" not in proc.stderr.read()


def test_quiet_serve_prints_no_startup_line(ckpt):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spoofscope",
            "serve",
            "--model",
            str(ckpt),
            "--port",
            str(port),
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(port)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert err.strip() == ""


BAD_OPTIONS = [
    (["detect", "x.wav", "--hop", "0"], "--hop: 0 must be > 0"),
    (["detect", "x.wav", "--hop", "-1"], "--hop: -1 must be > 0"),
    (["detect", "x.wav", "--batch-size", "0"], "--batch-size: 0 must be >= 1"),
    (["detect", "x.wav", "--threshold", "nan"], "not a finite number"),
    (["detect", "x.wav", "--window-samples", "abc"], "'abc' is not an integer"),
    (["detect", "x.wav", "--min-speech", "-1"], "--min-speech: -1 must be >= 0"),
    (["serve", "--workers", "0"], "--workers: 0 must be >= 1"),
    (["serve", "--max-upload-mb", "-1"], "--max-upload-mb: -1 must be > 0"),
    (["serve", "--port", "70000"], "--port: 70000 must be <= 65535"),
    (["serve", "--request-timeout", "0"], "--request-timeout: 0 must be > 0"),
    (["serve", "--queue-size", "-3"], "--queue-size: -3 must be >= 0"),
    (["serve", "--max-duration", "inf"], "not a finite number"),
    (["calibrate", "--scores", "s", "--protocol", "p", "--prior", "1"], "--prior: 1 must be < 1"),
    (["calibrate", "--scores", "s", "--protocol", "p", "--band", "0.7"], "--band: 0.7 must be"),
    (
        ["score", "--checkpoint", "c", "--data", "d", "--out", "o", "--workers", "-1"],
        "--workers: -1 must be >= 0",
    ),
    (["demo-data", "out", "--seed", "x"], "'x' is not an integer"),
    (
        ["train", "configs/aasist.yaml", "--data", "d", "--out", "o", "epochs=abc"],
        "epochs: expected an integer, got 'abc'",
    ),
    (["audit", "summary", "--db", "x.sqlite", "--since", "yesterday"], "'yesterday' is neither"),
]


@pytest.mark.parametrize("args,needle", BAD_OPTIONS, ids=[" ".join(a[:3]) for a, _ in BAD_OPTIONS])
def test_every_bad_value_is_one_line_and_status_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    if args[0] == "audit":  # a real (empty) audit database, so that only --since is wrong
        from spoofscope.serve.audit import AuditLog

        AuditLog(tmp_path / "x.sqlite").close()
        args = [a.replace("x.sqlite", str(tmp_path / "x.sqlite")) for a in args]
    r = subprocess.run(
        [sys.executable, "-m", "spoofscope", *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]


def test_help_text_and_descriptions_everywhere():
    import argparse

    from spoofscope.cli import build_parser

    def walk(p, path):
        yield path, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    yield from walk(sp, path + [name])

    for path, p in walk(build_parser(), ["spoofscope"]):
        assert p.description, path
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction) or a.dest in ("help", "version"):
                continue
            assert a.help, (path, a.dest)
        text = " ".join(p.format_help().split())
        assert " ".join(p.description.split()) in text, path
        for a in p._actions:
            if a.default not in (None, False, argparse.SUPPRESS) and a.help and a.option_strings:
                assert "default" in p._get_formatter()._get_help_string(a), (path, a.dest)
            if a.option_strings and a.help and a.help != argparse.SUPPRESS:
                # every option is shown, with the start of its own help line
                assert a.option_strings[0] in text, (path, a.dest)
                assert " ".join(a.help.split()[:3]) in text, (path, a.dest)


def test_messages_in_our_words(tmp_path, capsys):
    from spoofscope.audio import AudioError, load_audio
    from spoofscope.evaluation import ScoreFileError, read_score_file

    (tmp_path / "text.mp3").write_bytes(b"hello " * 100)
    with pytest.raises(AudioError) as e:
        load_audio(tmp_path / "text.mp3")
    msg = str(e.value)
    assert "Errno" not in msg and "<none>" not in msg and "text.mp3" in msg
    assert "not a recognised audio file" in msg and "WAV, FLAC" in msg
    bad = np.zeros(SR, np.float32)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    with pytest.raises(AudioError) as e:
        load_audio(tmp_path / "nan.wav")
    assert e.value.kind == "invalid_samples" and "invalid samples" in str(e.value)
    (tmp_path / "scores.txt").write_bytes(b"LA_1 0.5\nLA_2 \xff\xfe\x00 0.1\n")
    with pytest.raises(ScoreFileError, match=r"scores.txt, line 2: not UTF-8"):
        read_score_file(tmp_path / "scores.txt")


def test_audit_refuses_a_missing_folder_and_records_refusals(ckpt, tmp_path, capsys):
    import hashlib
    import sqlite3

    from fastapi.testclient import TestClient

    from spoofscope.serve import ServiceSettings, create_app

    assert (
        main(
            [
                "serve",
                "--model",
                str(ckpt),
                "--audit-db",
                str(tmp_path / "nope" / "a.sqlite"),
                "--port",
                "1",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    db = tmp_path / "a.sqlite"
    s = ServiceSettings(api_keys=frozenset({"good"}), audit_db=str(db))
    with TestClient(create_app(Detector.from_checkpoint(ckpt), s)) as c:
        f = {"file": ("a.wav", _wav(_speechlike(2.0)), "x")}
        assert c.post("/v1/detect", files=f, headers={"X-API-Key": "wrong"}).status_code == 401
        assert (
            c.post(
                "/v1/detect", files={"file": ("b.wav", b"junk", "x")}, headers={"X-API-Key": "good"}
            ).status_code
            == 415
        )
        assert c.post("/v1/detect", files=f, headers={"X-API-Key": "good"}).status_code == 200
    rows = (
        sqlite3.connect(db)
        .execute("SELECT status, reason, api_key_sha256 FROM rejections ORDER BY time")
        .fetchall()
    )
    assert rows == [
        (401, "unauthorized", hashlib.sha256(b"wrong").hexdigest()),
        (415, "unsupported_audio", hashlib.sha256(b"good").hexdigest()),
    ]
    assert b"wrong" not in db.read_bytes()  # the key itself is never stored
    assert main(["audit", "summary", "--db", str(db), "--since", "1h", "--json"]) == 0
    summ = json.loads(capsys.readouterr().out)
    assert summ["decisions"] == 1 and summ["rejected"] == {
        "unauthorized": 1,
        "unsupported_audio": 1,
    }


def test_detect_shows_progress_in_audio_seconds_for_one_long_file(ckpt, tmp_path, capsys):
    x = (np.random.default_rng(3).standard_normal(SR * 120) * 0.1).astype(np.float32)
    sf.write(tmp_path / "long.flac", x, SR)
    assert main(["detect", str(tmp_path / "long.flac"), "--model", str(ckpt)]) == 0
    err = capsys.readouterr().err
    assert "120/120 s audio" in err
    assert main(["detect", str(tmp_path / "long.flac"), "--model", str(ckpt), "--quiet"]) == 0
    assert "s audio" not in capsys.readouterr().err


@pytest.mark.skipif(_chromium() is None, reason="Debian chromium is not installed")
def test_offline_docs_and_no_speech_page_in_headless_chromium(ckpt, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    from test_serve import _launch_chromium, _Server

    from spoofscope.serve import ServiceSettings, create_app

    (tmp_path / "quiet.wav").write_bytes(_wav(np.zeros(SR * 3)))
    app = create_app(Detector.from_checkpoint(ckpt), ServiceSettings())
    with _Server(app) as srv:
        import httpx

        html = httpx.get(srv.url + "/docs").text
        assert "/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html
        with pw.sync_playwright() as p:
            browser = _launch_chromium(p)
            page = browser.new_page()
            external = []
            page.on(
                "request",
                lambda r: (
                    external.append(r.url)
                    if not r.url.startswith(srv.url) and not r.url.startswith("data:")
                    else None
                ),
            )
            page.goto(srv.url + "/docs")
            page.wait_for_selector(".opblock", timeout=30000)
            ops = page.inner_text("#swagger-ui")
            page.goto(srv.url + "/")
            page.set_input_files("#file", str(tmp_path / "quiet.wav"))
            page.wait_for_selector("#verdict[data-label]", timeout=30000)
            label = page.get_attribute("#verdict", "data-label")
            text = page.inner_text("#verdict") + page.inner_text("#details")
            browser.close()
    assert "/v1/detect" in ops and "/v1/detect/batch" in ops and "/healthz" in ops
    assert external == []
    assert label == "no_speech" and "No verdict" in text and "no speech" in text
