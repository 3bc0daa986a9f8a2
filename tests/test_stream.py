"""Detector.stream(): audio fed in pieces is judged as detect judges the whole recording."""

import numpy as np
import pytest
import torch
from _audio_utils import tone_noise_pause
from _models import responsive_lcnn

import spoofscope
from spoofscope.infer import Decision, Detector, TorchEngine, WindowPolicy

SR = 16000


def _signal(seconds=12.0, seed=0):
    """A tone with a stretch of noise, a pause and a silent tail (several window kinds)."""
    return tone_noise_pause(seconds, noise=(4, 7), pause=(7.5, 8.2), tail=10.5, seed=seed)


@pytest.fixture(scope="module")
def det():
    m = responsive_lcnn(0)  # scores from -1 (noise) to +1 (tone)
    return Detector(TorchEngine(m), windows=WindowPolicy(hop_s=0.5, samples=2 * SR),
                    decision=Decision(vad="energy"))  # fmt: skip


def _scores(windows):
    return np.array([np.nan if w["score"] is None else w["score"] for w in windows])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chunks_give_detects_windows_and_result(det, seed):
    x = _signal()
    want = det(x)
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 9000, 200))
    cuts = cuts[cuts < x.size]
    s = det.stream()
    events = [ev for piece in np.split(x, cuts) for ev in s.feed(piece)]
    got = s.close()
    events += s.last_events
    events = [e for e in events if e["type"] == "window"]
    assert [(e["start_s"], e["end_s"]) for e in events] == [
        (w["start_s"], w["end_s"]) for w in want.windows
    ]
    for e, w in zip(events, want.windows, strict=True):
        assert (e["score"] is None) == (w["score"] is None)
        if w["score"] is not None:
            assert e["score"] == pytest.approx(w["score"], abs=1e-5)
    assert got.label == want.label and got.score == pytest.approx(want.score, abs=1e-5)
    assert got.duration_s == want.duration_s and got.speech_s == want.speech_s
    assert [t["start_s"] for t in got.timeline] == [t["start_s"] for t in want.timeline]
    np.testing.assert_allclose(
        [np.nan if t["score"] is None else t["score"] for t in got.timeline],
        [np.nan if t["score"] is None else t["score"] for t in want.timeline],
        atol=1e-5,
    )
    assert [(g["label"], g["start_s"], g["end_s"]) for g in got.segments] == [
        (g["label"], g["start_s"], g["end_s"]) for g in want.segments
    ]
    # the running verdict of the last event is the final one
    assert events[-1]["label"] == got.label
    assert events[-1]["score_so_far"] == pytest.approx(got.score, abs=1e-5)


def test_streams_at_another_rate_silence_and_nothing(det):
    """An 8-kHz stream, resampled piece by piece, is judged as detect judges the same 8-kHz
    samples (to 1e-4, where the windows' scores span 2); silence and nothing are no verdict."""
    x = _signal()[: 6 * SR]
    x8 = x[::2].copy()  # 8 kHz (the tone and noise survive; exact resampling is not the point)
    s = det.stream(sample_rate=8000)
    for piece in np.array_split(x8, 17):
        s.feed(piece)
    r = s.close()
    want = det(x8, sample_rate=8000)
    assert r.duration_s == pytest.approx(6.0, abs=0.01) and r.duration_s == want.duration_s
    np.testing.assert_allclose(_scores(r.windows), _scores(want.windows), atol=1e-4)
    assert np.ptp(_scores(want.windows)) > 0.5  # the windows differ: the check can fail
    assert r.score == pytest.approx(want.score, abs=1e-4) and r.label == want.label
    quiet = det.stream()
    quiet.feed(np.zeros(3 * SR, np.float32))
    assert quiet.close().label == "no_speech"
    empty = det.stream().close()
    assert empty.error_kind == "empty"
    closed = det.stream()
    closed.close()
    with pytest.raises(spoofscope.errors.ConfigError, match="closed"):
        closed.feed(x[:100])


def test_end_then_close_and_a_retry_after_a_failed_end(det, monkeypatch):
    """``end()`` then ``close()`` (each twice) gives what ``close()`` alone gives: the last
    windows' events once, then none. When the engine fails on the last windows, ``end()``
    raises, the stream takes no more audio, and a retry scores those same windows: detect's
    windows (none recorded twice, none left unscored) and its verdict."""
    x = _signal()[: 5 * SR + 3000]  # a last window held back for the end
    want = det(x)
    plain = det.stream()
    plain.feed(x)
    res = plain.close()
    ending = plain.last_events
    assert [e["end_s"] for e in ending if e["type"] == "window"] == [x.size / SR]
    s = det.stream()
    s.feed(x)
    s.end()
    s.end()
    assert s.close().to_dict() == res.to_dict() and s.last_events == ending
    assert s.close().to_dict() == res.to_dict() and s.last_events == []

    real, calls = Detector._score, []

    def down_once(self, todo):
        calls.append(len(todo))
        if len(calls) == 1:
            raise RuntimeError("engine down")
        return real(self, todo)

    s = det.stream()
    s.feed(x)
    monkeypatch.setattr(Detector, "_score", down_once)
    with pytest.raises(RuntimeError, match="engine down"):
        s.end()
    with pytest.raises(spoofscope.errors.ConfigError, match="closed"):
        s.feed(x[:100])
    got = s.close()
    assert calls == [1, 1]  # the last window, scored again; nothing else
    assert [(w["start_s"], w["end_s"]) for w in got.windows] == [
        (w["start_s"], w["end_s"]) for w in want.windows
    ]
    np.testing.assert_allclose(_scores(got.windows), _scores(want.windows), atol=1e-5)
    assert got.label == want.label and got.score == pytest.approx(want.score, abs=1e-5)
    assert s.last_events == ending


def test_g711_decoding_matches_the_standard_tables():
    """mu-law and A-law bytes decode to the ITU G.711 values (audioop, Python's own
    implementation, as the reference), split across pieces anywhere."""
    import warnings

    from spoofscope.audio import RawDecoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    data = bytes(range(256)) * 3
    for fmt, ref in (("mulaw", audioop.ulaw2lin), ("alaw", audioop.alaw2lin)):
        want = np.frombuffer(ref(data, 2), "<i2") / 32768
        dec = RawDecoder(fmt)
        got = np.concatenate([dec(data[:100]), dec(data[100:101]), dec(data[101:])])
        np.testing.assert_array_equal(got, want.astype(np.float32))
    dec = RawDecoder("s16le", channels=2)
    pcm = np.array([[1000, -1000], [32767, 32767]], "<i2").tobytes()
    got = np.concatenate([dec(pcm[:3]), dec(pcm[3:])])  # a sample split across pieces
    np.testing.assert_allclose(got, [0.0, 32767 / 32768])


def test_detect_stream_from_standard_input(tmp_path):
    """`spoofscope detect --stream -` on 16-bit PCM piped in: the summary equals detect on the
    same samples; telephone mu-law at 8 kHz is judged too."""
    import json
    import subprocess
    import sys

    from spoofscope.models import save_checkpoint

    ckpt = save_checkpoint(responsive_lcnn(0), tmp_path / "m.ckpt")
    x = _signal()
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    args = [sys.executable, "-m", "spoofscope", "detect", "--stream", "-", "--model", str(ckpt),
            "--engine", "torch", "--vad", "energy", "--json", "--hop", "1"]  # fmt: skip
    p = subprocess.run(args, input=pcm.tobytes(), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    lines = [json.loads(ln) for ln in p.stdout.decode().splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert [e for e in lines if e["type"] == "segment"] == [
        {"type": "segment", **g} for g in summary["segments"]
    ]
    lines = [e for e in lines if e["type"] != "segment"]
    offline = Detector.load(
        ckpt, engine="torch", windows=WindowPolicy(hop_s=1.0), decision=Decision(vad="energy")
    )
    want = offline(pcm.astype(np.float32) / 32768)
    assert summary["score"] == pytest.approx(want.score, abs=1e-4)
    assert summary["label"] == want.label and len(lines) - 1 == len(want.windows)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    ulaw = audioop.lin2ulaw(pcm[::2].tobytes(), 2)  # 8 kHz telephone audio
    p = subprocess.run([*args, "--input-rate", "8000", "--input-format", "mulaw"], input=ulaw,
                       capture_output=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    s = json.loads(p.stdout.decode().splitlines()[-1])
    ref = np.frombuffer(audioop.ulaw2lin(ulaw, 2), "<i2").astype(np.float32) / 32768
    want = offline(ref, sample_rate=8000)  # the same decoded samples, at 8 kHz
    assert s["duration_s"] == pytest.approx(12.0, abs=0.01)
    assert s["score"] == pytest.approx(want.score, abs=1e-4) and s["label"] == want.label
    assert [w["score"] for w in s["windows"]] == pytest.approx(
        [w["score"] for w in want.windows], abs=1e-4
    )
    p = subprocess.run([*args[:5], "a.wav"], capture_output=True, timeout=300)
    assert p.returncode == 2 and b"standard input" in p.stderr


@pytest.mark.parametrize("seed", [0, 3])
def test_segment_events_are_the_results_segments_once_in_order(seed):
    """Segment events given while the stream runs are never revised: together with those of
    close() they are the result's segments, each once, in order; and the first ones arrive
    before the stream ends."""
    torch.manual_seed(seed)
    m = spoofscope.create_model("lfcc-lcnn").eval()
    d = Detector(TorchEngine(m), windows=WindowPolicy(hop_s=0.5, samples=2 * SR),
                 decision=Decision(vad="energy", band=0.0))  # fmt: skip
    parts = [_signal(12.0, seed), _signal(12.0, seed + 1)[: 9 * SR], np.zeros(2 * SR, np.float32)]
    x = np.concatenate(parts)
    s = d.stream()
    live = []
    for piece in np.array_split(x, 60):
        live += [e for e in s.feed(piece) if e["type"] == "segment"]
    res = s.close()
    tail = [e for e in s.last_events if e["type"] == "segment"]
    want = [(g["label"], g["start_s"], g["end_s"]) for g in res.segments]
    assert [(e["label"], e["start_s"], e["end_s"]) for e in live + tail] == want
    assert len(want) >= 3 and len(live) >= 1


def _tone(seconds):
    return 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(seconds * SR)) / SR)


def _noise(seconds, seed=0):
    return 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))


@pytest.mark.parametrize(
    ("pieces", "live"),
    [
        # a 0.8-s noise blip in a tone: while it is at the live edge, it is a spoof segment
        # of its own; the windows after it fold it into the tone's bona fide one (no segment
        # is settled before the end)
        ([(_tone, 5.0), (_noise, 0.8), (_tone, 5.0), (_noise, 3.0), (_tone, 3.0)], 0),
        ([(_tone, 3.0), (_noise, 1.5), (_tone, 1.5), (_noise, 1.5), (_tone, 3.0), (_noise, 0.6),
          (_tone, 3.0)], 1),
    ],
    ids=["blip", "alternating"],
)  # fmt: skip
def test_no_segment_event_before_it_is_settled(det, pieces, live):
    """With a model that tells tone from noise, stretches near the live edge change as later
    windows come: every segment event, when it is sent, is already the result's segment at
    its place (never revised); ``live`` of them are sent before the stream ends."""
    x = np.concatenate([f(d) for f, d in pieces]).astype(np.float32)
    final = det(x).segments
    s = det.stream()
    sent = []
    for piece in np.array_split(x, 97):
        for e in s.feed(piece):
            if e["type"] == "segment":
                k = len(sent)
                assert k < len(final), f"segment event {k} sent; the result has {len(final)}"
                got, want = e, final[k]
                where = f"segment event {k}, at {s.cutters[0].total / SR:.2f} s, was revised"
                assert (got["label"], got["start_s"], got["end_s"]) == (
                    want["label"], want["start_s"], want["end_s"]
                ), where  # fmt: skip
                sent.append(e)
    res = s.close()
    sent += [e for e in s.last_events if e["type"] == "segment"]
    want = [(g["label"], g["start_s"], g["end_s"]) for g in res.segments]
    assert [(e["label"], e["start_s"], e["end_s"]) for e in sent] == want
    assert want == [(g["label"], g["start_s"], g["end_s"]) for g in final]
    assert len(want) >= 3 and {g[0] for g in want} == {"bonafide", "spoof"}
    assert len(sent) - len([e for e in s.last_events if e["type"] == "segment"]) == live


def _pipe(args, data: bytes):
    import subprocess

    return subprocess.run(args, input=data, capture_output=True, timeout=300)


def test_detect_stream_reads_containers_from_a_pipe(tmp_path):
    """Containers on standard input are found by their header and decoded by FFmpeg as they
    arrive: WAV (as `ffmpeg ... -f wav -` writes it, no length), FLAC and OGG give detect's
    result on the file; MP3 is decoded to its length; a damaged stream keeps what was judged
    and says what broke, without a traceback."""
    import io
    import json
    import sys

    import soundfile as sf

    from spoofscope.models import save_checkpoint

    ckpt = save_checkpoint(responsive_lcnn(0), tmp_path / "m.ckpt")
    x = _signal()
    args = [sys.executable, "-m", "spoofscope", "detect", "--stream", "-", "--model", str(ckpt),
            "--engine", "torch", "--vad", "energy", "--json", "--hop", "1"]  # fmt: skip
    offline = Detector.load(
        ckpt, engine="torch", windows=WindowPolicy(hop_s=1.0), decision=Decision(vad="energy")
    )
    for fmt, sub in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        buf = io.BytesIO()
        sf.write(buf, x, SR, format=fmt, subtype=sub)
        blob = buf.getvalue()
        if fmt == "WAV":  # a WAV header written before the length was known
            blob = blob[:4] + b"\xff\xff\xff\xff" + blob[8:40] + b"\xff\xff\xff\xff" + blob[44:]
        p = _pipe(args, blob)
        assert p.returncode == 0, p.stderr.decode()
        s = json.loads(p.stdout.decode().splitlines()[-1])
        (tmp_path / f"a.{fmt}").write_bytes(buf.getvalue())
        want = offline(tmp_path / f"a.{fmt}")
        assert s["duration_s"] == pytest.approx(want.duration_s, abs=1e-3)
        assert s["score"] == pytest.approx(want.score, abs=1e-4), fmt
        assert s["label"] == want.label
    # MP3 from PyAV's encoder
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as c:
        st = c.add_stream("libmp3lame", rate=SR, layout="mono")
        fr = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
        fr.sample_rate = SR
        rs = av.AudioResampler(format="fltp", layout="mono", rate=SR)
        for f in [*rs.resample(fr), *(rs.resample(None) or [])]:
            for pkt in st.encode(f):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    p = _pipe(args, buf.getvalue())
    assert p.returncode == 0, p.stderr.decode()
    s = json.loads(p.stdout.decode().splitlines()[-1])
    # the encoder's padding is trimmed from a pipe as from a file (the MP3's encoder tag):
    # detect's result on the file, window by window
    (tmp_path / "a.mp3").write_bytes(buf.getvalue())
    want = offline(tmp_path / "a.mp3")
    assert s["duration_s"] == pytest.approx(want.duration_s, abs=1e-3)
    assert s["duration_s"] == pytest.approx(12.0, abs=0.05)
    assert s["score"] == pytest.approx(want.score, abs=1e-4) and s["label"] == want.label
    assert [(w["start_s"], w["end_s"]) for w in s["windows"]] == [
        (w["start_s"], w["end_s"]) for w in want.windows
    ]
    assert [w["score"] for w in s["windows"]] == pytest.approx(
        [w["score"] for w in want.windows], abs=1e-4
    )
    # FLAC damaged after 6 s: the first windows are kept in the result
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="FLAC")
    blob = bytearray(buf.getvalue())
    cut = len(blob) // 2
    noise = np.random.default_rng(0).integers(0, 256, len(blob) - cut, dtype=np.uint8)
    blob[cut:] = noise.tobytes()
    p = _pipe(args, bytes(blob))
    assert p.returncode == 1 and b"Traceback" not in p.stderr
    lines = [json.loads(ln) for ln in p.stdout.decode().splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["duration_s"] > 3.0
    # not audio at all, declared a container
    p = _pipe([*args, "--input-format", "container"], b"hello, this is not audio" * 100)
    assert p.returncode in (1, 2) and b"Traceback" not in p.stderr
    assert b"--input-format" in p.stderr
