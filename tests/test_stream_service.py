"""Live streams in the service: /v1/stream and /v1/stream/twilio over a real WebSocket, judged
as the offline detector judges the same samples; keys, limits, bad messages, dropped
connections, audit rows, metrics, and SIGTERM."""

import base64
import hashlib
import json
import signal
import socket
import sqlite3
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("fastapi")
ws_client = pytest.importorskip("websockets.sync.client")
from _audio_utils import tone_noise_pause  # noqa: E402
from _models import responsive_lcnn  # noqa: E402
from _server import LocalServer, ServeProcess, chromium_path, launch_chromium  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from spoofscope.infer import Detector, TorchEngine, WindowPolicy  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402
from spoofscope.serve import ServiceSettings, create_app  # noqa: E402

SR = 16000
# streams a test keeps open across other steps are opened without a with-block
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def _signal(seconds=12.0, seed=0):
    # 4-7 s of 12 noise, 7.5-8.16 s a pause (scaled to the length)
    s = seconds
    return tone_noise_pause(s, noise=(s / 3, s * 7 / 12), pause=(s * 0.625, s * 0.68), seed=seed)


def _pcm(x) -> bytes:
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A model whose windows' scores span about 2 on the test audio (tone +1, noise -1):
    scores agreeing to 1e-4 tell a decoding error from rounding."""
    return save_checkpoint(responsive_lcnn(0), tmp_path_factory.mktemp("m") / "lcnn.ckpt")


class _SlowEngine(TorchEngine):
    """A real engine that takes ``delay`` seconds more per batch (a slow CPU)."""

    delay = 0.0
    batches: list[np.ndarray] | None = None  # a list: each batch called with is kept
    fail_at: int | None = None  # the call (1, 2, ...) that raises instead
    n_calls = 0

    def __call__(self, x):
        if self.batches is not None:
            self.batches.append(np.array(x))
        self.n_calls += 1
        if self.n_calls == self.fail_at:
            raise RuntimeError("the engine failed")
        time.sleep(self.delay)
        return super().__call__(x)


def _service(ckpt, delay=0.0, **kw):
    det = Detector.from_checkpoint(ckpt)
    if delay:
        eng = _SlowEngine(det.model)
        eng.delay = delay
        det = Detector(eng, windows=det.windows, decision=det.decision)
    return LocalServer(create_app(det, ServiceSettings(**kw)))


def _url(srv, path="/v1/stream"):
    return srv.url.replace("http", "ws") + path


def _events(conn, limit_s=120):
    out = []
    deadline = time.time() + limit_s
    try:
        while time.time() < deadline:
            out.append(json.loads(conn.recv(timeout=limit_s)))
    except ConnectionClosed:  # every stream ends with the server closing it
        pass
    return out


def _wait_for_window_ending(conn, end_s):
    while True:
        e = json.loads(conn.recv(timeout=60))
        if e["type"] == "window" and e["end_s"] >= end_s - 1e-9:
            return


def _offline(ckpt, x, hop, rate=SR):
    det = Detector.from_checkpoint(ckpt).replace(windows=WindowPolicy(hop_s=hop))
    return det(x, sample_rate=rate)


def test_stream_gives_offline_windows_segments_audit_and_metrics(ckpt, tmp_path):
    x = _signal()
    data = _pcm(x)
    db = tmp_path / "audit.sqlite"
    with _service(ckpt, audit_db=str(db)) as srv:
        with ws_client.connect(_url(srv)) as c:
            c.send(
                json.dumps(
                    {
                        "type": "start",
                        "sample_rate": SR,
                        "encoding": "pcm_s16le",
                        "channels": 1,
                        "hop_s": 0.5,
                    }
                )
            )
            started = json.loads(c.recv(timeout=30))
            for i in range(0, len(data), 3200):  # 0.1-s frames
                c.send(data[i : i + 3200])
            c.send(json.dumps({"type": "stop"}))
            events = _events(c)
            code = c.close_code
        import httpx

        metrics = httpx.get(srv.url + "/metrics").text
        state = httpx.get(srv.url + f"/v1/streams/{started['stream_id']}").json()
    assert started["type"] == "started" and started["hop_s"] == 0.5
    want = _offline(ckpt, np.frombuffer(data, "<i2").astype(np.float32) / 32768, 0.5)
    wins = [e for e in events if e["type"] == "window"]
    assert [(e["start_s"], e["end_s"]) for e in wins] == [
        (w["start_s"], w["end_s"]) for w in want.windows
    ]
    for e, w in zip(wins, want.windows, strict=True):
        assert (e["score"] is None) == (w["score"] is None)
        if w["score"] is not None:
            assert e["score"] == pytest.approx(w["score"], abs=1e-5)
        assert e["latency_ms"] >= 0
    summary = events[-1]
    assert summary["type"] == "summary" and summary["ended_by"] == "stop" and code == 1000
    assert summary["label"] == want.label and summary["score"] == pytest.approx(
        want.score, abs=1e-5
    )
    assert summary["duration_s"] == pytest.approx(12.0)
    segs = [{k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == "segment"]
    assert segs == summary["segments"] and len(segs) >= 1
    assert state["state"] == "ended" and state["summary"]["score"] == summary["score"]
    rows = (
        sqlite3.connect(db)
        .execute("SELECT request_id, sha256, duration_s, score FROM decisions")
        .fetchall()
    )
    assert rows == [
        (started["stream_id"], hashlib.sha256(data).hexdigest(), 12.0, summary["score"])
    ]
    scored = sum(e["score"] is not None for e in wins)
    assert 'spoofscope_streams_total{endpoint="/v1/stream",outcome="stop"} 1.0' in metrics
    assert "spoofscope_stream_audio_seconds_total 12.0" in metrics
    assert f"spoofscope_stream_verdict_latency_seconds_count {scored}.0" in metrics
    assert "spoofscope_streams_active 0.0" in metrics


def test_concurrent_streams_are_judged_together_each_as_alone(ckpt):
    """Three clients at once on a slow engine: while one batch is judged the others' audio
    waits, and goes into the next call together (a call holds windows of several streams),
    and each stream's windows and summary are the offline detector's on its own samples."""
    import threading

    signals = [_signal(6.0, seed) * (0.5 + 0.25 * seed) for seed in range(3)]
    out: dict[int, list] = {}

    ready = threading.Barrier(3, timeout=60)

    def client(i):
        data = _pcm(signals[i])
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            got = [json.loads(c.recv(timeout=30))]  # started: every stream is open ...
            ready.wait()  # ... before any sends audio
            for k in range(0, len(data), 3200):
                c.send(data[k : k + 3200])
            # stop only once the live path judged a window: a stop that came first would
            # leave every window to the stream's own closing call, which is never shared
            while got[-1]["type"] != "window":
                got.append(json.loads(c.recv(timeout=60)))
            c.send(json.dumps({"type": "stop"}))
            out[i] = got + _events(c)

    with _service(ckpt, delay=0.2) as srv:
        eng = srv.server.config.app.state.detector.engine
        eng.batches = []
        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    heard = [np.frombuffer(_pcm(x), "<i2").astype(np.float32) / 32768 for x in signals]
    for i, x in enumerate(heard):
        want = _offline(ckpt, x, 1.0)
        got = [e for e in out[i] if e["type"] == "window"]
        assert [(e["start_s"], e["end_s"]) for e in got] == [
            (w["start_s"], w["end_s"]) for w in want.windows
        ]
        np.testing.assert_allclose(
            [e["score"] for e in got], [w["score"] for w in want.windows], atol=1e-5
        )
        assert out[i][-1]["type"] == "summary" and out[i][-1]["label"] == want.label
        assert out[i][-1]["score"] == pytest.approx(want.score, abs=1e-5)

    def owners(row):  # the streams a window is cut from, at any offset: the verdict's
        n = row.size  # windows start every hop, the localisation's every 0.25 s, and the
        return {  # closing call's last window where the stream ends
            i
            for i, x in enumerate(heard)
            for s in np.flatnonzero(x[: max(x.size - n + 1, 0)] == row[0])
            if np.array_equal(x[s : s + n], row)
        }

    assert all(len(owners(r)) == 1 for b in eng.batches for r in b)
    assert any(len(set().union(*(owners(r) for r in b))) > 1 for b in eng.batches)


def test_window_events_and_metrics_give_the_scoring_calls_wall_time(ckpt):
    """An engine slowed by a known sleep per call: every scored window's ``scoring_ms`` is at
    least that sleep (its call made at least one engine call) and at most its ``latency_ms``
    (the window's last sample arrived before the call that judged it began), and /metrics'
    ``spoofscope_stream_scoring_seconds`` adds up at least the sleeps of all the stream's
    engine calls."""
    import httpx

    delay = 0.2
    data = _pcm(_signal(6.0))
    with _service(ckpt, delay=delay) as srv:
        eng = srv.server.config.app.state.detector.engine
        before = eng.n_calls  # the warm-up's
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            for i in range(0, len(data), 3200):
                c.send(data[i : i + 3200])
            c.send(json.dumps({"type": "stop"}))
            events = _events(c)
        calls = eng.n_calls - before
        metrics = httpx.get(srv.url + "/metrics").text
    scored = [e for e in events if e["type"] == "window" and e["score"] is not None]
    assert scored and calls >= 1
    for e in scored:
        assert delay * 1000 <= e["scoring_ms"] <= e["latency_ms"]
    got = {
        k: float(line.split()[1])
        for line in metrics.splitlines()
        for k in ("sum", "count")
        if line.startswith(f"spoofscope_stream_scoring_seconds_{k} ")
    }
    assert got["count"] >= 1 and got["sum"] >= calls * delay


def test_scoring_ms_is_its_own_call_not_the_wait_and_metrics_count_each_call_once(
    ckpt, monkeypatch
):
    """A window and two hops of audio in one frame: every sample has arrived before anything is
    judged, and the service judges it a piece of 1 s at a time, one call after another; the
    three windows (which fit the audio exactly, leaving none to the closing call) are in three
    calls, each making an engine call slowed by a known sleep, and are sent when the frame is
    judged: each waited for the two other calls besides its own, so its ``latency_ms`` passes
    its ``scoring_ms`` by at least two sleeps. The histogram counts each call that judged a
    window once: the three shared calls (``feed_streams`` is called more often, for pieces that
    complete no window: not counted), and not the closing call, which judges none."""
    import httpx

    from spoofscope.models import get_card
    from spoofscope.serve import streams

    calls = []
    real = streams.feed_streams

    def counted(work):
        calls.append(len(work))
        return real(work)

    monkeypatch.setattr(streams, "feed_streams", counted)
    delay = 0.2
    window = get_card("lfcc-lcnn").window_samples
    with _service(ckpt, delay=delay) as srv:
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            c.send(_pcm(_signal(8.0)[: window + 2 * SR]))
            c.send(json.dumps({"type": "stop"}))
            events = _events(c)
        metrics = httpx.get(srv.url + "/metrics").text
    wins = [e for e in events if e["type"] == "window"]
    assert [e["end_s"] for e in wins] == pytest.approx([window / SR + i for i in range(3)])
    assert all(e["score"] is not None for e in wins) and events[-1]["type"] == "summary"
    for e in wins:
        assert delay * 1000 <= e["scoring_ms"]
        assert e["latency_ms"] - e["scoring_ms"] >= 2 * delay * 1000
    count = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("spoofscope_stream_scoring_seconds_count ")
    )
    assert len(calls) > count == len(wins) == 3  # one per judging call, one window each


def test_the_closing_windows_scoring_ms_leaves_out_building_the_summary(ckpt, monkeypatch):
    """A window and 2.5 hops of audio: the window at 2.5-6.54 s is cut only when the stream
    ends, by the closing call, which then builds the stream's result (slowed here by a known
    sleep). Building the result is not scoring: that window's ``scoring_ms`` holds its engine
    call's sleep but not the result's, which its ``latency_ms`` holds (the event goes out after
    the result is built); the scoring histogram gains the closing call's time alone."""
    import httpx

    from spoofscope.models import get_card

    delay, pause = 0.05, 1.0
    real = Detector._finish

    def slow_finish(self, st):
        time.sleep(pause)
        return real(self, st)

    def scoring(srv):
        text = httpx.get(srv.url + "/metrics").text
        return [
            float(line.split()[1])
            for k in ("sum", "count")
            for line in text.splitlines()
            if line.startswith(f"spoofscope_stream_scoring_seconds_{k} ")
        ]

    window = get_card("lfcc-lcnn").window_samples
    x = _signal(8.0)[: window + int(2.5 * SR)]
    with _service(ckpt, delay=delay) as srv:
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            c.send(_pcm(x))
            _wait_for_window_ending(c, window / SR + 2)  # the live windows, judged
            before = scoring(srv)
            monkeypatch.setattr(Detector, "_finish", slow_finish)
            c.send(json.dumps({"type": "stop"}))
            events = _events(c)
        after = scoring(srv)
    closing = [e for e in events if e["type"] == "window"]
    assert [e["end_s"] for e in closing] == pytest.approx([x.size / SR])
    (e,) = closing
    assert events[-1]["type"] == "summary" and e["score"] is not None
    assert delay * 1000 <= e["scoring_ms"] < pause * 1000 <= e["latency_ms"], e
    assert after[1] - before[1] == 1
    assert (after[0] - before[0]) * 1000 == pytest.approx(e["scoring_ms"], abs=0.01)


def test_telephone_mulaw_and_alaw_at_8k(ckpt):
    x = _signal(8.0)[::2]  # 8 kHz
    lin = _pcm(x)
    with _service(ckpt) as srv:
        for enc, data, decode in (
            ("mulaw", audioop.lin2ulaw(lin, 2), audioop.ulaw2lin),
            ("alaw", audioop.lin2alaw(lin, 2), audioop.alaw2lin),
        ):
            with ws_client.connect(_url(srv)) as c:
                c.send(json.dumps({"type": "start", "sample_rate": 8000, "encoding": enc}))
                for i in range(0, len(data), 160):  # 20-ms packets
                    c.send(data[i : i + 160])
                c.send(json.dumps({"type": "stop"}))
                summary = _events(c)[-1]
            ref = np.frombuffer(decode(data, 2), "<i2").astype(np.float32) / 32768
            want = _offline(ckpt, ref, 1.0, rate=8000)  # the same samples, as ITU decodes them
            assert summary["duration_s"] == pytest.approx(8.0)
            # the stream resamples piece by piece (soxr streaming), detect the whole file: the
            # scores still agree to 1e-4 where they span more than 0.5
            scores = [w["score"] for w in want.windows]
            assert [w["score"] for w in summary["windows"]] == pytest.approx(scores, abs=1e-4)
            assert np.ptp([v for v in scores if v is not None]) > 0.5
            assert summary["score"] == pytest.approx(want.score, abs=1e-4), enc
            assert summary["label"] == want.label


def test_keys_header_start_message_never_the_url(ckpt, tmp_path):
    db = tmp_path / "audit.sqlite"
    with _service(ckpt, api_keys=frozenset({"k1"}), audit_db=str(db)) as srv:
        start = {"type": "start", "sample_rate": SR}
        with ws_client.connect(_url(srv)) as c:  # no key
            c.send(json.dumps(start))
            ev = _events(c)
            assert ev[-1]["code"] == "unauthorized" and c.close_code == 1008
        with ws_client.connect(_url(srv), additional_headers={"X-API-Key": "k1"}) as c:
            c.send(json.dumps(start))
            c.send(_pcm(_signal(3.0)))
            c.send(json.dumps({"type": "stop"}))
            assert _events(c)[-1]["type"] == "summary"
        with ws_client.connect(_url(srv)) as c:  # a browser: key in the start message
            c.send(json.dumps({**start, "api_key": "k1"}))
            c.send(_pcm(_signal(3.0)))
            c.send(json.dumps({"type": "stop"}))
            assert _events(c)[-1]["type"] == "summary"
        with ws_client.connect(_url(srv) + "?api_key=k1") as c:
            ev = _events(c)
            assert ev[-1]["code"] == "key_in_url" and c.close_code == 1008
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 2
    reasons = sorted(r for (r,) in con.execute("SELECT reason FROM rejections"))
    assert reasons == ["key_in_url", "unauthorized"]


def test_bad_messages_end_only_their_stream(ckpt):
    x = _pcm(_signal(6.0))
    with _service(ckpt) as srv:
        good = ws_client.connect(_url(srv))
        good.send(json.dumps({"type": "start", "sample_rate": SR}))
        good.send(x[: len(x) // 2])
        with ws_client.connect(_url(srv)) as c:  # audio, then a text that is not JSON
            c.send(json.dumps({"type": "start", "sample_rate": SR}))
            c.send(x)
            c.send("this is not json")
            ev = _events(c)
            err = next(e for e in ev if e["type"] == "error")
            assert err["code"] == "bad_message" and "not JSON" in err["message"]
            assert ev[-1]["type"] == "summary" and ev[-1]["duration_s"] == pytest.approx(6.0)
            assert c.close_code == 1007
        for first, word in (
            (b"\x00\x01", "binary"),
            ('{"type": "start", "sample_rate": 16000, "encoding": "opus"}', "encoding"),
        ):
            with ws_client.connect(_url(srv)) as c:
                c.send(first)
                ev = _events(c)
                assert ev[-1]["type"] == "error" and word in ev[-1]["message"]
        with ws_client.connect(_url(srv)) as c:  # NaN samples in f32le
            c.send(json.dumps({"type": "start", "sample_rate": SR, "encoding": "f32le"}))
            c.send(np.full(1600, np.nan, "<f4").tobytes())
            ev = _events(c)
            assert any(e.get("code") == "invalid_samples" for e in ev)
        good.send(x[len(x) // 2 :])
        good.send(json.dumps({"type": "stop"}))
        ev = _events(good)
        good.close()
    assert ev[-1]["type"] == "summary" and ev[-1]["ended_by"] == "stop"
    assert ev[-1]["duration_s"] == pytest.approx(6.0)


def test_limits_capacity_idle_duration(ckpt):
    with _service(ckpt, max_streams=1, stream_idle_s=1.0, max_stream_s=4.0) as srv:
        first = ws_client.connect(_url(srv))
        first.send(json.dumps({"type": "start", "sample_rate": SR}))
        assert json.loads(first.recv(timeout=30))["type"] == "started"
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR}))
            ev = _events(c)
            assert ev[-1]["code"] == "too_many_streams" and c.close_code == 1013
        first.send(_pcm(_signal(3.0)))  # then nothing: idle
        ev = _events(first)
        first.close()
        assert [e["code"] for e in ev if e["type"] == "error"] == ["idle_timeout"]
        assert ev[-1]["type"] == "summary" and ev[-1]["duration_s"] == pytest.approx(3.0)
        with ws_client.connect(_url(srv)) as c:  # too long
            c.send(json.dumps({"type": "start", "sample_rate": SR}))
            data = _pcm(_signal(8.0))
            try:
                for i in range(0, len(data), 8000):
                    c.send(data[i : i + 8000])
            except ConnectionClosed:
                pass
            ev = _events(c)
        assert [e["code"] for e in ev if e["type"] == "error"] == ["stream_too_long"]
        assert 4.0 < ev[-1]["duration_s"] <= 4.5


def test_a_client_faster_than_the_server_is_held_back_not_dropped(ckpt):
    """Reading pauses when more than stream_max_lag_s of audio waits to be judged: a lagging
    event, a backlog that never passes the limit by more than one frame, and no audio lost."""
    x = _pcm(_signal(30.0))
    frame = 8000  # 0.25 s
    with _service(ckpt, delay=0.3, stream_max_lag_s=2.0) as srv:
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            for i in range(0, len(x), frame):
                c.send(x[i : i + frame])
            c.send(json.dumps({"type": "stop"}))
            ev = _events(c, 300)
    lag = [e for e in ev if e["type"] == "lagging"]
    assert lag and all(2.0 < e["behind_s"] <= 2.0 + 0.25 + 1e-9 for e in lag)
    assert ev[-1]["type"] == "summary" and ev[-1]["duration_s"] == pytest.approx(30.0)
    assert sum(e["type"] == "window" for e in ev) == len(ev[-1]["windows"])


def test_a_lagging_stream_whose_scoring_fails_ends_not_hangs(ckpt):
    """The engine fails while the client is held back (reading paused until the backlog
    halves, which a failed scorer never brings): the stream still ends, with an error event
    and the summary of what was judged, instead of waiting for ever with its slot held."""
    x = _pcm(_signal(30.0))
    with _service(ckpt, delay=0.3, stream_max_lag_s=2.0) as srv:
        srv.server.config.app.state.detector.engine.fail_at = 3
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            for i in range(0, len(x), 8000):
                c.send(x[i : i + 8000])
            ev = _events(c, 60)
    assert any(e["type"] == "lagging" for e in ev)
    assert [e["code"] for e in ev if e["type"] == "error"] == ["internal_error"]
    assert ev[-1]["type"] == "summary" and ev[-1]["ended_by"] == "internal"


def test_a_dropped_connection_keeps_what_was_judged(ckpt, tmp_path):
    db = tmp_path / "audit.sqlite"
    data = _pcm(_signal(6.0))
    with _service(ckpt, audit_db=str(db)) as srv:
        c = ws_client.connect(_url(srv))
        c.send(json.dumps({"type": "start", "sample_rate": SR}))
        sid = json.loads(c.recv(timeout=30))["stream_id"]
        c.send(data)
        _wait_for_window_ending(c, 5.0)  # the last (tail) window comes at close
        c.socket.shutdown(socket.SHUT_RDWR)  # gone, without a close frame
        c.socket.close()
        import httpx

        for _ in range(100):
            state = httpx.get(srv.url + f"/v1/streams/{sid}").json()
            if state.get("state") == "ended":
                break
            time.sleep(0.1)
    assert state["summary"]["ended_by"] == "disconnected"
    assert state["summary"]["duration_s"] == pytest.approx(6.0)
    row = sqlite3.connect(db).execute("SELECT request_id, duration_s FROM decisions").fetchall()
    assert row == [(sid, 6.0)]


def _twilio_messages(mulaw: bytes, key: str, noise: bytes):
    sid, call = "MZ0123456789abcdef", "CA0123456789abcdef"
    yield {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    yield {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": sid,
        "start": {
            "accountSid": "AC1",
            "streamSid": sid,
            "callSid": call,
            "tracks": ["inbound", "outbound"],
            "customParameters": {"api_key": key},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    seq = 2
    for k, i in enumerate(range(0, len(mulaw), 160)):  # 20-ms chunks, both tracks
        for track, src in (("inbound", mulaw), ("outbound", noise)):
            yield {
                "event": "media",
                "sequenceNumber": str(seq),
                "streamSid": sid,
                "media": {
                    "track": track,
                    "chunk": str(k + 1),
                    "timestamp": str(20 * k),
                    "payload": base64.b64encode(src[i : i + 160]).decode(),
                },
            }
            seq += 1
        if k == 10:
            yield {
                "event": "mark",
                "sequenceNumber": str(seq),
                "streamSid": sid,
                "mark": {"name": "greeting"},
            }
            seq += 1
    yield {
        "event": "stop",
        "sequenceNumber": str(seq),
        "streamSid": sid,
        "stop": {"accountSid": "AC1", "callSid": call},
    }


def _poll(get, ok, limit_s=60.0):
    """``get()`` again every 0.05 s until ``ok`` of it, or fail after ``limit_s``."""
    deadline = time.time() + limit_s
    while True:
        got = get()
        if ok(got):
            return got
        assert time.time() < deadline, got
        time.sleep(0.05)


def test_twilio_media_streams(ckpt, tmp_path):
    """Exactly Twilio's messages: the inbound track is judged (the outbound one ignored), as
    the native endpoint judges the same mu-law; nothing is sent back; the verdict is read by
    callSid while the call runs and after it; the call is an audit decision row (its id, the
    sha256 of the inbound audio, its duration), a wrong key a rejection row."""
    import httpx

    lin = _pcm(_signal(8.0)[::2])
    mulaw = audioop.lin2ulaw(lin, 2)
    noise = audioop.lin2ulaw(_pcm(np.random.default_rng(1).standard_normal(32000) * 0.3), 2)
    db = tmp_path / "audit.sqlite"
    key = {"X-API-Key": "k1"}
    with _service(ckpt, api_keys=frozenset({"k1"}), audit_db=str(db)) as srv:
        with ws_client.connect(_url(srv)) as c:
            c.send(
                json.dumps(
                    {"type": "start", "sample_rate": 8000, "encoding": "mulaw", "api_key": "k1"}
                )
            )
            c.send(mulaw)
            c.send(json.dumps({"type": "stop"}))
            native = _events(c)[-1]
        live = None
        with ws_client.connect(_url(srv, "/v1/stream/twilio")) as c:
            for k, m in enumerate(_twilio_messages(mulaw, "k1", noise)):
                c.send(json.dumps(m))
                if k == 600:  # 6 s of the call sent: wait for a judged window
                    live = _poll(
                        lambda: httpx.get(srv.url + "/v1/streams/CA0123456789abcdef", headers=key),
                        lambda r: r.json().get("last_window") is not None,
                    ).json()
            with pytest.raises((ConnectionClosed, TimeoutError)):
                c.recv(timeout=30)  # closed without a message
        done = _poll(
            lambda: httpx.get(srv.url + "/v1/streams/MZ0123456789abcdef", headers=key).json(),
            lambda d: d.get("state") == "ended",
        )
        with ws_client.connect(_url(srv, "/v1/stream/twilio")) as c:  # a wrong key
            c.send(json.dumps(next(iter(_twilio_messages(mulaw, "bad", noise)))))
            msgs = list(_twilio_messages(mulaw, "bad", noise))
            c.send(json.dumps(msgs[1]))
            with pytest.raises(ConnectionClosed):
                c.recv(timeout=30)
            assert c.close_code == 1008
    assert live["state"] == "live" and live["last_window"]["type"] == "window"
    assert live["stream_id"] == done["stream_id"]
    s = done["summary"]
    assert s["duration_s"] == pytest.approx(8.0) and s["score"] == pytest.approx(
        native["score"], abs=1e-6
    )
    con = sqlite3.connect(db)
    sha = hashlib.sha256(mulaw).hexdigest()
    rows = con.execute("SELECT request_id, sha256, duration_s, score FROM decisions").fetchall()
    want = [
        (native["stream_id"], sha, 8.0, native["score"]),
        (done["stream_id"], sha, 8.0, s["score"]),
    ]
    assert sorted(rows) == sorted(want)
    rej = con.execute("SELECT endpoint, status, reason FROM rejections").fetchall()
    assert rej == [("/v1/stream/twilio", 1008, "unauthorized")]


def test_sigterm_ends_streams_with_a_summary_and_1001(ckpt, tmp_path):
    db = tmp_path / "audit.sqlite"
    srv = ServeProcess(
        ckpt, "--audit-db", db, "--engine", "torch", "--shutdown-grace", "2", "--quiet"
    )
    proc = srv.proc
    try:
        c = ws_client.connect(srv.url.replace("http", "ws") + "/v1/stream")
        c.send(json.dumps({"type": "start", "sample_rate": SR}))
        sid = json.loads(c.recv(timeout=30))["stream_id"]
        c.send(_pcm(_signal(5.0)))
        _wait_for_window_ending(c, 4.0)
        proc.send_signal(signal.SIGTERM)
        ev = _events(c, 60)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ev[-1]["type"] == "summary" and ev[-1]["ended_by"] == "shutdown"
    assert ev[-1]["duration_s"] == pytest.approx(5.0) and c.close_code == 1001
    rows = sqlite3.connect(db).execute("SELECT request_id, duration_s FROM decisions").fetchall()
    assert rows == [(sid, 5.0)]


@pytest.mark.skipif(
    chromium_path() is None,
    reason="Debian chromium is not installed (scripts/setup.sh installs it)",
)
def test_listen_live_in_chromium_with_a_fake_microphone(ckpt, tmp_path):
    """The page's Listen button: Chromium's fake microphone plays a WAV file; the page shows
    window events as they come, then the stream's summary, which is the one the service
    recorded for that stream."""
    pw = pytest.importorskip("playwright.sync_api")
    import httpx
    import soundfile as sf

    wav = tmp_path / "mic.wav"
    sf.write(wav, _signal(12.0), SR, subtype="PCM_16")
    with _service(ckpt) as srv:
        with pw.sync_playwright() as p:
            browser = launch_chromium(
                p,
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
            )
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.click("#listen")
            page.wait_for_function(
                "() => +(document.getElementById('live').dataset.windows || 0) >= 3", timeout=60000
            )
            live_text = page.inner_text("#live")
            page.click("#listen-stop")
            page.wait_for_selector("#verdict[data-final]", timeout=60000)
            sid = page.get_attribute("#live", "data-stream")
            label = page.get_attribute("#verdict", "data-label")
            p_ui = page.get_attribute("#details", "data-p")
            error = page.inner_text("#error")
            browser.close()
        state = httpx.get(srv.url + f"/v1/streams/{sid}").json()
    assert "heard" in live_text and error == ""
    summary = state["summary"]
    assert state["state"] == "ended" and summary["ended_by"] == "stop"
    assert summary["duration_s"] >= 5.0 and len(summary["windows"]) >= 3
    assert label == summary["label"]
    if summary["label"] != "no_speech":
        assert float(p_ui) == pytest.approx(summary["p_bonafide"], abs=1e-9)


def test_the_scoring_metric_counts_only_calls_that_judge_windows(ckpt):
    """``spoofscope_stream_scoring_seconds`` observes the calls that judge windows: a piece
    that completes no window (most 0.1-s frames at a 1-s hop) and the closing call of a stream
    that sent nothing score nothing and are not counted (they were: the count was several
    times the engine calls, so the benchmark's calls per second and the histogram's quantiles
    were of frames, not of scoring). Each observed call made at least one engine call (the
    test audio has no silent window), and each window's ``scoring_ms`` is one of them."""
    import httpx

    def scoring(srv):
        text = httpx.get(srv.url + "/metrics").text
        return {
            k: float(line.split()[1])
            for line in text.splitlines()
            for k in ("sum", "count")
            if line.startswith(f"spoofscope_stream_scoring_seconds_{k} ")
        }

    data = _pcm(_signal(6.0))
    with _service(ckpt, delay=0.01) as srv:
        eng = srv.server.config.app.state.detector.engine
        before, calls = scoring(srv), eng.n_calls
        with ws_client.connect(_url(srv)) as c:  # sends nothing
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            c.send(json.dumps({"type": "stop"}))
            assert _events(c)[-1]["type"] == "summary"
        assert scoring(srv) == before and eng.n_calls == calls
        with ws_client.connect(_url(srv)) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            for i in range(0, len(data), 3200):
                c.send(data[i : i + 3200])
                time.sleep(0.02)  # a live client's frames: most complete no window
            c.send(json.dumps({"type": "stop"}))
            events = _events(c)
        after, calls = scoring(srv), eng.n_calls - calls
    observed = after["count"] - before["count"]
    stamps = {e["scoring_ms"] for e in events if e["type"] == "window"}
    assert stamps and 1 <= len(stamps) <= observed <= calls, (stamps, observed, calls)
