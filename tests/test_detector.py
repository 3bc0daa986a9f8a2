import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import spoofscope
from spoofscope.audio import official_crop
from spoofscope.cli import main
from spoofscope.errors import ConfigError
from spoofscope.infer import (
    Calibration,
    Decision,
    Detector,
    FusedDetector,
    Fusion,
    Limits,
    TorchEngine,
    WindowPolicy,
    sliding_windows,
)
from spoofscope.metrics import compute_eer
from spoofscope.models import get_card
from spoofscope.models.ssl import TINY_ENCODER


class EnergyModel(torch.nn.Module):
    """A cheap stand-in model: the bona fide logit is the window RMS (in tens of dB)."""

    min_length = 1
    embedding_dim = 1
    registry_name = "energy"

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        r = torch.log10(x.pow(2).mean(1, keepdim=True) + 1e-10)
        return torch.cat([-r, r], 1), r


@pytest.fixture(scope="module")
def aasist_detector(reference_dir):
    return Detector.from_pretrained(
        "aasist",
        weights=reference_dir / "official_AASIST.pth",
        windows=WindowPolicy(kind="official"),
    )


def test_official_window_gives_official_scores(aasist_detector, golden, tmp_path):
    for i in range(4):  # 64,600-sample inputs: the official score is logits[1]
        r = aasist_detector(golden[f"input_{i}"])
        assert abs(r.score - golden[f"AASIST_logits_{i}"][1]) < 1e-4
        p = torch.softmax(torch.tensor(golden[f"AASIST_logits_{i}"]), 0)[1].item()
        assert abs(r.p_bonafide - p) < 1e-5 and r.label == "spoof" and not r.calibrated
    # from a real file on disk (float WAV keeps the samples exactly)
    sf.write(tmp_path / "in0.wav", golden["input_0"], 16000, subtype="FLOAT")
    r = aasist_detector(tmp_path / "in0.wav")
    assert abs(r.score - golden["AASIST_logits_0"][1]) < 1e-4
    # shorter and longer inputs: the official crop (tiling / first 64,600), checked by hand
    model = aasist_detector.model
    for i in (4, 5):
        x = golden[f"input_{i}"]
        reps = 64600 // len(x) + 1
        crop = np.tile(x, reps)[:64600]
        with torch.no_grad():
            ref = model(torch.from_numpy(crop)[None])[0][0, 1].item()
        assert abs(aasist_detector(x).score - ref) < 1e-5


def test_sliding_windows_cover_the_file():
    x = np.arange(200000, dtype=np.float32)
    chunks = [x[i : i + 7777] for i in range(0, len(x), 7777)]
    ws = list(sliding_windows(chunks, 64600, 32000))
    starts = [w.start for w in ws]
    assert starts == [0, 32000, 64000, 96000, 128000, 200000 - 64600]
    for w in ws:
        np.testing.assert_array_equal(w.samples, x[w.start : w.start + 64600])
    short = list(sliding_windows([x[:1000]], 64600, 32000))
    assert len(short) == 1
    np.testing.assert_array_equal(short[0].samples, official_crop(x[:1000]))


def test_aggregation_and_silence(tmp_path):
    rng = np.random.default_rng(0)
    sr = 16000
    # 6 s of silence, then 10 s of noise whose level rises
    speech = np.concatenate([rng.standard_normal(sr * 5) * 0.05, rng.standard_normal(sr * 5) * 0.2])
    x = np.concatenate([np.zeros(sr * 6), speech]).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, sr, subtype="FLOAT")
    results = {}
    for agg in ("mean", "min", "quantile"):
        det = Detector(EnergyModel(), windows=WindowPolicy(hop_s=1.0, aggregate=agg))
        results[agg] = det(tmp_path / "a.wav")
    r = results["mean"]
    assert r.duration_s == pytest.approx(16.0)
    voiced = [w["score"] for w in r.windows if not w["silent"]]
    assert any(w["silent"] for w in r.windows)
    assert all(w["score"] is None for w in r.windows if w["silent"])
    assert r.score == pytest.approx(np.mean(voiced))
    assert results["min"].score == pytest.approx(np.min(voiced))
    assert results["quantile"].score == pytest.approx(np.quantile(voiced, 0.1))
    # windows end at the end of the file
    assert r.windows[-1]["end_s"] == pytest.approx(16.0)
    # an all-silent file is not judged: no score, no verdict, and the reason
    sf.write(tmp_path / "silence.wav", np.zeros(sr * 3, np.float32), sr)
    s = Detector(EnergyModel())(tmp_path / "silence.wav")
    assert s.error is None and s.score is None and s.label == "no_speech"
    assert s.confident is False and s.reason.startswith("no speech") and s.speech_s == 0.0
    assert r.speech_s == pytest.approx(10.0, abs=0.05)  # the 10 s of sound after the silence


def test_detect_many_batches_across_files_and_keeps_errors(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i, secs in enumerate([1.0, 6.0, 2.5]):
        p = tmp_path / f"f{i}.flac"
        sf.write(
            p, (rng.standard_normal(int(16000 * secs)) * 0.1 * (i + 1)).astype(np.float32), 16000
        )
        paths.append(p)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    m = EnergyModel()
    # the PyTorch engine, so the test sees the batches the model is called with
    det = Detector(TorchEngine(m), windows=WindowPolicy(hop_s=1.0), limits=Limits(batch_size=4))
    rs = det.detect_many([paths[0], tmp_path / "bad.wav", paths[1], paths[2]])
    assert [r.path for r in rs] == [
        str(paths[0]),
        str(tmp_path / "bad.wav"),
        str(paths[1]),
        str(paths[2]),
    ]
    assert rs[1].error and "bad.wav" in rs[1].error and rs[1].score is None
    # 1 + 3 + 1 windows = 5 windows in batches of 4: files share a batch
    assert m.calls == [4, 1]
    one_by_one = [Detector(EnergyModel(), windows=WindowPolicy(hop_s=1.0))(p).score for p in paths]
    assert [rs[0].score, rs[2].score, rs[3].score] == pytest.approx(one_by_one, abs=1e-6)


_PEAK_RSS_SCRIPT = """
import sys
import spoofscope
from spoofscope.infer import Detector, Limits, TorchEngine, WindowPolicy

def peak():
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM")).split()[1])

model = spoofscope.create_model("lfcc-lcnn").eval()
det = Detector(TorchEngine(model), windows=WindowPolicy(hop_s=4.0), limits=Limits(batch_size=8))
det(sys.argv[1])  # 10 minutes: every buffer of the pipeline reaches its working size
before = peak()
r = det(sys.argv[2])
print(before, peak(), r.duration_s, len(r.windows))
"""


def test_long_file_memory_is_bounded_by_the_batch(tmp_path):
    """Peak resident memory (the kernel's count: torch, the decoder and numpy alike) of a
    process that has scored a 10-minute file grows by less than half of what a 20-minute file
    would take decoded (77 MB as float32) when it then scores that file. (The first long file
    itself may raise the peak by 10-100 MB, varying from run to run: the allocators' working
    sizes, not the file's length.)"""
    import subprocess
    import sys

    sr = 16000
    rng = np.random.default_rng(2)
    for name, minutes in (("ten", 10), ("twenty", 20)):
        with sf.SoundFile(tmp_path / f"{name}.flac", "w", sr, 1, subtype="PCM_16") as f:
            for _ in range(minutes):  # written a minute at a time
                f.write((rng.standard_normal(sr * 60) * 0.1).astype(np.float32))
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, str(tmp_path / "ten.flac"),
         str(tmp_path / "twenty.flac")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    before_kb, after_kb = int(out[0]), int(out[1])
    assert float(out[2]) == pytest.approx(1200.0) and int(out[3]) == 300
    full_kb = sr * 1200 * 4 / 1024
    assert after_kb - before_kb < full_kb / 2, f"peak grew {(after_kb - before_kb) / 1024:.1f} MB"


def test_calibration_recovers_known_llr_and_is_used(tmp_path):
    rng = np.random.default_rng(0)
    # scores s' = s/4 + 1 of s ~ N(+-2, 1): the true LLR is 4 s = 16 (s' - 1)
    b = rng.normal(2, 1, 20000) / 4 + 1
    s = rng.normal(-2, 1, 20000) / 4 + 1
    cal = Calibration.fit(b, s, target_far=0.05)
    assert cal.a == pytest.approx(16, rel=0.05) and cal.b == pytest.approx(-16, rel=0.05)
    assert cal.report["cllr_after"] < cal.report["cllr_before"]
    assert cal.report["act_dcf_after"] <= cal.report["act_dcf_before"]
    # the FAR threshold is the tightest one: at most 5 % of spoofs at or above it, and more
    # than 5 % at or above the highest spoof score below it
    assert np.mean(s >= cal.far_threshold) <= 0.05
    assert np.mean(s >= s[s < cal.far_threshold].max()) > 0.05
    eer, thr = compute_eer(b, s)
    assert cal.eer_threshold == thr
    # a detector with this calibration: p = sigmoid(a * score + b); band decides confidence
    cal.save(tmp_path / "c.json")
    m = EnergyModel()
    det = Detector(
        m,
        calibration=tmp_path / "c.json",
        windows=WindowPolicy(kind="official"),
        decision=Decision(band=0.2),
    )
    x = np.full(64600, 10 ** ((1.05 * -1) / 2), np.float32)  # RMS gives score ~ -1.05
    r = det(x)
    assert r.calibrated
    assert r.p_bonafide == pytest.approx(1 / (1 + np.exp(-(cal.a * r.score + cal.b))), rel=1e-9)
    assert r.label == ("bonafide" if r.score >= cal.threshold else "spoof")
    p_thr = 1 / (1 + np.exp(-(cal.a * cal.threshold + cal.b)))
    assert r.confident == (abs(r.p_bonafide - p_thr) >= 0.2)


def test_calibration_prior_weighting():
    """Prior 0.3: the fitted map minimises the prior-weighted logistic loss (found here by
    another optimiser, on the raw scores), and p_bonafide adds logit(prior) to the LLR. The
    classes have unequal spreads, so the best linear map depends on the prior."""
    rng = np.random.default_rng(1)
    b, s = rng.normal(2, 1, 5000), rng.normal(-2, 2, 5000)

    def reference(prior):
        """Newton's method on the prior-weighted loss (exact gradient and Hessian)."""
        off = np.log(prior / (1 - prior))
        X = np.r_[np.c_[b, np.ones_like(b)], np.c_[s, np.ones_like(s)]]
        y = np.r_[np.ones_like(b), np.zeros_like(s)]
        wt = np.r_[np.full(b.size, prior / b.size), np.full(s.size, (1 - prior) / s.size)]
        t = np.zeros(2)
        for _ in range(50):
            p = 1 / (1 + np.exp(-(X @ t + off)))
            g = X.T @ (wt * (p - y))
            H = (X * (wt * p * (1 - p))[:, None]).T @ X
            t -= np.linalg.solve(H, g)
        return t

    fits = {}
    for prior in (0.5, 0.3):
        cal = Calibration.fit(b, s, prior=prior)
        a_ref, b_ref = reference(prior)
        # the library's optimiser stops at a gradient tolerance: within 1e-3 of the optimum
        assert cal.a == pytest.approx(a_ref, rel=1e-3) and cal.b == pytest.approx(b_ref, abs=1e-3)
        fits[prior] = cal
    assert abs(fits[0.3].b - fits[0.5].b) > 0.05  # the weighting matters here
    cal = fits[0.3]
    x = np.linspace(-3, 3, 13)
    want = 1 / (1 + np.exp(-(cal.a * x + cal.b + np.log(0.3 / 0.7))))
    np.testing.assert_allclose(cal.p_bonafide(x), want, rtol=1e-12)
    # and a detector with it reports that probability
    det = Detector(EnergyModel(), calibration=cal, windows=WindowPolicy(kind="official"))
    r = det(np.full(64600, 0.1, np.float32))
    assert r.p_bonafide == pytest.approx(
        1 / (1 + np.exp(-(cal.a * r.score + cal.b + np.log(0.3 / 0.7)))), rel=1e-12
    )


def test_fusion_weights_are_the_generating_models_llr():
    """Three correlated systems, s = (2y - 1) m + c z + diag(sigma) e with z, e standard
    normal: both classes share the covariance C = c c' + diag(sigma^2), so the true LLR is
    linear with weights C^-1 (mu_bona - mu_spoof) = C^-1 2m and bias 0. Fusion fits those, and
    beats the best single system on held-out trials."""
    rng = np.random.default_rng(3)
    n = 20000
    m, c, sigma = np.array([1.0, 0.8, 1.2]), np.array([0.7, 0.7, 0.3]), np.array([1, 1, 1.5])
    y = np.r_[np.ones(n), np.zeros(n)]
    sys = (
        (2 * y - 1)[:, None] * m
        + rng.standard_normal(2 * n)[:, None] * c
        + rng.standard_normal((2 * n, 3)) * sigma
    )
    dev, ev = slice(0, None, 2), slice(1, None, 2)
    fusion = Fusion.fit(sys[dev], y[dev])
    want = np.linalg.solve(np.outer(c, c) + np.diag(sigma**2), 2 * m)
    np.testing.assert_allclose(fusion.weights, want, rtol=0, atol=0.05)
    assert abs(fusion.bias) < 0.03
    fused = fusion.apply(sys[ev])
    eers = [compute_eer(sys[ev][y[ev] == 1, k], sys[ev][y[ev] == 0, k])[0] for k in range(3)]
    assert compute_eer(fused[y[ev] == 1], fused[y[ev] == 0])[0] < min(eers)


def test_fused_detector(tmp_path):
    rng = np.random.default_rng(4)
    sf.write(tmp_path / "a.wav", (rng.standard_normal(40000) * 0.1).astype(np.float32), 16000)
    d1, d2 = Detector(EnergyModel()), Detector(EnergyModel(), windows=WindowPolicy(aggregate="min"))
    fus = Fusion([0.5, 2.0], -1.0, ["a", "b"])
    r = FusedDetector([d1, d2], fus)(tmp_path / "a.wav")
    s1, s2 = d1(tmp_path / "a.wav").score, d2(tmp_path / "a.wav").score
    assert r.score == pytest.approx(0.5 * s1 + 2.0 * s2 - 1.0)
    assert r.p_bonafide == pytest.approx(1 / (1 + np.exp(-r.score)))


def _write_scores(path, ids, scores):
    path.write_text("".join(f"{u} {float(s)!r}\n" for u, s in zip(ids, scores, strict=True)))


def test_calibrate_and_fuse_cli(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n = 5000
    ids = [f"U{i}" for i in range(2 * n)]
    proto = tmp_path / "dev.txt"
    proto.write_text(
        "".join(
            f"S {u} - {'-' if i < n else 'A01'} {'bonafide' if i < n else 'spoof'}\n"
            for i, u in enumerate(ids)
        )
    )
    y = np.r_[np.ones(n), np.zeros(n)]
    a = (2 * y - 1) + rng.standard_normal(2 * n)
    b = (2 * y - 1) * 0.5 + rng.standard_normal(2 * n)
    _write_scores(tmp_path / "a.txt", ids, a)
    _write_scores(tmp_path / "b.txt", ids, b)
    assert (
        main(
            [
                "calibrate",
                "--scores",
                str(tmp_path / "a.txt"),
                "--protocol",
                str(proto),
                "--out",
                str(tmp_path / "cal.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Cllr" in out and "actDCF" in out
    cal = Calibration.load(tmp_path / "cal.json")
    # true LLR of N(+-1, 1) is 2 s (5,000 trials a class: the fitted slope within 2.5 % here)
    assert cal.a == pytest.approx(2.0, rel=0.05) and cal.b == pytest.approx(0.0, abs=0.05)
    assert (
        main(
            [
                "fuse",
                "--scores",
                str(tmp_path / "a.txt"),
                str(tmp_path / "b.txt"),
                "--protocol",
                str(proto),
                "--out",
                str(tmp_path / "f.json"),
                "--apply",
                str(tmp_path / "a.txt"),
                str(tmp_path / "b.txt"),
                "--eval-protocol",
                str(proto),
                "--eval-out",
                str(tmp_path / "fused.txt"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    fus = Fusion.load(tmp_path / "f.json")
    lines = (tmp_path / "fused.txt").read_text().split("\n")
    u, attack, key, val = lines[0].split()
    assert u == "U0" and key == "bonafide"
    assert float(val) == pytest.approx(fus.weights[0] * a[0] + fus.weights[1] * b[0] + fus.bias)
    # evaluate reads the fused file
    assert (
        main(
            [
                "evaluate",
                "--scores",
                str(tmp_path / "fused.txt"),
                "--protocol",
                str(proto),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_bonafide"] == n


def test_detect_cli(tmp_path, capsys, reference_dir, golden):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", golden["input_0"], 16000, subtype="FLOAT")
    sf.write(d / "sub" / "b.flac", golden["input_5"], 16000)
    (d / "sub" / "broken.wav").write_bytes(b"not audio at all")
    w = str(reference_dir / "official_AASIST.pth")
    rc = main(
        [
            "detect",
            str(d),
            "--weights",
            w,
            "--json",
            "--recursive",
            "--quiet",
            "--window",
            "official",
            "--csv",
            str(tmp_path / "out.csv"),
        ]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1  # one input failed
    by = {r["path"].split("/")[-1]: r for r in rows}
    assert set(by) == {"a.wav", "b.flac", "broken.wav"}
    for key in (
        "path",
        "score",
        "label",
        "p_bonafide",
        "confident",
        "duration_s",
        "windows",
        "error",
    ):
        assert key in by["a.wav"]
    assert abs(by["a.wav"]["score"] - golden["AASIST_logits_0"][1]) < 1e-4
    assert by["broken.wav"]["error"] and by["broken.wav"]["score"] is None
    assert by["b.flac"]["duration_s"] == pytest.approx(6.0)
    assert (tmp_path / "out.csv").read_text().count("\n") == 4
    # without --recursive only the top folder is read; the table format
    assert main(["detect", str(d), "--weights", w, "--quiet"]) == 0
    out = capsys.readouterr()
    assert "a.wav" in out.out and "b.flac" not in out.out and "not calibrated" in out.out
    # the card's notes, once, on stderr: what the official AASIST saw and what it misses
    assert out.err.count("note: aasist") == 1 and "2019 LA train" in out.err
    assert main(["detect", str(d), "--model", "nonsense"]) == 2
    assert "unknown model 'nonsense'" in capsys.readouterr().err


def test_from_checkpoint_with_official_state_dict_and_config(reference_dir, golden):
    det = Detector.from_checkpoint(
        reference_dir / "official_AASIST-L.pth",
        config=reference_dir / "aasist_l_config.json",
        windows=WindowPolicy(kind="official"),
    )
    assert abs(det(golden["input_1"]).score - golden["AASIST-L_logits_1"][1]) < 1e-4


def test_from_checkpoint_spoofscope_with_attached_calibration(tmp_path, capsys):
    from spoofscope.models import save_checkpoint

    torch.manual_seed(0)
    m = spoofscope.create_model("lfcc-lcnn")
    save_checkpoint(m, tmp_path / "m.ckpt")
    proto = tmp_path / "p.txt"
    proto.write_text("S U0 - - bonafide\nS U1 - - bonafide\nS U2 - A01 spoof\nS U3 - A01 spoof\n")
    (tmp_path / "s.txt").write_text("U0 1.0\nU1 0.2\nU2 0.5\nU3 -1.0\n")
    assert (
        main(
            [
                "calibrate",
                "--scores",
                str(tmp_path / "s.txt"),
                "--protocol",
                str(proto),
                "--attach",
                str(tmp_path / "m.ckpt"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    det = Detector.from_checkpoint(tmp_path / "m.ckpt")
    assert det.calibration is not None and (tmp_path / "m.calib.json").is_file()
    # the attached map is the one fitted on those four scores
    want = Calibration.fit([1.0, 0.2], [0.5, -1.0])
    assert (det.calibration.a, det.calibration.b) == (want.a, want.b)
    assert det.calibration.threshold == want.eer_threshold
    r = det(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    assert r.calibrated
    assert r.p_bonafide == pytest.approx(1 / (1 + np.exp(-(want.a * r.score + want.b))), rel=1e-12)
    assert r.label == ("bonafide" if r.score >= want.eer_threshold else "spoof")


ONNX_MODELS = [n for n in spoofscope.list_models() if get_card(n).export != "none"]
TINY64 = dict(TINY_ENCODER, hidden_size=64)  # every back-end splits 64 channels


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_export_agrees_with_torch(name, tmp_path, golden):
    from spoofscope.export import check_onnx, export_onnx

    torch.manual_seed(0)
    small = {"encoder_config": TINY64} if get_card(name).encoder else {}
    m = spoofscope.create_model(name, **small).eval()
    path = export_onnx(m, tmp_path / f"{name}.onnx")
    n = m.card.window_samples  # inputs of the card's window (the golden inputs are 64,600)
    xs = np.stack([official_crop(golden[f"input_{i}"], n) for i in range(3)])
    assert check_onnx(m, path, xs, atol=1e-3) <= 1e-3
    from spoofscope.infer import OnnxEngine

    engine = OnnxEngine(m, path)
    fixed = engine.fixed_length
    # the card says which graphs are exported for its window only (AASIST's graph pooling
    # keeps int(N * k) nodes of a length-dependent N) and which take any length
    assert (fixed is not None) == (m.card.export == "fixed")
    assert fixed is None or fixed == m.card.window_samples
    if fixed is None:
        assert check_onnx(m, path, golden["input_4"][None], atol=1e-3) <= 1e-3
        assert check_onnx(m, path, golden["input_5"][None], atol=1e-3) <= 1e-3
    else:
        with pytest.raises(ValueError, match=f"exported for {fixed}-sample windows"):
            engine(golden["input_4"][None])
    # a detector on the exported graph gives the PyTorch model's bona fide logit
    det = Detector(engine, windows=WindowPolicy(kind="official"))
    with torch.no_grad():
        want = m(torch.from_numpy(xs[:1]).float())[0][0, m.card.bonafide_index].item()
    assert det(xs[0]).score == pytest.approx(want, abs=1e-3)


def test_onnx_session_without_layout_round_trips_gives_the_official_scores(
    reference_dir, golden, tmp_path
):
    """ONNX Runtime converts AASIST-L's activations out of and back into its blocked layout
    around the SELU of each of the 6 residual blocks; the session drops those 6 round trips and
    still gives the official implementation's logits."""
    import onnx
    import onnxruntime as ort

    from spoofscope.export import export_onnx
    from spoofscope.export.onnx import _options, drop_layout_round_trips, ort_session

    m = spoofscope.load_model("aasist-l", weights=reference_dir / "official_AASIST-L.pth")
    path = export_onnx(m, tmp_path / "aasist-l.onnx")
    so = _options(1)
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    g = onnx.load(so.optimized_model_filepath).graph
    if not any(n.domain == "com.microsoft.nchwc" for n in g.node):
        pytest.skip("this CPU's ONNX Runtime does not use the blocked (NCHWc) layout")

    def reorders(graph):
        return sum(n.op_type.startswith("Reorder") for n in graph.node)

    selu = sum(n.op_type == "Selu" for n in g.node)
    before = reorders(g)
    assert drop_layout_round_trips(g) == 6
    assert reorders(g) == before - 12 and sum(n.op_type == "Selu" for n in g.node) == selu
    assert drop_layout_round_trips(g) == 0  # nothing left to drop
    x = np.stack([golden[f"input_{i}"][:64600] for i in range(4)]).astype(np.float32)
    got = ort_session(path, threads=1).run(["logits"], {"waveform": x})[0]
    ref = np.stack([golden[f"AASIST-L_logits_{i}"] for i in range(4)])
    assert np.abs(got - ref).max() < 1e-4


def test_cqcc_xvector_refuses_export(tmp_path):
    from spoofscope.export import export_onnx

    with pytest.raises(ValueError, match="cannot be exported"):
        export_onnx(spoofscope.create_model("cqcc-xvector"), tmp_path / "x.onnx")


def test_onnx_detector_matches_torch(reference_dir, golden, tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOFSCOPE_CACHE", str(tmp_path))
    w = reference_dir / "official_AASIST.pth"
    det = Detector.from_pretrained(
        "aasist", weights=w, engine="onnx", windows=WindowPolicy(kind="official")
    )
    for i in range(4):
        assert abs(det(golden[f"input_{i}"]).score - golden[f"AASIST_logits_{i}"][1]) < 1e-4
    assert list((tmp_path / "onnx").glob("aasist-*.onnx"))  # cached for the next run
    x = np.concatenate([golden["input_0"], golden["input_1"]])
    a = Detector.from_pretrained("aasist", weights=w, engine="onnx")(x)
    b = Detector.from_pretrained("aasist", weights=w, engine="torch")(x)
    assert a.score == pytest.approx(b.score, abs=1e-4)


def test_default_engine_is_onnx_where_the_model_exports(reference_dir, golden, caplog):
    w = reference_dir / "official_AASIST.pth"
    det = Detector.from_pretrained("aasist", weights=w)
    assert det.engine.name == "onnx" and det.engine.fixed_length == 64600
    # the localisation windows' graph (another fixed length) is made once: the detectors of
    # all live streams share its session, and so can share its calls
    a, b = (det.replace(windows=WindowPolicy(hop_s=h).localising()) for h in (1.0, 2.0))
    assert a._engines[16000] is b._engines[16000] and a._engines[16000].fixed_length == 16000
    x = np.concatenate([golden["input_0"], golden["input_1"]])
    torch_det = Detector.from_pretrained("aasist", weights=w, engine="torch")
    assert det(x).score == pytest.approx(torch_det(x).score, abs=1e-4)
    # a fixed-length graph is exported at the window the detector will feed
    three = Detector.from_pretrained("aasist", weights=w, windows=WindowPolicy(samples=48000))
    assert three.engine.name == "onnx" and three.engine.fixed_length == 48000
    ref = torch_det.replace(windows=WindowPolicy(samples=48000))(x).score
    assert three(x).score == pytest.approx(ref, abs=1e-4)
    # Detector(module) takes the same default
    assert Detector(spoofscope.create_model("lfcc-lcnn")).engine.name == "onnx"
    # a model that cannot be exported runs in PyTorch, said in one line
    with caplog.at_level("INFO", logger="spoofscope.infer.engines"):
        d = Detector(spoofscope.create_model("cqcc-xvector"))
    assert d.engine.name == "torch"
    lines = [r.getMessage() for r in caplog.records if r.name == "spoofscope.infer.engines"]
    assert lines == ["cqcc-xvector runs in PyTorch (its card says it cannot be exported to ONNX)"]


def test_auto_engine_falls_back_to_torch_when_onnx_fails(monkeypatch, caplog):
    from spoofscope.infer import engines

    def broken(*a, **k):
        raise RuntimeError("no ONNX today")

    monkeypatch.setattr(engines, "OnnxEngine", broken)
    m = spoofscope.create_model("lfcc-lcnn")
    with caplog.at_level("INFO", logger="spoofscope.infer.engines"):
        e = engines.make_engine(m, "auto")
    assert e.name == "torch"
    lines = [r.getMessage() for r in caplog.records if r.name == "spoofscope.infer.engines"]
    assert lines == ["lfcc-lcnn runs in PyTorch: the ONNX engine failed (no ONNX today)"]
    with pytest.raises(RuntimeError, match="no ONNX today"):
        engines.make_engine(m, "onnx")  # asked for by name: no silent fallback


def test_cached_export_follows_weights_length_and_version(tmp_path, monkeypatch):
    import spoofscope as pkg
    from spoofscope.export.onnx import cached_onnx

    torch.manual_seed(0)
    m = spoofscope.create_model("lfcc-lcnn").eval()
    first = cached_onnx(m, tmp_path)
    assert cached_onnx(m, tmp_path) == first  # reused
    assert cached_onnx(m, tmp_path, length=32000) != first
    with torch.no_grad():
        next(m.parameters()).add_(0.01)
    changed = cached_onnx(m, tmp_path)
    assert changed != first and changed.is_file()
    monkeypatch.setattr(pkg, "__version__", "999.0")
    assert cached_onnx(m, tmp_path) not in (first, changed)
    assert not list((tmp_path / "onnx").glob("*.tmp"))


def test_reduced_precision_only_where_the_card_lists_it(tmp_path, capsys, reference_dir):
    from spoofscope.infer import make_engine

    m = spoofscope.create_model("aasist-l")
    with pytest.raises(ConfigError, match="no int8 path that keeps its scores close to fp32"):
        make_engine(m, precision="int8")
    with pytest.raises(ConfigError, match="precision must be one of fp32, int8"):
        make_engine(m, precision="fp16")
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    w = str(reference_dir / "official_AASIST-L.pth")
    args = ["detect", str(wav), "--model", "aasist-l", "--weights", w, "--precision", "int8"]
    assert main(args) == 2
    assert "no int8 path" in capsys.readouterr().err
    # a model whose card lists int8, in PyTorch: its encoder's feed-forward layers run in
    # int8, the scores stay within 1e-2 of fp32 and no decision changes (the ONNX int8 path:
    # test_int8.py)
    torch.manual_seed(0)
    ssl = spoofscope.create_model("ssl-aasist", encoder_config=TINY_ENCODER).eval()
    assert "int8" in ssl.card.precisions
    q = make_engine(ssl, "torch", precision="int8")
    assert q.name == "torch" and q.precision == "int8"
    assert any("quantized" in type(mod).__module__ for mod in q.model.modules())
    x = np.random.default_rng(0).standard_normal((6, 64600)).astype(np.float32) * 0.1
    ref = make_engine(ssl, "torch")(x)
    got = q(x)
    assert np.abs(got - ref).max() < 1e-2
    assert ((got[:, 1] > got[:, 0]) == (ref[:, 1] > ref[:, 0])).all()


@pytest.mark.skipif(
    __import__("platform").libc_ver()[0] != "glibc", reason="the allocator settings are glibc's"
)
def test_freed_memory_is_reused_not_faulted_back():
    """A 256 MB block freed and allocated again costs page faults for every page, every time,
    with glibc's defaults; once the detector's allocator settings are in force the pages stay in
    the process and, after a warm-up (the heap may grow once more when a small object lands
    after the freed block), allocations reuse them without a fault."""
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        # what a detector's process has loaded (the package's names load on first use): the
        # heap's layout, and so its warm-up, depends on it
        "from spoofscope.infer import *\n"
        "from spoofscope.infer._malloc import keep_freed_memory\n"
        "on = keep_freed_memory()\n"
        "faults = []\n"
        "for i in range(8):\n"
        "    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    x = torch.empty(64 << 20).fill_(1.0)\n"
        "    del x\n"
        "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
        "print(on, *faults)\n"
    )
    pages = (256 << 20) // 4096
    out = {}
    for keep in ("1", "0"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        r = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "SPOOFSCOPE_KEEP_MEMORY": keep},
            capture_output=True,
            text=True,
            check=True,
        )
        on, *faults = r.stdout.split()
        out[keep] = (on, [int(f) for f in faults])
    assert out["1"][0] == "True" and out["0"][0] == "False"
    # glibc's defaults: every allocation faults every page back in
    assert all(f > 0.9 * pages for f in out["0"][1])
    # kept: the first allocation faults its pages in, at most two more grow the heap (a small
    # object may land after the freed block; seen twice in one CI run), and the last three
    # reuse pages already in the process
    assert out["1"][1][0] > 0.9 * pages
    assert sum(f > 0.05 * pages for f in out["1"][1][1:]) <= 2
    assert sum(out["1"][1][5:]) < 0.05 * pages


def test_aasist_engines_run_at_most_two_windows_a_call(reference_dir, golden, tmp_path):
    """AASIST's first encoder block holds 32 x 24 x 21,490 floats per window, so a batch of 8
    costs 8 times that in memory for no speed (measured in benchmarks/inference.py): both
    engines run a batch two windows at a time and still give the official logits."""
    from spoofscope.infer import make_engine

    m = spoofscope.load_model("aasist-l", weights=reference_dir / "official_AASIST-L.pth")
    order = [0, 1, 2, 3, 0]  # 5 windows: calls of 2, 2, 1
    x = np.stack([golden[f"input_{i}"][:64600] for i in order]).astype(np.float32)
    ref = np.stack([golden[f"AASIST-L_logits_{i}"] for i in order])
    onnx_engine = make_engine(m, "onnx", cache=tmp_path)
    seen = []
    run = onnx_engine.session.run
    onnx_engine.session = type(
        "Recorder",
        (),
        {"run": lambda self, out, feed: seen.append(len(feed["waveform"])) or run(out, feed)},
    )()
    torch_engine = make_engine(m, "torch")
    hook = m.encoder.register_forward_hook(lambda mod, a, out: seen.append(a[0].shape[0]))
    try:
        for engine in (onnx_engine, torch_engine):
            seen.clear()
            logits, emb = engine.embed(x)
            assert seen == [2, 2, 1], engine.name
            assert np.abs(logits - ref).max() < 1e-4, engine.name
            assert emb.shape == (5, m.embedding_dim)
            assert np.abs(engine(x) - logits).max() < 1e-5
    finally:
        hook.remove()


def test_export_leaves_the_model_in_eval_mode(tmp_path):
    from spoofscope.export import export_onnx

    m = spoofscope.create_model("lfcc-lcnn").eval()
    export_onnx(m, tmp_path / "m.onnx")
    assert not any(mod.training for mod in m.modules())


def test_detect_uses_the_window_of_the_model_card(tmp_path, capsys):
    """A checkpoint whose card says 24,000 samples (the demo recipe's crop) is scored with
    24,000-sample windows; --window-samples overrides."""
    import dataclasses

    from spoofscope.models import save_checkpoint

    torch.manual_seed(0)
    m = spoofscope.create_model("lfcc-lcnn")
    m.card = dataclasses.replace(m.card, window_samples=24000)
    save_checkpoint(m, tmp_path / "m.ckpt")
    sf.write(tmp_path / "a.wav", np.random.default_rng(0).standard_normal(80000) * 0.1, 16000)
    det = Detector.from_checkpoint(tmp_path / "m.ckpt")
    r = det(tmp_path / "a.wav")
    assert r.window_samples == 24000
    assert all(w["end_s"] - w["start_s"] == pytest.approx(1.5) for w in r.windows)
    # the last window ends at the end of the file; hop 2 s: starts 0, 2, 4 and 5 - 1.5 s
    assert [w["start_s"] for w in r.windows] == pytest.approx([0.0, 2.0, 3.5])
    args = ["detect", str(tmp_path / "a.wav"), "--model", str(tmp_path / "m.ckpt"), "--json"]
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["window_samples"] == 24000 and len(d["windows"]) == 3
    assert main(args + ["--window-samples", "32000"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["window_samples"] == 32000 and d["windows"][0]["end_s"] == pytest.approx(2.0)
    # a window shorter than the model's minimum is refused with the reason
    assert main(args + ["--window-samples", "100"]) == 2
    assert "shorter than the 2400 samples" in capsys.readouterr().err


def test_detector_policies_are_checked_and_detectors_not_mutated(tmp_path):
    with pytest.raises(ValueError, match="hop must be a positive"):
        WindowPolicy(hop_s=0)
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        Limits(batch_size=0)
    with pytest.raises(ValueError, match="threshold must be a finite"):
        Decision(threshold=float("nan"))
    d = Detector(EnergyModel())
    d2 = d.replace(limits=Limits(max_duration_s=1.0))
    assert d.limits.max_duration_s is None and d2.limits.max_duration_s == 1.0
    assert d2.engine is d.engine and d2.window_samples == d.window_samples == 64600
    sf.write(tmp_path / "long.wav", np.zeros(32000, np.float32) + 0.1, 16000)
    assert d(tmp_path / "long.wav").error is None
    assert d2(tmp_path / "long.wav").error_kind == "too_long"


def test_confidence_is_claimed_only_under_a_calibration_on_the_users_kind_of_data(tmp_path):
    """No calibration: the verdict stands but ``confident`` is null, with the reason; a
    calibration fitted on the training recipe's dev split (or one that does not say): null,
    naming what it was fitted on; a calibration on the user's own files: true/false by the
    band. Every result carries the card's notes (or what the model was trained on)."""
    import dataclasses

    rng = np.random.default_rng(1)
    b, s = rng.normal(1, 1, 500), rng.normal(-1, 1, 500)
    x = np.full(64600, 10 ** ((1.05 * -1) / 2), np.float32)  # score ~ -1.05: far from 0
    m = EnergyModel()
    m.card = dataclasses.replace(get_card("aasist"), name="energy", min_length=1)
    kw = dict(windows=WindowPolicy(kind="official"), decision=Decision(band=0.1))
    plain = Detector(m, **kw)(x)
    assert plain.label == "spoof" and plain.confident is None
    assert "not calibrated" in plain.confidence_note
    assert plain.notes == get_card("aasist").notes and "2019 LA" in plain.notes
    dev = Calibration.fit(b, s, fitted_on="LA dev (24844 trials)", domain="training")
    r = Detector(m, calibration=dev, **kw)(x)
    assert r.confident is None and "LA dev (24844 trials)" in r.confidence_note
    legacy = {k: v for k, v in Calibration.fit(b, s).to_dict().items() if k != "domain"}
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    r = Detector(m, calibration=tmp_path / "old.json", **kw)(x)
    assert r.confident is None and "does not say" in r.confidence_note
    mine = Calibration.fit(b, s, fitted_on="my_calls.csv", domain="deployment")
    r = Detector(m, calibration=mine, **kw)(x)
    p_thr = 1 / (1 + np.exp(-(mine.a * mine.threshold + mine.b)))
    assert r.confidence_note is None and r.confident == (abs(r.p_bonafide - p_thr) >= 0.1)
    assert r.confident is True  # p far from the threshold's
    m2 = EnergyModel()  # a model whose card has no notes: what it was trained on
    assert Detector(m2, **kw)(x).notes.startswith("trained on: ")


def test_onnx_threads_follow_omp_num_threads(monkeypatch):
    """ONNX Runtime takes OMP_NUM_THREADS as PyTorch does (Ray sets it to an actor's CPUs);
    an explicit thread count wins; without either, the cores (at most 8)."""
    import os

    from spoofscope.export.onnx import _options

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _options(None).intra_op_num_threads == 1
    assert _options(3).intra_op_num_threads == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert _options(None).intra_op_num_threads == min(os.cpu_count() or 1, 8)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert _options(None).intra_op_num_threads == min(os.cpu_count() or 1, 8)
