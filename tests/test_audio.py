import numpy as np
import pytest
import soundfile as sf
from _audio_utils import encode_pyav, tone

from spoofscope.audio import (
    OFFICIAL_NUM_SAMPLES,
    AudioError,
    load_audio,
    official_crop,
    random_crop,
)


def _corr_with_tone(x, sr=16000, freq=440.0):
    ref = tone(sr, len(x) / sr, freq)[: len(x)]
    best = 0.0
    for lag in range(0, 2000, 1):  # codecs add a priming delay
        a, b = x[lag:], ref[: len(x) - lag]
        n = min(len(a), len(b))
        c = np.dot(a[:n], b[:n]) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-12)
        best = max(best, c)
        if best > 0.99:
            break
    return best


@pytest.mark.parametrize(
    "ext,kw", [("wav", {}), ("flac", {}), ("ogg", {}), ("mp3", {"format": "MP3"})]
)
def test_soundfile_formats_round_trip(tmp_path, ext, kw):
    x = tone(16000, 1.0)
    p = tmp_path / f"a.{ext}"
    sf.write(p, x, 16000, **kw)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) < 1200
    if ext in ("wav", "flac"):
        np.testing.assert_allclose(y, x, atol=1e-4)
    else:
        assert _corr_with_tone(y) > 0.98


@pytest.mark.parametrize(
    "ext,fmt,codec,rate",
    [
        ("m4a", "mp4", "aac", None),
        ("opus", "ogg", "libopus", 48000),
        ("webm", "webm", "libopus", 48000),
    ],
)
def test_ffmpeg_formats(tmp_path, ext, fmt, codec, rate):
    sr = rate or 16000
    p = encode_pyav(tmp_path / f"a.{ext}", tone(sr, 1.0), sr, fmt, codec, rate)
    y = load_audio(p)
    assert y.dtype == np.float32
    assert abs(len(y) / 16000 - 1.0) < 0.1
    assert _corr_with_tone(y) > 0.98
    # bytes input gives the same samples
    np.testing.assert_array_equal(load_audio(p.read_bytes()), y)


def test_resample_and_downmix(tmp_path):
    sr = 44100
    x = tone(sr, 1.0, 1000.0, channels=2)
    p = tmp_path / "st.wav"
    sf.write(p, x, sr, subtype="FLOAT")
    y = load_audio(p)
    assert len(y) == 16000
    # the down-mix of channels scaled 1/2 and 2/2 is 0.75 * the tone: check amplitude and frequency
    ref = 0.75 * 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[200:-200], ref[200:-200], atol=2e-3)
    # band-limited: a 7.2 kHz tone at 44.1 kHz keeps its level (soxr HQ's pass band ends
    # near 91 % of the new Nyquist frequency: -0.01 dB here, and a 7.9 kHz tone is at -53 dB),
    # a 9 kHz tone is removed
    t = np.arange(sr) / sr
    sf.write(tmp_path / "pass.wav", (0.5 * np.sin(2 * np.pi * 7200 * t)).astype(np.float32), sr)
    rms = np.sqrt(np.mean(load_audio(tmp_path / "pass.wav")[500:-500].astype(np.float64) ** 2))
    assert 20 * np.log10(rms / (0.5 / np.sqrt(2))) == pytest.approx(0.0, abs=0.1)
    hi = tone(sr, 1.0, 9000.0)
    sf.write(tmp_path / "hi.wav", hi, sr, subtype="FLOAT")
    assert np.sqrt(np.mean(load_audio(tmp_path / "hi.wav")[500:-500] ** 2)) < 1e-3


def test_target_rate_argument(tmp_path):
    sf.write(tmp_path / "a.wav", tone(16000, 1.0), 16000)
    assert len(load_audio(tmp_path / "a.wav", target_sr=8000)) == 8000


def _err(src, **kw):
    with pytest.raises(AudioError) as e:
        load_audio(src, **kw)
    return str(e.value)


def test_errors_name_the_file_and_reason(tmp_path):
    assert "no such file" in _err(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "empty" in _err(tmp_path / "empty.wav")
    assert "empty" in _err(b"")
    rnd = tmp_path / "noise.wav"
    rnd.write_bytes(np.random.default_rng(0).bytes(4000))
    msg = _err(rnd)
    assert str(rnd) in msg and "not a recognised audio file" in msg
    # zero samples: a valid header, no frames
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    assert "zero audio samples" in _err(tmp_path / "zero.wav")
    # truncated FLAC and WAV
    sf.write(tmp_path / "a.flac", tone(16000, 2.0), 16000)
    b = (tmp_path / "a.flac").read_bytes()
    (tmp_path / "t.flac").write_bytes(b[: len(b) // 2])
    assert "truncated" in _err(tmp_path / "t.flac")
    sf.write(tmp_path / "a.wav", tone(16000, 2.0), 16000)
    b = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(b[: len(b) // 2])
    msg = _err(tmp_path / "t.wav")
    assert "truncated" in msg and "t.wav" in msg
    # NaN / Inf samples
    x = tone(16000, 0.5)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    assert "NaN or infinite" in _err(tmp_path / "nan.wav")
    # over the duration limit
    sf.write(tmp_path / "long.wav", tone(16000, 3.0), 16000)
    assert "over the limit of 2 s" in _err(tmp_path / "long.wav", max_duration_s=2)
    assert "a folder" in _err(tmp_path)
    assert "my upload" in _err(b"garbage!" * 10, name="my upload")


def test_official_crop_matches_the_official_rule():
    x = np.arange(10, dtype=np.float32)
    y = official_crop(x, 25)
    # independent: repeat x int(25/10)+1 = 3 times, keep the first 25
    np.testing.assert_array_equal(y, np.concatenate([x, x, x])[:25])
    long = np.arange(70000, dtype=np.float32)
    np.testing.assert_array_equal(official_crop(long), long[:OFFICIAL_NUM_SAMPLES])
    assert official_crop(np.ones(64600, np.float32)).shape == (64600,)


def test_random_crop_is_a_window_and_seeded():
    x = np.arange(100000, dtype=np.float32)
    a = random_crop(x, 64600, np.random.default_rng(1))
    b = random_crop(x, 64600, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a) == 1) and 0 <= a[0] <= 100000 - 64600
    short = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(random_crop(short, 12), official_crop(short, 12))


def test_error_kinds_are_set_where_raised(tmp_path):
    kinds = {}
    for name, src, kw in [
        ("missing", tmp_path / "nope.wav", {}),
        ("empty", b"", {}),
        ("invalid", b"garbage!" * 10, {}),
    ]:
        with pytest.raises(AudioError) as e:
            load_audio(src, **kw)
        kinds[name] = e.value.kind
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    sf.write(tmp_path / "long.wav", tone(16000, 3.0), 16000)
    for name, path, kw in [
        ("empty0", tmp_path / "zero.wav", {}),
        ("too_long", tmp_path / "long.wav", {"max_duration_s": 2}),
    ]:
        with pytest.raises(AudioError) as e:
            load_audio(path, **kw)
        kinds[name] = e.value.kind
    assert kinds == {
        "missing": "missing",
        "empty": "empty",
        "invalid": "invalid",
        "empty0": "empty",
        "too_long": "too_long",
    }
