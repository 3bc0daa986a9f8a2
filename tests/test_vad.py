"""The Silero VAD behind no_speech: Silero's own model run as its package runs it, and what
abstains (tones, noise, music) and what is judged (real speech, with music under it, with long
pauses)."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from spoofscope.audio import load_audio
from spoofscope.cli import main
from spoofscope.errors import ConfigError
from spoofscope.infer import Decision, Detector, WindowPolicy
from spoofscope.infer.activity import SileroMeter

pytest.importorskip("silero_vad")
SR = 16000


def _silero_reference(x: np.ndarray) -> np.ndarray:
    """Speech probability of each 512-sample chunk from Silero's streaming model
    (``silero_vad.onnx``, one call per chunk with the state and the 64 samples before it, as
    the package's ``OnnxWrapper`` feeds it) - another model file than the meter's."""
    from importlib.resources import files

    import onnxruntime as ort

    s = ort.InferenceSession(
        str(files("silero_vad") / "data" / "silero_vad.onnx"), providers=["CPUExecutionProvider"]
    )
    state, ctx, out = np.zeros((2, 1, 128), np.float32), np.zeros(64, np.float32), []
    for k in range(x.size // 512):
        ch = x[k * 512 : (k + 1) * 512].astype(np.float32)
        o, state = s.run(None, {"input": np.concatenate([ctx, ch])[None], "state": state,
                                "sr": np.array(16000, np.int64)})  # fmt: skip
        out.append(float(o[0, 0]))
        ctx = ch[-64:]
    return np.array(out)


@pytest.fixture(scope="module")
def speech(shared_dir):
    """Three real bona fide recordings of ../shared/realdev, one 16-kHz array."""
    rows = [r for r in csv.DictReader(open(shared_dir / "realdev" / "labels.csv"))
            if r["label"] == "bonafide"][:3]  # fmt: skip
    return np.concatenate([load_audio(shared_dir / "realdev" / r["path"]) for r in rows])


def _nonspeech(kind: str, seconds=6.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    if kind == "tone":
        x = 0.3 * np.sin(2 * np.pi * 220 * t)
    elif kind == "noise":
        x = 0.1 * rng.standard_normal(t.size)
    else:  # music: a chord of three notes with harmonics, pulsing twice a second
        x = sum(
            0.08 * np.sin(2 * np.pi * f * k * t) / k for f in (220, 277, 330) for k in range(1, 6)
        )
        x = x * (0.6 + 0.4 * np.sign(np.sin(2 * np.pi * 2 * t)))
    return x.astype(np.float32)


def test_meter_gives_silero_probabilities_in_any_chunking(speech):
    x = speech[: 20 * SR]
    want = _silero_reference(x)
    m = SileroMeter(SR)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, x.size), 40, replace=False))
    for _ in m.wrap(np.split(x, cuts)):
        pass
    np.testing.assert_allclose(m.probabilities, want, atol=1e-5)
    assert m.active_s == pytest.approx((want >= 0.5).sum() * 0.032)
    assert 0.5 < (want >= 0.5).mean()  # real speech is mostly speech to it


def _det(vad):
    import dataclasses

    import torch

    from spoofscope.models import get_card

    class Energy(torch.nn.Module):
        min_length, embedding_dim = 1, 1

        def forward(self, x):
            r = torch.log10(x.pow(2).mean(1, keepdim=True) + 1e-10)
            return torch.cat([-r, r], 1), r

    m = Energy()
    m.card = dataclasses.replace(get_card("aasist"), name="energy", min_length=1)
    return Detector(m, windows=WindowPolicy(hop_s=1.0), decision=Decision(vad=vad))


@pytest.mark.parametrize("kind", ["tone", "noise", "music"])
def test_tones_noise_and_music_at_speech_level_abstain(kind):
    x = _nonspeech(kind)
    r = _det("silero")(x)
    assert r.label == "no_speech" and r.score is None and "Silero" in r.reason
    assert _det("energy")(x).label in ("bonafide", "spoof")  # the energy meter judged them


def test_speech_is_judged_with_music_under_it_and_across_pauses(speech):
    x = speech[: 12 * SR]
    r = _det("silero")(x)
    assert r.label in ("bonafide", "spoof") and r.speech_s > 6
    music = _nonspeech("music", 12.0)
    mixed = x + music * (np.sqrt(np.mean(x**2) / np.mean(music**2)) / np.sqrt(10))  # -10 dB
    assert _det("silero")(mixed).label in ("bonafide", "spoof")
    gap = np.zeros(4 * SR, np.float32)
    paused = np.concatenate([x[: 4 * SR], gap, x[4 * SR : 8 * SR], gap, x[8 * SR :]])
    rp = _det("silero")(paused)
    assert rp.label in ("bonafide", "spoof")
    assert rp.speech_s == pytest.approx(r.speech_s, abs=0.2)  # the pauses add no speech
    silent = [t for t in rp.timeline if 4.5 <= t["start_s"] < 7.5]
    assert silent and all(t["score"] is None for t in silent)


def test_silero_is_the_default_and_the_choice_is_checked(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SPOOFSCOPE_VAD")
    assert Decision().vad == "silero"
    monkeypatch.setenv("SPOOFSCOPE_VAD", "bogus")
    with pytest.raises(ConfigError, match="SPOOFSCOPE_VAD"):
        Decision()
    monkeypatch.setenv("SPOOFSCOPE_VAD", "energy")
    with pytest.raises(ConfigError, match="vad"):
        Decision(vad="webrtc")
    wav = tmp_path / "music.wav"
    sf.write(wav, _nonspeech("music"), SR)
    ckpt = tmp_path / "m.ckpt"
    import torch

    import spoofscope
    from spoofscope.models import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(spoofscope.create_model("lfcc-lcnn"), ckpt)
    assert main(["detect", str(wav), "--model", str(ckpt), "--vad", "silero", "--json",
                 "--quiet"]) == 0  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert r["label"] == "no_speech" and "Silero" in r["reason"]
    assert os.environ["SPOOFSCOPE_VAD"] == "energy"
