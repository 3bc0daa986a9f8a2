"""Explanations (infer/explain.py, ``spoofscope explain``): on a model built in the tests
(tests/_bandspan.py) whose score depends only on one known band and time span (a fixed
band-pass filter, then a linear read-out of the filtered energy inside the span), every method
puts the relevance there, in the order of each tile's analytic contribution computed with
numpy; the JSON and the PNG agree; the default method's deletion curve falls faster than
random orders'."""

import json

import numpy as np
import pytest
import soundfile as sf
from _bandspan import SR, analytic, burst, detector, two_seconds

from spoofscope.cli import main
from spoofscope.infer.explain import (
    DEFAULT_METHOD,
    NOTE,
    ExplainError,
    Scorer,
    TileGrid,
    area,
    curve,
)


@pytest.mark.parametrize(
    "method,engine",
    [("occlusion", "torch"), ("occlusion", "onnx"), ("integrated-gradients", "torch")],
)
def test_relevance_lies_in_the_known_band_and_span_in_the_analytic_order(method, engine):
    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = detector(engine, kind="official")
    e = det.explain(x, method=method, tile_s=0.25, n_bands=8)
    assert e.label == "spoof" and e.method == method and e.note == NOTE
    r = e.grid()  # (bands, time tiles)
    assert r.shape == (8, 8)
    want = analytic(inside, [0])
    got = r[2, 2:6]  # 2-3 kHz, 0.5-1.5 s
    np.testing.assert_allclose(got, want, rtol=0.05)
    assert np.argsort(got).tolist() == np.argsort(want).tolist() == [0, 1, 2, 3]
    rest = np.abs(r).copy()
    rest[2, 2:6] = 0
    assert rest.max() < 0.02 * want.max()  # out of band, or out of the span: nothing
    top = max(e.tiles, key=lambda t: t["relevance"])
    assert (top["f_lo_hz"], top["f_hi_hz"], top["start_s"], top["end_s"]) == (
        2000.0,
        3000.0,
        1.25,
        1.5,
    )
    assert "spoof verdict rests mostly on 2-3 kHz" in e.summary and "not proof" in e.summary


def test_integrated_gradients_is_complete():
    """The relevances sum to score(audio) - score(silence), towards the verdict."""
    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = detector(kind="official")
    e = det.explain(x, method="integrated-gradients", tile_s=0.25, n_bands=8)
    full = det.engine(x[None])[0, 1]
    silent = det.engine(np.zeros((1, x.size), np.float32))[0, 1]
    assert sum(t["relevance"] for t in e.tiles) == pytest.approx(-(full - silent), rel=1e-3)


def test_occlusion_over_sliding_windows_matches_the_analytic_contributions():
    """Four seconds in 2-s windows every 1 s: only the windows a tile reaches are scored
    again, and the result is each burst's contribution averaged over the three windows."""
    n = 4 * SR
    comps = [burst(n, 2500, 0.25 * k + 0.05, 0.05 + 0.01 * k) for k in range(16)]
    x = sum(comps).astype(np.float32)
    det = detector(hop_s=1.0)
    e = det.explain(x, method="occlusion", tile_s=0.25, n_bands=8)
    want = analytic(comps, [0, SR, 2 * SR])
    np.testing.assert_allclose(e.grid()[2], want, rtol=0.05, atol=0.01 * want.max())
    # each 0.25-s tile reaches at most 3 windows (plus the 3 of the unmasked audio)
    assert e.passes <= 3 + 8 * 16 * 3


def test_default_method_deletion_curve_falls_faster_than_random():
    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = detector(kind="official")
    e = det.explain(x, tile_s=0.25, n_bands=8)
    assert e.method == DEFAULT_METHOD
    scorer = Scorer(det, x)
    grid = TileGrid(x, SR, 0.25, 8)
    order = np.argsort(-e.grid().reshape(-1))
    fr, ours = curve(scorer, grid, order, -1.0, "deletion")
    rng = np.random.default_rng(0)
    rand = [area(*curve(scorer, grid, rng.permutation(64), -1.0, "deletion")) for _ in range(20)]
    assert ours[0] > 0 and ours[-1] == pytest.approx(0, abs=1e-6)  # all removed: silence
    assert area(fr, ours) < 0.25 * np.mean(rand)
    assert area(fr, ours) < min(rand)


def test_budget_bounds_the_passes():
    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = detector(kind="official")
    e = det.explain(x, method="occlusion", tile_s=0.25, n_bands=8, budget=20)
    # 1 pass for the audio, then 8 bands x 1 window per tile: 0.25 s (64) -> 1 s (16)
    assert e.passes == 17 and e.tile_s == 1.0 and e.n_bands == 8
    e = det.explain(x, method="integrated-gradients", budget=20)
    assert e.passes <= 20
    with pytest.raises(ExplainError, match="raise --budget"):
        det.explain(x, method="occlusion", budget=2)
    with pytest.raises(ExplainError, match="raise --budget"):
        det.explain(x, method="integrated-gradients", budget=5)


def _cli_detector(monkeypatch):
    import spoofscope.cli as cli

    def build(a, **kw):
        return detector(window=32000, kind="official")

    monkeypatch.setattr(cli, "_build_detector", build)


def test_cli_json_and_png_agree(tmp_path, monkeypatch, capsys):
    """The PNG draws each tile of the JSON at its place, red with opacity
    0.85 x relevance / max relevance (read back from the pixels)."""
    import matplotlib.image
    from PIL import Image

    inside, others = two_seconds()
    sf.write(tmp_path / "a.wav", (sum(inside) + sum(others)).astype(np.float32), SR)
    _cli_detector(monkeypatch)
    rc = main(["explain", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o"),
               "--tile-s", "0.25", "--bands", "8"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "spoof verdict rests mostly on 2-3 kHz" in out and "not proof" in out
    d = json.loads((tmp_path / "o" / "a.explain.json").read_text())
    assert d["method"] == DEFAULT_METHOD and d["baseline"] and d["label"] == "spoof"
    assert set(d["tiles"][0]) == {"start_s", "end_s", "f_lo_hz", "f_hi_hz", "relevance"}
    png = tmp_path / "o" / "a.explain.png"
    ax = json.loads(Image.open(png).text["spoofscope:axes"])
    img = matplotlib.image.imread(png)[..., :3] * 255  # (H, W, 3)
    peak = max(abs(t["relevance"]) for t in d["tiles"])
    for t in d["tiles"]:
        tc = (t["start_s"] + t["end_s"]) / 2
        fc = (t["f_lo_hz"] + t["f_hi_hz"]) / 2
        col = ax["left"] + (tc - ax["t0"]) / (ax["t1"] - ax["t0"]) * (ax["right"] - ax["left"])
        row = ax["bottom"] - (fc - ax["f0"]) / (ax["f1"] - ax["f0"]) * (ax["bottom"] - ax["top"])
        r, g, b = img[int(row), int(col)]
        alpha = (r - g) / 255 if t["relevance"] >= 0 else (b - g) / 255
        assert alpha == pytest.approx(0.85 * abs(t["relevance"]) / peak, abs=0.02), t


def test_cli_no_speech_has_no_explanation(tmp_path, monkeypatch, capsys):
    sf.write(tmp_path / "quiet.wav", np.zeros(2 * SR, np.float32), SR)
    _cli_detector(monkeypatch)
    rc = main(["explain", str(tmp_path / "quiet.wav"), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0 and "no explanation" in out and "no_speech" in out
    d = json.loads((tmp_path / "o" / "quiet.explain.json").read_text())
    assert d["label"] == "no_speech" and d["tiles"] == [] and d["reason"]


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    inside, others = two_seconds()
    sf.write(tmp_path / "a.wav", (sum(inside) + sum(others)).astype(np.float32), SR)
    _cli_detector(monkeypatch)
    assert main(["explain", str(tmp_path / "a.wav"), "--start", "3", "--end", "4"]) == 2
    err = capsys.readouterr().err
    assert "not within the recording" in err and len(err.strip().splitlines()) == 1
    assert main(["explain", str(tmp_path / "a.wav"), "--budget", "2"]) == 2
    assert "raise --budget" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_the_deadline_and_the_owners_cancel_stop_an_explanation():
    """Checked before every batch of windows (the service's compute limit and shutdown)."""
    from spoofscope.infer import Limits
    from spoofscope.infer.explain import ExplainStopped

    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = detector(kind="official").replace(limits=Limits(timeout_s=1.0))
    with pytest.raises(ExplainStopped, match="1 s compute limit") as e:
        Scorer(det, x, deadline=0.0)  # a deadline already passed
    assert e.value.kind == "timeout"
    det.cancel_event.set()
    with pytest.raises(ExplainStopped, match="shutting down") as e:
        det.explain(x, method="integrated-gradients")
    assert e.value.kind == "shutting_down"


# ---- added by the break review (tests/breaks.md, section explain) ---------------------------
def _windows_through_the_network(det, fn):
    """Windows that went through ``det``'s network (forward) while ``fn`` ran, counted by a
    hook on the model itself (not the explanation's own count)."""
    seen = []
    h = det.model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        out = fn()
    finally:
        h.remove()
    return out, sum(seen)


def test_integrated_gradients_follows_the_path_on_a_model_that_is_not_quadratic():
    """On a saturating read-out the midpoint rule needs its steps: with 32 the relevances sum
    to score(audio) - score(silence) within 0.2 %; a single midpoint would be off by about 65 %.
    The steps taken are those the budget allows (at most 32)."""
    import torch
    from _bandspan import BandSpan

    from spoofscope.infer import Decision, Detector, WindowPolicy, make_engine

    class Saturating(BandSpan):
        def forward(self, x):
            _, s = super().forward(x)
            s = -torch.tanh(-s)  # the full signal's -s is about 2.1
            return torch.cat([-s, s], 1), s

    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = Detector(
        make_engine(Saturating().eval(), "torch"),
        windows=WindowPolicy(kind="official"),
        decision=Decision(vad="energy", min_speech_s=0.1),
    )
    full = float(det.engine(x[None])[0, 1])
    silent = float(det.engine(np.zeros((1, x.size), np.float32))[0, 1])
    assert abs(full - silent) > 0.95  # saturated: tanh(2.1) = 0.97
    e = det.explain(x, method="integrated-gradients", tile_s=0.25, n_bands=8)
    assert sum(t["relevance"] for t in e.tiles) == pytest.approx(-(full - silent), rel=2e-3)
    # one window: the verdict's pass, then a forward and a backward pass per step
    assert e.passes == 1 + 2 * 32
    e = det.explain(x, method="integrated-gradients", budget=20)
    assert e.passes == 1 + 2 * ((20 - 1) // 2)


def test_integrated_gradients_reads_the_window_a_min_aggregate_reads():
    """Four seconds in 2-s windows every 1 s, aggregate min: the score is the most spoof
    window's (the one starting at 1 s), so the relevance is that window's analytic
    contribution of its burst, and nothing elsewhere."""
    n = 4 * SR
    mine = burst(n, 2500, 1.8, 0.3)  # in the span of the window at 1 s only
    others = [burst(n, 2500, 0.8, 0.1), burst(n, 2500, 2.9, 0.05)]  # windows at 0 s, 2 s
    x = (mine + sum(others)).astype(np.float32)
    det = detector(hop_s=1.0, aggregate="min")
    e = det.explain(x, method="integrated-gradients", tile_s=0.25, n_bands=8)
    assert e.label == "spoof"
    r = e.grid()
    want = analytic([mine], [SR])[0]
    assert r[2, 7] == pytest.approx(want, rel=0.05)  # 2-3 kHz, 1.75-2.0 s
    rest = np.abs(r).copy()
    rest[2, 7] = 0
    assert rest.max() < 0.02 * want


def test_occlusion_spends_no_more_windows_than_the_budget():
    """Over sliding windows a tile reaches up to three windows: the budget counts them all
    (counted by a hook on the network), the tiles coarsen to fit."""
    n = 4 * SR
    x = sum(burst(n, 2500, 0.25 * k + 0.05, 0.05 + 0.01 * k) for k in range(16))
    x = x.astype(np.float32)
    det = detector(hop_s=1.0)
    _, verdict = _windows_through_the_network(det, lambda: det(x))
    for budget in (100, 200):
        e, seen = _windows_through_the_network(
            det, lambda b=budget: det.explain(x, method="occlusion", budget=b)
        )
        assert seen - verdict <= budget and e.passes <= budget
        assert e.tile_s > 0.25


def test_insertion_curve_of_the_default_method_rises_faster_than_random():
    """From silence (score 0 towards the verdict on this model) to the whole signal."""
    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    det = detector(kind="official")
    e = det.explain(x, tile_s=0.25, n_bands=8)
    scorer = Scorer(det, x)
    grid = TileGrid(x, SR, 0.25, 8)
    order = np.argsort(-e.grid().reshape(-1))
    fr, ours = curve(scorer, grid, order, -1.0, "insertion")
    full = float(det.engine(x[None])[0, 1])
    assert ours[0] == pytest.approx(0, abs=1e-6) and ours[-1] == pytest.approx(-full, rel=1e-4)
    rng = np.random.default_rng(0)
    rand = [area(*curve(scorer, grid, rng.permutation(64), -1.0, "insertion")) for _ in range(20)]
    assert area(fr, ours) > max(rand)


def test_summary_names_the_band_the_time_and_the_share():
    """The top tile (2-3 kHz, 1.25-1.5 s) holds over half the relevance towards spoof (its
    analytic share 0.04 / 0.075), so the summary names it alone, with its share of the
    positive relevance."""
    inside, others = two_seconds()
    x = (sum(inside) + sum(others)).astype(np.float32)
    want = analytic(inside, [0])
    assert want[3] > 0.5 * want.sum()
    for method in ("occlusion", "integrated-gradients"):
        e = detector(kind="official").explain(x, method=method, tile_s=0.25, n_bands=8)
        pos = sum(t["relevance"] for t in e.tiles if t["relevance"] > 0)
        share = 100 * max(t["relevance"] for t in e.tiles) / pos
        assert share == pytest.approx(100 * want[3] / want.sum(), abs=3)
        assert (
            f"the spoof verdict rests mostly on 2-3 kHz between 1.25 and 1.50 s "
            f"({share:.0f} % of the relevance towards it)"
        ) in e.summary, e.summary


def test_cli_json_is_strict_whatever_the_numbers(tmp_path, monkeypatch, capsys):
    """No NaN or Infinity in the written JSON: a non-finite relevance (a broken model) is
    written as null, and the file parses as standard JSON."""
    from spoofscope.infer.explain import Explanation

    inside, others = two_seconds()
    sf.write(tmp_path / "a.wav", (sum(inside) + sum(others)).astype(np.float32), SR)
    _cli_detector(monkeypatch)
    plain = Explanation.to_dict

    def broken(self):
        d = plain(self)
        d["tiles"][0]["relevance"] = float("nan")
        d["score"] = float("inf")
        return d

    monkeypatch.setattr(Explanation, "to_dict", broken)
    rc = main(["explain", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o"),
               "--tile-s", "0.5", "--bands", "4"])  # fmt: skip
    capsys.readouterr()
    text = (tmp_path / "o" / "a.explain.json").read_text()

    def refuse(c):
        raise ValueError(c)

    d = json.loads(text, parse_constant=refuse)
    assert rc == 0 and d["tiles"][0]["relevance"] is None and d["score"] is None
