"""The audit trail in PostgreSQL: a real server started by the test (initdb/pg_ctl in a
temporary folder); one schema with SQLite; two service processes writing one trail; a database
that goes away gives 503 and loses no row."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
import torch

pytest.importorskip("psycopg")
pytest.importorskip("psycopg_pool")
from _postgres import PgServer, pg_bin, rows  # noqa: E402
from _server import ServeProcess  # noqa: E402
from _server import tone_wav as _wav  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.cli import main  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402
from spoofscope.serve.audit import AuditLog, summarize  # noqa: E402

pytestmark = pytest.mark.skipif(
    pg_bin() is None, reason="PostgreSQL is not installed (scripts/setup.sh installs it)"
)


@pytest.fixture(scope="module")
def pg():
    server = PgServer().init()
    AuditLog(server.url).close()  # the schema
    yield server
    server.close()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        spoofscope.create_model("lfcc-lcnn"), tmp_path_factory.mktemp("m") / "lcnn.ckpt"
    )


def _service(ckpt, audit, name) -> ServeProcess:
    return ServeProcess(
        ckpt,
        "--audit-db",
        audit,
        "--engine",
        "torch",
        "--workers",
        "2",
        "--queue-size",
        "32",
        "--replica",
        name,
    )


def test_one_schema_both_backends_same_summary(pg, tmp_path):
    """The same decisions, refusals and stream states written to SQLite and PostgreSQL read back
    the same, and summarise to the same numbers (counted here from the inputs)."""
    rng = np.random.default_rng(0)
    labels = rng.choice(["bonafide", "spoof", "no_speech"], 40)
    scores = rng.normal(size=40)
    logs = [AuditLog(tmp_path / "a.sqlite"), AuditLog(pg.url)]
    rows(pg.url, "DELETE FROM decisions")
    rows(pg.url, "DELETE FROM rejections")
    for log in logs:
        for i, (lab, sc) in enumerate(zip(labels, scores, strict=True)):
            judged = lab != "no_speech"
            log.record(
                f"r{i}",
                "ab" * 32,
                {
                    "duration_s": 2.0 + i,
                    "label": lab,
                    "score": float(sc) if judged else None,
                    "p_bonafide": 0.5 if judged else None,
                    "confident": (i % 3 == 0) if judged else None,
                },
                "m",
                "v",
                when=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=i),
            )
        log.record_rejection("x1", "/v1/detect", 401, "unauthorized", "key")
        log.put_stream("s1", {"state": "live"}, ("CA1",))
        log.put_stream("s1", {"state": "ended", "n": 1}, ("CA1", "MZ1"))
    got = [summarize(tmp_path / "a.sqlite"), summarize(pg.url)]
    for log in logs:
        assert log.get_stream("MZ1") == log.get_stream("s1") == {"state": "ended", "n": 1}
        assert log.get_stream("nope") is None
        log.close()
    assert got[0] == got[1]
    s = got[1]
    judged = labels != "no_speech"
    assert s["decisions"] == 40 and s["abstained"] == int((~judged).sum())
    assert s["by_label"] == {k: int((labels == k).sum()) for k in set(labels)}
    assert s["score"]["mean"] == pytest.approx(float(scores[judged].mean()), abs=1e-12)
    assert s["rejected"] == {"unauthorized": 1}
    low = [not (i % 3 == 0) for i in range(40) if judged[i]]
    assert s["low_confidence_rate"] == pytest.approx(float(np.mean(low)))


def test_two_service_processes_share_one_trail(pg, ckpt, capsys):
    """N concurrent requests spread over two service processes give N rows, each request once;
    a stream on one replica is found by the other; `audit summary` reads the database."""
    rows(pg.url, "DELETE FROM decisions")
    a, b = _service(ckpt, pg.url, "a"), _service(ckpt, pg.url, "b")
    answers, lock = [], threading.Lock()

    def send(k):
        srv = (a, b)[k % 2]
        r = httpx.post(
            srv.url + "/v1/detect", files={"file": (f"{k}.wav", _wav(1.5, k), "x")}, timeout=120
        )
        with lock:
            d = r.json()
            answers.append((r.status_code, d.get("request_id") or d, r.headers["x-replica"]))

    try:
        threads = [threading.Thread(target=send, args=(k,)) for k in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        from websockets.sync.client import connect

        pcm = (np.sin(np.arange(16000 * 5) / 16000 * 2 * np.pi * 200) * 9000).astype("<i2")
        with connect(a.url.replace("http", "ws") + "/v1/stream") as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            sid = json.loads(ws.recv(timeout=30))["stream_id"]
            ws.send(pcm.tobytes())
            ws.send(json.dumps({"type": "stop"}))
            summary = [json.loads(m) for m in ws][-1]
        from_b = httpx.get(b.url + f"/v1/streams/{sid}").json()
    finally:
        a.stop()
        b.stop()
    assert [c for c, _, _ in answers] == [200] * 24
    assert {rep for _, _, rep in answers} == {"a", "b"}
    ids = [r for (r,) in rows(pg.url, "SELECT request_id FROM decisions")]
    assert sorted(ids) == sorted([r for _, r, _ in answers] + [sid])  # each exactly once
    assert from_b["state"] == "ended" and from_b["summary"]["score"] == summary["score"]
    assert main(["audit", "summary", "--db", pg.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == 25


def test_a_database_that_goes_away_fails_closed(pg, ckpt):
    """Fail closed: with the database gone a request gets 503 audit_unavailable (no verdict
    without its row) and a log line; the process lives on; when the database is back the
    requests succeed again; every 200 answered has its row, no more."""
    rows(pg.url, "DELETE FROM decisions")
    srv = _service(ckpt, pg.url, "solo")
    codes = []
    try:
        for k in range(3):
            codes.append(
                httpx.post(
                    srv.url + "/v1/detect", files={"file": ("a.wav", _wav(1.5, k), "x")}
                ).status_code
            )
        pg.stop()
        down = httpx.post(
            srv.url + "/v1/detect", files={"file": ("a.wav", _wav(), "x")}, timeout=60
        )
        ready = httpx.get(srv.url + "/readyz", timeout=30)
        assert srv.proc.poll() is None
        pg.start()
        for _ in range(60):  # the pool reconnects in the background; /readyz says when
            if httpx.get(srv.url + "/readyz", timeout=30).status_code == 200:
                break
            time.sleep(0.5)
        for k in range(3):
            codes.append(
                httpx.post(
                    srv.url + "/v1/detect", files={"file": ("a.wav", _wav(1.5, k), "x")}
                ).status_code
            )
    finally:
        err = srv.stop()
    assert down.status_code == 503 and down.json()["error"]["code"] == "audit_unavailable"
    assert ready.status_code == 503 and "audit database" in ready.json()["error"]["message"]
    assert codes == [200] * 6
    assert "audit trail unavailable" in err and "secret" not in err
    assert rows(pg.url, "SELECT COUNT(*) FROM decisions")[0][0] == 6
