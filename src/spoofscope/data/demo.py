"""An offline demo corpus in the exact ASVspoof 2019 LA layout, made in seconds.

Bona fide speech is synthesised by a source-filter model with natural variation (several
"speakers" with their own pitch, vocal-tract length, breathiness, jitter and shimmer; pitch
contours, moving formants, voiced and unvoiced segments, pauses), or taken from real recordings
given with ``speech_dir``. Spoofs are bona fide-like utterances passed through real vocoders:

===== =========================================================== ============
id    vocoder                                                     splits
===== =========================================================== ============
D01   Griffin-Lim phase reconstruction from an 80-band mel         train, dev
      magnitude spectrogram
D02   LPC analysis-resynthesis (order 18) with a pulse/noise       train, dev
      excitation driven by an autocorrelation pitch tracker
D03   16-channel vocoder: band envelopes modulating a pulse/noise  eval
      carrier
D04   harmonic-plus-noise resynthesis with regenerated phases      eval
===== =========================================================== ============

As in the real database, the eval attacks are never seen in train and dev. ``adapt/`` holds a
small labelled sample of D04 (``bonafide/`` and ``spoof/`` folders, other speakers, disjoint
from the eval trials) for the demo's adaptation step. The ASV score
files are synthetic (Gaussian target / non-target / spoof scores): the demo has no ASV system,
and they exist so that the min t-DCF code path runs end to end.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.linalg import solve_toeplitz
from scipy.signal import butter, lfilter, sosfilt

log = logging.getLogger(__name__)
SR = 16000

# F1-F3 (Hz) of a few vowels for an average adult vocal tract
VOWELS = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [300, 870, 2240],
        [530, 1840, 2480],
        [660, 1720, 2410],
        [570, 840, 2410],
        [440, 1020, 2240],
        [490, 1350, 1690],
    ]
)
BANDWIDTHS = np.array([80.0, 100.0, 140.0])

SPLITS = {  # split -> (bona fide utterances, spoofs per attack, attacks, speakers)
    "train": (40, 40, ("D01", "D02"), 4),
    "dev": (24, 24, ("D01", "D02"), 3),
    "eval": (200, 200, ("D03", "D04"), 8),
}
#: the labelled sample of an unseen attack that ``spoofscope demo`` adapts with (its own
#: speakers and utterances, disjoint from the eval trials): bona fide, spoofs, attack, speakers
ADAPT = (40, 40, "D04", 4)


# ---- bona fide: a source-filter voice ---------------------------------------------------
def _speaker(rng) -> dict:
    return {
        "f0": rng.uniform(95, 230),
        "vtl": rng.uniform(0.85, 1.18),  # formant scale (shorter tract -> higher formants)
        "breath": rng.uniform(0.02, 0.12),
        "jitter": rng.uniform(0.004, 0.015),
        "shimmer": rng.uniform(0.02, 0.06),
        "open_q": rng.uniform(0.45, 0.7),
    }


def _rosenberg(n_open: int, n_close: int) -> np.ndarray:
    t1 = np.arange(n_open) / max(n_open, 1)
    t2 = np.arange(n_close) / max(n_close, 1)
    return np.concatenate([0.5 * (1 - np.cos(np.pi * t1)), np.cos(0.5 * np.pi * t2)])


def _glottal_source(f0: np.ndarray, voiced: np.ndarray, spk: dict, rng) -> np.ndarray:
    """Pulse train following the f0 contour, with jitter, shimmer and aspiration noise."""
    n = f0.size
    src = np.zeros(n)
    t = 0
    while t < n:
        period = SR / f0[t] * (1 + spk["jitter"] * rng.standard_normal())
        p = max(int(period), 20)
        if voiced[t]:
            n_open = int(p * spk["open_q"])
            pulse = _rosenberg(n_open, max(int(p * 0.35), 2))
            pulse = np.diff(pulse, prepend=0.0)  # glottal flow derivative
            amp = 1 + spk["shimmer"] * rng.standard_normal()
            end = min(t + pulse.size, n)
            src[t:end] += amp * pulse[: end - t]
        t += p
    src /= np.max(np.abs(src)) + 1e-9
    noise = rng.standard_normal(n)
    return src * (1 - spk["breath"]) + spk["breath"] * noise * np.where(voiced, 0.3, 1.0)


def _resonator(freq: float, bw: float):
    r = np.exp(-np.pi * bw / SR)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / SR), r * r]
    return [1 - r], a


def _formant_filter(x: np.ndarray, tracks: np.ndarray, hop: int = 80) -> np.ndarray:
    """Cascade of time-varying resonators, block by block with carried filter state."""
    y = x.copy()
    for k in range(tracks.shape[1]):
        zi = np.zeros(2)
        out = np.empty_like(y)
        for start in range(0, y.size, hop):
            f = tracks[min(start // hop, tracks.shape[0] - 1), k]
            b, a = _resonator(f, BANDWIDTHS[k] * (1 + f / 4000))
            out[start : start + hop], zi = lfilter(b, a, y[start : start + hop], zi=zi)
        y = out
    return y


def synth_utterance(spk: dict, rng, seconds: float) -> np.ndarray:
    """One bona fide-like utterance (float32, peak about 0.5)."""
    n = int(seconds * SR)
    hop = 80
    frames = n // hop + 1
    # syllables: vowel targets with glides, voiced/unvoiced segments and pauses
    tracks = np.zeros((frames, 3))
    voiced = np.zeros(n, bool)
    env = np.zeros(n)
    t = int(rng.uniform(0.05, 0.15) * SR)
    while t < n - int(0.1 * SR):
        dur = int(rng.uniform(0.12, 0.3) * SR)
        v0, v1 = VOWELS[rng.integers(len(VOWELS))], VOWELS[rng.integers(len(VOWELS))]
        a, b = t // hop, min((t + dur) // hop, frames)
        w = np.linspace(0, 1, max(b - a, 1))[:, None]
        tracks[a:b] = (v0 * (1 - w) + v1 * w)[: b - a] * spk["vtl"]
        end = min(t + dur, n)
        if rng.random() < 0.25:  # an unvoiced (fricative) onset
            fr = min(int(rng.uniform(0.04, 0.09) * SR), end - t)
            env[t : t + fr] = 0.35 * np.hanning(2 * fr)[fr:] + 0.15
            t_v = t + fr
        else:
            t_v = t
        voiced[t_v:end] = True
        env[t_v:end] = np.hanning(2 * (end - t_v) + 2)[1 : end - t_v + 1] ** 0.5
        t = end + int(rng.uniform(0.0, 0.12) * SR) * (rng.random() < 0.4)
    # fill formant tracks in gaps with the last value (continuity)
    for i in range(1, frames):
        if not tracks[i].any():
            tracks[i] = tracks[i - 1] if tracks[i - 1].any() else VOWELS[0] * spk["vtl"]
    tracks = np.clip(tracks, 150, 7000)
    # pitch: declination, a phrase accent and slow random wander
    tt = np.arange(n) / SR
    wander = np.interp(tt, np.linspace(0, seconds, 12), rng.normal(0, 0.06, 12))
    f0 = spk["f0"] * (
        1.1
        - 0.2 * tt / seconds
        + wander
        + 0.12 * np.exp(-((tt - rng.uniform(0.2, 0.8) * seconds) ** 2) / 0.02)
    )
    src = _glottal_source(f0, voiced, spk, rng)
    # unvoiced segments excite a high-passed noise instead of the pulse train
    unv = (~voiced) & (env > 0)
    hp = butter(4, 2500, "highpass", fs=SR, output="sos")
    src[unv] = sosfilt(hp, rng.standard_normal(n))[unv] * 0.5
    y = _formant_filter(src * env, tracks)
    y = np.diff(y, prepend=0.0)  # lip radiation
    y += 0.0005 * rng.standard_normal(n)  # room / microphone noise floor
    return (0.5 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)


# ---- vocoders ----------------------------------------------------------------------------
def _stft(x, n_fft=512, hop=128):
    win = np.hanning(n_fft)
    xp = np.pad(x, (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop] * win
    return np.fft.rfft(frames, axis=1), win


def _istft(spec, win, n, hop=128):
    n_fft = win.size
    frames = np.fft.irfft(spec, n_fft, axis=1) * win
    out = np.zeros(n + n_fft)
    norm = np.zeros(n + n_fft)
    for i, fr in enumerate(frames):
        out[i * hop : i * hop + n_fft] += fr
        norm[i * hop : i * hop + n_fft] += win**2
    norm[norm < 1e-8] = 1
    return (out / norm)[n_fft // 2 : n_fft // 2 + n]


def _mel_matrix(n_mels=80, n_fft=512):
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(0, mel(SR / 2), n_mels + 2) / 2595) - 1)
    f = np.fft.rfftfreq(n_fft, 1 / SR)
    m = np.zeros((n_mels, f.size))
    for i in range(n_mels):
        lo, c, hi = edges[i : i + 3]
        m[i] = np.clip(np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)), 0, None)
    return m


def griffin_lim_vocoder(x, rng, iters: int = 30) -> np.ndarray:
    spec, win = _stft(x)
    mel = _mel_matrix()
    mag = np.linalg.pinv(mel) @ (mel @ np.abs(spec).T)  # through an 80-band mel spectrogram
    mag = np.maximum(mag.T, 0)
    phase = np.exp(2j * np.pi * rng.random(mag.shape))
    for _ in range(iters):
        y = _istft(mag * phase, win, x.size)
        s, _ = _stft(y)
        phase = np.exp(1j * np.angle(s))
    return _istft(mag * phase, win, x.size)


def _pitch_track(x, frame=640, hop=160, fmin=70, fmax=400):
    """Autocorrelation pitch per hop: f0 (Hz) or 0 when unvoiced."""
    f0 = []
    for s in range(0, max(x.size - frame, 1), hop):
        seg = x[s : s + frame] * np.hanning(min(frame, x.size - s))
        ac = np.correlate(seg, seg, "full")[seg.size - 1 :]
        lo, hi = SR // fmax, min(SR // fmin, ac.size - 1)
        if ac[0] <= 1e-6 or hi <= lo:
            f0.append(0.0)
            continue
        k = lo + int(np.argmax(ac[lo:hi]))
        f0.append(SR / k if ac[k] / ac[0] > 0.35 else 0.0)
    return np.array(f0), hop


def _excitation(x, rng):
    f0, hop = _pitch_track(x)
    n = x.size
    exc = np.zeros(n)
    t = 0
    while t < n:
        f = f0[min(t // hop, f0.size - 1)]
        if f > 0:
            exc[t] = 1.0
            t += int(SR / f)
        else:
            exc[t : t + hop] = 0.3 * rng.standard_normal(min(hop, n - t))
            t += hop
    return exc


def lpc_vocoder(x, rng, order: int = 18, frame: int = 400, hop: int = 200) -> np.ndarray:
    exc = _excitation(x, rng)
    win = np.hanning(frame)
    out = np.zeros(x.size + frame)
    norm = np.zeros(x.size + frame)
    for s in range(0, x.size - frame, hop):
        seg = x[s : s + frame] * win
        r = np.correlate(seg, seg, "full")[frame - 1 : frame + order]
        if r[0] <= 1e-8:
            continue
        a = solve_toeplitz(r[:order] + 1e-9 * r[0], r[1 : order + 1])
        g = np.sqrt(max(r[0] - a @ r[1 : order + 1], 1e-12))
        y = lfilter([g], np.concatenate([[1.0], -a]), exc[s : s + frame])
        out[s : s + frame] += y * win
        norm[s : s + frame] += win
    norm[norm < 1e-8] = 1
    return (out / norm)[: x.size]


def channel_vocoder(x, rng, n_bands: int = 16) -> np.ndarray:
    edges = np.geomspace(100, 7600, n_bands + 1)
    carrier = _excitation(x, rng) + 0.02 * rng.standard_normal(x.size)
    lp = butter(2, 50, "lowpass", fs=SR, output="sos")
    y = np.zeros(x.size)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        bp = butter(3, [lo, hi], "bandpass", fs=SR, output="sos")
        env = np.maximum(sosfilt(lp, np.abs(sosfilt(bp, x))), 0)
        band = sosfilt(bp, carrier)
        y += band / (np.sqrt(np.mean(band**2)) + 1e-9) * env
    return y


def harmonic_vocoder(x, rng, n_fft: int = 1024, hop: int = 160) -> np.ndarray:
    f0, _ = _pitch_track(x, hop=hop)
    spec, _ = _stft(x, n_fft, hop)
    mag = np.abs(spec)
    n = x.size
    t_frames = np.arange(mag.shape[0]) * hop
    f0_s = np.interp(np.arange(n), np.arange(f0.size) * hop, f0)
    y = np.zeros(n)
    phase0 = rng.uniform(0, 2 * np.pi, 40)
    inst = np.cumsum(2 * np.pi * f0_s / SR)
    for h in range(1, 41):
        fh = h * f0_s
        bins = np.clip((fh * n_fft / SR).astype(int), 0, mag.shape[1] - 1)
        fr = np.clip((np.arange(n) // hop), 0, mag.shape[0] - 1)
        amp = mag[fr, bins] * (fh < SR / 2 - 200) * (f0_s > 0)
        y += amp * np.cos(h * inst + phase0[h - 1])
    # noise part: the unvoiced regions' spectral shape on white noise
    noise = rng.standard_normal(n)
    ns, nwin = _stft(noise, n_fft, hop)
    unv = (np.interp(t_frames, np.arange(f0.size) * hop, f0) == 0)[:, None]
    y += _istft(ns / (np.abs(ns) + 1e-9) * mag * unv, nwin, n, hop)
    return y


VOCODERS = {
    "D01": griffin_lim_vocoder,
    "D02": lpc_vocoder,
    "D03": channel_vocoder,
    "D04": harmonic_vocoder,
}


# ---- the corpus --------------------------------------------------------------------------
def _real_speech(speech_dir) -> list[np.ndarray]:
    from ..audio import load_audio

    exts = {".wav", ".flac", ".ogg", ".mp3", ".m4a"}
    files = sorted(p for p in Path(speech_dir).rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no audio files under {speech_dir}")
    return [load_audio(p) for p in files]


def make_demo_corpus(out_dir, seed: int = 0, speech_dir=None, progress: bool = True) -> dict:
    """Write the demo corpus under ``out_dir/LA`` and return the trial counts per split."""
    from tqdm.auto import tqdm

    out = Path(out_dir) / "LA"
    proto_dir = out / "ASVspoof2019_LA_cm_protocols"
    asv_dir = out / "ASVspoof2019_LA_asv_scores"
    proto_dir.mkdir(parents=True, exist_ok=True)
    asv_dir.mkdir(parents=True, exist_ok=True)
    real = _real_speech(speech_dir) if speech_dir else None
    master = np.random.default_rng(seed)
    counts = {}
    total = sum(b + s * len(a) for b, s, a, _ in SPLITS.values()) + ADAPT[0] + ADAPT[1]
    bar = tqdm(total=total, desc="demo corpus", unit="utt", disable=not progress)
    spk_id = 0
    for split, (n_bona, n_spoof, attacks, n_spk) in SPLITS.items():
        letter = split[0].upper()
        flac = out / f"ASVspoof2019_LA_{split}" / "flac"
        flac.mkdir(parents=True, exist_ok=True)
        speakers = []
        for _ in range(n_spk):
            spk_id += 1
            speakers.append((f"LA_{9000 + spk_id:04d}", _speaker(master)))
        lines = []
        k = 0

        def utterance(rng, spk):
            if real is not None:
                x = real[int(rng.integers(len(real)))]
                n = int(rng.uniform(1.2, 2.2) * SR)
                start = int(rng.integers(0, max(x.size - n, 0) + 1))
                return x[start : start + n].astype(np.float32)
            return synth_utterance(spk, rng, rng.uniform(1.2, 2.2))

        jobs = [("-", i) for i in range(n_bona)] + [(a, i) for a in attacks for i in range(n_spoof)]
        for attack, i in jobs:
            k += 1
            name, spk = speakers[i % n_spk]
            utt = f"LA_{letter}_{k:07d}"
            rng = np.random.default_rng([seed, ord(letter), k])
            x = utterance(rng, spk)
            if attack != "-":
                y = VOCODERS[attack](x.astype(np.float64), rng)
                x = (0.5 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)
            sf.write(flac / f"{utt}.flac", x, SR, subtype="PCM_16")
            lines.append(f"{name} {utt} - {attack} {'bonafide' if attack == '-' else 'spoof'}")
            bar.update(1)
        # shuffle the protocol order, as in the real files
        order = np.random.default_rng([seed, 99, ord(letter)]).permutation(len(lines))
        suffix = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}[split]
        (proto_dir / f"ASVspoof2019.LA.cm.{suffix}.txt").write_text(
            "\n".join(lines[j] for j in order) + "\n"
        )
        counts[split] = {
            "bonafide": n_bona,
            "spoof": n_spoof * len(attacks),
            "attacks": list(attacks),
        }
        if split != "train":
            r = np.random.default_rng([seed, 7, ord(letter)])
            asv = [f"bonafide target {v:.5f}" for v in r.normal(3, 1, 200)]
            asv += [f"bonafide nontarget {v:.5f}" for v in r.normal(-2, 1, 600)]
            asv += [f"{a} spoof {v:.5f}" for a in attacks for v in r.normal(1, 1.2, 150)]
            (asv_dir / f"ASVspoof2019.LA.asv.{split}.gi.trl.scores.txt").write_text(
                "\n".join(asv) + "\n"
            )
    # the adaptation sample: OUT/adapt/bonafide/*.flac and OUT/adapt/spoof/*.flac
    n_bona, n_spoof, attack, n_spk = ADAPT
    speakers = [_speaker(master) for _ in range(n_spk)]
    for label, n in (("bonafide", n_bona), ("spoof", n_spoof)):
        d = Path(out_dir) / "adapt" / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            k = i + (0 if label == "bonafide" else n_bona)
            rng = np.random.default_rng([seed, ord("A"), k])
            x = utterance(rng, speakers[i % n_spk])
            if label == "spoof":
                y = VOCODERS[attack](x.astype(np.float64), rng)
                x = (0.5 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)
            sf.write(d / f"adapt_{k:04d}.flac", x, SR, subtype="PCM_16")
            bar.update(1)
    counts["adapt"] = {"bonafide": n_bona, "spoof": n_spoof, "attacks": [attack]}
    bar.close()
    (Path(out_dir) / "README.txt").write_text(
        "spoofscope demo corpus (synthetic; see spoofscope.data.demo). Bona fide: source-filter "
        "synthesis; spoofs: D01 Griffin-Lim, D02 LPC (train/dev), D03 channel vocoder, D04 "
        "harmonic-plus-noise (eval only). ASV scores are synthetic. adapt/: a labelled sample "
        "of D04 (bona fide and spoof folders) from other speakers, for spoofscope adapt.\n"
    )
    return counts


def make_partial_spoofs(
    trials, out_dir, attack: str = "D03", n: int = 24, controls: int = 8, seed: int = 0
) -> dict:
    """Partially spoofed recordings from the demo's eval trials (``Trial`` objects with their
    ``path``): a stretch of 1.5-3 s of an ``attack`` utterance spliced into a bona fide one at
    its quietest 20-ms frame in the middle 60 % (a pause), plus ``controls`` bona fide
    recordings left whole. Writes ``OUT/*.flac`` and the reference ``OUT/reference.rttm``.

    Returns ``{"paths", "spoof" {id: [(start_s, end_s)]}, "durations" {id: s}}``.
    """
    from ..audio import load_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bona = sorted((t for t in trials if t.label == 1), key=lambda t: t.utt_id)
    spoof = sorted((t for t in trials if t.attack == attack), key=lambda t: t.utt_id)
    if len(bona) < n + controls or len(spoof) < n:
        raise ValueError(f"need {n + controls} bona fide and {n} {attack} trials")
    picks = rng.permutation(len(bona))[: n + controls]
    paths, stretches, durations, lines = [], {}, {}, []
    for k, i in enumerate(picks):
        x = load_audio(bona[i].path)
        uid = f"partial_{k:03d}" if k < n else f"whole_{k - n:03d}"
        runs = []
        if k < n:
            s = np.zeros(0, np.float32)
            while s.size < int(1.5 * SR):  # an utterance that holds a 1.5-s stretch
                s = load_audio(spoof[int(rng.integers(len(spoof)))].path)
            length = min(int(rng.uniform(1.5, 3.0) * SR), s.size)
            off = int(rng.integers(0, s.size - length + 1))
            frame = SR // 50
            lo, hi = int(0.2 * x.size) // frame, int(0.8 * x.size) // frame
            rms = [np.mean(np.square(x[f * frame : (f + 1) * frame])) for f in range(lo, hi)]
            at = (lo + int(np.argmin(rms))) * frame + frame // 2
            x = np.concatenate([x[:at], s[off : off + length], x[at:]])
            runs = [(at / SR, (at + length) / SR)]
        p = out / f"{uid}.flac"
        sf.write(p, x, SR, subtype="PCM_16")
        paths.append(p)
        stretches[uid], durations[uid] = runs, x.size / SR
        edges = [0.0] + [v for r in runs for v in r] + [x.size / SR]
        for j, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            lab = "spoof" if j % 2 else "bonafide"
            lines.append(f"SPEAKER {uid} 1 {a:.3f} {b - a:.3f} <NA> <NA> {lab} <NA> <NA>\n")
    (out / "reference.rttm").write_text("".join(lines))
    return {"paths": paths, "spoof": stretches, "durations": durations}
