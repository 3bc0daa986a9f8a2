"""Localisation metrics against their definitions, computed here on a fine time grid."""

import math

import numpy as np
import pytest

from spoofscope.metrics import compute_eer, range_eer, segment_eer, utterance_eer
from spoofscope.metrics.localisation import read_rttm, spoof_stretches, write_rttm

DT = 0.001  # the grid of the brute-force reference (all boundaries below are on it)


def _grid(spoof, duration, timeline):
    """(scores, is_spoof) of every millisecond of a file: score of the step covering it (inf
    where nothing was judged), spoof when inside a reference stretch."""
    t = (np.arange(round(duration / DT)) + 0.5) * DT
    y = np.zeros(t.size, bool)
    for a, b in spoof:
        y |= (t > a) & (t < b)
    s = np.full(t.size, np.inf)
    for a, b, v in timeline:
        if v is not None:
            s[(t > a) & (t < b)] = v
    return s, y


def _range_eer_by_definition(reference, durations, hypothesis):
    """For every threshold: false-alarm and miss durations summed over files (1 ms grid), rates
    over the class totals, the EER where they differ least (mean of the two)."""
    s, y = map(np.concatenate, zip(*[_grid(reference.get(f, []), durations[f], hypothesis[f])
                                     for f in sorted(durations)], strict=True))  # fmt: skip
    thresholds = [-math.inf] + sorted(set(s[np.isfinite(s)].tolist()))
    best = None
    for t in thresholds:
        called = s <= t
        fa, miss = np.sum(called & ~y) * DT, np.sum(~called & y) * DT
        nb, ns = np.sum(~y) * DT, np.sum(y) * DT
        fpr = fa / nb if nb else (0.0 if fa == 0 else 1.0)
        fnr = miss / ns if ns else (0.0 if miss == 0 else 1.0)
        if best is None or abs(fpr - fnr) < best[0] - 1e-12:
            best = (abs(fpr - fnr), (fpr + fnr) / 2, t)
    return best[1], best[2]


def test_range_eer_golden_computed_by_hand():
    """4-s file, spoof 1.5-2.25 s (3.25 s bona fide, 0.75 s spoof); steps [0,1) 2.0,
    [1,2) -1.0, [2,3) 0.5, [3,4) no speech. t = -1 calls [1,2) spoof: false alarm 0.5 s
    (2/13), miss 0.25 s (1/3), |2/13 - 1/3| = 0.18; t = 0.5 calls [1,3): false alarm 1.25 s
    (5/13), no miss: 0.38; t = 2: 9/13. EER = (2/13 + 1/3) / 2 = 19/78 at t = -1."""
    r = range_eer(
        {"a": [(1.5, 2.25)]},
        {"a": 4.0},
        {"a": [(0, 1, 2.0), (1, 2, -1.0), (2, 3, 0.5), (3, 4, None)]},
    )
    assert r["eer"] == pytest.approx(19 / 78) and r["threshold"] == -1.0
    assert r["false_alarm_rate"] == pytest.approx(2 / 13) and r["miss_rate"] == pytest.approx(1 / 3)
    assert r["bonafide_s"] == pytest.approx(3.25) and r["spoof_s"] == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(6))
def test_range_eer_equals_its_definition(seed):
    """Random files: spoof stretches and steps on a 10-ms grid, boundaries inside steps,
    tied scores, unjudged steps, files with no spoof."""
    rng = np.random.default_rng(seed)
    reference, durations, hypothesis = {}, {}, {}
    for f in range(5):
        dur = rng.integers(100, 500) / 100
        durations[f"f{f}"] = dur
        if rng.random() < 0.7:
            a = rng.integers(0, int(dur * 100) - 20) / 100
            reference[f"f{f}"] = [(a, min(dur, a + rng.integers(10, 150) / 100))]
        step = rng.choice([0.25, 0.5, 0.3])
        edges = list(np.arange(0, dur, step)) + [dur]
        tl = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            v = None if rng.random() < 0.15 else float(rng.integers(-4, 5))  # ties
            tl.append((round(a, 3), round(b, 3), v))
        hypothesis[f"f{f}"] = tl
    want, thr = _range_eer_by_definition(reference, durations, hypothesis)
    got = range_eer(reference, durations, hypothesis)
    assert got["eer"] == pytest.approx(want, abs=1e-9) and got["threshold"] == thr


def test_range_eer_without_spoof_and_all_spoof():
    tl = {"a": [(0, 1, 1.0), (1, 2, -1.0)]}
    assert range_eer({}, {"a": 2.0}, tl)["eer"] == 0.0  # nothing to miss: no false alarm at -inf
    r = range_eer({"a": [(0, 2)]}, {"a": 2.0}, tl)  # all spoof: call everything
    assert r["eer"] == 0.0 and r["threshold"] == 1.0


def test_segment_and_utterance_eer_by_definition():
    reference = {"a": [(0.7, 1.3)], "c": [(0.0, 2.0)]}
    durations = {"a": 2.0, "b": 2.0, "c": 2.0}
    hypothesis = {
        "a": [(0, 0.5, 1.0), (0.5, 1.0, -0.5), (1.0, 1.5, 0.2), (1.5, 2.0, 0.8)],
        "b": [(0, 1, 0.9), (1, 2, 0.1)],
        "c": [(0, 1, -0.2), (1, 2, None)],
    }
    # 0.64-s units: [0,.64) [.64,1.28) [1.28,1.92) [1.92,2): spoof if any reference spoof in
    # it; score = the lowest step overlapping it
    a = [(False, 1.0), (True, -0.5), (True, 0.2), (False, 0.8)]
    b = [(False, 0.9), (False, 0.9), (False, 0.1), (False, 0.1)]
    c = [(True, -0.2), (True, -0.2), (True, None), (True, None)]
    units = [u for u in a + b + c if u[1] is not None]
    want = compute_eer([s for sp, s in units if not sp], [s for sp, s in units if sp])
    got = segment_eer(reference, durations, hypothesis, 0.64)
    assert (got["eer"], got["threshold"]) == pytest.approx(want)
    assert (got["n_bonafide"], got["n_spoof"]) == (6, 4)
    want = compute_eer([0.1], [-0.5, -0.2])  # b bona fide; a and c spoof; the lowest step
    got = utterance_eer(reference, durations, hypothesis)
    assert (got["eer"], got["threshold"]) == pytest.approx(want)


def test_rttm_round_trip_and_errors(tmp_path):
    segs = [
        {"start_s": 0.0, "end_s": 1.5, "label": "bonafide"},
        {"start_s": 1.5, "end_s": 2.25, "label": "spoof"},
        {"start_s": 2.25, "end_s": 3.0, "label": "no_speech"},
    ]
    with open(tmp_path / "h.rttm", "w") as fh:
        write_rttm(fh, "utt1", segs)
    text = (tmp_path / "h.rttm").read_text()
    assert text.splitlines()[1] == "SPEAKER utt1 1 1.500 0.750 <NA> <NA> spoof <NA> <NA>"
    assert spoof_stretches(read_rttm(tmp_path / "h.rttm")) == {"utt1": [(1.5, 2.25)]}
    (tmp_path / "bad.rttm").write_text(text + "SPEAKER utt2 1 x 0.5 <NA> <NA> spoof\n")
    with pytest.raises(ValueError, match=r"bad.rttm:3: not an RTTM line"):
        read_rttm(tmp_path / "bad.rttm")
    with pytest.raises(ValueError, match="have no hypothesis: b"):
        range_eer({}, {"a": 1.0, "b": 1.0}, {"a": [(0, 1, 0.0)]})


def test_partialspoof_segment_labels(tmp_path):
    """PartialSpoof's label files: {utt: array of '1' (bona fide) / '0' (spoof)} per unit."""
    from spoofscope.metrics.localisation import read_partialspoof_labels

    labels = {
        "CON_E_0000001": np.array(list("1100011110")),
        "LA_E_0000002": np.array(list("1111")),
        "CON_E_0000003": np.array(list("0011")),
    }
    np.save(tmp_path / "eval_seglab_0.16.npy", labels)
    spoof, durs = read_partialspoof_labels(tmp_path / "eval_seglab_0.16.npy", 0.16)
    assert spoof["CON_E_0000001"] == pytest.approx([(0.32, 0.8), (1.44, 1.6)])
    assert spoof["LA_E_0000002"] == [] and spoof["CON_E_0000003"] == pytest.approx([(0.0, 0.32)])
    assert durs == pytest.approx(
        {"CON_E_0000001": 1.6, "LA_E_0000002": 0.64, "CON_E_0000003": 0.64}
    )
