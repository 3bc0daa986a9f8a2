"""Detector.stream(): audio fed in pieces is judged as detect judges the whole recording."""

import numpy as np
import pytest
import torch

import spoofscope
from spoofscope.infer import Decision, Detector, TorchEngine, WindowPolicy

SR = 16000


def _signal(seconds=12.0, seed=0):
    """A tone with a stretch of noise, a pause and a silent tail (several window kinds)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * 200 * t)
    x[4 * SR : 7 * SR] = 0.1 * rng.standard_normal(3 * SR)
    x[int(7.5 * SR) : int(8.2 * SR)] = 0.0
    x[int(10.5 * SR) :] = 0.0
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def det():
    torch.manual_seed(0)
    m = spoofscope.create_model("lfcc-lcnn").eval()
    return Detector(TorchEngine(m), windows=WindowPolicy(hop_s=0.5, samples=2 * SR),
                    decision=Decision(vad="energy"))  # fmt: skip


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
    assert [(e["start_s"], e["end_s"]) for e in events] == [
        (w["start"], w["end"]) for w in want.windows
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
    x = _signal()[: 6 * SR]
    x8 = x[::2].copy()  # 8 kHz (the tone and noise survive; exact resampling is not the point)
    s = det.stream(sample_rate=8000)
    for piece in np.array_split(x8, 17):
        s.feed(piece)
    r = s.close()
    assert r.duration_s == pytest.approx(6.0, abs=0.01) and r.label in ("bonafide", "spoof")
    quiet = det.stream()
    quiet.feed(np.zeros(3 * SR, np.float32))
    assert quiet.close().label == "no_speech"
    empty = det.stream().close()
    assert empty.error_kind == "empty"
    closed = det.stream()
    closed.close()
    with pytest.raises(spoofscope.errors.ConfigError, match="closed"):
        closed.feed(x[:100])


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

    torch.manual_seed(0)
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(spoofscope.create_model("lfcc-lcnn"), ckpt)
    x = _signal()
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    args = [sys.executable, "-m", "spoofscope", "detect", "--stream", "-", "--model", str(ckpt),
            "--engine", "torch", "--vad", "energy", "--json", "--hop", "1"]  # fmt: skip
    p = subprocess.run(args, input=pcm.tobytes(), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    lines = [json.loads(ln) for ln in p.stdout.decode().splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and all(e["type"] == "window" for e in lines[:-1])
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
    assert s["duration_s"] == pytest.approx(12.0, abs=0.01) and s["label"] in ("bonafide", "spoof")
    p = subprocess.run([*args[:5], "a.wav"], capture_output=True, timeout=300)
    assert p.returncode == 2 and b"standard input" in p.stderr
