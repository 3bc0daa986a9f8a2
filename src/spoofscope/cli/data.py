"""``data``, ``demo-data``, ``demo``, ``models`` and ``export``: datasets, the demo, the model
registry."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SpoofscopeError
from ._common import NON_NEGATIVE_INT, CLIError, _out_folder


def _cmd_data_download(a) -> int:
    from ..data import download_asvspoof2019_la, format_check

    if a.dataset != "asvspoof2019-la":
        raise CLIError(f"unknown dataset {a.dataset!r}; known: asvspoof2019-la")
    rep = download_asvspoof2019_la(
        a.dir, url=a.url, progress=not a.quiet, keep_archive=a.keep_archive
    )
    print(format_check(rep))
    return 0


def _cmd_data_check(a) -> int:
    from ..data import check_dataset, format_check

    rep = check_dataset(a.dir)
    print(json.dumps(rep, indent=2) if a.json else format_check(rep))
    missing = sum(r.get("missing_files", 0) for r in rep["splits"].values())
    return 1 if missing else 0


def _cmd_demo_data(a) -> int:
    from ..data.demo import make_demo_corpus

    counts = make_demo_corpus(a.out, seed=a.seed, speech_dir=a.speech_dir, progress=not a.quiet)
    for split, c in counts.items():
        print(
            f"{split:<5} {c['bonafide']} bona fide, {c['spoof']} spoof ({', '.join(c['attacks'])})"
        )
    print(f"demo corpus written to {a.out} (ASVspoof 2019 LA layout)")
    return 0


def _cmd_demo(a) -> int:
    import time
    from pathlib import Path

    from ..data.demo import make_demo_corpus
    from ..train import load_config, train

    out = _out_folder(a.out)
    t0 = time.time()
    data = out / "data"
    if not (data / "LA").is_dir():
        make_demo_corpus(data, seed=a.seed, progress=not a.quiet)
    recipe = Path(__file__).parents[1] / "recipes" / "demo.yaml"
    cfg = load_config(recipe, a.overrides)
    res = train(cfg, data, out, progress=not a.quiet)
    for name in ("eval_scores.txt", "report.json"):
        if not (out / name).is_file():
            raise CLIError(f"the demo did not produce {out / name}")
    print(res.get("report_text", ""))
    print(
        f"\n{cfg.model} trained on the demo corpus in {time.time() - t0:.0f} s; "
        f"scores in {out / 'eval_scores.txt'}, report in {out / 'report.json'}"
    )
    t1 = time.time()
    _demo_adaptation(out, data, cfg, progress=not a.quiet)
    print(f"adaptation in {time.time() - t1:.0f} s")
    t2 = time.time()
    _demo_localisation(out, data, cfg)
    print(f"localisation in {time.time() - t2:.0f} s; total {time.time() - t0:.0f} s")
    return 0


def _demo_localisation(out, data, cfg) -> None:
    """Where in the recording: D03 stretches spliced into bona fide eval recordings at a
    pause (seeded), judged by the trained model with a timeline every 0.5 s; range-based and
    utterance EER, and one example."""
    from ..data import open_dataset
    from ..data.demo import make_partial_spoofs
    from ..infer import Decision, Detector, WindowPolicy
    from ..metrics import range_eer, utterance_eer

    trials = open_dataset(data, "eval", transform=None).trials
    ps = make_partial_spoofs(trials, out / "partial", attack="D03", n=24, controls=8, seed=0)
    det = Detector.load(
        out / "final.ckpt", windows=WindowPolicy(hop_s=0.5), decision=Decision(vad="energy")
    )
    res = det.detect_many(ps["paths"])
    hyp = {
        Path(r.path).stem: [(t["start_s"], t["end_s"], t["score"]) for t in r.timeline] for r in res
    }
    rng_ = range_eer(ps["spoof"], ps["durations"], hyp)
    utt = utterance_eer(ps["spoof"], ps["durations"], hyp)
    n_part = sum(1 for v in ps["spoof"].values() if v)
    print(
        f"\nlocalisation: {n_part} bona fide eval recordings with a 1.5-3.0 s D03 stretch "
        f"spliced in at a pause, {len(res) - n_part} left whole; timeline every "
        f"{det.step_s:g} s ({det.window_samples}-sample windows):"
    )
    print(f"range-based EER {100 * rng_['eer']:.2f} %  (threshold {rng_['threshold']:.4f})")
    print(f"utterance EER   {100 * utt['eer']:.2f} %  (a file's lowest step)")
    r = res[0]
    ((a, b),) = ps["spoof"][Path(r.path).stem]
    print(f"example {Path(r.path).name}: D03 at {a:.2f}-{b:.2f} s; timeline (score per step):")
    print(
        "  "
        + " ".join(
            f"{t['start_s']:.1f}:" + ("-" if t["score"] is None else f"{t['score']:.2f}")
            for t in r.timeline
        )
    )
    print(f"  segments (threshold {det._threshold():.4f}):")
    for g in r.segments:
        print(f"  {g['start_s']:6.2f} - {g['end_s']:6.2f} s  {g['label']}")
    print(f"reference RTTM: {out / 'partial' / 'reference.rttm'}")


def _demo_adaptation(out, data, cfg, progress: bool) -> None:
    """The demo's last step: adapt the trained model with the labelled D04 sample (other
    speakers, disjoint from the eval trials), then score the same eval trials again."""
    from pathlib import Path

    from ..data import open_dataset
    from ..evaluation import evaluate_arrays
    from ..infer import score_dataset
    from ..models import load_model
    from ..train import load_config
    from ..train.adapt import adapt

    recipe = load_config(Path(__file__).parents[1] / "recipes" / "adapt.yaml")
    # the demo's speech is synthetic: a real speech detector does not take it for speech
    r = adapt(
        out / "final.ckpt", data / "adapt", out / "adapt", recipe, progress=progress, vad="energy"
    )
    trials = open_dataset(data, "eval", transform=None).trials
    labels = [t.label for t in trials]
    attacks = [t.attack for t in trials]
    reps = {}
    for when, ckpt in (("before", out / "final.ckpt"), ("after", out / "adapt" / "model.ckpt")):
        scores = score_dataset(
            load_model(ckpt), trials, window_samples=cfg.eval_samples, progress=progress
        )
        reps[when] = evaluate_arrays(scores, labels, attacks)
    b, a = reps["before"], reps["after"]
    print(
        f"\nadaptation to D04 with {r['n_bonafide']} bona fide and {r['n_spoof']} D04 files "
        f"of other speakers (final layer: {r['final']['procedure']}; none of them is an eval "
        "trial):\n"
    )
    print(f"{'':<28}{'before':>9}{'after':>9}")
    print(f"{'eval EER %':<28}{b.eer_percent:9.2f}{a.eer_percent:9.2f}")
    for k in b.per_attack_eer_percent:
        print(
            f"{'  ' + k + ' EER %':<28}{b.per_attack_eer_percent[k]:9.2f}"
            f"{a.per_attack_eer_percent[k]:9.2f}"
        )
    print(
        f"{'adapt sample EER % (5-fold)':<28}{r['eer_before_percent']:9.2f}"
        f"{r['eer_after_percent']:9.2f}   (nested: probe {r['eer_probe_percent']:.2f}, "
        f"recipe {r['eer_recipe_percent']:.2f})"
    )
    print(f"\nadapted model: {out / 'adapt' / 'model.ckpt'}; report: {out / 'adapt' / 'report.md'}")


def _cmd_models(a) -> int:
    import torch

    from ..models import create_model, get_card, list_models, weights_status
    from ..models._pretrained import PACKAGED_NOTICE

    rows = []
    for name in list_models():
        card = get_card(name)
        status = weights_status(name)
        try:
            with torch.device("meta"):  # shapes only: no memory, no initialisation
                m = create_model(name)
        except (ImportError, SpoofscopeError):  # no transformers; hf-classifier needs hf:...
            params = backend = min_len = None
        else:
            params = sum(p.numel() for p in m.parameters())
            backend = sum(
                p.numel() for k, p in m.named_parameters() if not k.startswith("ssl_model.")
            )
            min_len = m.card.min_length
        rows.append(
            {
                "name": name,
                "family": card.family,
                "parameters": params,
                "backend_parameters": backend,
                "encoder": card.encoder,
                "sample_rate": card.sample_rate,
                "window_samples": card.window_samples,
                "min_length": min_len,
                "export": card.export,
                "weights": {t: w.filename for t, w in card.weights.items()},
                "weights_status": status,
                # the licence notice shipped beside packaged weights
                "notice_file": str(PACKAGED_NOTICE) if status == "packaged" else None,
                "training_data": card.training_data,
                "published_results": card.published_results,
                "licence": card.licence,
                "licence_class": card.licence_class,
                "notes": card.notes,
            }
        )
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    w = max(13, *(len(r["name"]) for r in rows))
    print(
        f"{'model':<{w}} {'params':>13} {'back-end':>11} {'window':>6} {'export':<7} "
        f"{'weights (tags)':<22} trained on"
    )
    for r in rows:
        tags = ",".join(r["weights"])
        weights = f"{r['weights_status']} ({tags})" if tags else "none"
        n = "?" if r["parameters"] is None else f"{r['parameters']:,}"
        nb = "?" if r["backend_parameters"] is None else f"{r['backend_parameters']:,}"
        print(
            f"{r['name']:<{w}} {n:>13} {nb:>11} "
            f"{r['window_samples']:>6} {r['export']:<7} {weights:<22} {r['training_data']}"
        )
        print(
            f"{'':<{w}} input: {r['sample_rate']} Hz"
            + (f", {r['encoder']}" if r["encoder"] else "")
            + f"; published: {r['published_results'] or '-'}"
        )
        notice = f"; notice: {r['notice_file']}" if r["notice_file"] else ""
        print(f"{'':<{w}} licence: {r['licence_class']} ({r['licence'] or 'none stated'}){notice}")
    print(
        "\n'published' numbers are the authors', not spoofscope's. Cost per 4-s window on a CPU "
        "and which model to use: docs/models/which.md in the repository (python "
        "benchmarks/model_costs.py measures this machine). Any transformers audio classifier: "
        "--model hf:OWNER/REPO"
    )
    return 0


def _cmd_models_fetch(a) -> int:
    from ..models._pretrained import PACKAGED_DIR, resolve_weights, split_tag

    name, tag = split_tag(a.model)
    path = resolve_weights(name, tag, url=a.url)
    where = "packaged with spoofscope, nothing to download" if path.parent == PACKAGED_DIR else ""
    print(f"{a.model}: {path} (sha256 verified{'; ' + where if where else ''})")
    return 0


def _cmd_export(a) -> int:
    import numpy as np

    from ..export import check_onnx, export_onnx
    from ..models import create_model, load_model

    if a.format != "onnx":
        raise CLIError("only --format onnx is supported")
    if a.random_init:
        model = create_model(a.model)
    else:
        model = load_model(a.model, weights=a.weights, config=a.config)
    export_onnx(model, a.out)
    n = model.card.window_samples
    x = (np.random.default_rng(0).standard_normal((2, n)) * 0.1).astype(np.float32)
    diff = check_onnx(model, a.out, x)
    print(
        f"exported {a.out} ({model.card.name}, export {model.card.export}, window {n} samples); "
        f"onnxruntime agrees with PyTorch to {diff:.2e}"
    )
    return 0


def add_data(command) -> None:
    from ..data.download import ASVSPOOF2019_LA_URL

    d = command("data", "download and check datasets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = command("download", "fetch, check and unpack a dataset", parent=dsub)
    dl.add_argument("dataset", help="asvspoof2019-la")
    dl.add_argument("dir", help="where to unpack it")
    dl.add_argument("--url", default=ASVSPOOF2019_LA_URL, help="archive URL (a mirror)")
    dl.add_argument("--keep-archive", action="store_true", help="keep LA.zip after unpacking")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_cmd_data_download)
    dc = command(
        "check", "report the splits, trials, attacks and missing files of a dataset", parent=dsub
    )
    dc.add_argument("dir", help="dataset root (any known format) or a CSV list")
    dc.add_argument("--json", action="store_true", help="print one JSON object")
    dc.set_defaults(func=_cmd_data_check)


def add_export(command) -> None:
    ex = command("export", "export a model to ONNX (checked against PyTorch)")
    ex.add_argument(
        "--model", required=True, help="NAME[:TAG] (published weights), checkpoint or state_dict"
    )
    ex.add_argument("--weights", help="your own state_dict for the architecture --model names")
    ex.add_argument("--config", help="official AASIST .conf/model_config for a state_dict")
    ex.add_argument("--random-init", action="store_true", help="export freshly initialised weights")
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    ex.add_argument("out", help="file to write")
    ex.set_defaults(func=_cmd_export)


def add_demo_data(command) -> None:
    dd = command("demo-data", "write the offline demo corpus (ASVspoof 2019 layout)")
    dd.add_argument("out", help="folder to write")
    dd.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="random seed")
    dd.add_argument("--speech-dir", help="use real recordings as bona fide speech")
    dd.add_argument("--quiet", action="store_true", help="no progress bar")
    dd.set_defaults(func=_cmd_demo_data)


def add_demo(command) -> None:
    de = command("demo", "demo corpus -> train -> evaluate, on the CPU")
    de.add_argument("--out", default="spoofscope-demo", help="folder for the corpus and run")
    de.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="corpus seed")
    de.add_argument("--quiet", action="store_true", help="no progress bars")
    de.add_argument("overrides", nargs="*", help="key=value overrides of the demo recipe")
    de.set_defaults(func=_cmd_demo)


def add_models(command) -> None:
    mo = command("models", "list the registered models, their cards and weights")
    mo.add_argument("--json", action="store_true", help="one JSON object per model")
    mo.set_defaults(func=_cmd_models)
    msub = mo.add_subparsers(dest="models_command", metavar="ACTION")
    mf = command("fetch", "download and verify published weights into the cache", parent=msub)
    mf.add_argument("model", help="NAME[:TAG]")
    mf.add_argument(
        "--url", help="a mirror of the file, or a path to a copy (still checked against the sha256)"
    )
    mf.set_defaults(func=_cmd_models_fetch)
