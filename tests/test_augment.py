import numpy as np
import pytest
import soundfile as sf

from spoofscope.augment import (
    AddNoise,
    BandLimit,
    Codec,
    RawBoost,
    Reverb,
    Speed,
    Tempo,
    a_law,
    build_augmentation,
    codec_roundtrip,
    list_transforms,
    mu_law,
    wsola,
)

SR = 16000


def _speech_like(n=SR * 2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x += 0.01 * rng.standard_normal(n)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def _band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


ALL = [RawBoost(algo=a) for a in range(1, 9)] + [
    AddNoise(),
    Reverb(),
    Speed(),
    Tempo(),
    BandLimit(),
    Codec(codecs=["mp3"]),
]


@pytest.mark.parametrize("t", ALL, ids=lambda t: f"{t.registry_name}")
def test_seeded_finite_and_length_preserving(t):
    x = _speech_like()
    a = t(x, np.random.default_rng(7))
    b = t(x, np.random.default_rng(7))
    c = t(x, np.random.default_rng(8))
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    # random transforms differ under another seed (bandlimit is deterministic; codec and speed
    # draw from a short list of settings and may draw the same one)
    if t.registry_name not in ("bandlimit", "codec", "speed"):
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_noise_reaches_the_drawn_snr(colour):
    x = _speech_like()
    t = AddNoise(snr_min=10, snr_max=10, colours=[colour])
    y = t(x, np.random.default_rng(0))
    noise = y.astype(np.float64) - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.05)


def test_noise_from_a_folder(tmp_path):
    (tmp_path / "musan").mkdir()
    sf.write(
        tmp_path / "musan" / "n.wav",
        (np.random.default_rng(1).standard_normal(8000) * 0.1).astype(np.float32),
        SR,
    )
    y = AddNoise(snr_min=0, snr_max=0, folder=str(tmp_path / "musan"))(
        _speech_like(), np.random.default_rng(0)
    )
    x = _speech_like()
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(0.0, abs=0.05)


def test_rawboost_lnl_of_one_order_is_the_filter_it_applies_to_an_impulse():
    """Algorithm 1 with one order (N_f = 1, 0 dB) is linear and time-invariant: the same
    draw applied to x equals x filtered by what it gives for an impulse (up to the final
    mean removal and peak normalisation, both done again here)."""
    n = SR
    imp = np.zeros(n)
    imp[0] = 1.0
    t = RawBoost(algo=1, n_f=1)
    h = t(imp.astype(np.float32), np.random.default_rng(11)).astype(np.float64)
    x = _speech_like(n)
    y = t(x, np.random.default_rng(11))
    ref = np.convolve(x.astype(np.float64), h)[:n]
    ref -= ref.mean()
    ref /= np.abs(ref).max()
    # h carries the impulse output's own mean removal: a constant of sum(taps) / n, ~0 for
    # band-pass filters
    np.testing.assert_allclose(y, ref, atol=2e-3)
    assert np.abs(y - x / np.abs(x).max()).max() > 0.1  # it does filter


@pytest.mark.parametrize(
    "algo, stages",
    [(4, (1, 2, 3)), (5, (1, 2)), (6, (1, 3)), (7, (2, 3))],
)
def test_rawboost_series_algorithms_chain_the_single_ones(algo, stages):
    """Algorithms 4-7 apply the single noises in series (the reference numbering), drawing
    from one generator in turn."""
    x = _speech_like()
    rng = np.random.default_rng(9)
    want = x
    for k in stages:
        want = RawBoost(algo=k)(want.astype(np.float32), rng)
    got = RawBoost(algo=algo)(x, np.random.default_rng(9))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_rawboost_parallel_algorithm_averages_lnl_and_isd():
    """Algorithm 8: LnL and ISD of the same input (one generator, in that order), summed and
    peak-normalised."""
    x = _speech_like()
    rng = np.random.default_rng(9)
    a = RawBoost(algo=1)(x, rng).astype(np.float64)
    b = RawBoost(algo=2)(x, rng).astype(np.float64)
    want = (a + b) / np.abs(a + b).max()
    got = RawBoost(algo=8)(x, np.random.default_rng(9))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_rawboost_ssi_snr_range_and_isd_touches_p_percent():
    x = _speech_like()
    y = RawBoost(algo=3, snr_min=20, snr_max=20)(x, np.random.default_rng(0))
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x) ** 2))
    assert snr == pytest.approx(20, abs=0.1)
    y2 = RawBoost(algo=2, p_percent=10)(x, np.random.default_rng(0))
    # ISD: 10 % of samples are changed, then the whole signal is peak-normalised, so the
    # unchanged samples share one common ratio y/x; count the others
    ratio = y2 / np.where(x == 0, 1, x)
    common = np.median(ratio)
    frac_changed = np.mean(np.abs(ratio - common) > 1e-4 * abs(common))
    assert 0.08 < frac_changed < 0.11


def test_companding_matches_formulas():
    x = np.linspace(-1, 1, 2001)
    mu = 255.0
    ref = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    ref = np.round(ref * 128) / 128
    ref = np.sign(ref) * ((1 + mu) ** np.abs(ref) - 1) / mu
    np.testing.assert_allclose(mu_law(x), ref, atol=1e-12)
    # G.711 A-law (A = 87.6): F(x) = A|x| / (1 + ln A) below 1/A, (1 + ln(A|x|)) / (1 + ln A)
    # above; 8 bits (128 steps a sign); expansion by the inverse of F
    A = 87.6
    c = 1 + np.log(A)
    ax = np.abs(x)
    f = np.empty_like(ax)
    lo = ax < 1 / A
    f[lo] = A * ax[lo] / c
    f[~lo] = (1 + np.log(A * ax[~lo])) / c
    fq = np.round(f * 128) / 128
    inv = np.where(fq < 1 / c, fq * c / A, np.exp(fq * c - 1) / A)
    np.testing.assert_allclose(a_law(x), np.sign(x) * inv, atol=1e-12)
    assert np.unique(np.round(a_law(x), 12)).size <= 2 * 128 + 1  # quantised: 8 bits


def test_bandlimit_removes_out_of_band_energy():
    x = np.random.default_rng(0).standard_normal(SR * 2).astype(np.float32) * 0.1
    y = BandLimit(300, 3400)(x, np.random.default_rng(0))
    assert _band_energy(y, 4500, 8000) < 1e-3 and _band_energy(y, 0, 150) < 1e-2


@pytest.mark.parametrize("codec", ["mp3", "opus", "aac"])
def test_codec_is_really_applied(codec):
    x = np.random.default_rng(0).standard_normal(SR * 2).astype(np.float32) * 0.1
    y = codec_roundtrip(x, codec, 16000)
    assert y.shape == x.shape
    # a low bit rate codec cannot keep white noise: the error is large but the signal is there
    err = np.mean((y - x) ** 2) / np.mean(x**2)
    assert 0.05 < err < 2.0
    # MP3 and AAC remove most of the top of the band at 16 kbit/s (Opus fills it with
    # shaped noise instead, which the error above already shows)
    if codec != "opus":
        assert _band_energy(y, 6000, 8000) < 0.5 * _band_energy(x, 6000, 8000)
    speech = _speech_like()
    ys = codec_roundtrip(speech, codec, 32000)
    assert np.corrcoef(ys, speech)[0, 1] > 0.9  # aligned and close on speech-like audio


def test_aac_round_trip_of_a_window_is_not_taken_for_a_cut_file():
    """A raw AAC stream declares a duration estimated from its bit rate (5.69 s for this
    4.04-s window at 16 kbit/s: speech after a silent start); the round trip must not run it
    through the truncation check of user files."""
    from spoofscope.data import demo

    rng = np.random.default_rng(1)
    x = demo.synth_utterance(demo._speaker(rng), rng, 4.1)[:64600].astype(np.float32)
    x[: int(rng.integers(0, 40000))] = 0
    y = codec_roundtrip(x, "aac", 16000)
    assert y.shape == x.shape and np.corrcoef(x, y)[0, 1] > 0.5


def test_speed_changes_length_and_pitch_and_tempo_keeps_pitch():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    y = Speed(factors=[1.25], keep_length=False)(x, np.random.default_rng(0))
    assert abs(len(y) - SR / 1.25) <= 2

    def peak_hz(z):
        s = np.abs(np.fft.rfft(z * np.hanning(z.size)))
        return np.fft.rfftfreq(z.size, 1 / SR)[np.argmax(s)]

    assert peak_hz(y) == pytest.approx(250, abs=3)
    z = wsola(x, 1.25)
    assert abs(len(z) - SR / 1.25) <= 2
    assert peak_hz(z) == pytest.approx(200, abs=3)
    # Tempo: the rate it draws (the same generator call as in the transform) shortens or
    # lengthens the signal by that rate, its pitch stays, and a 4 Hz amplitude modulation
    # becomes 4 * rate Hz: time itself is stretched
    am = (x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    rate = np.random.default_rng(5).uniform(0.8, 1.25)
    y = Tempo(min_rate=0.8, max_rate=1.25, keep_length=False)(am, np.random.default_rng(5))
    assert abs(len(y) - SR / rate) <= 2
    assert peak_hz(y) == pytest.approx(200, abs=3)
    env = np.abs(np.fft.rfft(np.abs(y) - np.abs(y).mean()))
    fe = np.fft.rfftfreq(y.size, 1 / SR)
    band = (fe > 1) & (fe < 20)
    assert fe[band][np.argmax(env[band])] == pytest.approx(4 * rate, abs=0.6)
    kept = Tempo(min_rate=0.8, max_rate=1.25)(am, np.random.default_rng(5))
    assert kept.shape == am.shape
    n = min(len(y), SR)
    np.testing.assert_array_equal(kept[:n], y[:n])


def test_reverb_with_rir_folder(tmp_path):
    (tmp_path / "rirs").mkdir()
    rir = np.zeros(4000, np.float32)
    rir[0], rir[1600] = 1.0, 0.5  # a direct path and one echo 100 ms later
    sf.write(tmp_path / "rirs" / "r.wav", rir, SR, subtype="FLOAT")
    x = np.zeros(SR, np.float32)
    x[1000] = 0.8
    y = Reverb(folder=str(tmp_path / "rirs"))(x, np.random.default_rng(0))
    assert np.argmax(y) == 1000 and y[2600] == pytest.approx(0.4, rel=1e-3)


def test_build_from_yaml_spec():
    aug = build_augmentation(
        [{"name": "rawboost", "p": 1.0, "algo": 3}, {"name": "noise", "p": 0.0}]
    )
    assert len(aug) == 2
    x = _speech_like()
    a = aug(x, np.random.default_rng(3))
    b = aug(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    # p = 1 always applies, p = 0 never: the output is RawBoost's alone, after the one draw
    # that decides each step
    rng = np.random.default_rng(3)
    rng.random()
    np.testing.assert_array_equal(a, RawBoost(algo=3)(x, rng))
    with pytest.raises(ValueError, match="unknown augmentation 'echo'"):
        build_augmentation([{"name": "echo"}])
    with pytest.raises(ValueError, match="rawboost"):
        build_augmentation([{"name": "rawboost", "colour": 3}])
    assert {
        "rawboost",
        "noise",
        "reverb",
        "speed",
        "tempo",
        "codec",
        "mulaw",
        "alaw",
        "bandlimit",
        "gain",
        "clip",
    } <= set(list_transforms())
