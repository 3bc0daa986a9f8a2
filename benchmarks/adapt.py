"""`spoofscope adapt` on real recordings: its cross-validated estimate, and what the model it
writes does on sources it never saw; with its time and peak memory.

    python benchmarks/adapt.py [--realdev DIR] [--model aasist] [--weights-dir DIR] [--folds 5]

The real recordings are ``../shared/realdev`` (genuine and generated clips from public TTS,
voice-conversion and vocoder demo pages; ``labels.csv``: path,label,group,system). Its 12
sources are split in two halves by name (alternately, in sorted order): ``adapt`` runs on half
A (grouped by source, so its estimate is for sources it did not train on), in a fresh process
whose wall time, CPU time and peak memory are reported; then ``detect`` (the Detector, as the
CLI runs it) scores every file of half B with the starting model and with the model each
procedure writes (``--procedure probe``, ``recipe`` and the default ``auto``, the last two from
the first run's cached embeddings). The table gives, for each, the cross-validated EER on A and
the EER on B.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_CHILD = """
import json, os, sys, time
import spoofscope.train.adapt as A
from spoofscope.train import load_config
from pathlib import Path
model, weights, data, out, folds, procedure = sys.argv[1:7]
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
            folds=int(folds), procedure=procedure, progress=False)
c1 = os.times()
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"wall_s": time.perf_counter() - t0, "user_s": c1.user - c0.user,
                  "sys_s": c1.system - c0.system, "network_s": spent[0],
                  "peak_mb": int(hwm.split()[1]) / 1024, "report": r}))
"""


def split_sources(realdev: Path, tmp: Path) -> tuple[Path, list[tuple[str, int, str]], list]:
    """Half A as a path,label,group CSV; half B as (path, label, group) rows; the names."""
    rows = list(csv.DictReader(open(realdev / "labels.csv")))
    groups = sorted({r["group"] for r in rows})
    a_groups = set(groups[0::2])
    a_csv = tmp / "half_a.csv"
    with open(a_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        for r in rows:
            if r["group"] in a_groups:
                w.writerow([str(realdev / r["path"]), r["label"], r["group"]])
    b = [
        (str(realdev / r["path"]), int(r["label"] == "bonafide"), r["group"])
        for r in rows
        if r["group"] not in a_groups
    ]
    return a_csv, b, [sorted(a_groups), sorted(set(groups) - a_groups)]


def run_adapt(model, weights, data, out, folds, procedure, threads) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    args = [model, str(weights), str(data), str(out), str(folds), procedure]
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env
    )
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def eer(scores, labels) -> float:
    from spoofscope.metrics import compute_eer

    s, y = np.asarray(scores, float), np.asarray(labels)
    return float(compute_eer(s[y == 1], s[y == 0])[0] * 100)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realdev", default=str(HERE.parent.parent / "shared" / "realdev"))
    ap.add_argument("--model", default="aasist")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights-dir", default=str(HERE.parent.parent / "shared" / "reference"))
    a = ap.parse_args()
    import torch
    from _machine import cpu_name

    from spoofscope.infer import Detector

    realdev = Path(a.realdev)
    if not (realdev / "labels.csv").is_file():
        sys.exit(f"{realdev}/labels.csv not found (give --realdev DIR)")
    tmp = Path(tempfile.mkdtemp())
    a_csv, b_rows, (a_groups, b_groups) = split_sources(realdev, tmp)
    files = {"aasist": "official_AASIST.pth", "aasist-l": "official_AASIST-L.pth"}
    w = Path(a.weights_dir) / files.get(a.model, "")
    weights = str(w) if w.is_file() else None

    runs = {}
    runs["auto"] = run_adapt(a.model, weights, a_csv, tmp / "auto", a.folds, "auto", a.threads)
    for proc in ("probe", "recipe"):  # the same embeddings: copied, not computed again
        shutil.copytree(tmp / "auto" / "cache", tmp / proc / "cache")
        runs[proc] = run_adapt(a.model, weights, a_csv, tmp / proc, a.folds, proc, a.threads)
    m, rep = runs["auto"], runs["auto"]["report"]

    paths = [p for p, _, _ in b_rows]
    labels = np.array([y for _, y, _ in b_rows])
    held = {}
    timing = {}
    for name, src in (
        ("before", None),
        ("probe", tmp / "probe" / "model.ckpt"),
        ("recipe", tmp / "recipe" / "model.ckpt"),
        ("auto", tmp / "auto" / "model.ckpt"),
    ):
        det = Detector.load(a.model, weights=weights) if src is None else Detector.load(str(src))
        t = time.perf_counter()
        res = det.detect_many(paths)
        timing[name] = time.perf_counter() - t
        ok = [i for i, r in enumerate(res) if r.score is not None]
        held[name] = (
            eer([res[i].score for i in ok], labels[ok]),
            len(res) - len(ok),
            float(np.mean([r.confident is True for r in res])),
            # wrong verdicts that claim confidence
            int(sum(r.confident is True and (r.label == "bonafide") != bool(y)
                    for r, y in zip(res, labels, strict=True))),
        )  # fmt: skip
        if name == "before":  # what "confident" meant before calibrations had to be the user's
            sure = [i for i in ok if abs(res[i].p_bonafide - 0.5) >= 0.1]
            wrong = [i for i in sure if (res[i].label == "bonafide") != bool(labels[i])]
            softmax_band = (len(sure) / len(ok), len(wrong), len(sure))

    import soundfile as sf

    audio_a = sum(sf.info(r["path"]).duration for r in csv.DictReader(open(a_csv)))
    n_b = (int(labels.sum()), int((labels == 0).sum()))
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; torch "
        f"{torch.__version__}; model {a.model} "
        f"({'official weights' if weights else 'published weights'}); real recordings "
        f"({realdev.name}): adapt on half A ({', '.join(a_groups)}: {rep['n_bonafide']} bona "
        f"fide, {rep['n_spoof']} spoof, {audio_a / 60:.0f} min), detect on half B "
        f"({', '.join(b_groups)}: {n_b[0]} bona fide, {n_b[1]} spoof); {a.folds}-fold nested "
        "cross-validation grouped by source\n"
    )
    print(
        "| adapt on A | wall (min) | user / sys (min) | network pass (min) | the rest (min) "
        "| peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {rep['n_bonafide'] + rep['n_spoof']} files | {m['wall_s'] / 60:.1f} | "
        f"{m['user_s'] / 60:.1f} / {m['sys_s'] / 60:.1f} | {m['network_s'] / 60:.1f} | "
        f"{(m['wall_s'] - m['network_s']) / 60:.1f} | {m['peak_mb']:.0f} |\n"
    )
    strat = rep["eer_stratified_percent"] or {}
    print(
        "| model | EER on A, cross-validated by source (%) | on A, stratified folds (%) | "
        "EER on B, unseen sources, by detect (%) | B: verdicts claiming confidence | "
        "B: wrong verdicts claiming confidence |"
    )
    print("|---|---|---|---|---|---|")
    rows = [
        ("starting model", rep["eer_before_percent"], None, "before"),
        ("probe", runs["probe"]["report"]["eer_after_percent"], strat.get("probe"), "probe"),
        ("recipe", runs["recipe"]["report"]["eer_after_percent"], strat.get("recipe"), "recipe"),
        (
            f"adapt's default (final: {rep['final']['procedure']})",
            rep["eer_after_percent"],
            strat.get("after"),
            "auto",
        ),
    ]
    for label, cv, st, key in rows:
        e, _, conf, wrong = held[key]
        print(
            f"| {label} | {cv:.2f} | {'-' if st is None else f'{st:.2f}'} | {e:.2f} | "
            f"{100 * conf:.0f} % | {wrong} |"
        )
    share, wrong, sure = softmax_band
    print(
        f"\nThe starting model's softmax puts {100 * share:.0f} % of its verdicts on B outside "
        f"0.5 +- 0.1 (what 'confident' meant without a calibration before): {wrong} of those "
        f"{sure} are wrong."
    )
    skipped = {k: v[1] for k, v in held.items() if v[1]}
    print(
        "\nchosen per fold: "
        + ", ".join(f["chosen"] for f in rep["per_fold"])
        + f"; files of A left out (no speech): {len(rep['no_speech'])}"
        + (f"; files of B not judged: {skipped}" if skipped else "")
        + f"; detect on B took {', '.join(f'{k} {v:.0f} s' for k, v in timing.items())}"
    )


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "adapt")
