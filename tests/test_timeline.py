"""Where in the recording: the timeline and segments of partially spoofed files built here."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from spoofscope.cli import main
from spoofscope.infer import Decision, Detector, WindowPolicy
from spoofscope.infer.timeline import ANCHOR_GAIN, build_segments, build_timeline, settled
from spoofscope.metrics.localisation import read_rttm, spoof_stretches

SR = 16000


class ZCRModel(torch.nn.Module):
    """A stand-in whose bona fide logit falls with the zero-crossing rate: a 200-Hz tone
    (0.025 crossings per sample) scores +4, white noise (0.5) -5.5; a window holding a
    fraction f of noise scores about 4 - 9.5 f."""

    min_length = 1
    embedding_dim = 1
    registry_name = "zcr"

    def forward(self, x):
        zcr = (torch.sign(x[:, 1:]) != torch.sign(x[:, :-1])).float().mean(1, keepdim=True)
        s = 20 * (0.225 - zcr)
        return torch.cat([-s, s], 1), s


def _partial(seconds=12.0, spoof=(4.0, 7.0), pauses=((3.85, 4.15), (6.9, 7.2)), tail=1.5):
    """A tone ("bona fide") with a stretch of noise ("spoof") spliced in at pauses of 0.3 s,
    then ``tail`` seconds of silence."""
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * 200 * t)
    a, b = (int(SR * v) for v in spoof)
    x[a:b] = 0.1 * rng.standard_normal(b - a)
    for p, q in pauses:
        x[int(SR * p) : int(SR * q)] = 0.0
    x[int(SR * (seconds - tail)) :] = 0.0
    return x.astype(np.float32)


def _detector(**kw):
    import dataclasses

    from spoofscope.models import get_card

    m = ZCRModel()
    m.card = dataclasses.replace(get_card("aasist"), name="zcr", min_length=1, window_samples=SR)
    return Detector(m, windows=WindowPolicy(hop_s=0.25, **kw), decision=Decision(threshold=0.0))


def test_segments_find_the_spliced_stretch_at_its_pauses():
    x = _partial()
    r = _detector()(x)
    assert r.label == "bonafide"  # most of the file is the tone
    # the timeline: steps of 0.25 s (the hop) covering the file, null in the silent tail
    assert r.timeline[0]["start_s"] == 0 and r.timeline[-1]["end_s"] == pytest.approx(12.0)
    assert all(t["end_s"] - t["start_s"] <= 0.25 + 1e-9 for t in r.timeline)
    assert all(t["score"] is None for t in r.timeline if t["start_s"] >= 10.5)
    # each step's score is the mean of the windows that overlap it (computed here)
    step = r.timeline[20]  # 5.0-5.25 s
    over = [
        w["score"]
        for w in r.windows
        if w["start_s"] < step["end_s"] and w["end_s"] > step["start_s"]
    ]
    assert step["score"] == pytest.approx(np.mean(over))
    labels = [(g["label"], g["start_s"], g["end_s"]) for g in r.segments]
    assert [lab for lab, _, _ in labels] == ["bonafide", "spoof", "bonafide", "no_speech"]
    # contiguous, covering the file; the spoof boundaries snapped to the middles of the pauses
    assert all(a[2] == b[1] for a, b in zip(labels[:-1], labels[1:], strict=True))
    assert labels[0][1] == 0 and labels[-1][2] == pytest.approx(12.0)
    assert labels[1][1] == pytest.approx(4.0, abs=0.03) and labels[1][2] == pytest.approx(
        7.05, abs=0.03
    )
    # the silent tail starts at the last active frame
    assert labels[3][1] == pytest.approx(10.5, abs=0.021)
    assert r.spoofed_s == pytest.approx(3.05, abs=0.05)
    spoof = r.segments[1]
    assert spoof["score"] < 0 and spoof["p_bonafide"] < 0.5


def test_rules_hysteresis_and_minimum_duration():
    """p_bonafide wavering inside the +-0.1 band around the threshold's stays one label; a
    0.5-s excursion below the minimum duration is absorbed; a long one is kept."""
    steps = [(k * 0.5, (k + 1) * 0.5) for k in range(12)]
    probs = [0.9, 0.55, 0.45, 0.55, 0.42, 0.9, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1]
    tl = [{"start_s": a, "end_s": b, "score": 10 * (q - 0.5), "p": q}
          for (a, b), q in zip(steps, probs, strict=True)]  # fmt: skip
    segs = build_segments(tl, None, p_threshold=0.5, hysteresis=0.1, min_duration_s=1.0)
    assert [(g["label"], g["start_s"], g["end_s"]) for g in segs] == [
        ("bonafide", 0.0, 4.5),
        ("spoof", 4.5, 6.0),
    ]
    # the absorbed blip (step 6) enters the bona fide segment's means
    assert segs[0]["p_bonafide"] == pytest.approx(np.mean(probs[:9]))
    assert segs[0]["score"] == pytest.approx(np.mean([10 * (q - 0.5) for q in probs[:9]]))
    # without hysteresis the wobble at 0.45 / 0.42 would be spoof runs (then absorbed as
    # shorter than 1 s): the rule, not luck, keeps them bona fide
    raw = build_segments(tl, None, p_threshold=0.5, hysteresis=0.0, min_duration_s=0.0)
    assert [g["label"] for g in raw][:4] == ["bonafide", "spoof", "bonafide", "spoof"]


def test_minimum_duration_default_is_read_when_called():
    """The default minimum (MIN_SEGMENT_S, 0.5 s, read when called) keeps a 0.5-s and a
    0.75-s dip in 0.25-s steps as spoof and absorbs a 0.25-s one; a 1-s minimum absorbs all
    three."""
    import spoofscope.infer.timeline as T

    probs = [0.9] * 4 + [0.1] * 2 + [0.9] * 4 + [0.1] * 3 + [0.9] * 4 + [0.1] + [0.9] * 4
    tl = [{"start_s": k * 0.25, "end_s": (k + 1) * 0.25, "score": q - 0.5, "p": q}
          for k, q in enumerate(probs)]  # fmt: skip

    def spoof(segs):
        return [(g["start_s"], g["end_s"]) for g in segs if g["label"] == "spoof"]

    assert T.MIN_SEGMENT_S == 0.5 and spoof(build_segments(tl, None)) == [(1.0, 1.5), (2.5, 3.25)]
    assert spoof(build_segments(tl, None, min_duration_s=1.0)) == []
    T.MIN_SEGMENT_S = 1.0  # the module's value is read when called (the benchmark sets it)
    try:
        assert spoof(build_segments(tl, None)) == []
    finally:
        T.MIN_SEGMENT_S = 0.5


def test_a_run_snapped_shorter_than_the_minimum_still_settles_the_segment_before_it():
    """0.25-s steps: bona fide 0-3 s, a spoof run of exactly the minimum (1 s, 3-4 s), bona
    fide 4-8 s, with a 0.16-s pause at 3.12-3.28 s. The spoof run's start snaps to the pause's
    middle (3.2 s), leaving it 0.8 s long, but rule 2 measured 1 s and kept it: once the steps
    before 5.25 s are final (its end, a minimum and a step on), the bona fide segment before it
    is settled, as 0-3.2 s, what the whole recording gives, 2.75 s before the end."""
    probs = [0.9] * 12 + [0.1] * 4 + [0.9] * 16
    tl = [{"start_s": k * 0.25, "end_s": (k + 1) * 0.25, "score": q - 0.5, "p": q}
          for k, q in enumerate(probs)]  # fmt: skip
    active = np.ones(400, bool)  # 8 s of 20-ms frames
    active[156:164] = False  # 3.12-3.28 s
    whole = build_segments(tl, active, min_duration_s=1.0)
    want = {"start_s": 0.0, "end_s": 3.2, "label": "bonafide", "score": 0.4, "p_bonafide": 0.9}
    assert whole[0] == pytest.approx(want)
    # the stream at 5.75 s: steps from 5.25 s on are not final (here they dip, as a window
    # straddling the live edge might); after them the run is spoof 3.2-4.0 s
    part = [dict(t) for t in tl[:23]]
    for t in part[21:]:
        t["p"], t["score"] = 0.1, -0.4
    segs = build_segments(part, active[:288], min_duration_s=1.0, runs=True)
    assert [(g["label"], g["start_s"], g["end_s"]) for g in segs[:2]] == [
        ("bonafide", 0.0, 3.2), ("spoof", 3.2, 4.0)
    ]  # fmt: skip
    assert segs[1]["run_s"] == (3.0, 4.0)
    assert settled(segs, 5.25, 0.25, min_duration_s=1.0) == 1
    assert {k: v for k, v in segs[0].items() if k != "run_s"} == pytest.approx(whole[0])
    # a step earlier the spoof run's end is within a minimum and a step of the live edge
    assert settled(segs, 5.0, 0.25, min_duration_s=1.0) == 0
    # measured after snapping (0.8 s) the run would look short and hold the segment back
    short = [{**g, "run_s": (g["start_s"], g["end_s"])} for g in segs]
    assert settled(short, 5.25, 0.25, min_duration_s=1.0) == 0


def test_hysteresis_holds_spoof_as_it_holds_bona_fide():
    """The band works on both sides: once spoof, a rise to 0.55 (inside the +-0.1 band) is
    not enough to turn bona fide; a rise to 0.65 is."""
    for probs, want in (
        ([0.1, 0.55, 0.1], ["spoof"]),
        ([0.1, 0.65, 0.1], ["spoof", "bonafide", "spoof"]),
        ([0.9, 0.45, 0.9], ["bonafide"]),
        ([0.9, 0.35, 0.9], ["bonafide", "spoof", "bonafide"]),
    ):
        tl = [{"start_s": k * 0.5, "end_s": (k + 1) * 0.5, "score": q - 0.5, "p": q}
              for k, q in enumerate(probs)]  # fmt: skip
        segs = build_segments(tl, None, p_threshold=0.5, hysteresis=0.1, min_duration_s=0.0)
        assert [g["label"] for g in segs] == want, probs
        assert segs[-1]["end_s"] == 1.5


def test_hysteresis_near_a_threshold_at_either_end_can_be_crossed():
    """With the threshold's probability at 0.024 (the demo model's), a band of 0.1 below it
    would lie under 0: the band shrinks to half the way to 0 (0.012), so a dip to 0.005 is
    spoof and one to 0.015 is not; likewise near 1."""
    for thr, probs, want in (
        (0.024, [0.9, 0.005, 0.9], ["bonafide", "spoof", "bonafide"]),
        (0.024, [0.9, 0.015, 0.9], ["bonafide"]),
        (0.976, [0.1, 0.995, 0.1], ["spoof", "bonafide", "spoof"]),
        (0.976, [0.1, 0.985, 0.1], ["spoof"]),
    ):
        tl = [{"start_s": k * 0.5, "end_s": (k + 1) * 0.5, "score": q - thr, "p": q}
              for k, q in enumerate(probs)]  # fmt: skip
        segs = build_segments(tl, None, p_threshold=thr, hysteresis=0.1, min_duration_s=0.0)
        assert [g["label"] for g in segs] == want, (thr, probs)


def test_timeline_steps_without_sound_or_windows_are_null():
    active = np.zeros(100, bool)  # 2 s of 20-ms frames
    active[10:40] = True  # 0.2-0.8 s
    tl = build_timeline([(0.0, 1.0, 1.0, 1.0), (1.0, 2.0, None, None)], 2.0, 0.5, active)
    assert [t["score"] for t in tl] == [1.0, 1.0, None, None]


def test_timeline_step_is_the_mean_of_every_window_overlapping_it():
    """Against the definition, step by step: the mean score and p of the judged windows whose
    span overlaps the step (windows unsorted, of mixed lengths, some starting before 0 or
    running past the end, some on the step edges, some not judged), null without sound."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        dur = float(rng.uniform(0.1, 20))
        wins = []
        for _ in range(int(rng.integers(0, 30))):
            a = float(rng.uniform(-0.5, dur + 0.5))
            n = float(rng.choice([0.25, 1.0, 4.0, float(rng.uniform(0.01, 5))]))
            s = None if rng.random() < 0.1 else float(rng.normal(0, 5))
            wins.append((a, a + n, s, None if s is None else float(rng.uniform())))
        wins += [(k * 0.25, k * 0.25 + 1.0, float(rng.normal()), 0.5) for k in range(3)]
        active = rng.random(int(dur / 0.02) + 2) < 0.7 if rng.random() < 0.7 else None
        step = float(rng.choice([0.02, 0.25, 0.5]))
        tl = build_timeline(wins, dur, step, active)
        assert len(tl) == max(1, int(np.ceil(dur / step - 1e-9)))
        for k, t in enumerate(tl):
            a, b = k * step, min((k + 1) * step, dur)  # the output rounds them to 1 ms
            assert (t["start_s"], t["end_s"]) == (round(a, 3), round(b, 3))
            on = [w for w in wins if w[2] is not None and w[0] < b and min(w[1], dur) > a]
            fa = int(a / 0.02)
            sound = active is None or active[fa : max(int(np.ceil(b / 0.02)), fa + 1)].any()
            if not on or not sound:
                assert t["score"] is None and t["p"] is None
            else:
                assert t["score"] == pytest.approx(np.mean([w[2] for w in on]), abs=1e-9)
                assert t["p"] == pytest.approx(np.mean([w[3] for w in on]), abs=1e-9)


def test_detect_cli_segments_rttm_csv(tmp_path, capsys, monkeypatch):
    """detect --segments prints them, --rttm writes them (read back as the reference format),
    --csv gains one row per segment; --json carries timeline, segments, spoofed_s."""
    wav = tmp_path / "call.wav"
    sf.write(wav, _partial(), SR)
    det = _detector()
    monkeypatch.setattr("spoofscope.cli._build_detector", lambda a, **k: det.replace(
        windows=WindowPolicy(hop_s=a.hop or 0.5)))  # fmt: skip
    rc = main(["detect", str(wav), "--segments", "--hop", "0.25", "--quiet",
               "--rttm", str(tmp_path / "o.rttm"), "--csv", str(tmp_path / "o.csv")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "spoofed 3." in out and " spoof " in out
    rttm = read_rttm(tmp_path / "o.rttm")
    ((a, b),) = spoof_stretches(rttm)["call"]
    assert a == pytest.approx(4.0, abs=0.05) and b == pytest.approx(7.05, abs=0.05)
    assert {lab for _, _, lab in rttm["call"]} == {"bonafide", "spoof"}
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert len(rows) == 5 and rows[0]["start_s"] == "" and rows[2]["label"] == "spoof"
    assert float(rows[2]["start_s"]) == pytest.approx(a)
    assert main(["detect", str(wav), "--json", "--quiet", "--hop", "0.25"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["spoofed_s"] == pytest.approx(b - a, abs=0.01) and len(r["timeline"]) == 48


def test_evaluate_cli_localisation(tmp_path, capsys, monkeypatch):
    """evaluate --reference RTTM --hypothesis detect.jsonl: the range-based EER of the
    timelines against the reference (computed here on a 1-ms grid for the one file)."""
    from test_localisation_metrics import _range_eer_by_definition

    wav = tmp_path / "call.wav"
    sf.write(wav, _partial(), SR)
    det = _detector()
    monkeypatch.setattr("spoofscope.cli._build_detector", lambda a, **k: det)
    assert main(["detect", str(wav), "--json", "--quiet"]) == 0
    (tmp_path / "hyp.jsonl").write_text(capsys.readouterr().out)
    (tmp_path / "ref.rttm").write_text(
        "SPEAKER call 1 0.000 4.150 <NA> <NA> bonafide <NA> <NA>\n"
        "SPEAKER call 1 4.150 2.750 <NA> <NA> spoof <NA> <NA>\n"
        "SPEAKER call 1 6.900 5.100 <NA> <NA> bonafide <NA> <NA>\n"
    )
    args = ["evaluate", "--reference", str(tmp_path / "ref.rttm"), "--hypothesis"]
    assert main([*args, str(tmp_path / "hyp.jsonl"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    hyp = json.loads((tmp_path / "hyp.jsonl").read_text())
    tl = [(t["start_s"], t["end_s"], t["score"]) for t in hyp["timeline"]]
    want, _ = _range_eer_by_definition({"call": [(4.15, 6.9)]}, {"call": 12.0}, {"call": tl})
    assert got["range_eer"]["eer"] == pytest.approx(want, abs=1e-9)
    assert got["partially_spoofed"] == 1 and set(got["segment_eer"]) == {"0.02", "0.16", "0.64"}
    # an RTTM hypothesis (the detect --rttm output) works as well; a missing file is named
    monkeypatch.setattr("spoofscope.cli._build_detector", lambda a, **k: det)
    assert main(["detect", str(wav), "--rttm", str(tmp_path / "h.rttm"), "--quiet"]) == 0
    capsys.readouterr()
    assert main([*args, str(tmp_path / "h.rttm")]) == 0
    assert "range-based EER" in capsys.readouterr().out
    (tmp_path / "ref2.rttm").write_text("SPEAKER other 1 0 1 <NA> <NA> spoof <NA> <NA>\n")
    args[2] = str(tmp_path / "ref2.rttm")
    assert main([*args, str(tmp_path / "hyp.jsonl")]) == 2
    assert "not in" in capsys.readouterr().err


def test_frame_level_timeline_of_a_frame_scoring_model():
    """AntiDeepfake scores every 20-ms encoder frame: with the PyTorch engine the timeline
    has one step per frame, each the mean of that frame's logit over the windows holding it
    (computed here from model.frame_logits on each window), and the window scores are the
    means of their frames'."""
    pytest.importorskip("transformers")
    from test_antideepfake import TINY

    import spoofscope
    from spoofscope.infer import TorchEngine

    torch.manual_seed(0)
    m = spoofscope.create_model("antideepfake-w2v-small", encoder_config=TINY["w2v-small"]).eval()
    x = _partial(seconds=5.0, spoof=(2.0, 3.0), pauses=(), tail=0.0)
    det = Detector(TorchEngine(m), windows=WindowPolicy(samples=16000, hop_s=0.5),
                   decision=Decision(vad="energy"))  # fmt: skip
    r = det(x)
    n = -(-x.size // 320)
    assert len(r.timeline) == n and r.timeline[1]["start_s"] == pytest.approx(0.02)
    tot, cnt = np.zeros(n), np.zeros(n)
    for w in r.windows:
        a = round(w["start_s"] * SR)
        with torch.no_grad():
            f = m.frame_logits(torch.from_numpy(x[a : a + SR])[None])[0, :, 1].numpy()
            win = m(torch.from_numpy(x[a : a + SR])[None])[0][0, 1].item()
        assert w["score"] == pytest.approx(win, abs=1e-4)
        k = a // 320
        tot[k : k + f.size] += f[: n - k]
        cnt[k : k + f.size] += 1
    got = np.array([np.nan if t["score"] is None else t["score"] for t in r.timeline])
    held = cnt > 0  # the last frame lies past the last window's frames: no score
    assert np.isnan(got[~held]).all() and (~held).sum() == 1
    np.testing.assert_allclose(got[held], tot[held] / cnt[held], atol=1e-4)
    assert r.segments[0]["start_s"] == 0 and r.segments[-1]["end_s"] == pytest.approx(5.0)
    # --engine auto keeps such a model in PyTorch, for this resolution
    from spoofscope.infer import make_engine

    assert make_engine(m, "auto").name == "torch"


def _where_detector(where=(1.0, 0.25)):
    """The stand-in with 4-s verdict windows every 2 s, and (``where``) localisation windows."""
    import dataclasses

    from spoofscope.models import get_card

    m = ZCRModel()
    m.card = dataclasses.replace(
        get_card("aasist"), name="zcr", min_length=1, window_samples=4 * SR
    )
    w = WindowPolicy(hop_s=2.0)
    if where:
        w = dataclasses.replace(w, where_s=where[0], where_hop_s=where[1])
    return Detector(m, windows=w, decision=Decision(threshold=0.0, vad="energy"))


def test_localisation_windows_show_a_stretch_in_a_file_judged_bona_fide():
    """Verdict on the 4-s windows (as without the localisation grid); timeline and segments
    on 1-s windows every 0.25 s: the 1.5-s noise stretch of a 16-s tone shows, a recording
    of noise throughout is one spoof segment."""
    rng = np.random.default_rng(1)
    t = np.arange(16 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    x[8 * SR : int(9.5 * SR)] = 0.1 * rng.standard_normal(int(1.5 * SR))
    plain, det = _where_detector(None), _where_detector()
    p, r = plain(x), det(x)
    assert r.label == p.label == "bonafide" and r.score == pytest.approx(p.score, abs=1e-5)
    assert [(w["start_s"], w["end_s"]) for w in r.windows] == [
        (w["start_s"], w["end_s"]) for w in p.windows
    ]
    # each step: the mean score of the 1-s windows over it (computed here from the model)
    m = det.model
    starts = [s / 4 for s in range(0, 61)]
    win = {s: float(m(torch.from_numpy(x[int(s * SR) : int(s * SR) + SR])[None])[0][0, 1])
           for s in starts}  # fmt: skip
    means = [
        np.mean([v for s, v in win.items() if s < st["end_s"] and s + 1 > st["start_s"]])
        for st in r.timeline
    ]
    # anchored: the median verdict window's score plus ANCHOR_GAIN times the step's distance
    # from the mean of the middle half of the steps
    judged = sorted(m for m, st in zip(means, r.timeline, strict=True) if st["score"] is not None)
    n = len(judged)
    mid = np.mean(judged[n // 4 : -(-3 * n // 4)])
    for st, m in zip(r.timeline, means, strict=True):
        if st["score"] is not None:
            want_s = np.median([w["score"] for w in r.windows]) + ANCHOR_GAIN * (m - mid)
            assert st["score"] == pytest.approx(want_s, abs=1e-4)
    spoof = [g for g in r.segments if g["label"] == "spoof"]
    assert len(spoof) == 1 and 1.5 <= r.spoofed_s <= 3.0
    assert 7.25 <= spoof[0]["start_s"] <= 8.0 and 9.5 <= spoof[0]["end_s"] <= 10.25
    assert not [g for g in p.segments if g["label"] == "spoof"]  # 4-s windows miss it
    # noise throughout: spoof, one segment
    n = det((0.1 * rng.standard_normal(10 * SR)).astype(np.float32))
    assert n.label == "spoof" and [g["label"] for g in n.segments] == ["spoof"]


def test_stream_with_localisation_windows_gives_the_file_result():
    rng = np.random.default_rng(2)
    t = np.arange(11 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    x[5 * SR : int(6.5 * SR)] = 0.1 * rng.standard_normal(int(1.5 * SR))
    det = _where_detector()
    want = det(x)
    s, events = det.stream(), []
    for piece in np.array_split(x, 23):
        events += s.feed(piece)
    got = s.close()
    events += s.last_events
    assert [(e["start_s"], e["end_s"]) for e in events if e["type"] == "window"] == [
        (w["start_s"], w["end_s"]) for w in want.windows
    ]
    for a, b in zip(got.timeline, want.timeline, strict=True):
        assert (a["start_s"], a["end_s"]) == (b["start_s"], b["end_s"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert [(g["start_s"], g["end_s"], g["label"]) for g in got.segments] == [
        (g["start_s"], g["end_s"], g["label"]) for g in want.segments
    ]
    segs = [{k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == "segment"]
    assert [(g["start_s"], g["end_s"], g["label"]) for g in segs] == [
        (g["start_s"], g["end_s"], g["label"]) for g in want.segments
    ]


def test_anchor_moves_steps_to_the_typical_verdict_window():
    from spoofscope.infer.timeline import ANCHOR_DROP, anchor

    def sig(v):
        return 1 / (1 + np.exp(-v))

    lo = [2.0, 2.5, 1.5, -3.0, -2.0, 2.0, None, 2.2]
    steps = [
        {"start_s": k * 0.25, "end_s": (k + 1) * 0.25, "score": None if v is None else v - 1,
         "p": None if v is None else sig(v)}
        for k, v in enumerate(lo)
    ]  # fmt: skip
    out = anchor(steps, score=4.0, p=sig(6.0))
    # the typical step: the mean of the middle half of the 7 judged log-odds, sorted
    # -3, -2, 1.5, 2, 2, 2.2, 2.5: elements 1..5 (floor(7/4) = 1 to ceil(21/4) = 6)
    typ = (-2.0 + 1.5 + 2.0 + 2.0 + 2.2) / 5
    for st, v in zip(out, lo, strict=True):
        if v is None:
            assert st["score"] is None and st["p"] is None
            continue
        assert st["score"] == pytest.approx(4.0 + ANCHOR_GAIN * (v - typ))
        assert st["p"] == pytest.approx(sig(6.0 - ANCHOR_DROP + ANCHOR_GAIN * (v - typ)))
    # a typically bona fide file shows its dip; a typically spoof one stays one spoof segment
    segs = build_segments(anchor(steps * 3, 4.0, sig(6.0)), None, min_duration_s=0.0)
    assert "spoof" in [g["label"] for g in segs] and segs[0]["label"] == "bonafide"
    spoof = [
        t if t["p"] is None else {**t, "p": sig(-4.0 + (0.5 if k % 3 else 0))}
        for k, t in enumerate(steps * 3)
    ]
    segs = build_segments(anchor(spoof, -4.0, sig(-4.0)), None)
    assert {g["label"] for g in segs} == {"spoof", "no_speech"}  # never bona fide


def test_detect_cli_localises_with_segments_and_says_partially_spoofed(
    tmp_path, capsys, monkeypatch
):
    """--segments / --rttm / --stream take the localisation windows (plain detect does not);
    a file judged bona fide with a stretch judged spoof is printed 'partially spoofed'."""
    import spoofscope
    from spoofscope.cli import build_parser
    from spoofscope.cli._common import load_detector
    from spoofscope.infer.policy import WHERE
    from spoofscope.models import save_checkpoint

    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(spoofscope.create_model("aasist"), ckpt)
    for extra, want in (([], None), (["--segments"], WHERE), (["--rttm", "x.rttm"], WHERE)):
        a = build_parser().parse_args(["detect", "x.wav", "--model", str(ckpt), *extra])
        d = load_detector(a)
        assert (d.windows.where_s, d.windows.where_hop_s) == (want or (None, None))
        assert d.where == (None if want is None else (16000, 4000))
        assert d.windows.hop_s == 2.0 and d.step_s == (0.25 if want else 0.5)
    rng = np.random.default_rng(1)
    x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16 * SR) / SR)).astype(np.float32)
    x[8 * SR : int(9.5 * SR)] = 0.1 * rng.standard_normal(int(1.5 * SR))
    sf.write(tmp_path / "call.wav", x, SR)
    monkeypatch.setattr("spoofscope.cli._build_detector", lambda a, **k: _where_detector())
    assert main(["detect", str(tmp_path / "call.wav"), "--segments", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert " bonafide " in out and "partially spoofed: spoofed " in out


def test_real_partial_spoof_set_small_subset(shared_dir, tmp_path):
    """benchmarks/localisation_real.py's set builder on a small realdev subset: every
    stretch is the spoofed clip's samples, level-matched, at the reference RTTM's place, from
    another source than its carrier; whole files are written as they are."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import localisation_real as L

    from spoofscope.audio import load_audio

    root = shared_dir / "realdev"
    rows = list(csv.DictReader(open(root / "labels.csv")))
    systems, groups = {"Matcha-TTS", "Mega-TTS"}, {"ditto-tts-demo"}
    ds = L.build_set(rows, root, systems, groups, tmp_path, n_partial=3, n_bona=1, n_spoof=1)
    ref = spoof_stretches(read_rttm(tmp_path / "reference.rttm"))
    by_path = {r["path"]: r for r in rows}
    for f in ds["files"]:
        x = load_audio(f["path"], SR)
        got = [v for r in ref.get(f["id"], []) for v in r]
        assert got == pytest.approx([v for r in ds["spoof"][f["id"]] for v in r], abs=1e-3)
        if f["kind"] != "partial":
            src = load_audio(root / f["carrier"], SR)
            np.testing.assert_allclose(x, src, atol=1 / 32768)
            continue
        carrier = by_path[f["carrier"]]
        assert carrier["label"] == "bonafide" and carrier["group"] in groups
        level = L._active_rms(load_audio(root / f["carrier"], SR))
        for s in f["stretches"]:
            assert s["system"] in systems and by_path[s["from"]]["group"] != carrier["group"]
            a, b = round(s["start_s"] * SR), round(s["end_s"] * SR)
            assert 0.5 * SR - 1 <= b - a <= 4 * SR
            piece = x[a + 160 : b - 160]  # inside the fades
            o = round(s["offset_s"] * SR)
            y = load_audio(root / s["from"], SR)[o : o + (b - a)]
            want = y[160:-160] * level / L._active_rms(y)
            np.testing.assert_allclose(piece, want, atol=2 / 32768 + 1e-6)


def test_real_partial_spoof_step_scores_tried():
    """benchmarks/localisation_real.py's two other step scores on a hand-built 2-s file of
    five 1-s windows every 0.25 s: the most bona fide covering window's score, and the step
    lowered by lambda times its embedding outlierness, against values worked out by hand."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import localisation_real as L

    scores, diffs = [-1.0, 2.0, -3.0, 0.5, 1.0], [-2.0, 3.0, -4.0, 1.0, 0.0]
    wins = [(k * 4000, k * 4000 + SR, scores[k], diffs[k]) for k in range(5)]
    f = {"windows": wins, "n": 2 * SR, "mask": None, "frame_s": 0.02}
    steps = L.steps_of(f, 0.25, 0.25, 0.25)
    assert len(steps) == 8
    # step k covers [k/4, (k+1)/4) s; window j covers [j/4, j/4 + 1) s: steps 0-7 are covered
    # by windows {0}, {0,1}, {0,1,2}, {0..3}, {1..4}, {2,3,4}, {3,4}, {4}
    best = L.most_bona_fide(steps, f, 0.25, 0.25)
    assert [t["score"] for t in best] == [-1, 2, 2, 2, 2, 1, 1, 1]
    want_p = 1 / (1 + np.exp(-np.array([-2, 3, 3, 3, 3, 0, 0, 0], float)))
    np.testing.assert_allclose([t["p"] for t in best], want_p)
    # embeddings: the centre (coordinate-wise median) is (0, 0), distances 0, 1, 1, 10, 0,
    # median 1: outlierness max(d / 1 - 1, 0) = 0, 0, 0, 9, 0 per window
    emb = {0: [0.0, 0.0], 1: [1.0, 0.0], 2: [0.0, 1.0], 3: [10.0, 0.0], 4: [0.0, 0.0]}
    emb = {k: np.array(v) for k, v in emb.items()}
    out = L.outlierness(steps, f, emb, 0.25, 0.25)
    np.testing.assert_allclose(out, [0, 0, 0, 2.25, 2.25, 3, 4.5, 0])
    lower = L.less_outliers(steps, out, 2.0)
    for t, u, o in zip(steps, lower, out, strict=True):
        assert u["score"] == pytest.approx(t["score"] - 2 * o)
        logit = np.log(t["p"] / (1 - t["p"])) - 2 * o
        assert u["p"] == pytest.approx(1 / (1 + np.exp(-logit)))
    # the plain steps are the mean of the same windows (the default, for comparison)
    assert steps[3]["score"] == pytest.approx(np.mean(scores[:4]))


def test_real_partial_spoof_errors_counted_as_the_range_eer_counts_them():
    """benchmarks/localisation_real.py's split of the default's errors, on two hand-built
    files at the range EER's own threshold: its bona fide called spoof and spoof not called
    spoof are the range EER's false-alarm and miss seconds (an unjudged spoof step is missed,
    as range_eer counts it), and the AUC is that of a stretch step scoring below a carrier's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import localisation_real as L

    from spoofscope.metrics import range_eer

    ds = {
        "files": [{"id": "p", "kind": "partial"}, {"id": "g", "kind": "genuine"}],
        "spoof": {"p": [(1.0, 2.0)], "g": []},
        "durations": {"p": 4.0, "g": 2.0},
    }
    hyp = {
        "p": [(0, 0.5, 0.95), (0.5, 1, 0.2), (1, 1.6, 0.3), (1.6, 2, None), (2, 4, 0.85)],
        "g": [(0, 1, 0.25), (1, 2, 0.9)],
    }
    r = range_eer(ds["spoof"], ds["durations"], hyp)
    # bona fide 5 s, spoof 1 s; at 0.3: false alarms 0.5 + 1 s (30 %), misses the unjudged
    # 0.4 s (40 %), the least difference of all the thresholds (0.1; next 0.85: 70 % and 40 %)
    assert r["threshold"] == 0.3
    raw = {"p": [{"start_s": a, "end_s": b, "score": s} for a, b, s in
                 [(0, 1, 0.9), (1, 2, 0.1), (2, 4, 0.1)]], "g": []}  # fmt: skip
    rows, total = L.where_wrong(ds, hyp, raw, r["threshold"])
    # the stretch's step (0.1) below one carrier step (0.9), tied with the other: AUC 0.75
    assert [x[:2] for x in rows] == [("p", 0.75), ("g", None)]
    np.testing.assert_allclose([x[2:] for x in rows], [(0.5, 0.4), (1.0, 0.0)])
    assert sum(x[2] for x in rows) == pytest.approx(r["false_alarm_rate"] * r["bonafide_s"])
    assert sum(x[3] for x in rows) == pytest.approx(r["miss_rate"] * r["spoof_s"])
    # p's errors lie 0.25 and 0.2 s from an edge (at 1 and 2 s); g has none
    assert total == pytest.approx({"near": 0.9, "far": 1.0})
    # a piece's distance is its middle's: a 2.6-s false alarm ending 0.4 s before a stretch
    # has its middle 1.7 s from it (far), its end near
    one = {"files": [{"id": "q", "kind": "partial"}], "spoof": {"q": [(3.0, 3.5)]},
           "durations": {"q": 4.0}}  # fmt: skip
    h = {"q": [(0, 2.6, 0.1), (2.6, 3.0, 0.9), (3.0, 3.5, 0.1), (3.5, 4.0, 0.9)]}
    r = {"q": [{"start_s": a, "end_s": b, "score": s} for a, b, s in h["q"]]}
    rows, total = L.where_wrong(one, h, r, 0.3)
    # AUC: the stretch step (0.1) below two of the three carrier steps, tied with one: 5/6
    assert rows == [("q", pytest.approx(5 / 6), pytest.approx(2.6), 0.0)]
    assert total == pytest.approx({"near": 0.0, "far": 2.6})


def test_real_partial_spoof_tiled_windows(tmp_path):
    """benchmarks/localisation_real.py's 1-s windows tiled to the card's length: every
    0.25 s (every other 0.125-s window, and the last), each window's samples repeated as the
    official AASIST pads a short utterance (``np.tile`` then cut) and judged at that length;
    silent windows stay unjudged; cached scores of another convention are refused."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import localisation_real as L

    class Engine:  # logits (spoof, bona fide) that tell a tiled window from a padded one
        def __init__(self, n):
            self.n = n

        def __call__(self, x):
            assert x.shape[1] == self.n
            return np.stack([x[:, -1], x.sum(axis=1) / 100], axis=1)

    class Det:
        engine = type("E", (), {"at_length": staticmethod(Engine)})
        card = type("C", (), {"bonafide_index": 1})

    card, x = 64600, 0.1 * np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    ds = {"files": [{"id": "a", "path": str(tmp_path / "a.wav")}]}
    starts = range(0, 2 * SR + 1, 2000)  # 1-s windows every 0.125 s, 17 of them
    silent = {4, 9}  # two windows unjudged: the third kept (0.5 s) and one not kept
    wins = []
    for k, s in enumerate(starts):
        lg = Engine(SR)(x[None, s : s + SR])[0]
        wins.append((s, s + SR, None, None) if k in silent else (s, s + SR, lg[1], lg[1] - lg[0]))
    f = {"windows": wins, "mask": None, "frame_s": 0.02, "n": x.size}
    scores = {"files": {"a": f}, "audio_s": 3.0}
    got = L.cached_tiled(Det(), ds, scores, card, tmp_path)["files"]["a"]["windows"]
    kept = [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert [w[:2] for w in got] == [wins[k][:2] for k in kept]
    for w, k in zip(got, kept, strict=True):
        if k in silent:
            assert w[2:] == (None, None)
            continue
        piece = x[starts[k] : starts[k] + SR]
        tiled = np.tile(piece, card // SR + 1)[:card]
        lg = Engine(card)(tiled[None])[0]
        assert w[2:] == pytest.approx((lg[1], lg[1] - lg[0]), rel=1e-5)
    f["windows"] = [(s, e, a, None if b is None else -b) for s, e, a, b in wins]
    with pytest.raises(AssertionError, match="convention"):
        L.cached_tiled(Det(), ds, scores, card, tmp_path / "other")
