"""`adapt`'s candidates and choice rules over many source-grouped splits of real recordings.

    OMP_NUM_THREADS=1 python benchmarks/adapt_real.py [--realdev DIR] [--weights FILE]
        [--work DIR] [--reps 30] [--recipe-reps 30] [--sizes 40,90,200,400]

The real recordings are ``../shared/realdev`` (511 genuine and generated clips from 12 public
TTS, voice-conversion and vocoder demo pages). The official AASIST embeds every file once, as
``spoofscope adapt`` does (the windows ``detect`` judges, 3 augmented crops for the recipe),
plus the official first 4-s window, cached under ``--work`` (default
``~/.cache/spoofscope-adapt-real``). Then, for each adapt-set size and each repetition,
sources are drawn at random until they hold that many files, the adapt set is that many
of their files, and every file of the other sources is unseen (a draw is kept when both
parts hold at least 5 files of each class). On each split:

* keep: the published layer (the starting model's ``detect`` scores);
* probe and recipe: ``adapt``'s candidates fitted on the adapt set (probe variants for the
  embedding, the penalty grid and the folds that choose it beside);
* the anchored probe (``train/candidates/anchored.py``) and the fusion
  (``train/candidates/fusion.py``), fitted on the adapt set;
* each choice rule, given the inner cross-validation's scores of the adapt set (``adapt``'s
  :class:`~spoofscope.train.adapt.Selector`), picks keep, fusion, probe or recipe (and the
  lower inner EER among keep / probe, keep / fusion / probe, keep / fusion and fusion /
  probe; and ``adapt``'s default rule, :func:`~spoofscope.train.adapt.default_rule`, among
  keep / probe); the pick, fitted on the whole adapt set, scores the unseen files. The inner
  scores are saved with ``--json`` (key ``inner``), so other rules can be tried on them.

The tables give the mean and standard deviation over the splits of the EER on unseen files,
how often each rule picked what, and the nested estimate (the inner cross-validation's pooled
EER) beside the probe's unseen EER. ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SIZES = (40, 90, 200, 400)


def embeddings(realdev: Path, weights: str, work: Path):
    """(AdaptData, first-window embeddings (N, D)), computed once and kept in ``work``."""
    import torch

    import spoofscope.train.adapt as A
    from spoofscope.audio import load_audio, official_crop
    from spoofscope.infer import make_engine
    from spoofscope.infer.activity import default_vad
    from spoofscope.models import load_model
    from spoofscope.train import load_config
    from spoofscope.train.candidates import AdaptData
    from spoofscope.train.finetune import head_matches_embedding

    model = load_model("aasist", weights=weights)
    win = model.card.window_samples
    head = head_matches_embedding(model, win)
    npz = work / "embeddings.npz"
    if npz.is_file():
        z = np.load(npz, allow_pickle=False)
        data = AdaptData(
            labels=z["labels"],
            groups=z["groups"].tolist(),
            keys=z["keys"].tolist(),
            files=z["files"],
            before=z["before"],
            windows=z["windows"],
            window_file=z["window_file"],
            crops=z["crops"],
            crop_file=z["crop_file"],
            head=head,
            bona=model.card.bonafide_index,
        )
        return data, z["first"], z["paths"].tolist()
    rows = list(csv.DictReader(open(realdev / "labels.csv")))
    lst = work / "realdev.csv"
    with open(lst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows([str(realdev / r["path"]), r["label"], r["group"]] for r in rows)
    cfg = load_config(Path(A.__file__).parents[1] / "recipes" / "adapt.yaml")
    trials = A.read_labelled(lst)
    vad = default_vad()
    cache = A.cache_dir(work, "aasist", weights, model.card, win, 2.0, cfg, vad)
    t = time.perf_counter()
    labelled, data = A.embed(
        trials, model, head, cfg, cache, win=win, hop_s=2.0, engine="auto", vad=vad, progress=True
    )
    eng = make_engine(model, "auto", length=win)
    first = []
    for c in labelled.clips:  # the official evaluation crop: the first 4 s (tiled if shorter)
        x = official_crop(load_audio(c.path, model.card.sample_rate), win)
        first.append(eng.embed(x[None].astype(np.float32))[1][0])
    print(
        f"embedding pass: {len(labelled.clips)} files judged, {len(labelled.no_speech)} without "
        f"speech, {len(labelled.skipped)} unreadable; {time.perf_counter() - t:.0f} s "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)",
        file=sys.stderr,
    )
    np.savez(
        npz,
        labels=data.labels,
        groups=np.array(data.groups),
        keys=np.array(data.keys),
        files=data.files,
        before=data.before,
        windows=data.windows,
        window_file=data.window_file,
        crops=data.crops,
        crop_file=data.crop_file,
        first=np.array(first, np.float32),
        paths=np.array([c.path for c in labelled.clips]),
    )
    return embeddings(realdev, weights, work)


def draw(rng, groups: list[str], labels: np.ndarray, n: int, split: str = "sources"):
    """Adapt-set and unseen indices. ``sources``: whole sources in random order until they
    hold ``n`` files, ``n`` of those files; the unseen files are every file of the other
    sources. ``files``: ``n`` files of any source; the unseen files are the others."""
    names = sorted(set(groups))
    g = np.array(groups)
    for _ in range(1000):
        if split == "files":
            adapt = np.sort(rng.choice(len(labels), n, replace=False))
            unseen = np.setdiff1d(np.arange(len(labels)), adapt)
            if all(
                min(np.sum(labels[p] == 1), np.sum(labels[p] == 0)) >= 5 for p in (adapt, unseen)
            ):
                return adapt, unseen
            continue
        taken, total = [], 0
        for s in rng.permutation(names):
            taken.append(s)
            total += int(np.sum(g == s))
            if total >= n:
                break
        pool = np.flatnonzero(np.isin(g, taken))
        if len(pool) < n:
            continue
        adapt = np.sort(rng.choice(pool, n, replace=False))
        unseen = np.flatnonzero(~np.isin(g, taken))
        ok = all(min(np.sum(labels[p] == 1), np.sum(labels[p] == 0)) >= 5 for p in (adapt, unseen))
        if ok:
            return adapt, unseen
    raise RuntimeError(f"no split of {n} files with both classes on both sides")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realdev", default=str(HERE.parent.parent / "shared" / "realdev"))
    ap.add_argument(
        "--weights",
        default=str(HERE.parent.parent / "shared" / "reference" / "official_AASIST.pth"),
    )
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "spoofscope-adapt-real"))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--recipe-reps", type=int, default=None, help="default: --reps")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument(
        "--split",
        choices=("sources", "files"),
        default="sources",
        help="unseen files from other sources (default), or other files of any source, the "
        "adapt set then given without its sources (as a list without a group column)",
    )
    ap.add_argument(
        "--inner-folds",
        type=int,
        default=0,
        help="only keep and the probe, chosen by rules on this many inner folds (no variants, "
        "no recipe)",
    )
    ap.add_argument("--json", default=None, help="write every split's numbers here")
    ap.add_argument("--from-json", default=None, help="print the tables of an earlier --json")
    ap.add_argument("--table", default=None, help="write the rows adapt's report quotes here")
    a = ap.parse_args()
    import torch

    from spoofscope.train import load_config
    from spoofscope.train.adapt import Selector, loss_rule, min_eer_rule, se_margin_rule
    from spoofscope.train.candidates import Anchored, Fusion, Keep, Probe, Recipe, eer

    realdev, work = Path(a.realdev), Path(a.work)
    if not (realdev / "labels.csv").is_file():
        sys.exit(f"{realdev}/labels.csv not found (give --realdev DIR)")
    work.mkdir(parents=True, exist_ok=True)
    data, first, _ = embeddings(realdev, str(Path(a.weights).resolve()), work)
    sources = data.groups
    if a.split == "files":  # the user's list names no sources: folds stratified by class
        data = dataclasses.replace(data, groups=["-"] * len(data.labels))
    cfg = load_config(Path(HERE.parent / "src/spoofscope/recipes/adapt.yaml"))
    y = data.labels
    sizes = [int(s) for s in a.sizes.split(",")]
    recipe_reps = a.reps if a.recipe_reps is None else a.recipe_reps

    # probe variants (point 3): the file embedding, the penalty grid, the folds choosing it
    mean_d = data
    first_d = dataclasses.replace(data, files=first)
    both = np.concatenate([data.files, first], 1)
    both_d = dataclasses.replace(data, files=both, head=torch.nn.Linear(both.shape[1], 2))
    l2 = data.files / np.linalg.norm(data.files, axis=1, keepdims=True)
    norm_d = dataclasses.replace(data, files=l2.astype(np.float32))
    wide = tuple(10.0 ** np.arange(-4, 2.5, 0.5))
    probe = Probe(cfg.seed)
    variants = {
        "window mean (adapt's)": (mean_d, probe),
        "official first window": (first_d, probe),
        "mean and first (320-d)": (both_d, probe),
        "window mean, length-normalised": (norm_d, probe),
        "window mean, 13 penalties 1e-4..1e2": (mean_d, Probe(cfg.seed, grid=wide)),
        "window mean, penalty by 5 folds": (mean_d, Probe(cfg.seed, inner_folds=5)),
        "window mean, fixed C = 1": (mean_d, Probe(cfg.seed, grid=(1.0,))),
    }
    recipe = Recipe(cfg, data.head, data.bona)
    rules = {
        "EER, 1 SE margin (before)": (se_margin_rule, "none"),
        "EER, no margin": (min_eer_rule, "none"),
    }
    for one_group, margins in (("none", (0.0, 1.0, 2.0)), ("stratified", (0.0, 1.0))):
        rules.update({rule_key(m, one_group): (loss_rule(m), one_group) for m in margins})
    anchored = Anchored(cfg.seed)
    fusion = Fusion(cfg.seed)
    # the choice among subsets of the candidates (the same inner scores): keep or probe (the
    # rule before the anchored probe), keep / anchored / probe, keep or anchored
    subsets = {
        "keep or probe": ("none", "probe"),
        "keep / fusion / probe": ("none", "fusion", "probe"),
        "keep or fusion": ("none", "fusion"),
        "fusion or probe": ("fusion", "probe"),
    }
    if a.from_json:
        res = {int(n): v for n, v in json.loads(Path(a.from_json).read_text()).items()}
        sizes = sorted(res)
        for n in sizes:  # adapt's default rule, from the inner scores the splits saved
            for row in res[n]:
                default_pick(row, data.grouped)
        report(res, sizes, rules, variants, a, data, sources, realdev, None, None)
        return
    res = {n: {} for n in sizes}
    t0 = time.perf_counter()
    fit_time = {"probe": 0.0, "anchored": 0.0, "fusion": 0.0, "recipe": 0.0}
    for n in sizes:
        rows = []
        for r in range(a.reps):
            rng = np.random.default_rng([cfg.seed, n, r])
            S, U = draw(rng, data.groups, y, n, a.split)
            with_recipe = r < recipe_reps
            row = {"n_sources": len({sources[i] for i in S}), "keep": eer(data.before[U], y[U])}
            fitted = {"none": None}
            for name, (d, p) in variants.items():
                if a.inner_folds and name != "window mean (adapt's)":
                    continue
                t = time.perf_counter()
                f = p.fit(d, S, seed=r)
                fit_time["probe"] += time.perf_counter() - t
                row["probe:" + name] = eer(p.score(f, d, U), y[U])
                if d is mean_d and p is probe:
                    fitted["probe"] = f
            row["probe"] = row["probe:window mean (adapt's)"]
            # the anchored probe is measured unseen only (not chosen among here)
            cands = {"none": Keep(), "fusion": fusion, "probe": probe}
            t = time.perf_counter()
            fitted["anchored"] = anchored.fit(data, S, seed=r)
            fit_time["anchored"] += time.perf_counter() - t
            row["anchored"] = eer(anchored.score(fitted["anchored"], data, U), y[U])
            row["anchor_c"] = fitted["anchored"].info["anchor_c"]
            t = time.perf_counter()
            fitted["fusion"] = fusion.fit(data, S, seed=r)
            fit_time["fusion"] += time.perf_counter() - t
            row["fusion"] = eer(fusion.score(fitted["fusion"], data, U), y[U])
            row["fusion_w"] = fitted["fusion"].info["fusion_weights"]
            if with_recipe and not a.inner_folds:
                t = time.perf_counter()
                fitted["recipe"] = recipe.fit(data, S, seed=r)
                fit_time["recipe"] += time.perf_counter() - t
                row["recipe"] = eer(recipe.score(fitted["recipe"], data, U), y[U])
                cands["recipe"] = recipe
            unseen = {
                "none": row["keep"],
                "anchored": row["anchored"],
                "fusion": row["fusion"],
                "probe": row["probe"],
                "recipe": row.get("recipe"),
            }
            inner = {}
            for one_group in ("none", "stratified"):
                if one_group == "stratified" and not (
                    data.grouped and len({data.groups[i] for i in S}) < 2
                ):  # the same folds as without the fallback
                    inner[one_group] = inner["none"]
                    continue
                sel = Selector(
                    cands, "auto", cfg.seed, one_group=one_group, inner_folds=a.inner_folds or 3
                )
                inner[one_group] = sel.inner_scores(data, S, seed=r)
            got = inner["none"]
            if got is not None:  # the nested estimate of the probe beside its unseen EER
                row["probe_inner"] = eer(got[0]["probe"], got[1])
                # the inner scores themselves, for rules tried on the saved --json
                row["inner"] = {"y": got[1].tolist(), **{k: v.tolist() for k, v in got[0].items()}}
            for name, (rule, one_group) in rules.items():
                got = inner[one_group]
                pick = "none" if got is None else rule(*got).name
                row["rule:" + name] = unseen[pick]
                row["pick:" + name] = pick
            got = inner["none"]
            for sub, names in subsets.items():  # adapt's rule on each subset
                pick = (
                    "none"
                    if got is None
                    else min_eer_rule({n: got[0][n] for n in names}, got[1]).name
                )
                row[f"rule:EER, no margin, {sub}"] = unseen[pick]
                row[f"pick:EER, no margin, {sub}"] = pick
            default_pick(row, data.grouped)
            rows.append(row)
        res[n] = rows
        print(f"size {n}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps({str(n): res[n] for n in sizes}, indent=1))
    report(
        res, sizes, rules, variants, a, data, sources, realdev, time.perf_counter() - t0, fit_time
    )


DEFAULT = "adapt's default rule"


def default_pick(row: dict, grouped: bool) -> None:
    """Adds to ``row`` the pick of ``adapt``'s default rule among its candidates, made on the
    inner scores the split saved, and that pick's unseen EER."""
    from spoofscope.train.adapt import AUTO_CANDIDATES, default_rule

    inn, pick = row.get("inner"), "none"
    if inn is not None:
        oof = {n: np.array(inn[n]) for n in AUTO_CANDIDATES}
        pick = default_rule(grouped)(oof, np.array(inn["y"])).name
    row["pick:" + DEFAULT] = pick
    row["rule:" + DEFAULT] = row["keep" if pick == "none" else pick]


def rule_key(margin: float, one_group: str) -> str:
    """The table's name of a Cllr rule."""
    m = "no margin" if margin == 0 else f"{margin:g} SE margin"
    return f"Cllr, {m}" + ("; one source: stratified" if one_group == "stratified" else "")


def report(res, sizes, rules, variants, a, data, sources, realdev, spent, fit_time):
    """Prints the tables (and writes ``--table``: the rows ``adapt``'s report quotes)."""
    import torch
    from _machine import cpu_name

    from spoofscope.train import adapt as A

    y = data.labels
    recipe_reps = max(sum(r.get("recipe") is not None for r in res[n]) for n in sizes)
    reps = max(len(res[n]) for n in sizes)

    def stat(n, key):
        v = np.array([r[key] for r in res[n] if r.get(key) is not None], float)
        return v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0, len(v)

    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads; "
        f"torch {torch.__version__}; official AASIST on {realdev.name} ({len(y)} files judged: "
        f"{int(np.sum(y == 1))} bona fide, {int(np.sum(y == 0))} spoof, "
        f"{len(set(sources))} sources); {reps} "
        + ("source-grouped splits" if a.split == "sources" else "splits by file (sources mixed)")
        + f" per size (the recipe on the first {recipe_reps})"
        + (
            ""
            if spent is None
            else f"; study {spent:.0f} s (probe fits {fit_time['probe']:.0f} s, anchored "
            f"probe fits {fit_time.get('anchored', 0):.0f} s, fusion fits "
            f"{fit_time.get('fusion', 0):.0f} s, recipe fits "
            f"{fit_time['recipe']:.0f} s)"
        )
        + "\n"
    )
    head = "| | " + " | ".join(f"{n} files" for n in sizes) + " |"
    line = "|---|" + "---|" * len(sizes)
    print("Unseen EER (%), mean +- standard deviation over the splits:\n")
    print(head.replace("| |", "| model / rule |", 1))
    print(line)
    subs = sorted({k.removeprefix("rule:") for n in sizes for r in res[n] for k in r
                   if k.startswith("rule:EER, no margin, ")})  # fmt: skip
    rules = {**rules, **{k: None for k in subs}, DEFAULT: None}
    keys = ["keep", "anchored", "fusion", "probe", "recipe"] + ["rule:" + k for k in rules]
    for k in keys:
        cells = []
        for n in sizes:
            m, s, cnt = stat(n, k)
            cells.append(f"{m:.1f} +- {s:.1f}" + (f" ({cnt})" if cnt != reps else ""))
        print(f"| {k.removeprefix('rule:')} | " + " | ".join(cells) + " |")
    print("\nPicks (keep / anchored / fusion / probe / recipe) of each rule:\n")
    print(head.replace("| |", "| rule |", 1))
    print(line)
    for k in rules:
        cells = []
        for n in sizes:
            p = [r.get("pick:" + k) for r in res[n]]
            cells.append(
                " / ".join(
                    str(p.count(c)) for c in ("none", "anchored", "fusion", "probe", "recipe")
                )
            )
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("\nThe probe's nested estimate (inner 3-fold cross-validation on the adapt set, pooled")
    print("EER) beside its EER on the unseen sources (%), and the sources in the adapt set:\n")
    print(head.replace("| |", "| |", 1))
    print(line)
    for k, label in (("probe_inner", "nested estimate"), ("probe", "unseen")):
        print(
            f"| {label} | "
            + " | ".join("{:.1f} +- {:.1f} ({})".format(*stat(n, k)) for n in sizes)
            + " |"
        )
    print(
        "| sources in the adapt set | "
        + " | ".join(f"{np.mean([r['n_sources'] for r in res[n]]):.1f}" for n in sizes)
        + " |"
    )
    print("\nThe anchored probe's C (0: the published layer recalibrated), splits per value:\n")
    print(head.replace("| |", "| |", 1))
    print(line)
    cs = sorted({r["anchor_c"] for n in sizes for r in res[n] if "anchor_c" in r})
    print(
        "| C | "
        + " | ".join(
            ", ".join(f"{c:g}: {sum(r.get('anchor_c') == c for r in res[n])}" for c in cs)
            for n in sizes
        )
        + " |"
    )
    print("\nProbe variants, unseen EER (%):\n")
    print(head.replace("| |", "| file embedding / penalty |", 1))
    print(line)
    for k in variants:
        print(
            f"| {k} | "
            + " | ".join("{:.1f} +- {:.1f}".format(*stat(n, "probe:" + k)[:2]) for n in sizes)
            + " |"
        )
    if a.table:
        if a.inner_folds != A.DEFAULT_INNER_FOLDS:
            sys.exit(f"--table needs --inner-folds {A.DEFAULT_INNER_FOLDS} (adapt's choice)")
        default = DEFAULT
        cols = {
            "keep": "published layer kept",
            "probe": "probe",
            "rule:" + default: "adapt's choice",
        }
        table = json.loads(Path(a.table).read_text()) if Path(a.table).is_file() else {}
        table[a.split] = {
            "what": "the official AASIST adapted on real recordings (benchmarks/adapt_real.py, "
            + (
                "unseen: other sources"
                if a.split == "sources"
                else "unseen: other files of the same sources"
            )
            + ")",
            "splits": reps,
            "columns": cols,
            "sizes": {str(n): {k: list(stat(n, k)[:2]) for k in cols} for n in sizes},
        }
        Path(a.table).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "adapt_real")
