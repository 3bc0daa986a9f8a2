"""``train``, ``adapt`` and ``score``: fitting models and scoring splits."""

from __future__ import annotations

from pathlib import Path

from ._common import FOLDS, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, _out_folder


def _cmd_train(a) -> int:
    from ..train import load_config, train

    _out_folder(a.out)

    cfg = load_config(a.config, a.overrides)
    if a.init:
        cfg.init = a.init
    res = train(cfg, a.data, a.out, resume=a.resume, progress=not a.quiet)
    if "report_text" in res:
        print(res["report_text"])
    print(f"run directory: {a.out}")
    return 0


def _cmd_adapt(a) -> int:

    from ..train import load_config
    from ..train.adapt import adapt

    _out_folder(a.out)
    recipe = a.recipe or Path(__file__).parents[1] / "recipes" / "adapt.yaml"
    cfg = load_config(recipe, a.overrides)
    r = adapt(
        a.model,
        a.data,
        a.out,
        cfg,
        weights=a.weights,
        folds=a.folds,
        hop_s=a.hop,
        engine=a.engine,
        procedure=a.procedure,
        progress=not a.quiet,
        bonafide_label=a.bonafide_label,
        vad=a.vad,
    )
    print(
        f"{a.model} on {r['n_bonafide']} bona fide and {r['n_spoof']} spoof files"
        + (f" ({len(r['skipped'])} unreadable, skipped)" if r["skipped"] else "")
        + (f" ({len(r['no_speech'])} without speech, left out)" if r["no_speech"] else "")
        + f": EER {r['eer_before_percent']:.2f} % before, {r['eer_after_percent']:.2f} % after "
        f"adaptation ({r['folds']}-fold nested cross-validation"
        + (", grouped: new sources" if r["grouped"] else "")
        + "; each file scored by models that never saw it)"
    )
    print(
        f"  probe {r['eer_probe_percent']:.2f} %, recipe {r['eer_recipe_percent']:.2f} %; chosen "
        f"per fold: {', '.join(f['chosen'] for f in r['per_fold'])}"
        + (
            f"; stratified folds: after {r['eer_stratified_percent']['after']:.2f} %"
            if r["eer_stratified_percent"]
            else ""
        )
    )
    print(f"  final model: {r['final']['how']} (chosen by: {r['final']['why']})")
    x = r["expected_unseen"]
    print(
        f"  expected EER on recordings like these: {x['eer_percent']:.1f} % (95 % interval "
        f"{x['interval_95_percent'][0]:.1f} - {x['interval_95_percent'][1]:.1f} %; about "
        f"{x['files_to_halve_interval']} files would halve it)"
    )
    # r["warnings"] were logged as they were found (stderr): not printed a second time
    print(
        f"adapted model: {Path(a.out) / 'model.ckpt'} (spoofscope detect --model ...); report: "
        f"{Path(a.out) / 'report.md'}"
    )
    return 0


def _cmd_score(a) -> int:
    from ..data import open_dataset
    from ..distributed import cleanup, init_distributed
    from ..evaluation import write_score_file
    from ..infer import make_engine, score_dataset
    from ..models import load_model

    info = init_distributed()
    model = load_model(a.checkpoint, weights=a.weights)
    engine = make_engine(model, a.engine, precision=a.precision, length=a.window_samples)
    ds = open_dataset(a.data, a.split, transform=None)
    scores = score_dataset(
        engine,
        ds.trials,
        window_samples=a.window_samples,
        batch_size=a.batch_size,
        num_workers=a.workers,
        info=info,
        progress=not a.quiet and info.is_main,
    )
    if info.is_main:
        t = ds.trials
        write_score_file(
            a.out, [x.utt_id for x in t], [x.attack for x in t], [x.label for x in t], scores
        )
        print(f"{len(t)} scores written to {a.out}")
    cleanup(info)
    return 0


def add_train(command) -> None:
    tr = command(
        "train",
        "train a countermeasure from a YAML recipe",
        "Train from a recipe (configs/*.yaml); key=value overrides after the options.",
    )
    tr.add_argument("config", help="YAML recipe (see configs/)")
    tr.add_argument("--data", required=True, help="dataset root (ASVspoof 2019 LA, demo, ...)")
    tr.add_argument("--out", required=True, help="run directory")
    tr.add_argument(
        "--init",
        help="start from these weights: NAME[:TAG] (published) or a checkpoint (the recipe's init)",
    )
    tr.add_argument("--resume", action="store_true", help="continue a stopped run")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=5")
    tr.set_defaults(func=_cmd_train)


def add_adapt(command) -> None:
    from ..infer.policy import ENGINES

    ad = command(
        "adapt",
        "adapt a pretrained detector to your labelled audio, with EER before and after",
        "Score your labelled files with the model, estimate the EER after adaptation by K-fold "
        "cross-validation, then adapt on all files and write DIR/model.ckpt (calibrated), "
        "DIR/report.json, report.md and det.png. Resumes when run again with the same DIR.",
    )
    ad.add_argument(
        "--model", default="aasist", help="NAME[:TAG], a checkpoint or hf:... to start from"
    )
    ad.add_argument("--weights", help="your own state_dict file for the architecture --model names")
    ad.add_argument("--bonafide-label", metavar="LABEL", help="for hf: models (see detect)")
    ad.add_argument(
        "--vad",
        choices=("silero", "energy"),
        help="speech detector, as for detect (default silero)",
    )
    ad.add_argument(
        "--data", required=True, help="a path,label[,group] CSV or a folder with bonafide/, spoof/"
    )
    ad.add_argument("--out", required=True, help="output folder")
    ad.add_argument("--folds", type=FOLDS, default=5, help="cross-validation folds (>= 2)")
    ad.add_argument(
        "--recipe", help="adaptation recipe (default: the packaged one; see configs/adapt-*.yaml)"
    )
    ad.add_argument("--hop", type=POSITIVE, default=2.0, help="seconds between windows")
    ad.add_argument("--engine", choices=ENGINES, default="auto", help="inference engine")
    ad.add_argument(
        "--procedure",
        choices=["auto", "probe", "recipe"],
        default="auto",
        help="the final layer: auto keeps the published layer or fits a logistic-regression "
        "probe on the embeddings, whichever a 10-fold inner cross-validation prefers (docs: "
        "Adapt to your recordings); probe or recipe (the recipe's retrained layer) forces one",
    )
    ad.add_argument("--quiet", action="store_true", help="no progress bar")
    ad.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    ad.set_defaults(func=_cmd_adapt)


def add_score(command) -> None:
    from ..infer.policy import ENGINES, PRECISIONS

    sc = command("score", "score a split with a model (torchrun-aware)")
    sc.add_argument(
        "--checkpoint", required=True, help="checkpoint, state_dict or NAME[:TAG] of a model"
    )
    sc.add_argument("--weights", help="your own state_dict for the architecture named")
    sc.add_argument(
        "--window-samples",
        type=POSITIVE_INT,
        help="fixed crop (default: the model card's window)",
    )
    sc.add_argument("--data", required=True, help="dataset root or CSV list")
    sc.add_argument("--split", default="eval", help="split to score")
    sc.add_argument("--out", required=True, help="score file to write")
    sc.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="trials per batch")
    sc.add_argument("--workers", type=NON_NEGATIVE_INT, default=0, help="data-loader processes")
    sc.add_argument("--engine", choices=ENGINES, default="auto", help="inference engine on the CPU")
    sc.add_argument("--precision", choices=PRECISIONS, default="fp32", help="numeric path")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(func=_cmd_score)
