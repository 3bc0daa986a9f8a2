"""What a user who tries to break things finds: each case through the CLI or the service, with
the clean outcome asserted (exit status, one line, JSON body, audit row, decoded length)."""

import hashlib
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.cli import main  # noqa: E402
from spoofscope.infer import Detector  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402
from spoofscope.serve import ServiceSettings, create_app  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        spoofscope.create_model("lfcc-lcnn"), tmp_path_factory.mktemp("m") / "lcnn.ckpt"
    )


def _noise(seconds, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(SR * seconds)) * scale).astype(np.float32)


def _bytes(x, fmt="WAV", sr=SR, subtype=None):
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.strip()
    # a download's progress bar may come first (it rewrites one line with carriage returns)
    err = "\n".join(ln for ln in err.splitlines() if "%|" not in ln)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"spoofscope {command}: error: "), err
    return err


# ---- 2. Ogg Vorbis: the encoder's end trimming is not truncation; a cut file still is -------


def _ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (RFC 3533: CRC-32, polynomial 0x04C11DB7, not reflected, 0 init)."""
    c = 0
    for b in page:
        c ^= b << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else c << 1
            c &= 0xFFFFFFFF
    return c


def _ogg_pages(raw: bytes):
    pos, out = 0, []
    while pos < len(raw):
        assert raw[pos : pos + 4] == b"OggS"
        nseg = raw[pos + 26]
        size = 27 + nseg + sum(raw[pos + 27 : pos + 27 + nseg])
        out.append((pos, size))
        pos += size
    return out


def _promise_more(raw: bytes, extra: int) -> bytes:
    """The same Vorbis stream whose last page's granule position claims ``extra`` more
    samples than the decoder returns (what some encoders write), checksum recomputed."""
    b = bytearray(raw)
    pos, size = _ogg_pages(raw)[-1]
    (g,) = struct.unpack_from("<q", b, pos + 6)
    struct.pack_into("<q", b, pos + 6, g + extra)
    struct.pack_into("<I", b, pos + 22, 0)
    struct.pack_into("<I", b, pos + 22, _ogg_crc(bytes(b[pos : pos + size])))
    return bytes(b)


def test_vorbis_end_trimming_is_accepted_and_real_truncation_refused(ckpt, tmp_path, capsys):
    x = _noise(5.0, scale=0.05)
    raw = _bytes(np.tile(x, 1), fmt="OGG", sr=44100, subtype="VORBIS")
    trimmed = tmp_path / "trimmed.ogg"
    trimmed.write_bytes(_promise_more(raw, 104))
    with sf.SoundFile(trimmed) as f:  # the header promises more than the decoder gives
        promised = f.frames
    decoded = sf.read(trimmed, dtype="float32")[0]
    assert 0 < promised - len(decoded) <= 4096
    last, size = _ogg_pages(raw)[-1]
    (tmp_path / "cut_in_page.ogg").write_bytes(raw[: last + size // 2])
    (tmp_path / "no_last_page.ogg").write_bytes(raw[:last])
    far = tmp_path / "far.ogg"  # a header that promises a second more than there is
    far.write_bytes(_promise_more(raw, 44100))
    paths = [str(tmp_path / n) for n in ("trimmed.ogg", "cut_in_page.ogg", "no_last_page.ogg")]
    rc = main(["detect", *paths, str(far), "--model", str(ckpt), "--json", "--quiet"])
    assert rc == 1
    r = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert r[0]["error"] is None
    # the decoded length: every sample the decoder gave, at 16 kHz
    assert r[0]["duration_s"] == pytest.approx(len(decoded) / 44100, abs=1 / SR)
    assert "ends inside an Ogg page" in r[1]["error"]
    assert "without its end-of-stream page" in r[2]["error"]
    assert "promises" in r[3]["error"] and r[3]["error_kind"] == "invalid"


# ---- 3, 11, 13: the service ------------------------------------------------------------------


def test_service_shows_no_server_path(ckpt, tmp_path):
    own = tmp_path / "secret_folder" / "mine.pth"
    own.parent.mkdir()
    torch.save(spoofscope.load_model(ckpt).state_dict(), own)
    det = Detector.load("lfcc-lcnn", weights=own)
    digest = hashlib.sha256(own.read_bytes()).hexdigest()[:12]
    with TestClient(create_app(det, ServiceSettings())) as c:
        ready = c.get("/readyz")
        r = c.post("/v1/detect", files={"file": ("a.wav", _bytes(_noise(2.0)), "x")})
        b = c.post("/v1/detect/batch", files=[("files", ("b.wav", _bytes(_noise(1.0)), "x"))])
    assert ready.json()["model"] == f"lfcc-lcnn + mine.pth (weights sha256 {digest})"
    assert r.json()["model"] == b.json()["results"][0]["model"] == ready.json()["model"]
    for text in (ready.text, r.text, b.text):
        assert "secret_folder" not in text and str(tmp_path) not in text


def _err(r, status, code):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert e["code"] == code, e
    return e["message"]


def test_service_messages_name_the_right_field_and_option(ckpt):
    det = Detector.from_checkpoint(ckpt)
    with TestClient(create_app(det, ServiceSettings(max_duration_s=3.0))) as c:
        msg = _err(c.post("/v1/detect/batch", content=b""), 422, "missing_file")
        assert "'files'" in msg and "'file'" not in msg
        msg = _err(
            c.post("/v1/detect/batch", files={"other": ("a.wav", b"x", "x")}), 422, "missing_file"
        )
        assert msg == "no 'files' field in the form"
        two = [("file", (f"{i}.wav", _bytes(_noise(1.0, i)), "x")) for i in range(2)]
        msg = _err(c.post("/v1/detect", files=two), 422, "too_many_files")
        assert "2 'file' parts" in msg and "/v1/detect/batch" in msg
        long = _bytes(_noise(4.0), fmt="FLAC")
        msg = _err(
            c.post("/v1/detect", files={"file": ("l.flac", long, "x")}), 413, "audio_too_long"
        )
        assert msg.startswith("l.flac: ") and "--max-duration" in msg and "3 s" in msg
        assert "max_duration_s" not in msg
        # the batch form carries the same message in the file's row
        b = c.post("/v1/detect/batch", files=[("files", ("l.flac", long, "x"))]).json()
        assert b["results"][0]["error"] == msg


def test_a_spent_deadline_blames_the_file_that_spent_it(ckpt):
    """``--request-timeout 2``: a 90-s file then a 1-s file; the long one exceeded the limit,
    the short one was never started and says so."""
    from test_robustness import _slow_detector

    det = _slow_detector(ckpt, 0.1)  # 45 windows of the long file: 4.5 s of compute at least
    with TestClient(create_app(det, ServiceSettings(request_timeout_s=2.0))) as c:
        files = [
            ("files", ("long.flac", _bytes(_noise(90.0), fmt="FLAC"), "x")),
            ("files", ("short.wav", _bytes(_noise(1.0, 1)), "x")),
        ]
        res = c.post("/v1/detect/batch", files=files).json()["results"]
    assert res[0]["error"] == "long.flac: the computation exceeded the 2 s limit"
    assert res[1]["error"] == (
        "short.wav: not scored: the 2 s compute limit of the request was used up by the files "
        "before it"
    )


# ---- 4-7, 12, 13: the command line -----------------------------------------------------------


def test_adapt_refuses_lists_and_folds_it_cannot_use_before_any_work(
    ckpt, tmp_path, capsys, monkeypatch
):
    import spoofscope.models

    # nothing is loaded or decoded before these checks (adapt imports load_model when run)
    monkeypatch.setattr(spoofscope.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    header = tmp_path / "h.csv"
    header.write_text("path,label\n")
    out = str(tmp_path / "o")
    assert main(["adapt", "--model", str(ckpt), "--data", str(header), "--out", out]) == 2
    assert "lists no files" in _one_error_line(capsys, "adapt")
    rows = "".join(f"b{i}.wav,bonafide,g{i % 3}\ns{i}.wav,spoof,g{i % 3}\n" for i in range(6))
    grouped = tmp_path / "g.csv"
    grouped.write_text("path,label,group\n" + rows)
    assert main(["adapt", "--model", str(ckpt), "--data", str(grouped), "--out", out]) == 2
    assert "3 groups cannot fill 5 folds: use --folds 3" in _one_error_line(capsys, "adapt")
    args = ["adapt", "--model", str(ckpt), "--data", str(grouped), "--out", out]
    assert main([*args, "--folds", "100"]) == 2
    assert "6 bona fide and 6 spoof files; 100-fold" in _one_error_line(capsys, "adapt")
    for bad in ("0", "1"):  # the same rule for both, from the parser
        with pytest.raises(SystemExit) as e:
            main([*args, "--folds", bad])
        assert e.value.code == 2
        assert f"--folds: {bad} must be >= 2" in capsys.readouterr().err
    # --out that is a file is named as such
    f = tmp_path / "a_file"
    f.write_text("x")
    assert main(["adapt", "--model", str(ckpt), "--data", str(grouped), "--out", str(f)]) == 2
    assert f"--out {f} is an existing file" in _one_error_line(capsys, "adapt")


def test_spreadsheet_csv_with_bom_and_same_stems(tmp_path, capsys):
    for name in ("b00.wav", "b00.flac", "s00.wav"):
        sf.write(tmp_path / name, _noise(1.0), SR)
    lst = tmp_path / "list.csv"
    lst.write_bytes(
        "\ufeffpath,label\nb00.wav,bonafide\nb00.flac,bonafide\ns00.wav,spoof\n".encode()
    )
    from spoofscope.data.protocols import parse_csv

    trials = parse_csv(lst)
    assert [t.utt_id for t in trials] == ["b00.wav", "b00.flac", "s00"]
    assert [t.path for t in trials] == [
        tmp_path / "b00.wav",
        tmp_path / "b00.flac",
        tmp_path / "s00.wav",
    ]
    assert main(["data", "check", str(lst), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sum(s["trials"] for s in rep["splits"].values()) == 3
    # the same file listed twice is still an error
    lst.write_text("path,label\nb00.wav,bonafide\nb00.wav,spoof\n")
    assert main(["data", "check", str(lst)]) == 2
    assert "'b00.wav' appears twice" in _one_error_line(capsys, "data")


def test_models_fetch_takes_a_path_and_a_bad_copy_is_named(
    reference_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path / "cache"))
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"not the weights")
    assert main(["models", "fetch", "aasist", "--url", str(wrong)]) == 2
    err = _one_error_line(capsys, "models")
    assert "it was deleted and not used" in err and "Delete it" not in err
    assert not (tmp_path / "cache" / "AASIST.pth").exists()
    assert main(["models", "fetch", "aasist", "--url", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth: no such file" in _one_error_line(capsys, "models")
    src = reference_dir / "official_AASIST.pth"
    assert main(["models", "fetch", "aasist", "--url", str(src)]) == 0
    cached = tmp_path / "cache" / "AASIST.pth"
    assert cached.read_bytes() == src.read_bytes()
    assert "sha256 verified" in capsys.readouterr().out


def test_serve_refuses_a_bad_audit_file_and_an_empty_keys_file(ckpt, tmp_path, capsys):
    wav = tmp_path / "some.wav"
    sf.write(wav, _noise(1.0), SR)
    before = wav.read_bytes()
    assert main(["serve", "--model", str(ckpt), "--audit-db", str(wav), "--quiet"]) == 2
    assert "not a SQLite database" in _one_error_line(capsys, "serve")
    assert wav.read_bytes() == before  # not written to
    keys = tmp_path / "keys.txt"
    keys.write_text("# no keys yet\n\n")
    assert main(["serve", "--model", str(ckpt), "--api-keys-file", str(keys), "--quiet"]) == 2
    assert "holds no keys" in _one_error_line(capsys, "serve")


def test_model_and_window_messages(ckpt, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", _noise(2.0), SR)
    text = tmp_path / "model.txt"
    text.write_text("some words here\nand more\n")
    assert main(["detect", str(tmp_path / "a.wav"), "--model", str(text), "--quiet"]) == 2
    assert "not a PyTorch checkpoint or state_dict (a text file)" in _one_error_line(
        capsys, "detect"
    )
    rc = main(["detect", str(tmp_path / "a.wav"), "--model", str(ckpt), "--window-samples",
               "100", "--quiet"])  # fmt: skip
    # one line: the window, with no log of an ONNX export that failed on it first
    assert rc == 2 and "100-sample window is shorter" in _one_error_line(capsys, "detect")


def test_a_closed_pipe_is_not_an_error(tmp_path):
    p = subprocess.run(
        f"{sys.executable} -m spoofscope models | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    assert p.stdout.startswith("model ") and p.stderr == ""


def test_detect_progress_counts_only_what_is_judged(ckpt, tmp_path, capsys, monkeypatch):
    import spoofscope.audio as audio

    x = _noise(6.0)
    sf.write(tmp_path / "a_ok.wav", x, SR)
    sf.write(tmp_path / "b_one_hz.wav", x[:40002], 1)  # its header claims 40,002 s
    raw = (tmp_path / "a_ok.wav").read_bytes()
    (tmp_path / "c_cut.wav").write_bytes(raw[: len(raw) // 2])
    sf.write(tmp_path / "d_loud.wav", x * 20, SR, subtype="FLOAT")
    sf.write(tmp_path / "e_loud.wav", x * 30, SR, subtype="FLOAT")
    tiny = _noise(10 / SR)  # ten samples
    sf.write(tmp_path / "f_ten.wav", tiny, SR, subtype="FLOAT")
    monkeypatch.setattr(audio, "_clipping_reported", False)
    assert main(["detect", str(tmp_path), "--model", str(ckpt), "--json"]) == 1
    cap = capsys.readouterr()
    bars = [b for b in cap.err.replace("\r", "\n").splitlines() if "s audio" in b]
    assert "TqdmWarning" not in cap.err and bars
    n, total = bars[-1].split("|")[2].split("s audio")[0].split("/")
    # 6 + 6 + 6 s judged, the 1-Hz and the cut files taken out, the ten samples ~0
    assert int(n) == int(total) == 18 and "100%" in bars[-1]
    clipping = [ln for ln in cap.err.splitlines() if "exceeds full scale" in ln]
    assert len(clipping) == 1 and "d_loud.wav" in clipping[0]
    res = {Path(r["path"]).name: r for r in map(json.loads, cap.out.splitlines())}
    ten = res["f_ten.wav"]
    assert ten["duration_s"] == 10 / SR and ten["speech_s"] <= ten["duration_s"]


def test_adapt_warns_once(tmp_path, ckpt, capsys):
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(3):
        for lab in ("bonafide", "spoof"):
            p = tmp_path / f"{lab}{i}.wav"
            sf.write(p, (rng.standard_normal(SR * 2) * (0.1 if lab == "spoof" else 0.3)), SR)
            rows.append(f"{p.name},{lab}")
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    args = ["adapt", "--model", str(ckpt), "--data", str(tmp_path / "l.csv"), "--out",
            str(tmp_path / "o"), "--folds", "2", "--quiet", "epochs=2"]  # fmt: skip
    assert main(args) == 0
    cap = capsys.readouterr()
    assert (cap.out + cap.err).count("only 3 files of the smaller class") == 1


# ---- 10, 13: the audit summary ---------------------------------------------------------------


def test_audit_summary_separates_abstentions_from_low_confidence(tmp_path, capsys):
    """The summary's counts are those of what the test sent: 3 silent uploads abstain; of 4
    verdicts (a tone, a noise, two splices of both: a model that hears tone against noise), those
    whose probability is within the calibration's band of 0.5 are low confidence, counted
    here from the band and each answer's probability."""
    from _models import responsive_lcnn

    from spoofscope.infer import Calibration

    db = tmp_path / "audit.sqlite"
    # calibrated on the user's kind of data, so that verdicts claim (low) confidence:
    # p = sigmoid(score), threshold 0 (p 0.5), band 0.2
    cal = Calibration(a=1.0, b=0.0, threshold=0.0, band=0.2, domain="deployment")
    det = Detector(responsive_lcnn(0), calibration=cal)
    t = np.arange(2 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    spliced = [np.concatenate([_noise(d, 2), tone[int(d * SR) :]]) for d in (0.5, 0.8)]
    sent = [tone, _noise(2.0, 0), *spliced]  # noise then tone: in between
    sent += [np.zeros(SR * 2, np.float32)] * 3
    with TestClient(create_app(det, ServiceSettings(audit_db=str(db)))) as c:
        answers = [
            c.post("/v1/detect", files={"file": ("v.wav", _bytes(x), "x")}).json() for x in sent
        ]
    assert [a["label"] == "no_speech" for a in answers] == [False] * 4 + [True] * 3
    p = np.array([a["p_bonafide"] for a in answers[:4]])
    low = int(np.sum(np.abs(p - 0.5) < 0.2))
    assert 0 < low < 4, p  # both kinds among the verdicts
    assert [a["confident"] for a in answers[:4]] == [bool(v) for v in np.abs(p - 0.5) >= 0.2]
    assert main(["audit", "summary", "--db", str(db), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["decisions"] == 7 and s["abstained"] == 3 and s["abstention_rate"] == 3 / 7
    assert s["verdicts"] == 4 and s["no_confidence_claimed"] == 0
    assert s["low_confidence_rate"] == low / 4
    assert s["by_label"] == {
        lab: n for lab in ("bonafide", "spoof", "no_speech")
        if (n := sum(a["label"] == lab for a in answers))
    }  # fmt: skip
    assert main(["audit", "summary", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "abstained        3 (42.9 % of decisions, no_speech)" in text
    assert "of 4 verdicts" in text
    assert main(["audit", "summary", "--db", str(db), "--since", "2999-01-01"]) == 0
    text = capsys.readouterr().out
    assert "decisions        0  (none in this period)" in text and "None" not in text
