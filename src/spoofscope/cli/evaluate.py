"""``evaluate``, ``calibrate`` and ``fuse``: scores -> metrics, calibrations, fusions."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ._common import BAND, POSITIVE, PROBABILITY, CLIError

#: RTTM labels (case-insensitive): the spoofed ones, then the bona fide ones
_SPOOF_LABELS = ("spoof", "fake")
RTTM_LABELS = (*_SPOOF_LABELS, "bonafide", "bona-fide", "bona_fide", "genuine", "real")


def _spoof(label: str) -> bool:
    return label.lower() in _SPOOF_LABELS


def _rttm_durations(rows: dict) -> dict:
    """A file's duration as its RTTM covers it: the end of its last segment."""
    return {f: max(b for _, b, _ in r) for f, r in rows.items()}


_DETECT_JSON = (
    "each line of detect --json output is an object with path, duration_s (a number) and "
    "timeline (a list of {start_s, end_s, score} steps, score a number or null)"
)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _timeline_of(o, where: str) -> tuple[str, float, list]:
    """(file id, duration, steps) of one ``detect --json`` object, or a CLIError naming
    ``where`` (file and line) and what the object should hold."""

    def bad(what: str) -> CLIError:
        return CLIError(f"{where}: {what}; {_DETECT_JSON}")

    if not isinstance(o, dict):
        raise bad(f"a {type(o).__name__}, not an object")
    if not isinstance(o.get("path"), str):
        raise bad("no path")
    if not _number(o.get("duration_s")) or o["duration_s"] <= 0:
        raise bad(f"duration_s is {o.get('duration_s')!r}, not a positive number")
    steps = o.get("timeline")
    if not isinstance(steps, list):
        raise bad(f"timeline is {steps!r:.40}")
    out = []
    for k, t in enumerate(steps):
        if not isinstance(t, dict) or not all(_number(t.get(x)) for x in ("start_s", "end_s")):
            raise bad(f"timeline step {k} has no start_s/end_s numbers")
        if not 0 <= t["start_s"] <= t["end_s"]:
            raise bad(f"timeline step {k} runs from {t['start_s']!r} s to {t['end_s']!r} s")
        if "score" not in t or not (t["score"] is None or _number(t["score"])):
            raise bad(f"timeline step {k} has no score (a number, or null where not judged)")
        out.append((float(t["start_s"]), float(t["end_s"]), t["score"]))
    return Path(o["path"]).stem, float(o["duration_s"]), out


def _read_hypothesis(path) -> tuple[dict, dict, bool]:
    """Timelines from ``detect --json`` output (one object per line, or a list) or an RTTM
    (spoof stretches scored -1, bona fide +1): ``({file: [(start, end, score)]}, {file:
    duration}, whether the durations are the files' own (detect's, not an RTTM's last
    segment))``."""
    from ..metrics.localisation import read_rttm

    text = Path(path).read_text(encoding="utf-8-sig")  # a byte order mark is not content
    if not text.strip():
        raise CLIError(f"{path} is empty; give detect --json output (or an RTTM)")
    if text.lstrip().startswith(("{", "[")):
        try:
            if text.lstrip().startswith("["):
                objs = [(f"{path} item {k}", o) for k, o in enumerate(json.loads(text))]
            else:
                objs = [
                    (f"{path}:{n}", json.loads(ln))
                    for n, ln in enumerate(text.splitlines(), 1)
                    if ln.strip()
                ]
        except ValueError as e:
            raise CLIError(f"{path}: not detect --json output ({e})") from None
        hyp, durs = {}, {}
        for where, o in objs:
            if isinstance(o, dict) and o.get("error"):
                continue
            uid, dur, steps = _timeline_of(o, where)
            hyp[uid], durs[uid] = steps, dur
        return hyp, durs, True
    try:
        rows = read_rttm(path, labels=RTTM_LABELS)
    except ValueError as e:
        raise CLIError(str(e)) from None
    hyp = {f: [(a, b, -1.0 if _spoof(lab) else 1.0) for a, b, lab in r] for f, r in rows.items()}
    return hyp, _rttm_durations(rows), False


def _cmd_evaluate_localisation(a) -> int:
    from ..metrics import range_eer, segment_eer, utterance_eer
    from ..metrics.localisation import read_partialspoof_labels, read_rttm, spoof_stretches

    if str(a.reference).endswith(".npy"):
        ref, ref_durs = read_partialspoof_labels(a.reference, a.label_resolution)
    else:
        try:
            rows = read_rttm(a.reference, labels=RTTM_LABELS, disjoint=True)
        except ValueError as e:
            raise CLIError(str(e)) from None
        if not rows:
            raise CLIError(f"{a.reference} holds no RTTM lines; nothing to evaluate against")
        ref = spoof_stretches(rows)
        ref_durs = _rttm_durations(rows)
    hyp, hyp_durs, exact = _read_hypothesis(a.hypothesis)
    durations = {f: hyp_durs.get(f, ref_durs.get(f)) for f in set(ref_durs) | set(hyp_durs)}
    missing = sorted(f for f in ref_durs if f not in hyp)
    if missing:
        raise CLIError(
            f"{len(missing)} file(s) of the reference are not in {a.hypothesis}: "
            + ", ".join(missing[:5])
        )
    durations = {f: durations[f] for f in ref_durs}
    for f in durations:  # the reference describes the files the hypothesis judged
        late = [(s, e) for s, e in ref.get(f, []) if e > durations[f] + 0.1]
        if late and exact:
            raise CLIError(
                f"{a.reference}: the spoofed stretch {late[0][0]:g}-{late[0][1]:g} s of {f} ends "
                f"after the file's {durations[f]:g} s (its duration_s in {a.hypothesis}); is "
                "the reference for these recordings?"
            )
    judged = {s for f in durations for _, _, s in hyp[f] if s is not None}
    if len(judged) < 2:
        raise CLIError(
            f"{a.hypothesis}: every judged step has the same score "
            f"({next(iter(judged), None)}): the hypothesis ranks nothing, so no EER means "
            "anything"
        )
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
    from ..evaluation import evaluate_score_file
    from ..metrics.det_plot import plot_det

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


def _cmd_calibrate(a) -> int:
    from ..data.protocols import read_protocol
    from ..evaluation import join_scores, read_score_file
    from ..infer.calibration import Calibration, calibration_path_beside

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

        from ..models import read_checkpoint

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

    from ..data.protocols import read_protocol
    from ..evaluation import evaluate_arrays, join_scores, read_score_file, write_score_file
    from ..infer.fusion import Fusion

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
        with np.errstate(over="ignore", invalid="ignore"):
            fused = fusion.apply(np.stack(ecols, 1))
        if not np.all(np.isfinite(fused)):
            k = int(np.argmin(np.isfinite(fused)))
            raise CLIError(
                f"the fused score of {etrials[k].utt_id} overflows (its scores: "
                f"{', '.join(f'{c[k]:.3g}' for c in ecols)}); nothing written to {a.eval_out}"
            )
        write_score_file(
            a.eval_out,
            [t.utt_id for t in etrials],
            [t.attack for t in etrials],
            [t.label for t in etrials],
            fused,
        )
        print(f"fused eval scores written to {a.eval_out}")
    return 0


def add_evaluate(command) -> None:
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


def add_calibrate(command) -> None:
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


def add_fuse(command) -> None:
    fu = command("fuse", "learn a logistic score fusion of several systems")
    fu.add_argument("--scores", nargs="+", required=True, help="dev score files, one per system")
    fu.add_argument("--protocol", required=True, help="labelled dev protocol")
    fu.add_argument("--out", required=True, help="fusion JSON to write")
    fu.add_argument("--apply", nargs="+", help="eval score files (same system order)")
    fu.add_argument("--eval-protocol", help="labelled eval protocol, with --apply")
    fu.add_argument("--eval-out", help="fused eval score file to write, with --apply")
    fu.set_defaults(func=_cmd_fuse)
