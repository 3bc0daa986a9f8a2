"""`adapt`'s candidates and choice rules over many source-grouped splits of real recordings.

    OMP_NUM_THREADS=1 python benchmarks/adapt_real.py [--split files] [--realdev DIR]
        [--weights FILE] [--work DIR] [--reps 30] [--recipe-reps 30] [--sizes 40,90,200,400]
        [--json FILE] [--write-docs=NAME]

The real recordings are ``../shared/realdev`` (511 genuine and generated clips from 12 public
TTS, voice-conversion and vocoder demo pages). The official AASIST embeds every file once, as
``spoofscope adapt`` does (the windows ``detect`` judges, 3 augmented crops for the recipe),
plus the official first 4-s window, cached under ``--work`` (default
``~/.cache/spoofscope-adapt-real``). Then, for each adapt-set size and each repetition, the
adapt set is drawn (``--split sources``: sources at random until they hold that many files,
that many of their files, and every file of the other sources is unseen; ``--split files``:
that many files of any source, the others unseen, and the adapt set given without its
sources; a draw is kept when both parts hold at least 5 files of each class). On each split:

* keep: the published layer (the starting model's ``detect`` scores);
* probe and recipe: ``adapt``'s candidates fitted on the adapt set (probe variants for the
  embedding, the penalty grid and the folds that choose it beside);
* the anchored probe (``train/candidates/anchored.py``) and the fusion
  (``train/candidates/fusion.py``), fitted on the adapt set;
* two inner cross-validations on the adapt set (``adapt``'s
  :class:`~spoofscope.train.adapt.Selector`): 3 folds among keep, the probe and the recipe
  (the rules before), and ``adapt``'s 10 among keep, the probe, the anchored probe and the
  fusion. Each rule of :func:`rule_rows` picks on one of them among some candidates (``adapt``'s
  default rule, :func:`~spoofscope.train.adapt.default_rule`, among keep and the probe, is
  marked); the pick, fitted on the whole adapt set, scores the unseen files.

The tables give the mean and standard deviation over the splits of the EER on unseen files,
how often each rule picked what, the nested estimate (the inner cross-validations' pooled EER)
beside the probe's unseen EER, the anchored probe's penalty and the probe variants. ``--json
FILE`` also writes every split's numbers and inner scores; ``--from-json FILE`` prints the
tables again from them (the rules apply to the saved inner scores, so a new rule needs no new
run). ``--write-docs=adapt_real_sources`` / ``adapt_real_files`` write the tables into the docs
(``docs/adapt.md``); ``--table FILE`` writes the rows ``adapt``'s report quotes.
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
    ap.add_argument("--json", default=None, help="write every split's numbers here")
    ap.add_argument("--from-json", default=None, help="print the tables of an earlier --json")
    ap.add_argument("--table", default=None, help="write the rows adapt's report quotes here")
    a = ap.parse_args()
    import torch

    from spoofscope.train import load_config
    from spoofscope.train.adapt import DEFAULT_INNER_FOLDS, Selector
    from spoofscope.train.candidates import Anchored, Fusion, Keep, Probe, Recipe, eer

    realdev, work = Path(a.realdev), Path(a.work)
    if not (realdev / "labels.csv").is_file():
        sys.exit(f"{realdev}/labels.csv not found (give --realdev DIR)")
    work.mkdir(parents=True, exist_ok=True)
    data, first, _ = embeddings(realdev, str(Path(a.weights).resolve()), work)
    sources = data.groups
    if a.split == "files":  # the user's list names no sources: folds stratified by class
        data = dataclasses.replace(data, groups=["-"] * len(data.labels))
    if a.from_json:
        res = {int(n): v for n, v in json.loads(Path(a.from_json).read_text()).items()}
        report(res, a, data, sources, realdev, None, None)
        return
    cfg = load_config(Path(HERE.parent / "src/spoofscope/recipes/adapt.yaml"))
    y = data.labels
    sizes = [int(s) for s in a.sizes.split(",")]
    recipe_reps = a.reps if a.recipe_reps is None else a.recipe_reps

    # probe variants: the file embedding, the penalty grid, the folds choosing it
    mean_d = data
    first_d = dataclasses.replace(data, files=first)
    both = np.concatenate([data.files, first], 1)
    both_d = dataclasses.replace(data, files=both, head=torch.nn.Linear(both.shape[1], 2))
    l2 = data.files / np.linalg.norm(data.files, axis=1, keepdims=True)
    norm_d = dataclasses.replace(data, files=l2.astype(np.float32))
    wide = tuple(10.0 ** np.arange(-4, 2.5, 0.5))
    probe = Probe(cfg.seed)
    variants = {
        ADAPTS_PROBE: (mean_d, probe),
        "official first window": (first_d, probe),
        "mean and first (320-d)": (both_d, probe),
        "window mean, length-normalised": (norm_d, probe),
        "window mean, 13 penalties 1e-4..1e2": (mean_d, Probe(cfg.seed, grid=wide)),
        "window mean, penalty by 5 folds": (mean_d, Probe(cfg.seed, inner_folds=5)),
        "window mean, fixed C = 1": (mean_d, Probe(cfg.seed, grid=(1.0,))),
    }
    recipe = Recipe(cfg, data.head, data.bona)
    anchored = Anchored(cfg.seed)
    fusion = Fusion(cfg.seed)
    res = {n: {} for n in sizes}
    t0 = time.perf_counter()
    fit_time = {"probe": 0.0, "anchored": 0.0, "fusion": 0.0, "recipe": 0.0, "inner": 0.0}

    def timed(what, f, *args):
        t = time.perf_counter()
        out = f(*args)
        fit_time[what] += time.perf_counter() - t
        return out

    for n in sizes:
        rows = []
        for r in range(a.reps):
            rng = np.random.default_rng([cfg.seed, n, r])
            S, U = draw(rng, data.groups, y, n, a.split)
            row = {"n_sources": len({sources[i] for i in S}), "keep": eer(data.before[U], y[U])}
            for name, (d, p) in variants.items():
                f = timed("probe", p.fit, d, S, r)
                row["probe:" + name] = eer(p.score(f, d, U), y[U])
            row["probe"] = row["probe:" + ADAPTS_PROBE]
            f = timed("anchored", anchored.fit, data, S, r)
            row["anchored"] = eer(anchored.score(f, data, U), y[U])
            row["anchor_c"] = f.info["anchor_c"]
            f = timed("fusion", fusion.fit, data, S, r)
            row["fusion"] = eer(fusion.score(f, data, U), y[U])
            row["fusion_w"] = f.info["fusion_weights"]
            # the inner cross-validations the rules choose by: 3 folds among keep, the probe
            # and the recipe (the rules before), adapt's 10 among keep, the probe, the
            # anchored probe and the fusion; the scores are kept, the rules apply in report()
            three = {"none": Keep(), "probe": probe}
            if r < recipe_reps:
                f = timed("recipe", recipe.fit, data, S, r)
                row["recipe"] = eer(recipe.score(f, data, U), y[U])
                three["recipe"] = recipe
            ten = {"none": Keep(), "probe": probe, "anchored": anchored, "fusion": fusion}
            for k, cands in ((3, three), (DEFAULT_INNER_FOLDS, ten)):
                sel = Selector(cands, "auto", cfg.seed, one_group="none", inner_folds=k)
                got = timed("inner", sel.inner_scores, data, S, r)
                row[f"inner{k}"] = None if got is None else {
                    "y": got[1].tolist(), **{c: v.tolist() for c, v in got[0].items()}
                }  # fmt: skip
            rows.append(row)
        res[n] = rows
        print(f"size {n}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps({str(n): res[n] for n in sizes}))
    report(res, a, data, sources, realdev, time.perf_counter() - t0, fit_time)


ADAPTS_PROBE = "window mean (adapt's)"


def rule_rows(grouped: bool) -> dict:
    """The table's rules: ``{row name: (inner folds, candidates, rule)}``, each applied to
    that inner cross-validation's scores of the candidates (those it has: the recipe only on
    the first ``--recipe-reps`` splits). The row of ``adapt``'s default (the same folds,
    candidates and rule, :func:`~spoofscope.train.adapt.default_rule`) is marked."""
    from spoofscope.train.adapt import (
        AUTO_CANDIDATES,
        DEFAULT_INNER_FOLDS,
        default_rule,
        keep_if_better_rule,
        loss_rule,
        min_eer_rule,
        se_margin_rule,
    )

    ten = DEFAULT_INNER_FOLDS
    kp, kpr = ("none", "probe"), ("none", "probe", "recipe")
    ties = keep_if_better_rule(0.0)  # the lower inner EER, ties to the probe
    rows = {
        "previous rule (3 inner folds, EER, 1 SE margin)": (3, kpr, se_margin_rule),
        "Cllr, 3 inner folds, no margin": (3, kpr, loss_rule(0.0)),
        "Cllr, 3 inner folds, 2 SE margin": (3, kpr, loss_rule(2.0)),
        f"kept or probe: Cllr, {ten} inner folds, no margin": (ten, kp, loss_rule(0.0)),
        f"kept or probe: Cllr, {ten} inner folds, 1 SE margin": (ten, kp, loss_rule(1.0)),
        f"kept or probe: EER, {ten} inner folds": (ten, kp, min_eer_rule),
        f"kept or probe: EER, ties to the probe, {ten} inner folds": (ten, kp, ties),
    }
    rows.update(
        {
            f"probe unless kept is better by > {m:g} SE, {ten} inner folds": (
                ten,
                kp,
                keep_if_better_rule(m),
            )
            for m in (0.5, 1.0, 2.0)
        }
    )
    for what, cands in (
        ("kept, anchored or probe", ("none", "anchored", "probe")),
        ("kept or anchored", ("none", "anchored")),
        ("kept or fusion", ("none", "fusion")),
        ("kept, fusion or probe", ("none", "fusion", "probe")),
    ):
        rows[f"{what}: EER, {ten} inner folds"] = (ten, cands, min_eer_rule)
    default = default_rule(grouped).__name__
    return {
        ("**adapt's choice**: " if (k, set(c), r.__name__) == (ten, set(AUTO_CANDIDATES), default)
         else "") + name: (k, c, r)
        for name, (k, c, r) in rows.items()
    }  # fmt: skip


def pick(row: dict, k: int, cands: tuple, rule) -> str:
    """The candidate ``rule`` picks on the split's inner scores (``none`` where the adapt set
    could not fill the inner folds)."""
    inner = row.get(f"inner{k}")
    if inner is None:
        return "none"
    return rule({c: np.array(inner[c]) for c in cands if c in inner}, np.array(inner["y"])).name


def report(res, a, data, sources, realdev, spent, fit_time):
    """Prints the tables (and writes ``--table``: the rows ``adapt``'s report quotes)."""
    import torch
    from _machine import cpu_name

    from spoofscope.train.adapt import DEFAULT_INNER_FOLDS
    from spoofscope.train.candidates import eer

    y = data.labels
    sizes = sorted(res)
    recipe_reps = max(sum(r.get("recipe") is not None for r in res[n]) for n in sizes)
    reps = max(len(res[n]) for n in sizes)
    rules = rule_rows(data.grouped)
    for n in sizes:  # each rule's pick and its unseen EER
        for row in res[n]:
            for name, (k, cands, rule) in rules.items():
                p = row["pick:" + name] = pick(row, k, cands, rule)
                row["rule:" + name] = row["keep" if p == "none" else p]
            for k in (3, DEFAULT_INNER_FOLDS):
                inner = row.get(f"inner{k}")
                if inner is not None:
                    row[f"probe_inner{k}"] = eer(np.array(inner["probe"]), np.array(inner["y"]))

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
            f"probe fits {fit_time['anchored']:.0f} s, fusion fits {fit_time['fusion']:.0f} s, "
            f"recipe fits {fit_time['recipe']:.0f} s, inner cross-validations "
            f"{fit_time['inner']:.0f} s)"
        )
        + "\n"
    )
    head = "| | " + " | ".join(f"{n} files" for n in sizes) + " |"
    line = "|---|" + "---|" * len(sizes)
    unseen = "other sources" if a.split == "sources" else "other files of the same sources"
    print(
        "Unseen EER (%), mean +- standard deviation over the splits, and its mean over the sizes:\n"
    )
    print(head.replace("| |", f"| unseen: {unseen} |", 1) + " mean |")
    print(line + "---|")
    names = {"keep": "published layer kept", "anchored": "anchored probe"}
    keys = ["keep", "probe", "recipe", "anchored", "fusion"] + ["rule:" + k for k in rules]
    for k in keys:
        cells = []
        for n in sizes:
            m, s, cnt = stat(n, k)
            cells.append(f"{m:.1f} +- {s:.1f}" + (f" ({cnt})" if cnt != reps else ""))
        mean = np.mean([stat(n, k)[0] for n in sizes])
        name = names.get(k, k.removeprefix("rule:"))
        print(f"| {name} | " + " | ".join(cells) + f" | {mean:.2f} |")
    print("\nPicks (kept / anchored / fusion / probe / recipe) of each rule:\n")
    print(head.replace("| |", "| rule |", 1))
    print(line)
    for k in rules:
        cells = []
        for n in sizes:
            p = [r["pick:" + k] for r in res[n]]
            cells.append(
                " / ".join(
                    str(p.count(c)) for c in ("none", "anchored", "fusion", "probe", "recipe")
                )
            )
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("\nThe probe's nested estimate (its pooled EER in the inner cross-validation on the")
    print("adapt set) beside its EER on the unseen files (%), and the sources in the adapt set:\n")
    print(head)
    print(line)
    for k, label in (
        ("probe_inner3", "nested estimate, 3 inner folds"),
        (
            f"probe_inner{DEFAULT_INNER_FOLDS}",
            f"nested estimate, {DEFAULT_INNER_FOLDS} inner folds",
        ),
        ("probe", "unseen"),
    ):
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
    print(head)
    print(line)
    cs = sorted({r["anchor_c"] for n in sizes for r in res[n]})
    print(
        "| C | "
        + " | ".join(
            ", ".join(f"{c:g}: {sum(r['anchor_c'] == c for r in res[n])}" for c in cs)
            for n in sizes
        )
        + " |"
    )
    print("\nProbe variants, unseen EER (%):\n")
    print(head.replace("| |", "| file embedding / penalty |", 1))
    print(line)
    variants = [k for k in res[sizes[0]][0] if k.startswith("probe:")]
    for k in variants:
        print(
            f"| {k.removeprefix('probe:')} | "
            + " | ".join("{:.1f} +- {:.1f}".format(*stat(n, k)[:2]) for n in sizes)
            + " |"
        )
    if a.table:
        choice = next(k for k in rules if k.startswith("**adapt's choice**"))
        # the keys adapt's report reads: the column's name and the row it comes from
        cols = {
            "keep": ("published layer kept", "keep"),
            "probe": ("probe", "probe"),
            "rule:adapt's default rule": ("adapt's choice", "rule:" + choice),
        }
        table = json.loads(Path(a.table).read_text()) if Path(a.table).is_file() else {}
        table[a.split] = {
            "what": "the official AASIST adapted on real recordings (benchmarks/adapt_real.py, "
            f"unseen: {unseen})",
            "splits": reps,
            "columns": {k: name for k, (name, _) in cols.items()},
            "sizes": {
                str(n): {k: list(stat(n, row)[:2]) for k, (_, row) in cols.items()} for n in sizes
            },
        }
        Path(a.table).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "adapt_real")
