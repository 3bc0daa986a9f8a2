"""How faithful are the explanations? Deletion and insertion curves, random orders, the other
method, and the model-randomisation sanity check, with the official AASIST weights.

    OMP_NUM_THREADS=1 python benchmarks/explain.py \
        --weights ../shared/reference/official_AASIST.pth [--realdev ../shared/realdev] \
        [--n-realdev 10] [--n-demo 4] [--n-random-model 4] \
        [--tile-s 1.01] [--bands 4] [--steps 8] [--out results.json]

Stages (each a function; plain data between them):

1. ``pick_files``: a seeded subset of realdev (half bona fide, half spoof) and clips of the
   demo corpus's generator (``spoofscope.data.demo``: synthetic speech, bona fide and through
   its four vocoders), each cut to the model's 64,600-sample window (the official window
   policy judges exactly that, so every tile can move the score).
2. ``explain_file``: each method's relevance on one grid (``--tile-s`` x ``--bands`` tiles),
   with its passes and wall time.
3. ``curves``: the score towards the verdict (bona fide logit, signed) as tiles are removed
   (deletion) or restored into silence (insertion), most relevant first, at 5 fractions, for
   each method and ``--random-orders`` random orders.
4. ``randomised``: both methods again on a copy of the network with every layer re-initialised
   (Adebayo et al. 2018); the Spearman correlation of the two maps must be low.
5. ``report``: per method, the area between its curve and the random orders' mean (deletion:
   random - method; insertion: method - random; positive = more faithful than random), the
   same against the other method, each with a 95 % bootstrap interval over files.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

METHODS = ("occlusion", "integrated-gradients")


def pick_files(realdev: Path | None, n_real: int, n_demo: int, window: int) -> list[dict]:
    """Stage 1: [{name, source, label, x}] with x cut to ``window`` samples."""
    import csv

    from spoofscope.audio import load_audio
    from spoofscope.data import demo

    out = []
    if realdev is not None and n_real:
        rows = list(csv.DictReader(open(realdev / "labels.csv")))
        rng = np.random.default_rng(0)
        for label in ("bonafide", "spoof"):
            pool = [r for r in rows if r["label"] == label]
            for i in rng.choice(len(pool), n_real // 2, replace=False):
                r = pool[i]
                x = load_audio(realdev / r["path"], 16000)[:window]
                out.append({"name": r["path"], "source": "realdev", "label": label, "x": x})
    rng = np.random.default_rng(1)
    vocoders = [None, demo.griffin_lim_vocoder, demo.lpc_vocoder, demo.channel_vocoder,
                demo.harmonic_vocoder]  # fmt: skip
    for i in range(n_demo):
        x = demo.synth_utterance(demo._speaker(rng), rng, window / 16000)
        voc = vocoders[i % len(vocoders)]
        if voc is not None:
            x = voc(x, rng)
        x = (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)[:window]
        label = "bonafide" if voc is None else "spoof"
        name = f"demo_{i:02d}_{voc.__name__ if voc else 'bonafide'}"
        out.append({"name": name, "source": "demo", "label": label, "x": x})
    return out


def explain_file(det, x, tile_s, bands, budgets) -> dict:
    """Stage 2: {method: Explanation} on one grid, or None where the detector abstains."""
    out = {}
    for m in METHODS:
        e = det.explain(x, method=m, tile_s=tile_s, n_bands=bands, budget=budgets[m])
        if e.label == "no_speech":
            return None
        out[m] = e
    return out


def curves(det, x, expls, tile_s, bands, n_random, rng) -> dict:
    """Stage 3: {order name: {deletion: area, insertion: area}}, in logit units."""
    from spoofscope.infer.explain import Scorer, TileGrid, area, curve

    scorer = Scorer(det, x)
    grid = TileGrid(x, det.sample_rate, tile_s, bands)
    e0 = next(iter(expls.values()))
    sign = 1.0 if e0.label == "bonafide" else -1.0
    n = grid.n_bands * grid.n_time
    orders = {m: np.argsort(-e.grid().reshape(-1), kind="stable") for m, e in expls.items()}
    for k in range(n_random):
        orders[f"random{k}"] = rng.permutation(n)
    out = {}
    for name, order in orders.items():
        out[name] = {
            kind: area(*curve(scorer, grid, order, sign, kind, points=5))
            for kind in ("deletion", "insertion")
        }
    return out


def randomise(model) -> torch.nn.Module:
    """A copy of ``model`` with every layer's parameters (and running statistics)
    re-initialised."""
    m = copy.deepcopy(model)
    torch.manual_seed(1)
    for mod in m.modules():
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
        if hasattr(mod, "reset_running_stats"):
            mod.reset_running_stats()
    return m.eval()


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def randomised(det, x, expls, tile_s, bands, budgets) -> dict:
    """Stage 4: {method: Spearman(trained map, randomised-network map)}."""
    from spoofscope.infer import Detector, make_engine

    rdet = Detector(
        make_engine(randomise(det.model), "torch"),
        windows=det.windows,
        decision=det.decision,
    )
    out = {}
    for m, e in expls.items():
        r = rdet.explain(x, method=m, tile_s=tile_s, n_bands=bands, budget=budgets[m])
        out[m] = None if r.label == "no_speech" else spearman(e.grid(), r.grid())
    return out


def ci(values, rng, n=2000) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return (float("nan"),) * 3
    boots = [rng.choice(v, len(v)).mean() for _ in range(n)]
    return float(v.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def report(rows, rng) -> str:
    """Stage 5: the Markdown tables."""

    def fmt(t):
        return f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"

    lines = [
        "| method | files | deletion: random - method | insertion: method - random | "
        "beats random on deletion | deletion: other - method | Spearman with randomised "
        "network | passes / s audio | s / pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        other = [o for o in METHODS if o != m][0]
        dl, ins, vs, wins, rho = [], [], [], [], []
        for r in rows:
            c = r["curves"]
            rand_d = np.mean([v["deletion"] for k, v in c.items() if k.startswith("random")])
            rand_i = np.mean([v["insertion"] for k, v in c.items() if k.startswith("random")])
            dl.append(rand_d - c[m]["deletion"])
            ins.append(c[m]["insertion"] - rand_i)
            vs.append(c[other]["deletion"] - c[m]["deletion"])
            wins.append(c[m]["deletion"] < rand_d)
            if r.get("randomised"):
                rho.append(r["randomised"][m])
        passes = sum(r["cost"][m]["passes"] for r in rows)
        secs = sum(r["cost"][m]["seconds"] for r in rows)
        audio = sum(r["seconds_audio"] for r in rows)
        rho_t = ci(rho, rng)
        lines.append(
            f"| {m} | {len(rows)} | {fmt(ci(dl, rng))} | {fmt(ci(ins, rng))} | "
            f"{sum(wins)}/{len(wins)} | {fmt(ci(vs, rng))} | {rho_t[0]:.2f} [{rho_t[1]:.2f}, "
            f"{rho_t[2]:.2f}] (n={len([x for x in rho if x is not None])}) | "
            f"{passes / audio:.1f} | {secs / passes:.2f} |"
        )
    return "\n".join(lines)


def cost_table(det, durations=(4, 10, 30)) -> str:
    """The passes each method spends at the defaults of ``spoofscope explain`` (0.25-s x 8
    band tiles, budget 400; detect's sliding windows, 2-s hop) on noise of each duration:
    counted by the methods' own cost rules, without running them."""
    from spoofscope.infer import Detector
    from spoofscope.infer.explain import (
        DEFAULT_BANDS,
        DEFAULT_BUDGET,
        DEFAULT_TILE_S,
        IntegratedGradients,
        Occlusion,
        Scorer,
    )

    plain = Detector(det.engine, decision=det.decision)
    lines = [
        "| audio | windows | occlusion: tiles | occlusion: passes | passes / s audio | "
        "integrated-gradients: steps | passes | passes / s audio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for d in durations:
        x = (0.1 * rng.standard_normal(int(d * 16000))).astype(np.float32)
        sc = Scorer(plain, x)
        left = DEFAULT_BUDGET - sc.passes
        grid = Occlusion().fit(x, plain, sc, left, DEFAULT_TILE_S, DEFAULT_BANDS)
        occ = Occlusion().cost(grid, sc) + sc.passes
        ig = IntegratedGradients()
        steps = ig.steps(sc, left)
        igp = steps * ig._per_step(sc) + sc.passes
        lines.append(
            f"| {d} s | {len(sc.spans)} | {grid.n_time} x {grid.n_bands} ({grid.tile_s:g} s) | "
            f"{occ} | {occ / d:.1f} | {steps} | {igp} | {igp / d:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="official_AASIST.pth")
    ap.add_argument("--realdev", type=Path, help="the realdev folder (labels.csv)")
    ap.add_argument("--n-realdev", type=int, default=10)
    ap.add_argument("--n-demo", type=int, default=4)
    ap.add_argument("--n-random-model", type=int, default=4, help="files for stage 4")
    ap.add_argument("--random-orders", type=int, default=2)
    ap.add_argument("--tile-s", type=float, default=1.01)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8, help="Integrated-Gradients steps")
    ap.add_argument("--out", type=Path, help="write every file's numbers here (JSON)")
    ap.add_argument("--cost-only", action="store_true", help="only the table of passes")
    a = ap.parse_args()
    from spoofscope.infer import Decision, Detector, WindowPolicy

    det = Detector.load(
        "aasist",
        weights=a.weights,
        engine="torch",
        windows=WindowPolicy(kind="official"),
        decision=Decision(vad="energy"),  # Silero hears no speech in the demo's synthesis
    )
    if a.cost_only:
        print(cost_table(det))
        return
    # occlusion: every tile; IG: --steps x (forward + backward) of the one window, + the audio's
    budgets = {"occlusion": 100_000, "integrated-gradients": 2 * a.steps + 1}
    files = pick_files(a.realdev, a.n_realdev, a.n_demo, det.window_samples)
    rng = np.random.default_rng(2)
    rows, t0 = [], time.perf_counter()
    # stage 4 on files spread evenly over the list (both sources)
    sanity = set(np.linspace(0, len(files) - 1, a.n_random_model).round().astype(int).tolist())
    for i, f in enumerate(files):
        expls = explain_file(det, f["x"], a.tile_s, a.bands, budgets)
        if expls is None:
            print(f"{f['name']}: no_speech, skipped", file=sys.stderr)
            continue
        row = {
            "name": f["name"],
            "source": f["source"],
            "label": f["label"],
            "verdict": expls["occlusion"].label,
            "seconds_audio": len(f["x"]) / 16000,
            "cost": {m: {"passes": e.passes, "seconds": e.seconds} for m, e in expls.items()},
            "curves": curves(det, f["x"], expls, a.tile_s, a.bands, a.random_orders, rng),
            "between_methods": spearman(
                expls["occlusion"].grid(), expls["integrated-gradients"].grid()
            ),
        }
        if i in sanity:
            row["randomised"] = randomised(det, f["x"], expls, a.tile_s, a.bands, budgets)
        rows.append(row)
        print(
            f"[{time.perf_counter() - t0:6.0f} s] {i + 1}/{len(files)} {f['name']}: "
            f"{json.dumps({k: row[k] for k in ('verdict', 'curves', 'randomised') if k in row})}",
            file=sys.stderr,
            flush=True,
        )
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))
    print(
        f"\n{len(rows)} files ({sum(r['source'] == 'realdev' for r in rows)} realdev, "
        f"{sum(r['source'] == 'demo' for r in rows)} demo), official AASIST, one "
        f"{det.window_samples}-sample window each, {a.tile_s:g}-s x {a.bands} band tiles, "
        f"IG {a.steps} steps, {a.random_orders} random orders; logit units, 95 % bootstrap "
        f"intervals over files; {cpu_name()}, {torch.get_num_threads()} thread(s), "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    print(report(rows, rng))
    rho = [r["between_methods"] for r in rows]
    print(f"\nSpearman between the two methods' maps: mean {np.mean(rho):.2f}")
    for src in ("realdev", "demo"):
        sub = [r for r in rows if r["source"] == src]
        if sub:
            print(f"\n{src} only ({len(sub)} files):\n")
            print(report(sub, rng))


if __name__ == "__main__":
    run_benchmark(main, "explain")
