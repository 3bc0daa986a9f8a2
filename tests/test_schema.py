"""One schema per record (spoofscope.infer.schema): the fields of real output (a result of a
real file, ``detect --json``, the CLI's and the service's stream events, a Parquet shard, the
audit tables) and of the service's OpenAPI models are exactly the schema's, in its order."""

import json
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from _models import responsive_lcnn

from spoofscope.infer import Detector, TorchEngine
from spoofscope.infer.schema import (
    AUDIT_DECISION,
    AUDIT_REJECTION,
    BATCH,
    EVENTS,
    PARQUET_ROW,
    RECORDS,
    RESULT,
    SEGMENT,
    STEP,
    WINDOW,
    type_name,
)
from spoofscope.models import save_checkpoint

SR = 16000


def _signal(seconds=8.0, seed=0):
    """A tone, a stretch of noise and a pause: bona fide, spoof and silent windows."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * 200 * t)
    x[3 * SR : 5 * SR] = 0.1 * rng.standard_normal(2 * SR)
    x[int(6 * SR) : int(6.6 * SR)] = 0.0
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(responsive_lcnn(0), tmp_path_factory.mktemp("m") / "lcnn.ckpt")


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    p = tmp_path_factory.mktemp("a") / "call.wav"
    sf.write(p, _signal(), SR)
    return p


def _check_result(d: dict, where=None):
    """``d`` (a result as JSON) has the schema's fields, and its lists the items' records'."""
    assert list(d) == RESULT.names(where)
    for f in RESULT.fields:
        if f.items is not None:
            assert d[f.name], f"{f.name} is empty: nothing to compare"
            for item in d[f.name]:
                assert list(item) == f.items.names(where), f.name


def test_records_are_well_formed():
    """Every field has a meaning and a type the docs can name; names are unique per record."""
    for r in RECORDS:
        names = [f.name for f in r.fields]
        assert len(set(names)) == len(names), r.name
        for f in r.fields:
            assert f.meaning.strip() and type_name(f), (r.name, f.name)
    assert [f.name for f in SEGMENT.fields] == EVENTS["segment"].names()[1:]
    assert RESULT.fields[6].items is WINDOW and RESULT.fields[15].items is STEP


def test_result_of_a_real_file_has_the_schema_fields(ckpt, wav):
    import dataclasses

    from spoofscope.infer.detector import DetectionResult

    assert [f.name for f in dataclasses.fields(DetectionResult)] == RESULT.names()
    det = Detector.from_checkpoint(ckpt)
    res = det(str(wav))
    assert res.error is None and res.label in ("bonafide", "spoof")
    _check_result(res.to_dict())
    missing = det(str(wav) + ".missing").to_dict()
    assert missing["error_kind"] == "missing" and list(missing) == RESULT.names()


def test_detect_json_line_has_the_schema_fields(ckpt, wav):
    out = subprocess.run(
        [sys.executable, "-m", "spoofscope", "detect", str(wav), "--model", str(ckpt), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    _check_result(lines[0])


def test_cli_stream_events_have_the_schema_fields(ckpt, wav):
    pcm = np.round(sf.read(wav, dtype="float32")[0] * 32767).astype("<i2").tobytes()
    cmd = [sys.executable, "-m", "spoofscope", "detect", "--stream", "-", "--json"]
    out = subprocess.run(
        [*cmd, "--model", str(ckpt), "--input-format", "s16le", "--input-rate", str(SR)],
        input=pcm,
        capture_output=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr.decode()
    events = [json.loads(line) for line in out.stdout.decode().splitlines()]
    kinds = {e["type"] for e in events}
    assert kinds == {"window", "segment", "summary"}
    for e in events:
        assert list(e) == EVENTS[e["type"]].names(), e["type"]
    _check_result({k: v for k, v in events[-1].items() if k != "type"})


def test_parquet_shard_columns_are_the_schema_fields(ckpt, wav, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from spoofscope.infer.ray import _row, _ShardWriter, read_results

    det = Detector.from_checkpoint(ckpt)
    w = _ShardWriter(tmp_path, rows_per_shard=10)
    for res in det.detect_many([str(wav), str(tmp_path / "gone.wav")]):
        w.add(_row(res))
    w.flush()
    (shard,) = tmp_path.glob("part-*.parquet")
    table = pq.read_table(shard)
    assert table.column_names == PARQUET_ROW.names() and table.num_rows == 2
    rows = read_results(tmp_path)
    _check_result(rows[0])
    assert rows[1]["error_kind"] == "missing"


def _slow_detector(ckpt, delay):
    class Slow(TorchEngine):
        def __call__(self, x):
            time.sleep(delay)
            return super().__call__(x)

    det = Detector.from_checkpoint(ckpt)
    return Detector(Slow(det.model), windows=det.windows, decision=det.decision)


@pytest.mark.slow
def test_service_stream_events_audit_rows_and_openapi_have_the_schema_fields(ckpt, tmp_path):
    """One real stream gives every event type (a slow engine makes it lag; a bad message ends
    it with an error); a detect and a refused stream write the audit tables' rows."""
    pytest.importorskip("fastapi")
    ws_client = pytest.importorskip("websockets.sync.client")
    import httpx
    from _server import LocalServer
    from websockets.exceptions import ConnectionClosed

    from spoofscope.serve import ServiceSettings, create_app

    db = tmp_path / "audit.sqlite"
    app = create_app(
        _slow_detector(ckpt, 0.3), ServiceSettings(audit_db=str(db), stream_max_lag_s=1.0)
    )
    x = _signal(6.0)
    pcm = np.round(x * 32767).astype("<i2").tobytes()
    with LocalServer(app) as srv:
        ws = srv.url.replace("http", "ws") + "/v1/stream"
        events = []
        with ws_client.connect(ws) as c:
            c.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": 1.0}))
            for i in range(0, len(pcm), 8000):
                c.send(pcm[i : i + 8000])
            c.send("not json")
            try:
                while True:
                    events.append(json.loads(c.recv(timeout=120)))
            except ConnectionClosed:
                pass
        with ws_client.connect(ws + "?api_key=k") as c:  # refused: a key in the URL
            with pytest.raises(ConnectionClosed):
                while True:
                    c.recv(timeout=30)
        buf = (tmp_path / "one.wav").as_posix()
        sf.write(buf, x[: 3 * SR], SR)
        with open(buf, "rb") as f:
            one = httpx.post(srv.url + "/v1/detect", files={"file": f}, timeout=120).json()
        with open(buf, "rb") as f:
            many = httpx.post(
                srv.url + "/v1/detect/batch", files=[("files", f)], timeout=120
            ).json()
        spec = httpx.get(srv.url + "/openapi.json").json()
    assert {e["type"] for e in events} == set(EVENTS), [e["type"] for e in events]
    for e in events:
        assert list(e) == EVENTS[e["type"]].names("service"), e["type"]
    summary = events[-1]
    assert summary["type"] == "summary" and summary["ended_by"] == "bad_message"
    _check_result({k: v for k, v in summary.items() if k not in ("type", "stream_id", "ended_by")})
    _check_result(one, "service")
    assert list(many) == BATCH.names("service")
    _check_result(many["results"][0], "service")

    con = sqlite3.connect(db)
    for table, record in (("decisions", AUDIT_DECISION), ("rejections", AUDIT_REJECTION)):
        cur = con.execute(f"SELECT * FROM {table}")
        assert [c[0] for c in cur.description] == record.names()
        assert cur.fetchall(), f"no {table} row written"
    con.close()

    comp = spec["components"]["schemas"]
    ok = spec["paths"]["/v1/detect"]["post"]["responses"]["200"]["content"]["application/json"]
    model = comp[ok["schema"]["$ref"].rsplit("/", 1)[1]]
    assert list(model["properties"]) == RESULT.names("service")
    for name, prop in model["properties"].items():
        assert prop["description"] == next(f.meaning for f in RESULT.fields if f.name == name)
    for f in RESULT.fields:
        if f.items is not None:
            ref = model["properties"][f.name]["items"]["$ref"].rsplit("/", 1)[1]
            assert list(comp[ref]["properties"]) == f.items.names()
    batch = spec["paths"]["/v1/detect/batch"]["post"]["responses"]["200"]["content"]
    ref = batch["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert list(comp[ref]["properties"]) == BATCH.names()


def test_field_reference_page_lists_every_field_of_every_record():
    """docs/gen/gen_fields.py renders a table per record with a row per field."""
    import runpy
    from pathlib import Path

    gen = Path(__file__).resolve().parents[1] / "docs" / "gen" / "gen_fields.py"
    page = runpy.run_path(str(gen), run_name="gen_fields")["render"]()
    for r in RECORDS:
        head = f"### {r.name[0].upper() + r.name[1:]}\n"
        assert page.count(head) == 1, r.name
        section = page.split(head, 1)[1].split("\n### ", 1)[0]
        rows = [ln.split("|")[1].strip(" `") for ln in section.splitlines() if ln.startswith("| `")]
        assert rows == [f.name for f in r.fields], r.name
