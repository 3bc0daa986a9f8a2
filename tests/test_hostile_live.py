"""The live and shared surfaces under hostile use: Twilio and native streams, metrics, the
PostgreSQL audit trail, stream ownership, and the stdin, ``evaluate``, ``hf:`` and ``--ray``
commands, each through the real endpoint (uvicorn, websockets, PostgreSQL) or the real CLI."""

import base64
import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
ws_client = pytest.importorskip("websockets.sync.client")
import httpx  # noqa: E402
from _server import ServeProcess  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402

SR = 16000
CONFIGS = Path(__file__).parents[1] / "configs"
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        spoofscope.create_model("lfcc-lcnn"), tmp_path_factory.mktemp("m") / "lcnn.ckpt"
    )


def _tone(seconds=3.0, rate=SR):
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


def _pcm(x) -> bytes:
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


def _ws(url: str, path: str) -> str:
    return url.replace("http", "ws") + path


def _events(conn, limit_s=60, parse=json.loads):
    """Every message until the server closes (or is silent for ``limit_s``), parsed."""
    out = []
    try:
        while True:
            out.append(parse(conn.recv(timeout=limit_s)))
    except (ConnectionClosed, TimeoutError):
        pass
    return out


def _kill(conn) -> None:
    """The client vanishes without a close frame."""
    try:
        conn.socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.socket.close()


# ---- 1. Twilio start messages are checked; a stream's slot is freed on every exit ----------


def _twilio_start(fmt=None, params=None, tracks=None, drop=()):
    start = {
        "streamSid": "MZr0",
        "callSid": "CAr0",
        "tracks": ["inbound"] if tracks is None else tracks,
        "customParameters": {} if params is None else params,
        "mediaFormat": {
            "encoding": "audio/x-mulaw",
            "sampleRate": 8000,
            "channels": 1,
            **(fmt or {}),
        },
    }
    for k in drop:
        del start[k]
    return {"event": "start", "streamSid": "MZr0", "start": start}


def _media(payload):
    return {
        "event": "media",
        "streamSid": "MZr0",
        "media": {"track": "inbound", "payload": payload},
    }


GOOD_MEDIA = _media(base64.b64encode(b"\xff" * 160).decode())

# (start message, the media message after it, the field the refusal names)
BAD_TWILIO = [
    (_twilio_start(params="x"), GOOD_MEDIA, "customParameters"),
    (_twilio_start(drop=("mediaFormat",)), GOOD_MEDIA, "mediaFormat"),
    (
        _twilio_start({"sampleRate": 1}),
        _media(base64.b64encode(b"\xff" * 32).decode()),
        "sampleRate",
    ),
    (_twilio_start({"sampleRate": 0}), GOOD_MEDIA, "sampleRate"),
    (_twilio_start({"sampleRate": -8000}), GOOD_MEDIA, "sampleRate"),
    (_twilio_start({"sampleRate": "8000"}), GOOD_MEDIA, "sampleRate"),
    (_twilio_start({"channels": 0}), GOOD_MEDIA, "channels"),
    (_twilio_start({"channels": 100}), GOOD_MEDIA, "channels"),
    (_twilio_start(params={"track": "sideways"}), GOOD_MEDIA, "track"),
    (_twilio_start(tracks=["sideways"]), GOOD_MEDIA, "tracks"),
    (_twilio_start(), {"event": "media", "streamSid": "MZr0", "media": "x"}, "media"),
    (_twilio_start(), _media(12345), "payload"),
]


def test_bad_twilio_starts_are_refused_and_every_slot_comes_back(ckpt, tmp_path):
    """Each bad start (or bad media message) closes 1007 naming the field and leaves one
    audit row; the client then vanishes; afterwards --max-streams good streams all start,
    no stream is left live, an unknown id is a 404, and SIGTERM ends the process."""
    db = tmp_path / "audit.sqlite"
    srv = ServeProcess(
        ckpt, "--max-streams", 2, "--audit-db", db, "--stream-idle", 5, "--shutdown-grace", 1,
        "--engine", "torch", "--quiet",
    )  # fmt: skip
    try:
        closes = []
        for start, media, field in BAD_TWILIO:
            c = ws_client.connect(_ws(srv.url, "/v1/stream/twilio"))
            c.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            c.send(json.dumps(start))
            try:
                c.send(json.dumps(media))
                c.recv(timeout=20)
            except (ConnectionClosed, TimeoutError):
                pass
            closes.append((c.close_code, c.close_reason or "", field))
            _kill(c)
        for code, reason, field in closes:
            assert code == 1007 and field in reason, (code, reason, field)
        r = httpx.get(srv.url + "/v1/streams/CAr0")
        assert r.status_code in (200, 404) and "Error" not in r.text
        metrics = httpx.get(srv.url + "/metrics").text
        assert "spoofscope_streams_active 0.0" in metrics
        good = [ws_client.connect(_ws(srv.url, "/v1/stream")) for _ in range(2)]
        for c in good:
            c.send(json.dumps({"type": "start", "sample_rate": SR}))
        assert [json.loads(c.recv(timeout=30))["type"] for c in good] == ["started"] * 2
        for c in good:
            c.send(_pcm(_tone(2.0)))
            c.send(json.dumps({"type": "stop"}))
            assert _events(c)[-1]["type"] == "summary"
            c.close()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    con = sqlite3.connect(db)
    # the starts refused before any audio: a rejection each; the two refused media messages
    # end streams that had judged nothing: a rejection each too
    reasons = [r for (r,) in con.execute("SELECT reason FROM rejections")]
    assert len(reasons) == len(BAD_TWILIO), reasons
    assert con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 2


def test_a_stream_whose_ending_fails_still_frees_its_slot(ckpt, monkeypatch):
    """The exception path of a stream's end: closing the detector's stream raises; the
    client gets 1011, and with --max-streams 1 the next stream still starts."""
    from spoofscope.infer.detector import DetectorStream

    def broken(self):
        raise RuntimeError("the stream's end failed")

    with _local(ckpt, max_streams=1, stream_idle_s=5.0) as srv:
        with monkeypatch.context() as m:
            m.setattr(DetectorStream, "close", broken)
            c = ws_client.connect(_ws(srv.url, "/v1/stream"))
            c.send(json.dumps({"type": "start", "sample_rate": SR}))
            assert json.loads(c.recv(timeout=30))["type"] == "started"
            c.send(_pcm(_tone(2.0)))
            c.send(json.dumps({"type": "stop"}))
            ev = _events(c)
            assert c.close_code == 1011 and not any(e["type"] == "summary" for e in ev)
        assert "spoofscope_streams_active 0.0" in httpx.get(srv.url + "/metrics").text
        c = ws_client.connect(_ws(srv.url, "/v1/stream"))
        c.send(json.dumps({"type": "start", "sample_rate": SR}))
        assert json.loads(c.recv(timeout=30))["type"] == "started"
        c.send(_pcm(_tone(2.0)))
        c.send(json.dumps({"type": "stop"}))
        assert _events(c)[-1]["type"] == "summary"


# ---- 2. Metric labels and audit rows are bounded whatever paths clients ask for ---------------


def _local(ckpt, **settings):
    from _server import LocalServer

    from spoofscope.infer import Detector
    from spoofscope.serve import ServiceSettings, create_app

    det = Detector.from_checkpoint(ckpt)
    return LocalServer(create_app(det, ServiceSettings(**settings)))


def _series(metrics: str) -> list[str]:
    return [ln for ln in metrics.splitlines() if ln and not ln.startswith("#")]


def test_random_paths_add_no_metric_series_and_no_long_rows(ckpt, tmp_path):
    db = tmp_path / "audit.sqlite"
    with _local(ckpt, audit_db=str(db)) as srv, httpx.Client(base_url=srv.url) as client:
        assert client.get("/v1/streams/first").status_code == 404
        before = _series(client.get("/metrics").text)
        for i in range(1000):
            assert client.get(f"/v1/streams/{i:04d}-{i * 7919 % 10007}").status_code == 404
        r = client.get("/v1/streams/" + "x" * 60_000)
        after = _series(client.get("/metrics").text)
    assert r.status_code == 404 and len(r.content) < 1000
    assert len(after) == len(before)
    assert 'spoofscope_requests_total{endpoint="/v1/streams/{sid}",outcome="unknown_stream"}' in (
        "\n".join(after)
    )
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM rejections").fetchone()[0] == 1002
    assert con.execute("SELECT MAX(LENGTH(endpoint)) FROM rejections").fetchone()[0] <= 200


def test_the_audit_keeps_a_bounded_prefix_of_any_endpoint(tmp_path):
    """The audit's own cap, whatever a caller gives it (the service gives route templates
    today): a 100 KB endpoint is stored as its first characters, at most 200."""
    from spoofscope.serve.audit import AuditLog

    long = "/v1/streams/" + "x" * 100_000
    AuditLog(tmp_path / "audit.sqlite").record_rejection("r1", long, 404, "unknown_stream", None)
    (stored,) = (
        sqlite3.connect(tmp_path / "audit.sqlite")
        .execute("SELECT endpoint FROM rejections")
        .fetchone()
    )
    assert 0 < len(stored) <= 200 and long.startswith(stored), len(stored)


# ---- 3. A stream's verdict is not final without its row; its end reaches the shared table ---


@pytest.fixture(scope="module")
def pg():
    pytest.importorskip("psycopg")
    pytest.importorskip("psycopg_pool")
    from _postgres import PgServer, pg_bin

    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    server = PgServer().init()
    yield server
    server.close()


def _stream_begun(srv, seconds=3.0):
    """A stream that has sent ``seconds`` of audio and whose live state is shared."""
    c = ws_client.connect(_ws(srv.url, "/v1/stream"))
    c.send(json.dumps({"type": "start", "sample_rate": SR}))
    sid = json.loads(c.recv(timeout=30))["stream_id"]
    c.send(_pcm(_tone(seconds)))
    time.sleep(1.0)
    return c, sid


def test_a_stream_fails_closed_when_its_row_cannot_be_written(ckpt, pg):
    import threading

    from _postgres import rows

    # replica A retries long enough for the database to come back; replica B does not
    a = _local(ckpt, audit_db=pg.url, audit_retry_s=30.0, stream_idle_s=5.0, stream_max_lag_s=1.0)
    b = _local(ckpt, audit_db=pg.url, audit_retry_s=1.0, stream_idle_s=5.0, stream_max_lag_s=1.0)
    with a, b:
        c, sid = _stream_begun(a)
        pg.stop("immediate")
        threading.Timer(3.0, pg.start).start()
        c.send(json.dumps({"type": "stop"}))
        ev = _events(c)
        assert ev[-1]["type"] == "summary" and ev[-1]["ended_by"] == "stop"
        assert c.close_code == 1000
        got = rows(pg.url, f"SELECT request_id, score FROM decisions WHERE request_id = '{sid}'")
        assert got == [(sid, ev[-1]["score"])]
        state = rows(pg.url, f"SELECT state FROM streams WHERE id = '{sid}'")[0][0]
        assert json.loads(state)["state"] == "ended"

        c, sid = _stream_begun(b)
        pg.stop("immediate")
        c.send(json.dumps({"type": "stop"}))
        ev = _events(c)
        pg.start()
        assert not any(e["type"] == "summary" for e in ev), ev[-1]
        assert ev[-1]["type"] == "error" and ev[-1]["code"] == "audit_unavailable"
        assert c.close_code == 1011
        assert rows(pg.url, f"SELECT 1 FROM decisions WHERE request_id = '{sid}'") == []
        mine = httpx.get(b.url + f"/v1/streams/{sid}").json()
        assert mine["state"] == "ended" and "summary" not in mine
        # the other replica finds the stream no longer live once its state is stale
        # (stream_idle_s + stream_max_lag_s + 5 s = 11 s without news)
        for _ in range(60):
            other = httpx.get(a.url + f"/v1/streams/{sid}").json()
            if other["state"] != "live":
                break
            time.sleep(0.5)
        assert other["state"] == "stale" and "summary" not in other
        state = rows(pg.url, f"SELECT state FROM streams WHERE id = '{sid}'")[0][0]
        assert json.loads(state)["state"] == "stale"


# ---- 4. No password in any error, log or answer; /readyz names nothing -----------------------


def _serve_error(ckpt, audit_db: str) -> tuple[int, str]:
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "spoofscope", "serve", "--model", str(ckpt), "--audit-db", audit_db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return p.returncode, p.stderr


def test_passwords_are_masked_in_every_form_and_readyz_names_nothing(ckpt, pg, tmp_path):
    from spoofscope.errors import ConfigError
    from spoofscope.serve.audit import AuditLog

    nowhere = tmp_path / "nosuchdir"
    targets = (
        f"postgresql:///audit?host={nowhere}&password=SECRET1",
        f"host={nowhere} password=SECRET1 dbname=audit",
        f"postgresql://spoofscope:SECRET1@127.0.0.1:{pg.port}/nosuchdb",
        f"host=127.0.0.1 port={pg.port} password='SECRET1 x' user=nobody dbname=audit",
    )
    for target in targets[:2]:  # the command
        code, err = _serve_error(ckpt, target)
        assert len(err.strip().splitlines()) == 1, err
        last = err.strip()
        assert code == 2 and "SECRET1" not in err, err
        assert last.startswith("spoofscope serve: error: audit database") and "***" in last, last
        assert "cannot connect" in last, last
    for target in targets:  # every form, with the server's own refusals
        with pytest.raises(ConfigError) as e:
            AuditLog(target)
        assert "SECRET1" not in str(e.value) and "***" in str(e.value), e.value
    # a key=value connection string is PostgreSQL, not a SQLite file name
    conninfo = f"host=127.0.0.1 port={pg.port} user=spoofscope password=secret dbname=audit"
    srv = ServeProcess(ckpt, "--audit-db", conninfo, "--quiet", "--shutdown-grace", 0)
    try:
        pg.stop("immediate")
        r = httpx.get(srv.url + "/readyz", timeout=30)
        pg.start()
        assert r.status_code == 503
        assert r.json()["error"]["message"] == "audit database unavailable"
    finally:
        err = srv.stop()
    assert "cannot be reached" in err and "password=***" in err and "secret" not in err


# ---- 5. No NaN or Infinity in anything spoofscope writes ---------------------------------------


def _strict(line: str):
    """JSON as the standard has it: NaN, Infinity and -Infinity are errors."""

    def refuse(token):
        raise ValueError(f"{token} in {line[:200]}")

    return json.loads(line, parse_constant=refuse)


def test_loud_f32_stream_gives_strict_json_events(ckpt):
    x = _tone(6.0) * 1e30
    with _local(ckpt) as srv, ws_client.connect(_ws(srv.url, "/v1/stream")) as c:
        c.send(json.dumps({"type": "start", "sample_rate": SR, "encoding": "f32le"}))
        c.send(x.astype("<f4").tobytes())
        c.send(json.dumps({"type": "stop"}))
        events = _events(c, parse=_strict)
    wins = [e for e in events if e["type"] == "window"]
    assert wins and all(isinstance(e["score"], float) for e in wins)
    assert events[-1]["type"] == "summary" and isinstance(events[-1]["score"], float)


def test_result_json_is_strict_at_the_boundary():
    from spoofscope.infer.detector import DetectionResult, to_json

    r = DetectionResult(path="x", score=float("nan"), p_bonafide=float("inf"))
    r.windows = [{"start_s": 0.0, "end_s": 4.0, "score": float("-inf")}]
    for line in (to_json(r.to_dict()), json.dumps(r.to_dict())):  # to_dict itself is strict
        d = _strict(line)
        assert d["score"] is None and d["p_bonafide"] is None and d["windows"][0]["score"] is None


def test_stream_events_are_strict_json_whatever_the_numbers(ckpt, monkeypatch):
    """The stream's serialisation boundary on its own: a running verdict made of NaN and
    infinities still goes out as standard JSON (null)."""
    from spoofscope.infer.detector import DetectorStream

    bad = {"label": "spoof", "score_so_far": float("nan"), "p_bonafide": float("inf"),
           "confident": None}  # fmt: skip
    monkeypatch.setattr(DetectorStream, "_running", lambda self: dict(bad))
    with _local(ckpt) as srv, ws_client.connect(_ws(srv.url, "/v1/stream")) as c:
        c.send(json.dumps({"type": "start", "sample_rate": SR}))
        c.send(_pcm(_tone(6.0)))
        c.send(json.dumps({"type": "stop"}))
        events = _events(c, parse=_strict)
    wins = [e for e in events if e["type"] == "window"]
    assert wins and all(e["score_so_far"] is None and e["p_bonafide"] is None for e in wins)


def test_a_model_giving_nan_fails_the_file_in_strict_json(tmp_path):
    """A model whose output is NaN: the file is an error naming the non-finite score (exit
    1), never a verdict drawn from NaN."""
    import soundfile as sf

    torch.manual_seed(0)
    model = spoofscope.create_model("lfcc-lcnn")
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(float("nan"))
    ck = save_checkpoint(model, tmp_path / "nan.ckpt")
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone(3.0), SR)
    p = _cli("detect", "--model", ck, "--json", "--quiet", wav)
    d = _strict(p.stdout.decode().strip())
    assert p.returncode == 1 and "non-finite score" in (d["error"] or ""), (p.returncode, d)
    assert d["label"] is None and d["score"] is None


# ---- 6. Loud input: streams clip as files do, with the same warning -------------------------


def _cli(*args, stdin: bytes | None = None, timeout=300):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "spoofscope", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


def test_loud_input_is_clipped_alike_in_files_streams_and_stdin(ckpt, tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(3)
    x = (_tone(6.0) + 0.05 * rng.standard_normal(6 * SR)).astype(np.float32) * 1e6
    wav = tmp_path / "loud.wav"
    sf.write(wav, x, SR, subtype="FLOAT")
    f = _cli("detect", "--model", ckpt, "--json", "--quiet", "--hop", 1.0, wav)
    assert f.returncode == 0, f.stderr
    file_res = json.loads(f.stdout)
    assert "exceeds full scale; clipped to [-1, 1]" in f.stderr.decode()
    s = _cli(
        "detect", "--model", ckpt, "--json", "--stream", "-", "--input-format", "f32le",
        "--input-rate", SR, "--hop", 1.0, stdin=x.astype("<f4").tobytes(),
    )  # fmt: skip
    assert s.returncode == 0, s.stderr
    stdin_res = json.loads(s.stdout.splitlines()[-1])
    assert "exceeds full scale; clipped to [-1, 1]" in s.stderr.decode()
    with _local(ckpt) as srv, ws_client.connect(_ws(srv.url, "/v1/stream")) as c:
        c.send(json.dumps({"type": "start", "sample_rate": SR, "encoding": "f32le"}))
        c.send(x.astype("<f4").tobytes())
        c.send(json.dumps({"type": "stop"}))
        ws_res = _events(c)[-1]
    assert abs(file_res["score"]) < 100
    assert stdin_res["score"] == pytest.approx(file_res["score"], abs=1e-5)
    assert ws_res["score"] == pytest.approx(file_res["score"], abs=1e-5)


TINY_W2V = dict(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[16] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    classifier_proj_size=24,
)


def _hf_folder(folder, labels):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    id2label = dict(enumerate(labels))
    conf = transformers.Wav2Vec2Config(
        **TINY_W2V, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    transformers.Wav2Vec2ForSequenceClassification(conf).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def _one_line(p, command="detect") -> str:
    err = p.stderr.decode().strip()
    assert p.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"spoofscope {command}: error: "), err
    return err


def test_an_hf_head_with_one_label_is_refused(tmp_path):
    import soundfile as sf

    folder = _hf_folder(tmp_path / "one", ["real"])
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone(2.0), SR)
    err = _one_line(_cli("detect", "--model", f"hf:{folder}", "--json", wav))
    assert "at least two" in err and "real" in err


# ---- 7. detect --stream - refuses what file detect refuses ----------------------------------


def test_stdin_refuses_a_truncated_wav_and_impossible_rates(ckpt, tmp_path):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, _tone(10.6), SR, format="WAV", subtype="PCM_16")
    full = buf.getvalue()
    cut = full[: 44 + (len(full) - 44) // 2]  # the header still promises 10.6 s
    (tmp_path / "cut.wav").write_bytes(cut)
    f = _cli("detect", "--model", ckpt, "--quiet", tmp_path / "cut.wav")
    assert f.returncode == 1 and b"truncated WAV" in f.stdout + f.stderr
    s = _cli("detect", "--model", ckpt, "--json", "--stream", "-", stdin=cut)
    assert s.returncode == 1 and "truncated WAV" in s.stderr.decode(), s.stderr
    assert "Traceback" not in s.stderr.decode()
    # the audio before the damage is still judged, as for a damaged FLAC
    assert json.loads(s.stdout.splitlines()[-1])["duration_s"] == pytest.approx(5.3, abs=0.01)
    pcm = _pcm(_tone(1.0))
    for rate in (1, 1_000_000_000):
        p = _cli("detect", "--model", ckpt, "--stream", "-", "--input-format", "s16le",
                 "--input-rate", rate, stdin=pcm)  # fmt: skip
        assert "--input-rate" in _one_line(p) and str(rate) in p.stderr.decode()
    w = _cli("detect", "--model", ckpt, "--stream", "-", "--input-rate", 8000, stdin=full)
    assert w.returncode == 0 and "--input-rate 8000 is ignored" in w.stderr.decode()


def test_input_rate_accepts_exactly_the_rates_files_may_have(ckpt, tmp_path):
    """The reference: file detect on WAV files at each edge of the range (7999 and 768001 Hz
    refused, 8000 and 768000 Hz read); --input-rate with raw samples on stdin agrees."""
    import soundfile as sf

    rates = (7999, 8000, 768000, 768001)
    wavs = []
    for rate in rates:
        wavs.append(tmp_path / f"r{rate}.wav")
        sf.write(wavs[-1], _tone(1.0, rate), rate, subtype="PCM_16")
    f = _cli("detect", "--model", ckpt, "--json", "--quiet", *wavs)
    by_file = [json.loads(ln) for ln in f.stdout.decode().splitlines()]
    file_ok = [d["error"] is None for d in by_file]
    assert file_ok == [False, True, True, False], by_file
    for rate, ok in zip(rates, file_ok, strict=True):
        p = _cli("detect", "--model", ckpt, "--json", "--stream", "-", "--input-format", "s16le",
                 "--input-rate", rate, stdin=_pcm(_tone(1.0, rate)))  # fmt: skip
        if ok:
            assert p.returncode == 0, (rate, p.stderr.decode()[-500:])
        else:
            assert "--input-rate" in _one_line(p) and str(rate) in p.stderr.decode()


# ---- 8. evaluate --reference/--hypothesis: one line naming the problem ----------------------


def _detect_line(path, duration, scores, step=0.5):
    steps = [
        {"start_s": k * step, "end_s": min((k + 1) * step, duration), "score": s}
        for k, s in enumerate(scores)
    ]
    return json.dumps({"path": path, "duration_s": duration, "timeline": steps})


class _Ran:
    """What ``spoofscope ARGS`` gave, run in this process (``main``, the console script's)."""

    def __init__(self, capsys, *args):
        from spoofscope.cli import main

        try:
            self.returncode = main([str(x) for x in args])
        except SystemExit as e:
            self.returncode = e.code
        out = capsys.readouterr()
        self.stdout, self.stderr = out.out.encode(), out.err.encode()


def test_evaluate_localisation_names_each_problem(tmp_path, capsys):
    ref = tmp_path / "ref.rttm"
    good_ref = (
        "SPEAKER a 1 0.000 1.000 <NA> <NA> bonafide <NA> <NA>\n"
        "SPEAKER a 1 1.000 1.000 <NA> <NA> spoof <NA> <NA>\n"
        "SPEAKER b 1 0.000 2.000 <NA> <NA> bonafide <NA> <NA>\n"
    )
    hyp = tmp_path / "hyp.jsonl"
    good_hyp = (
        _detect_line("x/a.wav", 2.0, [0.8, 0.6, -0.7, -0.9])
        + "\n"
        + _detect_line("x/b.wav", 2.0, [0.9, 0.5, 0.4, 0.7])
        + "\n"
    )

    def run(ref_text, hyp_text):
        ref.write_text(ref_text)
        hyp.write_text(hyp_text)
        return _Ran(capsys, "evaluate", "--reference", ref, "--hypothesis", hyp, "--json")

    ok = run(good_ref, good_hyp)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["range_eer"]["eer"] == 0.0
    second = good_hyp.splitlines()[1]
    cases = [  # (reference, hypothesis, words the one line must hold)
        (good_ref, "[1,2,3]", ["hyp.jsonl item 0", "not an object", "duration_s"]),
        (
            good_ref,
            '{"timeline": "x", "path": "a", "duration_s": 2}\n',
            ["hyp.jsonl:1", "timeline"],
        ),
        (good_ref, second + '\n{"path": "a", "timeline": []}\n', ["hyp.jsonl:2", "duration_s"]),
        (
            good_ref,
            json.dumps({"path": "a", "duration_s": 2, "timeline": [{"start_s": 0, "end_s": 1}]}),
            ["hyp.jsonl:1", "step 0", "score"],
        ),
        (good_ref + "SPEAKER b 1 0 1 <NA> <NA> xyz <NA> <NA>\n", good_hyp, ["ref.rttm:4", "'xyz'"]),
        (
            good_ref + "SPEAKER a 1 0.5 1.0 <NA> <NA> spoof <NA> <NA>\n",
            good_hyp,
            ["ref.rttm:4", "overlaps", "line 1"],
        ),
        (
            good_ref.replace("1.000 1.000 <NA> <NA> spoof", "20.000 5.000 <NA> <NA> spoof"),
            good_hyp,
            ["20-25 s of a", "ends after the file's 2 s"],
        ),
        (
            good_ref,
            _detect_line("a.wav", 2.0, [0.5] * 4) + "\n" + _detect_line("b.wav", 2.0, [0.5] * 4),
            ["same score", "ranks nothing"],
        ),
    ]
    for ref_text, hyp_text, words in cases:
        err = _one_line(run(ref_text, hyp_text), "evaluate")
        assert all(w in err for w in words), (words, err)


# ---- 9. hf: folders: a damaged weights file and a missing folder, in one line -----------------


def test_hf_damaged_weights_and_missing_folder_in_one_line(tmp_path, monkeypatch):
    import soundfile as sf

    folder = _hf_folder(tmp_path / "ok", ["spoof", "bonafide"])
    st = folder / "model.safetensors"
    st.write_bytes(b"\xff" * 8 + st.read_bytes()[8:])  # a header length past the file
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone(2.0), SR)
    err = _one_line(_cli("detect", "--model", f"hf:{folder}", wav))
    assert "damaged" in err and "SafetensorError" in err
    monkeypatch.chdir(tmp_path)
    err = _one_line(_cli("detect", "--model", "hf:./missing", wav))
    assert err.endswith("hf:./missing: no such folder"), err


# ---- 10. Every --ray form the docs show -----------------------------------------------------


def test_every_readme_ray_form_parses_and_the_local_one_runs(ckpt, tmp_path):
    """The docs' forms split into address and inputs as meant; the first (a local Ray
    instance on one folder) runs end to end, quietly under --quiet."""
    import re

    import soundfile as sf

    from spoofscope.cli import build_parser
    from spoofscope.cli.detect import ray_target

    # the forms the docs show (README and the Ray page of the site)
    repo = Path(__file__).parents[1]
    readme = "\n".join((repo / p).read_text() for p in ("README.md", "docs/deploy/ray.md"))
    forms = re.findall(r"^spoofscope detect (--ray .*?)(?:\s+#.*)?$", readme, re.M)
    assert len(forms) >= 2, forms
    import shlex

    for form in [*forms, "--ray HEAD:6379 archive/ --out results/"]:
        a = build_parser().parse_args(["detect", *shlex.split(form)])
        address, paths = ray_target(a.ray, a.paths)
        words = shlex.split(form)
        given = words[1] if re.match(r"^(auto|local|ray://\S+|[\w.-]+:\d+)$", words[1]) else "auto"
        assert address == given and a.out == "results/", form
        assert (
            paths == [w for w in words[1:] if w != given and not w.startswith("-")][: len(paths)]
            and paths
        ), (form, paths)
    pytest.importorskip("ray")
    archive = tmp_path / "archive"
    (archive / "sub").mkdir(parents=True)
    sf.write(archive / "a.wav", _tone(2.0), SR)
    sf.write(archive / "sub" / "b.wav", _tone(3.0), SR)
    out = tmp_path / "results"
    p = _cli("detect", "--ray", archive, "--recursive", "--out", out, "--model", ckpt,
             "--actors", 1, "--quiet", timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert p.stdout.decode().startswith("2 files: 0 already in"), p.stdout
    assert p.stderr.decode().strip() == "", p.stderr.decode()[-2000:]


# ---- 11. A stream's state is read only with the key that opened it ---------------------------


def test_stream_state_is_scoped_to_the_key_that_opened_it(ckpt, tmp_path):
    db = tmp_path / "audit.sqlite"
    keys = frozenset({"key-a", "key-b"})
    a = _local(ckpt, api_keys=keys, audit_db=str(db), stream_idle_s=5.0)
    b = _local(ckpt, api_keys=keys, audit_db=str(db), stream_idle_s=5.0)  # another replica

    def get(srv, sid, key):
        return httpx.get(srv.url + f"/v1/streams/{sid}", headers={"X-API-Key": key})

    with a, b:
        c = ws_client.connect(_ws(a.url, "/v1/stream"), additional_headers={"X-API-Key": "key-a"})
        c.send(json.dumps({"type": "start", "sample_rate": SR}))
        sid = json.loads(c.recv(timeout=30))["stream_id"]
        c.send(_pcm(_tone(2.0)))
        t = ws_client.connect(_ws(a.url, "/v1/stream/twilio"))
        start = _twilio_start(params={"api_key": "key-a"})
        t.send(json.dumps(start))
        t.send(json.dumps(GOOD_MEDIA))
        time.sleep(1.5)  # the live state reaches the shared table
        live = [(srv, i, k) for srv in (a, b) for i in (sid, "CAr0") for k in ("key-a", "key-b")]
        codes = {(srv.port, i, k): get(srv, i, k).status_code for srv, i, k in live}
        c.send(json.dumps({"type": "stop"}))
        assert _events(c)[-1]["type"] == "summary"
        t.send(json.dumps({"event": "stop", "streamSid": "MZr0"}))
        _events(t)
        time.sleep(0.5)
        ended = {(srv.port, i, k): get(srv, i, k) for srv, i, k in live}
    for (port, i, k), code in codes.items():
        assert code == (200 if k == "key-a" else 404), (port, i, k, code)
    for (port, i, k), r in ended.items():
        assert r.status_code == (200 if k == "key-a" else 404), (port, i, k, r.text)
        if k == "key-a":
            assert r.json()["state"] == "ended" and "owner" not in r.json()


def test_a_stale_stream_stays_scoped_to_its_key(ckpt, tmp_path):
    """A stream left live by a replica that died (its row copied under another id, last
    updated an hour ago) is answered stale to the key that opened it only."""
    from datetime import UTC, datetime, timedelta

    db = tmp_path / "audit.sqlite"
    keys = frozenset({"key-a", "key-b"})
    with _local(ckpt, api_keys=keys, audit_db=str(db), stream_idle_s=5.0) as a:
        c = ws_client.connect(_ws(a.url, "/v1/stream"), additional_headers={"X-API-Key": "key-a"})
        c.send(json.dumps({"type": "start", "sample_rate": SR}))
        sid = json.loads(c.recv(timeout=30))["stream_id"]
        c.send(_pcm(_tone(2.0)))
        time.sleep(1.5)
        con = sqlite3.connect(db)
        (state,) = con.execute("SELECT state FROM streams WHERE id = ?", (sid,)).fetchone()
        assert json.loads(state)["state"] == "live"
        old = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="milliseconds")
        con.execute("INSERT INTO streams VALUES (?,?,?)", ("dead" + sid, old, state))
        con.commit()
        c.send(json.dumps({"type": "stop"}))
        _events(c)
        answers = []
        for key in ("key-b", "key-a", "key-b", "key-a"):  # before and after it is marked
            r = httpx.get(a.url + f"/v1/streams/dead{sid}", headers={"X-API-Key": key})
            answers.append((key, r.status_code, r.json().get("state")))
    assert answers == [
        ("key-b", 404, None), ("key-a", 200, "stale"), ("key-b", 404, None), ("key-a", 200, "stale")
    ], answers  # fmt: skip


# ---- 12. Smaller ones ----------------------------------------------------------------------------


def test_out_naming_an_existing_file_names_the_option(ckpt, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    for args in (
        ["detect", "--ray", tmp_path, "--out", taken, "--model", ckpt],
        ["train", CONFIGS / "aasist-l.yaml", "--data", tmp_path, "--out", taken],
    ):
        r = _Ran(capsys, *args)
        err = _one_line(r, args[0])
        assert f"--out {taken} is an existing file" in err and "Errno" not in err, err


def test_mp3_on_stdin_decodes_to_the_file_s_length(ckpt, tmp_path):
    """FFmpeg trims an MP3's end padding only where it can seek; on stdin the LAME tag gives
    it: the same samples as the file, so the same score."""
    import soundfile as sf

    mp3 = tmp_path / "a.mp3"
    try:
        sf.write(mp3, _tone(10.645), SR, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        pytest.skip("this libsndfile writes no MP3")
    f = _cli("detect", "--model", ckpt, "--json", "--quiet", "--hop", 1.0, mp3)
    s = _cli("detect", "--model", ckpt, "--json", "--stream", "-", "--hop", 1.0,
             stdin=mp3.read_bytes())  # fmt: skip
    by_file = json.loads(f.stdout)
    by_pipe = json.loads(s.stdout.splitlines()[-1])
    assert by_file["duration_s"] == pytest.approx(10.645, abs=1e-6)
    assert by_pipe["duration_s"] == pytest.approx(by_file["duration_s"], abs=1e-6)
    assert by_pipe["score"] == pytest.approx(by_file["score"], abs=1e-4)
