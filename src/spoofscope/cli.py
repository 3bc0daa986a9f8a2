"""The ``spoofscope`` command line: thin sub-commands over the modules."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from pathlib import Path

from .errors import SpoofscopeError


class CLIError(SpoofscopeError):
    """An error the CLI prints as one line, then exits with status 2."""


def _rttm_durations(rows: dict) -> dict:
    """A file's duration as its RTTM covers it: the end of its last segment."""
    return {f: max(b for _, b, _ in r) for f, r in rows.items()}


def _read_hypothesis(path) -> tuple[dict, dict]:
    """Timelines from ``detect --json`` output (one object per line, or a list) or an RTTM
    (spoof stretches scored -1, bona fide +1): ``({file: [(start, end, score)]}, {file:
    duration})``."""
    from .metrics.localisation import read_rttm

    text = Path(path).read_text()
    if text.lstrip().startswith(("{", "[")):
        try:
            objs = (
                json.loads(text)
                if text.lstrip().startswith("[")
                else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
            )
        except ValueError as e:
            raise CLIError(f"{path}: not detect --json output ({e})") from None
        hyp, durs = {}, {}
        for o in objs:
            if o.get("error"):
                continue
            uid = Path(o["path"]).stem
            hyp[uid] = [(t["start_s"], t["end_s"], t["score"]) for t in o.get("timeline") or []]
            durs[uid] = o["duration_s"]
        return hyp, durs
    try:
        rows = read_rttm(path)
    except ValueError as e:
        raise CLIError(str(e)) from None
    score = {"spoof": -1.0, "fake": -1.0}
    hyp = {f: [(a, b, score.get(lab.lower(), 1.0)) for a, b, lab in r] for f, r in rows.items()}
    return hyp, _rttm_durations(rows)


def _cmd_evaluate_localisation(a) -> int:
    from .metrics import range_eer, segment_eer, utterance_eer
    from .metrics.localisation import read_partialspoof_labels, read_rttm, spoof_stretches

    if str(a.reference).endswith(".npy"):
        ref, ref_durs = read_partialspoof_labels(a.reference, a.label_resolution)
    else:
        try:
            rows = read_rttm(a.reference)
        except ValueError as e:
            raise CLIError(str(e)) from None
        ref = spoof_stretches(rows)
        ref_durs = _rttm_durations(rows)
    hyp, hyp_durs = _read_hypothesis(a.hypothesis)
    durations = {f: hyp_durs.get(f, ref_durs.get(f)) for f in set(ref_durs) | set(hyp_durs)}
    missing = sorted(f for f in ref_durs if f not in hyp)
    if missing:
        raise CLIError(
            f"{len(missing)} file(s) of the reference are not in {a.hypothesis}: "
            + ", ".join(missing[:5])
        )
    durations = {f: durations[f] for f in ref_durs}
    try:
        out = {
            "files": len(durations),
            "partially_spoofed": sum(1 for f in durations if ref.get(f)),
            "range_eer": range_eer(ref, durations, hyp),
            "utterance_eer": utterance_eer(ref, durations, hyp)
            if any(ref.get(f) for f in durations) and not all(ref.get(f) for f in durations)
            else None,
            "segment_eer": {f"{r:g}": segment_eer(ref, durations, hyp, r) for r in a.resolutions},
        }
    except ValueError as e:
        raise CLIError(str(e)) from None
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    r = out["range_eer"]
    print(f"files            {out['files']} ({out['partially_spoofed']} with spoofed stretches)")
    print(
        f"range-based EER  {100 * r['eer']:.2f} %  (threshold {r['threshold']:.4f}; "
        f"{r['spoof_s']:.1f} s spoof, {r['bonafide_s']:.1f} s bona fide)"
    )
    for res, v in out["segment_eer"].items():
        print(
            f"segment EER {res:>5} s  {100 * v['eer']:.2f} %  ({v['n_spoof']} spoof units, "
            f"{v['n_bonafide']} bona fide)"
        )
    if out["utterance_eer"]:
        print(f"utterance EER    {100 * out['utterance_eer']['eer']:.2f} %")
    return 0


def _cmd_evaluate(a) -> int:
    from .evaluation import evaluate_score_file
    from .metrics.det_plot import plot_det

    if a.reference or a.hypothesis:
        if not (a.reference and a.hypothesis):
            raise CLIError("localisation needs both --reference and --hypothesis")
        return _cmd_evaluate_localisation(a)
    if not (a.scores and a.protocol):
        raise CLIError("give --scores and --protocol (or --reference and --hypothesis)")

    rep, bona, spoof = evaluate_score_file(
        a.scores, a.protocol, a.asv_scores, lower_is_bonafide=a.lower_is_bonafide
    )
    if a.det_plot:
        plot_det(bona, spoof, a.det_plot, title=f"DET: {a.scores}")
    if a.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(rep.to_text())
        if a.det_plot:
            print(f"\nDET curve written to {a.det_plot}")
    return 0


def _cmd_data_download(a) -> int:
    from .data import download_asvspoof2019_la, format_check

    if a.dataset != "asvspoof2019-la":
        raise CLIError(f"unknown dataset {a.dataset!r}; known: asvspoof2019-la")
    rep = download_asvspoof2019_la(
        a.dir, url=a.url, progress=not a.quiet, keep_archive=a.keep_archive
    )
    print(format_check(rep))
    return 0


def _cmd_data_check(a) -> int:
    from .data import check_dataset, format_check

    rep = check_dataset(a.dir)
    print(json.dumps(rep, indent=2) if a.json else format_check(rep))
    missing = sum(r.get("missing_files", 0) for r in rep["splits"].values())
    return 1 if missing else 0


AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".webm", ".mp4")


def _expand_inputs(paths, recursive: bool) -> list[str]:
    from pathlib import Path

    out = []
    for p in paths:
        q = Path(p)
        if q.is_dir():
            it = q.rglob("*") if recursive else q.glob("*")
            out += sorted(str(f) for f in it if f.is_file() and f.suffix.lower() in AUDIO_EXTS)
        else:
            out.append(p)  # a missing file is reported in its own row
    return out


def _build_detector(a, max_duration_s: float | None = None):
    from .infer import Decision, Detector, Limits, WindowPolicy

    return Detector.load(
        a.model,
        weights=a.weights,
        bonafide_label=a.bonafide_label,
        config=a.config,
        engine=a.engine,
        precision=a.precision,
        calibration=a.calibration,
        windows=WindowPolicy(
            kind=a.window,
            samples=a.window_samples,
            hop_s=a.hop
            or (0.5 if getattr(a, "segments", False) or getattr(a, "rttm", None) else 2.0),
            aggregate=a.aggregate,
        ),
        decision=Decision(
            threshold=a.threshold,
            min_speech_s=a.min_speech,
            **({"vad": a.vad} if a.vad else {}),
        ),
        limits=Limits(batch_size=a.batch_size, max_duration_s=max_duration_s),
    )


def _model_notices(det) -> list[str]:
    """What a user must read before trusting the model's verdicts, printed once at start:
    the licence of non-commercial weights, and the card's notes (training data, known
    misses)."""
    card = det.card
    out = []
    if card.licence_class == "non-commercial":
        out.append(
            f"{det.name}: non-commercial licence: {card.licence}. Use it for research and "
            "non-commercial work only"
        )
    if card.notes:
        out.append(f"{det.name}: {card.notes}")
    return out


class _AudioProgress:
    """A progress bar in seconds of audio. Each file counts for what its header declares; a
    file that stops short (refused, truncated) takes its unread part out of the total and one
    that runs longer adds to it, so the bar ends at exactly 100 %."""

    def __init__(self, durations, disable: bool):
        from tqdm.auto import tqdm

        self.expected = [d or 0.0 for d in durations]
        self.done = [0.0] * len(durations)
        self.bar = tqdm(
            total=sum(self.expected),
            unit="s",
            unit_scale=False,
            desc="audio",
            disable=disable,
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def reached(self, i: int, seconds: float) -> None:
        """File ``i`` has been read up to ``seconds``."""
        if seconds > self.expected[i]:  # more audio than the header said
            self.bar.total += seconds - self.expected[i]
            self.expected[i] = seconds
        step = seconds - self.done[i]
        if step > 0:
            self.done[i] = seconds
            self.bar.update(min(step, self.bar.total - self.bar.n))

    def finished(self, i: int, ok: bool) -> None:
        """File ``i`` is done: all of it (``ok``), or only what was read."""
        if ok:
            self.reached(i, self.expected[i])
        else:
            self.bar.total = max(self.bar.total - (self.expected[i] - self.done[i]), self.bar.n)
            self.expected[i] = self.done[i]
        self.bar.refresh()


def _cmd_detect(a) -> int:
    import csv

    from .audio import probe_duration

    if a.stream:
        return _detect_stream(a)
    if a.ray is not None:
        return _detect_ray(a)
    inputs = _expand_inputs(a.paths, a.recursive)
    if not inputs:
        raise CLIError("no audio files found (use --recursive to walk sub-folders)")
    det = _build_detector(a)
    for line in _model_notices(det):
        print(f"note: {line}", file=sys.stderr)
    # progress in seconds of audio (files' headers give the total), so that one long file
    # shows progress too
    durations = [None if a.quiet or not Path(p).is_file() else probe_duration(p) for p in inputs]
    results = []
    with _AudioProgress(durations, disable=a.quiet) as bar:
        for r in det.iter_detect(inputs, progress=bar.reached):
            bar.finished(len(results), ok=r.error is None)
            results.append(r)
    if a.json:
        for r in results:
            print(json.dumps(r.to_dict()))
    else:
        w = max(len(r.path) for r in results)
        print(
            f"{'file':<{w}}  {'label':<9} {'score':>9} {'p_bonafide':>10} {'conf':>5} "
            f"{'dur_s':>7} {'speech_s':>8}"
        )
        for r in results:
            if r.error:
                print(f"{r.path:<{w}}  ERROR     {r.error}")
            elif r.label == "no_speech":
                print(
                    f"{r.path:<{w}}  {r.label:<9} {'-':>9} {'-':>10} {'-':>5} "
                    f"{r.duration_s:7.2f} {r.speech_s:8.2f}  ({r.reason})"
                )
            else:
                conf = {True: "yes", False: "LOW", None: "-"}[r.confident]
                print(
                    f"{r.path:<{w}}  {r.label:<9} {r.score:9.4f} {r.p_bonafide:10.4f} "
                    f"{conf:>5} {r.duration_s:7.2f} {r.speech_s:8.2f}"
                )
                if a.segments:
                    print(f"{'':<{w}}  spoofed {r.spoofed_s:.2f} s of {r.duration_s:.2f} s:")
                    for g in r.segments:
                        sc = "-" if g["score"] is None else f"{g['score']:.4f}"
                        print(
                            f"{'':<{w}}    {g['start_s']:8.2f} - {g['end_s']:8.2f} s  "
                            f"{g['label']:<9} {sc:>9}"
                        )
        note = det.confidence_note()
        if note and any(r.label in ("bonafide", "spoof") for r in results):
            print(f"(conf '-': {note})")
    if a.rttm:
        from .metrics.localisation import write_rttm

        with open(a.rttm, "w") as fh:
            for r in results:
                if r.segments:
                    write_rttm(fh, Path(r.path).stem, r.segments)
    if a.csv:
        cols = [
            "path",
            "label",
            "score",
            "p_bonafide",
            "confident",
            "duration_s",
            "speech_s",
            "window_samples",
            "reason",
            "error",
        ] + (["start_s", "end_s"] if a.segments else [])

        def cell(v):  # lower-case booleans, empty for missing values
            return "" if v is None else str(v).lower() if isinstance(v, bool) else v

        with open(a.csv, "w", newline="") as f:
            cw = csv.writer(f)
            cw.writerow(cols)
            for r in results:
                d = r.to_dict()
                cw.writerow([cell(d.get(c)) for c in cols])
                for g in r.segments if a.segments else []:  # one row per segment
                    cw.writerow([cell({"path": r.path, **g}.get(c)) for c in cols])
    return 1 if any(r.error for r in results) else 0


#: what ``--ray VALUE`` takes for a cluster address rather than for the first input
_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.-]+:\d+)$")


def _detect_ray(a) -> int:
    """``detect --ray [ADDRESS] INPUTS --out RESULTS/``: an archive on a Ray cluster, results
    as Parquet shards (resumable)."""
    import functools

    from .infer.ray import score_files

    address, paths = a.ray, list(a.paths)
    if address != "auto" and not _RAY_ADDRESS.match(address):  # --ray then the first input
        paths, address = [address, *paths], "auto"
    if not a.out:
        raise CLIError("--ray writes Parquet shards: give the results folder with --out")
    if a.json or a.csv or a.rttm or a.segments:
        raise CLIError("--ray writes its results to --out (Parquet); drop --json/--csv/--rttm")
    try:
        import ray
    except ImportError:
        raise CLIError("--ray needs Ray: pip install 'spoofscope[ray]'") from None
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        address = None  # no cluster named: start a local one
    elif address == "local":
        address = None
    logging.getLogger("ray").setLevel(logging.WARNING)
    try:
        s = score_files(
            paths,
            a.out,
            functools.partial(_build_detector, a),
            address=address,
            actors=a.actors,
            recursive=a.recursive,
            progress=not a.quiet,
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
    print(
        f"{s['files']} files: {s['skipped']} already in {a.out}, {s['scored']} scored now "
        f"({s['errors']} errors), {s['audio_hours']:.3f} h of audio in {s['seconds']:.1f} s; "
        f"shards: {', '.join(s['shards']) or 'none new'}"
    )
    return 1 if s["errors"] else 0


def _detect_stream(a) -> int:
    """``detect --stream -``: audio on standard input (raw samples, or any container FFmpeg
    reads from a pipe), judged as it arrives; a line per window with the running verdict, a
    line per settled segment, then the result of the whole stream."""
    from .audio import RAW_FORMATS, AudioError, RawDecoder, pipe_blocks, sniff_container

    if a.paths != ["-"]:
        raise CLIError("--stream reads standard input: give '-' as the only input")
    det = _build_detector(a)
    for line in _model_notices(det):
        print(f"note: {line}", file=sys.stderr)
    src = sys.stdin.buffer
    head = src.read1(65536) if hasattr(src, "read1") else src.read(65536)
    fmt = a.input_format
    if fmt == "auto":
        fmt = "container" if sniff_container(head) else "s16le"
        if fmt == "s16le":
            print(
                f"note: no container header on standard input: reading raw 16-bit samples at "
                f"{a.input_rate or det.sample_rate} Hz, {a.channels} channel(s) (set "
                "--input-format and --input-rate if that is not what is sent)",
                file=sys.stderr,
            )
    if fmt == "container":
        rate, pieces = pipe_blocks(head, src)
    else:
        decode = RawDecoder(fmt, a.channels)
        rate = a.input_rate or det.sample_rate
        block = max(1, rate // 4) * RAW_FORMATS[fmt] * a.channels  # 0.25 s

        def raw():
            data = head
            while data:
                yield decode(data)
                data = src.read(block)

        pieces = raw()
    stream = det.stream(sample_rate=rate, name="<stdin>")

    def show(events):
        for e in events:
            if a.json:
                print(json.dumps(e), flush=True)
            elif e["type"] == "segment":
                print(f"{e['start_s']:8.2f}-{e['end_s']:8.2f} s  segment: {e['label']}", flush=True)
            else:
                sc = "silent" if e["score"] is None else f"{e['score']:9.4f}"
                so = "-" if e["label"] is None else f"{e['label']} (p {e['p_bonafide']:.3f})"
                print(f"{e['start_s']:8.2f}-{e['end_s']:8.2f} s  {sc:>9}  so far: {so}", flush=True)

    broken = None
    try:
        for x in pieces:
            show(stream.feed(x))
    except AudioError as e:  # what was judged before the damage still gets its result
        broken = e
        print(f"error: {e}; the result below covers the audio before it", file=sys.stderr)
    r = stream.close()
    show(stream.last_events)
    if a.json:
        print(json.dumps({"type": "summary", **r.to_dict()}))
    elif r.error:
        print(f"<stdin>  ERROR     {r.error}")
    elif r.label == "no_speech":
        print(f"<stdin>  no_speech  {r.duration_s:.2f} s  ({r.reason})")
    else:
        conf = {True: "yes", False: "LOW", None: "-"}[r.confident]
        print(
            f"<stdin>  {r.label}  score {r.score:.4f}  p_bonafide {r.p_bonafide:.4f}  conf "
            f"{conf}  {r.duration_s:.2f} s, {r.speech_s:.2f} s speech, spoofed {r.spoofed_s:.2f} s"
        )
    return 1 if (r.error or broken) else 0


def _cmd_calibrate(a) -> int:
    from .data.protocols import read_protocol
    from .evaluation import join_scores, read_score_file
    from .infer.calibration import Calibration, calibration_path_beside

    trials = read_protocol(a.protocol)
    s, labels, _ = join_scores(read_score_file(a.scores), trials, a.scores, a.protocol)
    cal = Calibration.fit(
        s[labels == 1],
        s[labels != 1],
        prior=a.prior,
        target_far=a.target_far,
        band=a.band,
        fitted_on=f"{Path(a.scores).name} against {Path(a.protocol).name}: "
        f"{int((labels == 1).sum())} bona fide and {int((labels != 1).sum())} spoof trials",
        domain=a.domain,
    )
    if a.use == "far":
        cal.threshold = cal.far_threshold
    out = a.out
    if a.attach:
        import torch

        from .models import read_checkpoint

        ckpt = read_checkpoint(a.attach)
        ckpt["calibration"] = cal.to_dict()
        torch.save(ckpt, a.attach)
        out = out or str(calibration_path_beside(a.attach))
    if not out:
        raise CLIError("give --out FILE (or --attach CHECKPOINT)")
    cal.save(out)
    r = cal.report
    print(f"calibration written to {out}" + (f" and attached to {a.attach}" if a.attach else ""))
    print(f"llr = {cal.a:.6g} * score + {cal.b:.6g}   (prior {cal.prior})")
    print(
        f"EER threshold {cal.eer_threshold:.6g} (EER {r['eer_percent']:.3f} %); "
        f"threshold at FAR {cal.target_far:g}: {cal.far_threshold:.6g} "
        f"(FAR {r['far_at_far_threshold']:.4f}, FRR {r['frr_at_far_threshold']:.4f})"
    )
    print(f"Cllr   {r['cllr_before']:.4f} -> {r['cllr_after']:.4f} bits")
    print(f"actDCF {r['act_dcf_before']:.4f} -> {r['act_dcf_after']:.4f}")
    return 0


def _cmd_fuse(a) -> int:
    import numpy as np

    from .data.protocols import read_protocol
    from .evaluation import evaluate_arrays, join_scores, read_score_file, write_score_file
    from .infer.fusion import Fusion

    trials = read_protocol(a.protocol)
    cols, labels, attacks = [], None, None
    for f in a.scores:
        s, labels, attacks = join_scores(read_score_file(f), trials, f, a.protocol)
        cols.append(s)
    dev_scores = np.stack(cols, 1)
    fusion = Fusion.fit(dev_scores, labels, systems=list(a.scores))
    fusion.save(a.out)

    def eer(s):
        return f"{evaluate_arrays(s, labels, attacks).eer_percent:.4f} %"

    print(f"fusion written to {a.out}: weights {fusion.weights}, bias {fusion.bias:.6g}")
    print(
        f"dev EER fused {eer(fusion.apply(dev_scores))} (single systems: "
        + ", ".join(eer(c) for c in cols)
        + ")"
    )
    if a.apply:
        if len(a.apply) != len(a.scores):
            raise CLIError(f"--apply needs {len(a.scores)} eval score files, one per system")
        if not a.eval_protocol or not a.eval_out:
            raise CLIError("--apply needs --eval-protocol and --eval-out")
        etrials = read_protocol(a.eval_protocol)
        ecols = []
        for f in a.apply:
            s, elabels, eattacks = join_scores(read_score_file(f), etrials, f, a.eval_protocol)
            ecols.append(s)
        fused = fusion.apply(np.stack(ecols, 1))
        write_score_file(
            a.eval_out,
            [t.utt_id for t in etrials],
            [t.attack for t in etrials],
            [t.label for t in etrials],
            fused,
        )
        print(f"fused eval scores written to {a.eval_out}")
    return 0


def _cmd_export(a) -> int:
    import numpy as np

    from .export import check_onnx, export_onnx
    from .models import create_model, load_model

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


def _out_folder(path) -> Path:
    """``--out``: a folder, new or existing; an existing file there is named, not hit as
    errno 17 deep inside."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"--out {p} is an existing file; give a folder (new or existing)")
    return p


def _cmd_train(a) -> int:
    from .train import load_config, train

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
    from pathlib import Path

    from .train import load_config
    from .train.adapt import adapt

    _out_folder(a.out)
    recipe = a.recipe or Path(__file__).parent / "recipes" / "adapt.yaml"
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
    print(f"  final model: {r['final']['how']}")
    # r["warnings"] were logged as they were found (stderr): not printed a second time
    print(
        f"adapted model: {Path(a.out) / 'model.ckpt'} (spoofscope detect --model ...); report: "
        f"{Path(a.out) / 'report.md'}"
    )
    return 0


def _cmd_score(a) -> int:
    from .data import open_dataset
    from .distributed import cleanup, init_distributed
    from .evaluation import write_score_file
    from .infer import make_engine, score_dataset
    from .models import load_model

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


def _cmd_demo_data(a) -> int:
    from .data.demo import make_demo_corpus

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

    from .data.demo import make_demo_corpus
    from .train import load_config, train

    out = _out_folder(a.out)
    t0 = time.time()
    data = out / "data"
    if not (data / "LA").is_dir():
        make_demo_corpus(data, seed=a.seed, progress=not a.quiet)
    recipe = Path(__file__).parent / "recipes" / "demo.yaml"
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
    from .data import open_dataset
    from .data.demo import make_partial_spoofs
    from .infer import Decision, Detector, WindowPolicy
    from .metrics import range_eer, utterance_eer

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

    from .data import open_dataset
    from .evaluation import evaluate_arrays
    from .infer import score_dataset
    from .models import load_model
    from .train import load_config
    from .train.adapt import adapt

    recipe = load_config(Path(__file__).parent / "recipes" / "adapt.yaml")
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


def _cmd_serve(a) -> int:
    from . import __version__
    from .serve import ServiceSettings, create_app, load_api_keys, run_service

    try:
        det = _build_detector(a, max_duration_s=a.max_duration)
    except (SpoofscopeError, OSError) as e:  # fail fast, with the reason, before serving
        raise CLIError(f"cannot load the model: {e}") from None
    settings = ServiceSettings(
        max_upload_bytes=int(a.max_upload_mb * 1024 * 1024),
        max_duration_s=a.max_duration,
        workers=a.workers,
        queue_size=a.queue_size,
        api_keys=load_api_keys(a.api_keys_file),
        audit_db=a.audit_db,
        model_version=__version__,
        request_timeout_s=a.request_timeout,
        max_batch_audio_s=a.max_batch_seconds,
        long_audio_s=a.long_audio,
        max_streams=a.max_streams,
        max_stream_s=a.max_stream,
        stream_idle_s=a.stream_idle,
        stream_max_lag_s=a.stream_max_lag,
        stream_hop_s=a.stream_hop,
        replica=a.replica or "",
    )
    app = create_app(det, settings)
    logging.getLogger("spoofscope.serve").setLevel(logging.WARNING if a.quiet else logging.INFO)
    for line in _model_notices(det):  # the licence binds whoever runs the service
        print(f"note: {line}", file=sys.stderr, flush=True)
    if not a.quiet:
        print(
            f"spoofscope serve: http://{a.host}:{a.port} model {app.state.model_name} "
            f"(engine {det.engine.name}, window {det.window_samples} samples); limits: upload "
            f"{a.max_upload_mb:g} MB, audio {a.max_duration:g} s per file and "
            f"{a.max_batch_seconds:g} s per batch, {a.request_timeout:g} s per request, "
            f"{a.workers} worker(s) + 1 long-audio lane, queue {a.queue_size}; API keys "
            f"{'required' if settings.api_keys is not None else 'off'}; audit "
            f"{app.state.audit.path if app.state.audit else 'off'}",
            file=sys.stderr,
            flush=True,
        )
    # SIGTERM/SIGINT: stop accepting, let requests in flight finish for the grace period,
    # then stop them (503 shutting_down, audited) and exit with status 0. uvicorn re-raises
    # the signal after its shutdown: a handler of ours takes it.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    run_service(app, a.host, a.port, a.shutdown_grace)
    return 0


def _cmd_models(a) -> int:
    import torch

    from .models import create_model, get_card, list_models, weights_status

    rows = []
    for name in list_models():
        card = get_card(name)
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
                "weights_status": weights_status(name),
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
        print(f"{'':<{w}} licence: {r['licence_class']} ({r['licence'] or 'none stated'})")
    print(
        "\n'published' numbers are the authors', not spoofscope's. Cost per 4-s window on a CPU "
        "and which model to use: README, 'Which model should I use?' (python "
        "benchmarks/model_costs.py measures this machine). Any transformers audio classifier: "
        "--model hf:OWNER/REPO"
    )
    return 0


def _cmd_models_fetch(a) -> int:
    from .models._pretrained import resolve_weights, split_tag

    name, tag = split_tag(a.model)
    path = resolve_weights(name, tag, url=a.url)
    print(f"{a.model}: {path} (sha256 verified)")
    return 0


def _cmd_audit(a) -> int:
    from .serve.audit import format_summary, summarize

    s = summarize(a.db, a.since, a.until)
    print(json.dumps(s, indent=2) if a.json else format_summary(s))
    return 0


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where there is a default worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2) and defaults shown in the help."""

    def __init__(self, *a, **k):
        k.setdefault("formatter_class", _Help)
        super().__init__(*a, **k)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False, what="a number"):
    """An argparse type: a finite ``kind`` within the bounds, else a one-line error."""

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise argparse.ArgumentTypeError(f"{text} must be {'<' if hi_open else '<='} {hi}")
        return v

    return parse


POSITIVE = _number(float, 0, lo_open=True, what="a positive number")
NON_NEGATIVE = _number(float, 0, what="a number >= 0")
FINITE = _number(float, what="a number")
POSITIVE_INT = _number(int, 1, what="an integer >= 1")
FOLDS = _number(int, 2, what="an integer >= 2")
NON_NEGATIVE_INT = _number(int, 0, what="an integer >= 0")
PROBABILITY = _number(float, 0, 1, lo_open=True, hi_open=True, what="a probability in (0, 1)")
BAND = _number(float, 0, 0.5, what="a probability half-width in [0, 0.5]")
PORT = _number(int, 1, 65535, what="a TCP port")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data.download import ASVSPOOF2019_LA_URL
    from .infer.engines import ENGINES, PRECISIONS
    from .infer.policy import AGGREGATES, WINDOW_KINDS

    p = _Parser(
        prog="spoofscope", description="Spoofed-speech countermeasures and ASVspoof evaluation."
    )
    p.add_argument("--version", action="version", version=f"spoofscope {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of every error, ours too"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, description=None, parent=sub):
        return parent.add_parser(name, help=help, description=description or help)

    e = command(
        "evaluate",
        "EER, min t-DCF and per-attack EER of a CM score file",
        "Official EER, min t-DCF (with ASV scores) and per-attack EER of a CM score file "
        "against a labelled protocol.",
    )
    e.add_argument(
        "--scores",
        help="CM scores: 'UTT ATTACK KEY SCORE' (official) or 'UTT SCORE' lines",
    )
    e.add_argument("--protocol", help="labelled CM protocol of the same trials")
    e.add_argument(
        "--reference",
        metavar="RTTM|NPY",
        help="localisation: the true spoofed stretches (RTTM, or PartialSpoof segment labels "
        "*_seglab_*.npy)",
    )
    e.add_argument(
        "--hypothesis",
        metavar="JSON|RTTM",
        help="localisation: detect --json output (timelines) or an RTTM of judged segments",
    )
    e.add_argument(
        "--resolutions",
        type=POSITIVE,
        nargs="+",
        default=[0.02, 0.16, 0.64],
        metavar="S",
        help="segment-EER units in seconds",
    )
    e.add_argument(
        "--label-resolution",
        type=POSITIVE,
        default=0.02,
        help="seconds per label of a PartialSpoof .npy reference",
    )
    e.add_argument("--asv-scores", help="official ASV score file, for the min t-DCF")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--det-plot", metavar="FILE.png", help="write a DET curve PNG")
    e.add_argument(
        "--lower-is-bonafide",
        action="store_true",
        help="scores are higher for spoofs (default: higher means bona fide)",
    )
    e.set_defaults(func=_cmd_evaluate)

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

    def detector_args(sp):
        sp.add_argument(
            "--model",
            default="aasist",
            help="NAME[:TAG] of a registered model (published weights), a spoofscope "
            "checkpoint, a state_dict file, or hf:OWNER/REPO[@REVISION] / hf:FOLDER (a "
            "transformers audio classifier)",
        )
        sp.add_argument(
            "--weights", help="your own state_dict file for the architecture --model names"
        )
        sp.add_argument(
            "--bonafide-label",
            metavar="LABEL",
            help="for hf: models: the label of the bona fide class (default: found among "
            "real/bonafide/genuine/human)",
        )
        sp.add_argument("--config", help="official AASIST .conf/model_config for a state_dict")
        sp.add_argument("--calibration", help="calibration JSON from 'spoofscope calibrate'")
        sp.add_argument(
            "--engine",
            "--backend",
            dest="engine",
            choices=ENGINES,
            default="auto",
            help="inference engine: auto = ONNX Runtime where the model exports (exported once "
            "into the cache), else PyTorch",
        )
        sp.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="fp32",
            help="int8 only for models whose card lists it (scores within 1e-2 of fp32)",
        )
        sp.add_argument(
            "--window",
            choices=WINDOW_KINDS,
            default="sliding",
            help="sliding windows over the whole file, or the official first window",
        )
        sp.add_argument(
            "--window-samples",
            type=POSITIVE_INT,
            metavar="N",
            help="window length in samples (default: the model card's window)",
        )
        sp.add_argument(
            "--hop",
            type=POSITIVE,
            default=None,
            metavar="SECONDS",
            help="hop between sliding windows (default 2; 0.5 with --segments or --rttm)",
        )
        sp.add_argument(
            "--aggregate", choices=AGGREGATES, default="mean", help="how window scores combine"
        )
        sp.add_argument(
            "--threshold",
            type=FINITE,
            help="score threshold of the label (default: calibrated, else equal logits)",
        )
        sp.add_argument(
            "--batch-size", type=POSITIVE_INT, default=8, help="windows per forward pass"
        )
        sp.add_argument(
            "--min-speech",
            type=NON_NEGATIVE,
            default=0.5,
            metavar="SECONDS",
            help="abstain (label no_speech) below this much speech",
        )
        sp.add_argument(
            "--vad",
            choices=("silero", "energy"),
            help="speech detector behind no_speech: silero (default; $SPOOFSCOPE_VAD) or "
            "energy (sound above -50 dBFS)",
        )

    dt = command(
        "detect",
        "is each recording bona fide or spoofed?",
        "Score audio files and folders; one row (or JSON object) per input.",
    )
    dt.add_argument("paths", nargs="+", help="audio files or folders")
    detector_args(dt)
    dt.add_argument("--json", action="store_true", help="one JSON object per input")
    dt.add_argument("--csv", metavar="FILE", help="also write a CSV")
    dt.add_argument("--recursive", action="store_true", help="walk sub-folders")
    dt.add_argument(
        "--segments",
        action="store_true",
        help="print where the file is judged bona fide, spoof or silent (segments), and add "
        "a row per segment to --csv",
    )
    dt.add_argument("--rttm", metavar="FILE", help="write the segments in RTTM")
    dt.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="score on a Ray cluster (ADDRESS: auto = $RAY_ADDRESS or a local one, "
        "ray://HEAD:10001, HEAD:6379) into Parquet shards under --out; a rerun skips the files "
        "already there",
    )
    dt.add_argument("--out", metavar="RESULTS", help="--ray: the results folder")
    dt.add_argument(
        "--actors", type=POSITIVE_INT, default=2, help="--ray: detectors scoring in parallel"
    )
    dt.add_argument(
        "--stream",
        action="store_true",
        help="judge raw samples from standard input as they arrive (input '-'): a line per "
        "window with the running verdict, then the result",
    )
    dt.add_argument(
        "--input-rate",
        type=POSITIVE_INT,
        metavar="HZ",
        help="--stream: sample rate of raw samples (default the model's, 16000 for most)",
    )
    dt.add_argument(
        "--input-format",
        choices=("auto", "container", "s16le", "f32le", "mulaw", "alaw"),
        default="auto",
        help="--stream: what standard input carries: a container FFmpeg reads from a pipe "
        "(WAV, FLAC, OGG/Opus, MP3, WebM, ADTS AAC; found by its header under auto), or raw "
        "samples (mulaw/alaw: 8-bit G.711, e.g. 8-kHz telephone audio; auto without a header: "
        "s16le)",
    )
    dt.add_argument(
        "--channels", type=POSITIVE_INT, default=1, help="--stream: interleaved channels (averaged)"
    )
    dt.add_argument("--quiet", action="store_true", help="no progress bar")
    dt.set_defaults(func=_cmd_detect)

    ca = command(
        "calibrate",
        "fit score -> LLR calibration on labelled scores",
        "Fit llr = a * score + b by prior-weighted logistic regression, with EER and "
        "target-FAR thresholds.",
    )
    ca.add_argument("--scores", required=True, help="score file (as for evaluate)")
    ca.add_argument("--protocol", required=True, help="labelled protocol of the same trials")
    ca.add_argument("--out", help="calibration JSON to write")
    ca.add_argument("--attach", metavar="CHECKPOINT", help="store it in a spoofscope checkpoint")
    ca.add_argument("--prior", type=PROBABILITY, default=0.5, help="bona fide prior for p_bonafide")
    ca.add_argument(
        "--target-far",
        type=PROBABILITY,
        default=0.01,
        help="false-acceptance rate of the second threshold",
    )
    ca.add_argument(
        "--use", choices=["eer", "far"], default="eer", help="which threshold decides the label"
    )
    ca.add_argument(
        "--band",
        type=BAND,
        default=0.1,
        help="low-confidence band around the threshold (probability)",
    )
    ca.add_argument(
        "--domain",
        choices=("deployment", "training"),
        default="deployment",
        help="deployment: the scores are of recordings like those the detector will judge "
        "(verdicts may then claim confidence); training: a benchmark's dev set (verdicts "
        "claim no confidence)",
    )
    ca.set_defaults(func=_cmd_calibrate)

    fu = command("fuse", "learn a logistic score fusion of several systems")
    fu.add_argument("--scores", nargs="+", required=True, help="dev score files, one per system")
    fu.add_argument("--protocol", required=True, help="labelled dev protocol")
    fu.add_argument("--out", required=True, help="fusion JSON to write")
    fu.add_argument("--apply", nargs="+", help="eval score files (same system order)")
    fu.add_argument("--eval-protocol", help="labelled eval protocol, with --apply")
    fu.add_argument("--eval-out", help="fused eval score file to write, with --apply")
    fu.set_defaults(func=_cmd_fuse)

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
        help="the new final layer: a logistic-regression probe on the embeddings, the recipe's "
        "retrained layer, or whichever an inner cross-validation prefers",
    )
    ad.add_argument("--quiet", action="store_true", help="no progress bar")
    ad.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    ad.set_defaults(func=_cmd_adapt)

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

    dd = command("demo-data", "write the offline demo corpus (ASVspoof 2019 layout)")
    dd.add_argument("out", help="folder to write")
    dd.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="random seed")
    dd.add_argument("--speech-dir", help="use real recordings as bona fide speech")
    dd.add_argument("--quiet", action="store_true", help="no progress bar")
    dd.set_defaults(func=_cmd_demo_data)

    de = command("demo", "demo corpus -> train -> evaluate, on the CPU")
    de.add_argument("--out", default="spoofscope-demo", help="folder for the corpus and run")
    de.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="corpus seed")
    de.add_argument("--quiet", action="store_true", help="no progress bars")
    de.add_argument("overrides", nargs="*", help="key=value overrides of the demo recipe")
    de.set_defaults(func=_cmd_demo)

    sv = command(
        "serve",
        "run the detection service (FastAPI)",
        "Serve POST /v1/detect and /v1/detect/batch, health, readiness, metrics, a web page "
        "and offline API docs at /docs.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=PORT, default=8000, help="port to listen on")
    detector_args(sv)
    sv.add_argument("--workers", type=POSITIVE_INT, default=1, help="inference threads")
    sv.add_argument(
        "--queue-size", type=NON_NEGATIVE_INT, default=8, help="requests waiting beyond workers"
    )
    sv.add_argument(
        "--max-upload-mb", type=POSITIVE, default=25.0, help="largest request body (MB)"
    )
    sv.add_argument(
        "--max-duration", type=POSITIVE, default=600.0, help="longest file (seconds of audio)"
    )
    sv.add_argument(
        "--max-batch-seconds",
        type=POSITIVE,
        default=1200.0,
        help="most audio one batch request may carry (seconds, from the headers)",
    )
    sv.add_argument(
        "--request-timeout",
        type=POSITIVE,
        default=60.0,
        help="compute deadline of one request (seconds)",
    )
    sv.add_argument(
        "--long-audio",
        type=POSITIVE,
        default=60.0,
        help="requests with more audio than this (seconds) use the separate long-audio lane",
    )
    sv.add_argument(
        "--shutdown-grace",
        type=NON_NEGATIVE,
        default=10.0,
        help="on SIGTERM, seconds to let requests in flight finish before exiting",
    )
    sv.add_argument(
        "--max-streams", type=POSITIVE_INT, default=16, help="live streams (WebSocket) at once"
    )
    sv.add_argument(
        "--max-stream",
        type=POSITIVE,
        default=14400.0,
        help="seconds of audio (and of wall time) one live stream may last",
    )
    sv.add_argument(
        "--stream-idle",
        type=POSITIVE,
        default=30.0,
        help="a live stream that sends nothing for this many seconds is ended",
    )
    sv.add_argument(
        "--stream-max-lag",
        type=POSITIVE,
        default=10.0,
        help="seconds of unjudged audio a stream may queue; beyond it the client gets a "
        "'lagging' event and reading pauses until half of it is judged",
    )
    sv.add_argument(
        "--stream-hop",
        type=POSITIVE,
        default=1.0,
        help="hop (seconds) of a live stream's windows unless its start message sets hop_s",
    )
    sv.add_argument("--api-keys-file", help="one API key per line (or SPOOFSCOPE_API_KEYS)")
    sv.add_argument(
        "--audit-db",
        metavar="FILE|URL",
        help="record every decision in this SQLite file, or in PostgreSQL at a "
        "postgresql://USER:PASSWORD@HOST/DB URL (several service processes share one trail)",
    )
    sv.add_argument(
        "--replica",
        metavar="NAME",
        help="this process's name in /metrics, /readyz and the X-Replica header (default: "
        "the host name)",
    )
    sv.add_argument("--quiet", action="store_true", help="no start-up line, no request logs")
    sv.set_defaults(func=_cmd_serve)

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

    au = command("audit", "summarise the audit trail")
    ausub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    su = command(
        "summary", "decisions by label, low-confidence rate, scores, refusals", parent=ausub
    )
    su.add_argument(
        "--db", required=True, help="the SQLite file or postgresql:// URL of serve --audit-db"
    )
    su.add_argument(
        "--since", help="ISO date/time (2026-11-01, 2026-11-01T08:00) or a duration (24h, 7d)"
    )
    su.add_argument("--until", help="as --since")
    su.add_argument("--json", action="store_true", help="print one JSON object")
    su.set_defaults(func=_cmd_audit)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after the options (train, demo)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    chatty = args.command in ("train", "demo", "adapt")
    logging.basicConfig(
        force=True,
        level=logging.DEBUG if args.verbose else logging.INFO if chatty else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (spoofscope models | head): not an error of ours. Point stdout
        # at /dev/null so that the interpreter's final flush does not complain either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SpoofscopeError, OSError) as e:
        # the user's error, named with its fix: one line. Anything else is a bug and keeps
        # its traceback.
        if args.debug:
            raise
        msg = " ".join(str(e).split())
        print(f"spoofscope {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
