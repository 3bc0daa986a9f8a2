"""Time and peak memory of `spoofscope adapt`, and what adaptation does to unseen vocoders.

    python benchmarks/adapt.py [--clips 200] [--model aasist] [--weights-dir DIR] [--folds 5]

Writes ``--clips`` labelled files of 4-30 s (uniform) made offline by the demo-corpus generator:
half bona fide speech of its synthetic speakers, half the same kind of speech through its four
vocoders (Griffin-Lim, LPC, channel vocoder, harmonic-plus-noise; none of them is in ASVspoof
2019 LA), each file from its own speaker draw, 16-bit FLAC. Groups are the generator's speakers,
so cross-validation never scores a speaker the fold's model was adapted on.

Then runs ``spoofscope adapt`` (the packaged recipe) on them in a fresh process and reports its
wall time, CPU time and peak resident memory, the time of the network pass (the embedding of
every window, which dominates) against the rest, and the EER before and after adaptation. The
starting model is AASIST with the official weights (``--weights-dir``, else the published
weights from the cache) trained on ASVspoof 2019 LA.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def make_clips(n: int, out: Path, seed: int = 0) -> Path:
    import soundfile as sf

    from spoofscope.data import demo

    rng = np.random.default_rng(seed)
    vocoders = ["D01", "D02", "D03", "D04"]
    speakers = [demo._speaker(rng) for _ in range(20)]
    rows = []
    for i in range(n):
        spk = int(rng.integers(len(speakers)))
        seconds = float(rng.uniform(4, 30))
        # long files: utterances of 1-3 s with short pauses, as in a recording
        parts, total = [], 0.0
        while total < seconds:
            d = min(float(rng.uniform(1.0, 3.0)), seconds - total + 0.2)
            parts.append(demo.synth_utterance(speakers[spk], rng, d))
            parts.append(np.zeros(int(rng.uniform(0.1, 0.4) * 16000)))
            total += d
        x = np.concatenate(parts)[: int(seconds * 16000)]
        spoof = i % 2 == 1
        attack = vocoders[(i // 2) % 4] if spoof else "-"
        if spoof:
            x = demo.VOCODERS[attack](x.astype(np.float64), rng)
        x = (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)
        p = out / f"clip_{i:04d}.flac"
        sf.write(p, x, 16000, subtype="PCM_16")
        rows.append((p.name, "spoof" if spoof else "bonafide", f"spk{spk:02d}", attack))
    lst = out / "list.csv"
    with open(lst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "attack"])
        w.writerows(rows)
    return lst


_CHILD = """
import json, os, sys, time
import spoofscope.train.adapt as A
from spoofscope.train import load_config
from pathlib import Path
model, weights, data, out, folds = sys.argv[1:6]
cfg = load_config(Path(A.__file__).parents[1] / "recipes" / "adapt.yaml")
# time the network pass (every file's windows through the engine) apart from the rest
import spoofscope.infer as I
spent = [0.0]
orig = I.make_engine
def make_engine(*a, **k):
    e = orig(*a, **k)
    embed = e.embed
    def timed(b):
        t = time.perf_counter(); r = embed(b); spent[0] += time.perf_counter() - t; return r
    e.embed = timed
    return e
I.make_engine = make_engine
t0, c0 = time.perf_counter(), os.times()
r = A.adapt(model, data, out, cfg, weights=None if weights == "None" else weights,
            folds=int(folds), progress=False)
c1 = os.times()
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"wall_s": time.perf_counter() - t0, "user_s": c1.user - c0.user,
                  "sys_s": c1.system - c0.system, "network_s": spent[0],
                  "peak_mb": int(hwm.split()[1]) / 1024, "report": r}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--model", default="aasist")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights-dir", default=str(HERE.parent.parent / "shared" / "reference"))
    a = ap.parse_args()
    import torch
    from _machine import cpu_name

    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    lst = make_clips(a.clips, tmp)
    made = time.perf_counter() - t
    files = {"aasist": "official_AASIST.pth", "aasist-l": "official_AASIST-L.pth"}
    w = Path(a.weights_dir) / files.get(a.model, "")
    weights = str(w) if w.is_file() else None
    env = {**os.environ, "SPOOFSCOPE_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": str(a.threads)}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            a.model,
            str(weights),
            str(lst),
            str(tmp / "out"),
            str(a.folds),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    m = json.loads(r.stdout.strip().splitlines()[-1])
    rep = m["report"]
    import soundfile as sf

    audio_s = sum(sf.info(str(tmp / row["path"])).duration for row in csv.DictReader(open(lst)))
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; torch "
        f"{torch.__version__}; {a.clips} files of 4-30 s ({audio_s / 60:.0f} min of audio, made "
        f"in {made:.0f} s, not counted); model {a.model} "
        f"({'official weights' if weights else 'published weights'}); {a.folds}-fold "
        f"cross-validation grouped by speaker; the packaged recipe\n"
    )
    print(
        "| files | audio (min) | wall (min) | user / sys (min) | network pass (min) | "
        "the rest (min) | peak RSS (MB) | EER before (%) | EER after, cross-validated (%) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {rep['n_bonafide'] + rep['n_spoof']} | {audio_s / 60:.0f} | {m['wall_s'] / 60:.1f} "
        f"| {m['user_s'] / 60:.1f} / {m['sys_s'] / 60:.1f} | {m['network_s'] / 60:.1f} | "
        f"{(m['wall_s'] - m['network_s']) / 60:.1f} | {m['peak_mb']:.0f} | "
        f"{rep['eer_before_percent']:.2f} | {rep['eer_after_percent']:.2f} |"
    )
    print(
        "\nper fold (EER before -> after, %): "
        + ", ".join(
            f"{f['eer_before_percent']:.1f} -> {f['eer_after_percent']:.1f}"
            for f in rep["per_fold"]
            if f["eer_before_percent"] is not None
        )
    )


if __name__ == "__main__":
    main()
