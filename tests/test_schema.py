"""One schema per record (spoofscope.infer.schema): the fields of real output (a result of a
real file, ``detect --json``, the CLI's and the service's stream events, a Parquet shard, the
audit tables) and of the service's OpenAPI models are exactly the schema's, in its order."""

import json
import re
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from _audio_utils import tone_noise_pause
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
    return tone_noise_pause(seconds, noise=(3, 5), pause=(6, 6.6), seed=seed)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(responsive_lcnn(0), tmp_path_factory.mktemp("m") / "lcnn.ckpt")


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    p = tmp_path_factory.mktemp("a") / "call.wav"
    sf.write(p, _signal(), SR)
    return p


def _check_types(d: dict, record, where=None):
    """Each value of ``d`` has its field's type: a float where the schema says ``float`` (not
    an int, which JSON would write as ``0``), a bool not ``0``/``1``, null only where allowed."""
    for f in record.fields:
        if f.name not in d:
            continue
        allowed = getattr(f.type, "__args__", None) or (f.type,)
        v = d[f.name]
        assert any(v is None if a is type(None) else type(v) is a for a in allowed), (
            record.name,
            f.name,
            v,
            f.type,
        )


def _check_result(d: dict, where=None):
    """``d`` (a result as JSON) has the schema's fields and types, and its lists the items'
    records'."""
    assert list(d) == RESULT.names(where)
    _check_types(d, RESULT, where)
    for f in RESULT.fields:
        if f.items is not None:
            assert d[f.name], f"{f.name} is empty: nothing to compare"
            for item in d[f.name]:
                assert list(item) == f.items.names(where), f.name
                _check_types(item, f.items, where)


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


def test_a_calibrated_result_has_the_schema_types(ckpt, wav):
    """With a calibration ``confident`` is true or false: a bool, not 1 or 0."""
    from spoofscope.infer import Calibration

    rng = np.random.default_rng(0)
    cal = Calibration.fit(rng.normal(2, 1, 2000), rng.normal(-2, 1, 2000))
    d = Detector.from_checkpoint(ckpt, calibration=cal)(str(wav)).to_dict()
    assert d["calibrated"] and d["confident"] is not None, d["confidence_note"]
    _check_result(d)


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
        _check_types(e, EVENTS[e["type"]])
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
    # each column's type is its field's (a float32 column would round every score)
    arrow = {float: "double", int: "int64", bool: "bool", str: "string"}
    for f in PARQUET_ROW.fields:
        kind = next(a for a in getattr(f.type, "__args__", (f.type,)) if a is not type(None))
        assert str(table.schema.field(f.name).type) == arrow[kind], f.name
    _check_types(table.to_pylist()[0], PARQUET_ROW)
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
        _check_types(e, EVENTS[e["type"]], "service")
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
        rows = cur.fetchall()
        assert rows, f"no {table} row written"
        for row in rows:  # a column of another type (TEXT for a score) reads back as that
            _check_types(dict(zip(record.names(), row, strict=True)), record)
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


def test_openapi_types_are_the_schema_types(ckpt):
    """The service's OpenAPI models give each field its schema type, nullable only where the
    schema allows null, and every field required (no stand-in default)."""
    pytest.importorskip("fastapi")
    from spoofscope.serve import ServiceSettings, create_app

    spec = create_app(Detector.from_checkpoint(ckpt), ServiceSettings()).openapi()
    comp = spec["components"]["schemas"]
    words = {float: "number", int: "integer", str: "string", bool: "boolean", list: "array"}

    def check(name, record):
        model = comp[name]
        assert sorted(model.get("required", [])) == sorted(record.names("service")), name
        for f in record.fields:
            if f.name not in model["properties"]:
                continue
            prop = model["properties"][f.name]
            got = {p.get("type") for p in prop.get("anyOf", [prop])}
            want = {
                "null" if a is type(None) else words[a]
                for a in getattr(f.type, "__args__", None) or (f.type,)
            }
            assert got == want, (name, f.name, got, want)
            if f.items is not None:
                check(prop["items"]["$ref"].rsplit("/", 1)[1], f.items)

    ok = spec["paths"]["/v1/detect"]["post"]["responses"]["200"]["content"]["application/json"]
    check(ok["schema"]["$ref"].rsplit("/", 1)[1], RESULT)
    batch = spec["paths"]["/v1/detect/batch"]["post"]["responses"]["200"]["content"]
    check(batch["application/json"]["schema"]["$ref"].rsplit("/", 1)[1], BATCH)


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
        rows = [ln.split("|") for ln in section.splitlines() if ln.startswith("| `")]
        assert [row[1].strip(" `") for row in rows] == [f.name for f in r.fields], r.name
        # the type column says the schema's type (a list of objects links to its record)
        for row, f in zip(rows, r.fields, strict=True):
            kind = row[2].strip()
            if f.items is not None:
                kind = re.sub(r"\[([^]]+)\]\(#[^)]+\)", r"\1", kind)
            assert kind == type_name(f), (r.name, f.name, kind)
