"""The detection service: API, limits, errors, auth, metrics, logs, audit, overload, web page."""

import asyncio
import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi")
from _server import LocalServer as _Server  # noqa: E402
from _server import chromium_path as _chromium  # noqa: E402
from _server import free_port  # noqa: E402
from _server import launch_chromium as _launch_chromium  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.cli import main  # noqa: E402
from spoofscope.infer import Detector  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402
from spoofscope.serve import ServiceSettings, create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _wav(seconds=2.0, seed=0, fmt="WAV", subtype=None) -> bytes:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        spoofscope.create_model("lfcc-lcnn"), tmp_path_factory.mktemp("m") / "lcnn.ckpt"
    )


def _client(ckpt, **kw):
    det = Detector.from_checkpoint(ckpt)
    return TestClient(create_app(det, ServiceSettings(**kw)))


def test_detect_returns_the_cli_object(ckpt):
    data = _wav(3.0)
    with _client(ckpt) as c:
        r = c.post("/v1/detect", files={"file": ("a.wav", data, "audio/wav")})
    assert r.status_code == 200
    d = r.json()
    for k in (
        "path",
        "score",
        "label",
        "p_bonafide",
        "confident",
        "duration_s",
        "windows",
        "error",
        "request_id",
        "processing_ms",
    ):
        assert k in d
    direct = Detector.from_checkpoint(ckpt)(data)
    assert d["score"] == pytest.approx(direct.score, abs=1e-6)
    assert d["path"] == "a.wav" and d["duration_s"] == pytest.approx(3.0)
    assert r.headers["x-request-id"] == d["request_id"]


def test_batch_isolates_failures(ckpt):
    with _client(ckpt) as c:
        r = c.post(
            "/v1/detect/batch",
            files=[
                ("files", ("a.wav", _wav(), "audio/wav")),
                ("files", ("bad.wav", b"not audio", "audio/wav")),
                ("files", ("b.flac", _wav(fmt="FLAC"), "x")),
            ],
        )
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["path"] for x in res] == ["a.wav", "bad.wav", "b.flac"]
    assert res[0]["error"] is None and res[2]["error"] is None
    assert "bad.wav" in res[1]["error"] and res[1]["score"] is None


def _err(r, status, code=None):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert set(e) == {"code", "message"} and e["message"]
    if code:
        assert e["code"] == code
    return e["message"]


def test_bad_input_never_500(ckpt):
    flac = _wav(2.0, fmt="FLAC")
    mp3 = _wav(2.0, fmt="MP3")
    bomb = bytearray(_wav(0.5))
    i = bomb.index(b"data")
    bomb[i + 4 : i + 8] = struct.pack("<I", 0x7FFFFFF0)  # claims 2 GB of samples
    with _client(ckpt, max_upload_bytes=200_000, max_duration_s=5.0) as c:
        post = lambda name, data: c.post("/v1/detect", files={"file": (name, data, "x")})  # noqa
        msg = _err(
            c.post("/v1/detect", files={"file": ("big.wav", _wav(7.0), "x")}),
            413,
            "payload_too_large",
        )
        assert "200000" in msg
        _err(post("long.flac", _wav(6.0, fmt="FLAC", subtype="PCM_16")), 413, "audio_too_long")
        assert "noise.wav" in _err(post("noise.wav", os.urandom(3000)), 415, "unsupported_audio")
        _err(post("empty.wav", b""), 422, "empty_audio")
        _err(c.post("/v1/detect", files={"other": ("a.wav", _wav(), "x")}), 422, "missing_file")
        _err(c.post("/v1/detect", content=b"raw bytes"), 422, "missing_file")
        assert "truncated" in _err(post("cut.flac", flac[: len(flac) // 2]), 415)
        assert "truncated" in _err(post("bomb.wav", bytes(bomb)), 415)
        # a misleading extension: decoding goes by content, not by name
        assert post("really_mp3.wav", mp3).status_code == 200
        _err(post("text.mp3", b"hello " * 100), 415)
        _err(c.get("/nope"), 404)
        _err(c.post("/v1/detect", files={"file": ("silent.wav", _wav(0.0), "x")}), 422)


def test_health_ready_metrics(ckpt):
    with _client(ckpt) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ready"
        c.post("/v1/detect", files={"file": ("a.wav", _wav(), "x")})
        c.post("/v1/detect", files={"file": ("b.wav", b"junk", "x")})
        m = c.get("/metrics").text
    assert 'spoofscope_requests_total{endpoint="/v1/detect",outcome="ok"} 1.0' in m
    assert 'outcome="unsupported_audio"' in m
    assert "spoofscope_request_seconds_bucket" in m
    assert "spoofscope_audio_seconds_total 2.0" in m
    assert "spoofscope_queue_depth" in m and "spoofscope_low_confidence_total" in m


def test_openapi_documents_the_routes(ckpt):
    with _client(ckpt) as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    assert {"/v1/detect", "/v1/detect/batch", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body


def test_api_keys(ckpt, tmp_path, monkeypatch):
    from spoofscope.serve import load_api_keys

    (tmp_path / "keys.txt").write_text("# service keys\nalpha\n")
    monkeypatch.setenv("SPOOFSCOPE_API_KEYS", "beta, gamma")
    keys = load_api_keys(str(tmp_path / "keys.txt"))
    assert keys == {"alpha", "beta", "gamma"}
    with _client(ckpt, api_keys=keys) as c:
        f = {"file": ("a.wav", _wav(), "x")}
        _err(c.post("/v1/detect", files=f), 401, "unauthorized")
        _err(c.post("/v1/detect", files=f, headers={"X-API-Key": "wrong"}), 401)
        assert c.post("/v1/detect", files=f, headers={"X-API-Key": "alpha"}).status_code == 200
        assert (
            c.post(
                "/v1/detect/batch",
                files=[("files", ("a.wav", _wav(), "x"))],
                headers={"Authorization": "Bearer gamma"},
            ).status_code
            == 200
        )
        _err(c.post("/v1/detect/batch", files=[("files", ("a.wav", _wav(), "x"))]), 401)
        assert c.get("/healthz").status_code == 200


def test_logs_and_audit_trail(ckpt, tmp_path, caplog, capsys):
    import hashlib

    db = tmp_path / "audit.sqlite"
    data = _wav(2.5, seed=2)  # the last upload below
    with caplog.at_level(logging.INFO, logger="spoofscope.serve"):
        with _client(ckpt, audit_db=str(db), model_version="test-1") as c:
            for seed in range(3):
                c.post("/v1/detect", files={"file": ("a.wav", _wav(2.5, seed=seed), "x")})
            c.post("/v1/detect", files={"file": ("x.wav", b"junk", "x")})
    lines = [json.loads(r.message) for r in caplog.records if r.name == "spoofscope.serve"]
    det = [x for x in lines if x["path"] == "/v1/detect"]
    assert len(det) == 4 and all(len(x["request_id"]) == 32 for x in det)
    assert [x["outcome"] for x in det] == ["ok", "ok", "ok", "unsupported_audio"]
    assert det[0]["score"] is not None and "duration_ms" in det[0]
    assert all("RIFF" not in r.message for r in caplog.records)  # never the audio
    import sqlite3

    rows = (
        sqlite3.connect(db)
        .execute("SELECT sha256, model, version, label FROM decisions")
        .fetchall()
    )
    assert len(rows) == 3  # errors are not decisions
    assert rows[2][0] == hashlib.sha256(data).hexdigest()
    # the model by file name and weights digest, never the server's path to it
    digest = hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()[:12]
    assert rows[0][1:3] == (f"lcnn.ckpt (weights sha256 {digest})", "test-1")
    assert main(["audit", "summary", "--db", str(db), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["decisions"] == 3 and sum(s["by_label"].values()) == 3
    decided = sqlite3.connect(db).execute("SELECT score, confident FROM decisions").fetchall()
    # an uncalibrated detector claims no confidence: stored as NULL, counted apart
    assert [c for _, c in decided] == [None] * 3
    assert s["no_confidence_claimed"] == 3 and s["low_confidence_rate"] is None
    scores = np.array([sc for sc, _ in decided])
    assert s["score"]["quantiles"]["p50"] == pytest.approx(np.median(scores))
    assert s["score"]["mean"] == pytest.approx(scores.mean())


def test_uploads_are_not_written_to_disk(ckpt, monkeypatch, tmp_path):
    """An upload over starlette's 1 MiB spool limit (a form parser would roll it over to a
    temporary file) is parsed in memory: while the request runs, no file is opened for
    writing by any means (open, os.open, the tempfile functions, where they are looked up:
    starlette binds SpooledTemporaryFile at import), and the private temporary folder and
    working directory it runs in stay empty."""
    import builtins
    import io
    import tempfile

    import starlette.formparsers as fp

    tmp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    tmp.mkdir()
    cwd.mkdir()
    opened = []

    def watch(module, name):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: opened.append(name) or real(*a, **k))

    real_open, real_os_open = builtins.open, os.open

    def open_(file, mode="r", *a, **k):
        if set(mode) & set("wax+"):
            opened.append(f"open({file!r}, {mode!r})")
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
            opened.append(f"os.open({path!r})")
        return real_os_open(path, flags, *a, **k)

    big = _wav(40.0)  # 1.28 MB of 16-bit PCM
    assert len(big) > fp.MultiPartParser.spool_max_size
    with _client(ckpt) as c:
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        monkeypatch.chdir(cwd)
        watch(fp, "SpooledTemporaryFile")
        for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
            watch(tempfile, name)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(os, "open", os_open)
        r = c.post("/v1/detect", files={"file": ("a.wav", big, "x")})
        monkeypatch.undo()
        assert r.status_code == 200 and r.json()["duration_s"] == 40.0
    assert opened == []
    assert list(tmp.iterdir()) == [] and list(cwd.iterdir()) == []
    # the watchers see what they watch: the same writes, made on purpose, are caught
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    with open(tmp / "x", "wb") as f:  # noqa: PTH123
        f.write(b"x")
    os.close(os.open(tmp / "y", os.O_WRONLY | os.O_CREAT))
    monkeypatch.undo()
    assert len(opened) == 2


class _HeldDetector(Detector):
    """Holds every request until ``release`` is set (the test decides when work finishes)."""

    def hold(self):
        self.release = threading.Event()
        return self

    def detect_many(self, sources, sample_rate=None):
        assert self.release.wait(60), "never released"
        return super().detect_many(sources, sample_rate)


def _metric(url: str, name: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics").text
    return float(next(ln for ln in text.splitlines() if ln.startswith(name + " ")).split()[-1])


def test_overload_gives_503_and_load_stays_bounded(ckpt):
    """One worker and a queue of one: with every request held, the 3rd to 8th of 8 at once
    are answered 503 at once; released, the two admitted ones are scored."""
    import httpx

    base = Detector.from_checkpoint(ckpt)
    held = _HeldDetector(base.model, name="held").hold()
    app = create_app(held, ServiceSettings(workers=1, queue_size=1))
    data = _wav(1.0)
    with _Server(app) as srv:

        async def burst(n):
            async with httpx.AsyncClient(timeout=30) as cl:
                tasks = [
                    asyncio.create_task(
                        cl.post(srv.url + "/v1/detect", files={"file": ("a.wav", data, "x")})
                    )
                    for _ in range(n)
                ]
                rejected = []
                for t in asyncio.as_completed(tasks):  # the refusals come while both are held
                    r = await t
                    rejected.append(r)
                    if len(rejected) == n - 2:
                        break
                assert all(r.status_code == 503 for r in rejected)
                assert await asyncio.to_thread(_metric, srv.url, "spoofscope_inflight") == 2
                held.release.set()
                return await asyncio.gather(*tasks)

        rs = asyncio.run(burst(8))
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 200] + [503] * 6
    busy = next(r for r in rs if r.status_code == 503)
    assert busy.headers["retry-after"] == "2" and busy.json()["error"]["code"] == "overloaded"


def test_load_short(ckpt):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import httpx
    from load_test import run_load

    app = create_app(Detector.from_checkpoint(ckpt), ServiceSettings(workers=2, queue_size=4))
    with _Server(app) as srv:
        rep = run_load(srv.url, n_requests=48, concurrency=8, audio=_wav(2.0))
        metrics = httpx.get(srv.url + "/metrics").text
    assert rep["errors_other_than_503"] == 0
    assert rep["ok"] + rep["rejected_503"] == 48 and rep["ok"] > 0

    def value(prefix):
        return float(next(ln for ln in metrics.splitlines() if ln.startswith(prefix)).split()[-1])

    # what the clients saw is what the service counted: every answer, under its outcome, and
    # 2 s of audio per scored request; its latency histogram holds every request
    ep = 'endpoint="/v1/detect"'
    assert value(f'spoofscope_requests_total{{{ep},outcome="ok"}}') == rep["ok"]
    if rep["rejected_503"]:
        assert (
            value(f'spoofscope_requests_total{{{ep},outcome="overloaded"}}') == rep["rejected_503"]
        )
    assert value("spoofscope_audio_seconds_total") == pytest.approx(2.0 * rep["ok"])
    assert value(f"spoofscope_request_seconds_count{{{ep}}}") == 48
    assert value("spoofscope_inflight") == 0  # nothing left behind


def test_truncated_upload_does_not_hurt_the_server(ckpt):
    app = create_app(Detector.from_checkpoint(ckpt), ServiceSettings())
    with _Server(app) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=zz\r\nContent-Length: 100000\r\n\r\n--zz\r\nContent-Disposition: "
            b'form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
        )
        s.close()  # the client goes away mid-upload
        import httpx

        # until the server has dealt with it (counted as an incomplete upload)
        line = 'spoofscope_requests_total{endpoint="/v1/detect",outcome="incomplete_upload"} 1.0'
        for _ in range(1000):
            if line in httpx.get(srv.url + "/metrics").text:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the broken upload was never counted")
        assert httpx.get(srv.url + "/healthz").status_code == 200
        r = httpx.post(srv.url + "/v1/detect", files={"file": ("a.wav", _wav(), "x")})
        assert r.status_code == 200


@pytest.mark.skipif(
    _chromium() is None, reason="Debian chromium is not installed (scripts/setup.sh installs it)"
)
def test_web_page_in_headless_chromium(ckpt, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    # partially spoofed: a tone with 2 s of noise spliced in after 0.3 s of silence
    rng = np.random.default_rng(5)
    t = np.arange(16000 * 8) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    x[int(16000 * 2.7) : 16000 * 3] = 0.0
    x[16000 * 3 : 16000 * 5] = 0.2 * rng.standard_normal(32000)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV")
    data = buf.getvalue()
    (tmp_path / "clip.wav").write_bytes(data)
    app = create_app(Detector.from_checkpoint(ckpt), ServiceSettings())
    with _Server(app) as srv:
        import httpx

        api = httpx.post(srv.url + "/v1/detect", files={"file": ("clip.wav", data, "x")}).json()
        with pw.sync_playwright() as p:
            browser = _launch_chromium(p)
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.set_input_files("#file", str(tmp_path / "clip.wav"))
            page.wait_for_selector("#verdict[data-label]", timeout=30000)
            label = page.get_attribute("#verdict", "data-label")
            p_ui = float(page.get_attribute("#details", "data-p"))
            text = page.inner_text("#verdict")
            page.wait_for_selector("#where button.seg", timeout=30000)
            drawn = page.eval_on_selector_all(
                "#where button.seg",
                "bs => bs.map(b => [+b.dataset.start_s, +b.dataset.end_s, b.dataset.label])",
            )
            shaded = json.loads(page.get_attribute("#wave", "data-spoof"))
            rttm_href = page.get_attribute("#dl-rttm", "href")
            page.screenshot(path=str(tmp_path / "page.png"))
            browser.close()
    # the segments drawn and listed are the service's, to the millisecond
    want = [[g["start_s"], g["end_s"], g["label"]] for g in api["segments"]]
    assert drawn == want and len(want) >= 1
    assert shaded == [[a, b] for a, b, lab in want if lab == "spoof"]
    assert rttm_href.startswith("blob:")
    assert label == api["label"]
    assert p_ui == pytest.approx(api["p_bonafide"], abs=1e-9)
    assert ("Spoof" in text) == (api["label"] == "spoof")


def test_serve_fails_fast_without_weights(tmp_path, capsys):
    assert main(["serve", "--weights", str(tmp_path / "missing.pth"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "missing.pth" in err


def test_dockerfile_command_runs_outside_docker(ckpt, tmp_path):
    """No Docker engine here: run the image's CMD as written (weights path and port swapped
    for local ones) and probe it the way its HEALTHCHECK does."""
    text = (REPO / "Dockerfile").read_text()
    cmd_line = next(ln for ln in text.splitlines() if ln.startswith("CMD "))
    argv = json.loads(cmd_line[4:])
    assert argv[:2] == ["spoofscope", "serve"]
    port = free_port()
    swap = {
        "/models/AASIST.pth": str(ckpt),
        "8000": str(port),
        "0.0.0.0": "127.0.0.1",
        "aasist": str(ckpt),
        "/home/app/audit.sqlite": str(tmp_path / "audit.sqlite"),
    }
    argv = [swap.get(a, a) for a in argv]
    hc = next(ln for ln in text.splitlines() if "urlopen" in ln)
    probe = hc.split('python -c "', 1)[1].rsplit('"', 1)[0].replace("8000", str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoofscope", *argv[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ok = False
        for _ in range(120):
            if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
                ok = True
                break
            time.sleep(0.5)
        assert ok, proc.stderr.read1(4000) if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        proc.wait(10)
