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
