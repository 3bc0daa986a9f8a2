"""More hostile input to the live surfaces and to ``evaluate``, each through the real endpoint
(uvicorn, websockets) or the real command: JSON values of the wrong type in a start message,
a second Twilio start, and empty, BOM-prefixed or inconsistent localisation files."""

import base64
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
ws_client = pytest.importorskip("websockets.sync.client")
import httpx  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        spoofscope.create_model("lfcc-lcnn"), tmp_path_factory.mktemp("m") / "lcnn.ckpt"
    )


def _twilio_start(fmt=None, **start):
    body = {
        "streamSid": "MZh2",
        "callSid": "CAh2",
        "tracks": ["inbound"],
        "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    body["mediaFormat"].update(fmt or {})
    body.update(start)
    return {"event": "start", "streamSid": "MZh2", "start": body}


MEDIA = {
    "event": "media",
    "streamSid": "MZh2",
    "media": {"track": "inbound", "payload": base64.b64encode(b"\xff" * 1600).decode()},
}

# (endpoint, messages, the words the close reason must hold)
CASES = [
    ("/v1/stream", [{"type": "start", "sample_rate": 16000, "encoding": ["f32le"]}], "encoding"),
    ("/v1/stream", [{"type": "start", "sample_rate": 16000, "encoding": {}}], "encoding"),
    ("/v1/stream", [{"type": "start", "sample_rate": 16000, "hop_s": True}], "hop_s"),
    ("/v1/stream/twilio", [_twilio_start(tracks=[["inbound"]]), MEDIA], "start.tracks"),
    ("/v1/stream/twilio", [_twilio_start(tracks=[{}]), MEDIA], "start.tracks"),
    (
        "/v1/stream/twilio",
        [_twilio_start(customParameters={"hop_s": True}), MEDIA],
        "start.customParameters.hop_s",
    ),
    (
        "/v1/stream/twilio",
        [_twilio_start(), MEDIA, _twilio_start({"sampleRate": 16000}), MEDIA],
        "second start",
    ),
]


def test_start_values_of_the_wrong_type_are_refused_by_name(ckpt, tmp_path):
    """Each closes 1007 with the field named (never 1011 internal_error from a TypeError),
    and a second Twilio start is refused rather than ignored (its format would not apply)."""
    from _server import LocalServer

    from spoofscope.infer import Detector
    from spoofscope.serve import ServiceSettings, create_app

    app = create_app(Detector.from_checkpoint(ckpt), ServiceSettings(stream_idle_s=5.0))
    with LocalServer(app) as srv:
        got = []
        for path, msgs, words in CASES:
            c = ws_client.connect(srv.url.replace("http", "ws") + path)
            try:
                for m in msgs:
                    c.send(json.dumps(m))
                while True:
                    c.recv(timeout=30)
            except (ConnectionClosed, TimeoutError):
                pass
            got.append((c.close_code, c.close_reason or "", words))
            c.close()
        metrics = httpx.get(srv.url + "/metrics").text
    for code, reason, words in got:
        assert code == 1007 and words in reason, (code, reason, words)
    assert "internal_error" not in metrics
    assert "spoofscope_streams_active 0.0" in metrics


# ---- evaluate --reference/--hypothesis: empty, BOM-prefixed and inconsistent files ----------

REF = (
    "SPEAKER a 1 0.000 1.000 <NA> <NA> bonafide <NA> <NA>\n"
    "SPEAKER a 1 1.000 1.000 <NA> <NA> spoof <NA> <NA>\n"
    "SPEAKER b 1 0.000 2.000 <NA> <NA> bonafide <NA> <NA>\n"
)


def _hyp_line(path, scores, duration=2.0, step=0.5):
    steps = [
        {"start_s": k * step, "end_s": (k + 1) * step, "score": s} for k, s in enumerate(scores)
    ]
    return json.dumps({"path": path, "duration_s": duration, "timeline": steps})


HYP = (
    _hyp_line("x/a.wav", [0.8, 0.6, -0.7, -0.9]) + "\n" + _hyp_line("x/b.wav", [0.9, 0.5, 0.4, 0.7])
)


def _evaluate(capsys, tmp_path: Path, ref: str, hyp: str, encoding="utf-8"):
    from spoofscope.cli import main

    (tmp_path / "ref.rttm").write_text(ref, encoding=encoding)
    (tmp_path / "hyp.jsonl").write_text(hyp, encoding=encoding)
    args = [
        "evaluate",
        "--reference",
        tmp_path / "ref.rttm",
        "--hypothesis",
        tmp_path / "hyp.jsonl",
    ]
    try:
        code = main([str(x) for x in [*args, "--json"]])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_evaluate_names_empty_bom_and_inconsistent_files(tmp_path, capsys):
    code, out, _ = _evaluate(capsys, tmp_path, REF, HYP)
    assert code == 0 and json.loads(out)["range_eer"]["eer"] == 0.0
    # a byte order mark (Windows editors write one) changes nothing
    code, out_bom, err = _evaluate(capsys, tmp_path, REF, HYP, encoding="utf-8-sig")
    assert code == 0 and json.loads(out_bom) == json.loads(out), err
    cases = [  # (reference, hypothesis, words the one error line must hold)
        ("", HYP, ["ref.rttm holds no RTTM lines"]),
        ("# only a comment\n", HYP, ["ref.rttm holds no RTTM lines"]),
        (REF, "", ["hyp.jsonl is empty"]),
        (REF, "\n  \n", ["hyp.jsonl is empty"]),
        (
            REF,
            HYP.replace('"duration_s": 2.0', '"duration_s": -2.0', 1),
            ["hyp.jsonl:1", "duration_s is -2.0, not a positive number"],
        ),
        (
            REF,
            HYP.replace('"start_s": 1.0, "end_s": 1.5', '"start_s": 1.5, "end_s": 1.0', 1),
            ["hyp.jsonl:1", "timeline step 2 runs from 1.5 s to 1.0 s"],
        ),
    ]
    for ref, hyp, words in cases:
        code, _, err = _evaluate(capsys, tmp_path, ref, hyp)
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("spoofscope evaluate: error: "), err
        assert all(w in err for w in words), (words, err)


# ---- --audit-db: every libpq form is PostgreSQL (never a SQLite file named after it) --------


def test_audit_targets_in_other_libpq_forms_leak_nothing_and_make_no_file(tmp_path, monkeypatch):
    """A key=value string starting with any keyword, an upper-case scheme, another scheme and
    an unencoded @ in a URL password: each refused in one error without the password, and no
    SQLite file made in the working folder (as a key=value string starting with keepalives=
    used to be: the password in the new file's name, the audit trail silently local)."""
    pytest.importorskip("psycopg_pool")
    from _server import free_port

    from spoofscope.errors import ConfigError
    from spoofscope.serve.audit import AuditLog

    monkeypatch.chdir(tmp_path)
    port = free_port()  # nothing listens there
    targets = {  # target -> the words its error holds
        f"keepalives=1 password=SECRET1 host=127.0.0.1 port={port}": "cannot connect",
        f"sslrootcert=/x password=SECRET1 host=127.0.0.1 port={port}": "cannot connect",
        f"Host=127.0.0.1 port={port} password=SECRET1": "cannot connect",
        f"POSTGRESQL://u:SECRET1@127.0.0.1:{port}/db": "cannot connect",
        f"mysql://u:SECRET1@127.0.0.1:{port}/db": "a mysql:// URL",
        f"postgresql://u:p@SECRET1@127.0.0.1:{port}/db": "percent-encoded (%40)",
    }
    for target, words in targets.items():
        with pytest.raises(ConfigError) as e:
            AuditLog(target)
        msg = str(e.value)
        assert "SECRET1" not in msg and "***" in msg and words in msg, msg
    assert list(tmp_path.iterdir()) == []


# ---- a calibration file cannot put NaN, a string or an impossible prior into verdicts --------


def test_a_calibration_file_with_invalid_values_is_refused(ckpt, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from spoofscope.cli import main

    wav = tmp_path / "a.wav"
    t = np.arange(2 * 16000) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    cal = tmp_path / "cal.json"
    cases = {  # calibration JSON -> the words of its one error line
        '{"a": NaN, "b": 0, "domain": "deployment"}': "calibration a must be a number",
        '{"a": 1, "b": Infinity}': "calibration b must be a number",
        '{"a": "2", "b": 0}': "calibration a must be a number (finite), not '2'",
        '{"a": true, "b": 0}': "calibration a must be a number (finite), not True",
        '{"a": 1, "b": 0, "prior": 1.5}': "calibration prior must be a number (0-1)",
        '{"a": 1, "b": 0, "prior": 0}': "calibration prior must be a number (0-1)",
        '{"a": 1, "b": 0, "band": -1}': "calibration band must be a number (0-0.5)",
        '{"a": 1, "b": 0, "threshold": NaN}': "calibration threshold must be a number",
        "[1, 2]": "a calibration is a JSON object, not a list",
    }
    for text, words in cases.items():
        cal.write_text(text)
        try:
            code = main(["detect", "--model", str(ckpt), "--calibration", str(cal), str(wav)])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (text, err)
        assert err.startswith(f"spoofscope detect: error: {cal}: ") and words in err, err


# ---- calibrate and fuse: scores near the float range never give NaN files or tracebacks ------


def test_huge_scores_are_refused_by_calibrate_and_fuse(tmp_path, capsys):
    import numpy as np

    from spoofscope.cli import main

    rng = np.random.default_rng(0)
    utts = [f"U{i:03d}" for i in range(40)]
    bona = [i % 2 == 1 for i in range(40)]
    (tmp_path / "proto.txt").write_text(
        "".join(
            f"LA_0001 {u} - {'-' if b else 'A01'} {'bonafide' if b else 'spoof'}\n"
            for u, b in zip(utts, bona, strict=True)
        )
    )
    normal = rng.normal(size=40) + np.where(bona, 1.0, -1.0)
    huge = np.where(bona, 1e308, -1e308)  # finite, but their spread overflows a float
    one_huge = normal.copy()
    one_huge[5] = 1e308

    def scores(name, values):
        path = tmp_path / name
        path.write_text("".join(f"{u} {float(v)!r}\n" for u, v in zip(utts, values, strict=True)))
        return path

    a, b, c = scores("a.txt", normal), scores("b.txt", huge), scores("c.txt", one_huge)
    proto = tmp_path / "proto.txt"

    def run(*args):
        try:
            code = main([str(x) for x in args])
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr().err.strip()

    fused, cal = tmp_path / "fusion.json", tmp_path / "cal.json"
    for args in (
        ["calibrate", "--scores", b, "--protocol", proto, "--out", cal],
        ["fuse", "--scores", a, b, "--protocol", proto, "--out", fused],
    ):
        code, err = run(*args)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "too large for a logistic fit" in err and "1e+308" in err, err
    assert not fused.exists() and not cal.exists()  # no file with "bias": NaN
    # a fusion learnt on ordinary scores, applied to an eval file with one score near the
    # float range: that trial is named, and no score file with inf in it is written
    out = tmp_path / "fused.txt"
    code, err = run("fuse", "--scores", a, a, "--protocol", proto, "--out", fused,
                    "--apply", c, c, "--eval-protocol", proto, "--eval-out", out)  # fmt: skip
    assert code == 2 and "the fused score of U005 overflows" in err and not out.exists(), err


# ---- a Twilio callSid chosen by another key does not shadow one's own stream ----------------


def test_another_key_s_stream_with_the_same_call_sid_does_not_shadow_mine(ckpt, tmp_path):
    """Key B opens a Twilio stream with the callSid of key A's live stream: on this replica
    and on another (the shared table), A still reads its own stream by that callSid, and B
    its own; neither sees the other's."""
    import time

    from _server import LocalServer

    from spoofscope.infer import Detector
    from spoofscope.serve import ServiceSettings, create_app

    det = Detector.from_checkpoint(ckpt)
    keys = frozenset({"key-a", "key-b"})
    db = str(tmp_path / "audit.sqlite")

    def server():
        return LocalServer(create_app(det, ServiceSettings(api_keys=keys, audit_db=db)))

    def open_call(srv, key):
        c = ws_client.connect(srv.url.replace("http", "ws") + "/v1/stream/twilio")
        c.send(json.dumps(_twilio_start(customParameters={"api_key": key})))
        c.send(json.dumps(MEDIA))
        return c

    def ids(srv):
        out = {}
        for key in ("key-a", "key-b"):
            r = httpx.get(srv.url + "/v1/streams/CAh2", headers={"X-API-Key": key})
            out[key] = r.json().get("stream_id") if r.status_code == 200 else r.status_code
        return out

    with server() as a, server() as b:
        mine = open_call(a, "key-a")
        time.sleep(1.0)
        sid_a = ids(a)["key-a"]
        theirs = open_call(a, "key-b")
        time.sleep(1.5)  # both live states reach the shared table
        here, there = ids(a), ids(b)
        for c in (mine, theirs):
            c.send(json.dumps({"event": "stop"}))
            try:
                while True:
                    c.recv(timeout=30)
            except (ConnectionClosed, TimeoutError):
                pass
    assert isinstance(sid_a, str), sid_a
    assert here["key-a"] == sid_a and there["key-a"] == sid_a, (here, there)
    assert isinstance(here["key-b"], str) and here["key-b"] != sid_a, here
    assert there["key-b"] == here["key-b"], there


# ---- detect --stream -: raw input that ends inside a sample frame is said ------------------


def test_stdin_ending_inside_a_sample_frame_is_warned(ckpt):
    import subprocess
    import sys

    import numpy as np

    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype("<f4").tobytes()

    def run(data, *opts):
        return subprocess.run(
            [sys.executable, "-m", "spoofscope", "detect", "--model", str(ckpt), "--stream",
             "-", "--input-rate", "16000", *opts],
            input=data, capture_output=True, timeout=300,
        )  # fmt: skip

    whole = run(x, "--input-format", "f32le")
    cut = run(x + b"\x01\x02", "--input-format", "f32le")
    stereo = run(x + b"\x01\x02\x03\x04\x05\x06", "--input-format", "s16le", "--channels", "2")
    assert whole.returncode == 0 and b"sample frame" not in whole.stderr, whole.stderr
    assert cut.returncode == 0 and cut.stdout == whole.stdout  # the same samples judged
    assert (
        "standard input ended 2 byte(s) into a sample frame (4 bytes: f32le, 1 channel(s))"
        in cut.stderr.decode()
    ), cut.stderr
    assert "ended 2 byte(s) into a sample frame (4 bytes: s16le, 2 channel(s))" in (
        stereo.stderr.decode()
    ), stereo.stderr
