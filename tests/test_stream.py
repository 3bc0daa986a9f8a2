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
