"""Where, on real partial fakes: localisation settings measured on genuine recordings with a
stretch of real spoofed speech spliced in.

    OMP_NUM_THREADS=1 python benchmarks/localisation_real.py \\
        --weights ../shared/reference/official_AASIST.pth [--realdev ../shared/realdev]
        [--cache /tmp/spoofscope-locreal] [--demo spoofscope-demo] [--frame-model NAME]

1. **File-level detection per system**: every realdev clip is scored once (the official 4-s
   crop) and each spoof system's EER against all bona fide clips is printed; the systems the
   model detects (EER at most ``--max-system-eer``, at least 3 clips) give the stretches.
2. **The development set** (seeded): genuine carriers (bona fide clips of at least 4 s, from
   the sources whose every bona fide clip the model scores above every clip of those systems:
   where detection works, localisation can be measured; ``--carriers all``: every source) with
   one or two 0.5-4 s stretches of those systems' speech inserted at pauses of the carrier
   (the carrier's quietest 20-ms frames in its middle 80 %, a 10-ms fade either side, the
   stretch scaled to the carrier's active-speech level), each stretch from another source
   (group) than its carrier; plus genuine clips left whole and whole clips of those systems.
   Written with ``reference.rttm`` under ``CACHE/set``.
3. **Window scores**, once per window length at its finest hop (cached in ``CACHE/scores``);
   coarser hops are read off the finest (every k-th window plus the end-aligned last one),
   so every setting is compared on the same scores. Timelines and segments are built by the
   package's own code (:mod:`spoofscope.infer.timeline`).
4. **The table**: per setting, the range-based EER of the timeline, the segment EER at 20,
   160 and 640 ms, the utterance EER, the segments' own false-alarm / miss rates, how many
   partially spoofed files get a spoof segment on their stretch, how many wholly spoofed files
   are split, and the cost as real-time factor (measured while scoring, one thread).
5. **Two other step scores** on 1-s windows, the default's hop, anchor and rules: the most
   bona fide covering window's score instead of their mean, and the anchored step lowered by
   lambda times its embedding outlierness (how far its windows' AASIST embeddings lie from
   the file's median embedding, relative to the file's median distance: a spliced stretch
   comes from another source).
6. **Leave half out**: the anchor's gain, the step rule (hop 0.25 or 0.5, a median filter)
   and the two step scores above, chosen on half of the files and their range EER on the
   other half (the set is development data: the defaults were tuned on it); and how much the
   range EER moves when the files are resampled.

``--demo DIR`` adds the same metrics on the demo's partial set (``DIR/partial``, the demo's
model ``DIR/final.ckpt``). ``--frame-model`` runs the frame-level path (an AntiDeepfake model
with random weights: the code path only, its accuracy is not measured here).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

SR = 16000
FRAME = SR // 50  # 20 ms


# ---- 1. the set ---------------------------------------------------------------------------
def _active_rms(x: np.ndarray) -> float:
    """RMS over the 20-ms frames within 40 dB of the loudest (the speech, not the pauses)."""
    n = x.size // FRAME
    e = np.mean(np.square(x[: n * FRAME].reshape(n, FRAME), dtype=np.float64), axis=1)
    act = e > e.max() * 1e-4
    return float(np.sqrt(e[act].mean())) if act.any() else 0.0


def _pauses(x: np.ndarray, k: int, rng) -> list[int]:
    """``k`` insertion points (samples) at the quietest 20-ms frames of the middle 80 %, at
    least 1 s apart."""
    n = x.size // FRAME
    e = np.mean(np.square(x[: n * FRAME].reshape(n, FRAME), dtype=np.float64), axis=1)
    lo, hi = int(0.1 * n), int(0.9 * n)
    order = lo + np.argsort(e[lo:hi] + 1e-12 * rng.random(hi - lo), kind="stable")
    picks: list[int] = []
    for f in order:
        if all(abs(int(f) - p) >= 50 for p in picks):
            picks.append(int(f))
        if len(picks) == k:
            break
    return sorted(p * FRAME + FRAME // 2 for p in picks)


def _fade(s: np.ndarray, n: int = 160) -> np.ndarray:
    s = s.copy()
    ramp = np.linspace(0, 1, min(n, s.size // 2), dtype=np.float32)
    s[: ramp.size] *= ramp
    s[s.size - ramp.size :] *= ramp[::-1]
    return s


def splice(carrier: np.ndarray, stretches: list[np.ndarray], rng) -> tuple[np.ndarray, list]:
    """``stretches`` inserted into ``carrier`` at its pauses, each scaled to the carrier's
    active level with a 10-ms fade; returns the new signal and the stretches' (start_s, end_s)."""
    level = _active_rms(carrier)
    at = _pauses(carrier, len(stretches), rng)
    out, runs, prev, shift = [], [], 0, 0
    for a, s in zip(at, stretches, strict=True):
        s = _fade(s * (level / max(_active_rms(s), 1e-9))).astype(np.float32)
        out += [carrier[prev:a], s]
        runs.append(((a + shift) / SR, (a + shift + s.size) / SR))
        shift += s.size
        prev = a
    out.append(carrier[prev:])
    return np.concatenate(out), runs


def build_set(
    rows,
    root: Path,
    systems: set,
    groups: set,
    out: Path,
    seed=0,
    n_partial=24,
    n_bona=6,
    n_spoof=8,
):
    """The development set (see the module docstring) -> ``{"files" [{id, path, kind,
    carrier, stretches [{from, system, offset_s (in its clip), start_s, end_s}]}], "spoof"
    {id: [(a, b)]},
    "durations" {id: s}}``; writes ``out/*.flac``, ``out/reference.rttm``, ``out/set.json``."""
    from spoofscope.audio import load_audio

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bona = [r for r in rows if r["label"] == "bonafide"]
    spoof = [r for r in rows if r["label"] == "spoof" and r["system"] in systems]
    audio = {}

    def get(r):
        if r["path"] not in audio:
            audio[r["path"]] = load_audio(root / r["path"], SR)
        return audio[r["path"]]

    carriers = [r for r in bona if r["group"] in groups and get(r).size >= 4 * SR]
    order = rng.permutation(len(carriers))
    files, lines = [], []
    for k in range(n_partial + n_bona):
        c = carriers[order[k % len(order)]]
        x = get(c)
        uid = f"partial_{k:03d}" if k < n_partial else f"genuine_{k - n_partial:03d}"
        info = {"id": uid, "kind": "partial" if k < n_partial else "genuine", "carrier": c["path"]}
        runs, used = [], []
        if k < n_partial:
            n = 1 + int(rng.random() < 0.4)
            picks, cuts, offs = [], [], []
            while len(picks) < n:
                s = spoof[int(rng.integers(len(spoof)))]
                if s["group"] == c["group"]:
                    continue
                y = get(s)
                length = min(int(rng.uniform(0.5, 4.0) * SR), y.size)
                off = int(rng.integers(0, y.size - length + 1))
                picks.append(s)
                cuts.append(y[off : off + length])
                offs.append(off / SR)
            x, runs = splice(x, cuts, rng)
            used = [
                {"from": s["path"], "system": s["system"], "offset_s": o, "start_s": a, "end_s": b}
                for s, o, (a, b) in zip(picks, offs, runs, strict=True)
            ]
        info["stretches"] = used
        files.append((uid, x, runs, info))
    wholes = rng.permutation(len(spoof))[:n_spoof]
    for j, i in enumerate(wholes):
        x = get(spoof[i])
        uid = f"spoof_{j:03d}"
        info = {"id": uid, "kind": "spoof", "carrier": spoof[i]["path"], "stretches": []}
        files.append((uid, x, [(0.0, x.size / SR)], info))
    spoof_runs, durations, meta = {}, {}, []
    for uid, x, runs, info in files:
        p = out / f"{uid}.flac"
        sf.write(p, x, SR, subtype="PCM_16")
        d = x.size / SR
        spoof_runs[uid], durations[uid] = runs, d
        info["path"], info["duration_s"] = str(p), d
        meta.append(info)
        edges = [0.0] + [v for r in runs for v in r] + [d]
        for j, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            if b - a > 1e-9:
                lab = "spoof" if j % 2 else "bonafide"
                lines.append(f"SPEAKER {uid} 1 {a:.3f} {b - a:.3f} <NA> <NA> {lab} <NA> <NA>\n")
    (out / "reference.rttm").write_text("".join(lines))
    ds = {"files": meta, "spoof": spoof_runs, "durations": durations}
    (out / "set.json").write_text(json.dumps(ds, indent=1))
    return ds


# ---- 2. scores ----------------------------------------------------------------------------
def score_files(det, paths) -> tuple[dict, float]:
    """Every window of every file (start, end, score, diff), the activity mask and the
    duration, as the detector judges them; and the wall time."""
    from spoofscope.infer import detector as D

    got = {}
    orig = D.Detector._where

    def keep(self, res, st, *args):
        got[Path(str(st.source)).stem] = {
            "windows": [
                (s, e, st.scores.get(k), st.diffs.get(k)) for k, (s, e, _) in enumerate(st.windows)
            ],
            "mask": st.meter.mask.copy(),
            "frame_s": st.meter.frame / self.sample_rate,
            "n": st.n_samples,
            "frames": {k: v for k, v in st.frames.items()},
        }
        return orig(self, res, st, *args)

    D.Detector._where = keep
    try:
        t0 = time.perf_counter()
        res = det.detect_many([str(p) for p in paths])
        wall = time.perf_counter() - t0
    finally:
        D.Detector._where = orig
    for r in res:
        assert r.error is None, r.error
    return got, wall


def file_level(det, rows, root: Path, cache: Path) -> dict:
    """Each realdev clip's score under the official 4-s crop (cached): ``{path: score}``."""
    f = cache / "file_level.json"
    if f.is_file():
        return json.loads(f.read_text())
    from spoofscope.infer import WindowPolicy

    d = det.replace(windows=WindowPolicy(kind="official"))
    res = d.detect_many([str(root / r["path"]) for r in rows])
    out = {r["path"]: g.score for r, g in zip(rows, res, strict=True)}
    f.write_text(json.dumps(out))
    return out


def carrier_groups(rows, scores, systems) -> set:
    """Sources whose every bona fide clip scores above every clip of ``systems`` at the file
    level (where the model tells the two apart, localisation can be measured)."""
    top = max(scores[r["path"]] for r in rows if r["system"] in systems)
    out = set()
    for g in {r["group"] for r in rows}:
        b = [scores[r["path"]] for r in rows if r["group"] == g and r["label"] == "bonafide"]
        if b and all(v is not None and v > top for v in b):
            out.add(g)
    return out


def system_eers(rows, scores) -> list[tuple[str, float, int]]:
    """(system, EER against every bona fide clip, clips) for each spoof system."""
    from spoofscope.metrics import compute_eer

    bona = np.array([scores[r["path"]] for r in rows if r["label"] == "bonafide"], float)
    bona = bona[np.isfinite(bona)]
    out = []
    for s in sorted({r["system"] for r in rows if r["label"] == "spoof"}):
        sp = [scores[r["path"]] for r in rows if r["system"] == s]
        sp = np.array([v for v in sp if v is not None], float)
        if sp.size:
            out.append((s, float(compute_eer(bona, sp)[0]), int(sp.size)))
    return out


def cached_scores(det, paths, samples: int, hop: float, cache: Path, tag: str = "") -> dict:
    """Window scores of every file at one window length and hop (cached in ``cache``; ``tag``
    names another model's scores)."""
    import pickle

    from spoofscope.infer import Detector, WindowPolicy

    f = cache / f"scores_{tag}{samples}_{hop:g}.pkl"
    if f.is_file():
        return pickle.loads(f.read_bytes())
    d = Detector(
        det.engine.at_length(samples),
        windows=WindowPolicy(samples=samples, hop_s=hop),
        decision=det.decision,
        name=det.name,
    )
    got, wall = score_files(d, paths)
    audio = sum(v["n"] for v in got.values()) / SR
    out = {"files": got, "wall_s": wall, "audio_s": audio}
    f.write_bytes(pickle.dumps(out))
    print(f"scored {samples}-sample windows every {hop:g} s: {wall:.0f} s for {audio:.0f} s")
    return out


def cached_embeddings(det, ds: dict, scores: dict, cache: Path) -> dict:
    """The AASIST embedding of every judged 1-s window of ``scores`` (the same windows, the
    same pass that gives their logits: ``engine.embed``), cached in ``cache``:
    ``{file id: {window index: (D,) embedding}}``; the logits are checked against the cached
    scores."""
    import pickle

    from spoofscope.audio import load_audio

    f = cache / "embeddings_16000_0.125.pkl"
    if f.is_file():
        return pickle.loads(f.read_bytes())
    eng, bona = det.engine.at_length(16000), det.card.bonafide_index
    out, t0 = {}, time.perf_counter()
    for info in ds["files"]:
        u, x = info["id"], load_audio(info["path"], SR)
        ws = scores["files"][u]["windows"]
        ks = [k for k, w in enumerate(ws) if w[2] is not None]
        lg, emb = eng.embed(np.stack([x[ws[k][0] : ws[k][1]] for k in ks]))
        worst = np.max(np.abs(lg[:, bona] - np.array([ws[k][2] for k in ks])))
        assert worst < 1e-3, f"{u}: embedding pass scores differ from the cache by {worst}"
        out[u] = {k: e for k, e in zip(ks, emb, strict=True)}
    f.write_bytes(pickle.dumps(out))
    print(f"embedded the 1-s windows every 0.125 s: {time.perf_counter() - t0:.0f} s")
    return out


def cached_tiled(det, ds: dict, scores: dict, card: int, cache: Path) -> dict:
    """The 1-s windows of ``scores`` every 0.25 s, each tiled to the card's ``card`` samples
    (as the official code pads an utterance shorter than its input) and judged at that length;
    cached in ``cache``, in the form of :func:`cached_scores` (hop 0.25). The untiled logits of
    the first file's windows are checked against the cached scores (the same convention)."""
    import pickle

    from spoofscope.audio import load_audio

    f = cache / "scores_tiled16000_0.25.pkl"
    if f.is_file():
        return pickle.loads(f.read_bytes())
    eng, bona = det.engine.at_length(card), det.card.bonafide_index
    out, t0 = {}, time.perf_counter()
    for i, info in enumerate(ds["files"]):
        u, x = info["id"], load_audio(info["path"], SR)
        wins = _thin(scores["files"][u]["windows"], 0.125, 0.25)
        ks = [k for k, w in enumerate(wins) if w[2] is not None]
        if i == 0:  # (score, diff) as the cache has them: the bona fide logit and the margin
            lg = det.engine.at_length(16000)(np.stack([x[wins[k][0] : wins[k][1]] for k in ks]))
            want = np.array([wins[k][2:] for k in ks])
            got = np.stack([lg[:, bona], lg[:, bona] - lg[:, 1 - bona]], axis=1)
            assert np.abs(got - want).max() < 1e-3, "the cached scores' convention differs"
        res = {}
        for j in range(0, len(ks), 16):
            part = ks[j : j + 16]
            lg = eng(np.stack([np.resize(x[wins[k][0] : wins[k][1]], card) for k in part]))
            for k, v in zip(part, lg, strict=True):
                res[k] = (float(v[bona]), float(v[bona] - v[1 - bona]))
        out[u] = {
            **scores["files"][u],
            "windows": [(a, b, *res.get(k, (None, None))) for k, (a, b, _, _) in enumerate(wins)],
        }
    wall = time.perf_counter() - t0
    got = {"files": out, "wall_s": wall, "audio_s": scores["audio_s"]}
    f.write_bytes(pickle.dumps(got))
    print(f"scored the 1-s windows every 0.25 s tiled to {card} samples: {wall:.0f} s")
    return got


def other_scores(det, ds: dict, windows: dict, cache: Path) -> dict:
    """Two other sources of 1-s window scores every 0.25 s, each beside its own 4-s verdict
    windows every 0.5 s, as ``{name: (scores, grids)}``: ``tiled`` (:func:`cached_tiled`) and
    ``aasist-l``, the official AASIST-L (the weights inside the package)."""
    from spoofscope.infer import Detector

    card = max(windows)
    light = Detector.load("aasist-l", threads=1)
    paths = [f["path"] for f in ds["files"]]
    grids = {16000: 0.25, card: 0.5}
    return {
        "tiled": ({16000: cached_tiled(det, ds, windows[16000], card, cache),
                   card: windows[card]}, grids),
        "aasist-l": ({n: cached_scores(light, paths, n, h, cache, tag="aasist-l")
                      for n, h in grids.items()}, grids),
    }  # fmt: skip


# ---- 3. settings --------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def _thin(wins, hop_fine: float, hop: float):
    """The windows of a coarser hop: every k-th start of the finest, plus the last window."""
    k = max(1, int(round(hop / hop_fine)))
    keep = [w for i, w in enumerate(wins[:-1]) if i % k == 0] + wins[-1:]
    return keep


def steps_of(f: dict, hop_fine: float, hop: float, step: float) -> list[dict]:
    """The timeline of one file from its cached windows, by the package's build_timeline."""
    from spoofscope.infer.timeline import build_timeline

    wins = [
        (s / SR, e / SR, sc, None if sc is None else float(_sigmoid(d)))
        for s, e, sc, d in _thin(f["windows"], hop_fine, hop)
    ]
    return build_timeline(wins, f["n"] / SR, step, f["mask"], f["frame_s"])


def most_bona_fide(steps: list[dict], f: dict, hop_fine: float, hop: float) -> list[dict]:
    """Each judged step's score and p from its most bona fide covering window instead of their
    mean (an erosion of spoof: if a window scored spoof wherever any of it is, a genuine step
    next to a stretch would have one covering window free of it, and a spoofed step none)."""
    w = [
        (s / SR, e / SR, sc, d)
        for s, e, sc, d in _thin(f["windows"], hop_fine, hop)
        if sc is not None
    ]
    ws, we = np.array([x[0] for x in w]), np.array([x[1] for x in w])
    sc, lg = np.array([x[2] for x in w]), np.array([x[3] for x in w])
    out = []
    for t in steps:
        cover = (ws < t["end_s"]) & (we > t["start_s"])
        if t["score"] is None or not cover.any():
            out.append(t)
            continue
        i = np.flatnonzero(cover)[np.argmax(sc[cover])]
        out.append({**t, "score": float(sc[i]), "p": float(_sigmoid(lg[i]))})
    return out


def outlierness(steps: list[dict], f: dict, emb: dict, hop_fine: float, hop: float) -> list:
    """Each judged step's embedding outlierness: the distance of each judged window's AASIST
    embedding from the file's centre (the coordinate-wise median of its windows'), over the
    file's median distance, less 1, at least 0 (only farther than the file's typical window
    counts); a step's is the mean over its covering windows (None where the step is null)."""
    wins = _thin(list(enumerate(f["windows"])), hop_fine, hop)
    keep = [(k, w) for k, w in wins if w[2] is not None]
    x = np.stack([emb[k] for k, _ in keep])
    d = np.linalg.norm(x - np.median(x, axis=0), axis=1)
    z = np.maximum(d / np.median(d) - 1, 0.0)
    ws = np.array([w[0] / SR for _, w in keep])
    we = np.array([w[1] / SR for _, w in keep])
    return [
        None if t["score"] is None
        else float(z[(ws < t["end_s"]) & (we > t["start_s"])].mean())
        for t in steps
    ]  # fmt: skip


def less_outliers(steps: list[dict], out: list, lam: float) -> list[dict]:
    """Each judged step's score and log-odds lowered by ``lam`` times its outlierness."""
    res = []
    for t, o in zip(steps, out, strict=True):
        if o is None:
            res.append(t)
            continue
        p = min(max(t["p"], 1e-9), 1 - 1e-9)
        lg = np.log(p / (1 - p)) - lam * o
        res.append({**t, "score": t["score"] - lam * o, "p": float(_sigmoid(lg))})
    return res


def combine(parts: list[list[dict]]) -> list[dict]:
    """Timelines of several window lengths on the same grid: the mean score and p per step."""
    out = []
    for sts in zip(*parts, strict=True):
        sc = [t["score"] for t in sts if t["score"] is not None]
        ps = [t["p"] for t in sts if t["p"] is not None]
        out.append({
            "start_s": sts[0]["start_s"], "end_s": sts[0]["end_s"],
            "score": float(np.mean(sc)) if sc else None, "p": float(np.mean(ps)) if ps else None,
        })  # fmt: skip
    return out


def metrics(ds: dict, timelines: dict, segments: dict) -> dict:
    from spoofscope.metrics import range_eer, segment_eer, utterance_eer
    from spoofscope.metrics.localisation import _pieces

    ref, durs = ds["spoof"], ds["durations"]
    hyp = {u: [(t["start_s"], t["end_s"], t["score"]) for t in tl] for u, tl in timelines.items()}
    seg = {
        u: [(g["start_s"], g["end_s"], -1.0 if g["label"] == "spoof" else 1.0) for g in gs
            if g["label"] != "no_speech"]
        for u, gs in segments.items()
    }  # fmt: skip
    kinds = {f["id"]: f["kind"] for f in ds["files"]}
    found = split = false_alarm = 0
    for u, gs in segments.items():
        sp = [(g["start_s"], g["end_s"]) for g in gs if g["label"] == "spoof"]
        bo = [g for g in gs if g["label"] == "bonafide"]
        if kinds[u] == "partial":
            found += any(min(b, e) > max(a, s) for a, b in sp for s, e in ref[u])
        elif kinds[u] == "spoof":
            split += bool(sp and bo) or not sp
        else:
            false_alarm += bool(sp)
    fa = miss = bona_s = spoof_s = 0.0
    for u in durs:  # the segments' own decisions: spoof called where a segment says so
        d, s, y = _pieces(ref.get(u, []), durs[u], seg.get(u, []))
        called = s < 0
        fa, miss = fa + d[called & ~y].sum(), miss + d[~called & y].sum()
        bona_s, spoof_s = bona_s + d[~y].sum(), spoof_s + d[y].sum()
    return {
        "range": 100 * range_eer(ref, durs, hyp)["eer"],
        **{f"seg{int(r * 1000)}": 100 * segment_eer(ref, durs, hyp, r)["eer"]
           for r in (0.02, 0.16, 0.64)},
        "utt": 100 * utterance_eer(ref, durs, hyp)["eer"],
        "seg_fa": 100 * fa / bona_s, "seg_miss": 100 * miss / spoof_s,
        "found": found, "split": split, "genuine_fa": false_alarm,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="the official AASIST weights")
    ap.add_argument(
        "--realdev", default=str(Path(__file__).resolve().parents[2] / "shared/realdev")
    )
    ap.add_argument("--cache", default="/tmp/spoofscope-locreal")
    ap.add_argument("--max-system-eer", type=float, default=0.10)
    ap.add_argument(
        "--carriers",
        choices=("detected", "all"),
        default="detected",
        help="genuine carriers from the sources the model separates from the stretches' "
        "systems at the file level (default), or from every source",
    )
    ap.add_argument("--demo", default="", help="a spoofscope demo folder (its partial set)")
    ap.add_argument("--frame-model", default="", help="e.g. antideepfake-w2v-small")
    ap.add_argument(
        "--check",
        type=int,
        default=5,
        help="run the package's default (Detector, WindowPolicy().localising()) on every "
        "N-th file and compare its timeline with the table's row (0: skip)",
    )
    a = ap.parse_args()
    import torch

    from spoofscope.infer import Detector

    torch.set_num_threads(1)
    cache = Path(a.cache)
    (cache / "set").mkdir(parents=True, exist_ok=True)
    root = Path(a.realdev)
    rows = list(csv.DictReader(open(root / "labels.csv")))
    det = Detector.load("aasist", weights=a.weights, threads=1)
    print(f"Machine: {cpu_name()}, 1 thread; torch {torch.__version__}; official AASIST, "
          f"engine {det.engine.name}, Silero VAD\n")  # fmt: skip
    scores = file_level(det, rows, root, cache)
    eers = system_eers(rows, scores)
    chosen = {s for s, e, n in eers if e <= a.max_system_eer and n >= 3}
    print("File-level EER (official 4-s crop) of the systems the stretches come from, against")
    print(f"all {sum(r['label'] == 'bonafide' for r in rows)} bona fide realdev clips:\n")
    print("| system | clips | file-level EER % |\n|---|---:|---:|")
    for s, e, n in eers:
        if s in chosen:
            print(f"| {s} | {n} | {100 * e:.1f} |")
    groups = carrier_groups(rows, scores, chosen) if a.carriers == "detected" else None
    groups = groups or {r["group"] for r in rows}
    print(f"\nCarriers: bona fide clips of at least 4 s from {', '.join(sorted(groups))}")
    ds = build_set(rows, root, chosen, groups, cache / "set")
    kinds = [f["kind"] for f in ds["files"]]
    print(
        f"\nSet: {kinds.count('partial')} genuine recordings with 1-2 spliced stretches, "
        f"{kinds.count('genuine')} whole genuine, {kinds.count('spoof')} whole spoof; "
        f"{sum(ds['durations'].values()):.0f} s, of it "
        f"{sum(b - a for v in ds['spoof'].values() for a, b in v):.0f} s spoof\n"
    )
    paths = [f["path"] for f in ds["files"]]
    grids = {64600: 0.5, 32000: 0.25, 24000: 0.125, 20000: 0.125, 16000: 0.125, 12000: 0.125,
             8000: 0.125}  # fmt: skip
    windows = {n: cached_scores(det, paths, n, h, cache) for n, h in grids.items()}
    windows[16000]["emb"] = cached_embeddings(det, ds, windows[16000], cache)
    others = other_scores(det, ds, windows, cache)
    study(ds, windows, grids, others)
    failures(ds, windows, grids)
    halves(ds, windows, grids)
    spread(ds, windows, grids)
    if a.check:
        check(det, ds, windows, grids, a.check)
    stream_delay(det, ds)
    if a.demo:
        demo(Path(a.demo))
    if a.frame_model:
        frame_level(ds, a.frame_model)


def stream_delay(det, ds) -> None:
    """Live streams (the service's hop of 1 s) with and without the localisation windows:
    the set's files one after another as one stream in 100-ms pieces; how long after a
    segment's end (in seconds of stream audio) its event comes, and the compute per second
    of audio."""
    from spoofscope.audio import load_audio
    from spoofscope.infer import WindowPolicy

    x = np.concatenate([load_audio(f["path"], SR) for f in ds["files"][::3]])
    print(f"\nA {x.size / SR:.0f}-s stream (every third file of the set), 100-ms pieces:\n")
    print("| stream setting | segment events | delay after the segment's end (s of audio): "
          "median / max | compute RTF |\n|---|---:|---|---:|")  # fmt: skip
    import spoofscope.infer.timeline as T

    least = T.MIN_SEGMENT_S
    for name, w, m in (
        ("old: 4-s windows every 1 s", WindowPolicy(hop_s=1.0), least),
        ("new: + 1-s windows every 0.25 s, anchored", WindowPolicy(hop_s=1.0).localising(),
         least),
        ("new, minimum segment 1 s", WindowPolicy(hop_s=1.0).localising(), 1.0),
    ):  # fmt: skip
        s = det.replace(windows=w).stream()
        delays, fed = [], 0
        T.MIN_SEGMENT_S = m
        try:
            t0 = time.perf_counter()
            for piece in np.array_split(x, x.size // 1600):
                fed += piece.size
                for e in s.feed(piece):
                    if e["type"] == "segment":
                        delays.append(fed / SR - e["end_s"])
            wall = time.perf_counter() - t0
            s.close()
        finally:
            T.MIN_SEGMENT_S = least
        print(
            f"| {name} | {len(delays)} + "
            f"{sum(e['type'] == 'segment' for e in s.last_events)} at close | "
            f"{np.median(delays):.2f} / {np.max(delays):.2f} | {wall / (x.size / SR):.3f} |",
            flush=True,
        )


def check(det, ds, windows, grids, every: int) -> None:
    """The package's default on some files against the table's emulation of it."""
    from spoofscope.infer import WindowPolicy

    files = ds["files"][::every]
    d = det.replace(windows=WindowPolicy().localising())
    res = d.detect_many([f["path"] for f in files])
    worst = 0.0
    for f, r in zip(files, res, strict=True):
        u, n = f["id"], d.where[0]
        st = relative(
            steps_of(windows[n]["files"][u], grids[n], d.windows.where_hop_s, d.step_s),
            "anchor",
            verdict(windows[max(grids)]["files"][u]),
        )
        for a, b in zip(st, r.timeline, strict=True):
            assert (a["score"] is None) == (b["score"] is None)
            if a["score"] is not None:
                worst = max(worst, abs(a["score"] - b["score"]))
    print(
        f"\nThe package's default (Detector with WindowPolicy().localising()) on {len(files)} "
        f"of the files: timeline scores within {worst:.1e} of the table's row"
    )


def demo(folder: Path) -> None:
    """The demo's partial set (``spoofscope demo``: D03 stretches in its synthetic bona fide
    eval recordings) judged by the demo's model, under the old and the new default."""
    from spoofscope.infer import Decision, Detector, WindowPolicy
    from spoofscope.metrics.localisation import read_rttm, spoof_stretches

    part = folder / "partial"
    paths = sorted(part.glob("*.flac"))
    ref = spoof_stretches(read_rttm(part / "reference.rttm"))
    ds = {
        "spoof": {p.stem: ref.get(p.stem, []) for p in paths},
        "durations": {p.stem: sf.info(p).duration for p in paths},
        "files": [
            {"id": p.stem, "kind": "partial" if ref.get(p.stem) else "genuine"} for p in paths
        ],
    }
    print(f"\nThe demo's partial set ({folder}): {len(paths)} files, its trained model:\n")
    print(
        "| setting | range EER % | seg EER 20 ms | 160 ms | 640 ms | utt EER % "
        "| segments FA % / miss % | stretches found | genuine with spoof |\n"
        "|---|---:|---:|---:|---:|---:|---|---:|---:|"
    )
    import spoofscope.infer.timeline as T

    energy = Decision(vad="energy")
    gain, least = T.ANCHOR_GAIN, T.MIN_SEGMENT_S
    for name, w, g, m in (
        ("old default (hop 0.5)", WindowPolicy(hop_s=0.5), gain, least),
        ("1-s windows every 0.25 s, anchor gain 1", WindowPolicy().localising(), 1.0, least),
        ("the default", WindowPolicy().localising(), gain, least),
        ("the default, min 1 s", WindowPolicy().localising(), gain, 1.0),
    ):
        det = Detector.load(folder / "final.ckpt", windows=w, decision=energy, threads=1)
        T.ANCHOR_GAIN, T.MIN_SEGMENT_S = g, m
        try:
            res = det.detect_many([str(p) for p in paths])
        finally:
            T.ANCHOR_GAIN, T.MIN_SEGMENT_S = gain, least
        m = metrics(
            ds,
            {Path(r.path).stem: r.timeline for r in res},
            {Path(r.path).stem: r.segments for r in res},
        )
        n_p = sum(f["kind"] == "partial" for f in ds["files"])
        print(
            f"| {name} | {m['range']:.1f} | {m['seg20']:.1f} | {m['seg160']:.1f} | "
            f"{m['seg640']:.1f} | {m['utt']:.1f} | {m['seg_fa']:.0f} / {m['seg_miss']:.0f} | "
            f"{m['found']}/{n_p} | {m['genuine_fa']}/{len(paths) - n_p} |"
        )


#: a tiny wav2vec 2.0 encoder: the frame-level code path only (random weights)
TINY_ENCODER = dict(
    model_type="wav2vec2", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, conv_dim=[16] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2], num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2, hidden_act="gelu", feat_extract_activation="gelu",
    layer_norm_eps=1e-5, feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False,
)  # fmt: skip


def frame_level(ds: dict, name: str) -> None:
    """The frame-scoring path (one step per 20-ms encoder frame) on the same set, through
    ``Detector`` as ``detect --segments`` runs it: a tiny random-weight model of ``name``'s
    architecture, so the figures say the code runs, not how well such a model localises."""
    import torch

    import spoofscope
    from spoofscope.infer import Detector, TorchEngine, WindowPolicy

    torch.manual_seed(0)
    m = spoofscope.create_model(name, encoder_config=TINY_ENCODER).eval()
    det = Detector(TorchEngine(m, 1), windows=WindowPolicy().localising())
    t0 = time.perf_counter()
    res = det.detect_many([f["path"] for f in ds["files"]])
    wall = time.perf_counter() - t0
    tls = {Path(r.path).stem: r.timeline for r in res}
    segs = {Path(r.path).stem: r.segments for r in res}
    mt = metrics(ds, tls, segs)
    step = res[0].timeline[1]["end_s"] - res[0].timeline[1]["start_s"]
    print(
        f"\n{name} architecture, tiny encoder, random weights (the frame-level code path; "
        f"accuracy not measured): {step * 1000:.0f}-ms steps, range EER {mt['range']:.1f} %, "
        f"segment EER at 20 ms {mt['seg20']:.1f} %, RTF {wall / sum(ds['durations'].values()):.3f}"
    )


def verdict(f: dict) -> tuple[float, float]:
    """Plain detection's typical window on a file (the card's windows every 2 s: the median
    score and the softmax of the median logit difference) from its cached 4-s windows."""
    w = [x for x in _thin(f["windows"], 0.5, 2.0) if x[2] is not None]
    return float(np.median([x[2] for x in w])), float(_sigmoid(np.median([x[3] for x in w])))


def relative(steps: list[dict], how: str | None, file_verdict) -> list[dict]:
    """None: the steps as they are; ``anchor``: the package's rule (the file's typical step
    moved to its typical verdict window, each step's distance from it times ``ANCHOR_GAIN``,
    spoof ``ANCHOR_DROP`` below it in log-odds); ``anchor D G``: the same with a drop of D
    and a gain of G; ``median``: the typical step moved to score 0 and p 0.5 (relative only:
    a file spoofed throughout looks like a genuine one)."""
    from spoofscope.infer.timeline import ANCHOR_DROP, ANCHOR_GAIN, anchor

    if how is None:
        return steps
    if how == "median":
        return anchor(steps, 0.0, 0.5, drop=0.0, gain=1.0)
    _, drop, gain = (how.split() + [ANCHOR_DROP, ANCHOR_GAIN][len(how.split()) - 1 :])[:3]
    return anchor(steps, *file_verdict, drop=float(drop), gain=float(gain))


def median_filter(steps: list[dict], k: int) -> list[dict]:
    """Each judged step's score and p replaced by the median over ``k`` steps centred on it,
    within its run of judged steps (a null step ends a run; the run's ends repeat)."""
    out, run = [dict(t) for t in steps], []
    for i in range(len(steps) + 1):
        if i < len(steps) and steps[i]["score"] is not None:
            run.append(i)
            continue
        for key in ("score", "p") if run else ():
            v = np.pad([steps[j][key] for j in run], k // 2, mode="edge")
            med = np.median(np.lib.stride_tricks.sliding_window_view(v, k), axis=1)
            for j, m in zip(run, med, strict=True):
                out[j][key] = float(m)
        run = []
    return out


def timelines(
    ds, scores, grids, lengths, hop, how, step=None, smooth=0, agg="mean", outlier=0.0
) -> dict:
    """Every file's timeline under one setting: the steps of each window length (their mean
    where there are several; ``agg`` "max": the most bona fide covering window's,
    :func:`most_bona_fide`), ``smooth``: a median filter over that many steps, then read as
    ``how`` says (:func:`relative`); ``outlier``: then lowered by that many times the steps'
    embedding outlierness (:func:`outlierness`; 1-s windows only)."""
    step = step or min(0.5, hop)
    card, tls = max(grids), {}
    for u in ds["durations"]:
        parts = []
        for n in lengths:
            f = scores[n]["files"][u]
            st = steps_of(f, grids[n], hop, step)
            parts.append(most_bona_fide(st, f, grids[n], hop) if agg == "max" else st)
        st = combine(parts) if len(parts) > 1 else parts[0]
        st = median_filter(st, smooth) if smooth else st
        st = relative(st, how, verdict(scores[card]["files"][u]))
        if outlier:
            f = scores[16000]["files"][u]
            out = outlierness(st, f, scores[16000]["emb"][u], grids[16000], hop)
            st = less_outliers(st, out, outlier)
        tls[u] = st
    return tls


def evaluate(ds, scores, grids, lengths, hop, how, hyst, min_s=None, step=None, smooth=0, **kw):
    """The metrics of one setting (:func:`timelines`; ``kw``: its ``agg`` and ``outlier``)
    and its segments; ``min_s`` None: the package's minimum segment duration."""
    tls = timelines(ds, scores, grids, lengths, hop, how, step, smooth, **kw)
    return judge(ds, tls, scores[lengths[0]], hyst, min_s)


def judge(ds, tls: dict, scores: dict, hyst: float, min_s=None) -> dict:
    """The metrics of timelines ``tls`` and of their segments (the activity masks of
    ``scores``, one window length's)."""
    from spoofscope.infer.timeline import build_segments

    segs = {}
    for u, st in tls.items():
        f = scores["files"][u]
        segs[u] = build_segments(st, f["mask"], 0.5, hyst, min_s, frame_s=f["frame_s"])
    return metrics(ds, tls, segs)


def cost(scores, grids, lengths, hop) -> float:
    """Seconds of computing per second of audio: the windows a setting judges, each at the
    time per window measured for its length while scoring."""
    card, total = max(grids), 0.0
    for n in lengths:
        s = scores[n]
        n_fine = sum(len(f["windows"]) for f in s["files"].values())
        n_set = sum(len(_thin(f["windows"], grids[n], hop)) for f in s["files"].values())
        total += s["wall_s"] / n_fine * n_set
    if lengths != [card]:  # the verdict's windows (the card's, every 2 s) are judged too
        total += cost(scores, grids, [card], 2.0) * scores[card]["audio_s"]
    return total / scores[lengths[0]]["audio_s"]


def study(ds, scores, grids, others: dict) -> None:
    from spoofscope.infer.timeline import MIN_SEGMENT_S

    card = max(grids)
    plain = cost(scores, grids, [card], 2.0)
    m0 = MIN_SEGMENT_S
    rows: list = [  # (name, lengths, hop, relative, hysteresis, min duration, median filter)
        ("old default: 4-s windows, hop 0.5", [card], 0.5, None, 0.1, m0, 0),
        ("4-s, hop 2 (plain detect)", [card], 2.0, None, 0.1, m0, 0),
        ("4-s, hop 0.5, anchored", [card], 0.5, "anchor", 0.1, m0, 0),
    ]  # fmt: skip
    for n, lens in (("2-s", [32000]), ("1.5-s", [24000]), ("1.25-s", [20000]), ("1-s", [16000]),
                    ("0.75-s", [12000]), ("0.5-s", [8000]),
                    ("0.5+1-s", [8000, 16000]), ("1+2-s", [16000, 32000]),
                    ("1+2+4-s", [16000, 32000, card])):  # fmt: skip
        for hop in (0.5, 0.25, 0.125):
            if hop < min(grids[k] for k in lens) or (hop < 0.25 and max(lens) > 16000):
                continue
            for how in (None, "median", "anchor 3 1", "anchor"):
                name = f"{n}, hop {hop:g}" + (f", {how}" if how else "")
                rows.append((name, lens, hop, how, 0.1, m0, 0))
    # on 1-s windows every 0.25 s: the anchor's gain and drop, the hysteresis band, the
    # minimum duration, a median filter over the steps
    for how, hyst, min_s, k in (("anchor 3 1.5", 0.1, m0, 0), ("anchor 3 2.5", 0.1, m0, 0),
                                ("anchor 3 3", 0.1, m0, 0), ("anchor 2 2", 0.1, m0, 0),
                                ("anchor 4 2", 0.1, m0, 0), ("anchor", 0.0, m0, 0),
                                ("anchor", 0.2, m0, 0), ("anchor", 0.1, 0.25, 0),
                                ("anchor", 0.1, 1.0, 0), ("anchor", 0.1, 2.0, 0),
                                ("anchor", 0.1, m0, 3), ("anchor", 0.1, m0, 5)):  # fmt: skip
        name = f"1-s, hop 0.25, {how}, band {hyst:g}, min {min_s:g} s"
        rows.append((name + (f", median of {k} steps" if k else ""), [16000], 0.25, how, hyst,
                     min_s, k))  # fmt: skip
    # two other ways of forming a step's score from its 1-s windows (the default's hop, anchor
    # and rules): the most bona fide covering window's, and less the embedding outlierness
    rows.append(("1-s, hop 0.25, anchor, the step's most bona fide window", [16000], 0.25,
                 "anchor", 0.1, m0, 0, {"agg": "max"}))  # fmt: skip
    for lam in (0.5, 1, 2, 4):
        rows.append((f"1-s, hop 0.25, anchor, less {lam:g} x embedding outlierness", [16000],
                     0.25, "anchor", 0.1, m0, 0, {"outlier": lam}))  # fmt: skip
    print("| setting | range EER % | seg EER 20 ms | 160 ms | 640 ms | utt EER % "
          "| segments FA % / miss % | stretches found | spoof files split | genuine with spoof "
          "| cost (x plain) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    n_p = sum(f["kind"] == "partial" for f in ds["files"])
    n_s = sum(f["kind"] == "spoof" for f in ds["files"])
    n_g = sum(f["kind"] == "genuine" for f in ds["files"])

    def row(name, m, c):
        print(
            f"| {name} | {m['range']:.1f} | {m['seg20']:.1f} | {m['seg160']:.1f} | "
            f"{m['seg640']:.1f} | {m['utt']:.1f} | {m['seg_fa']:.0f} / {m['seg_miss']:.0f} | "
            f"{m['found']}/{n_p} | {m['split']}/{n_s} | {m['genuine_fa']}/{n_g} | "
            f"{c / plain:.1f}x (RTF {c:.3f}) |",
            flush=True,
        )

    for name, lens, hop, how, hyst, min_s, k, *kw in rows:
        m = evaluate(ds, scores, grids, lens, hop, how, hyst, min_s, smooth=k, **(kw or [{}])[0])
        row(name, m, cost(scores, grids, lens, hop))
    # other window scores (1-s windows every 0.25 s): tiled to 4 s, and the official AASIST-L,
    # alone and averaged step by step with AASIST's (each anchored on its own verdict windows)
    for name, src in (("1-s tiled to 4 s", "tiled"), ("AASIST-L: 1-s", "aasist-l")):
        sc, gr = others[src]
        for how in (None, "anchor"):
            m = evaluate(ds, sc, gr, [16000], 0.25, how, 0.1)
            row(f"{name}, hop 0.25" + (f", {how}" if how else ""), m, cost(sc, gr, [16000], 0.25))
    both = timelines(ds, scores, grids, [16000], 0.25, "anchor")
    light = timelines(ds, *others["aasist-l"], [16000], 0.25, "anchor")
    tls = {u: combine([both[u], light[u]]) for u in both}
    c = cost(scores, grids, [16000], 0.25) + cost(*others["aasist-l"], [16000], 0.25)
    row("AASIST and AASIST-L: 1-s, hop 0.25, each anchored, their mean", judge(
        ds, tls, scores[16000], 0.1), c)  # fmt: skip


def failures(ds, scores, grids, near_s: float = 0.5) -> None:
    """Where the default's errors lie, at its range-EER threshold (:func:`where_wrong`): the
    seconds of bona fide called spoof and of spoof not called spoof, split by file (whether
    the 1-s windows rank the stretch below the carrier) and by the distance to an edge."""
    from spoofscope.metrics import range_eer

    tls = timelines(ds, scores, grids, [16000], 0.25, "anchor")
    raw = timelines(ds, scores, grids, [16000], 0.25, None)
    hyp = {u: [(t["start_s"], t["end_s"], t["score"]) for t in st] for u, st in tls.items()}
    thr = range_eer(ds["spoof"], ds["durations"], hyp)["threshold"]
    rows, total = where_wrong(ds, hyp, raw, thr, near_s)
    err = sum(r[2] + r[3] for r in rows)
    low = [r for r in rows if r[1] is not None and r[1] < 0.65]
    part = [r for r in rows if r[1] is not None]
    print(f"\nWhere the default's errors lie (1-s, hop 0.25, anchor; at its range-EER threshold "
          f"{thr:.2f}: {err:.1f} s wrong of {sum(ds['durations'].values()):.0f} s):\n")  # fmt: skip
    print("| files | files | bona fide called spoof (s) | spoof not called spoof (s) | "
          "share of the errors |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for name, rs in (
        ("partial, stretch ranked below its carrier (step AUC >= 0.65)",
         [r for r in part if r[1] >= 0.65]),
        ("partial, stretch not ranked below its carrier (AUC < 0.65)", low),
        ("whole genuine and whole spoof", [r for r in rows if r[1] is None]),
    ):  # fmt: skip
        fa, ms = sum(r[2] for r in rs), sum(r[3] for r in rs)
        print(f"| {name} | {len(rs)} | {fa:.1f} | {ms:.1f} | {(fa + ms) / err:.0%} |")
    print(f"\nAUC < 0.65: {', '.join(f'{r[0]} ({r[1]:.2f})' for r in low)}; median AUC of the "
          f"{len(part)} partial files {np.median([r[1] for r in part]):.2f}. Errors within "
          f"{near_s:g} s of a stretch's edge: {total['near']:.1f} s "
          f"({total['near'] / err:.0%}), farther: {total['far']:.1f} s.")  # fmt: skip


def where_wrong(ds, hyp: dict, raw: dict, thr: float, near_s: float = 0.5):
    """The errors of timelines ``hyp`` (``{id: [(start_s, end_s, score or None)]}``) at
    threshold ``thr``, counted as :func:`spoofscope.metrics.range_eer` counts them (a piece
    scored at or below ``thr`` is called spoof; a piece nothing judged never is, so unjudged
    spoof is missed): ``[(id, AUC or None, bona fide called spoof (s), spoof not called spoof
    (s))]`` per file, and ``{"near", "far"}``, the error seconds within ``near_s`` of a
    stretch's edge and farther. The AUC (partial files only) is the probability that a step of
    ``raw[id]`` (step dicts) inside a stretch scores below one outside (ties count half)."""
    from spoofscope.metrics.localisation import _pieces

    rows, total = [], {"near": 0.0, "far": 0.0}
    for f in ds["files"]:
        u, ref = f["id"], ds["spoof"][f["id"]]
        # the file cut as range_eer cuts it; the pieces run from 0 without gaps
        d, sc, y = _pieces(ref, ds["durations"][u], hyp[u])
        mid = np.cumsum(d) - d / 2
        called = sc <= thr
        wrong = np.where(y, ~called, called)
        edges = np.array([v for r in ref for v in r if 0 < v < ds["durations"][u]])
        near = (
            np.min(np.abs(mid[:, None] - edges[None, :]), axis=1) <= near_s
            if edges.size
            else np.zeros(mid.size, bool)
        )
        total["near"] += d[wrong & near].sum()
        total["far"] += d[wrong & ~near].sum()
        if f["kind"] != "partial":
            rows.append((u, None, d[wrong & ~y].sum(), d[wrong & y].sum()))
            continue
        st = [(t["start_s"], t["end_s"], t["score"]) for t in raw[u] if t["score"] is not None]
        m = np.array([(a + b) / 2 for a, b, _ in st])
        v = np.array([x for _, _, x in st])
        sp = np.array([any(a < c < b for a, b in ref) for c in m])
        lo, hi = v[sp][:, None], v[~sp][None, :]
        auc = np.mean((lo < hi) + 0.5 * (lo == hi))
        rows.append((u, float(auc), d[wrong & ~y].sum(), d[wrong & y].sum()))
    return rows, total


def subset(ds: dict, ids: list) -> dict:
    return {
        "files": [f for f in ds["files"] if f["id"] in ids],
        "spoof": {u: ds["spoof"][u] for u in ids},
        "durations": {u: ds["durations"][u] for u in ids},
    }


def _range(ds, tls) -> float:
    from spoofscope.metrics import range_eer

    hyp = {u: [(t["start_s"], t["end_s"], t["score"]) for t in tls[u]] for u in ds["durations"]}
    return 100 * range_eer(ds["spoof"], ds["durations"], hyp)["eer"]


#: the families of settings the leave-half-out check chooses among (1-s windows; keyword
#: arguments of :func:`timelines`), the default first
FAMILIES = {
    "the anchor's gain among 1, 1.5, 2, 2.5, 3": [
        (f"gain {g:g}", {"hop": 0.25, "how": f"anchor 3 {g:g}"}) for g in (2, 1, 1.5, 2.5, 3)
    ],
    "the step rule among hop 0.25, a median of 3 or 5 steps, hop 0.5": [
        ("hop 0.25", {"hop": 0.25, "how": "anchor"}),
        ("median of 3", {"hop": 0.25, "how": "anchor", "smooth": 3}),
        ("median of 5", {"hop": 0.25, "how": "anchor", "smooth": 5}),
        ("hop 0.5", {"hop": 0.5, "how": "anchor"}),
    ],
    "the step's score: the mean of its windows' or the most bona fide window's": [
        ("mean", {"hop": 0.25, "how": "anchor"}),
        ("most bona fide", {"hop": 0.25, "how": "anchor", "agg": "max"}),
    ],
    "less lambda x embedding outlierness, lambda among 0, 0.5, 1, 2, 4": [
        (f"lambda {g:g}", {"hop": 0.25, "how": "anchor", "outlier": g}) for g in (0, 0.5, 1, 2, 4)
    ],
}


def halves(ds, scores, grids, repeats=10) -> None:
    """Over-fitting check: for each family of settings, the one with the lowest range EER on
    half of the files (stratified by kind, seeded; ties to the default) and its range EER on
    the other half, both ways round, beside the default's there and each setting's paired
    difference from it. The held-out half never sees the choice."""
    rng = np.random.default_rng(0)
    splits = []
    for _ in range(repeats):
        a, b = [], []
        for kind in ("partial", "genuine", "spoof"):
            ids = [f["id"] for f in ds["files"] if f["kind"] == kind]
            rng.shuffle(ids)
            a, b = a + ids[: len(ids) // 2], b + ids[len(ids) // 2 :]
        splits += [(a, b), (b, a)]
    print(f"\nLeave half out (1-s windows; {repeats} seeded splits of the files in halves, "
          "stratified by kind, each half in turn choosing and the other judging; "
          "range EER %):\n")  # fmt: skip
    print("| chosen on one half: | chosen (times) | its range EER on the other half | default's "
          "| each setting minus the default there: mean (sd) |\n|---|---|---|---|---|")  # fmt: skip
    for family, cands in FAMILIES.items():
        full = {name: timelines(ds, scores, grids, [16000], **kw) for name, kw in cands}
        got = []  # per split: the chosen name, then every setting's held-out range EER
        for tune, test in splits:
            t, h = subset(ds, tune), subset(ds, test)
            on_t = {n: _range(t, full[n]) for n, _ in cands}
            best = min(on_t, key=lambda n: (round(on_t[n], 9), [c[0] for c in cands].index(n)))
            got.append((best, {n: _range(h, full[n]) for n, _ in cands}))
        chosen = np.array([g[1][g[0]] for g in got])
        base = np.array([g[1][cands[0][0]] for g in got])
        diffs = ", ".join(
            f"{n} {np.mean(d):+.1f} ({np.std(d):.1f})"
            for n, _ in cands[1:]
            for d in [np.array([g[1][n] for g in got]) - base]
        )
        counts = ", ".join(f"{n} {sum(g[0] == n for g in got)}" for n, _ in cands)
        print(f"| {family} | {counts} | {chosen.mean():.1f} (sd {chosen.std():.1f}) | "
              f"{cands[0][0]}: {base.mean():.1f} (sd {base.std():.1f}) | {diffs} |")  # fmt: skip


def spread(ds, scores, grids, repeats=200) -> None:
    """How much the range EER moves with the files drawn: the files resampled with
    replacement within each kind (seeded): the old default's, the default's and the two other
    step scores' (the outlierness at the lambda best on the whole set), and each one's ratio
    to the old default's on the same draw."""
    rng = np.random.default_rng(0)
    kinds = {}
    for f in ds["files"]:
        kinds.setdefault(f["kind"], []).append(f["id"])
    rows = (
        ("old default (4-s, hop 0.5)", [max(grids)], 0.5, None, {}),
        ("the default (1-s, hop 0.25, anchor)", [16000], 0.25, "anchor", {}),
        ("the step's most bona fide window", [16000], 0.25, "anchor", {"agg": "max"}),
        ("less 0.5 x embedding outlierness", [16000], 0.25, "anchor", {"outlier": 0.5}),
    )
    full = {
        name: timelines(ds, scores, grids, lens, hop, how, **kw)
        for name, lens, hop, how, kw in rows
    }
    got = {name: [] for name in full}
    for _ in range(repeats):
        pick = [u for ids in kinds.values() for u in rng.choice(ids, len(ids))]
        b = {
            "spoof": {f"{u}#{i}": ds["spoof"][u] for i, u in enumerate(pick)},
            "durations": {f"{u}#{i}": ds["durations"][u] for i, u in enumerate(pick)},
        }
        for name, tls in full.items():
            got[name].append(_range(b, {f"{u}#{i}": tls[u] for i, u in enumerate(pick)}))
    print(f"\nHow much the range EER moves with the files ({repeats} resamples of the set's "
          "files with replacement within each kind, seeded):\n")  # fmt: skip
    print("| | mean | sd | 5-95 % |\n|---|---:|---:|---|")
    for name, v in got.items():
        v = np.array(v)
        print(f"| {name}: range EER % | {v.mean():.1f} | {v.std():.1f} | "
              f"{np.percentile(v, 5):.1f}-{np.percentile(v, 95):.1f} |")  # fmt: skip
    old = np.array(got[rows[0][0]])
    for name, *_ in rows[1:]:
        r = np.array(got[name]) / old
        print(f"| {name} over the old default, same draw (at most 0.5 in "
              f"{np.mean(r <= 0.5):.0%} of the draws) | {r.mean():.2f} | {r.std():.2f} | "
              f"{np.percentile(r, 5):.2f}-{np.percentile(r, 95):.2f} |")  # fmt: skip


if __name__ == "__main__":
    run_benchmark(main, "localisation_real")
