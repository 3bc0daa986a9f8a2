"""Adapt a pretrained detector to a user's own labelled audio, and say honestly whether it helped.

``adapt(model, data, out, recipe)``:

1. reads ``data`` (a ``path,label[,group]`` CSV or ``bonafide/`` + ``spoof/`` folders of files
   in any format and length); unreadable files, and files ``detect`` would not judge (no
   speech), are listed and left out;
2. scores every file with the starting model as ``detect`` does (sliding windows of the
   model's window every ``hop_s``, silent windows left out, window scores averaged): the EER
   *before*;
3. estimates the EER *after* adaptation by nested K-fold cross-validation (folds grouped by the
   CSV's ``group`` column when it has one, so the estimate is for sources never seen, and also
   stratified by class; else stratified only). In each fold two procedures learn a new final
   layer from the other folds: the *probe*, a class-balanced L2 logistic regression on the
   files' embeddings (penalty by an inner 3-fold cross-validation), and the *recipe*, the final
   layer retrained from the published one on every window and augmented crops (early stopping
   on an inner held-out fifth). A 10-fold cross-validation inside the training folds
   chooses between the probe and keeping the published layer (``none``): with groups, folds
   by group and the lower pooled inner EER (one group: the published layer kept); without,
   folds stratified by class and the probe unless the published layer's inner EER is lower
   by more than one standard error (:data:`AUTO_CANDIDATES`, :func:`default_rule`, measured
   on real recordings by ``benchmarks/adapt_real.py``); the fold's files, which none of these
   saw, are scored by the chosen one;
4. trains the final model by exactly that procedure on all files (the choice by the same
   cross-validation over all files, then the chosen procedure with its own stopping rule),
   calibrates it on the nested out-of-fold scores, and writes ``model.ckpt`` (self-describing,
   usable by ``detect`` and ``serve``), ``report.json`` (before, probe, recipe and after, per
   fold, and which procedure the final model used; the expected EER on recordings like these
   with a bootstrap interval), ``report.md``, ``det.png`` and
   ``scores.csv`` (each file's fold and its scores).

The adaptation recipes (``configs/adapt-*.yaml``) train the final bona fide/spoof layer on the
frozen network's embeddings (``freeze: [all_but_head]``): the embeddings of every training
window (the file's sliding windows plus ``windows_per_file`` random crops through the recipe's
augmentation) are computed once by the fastest engine, so the K + 1 trainings cost seconds and
the run is dominated by one pass of the network over the data. Deeper fine-tuning (an unfrozen
encoder) is ``spoofscope train --init``.

An interrupted run resumes: per-file embeddings are kept under ``out/cache/``.

The stages, with plain data between them: :func:`read_request` (the list, refused before any
audio is read when it cannot fill the folds) -> :func:`embed` (:class:`Labelled`, and the
arrays of :class:`~spoofscope.train.candidates.AdaptData`) -> :func:`folds_of` ->
:func:`nested_cv` (each learner and the :class:`Selector`'s choice made inside the training
folds) -> the final fit (the same choice on all files) -> :func:`calibrate` ->
:func:`write_outputs`. The candidates (the published layer, the probe, the recipe) are classes
that follow :class:`~spoofscope.train.candidates.Candidate`, one per file in
``train/candidates/``; a new one is one more class there.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTS, load_audio, random_crop
from ..data.protocols import BONAFIDE
from ..errors import ConfigError, InputError
from .candidates import AdaptData, Candidate, Keep, Probe, Recipe, eer, folds
from .config import TrainConfig
from .finetune import head_matches_embedding

log = logging.getLogger(__name__)

#: below this many files of a class the EER estimate is too coarse to trust
FEW_PER_CLASS = 20
#: above this ratio between the classes the estimate leans on the small class
UNBALANCED = 10.0
#: how the new final layer is learnt: chosen by cross-validation among keeping the published
#: one, the probe and the recipe; or one of the two
PROCEDURES = ("auto", "probe", "recipe")


@dataclass
class Clip:
    path: str
    label: int
    group: str
    key: str = ""  # sha256 of the file's bytes: its seeds and its place in the folds


@dataclass
class Labelled:
    """The files the run uses (``clips``, judged by ``detect``), those it left out
    (``skipped``: unreadable; ``no_speech``: nothing for ``detect`` to judge) and the warnings
    about what remains."""

    clips: list[Clip]
    skipped: list[dict]
    no_speech: list[dict]
    warnings: list[str] = field(default_factory=list)

    @property
    def n_bona(self) -> int:
        return sum(c.label == BONAFIDE for c in self.clips)

    @property
    def n_spoof(self) -> int:
        return len(self.clips) - self.n_bona


@dataclass
class Choice:
    """What the inner cross-validation chose for some files (``none``, ``probe``, ...), with
    what it measured (``inner``: per candidate, e.g. its pooled EER) and ``why``: the rule as
    it was applied, in words, with its numbers."""

    name: str
    inner: dict
    why: str = ""


@dataclass
class CrossValidated:
    """The nested cross-validation: each file's fold, its out-of-fold scores under each
    learner and under the choice (``after``), and one row per fold."""

    fold_of: np.ndarray
    oof: dict[str, np.ndarray]
    rows: list[dict]


def read_labelled(spec) -> list:
    """The labelled files of ``spec``: a ``path,label[,group]`` CSV or a folder with
    ``bonafide/`` and ``spoof/``. Labels other than bonafide/spoof are an error naming the line."""
    from ..data.datasets import FolderDataset
    from ..data.protocols import parse_csv

    p = Path(spec)
    if p.is_dir():
        return list(FolderDataset(p, None).trials)
    if p.suffix.lower() in AUDIO_EXTS:
        raise InputError(
            f"{spec}: an audio file; --data takes a path,label[,group] CSV listing your files "
            "or a folder with bonafide/ and spoof/"
        )
    if p.suffix.lower() == ".csv" or p.is_file():
        return parse_csv(p)
    raise InputError(
        f"{spec}: not found (give a path,label CSV or a folder with bonafide/, spoof/)"
    )


def _check_folds(labels, groups: list[str], k: int, what) -> None:
    """Refuse a number of folds the files cannot fill (before any audio is read)."""
    labels = np.asarray(labels)
    n_bona, n_spoof = int(np.sum(labels == BONAFIDE)), int(np.sum(labels != BONAFIDE))
    if min(n_bona, n_spoof) < k:
        raise InputError(
            f"{what}: {n_bona} bona fide and {n_spoof} spoof files; {k}-fold "
            f"cross-validation needs at least {k} of each (--folds)"
        )
    names = set(groups) - {"-"}
    if names and len(names) < k:
        fix = (
            f"use --folds {len(names)} or more groups"
            if len(names) >= 2
            else "give at least 2 groups, or leave out the group column for folds stratified "
            "by class"
        )
        raise ConfigError(
            f"{what}: {len(names)} group{'s' if len(names) != 1 else ''} cannot fill {k} "
            f"folds: {fix}"
        )


def _content_key(path) -> str:
    """The sha256 of a file's bytes: its random windows, augmentation and fold follow from
    it, so the same files give the same result wherever they and the list naming them lie."""
    from ..models._pretrained import sha256_of

    return sha256_of(path)


def _fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def cache_dir(out, model_source, weights, card, win: int, hop_s: float, cfg, vad: str) -> Path:
    """Where :func:`embed` keeps each file's embeddings for this model, windowing, recipe
    augmentation and activity meter (``out/cache/<fingerprint>``)."""
    hop = max(1, int(round(hop_s * card.sample_rate)))
    return Path(out) / "cache" / _fingerprint(
        str(model_source), str(weights), card.to_dict(), win, hop, cfg.augment,
        cfg.windows_per_file, cfg.seed,
        "judged-windows-v2",  # windows as detect judges them; abstentions recorded
        vad,
    )  # fmt: skip


def read_request(data, folds: int, procedure: str, cfg: TrainConfig) -> list:
    """Stage 0: the labelled list of ``data``, refused before any audio is read when the run
    cannot be done (too few folds, an unknown procedure, a recipe that trains more than the
    final layer, one class only, fewer files or groups than folds)."""
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
    if procedure not in PROCEDURES:
        raise ConfigError(f"procedure must be one of {', '.join(PROCEDURES)}, not {procedure!r}")
    if cfg.freeze != ["all_but_head"]:
        raise ConfigError(
            "adapt trains the final layer on the frozen network (freeze: [all_but_head]); "
            "for deeper fine-tuning use spoofscope train --init"
        )
    trials = read_labelled(data)
    if not trials:
        raise InputError(f"{data}: lists no files (a header only?); give path,label rows")
    labels_all = np.array([t.label for t in trials])
    if len(set(labels_all.tolist())) < 2:
        only = "bona fide" if labels_all[0] == BONAFIDE else "spoof"
        raise InputError(f"{data}: every file is {only}; adaptation needs both classes")
    _check_folds(labels_all, [t.speaker for t in trials], folds, data)
    return trials


def embed(
    trials,
    model,
    head,
    cfg: TrainConfig,
    cache: Path,
    *,
    win: int,
    hop_s: float,
    engine: str,
    vad: str,
    progress: bool,
) -> tuple[Labelled, AdaptData]:
    """Stage 1-2: one pass of the network over every file. The windows ``detect`` judges are
    embedded and scored (the starting model's score: the mean of their bona fide logits), and
    ``cfg.windows_per_file`` random crops through the recipe's augmentation are embedded for
    training; the crops and their augmentation follow from ``cfg.seed`` and the file's bytes.
    Unreadable files and files ``detect`` would not judge are listed and left out; two files
    with the same bytes are refused. Each
    file's result is kept under ``cache`` (an interrupted run resumes)."""
    from tqdm.auto import tqdm

    from ..augment import build_augmentation
    from ..infer import Decision, WindowPolicy, make_engine
    from ..infer.activity import make_meter
    from ..infer.windows import sliding_windows

    card = model.card
    eng = make_engine(model, engine, length=win)
    augment = build_augmentation(cfg.augment)
    hop = max(1, int(round(hop_s * card.sample_rate)))
    cache.mkdir(parents=True, exist_ok=True)
    silence_db, need = WindowPolicy().silence_db, Decision().min_speech_s

    clips, skipped, no_speech, first = [], [], [], {}
    emb_eval, idx_eval, emb_aug, idx_aug, before = [], [], [], [], []
    bar = tqdm(trials, desc="embedding", disable=not progress, leave=False)
    for t in bar:
        try:
            key = _content_key(t.path)
        except OSError as e:
            skipped.append({"path": str(t.path), "why": f"cannot be read ({e.strerror or e})"})
            continue
        if key in first:  # a copy could train on one side of a fold and be judged on the other
            raise InputError(
                f"{t.path} and {first[key]}: the same recording (identical bytes); list each "
                "recording once"
            )
        first[key] = t.path
        f = cache / (key[:20] + ".npz")
        if f.is_file():
            z = np.load(f)
            ev, ev_logits, aug = z["eval"], z["eval_logits"], z["aug"]
            speech_s, duration_s = float(z["speech_s"]), float(z["duration_s"])
        else:
            try:
                x = load_audio(t.path, card.sample_rate)
            except Exception as e:  # noqa: BLE001 - any unreadable file is listed, not fatal
                skipped.append({"path": str(t.path), "why": str(e).splitlines()[0][:300]})
                continue
            meter = make_meter(vad, card.sample_rate, silence_db)
            for _ in meter.wrap([x]):
                pass
            speech_s, duration_s = meter.active_s, x.size / card.sample_rate
            ev = ev_logits = aug = np.zeros((0, 0), np.float32)
            if min(speech_s, duration_s) >= need:
                windows = list(sliding_windows([x], win, hop))
                # detect scores the windows with sound in them (all of them, if none has)
                loud = [w for w in windows if 20 * np.log10(w.rms + 1e-12) >= silence_db]
                ws = np.stack([w.samples for w in (loud or windows)])
                rng = np.random.default_rng([cfg.seed, int(key[:8], 16)])
                crops = []
                for _ in range(cfg.windows_per_file):
                    c = random_crop(x, win, rng)
                    crops.append(augment(c, rng) if augment is not None else c)
                batch = np.concatenate([ws, np.stack(crops)]).astype(np.float32)
                logits, emb = [], []
                for i in range(0, len(batch), 8):
                    lg, e = eng.embed(batch[i : i + 8])
                    logits.append(lg)
                    emb.append(e)
                logits, emb = np.concatenate(logits), np.concatenate(emb)
                ev, ev_logits, aug = emb[: len(ws)], logits[: len(ws)], emb[len(ws) :]
            np.savez(
                f.with_suffix(".tmp.npz"),
                eval=ev,
                eval_logits=ev_logits,
                aug=aug,
                speech_s=speech_s,
                duration_s=duration_s,
            )
            f.with_suffix(".tmp.npz").replace(f)
        if min(speech_s, duration_s) < need:
            no_speech.append(
                {
                    "path": str(t.path),
                    "why": f"no speech: {speech_s:.2f} s of sound above {silence_db:g} dBFS in "
                    f"{duration_s:.2f} s; detect needs {need:g} s for a verdict (no_speech)",
                }
            )
            continue
        k = len(clips)
        clips.append(Clip(str(t.path), t.label, t.speaker, key))
        emb_eval.append(ev)
        idx_eval.append(np.full(len(ev), k))
        emb_aug.append(aug)
        idx_aug.append(np.full(len(aug), k))
        before.append(float(ev_logits[:, card.bonafide_index].mean()))
    labelled = Labelled(clips, skipped, no_speech)
    if not clips:
        return labelled, None
    E = np.concatenate(emb_eval).astype(np.float32)
    I_e = np.concatenate(idx_eval)
    # each file's embedding as the detector judges it: the mean of its judged windows (its
    # score is the mean of their logits, i.e. the linear head of this mean)
    F = np.stack([E[I_e == i].mean(0) for i in range(len(clips))]).astype(np.float32)
    data = AdaptData(
        labels=np.array([c.label for c in clips]),
        groups=[c.group for c in clips],
        keys=[c.key for c in clips],
        files=F,
        before=np.array(before),
        windows=E,
        window_file=I_e,
        crops=np.concatenate(emb_aug).astype(np.float32),
        crop_file=np.concatenate(idx_aug),
        head=head,
        bona=card.bonafide_index,
    )
    return labelled, data


def check_labelled(labelled: Labelled, data, n_folds: int) -> None:
    """Refuse a run the readable files cannot fill; warn (``labelled.warnings``) when the
    estimate will be coarse."""
    if labelled.no_speech:
        log.warning(
            "%d of %d files left out: detect would not judge them (no_speech; listed in "
            "report.json); first: %s",
            len(labelled.no_speech),
            len(labelled.clips) + len(labelled.no_speech) + len(labelled.skipped),
            labelled.no_speech[0]["path"],
        )
    if labelled.skipped:
        log.warning(
            "%d of %d files unreadable, skipped (listed in report.json); first: %s (%s)",
            len(labelled.skipped),
            len(labelled.clips) + len(labelled.no_speech) + len(labelled.skipped),
            labelled.skipped[0]["path"],
            labelled.skipped[0]["why"],
        )
    n_bona, n_spoof = labelled.n_bona, labelled.n_spoof
    if min(n_bona, n_spoof) < n_folds:
        out = [
            f"{len(v)} {what}"
            for v, what in ((labelled.skipped, "unreadable"), (labelled.no_speech, "no speech"))
            if v
        ]
        raise InputError(
            f"{data}: {n_bona} bona fide and {n_spoof} spoof files left to judge"
            + (f" ({', '.join(out)}; listed above)" if out else "")
            + f"; {n_folds}-fold cross-validation needs at least {n_folds} of each: add files or "
            "lower --folds"
        )
    if min(n_bona, n_spoof) < FEW_PER_CLASS:
        labelled.warnings.append(
            f"only {min(n_bona, n_spoof)} files of the smaller class: the EER estimates move by "
            f"{100 / min(n_bona, n_spoof):.0f} points per file; collect more before trusting them"
        )
    if max(n_bona, n_spoof) / min(n_bona, n_spoof) > UNBALANCED:
        labelled.warnings.append(
            f"unbalanced data ({n_bona} bona fide, {n_spoof} spoof): the estimate rests on the "
            "smaller class"
        )
    for w in labelled.warnings:
        log.warning(w)


def se_margin_rule(oof: dict[str, np.ndarray], y: np.ndarray) -> Choice:
    """The better learner (lowest pooled inner EER) replaces the published layer only when
    its EER is lower by more than one standard error, sqrt(e (1 - e) / n) for the published
    layer's EER e and the smaller class's n files; ties go to ``none``, then the first
    learner."""
    eers = {n: eer(o, y) for n, o in oof.items()}
    best = min((n for n in oof if n != "none"), key=lambda n: eers[n])
    e, n = eers["none"] / 100, min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE))
    margin = 100 * float(np.sqrt(e * (1 - e) / n))
    eers["margin"] = margin
    return Choice(best if eers[best] < eers["none"] - margin else "none", eers)


def calibrated_losses(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) each file's log loss (bits) under an affine calibration of the scores ``s``
    fitted on them at prior 0.5: the balanced mean of these (each class weighted one half)
    is the Cllr of the calibrated scores, the expected loss of the verdicts they give."""
    from ..infer._logreg import fit_llr_map

    pos = np.asarray(y) == BONAFIDE
    s = np.asarray(s, np.float64)
    w, b = fit_llr_map(s[pos, None], s[~pos, None], prior=0.5)
    llr = s * float(w[0]) + b
    return np.where(pos, np.logaddexp(0, -llr), np.logaddexp(0, llr)) / np.log(2)


def _balanced_mean(v: np.ndarray, pos: np.ndarray) -> float:
    return float(0.5 * v[pos].mean() + 0.5 * v[~pos].mean())


def loss_rule(margin_se: float = 0.0):
    """A rule that picks the learner with the lowest Cllr of its calibrated inner scores, and
    replaces the published layer with it only when that Cllr is lower than the published
    layer's by more than ``margin_se`` standard errors of the paired difference (0: whichever
    is lower). The pooled EERs are recorded beside."""

    def rule(oof: dict[str, np.ndarray], y: np.ndarray) -> Choice:
        pos = np.asarray(y) == BONAFIDE
        loss = {n: calibrated_losses(o, y) for n, o in oof.items()}
        cllr = {n: _balanced_mean(v, pos) for n, v in loss.items()}
        best = min((n for n in oof if n != "none"), key=lambda n: cllr[n])
        d = loss["none"] - loss[best]
        se = float(np.sqrt(0.25 * d[pos].var() / pos.sum() + 0.25 * d[~pos].var() / (~pos).sum()))
        gain = cllr["none"] - cllr[best]
        inner = {
            "cllr": cllr,
            "eer_percent": {n: eer(o, y) for n, o in oof.items()},
            "gain_cllr": gain,
            "gain_se": se,
            "margin_se": margin_se,
        }
        return Choice(best if gain > margin_se * se else "none", inner)

    rule.__name__ = f"loss_rule({margin_se:g})"
    return rule


def min_eer_rule(oof: dict[str, np.ndarray], y: np.ndarray) -> Choice:
    """The candidate with the lowest pooled inner EER, the published layer included (ties go
    to the published layer, then to the first learner)."""
    e = {n: eer(o, y) for n, o in oof.items()}
    why = "the lower pooled inner EER, ties to the published layer: " + ", ".join(
        f"{'published layer' if n == 'none' else n} {v:.1f} %" for n, v in e.items()
    )
    return Choice(min(e, key=lambda n: (e[n], n != "none")), {"eer_percent": e}, why)


def keep_if_better_rule(margin_se: float = 1.0):
    """A rule that takes the learner with the lowest pooled inner EER, and keeps the
    published layer instead only when the published layer's EER is lower than that learner's
    by more than ``margin_se`` standard errors, sqrt(e (1 - e) / n) for the learner's EER e
    and the smaller class's n files: the burden of proof lies on the published layer."""

    def rule(oof: dict[str, np.ndarray], y: np.ndarray) -> Choice:
        e = {n: eer(o, y) for n, o in oof.items()}
        best = min((n for n in oof if n != "none"), key=lambda n: e[n])
        p, n = e[best] / 100, min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE))
        margin = margin_se * 100 * float(np.sqrt(p * (1 - p) / n))
        keep = e["none"] < e[best] - margin
        why = (
            f"the {best} unless the published layer's inner EER is lower by more than "
            f"{margin_se:g} standard error ({margin:.1f} points here): published layer "
            f"{e['none']:.1f} %, {best} {e[best]:.1f} %"
        )
        return Choice("none" if keep else best, {"eer_percent": e, "margin": margin}, why)

    rule.__name__ = f"keep_if_better_rule({margin_se:g})"
    return rule


#: how ``auto`` chooses, measured by ``benchmarks/adapt_real.py`` on real recordings (docs/adapt.md,
#: "Which final layer"): the published layer or the probe (the recipe lost to both at every
#: size; the fusion of the two, ``candidates/fusion.py``, lost to the probe where the probe
#: helped and to the published layer elsewhere), by a 10-fold inner cross-validation (with
#: groups, by group; one group: nothing to judge new sources on, so the published layer,
#: which measured better than stratified inner folds there) and :func:`default_rule`
AUTO_CANDIDATES = ("none", "probe")
DEFAULT_INNER_FOLDS = 10
DEFAULT_ONE_GROUP = "none"


def default_rule(grouped: bool = True):
    """The rule ``adapt`` chooses by. With groups (unseen files from new sources): the lower
    pooled inner EER (:func:`min_eer_rule`; the probe measured worse than the published layer
    on new sources at every size, and this rule kept the published layer in most splits).
    Without (unseen files like these): the probe unless the published layer is better by more
    than one standard error (:func:`keep_if_better_rule`): the probe's gain there, 0.7-3.4
    points, is smaller than the noise of an inner EER, so the lower inner EER threw it away in
    up to 18 of 30 splits."""
    return min_eer_rule if grouped else keep_if_better_rule(1.0)


class Selector:
    """The choice of a final layer for some files, made by a cross-validation inside them
    only: ``inner_folds`` folds, by group when there are groups (no more folds than groups;
    1 group: nothing to judge new groups on, so ``none``, or with ``one_group="stratified"``
    folds stratified by class).
    Every learner is fitted on the inner training part and scores the inner held-out part;
    ``rule`` (default: :func:`default_rule` for the data's grouping) turns these
    out-of-fold scores into the choice. With a fixed ``procedure`` (not
    ``auto``) that procedure is the choice."""

    def __init__(
        self,
        candidates: dict[str, Candidate],
        procedure: str,
        seed: int,
        rule=None,
        one_group: str = DEFAULT_ONE_GROUP,
        inner_folds: int = DEFAULT_INNER_FOLDS,
    ):
        self.candidates, self.procedure, self.seed = candidates, procedure, seed
        self.rule = rule  # None: default_rule() for the data's grouping
        self.one_group, self.k = one_group, inner_folds

    def inner_scores(self, data: AdaptData, files: np.ndarray, seed: int = 0):
        """``(oof, y)``: each candidate's scores of ``files`` from an inner cross-validation
        inside them (``None`` when the files cannot fill one). Sees the labels and
        embeddings of ``files`` and nothing else."""
        files = np.asarray(files)
        y = data.labels[files]
        if min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE)) < 3:
            return None
        sub = [data.groups[i] for i in files] if data.grouped else ["-"] * len(files)
        k = min(self.k, len(set(sub))) if data.grouped else self.k
        if k < 2 and self.one_group == "stratified":
            sub, k = ["-"] * len(files), self.k
        if k < 2:
            return None
        inner = folds(y, sub, k, self.seed + 201 + seed, [data.keys[i] for i in files])
        if any(len(set(y[inner != j].tolist())) < 2 for j in range(k)):  # a one-class part
            return None
        oof = {n: np.zeros(len(files)) for n in self.candidates}
        for j in range(k):
            tr, te = files[inner != j], files[inner == j]
            for name, cand in self.candidates.items():
                if name == "none":
                    oof[name][inner == j] = cand.score(None, data, te)
                else:
                    oof[name][inner == j] = cand.score(cand.fit(data, tr, seed + j), data, te)
        return oof, y

    def choose(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Choice:
        """Sees the labels and embeddings of ``files`` and nothing else."""
        if self.procedure != "auto":
            return Choice(self.procedure, {}, f"--procedure {self.procedure}: no choice made")
        got = self.inner_scores(data, files, seed)
        if got is None:
            return Choice(
                "none",
                {},
                "no inner cross-validation possible (fewer than 3 files of a class, a single "
                "group, or an inner fold with one class): the published layer kept",
            )
        c = (self.rule or default_rule(data.grouped))(*got)
        n_groups = len({data.groups[i] for i in files}) if data.grouped else 0
        how = (
            f"{min(self.k, n_groups)}-fold inner cross-validation by group"
            if n_groups >= 2
            else f"{self.k}-fold inner cross-validation"
        )
        return Choice(c.name, c.inner, f"{how}; {c.why}" if c.why else how)


def nested_cv(
    data: AdaptData, fold_of: np.ndarray, learners: dict[str, Candidate], selector: Selector
) -> CrossValidated:
    """Nested cross-validation: in each outer fold every learner, and the choice between
    them and the published layer, are made from the other folds only; the fold's files,
    which none of them saw, are then scored. The outer folds never see the choice."""
    labels, before = data.labels, data.before
    n_folds = int(fold_of.max()) + 1
    oof = {n: np.zeros(len(labels)) for n in (*learners, "after")}
    rows = []
    for k in range(n_folds):
        test, train = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
        fitted = {n: c.fit(data, train, seed=k) for n, c in learners.items()}
        choice = selector.choose(data, train, seed=k)
        for n, c in learners.items():
            oof[n][test] = c.score(fitted[n], data, test)
        oof["after"][test] = before[test] if choice.name == "none" else oof[choice.name][test]
        both = len(set(labels[test].tolist())) == 2

        def fold_eer(s, test=test, both=both):
            return eer(s[test], labels[test]) if both else None

        row = {"fold": k + 1, "files": int(len(test)), "eer_before_percent": fold_eer(before)}
        row.update({f"eer_{n}_percent": fold_eer(oof[n]) for n in learners})
        row.update(
            {
                "chosen": choice.name,
                "eer_after_percent": fold_eer(oof["after"]),
                "inner": choice.inner,
            }
        )
        for f in fitted.values():
            row.update(f.info)
        rows.append(row)
    return CrossValidated(fold_of, oof, rows)


def adapt(
    model_source,
    data,
    out,
    cfg: TrainConfig,
    *,
    weights=None,
    folds: int = 5,
    hop_s: float = 2.0,
    engine: str = "auto",
    procedure: str = "auto",
    progress: bool = True,
    bonafide_label: str | None = None,
    vad: str | None = None,
    selector=None,
) -> dict:
    """Adapt ``model_source`` (``name[:tag]``, a checkpoint or ``hf:...``; ``bonafide_label``
    as in :func:`~spoofscope.models.load_model`) to the labelled files ``data``, leaving out
    the files ``detect`` would not judge under the activity meter ``vad`` (default as detect's);
    see the module docstring. ``procedure``: ``auto`` (the published layer kept or the probe,
    chosen by the inner cross-validation), or ``probe`` / ``recipe`` to use that one
    throughout. ``selector`` (learners -> :class:`Selector`) replaces the default choice
    (:data:`AUTO_CANDIDATES`, :func:`default_rule`). Returns the report (also written to
    ``out/report.json``)."""
    from ..infer.activity import default_vad
    from ..models import load_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials = read_request(data, folds, procedure, cfg)
    model = load_model(model_source, weights=weights, bonafide_label=bonafide_label)
    card = model.card
    win = int(cfg.crop_samples or card.window_samples)
    head = head_matches_embedding(model, win)
    if head is None:
        raise ConfigError(
            f"{card.name}: its logits are not one Linear layer of its embedding, so the head "
            "cannot be trained on cached embeddings; use spoofscope train --init"
        )
    vad = vad or default_vad()  # the activity meter detect uses
    cache = cache_dir(out, model_source, weights, card, win, hop_s, cfg, vad)
    # 1-2. one pass of the network: the starting model's scores (before) and the embeddings
    labelled, emb = embed(
        trials, model, head, cfg, cache, win=win, hop_s=hop_s, engine=engine, vad=vad,
        progress=progress,
    )  # fmt: skip
    check_labelled(labelled, data, folds)

    # 3. nested cross-validation: each fold scored by models that never saw it
    learners = {"probe": Probe(cfg.seed), "recipe": Recipe(cfg, head, emb.bona)}
    candidates = {"none": Keep(), **learners}
    if selector is None:
        auto = {n: candidates[n] for n in AUTO_CANDIDATES}
        selector = Selector(auto if procedure == "auto" else candidates, procedure, cfg.seed)
    else:
        selector = selector(learners)
    cv = nested_cv(emb, folds_of(emb, folds, cfg.seed), learners, selector)
    stratified = None
    if emb.grouped:  # the estimate for files of sources seen in training, beside unseen ones
        s_fold = folds_of(emb, folds, cfg.seed, stratified=True)
        stratified = {n: eer(v, emb.labels) for n, v in nested_cv(
            emb, s_fold, learners, selector).oof.items()}  # fmt: skip

    # 4. the final model: the same procedure on all files, calibrated on the out-of-fold
    # scores of the nested cross-validation
    everything = np.arange(len(emb.labels))
    choice = selector.choose(emb, everything, seed=folds)
    cand = candidates[choice.name]
    fitted = cand.fit(emb, everything, seed=folds)
    cal = calibrate(emb, cv, labelled, data)
    report = _report(
        model_source, weights, data, labelled, emb, cv, stratified, choice, fitted,
        cand.describe(fitted), cal, folds, procedure, win, hop_s, cfg,
    )  # fmt: skip
    write_outputs(out, model, win, fitted.layer, labelled, emb, cv, cal, report, cfg, model_source)
    return report


def folds_of(data: AdaptData, k: int, seed: int, stratified: bool = False) -> np.ndarray:
    """The outer folds: by group when the data have groups (unless ``stratified``), else
    stratified by class; they follow from ``seed`` and the files' bytes."""
    groups = ["-"] * len(data.labels) if stratified else data.groups
    fold_of = folds(data.labels, groups, k, seed, data.keys)
    for j in range(k):  # whole groups per fold can leave a fold nothing of a class to learn
        rest = data.labels[fold_of != j]
        for c, what in ((BONAFIDE, "bona fide"), (1 - BONAFIDE, "spoof")):
            if not np.any(rest == c):
                held = sorted({g for g, f in zip(groups, fold_of, strict=True) if f == j})
                held = ", ".join("(no group)" if g == "-" else g for g in held)
                raise InputError(
                    f"every {what} file is in the groups fold {j + 1} holds out ({held}), so "
                    f"its training files have no {what} file: spread the {what} files over more "
                    "groups (and give every row a group), or use fewer --folds"
                )
    return fold_of


def _report(
    model_source,
    weights,
    data,
    labelled: Labelled,
    emb: AdaptData,
    cv: CrossValidated,
    stratified,
    choice: Choice,
    fitted,
    how: str,
    cal,
    n_folds,
    procedure,
    win,
    hop_s,
    cfg,
) -> dict:
    """The report (``report.json``): what the run measured and what the final model is."""
    labels, after = emb.labels, cv.oof["after"]
    return {
        "model": str(model_source),
        "weights": str(weights) if weights else None,
        "data": str(data),
        "n_bonafide": labelled.n_bona,
        "n_spoof": labelled.n_spoof,
        "skipped": labelled.skipped,
        "no_speech": labelled.no_speech,
        "folds": n_folds,
        "grouped": emb.grouped,
        "eer_before_percent": eer(emb.before, labels),
        "eer_probe_percent": eer(cv.oof["probe"], labels),
        "eer_recipe_percent": eer(cv.oof["recipe"], labels),
        "eer_after_percent": eer(after, labels),
        "expected_unseen": expected_eer(after, labels, emb.groups, cfg.seed),
        "eer_stratified_percent": stratified,
        "per_fold": cv.rows,
        "procedure": procedure,
        "final": {
            "procedure": choice.name,
            "inner": choice.inner,
            "probe_c": fitted.info.get("probe_c"),
            "recipe_best_epoch": fitted.info.get("recipe_best_epoch"),
            "how": how,
            "why": choice.why,
        },
        "windows": {"samples": win, "hop_s": hop_s, "aggregate": "mean"},
        "warnings": labelled.warnings,
        "calibration": cal.report,
        "recipe": cfg.to_dict(),
    }


def expected_eer(scores, labels, groups, seed: int, n_boot: int = 1000) -> dict:
    """The EER of the nested out-of-fold ``scores`` with a 95 % bootstrap interval: whole
    groups (sources) resampled when there are at least 3 of them, else files; and the files
    that would halve the interval (its width shrinks about as one over the square root of
    the number of files)."""
    labels = np.asarray(labels)
    g = np.asarray(groups)
    names = sorted(set(groups) - {"-"})
    rng = np.random.default_rng(seed)
    units = [np.flatnonzero(g == n) for n in names] if len(names) >= 3 else None
    boot = []
    for _ in range(n_boot):
        if units is None:
            idx = rng.integers(0, len(labels), len(labels))
        else:
            idx = np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
        if len(set(labels[idx].tolist())) == 2:
            boot.append(eer(scores[idx], labels[idx]))
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return {
        "eer_percent": eer(scores, labels),
        "interval_95_percent": [lo, hi],
        "resampled": "sources" if units is not None else "files",
        "files_to_halve_interval": 4 * len(labels),
    }


def calibrate(emb: AdaptData, cv: CrossValidated, labelled: Labelled, data):
    """Stage 5: the final model's calibration, fitted on the nested out-of-fold scores
    (``after``) of the procedure the final model followed."""
    from ..infer.calibration import Calibration

    after, labels = cv.oof["after"], emb.labels
    return Calibration.fit(
        after[labels == BONAFIDE],
        after[labels != BONAFIDE],
        fitted_on=f"{data}: {labelled.n_bona} bona fide and {labelled.n_spoof} spoof files "
        "(cross-validated scores)",
        domain="deployment",
    )


def write_outputs(
    out: Path,
    model,
    win,
    layer,
    labelled: Labelled,
    emb: AdaptData,
    cv: CrossValidated,
    cal,
    report: dict,
    cfg: TrainConfig,
    model_source,
) -> None:
    """Writes ``model.ckpt`` (the starting model with ``layer`` as its final layer, and the
    calibration), ``report.json``, ``report.md``, ``scores.csv`` and ``det.png``."""
    from ..metrics.det_plot import plot_dets
    from ..models import save_checkpoint
    from ..models._card import replace

    card, labels, oof, before = model.card, emb.labels, cv.oof, emb.before
    final = copy.deepcopy(model).eval()
    head_matches_embedding(final, win).load_state_dict(layer.state_dict())
    choice = report["final"]["procedure"]
    final.card = replace(
        card,
        window_samples=win,
        training_data=f"adapted from {model_source} ({card.training_data}) on "
        f"{report['data']}: {labelled.n_bona} bona fide and {labelled.n_spoof} spoof files, "
        + ("final layer kept, calibration new" if choice == "none" else f"final layer: {choice}"),
    )
    save_checkpoint(
        final,
        out / "model.ckpt",
        config=cfg.to_dict(),
        calibration=cal.to_dict(),
        extra={
            "init": str(model_source),
            "adapt": {
                k: report[k]
                for k in (
                    "eer_before_percent",
                    "eer_after_percent",
                    "n_bonafide",
                    "n_spoof",
                    "folds",
                )
            },
        },
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "path",
                "label",
                "group",
                "fold",
                "score_before",
                "score_probe_cv",
                "score_recipe_cv",
                "score_after_cv",
            ]
        )
        for i, c in enumerate(labelled.clips):
            lab = "bonafide" if c.label == BONAFIDE else "spoof"
            w.writerow(
                [c.path, lab, c.group, int(cv.fold_of[i]) + 1, f"{before[i]:.6f}"]
                + [f"{oof[n][i]:.6f}" for n in ("probe", "recipe", "after")]
            )
    (out / "report.md").write_text(_markdown(report))
    plot_dets(
        {
            "before": (before[labels == BONAFIDE], before[labels != BONAFIDE]),
            "probe (cross-validated)": (
                oof["probe"][labels == BONAFIDE],
                oof["probe"][labels != BONAFIDE],
            ),
            "recipe (cross-validated)": (
                oof["recipe"][labels == BONAFIDE],
                oof["recipe"][labels != BONAFIDE],
            ),
        },
        out / "det.png",
        title=f"{card.name}: before and after adaptation",
    )


def _markdown(r: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.2f}"

    strat = r.get("eer_stratified_percent")
    lines = [
        f"# Adaptation of {r['model']} to {r['data']}",
        "",
        f"{r['n_bonafide']} bona fide and {r['n_spoof']} spoof files"
        + (f" ({len(r['skipped'])} unreadable, skipped)" if r["skipped"] else "")
        + (
            f" ({len(r['no_speech'])} left out: no speech for detect to judge)"
            if r.get("no_speech")
            else ""
        )
        + f"; {r['folds']}-fold nested cross-validation, "
        + ("grouped by the group column (new sources)" if r["grouped"] else "stratified by class")
        + ".",
        "",
        "| | EER (%) |" + (" stratified folds (%) |" if strat else ""),
        "|---|---|" + ("---|" if strat else ""),
        f"| before (the starting model) | {pct(r['eer_before_percent'])} |"
        + (" |" if strat else ""),
        f"| probe (logistic regression on the embeddings) | {pct(r['eer_probe_percent'])} |"
        + (f" {pct(strat['probe'])} |" if strat else ""),
        f"| recipe (the final layer retrained) | {pct(r['eer_recipe_percent'])} |"
        + (f" {pct(strat['recipe'])} |" if strat else ""),
        f"| after: the one chosen inside each fold's training files | "
        f"{pct(r['eer_after_percent'])} |" + (f" {pct(strat['after'])} |" if strat else ""),
        "",
        "Every file is scored by models that never saw it; the choice of a final layer is "
        "made inside the training folds only.",
        "",
        "| fold | files | before (%) | probe (%) | recipe (%) | chosen | after (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in r["per_fold"]:
        lines.append(
            f"| {f['fold']} | {f['files']} | {pct(f['eer_before_percent'])} | "
            f"{pct(f['eer_probe_percent'])} | {pct(f['eer_recipe_percent'])} | {f['chosen']} | "
            f"{pct(f['eer_after_percent'])} |"
        )
    lines += ["", f"The final model (model.ckpt): {r['final']['how']}."]
    if r["final"].get("why"):
        lines += ["", f"Chosen by: {r['final']['why']}."]
    x = r.get("expected_unseen")
    if x:
        lo, hi = x["interval_95_percent"]
        lines += [
            "",
            "**What to expect.** On recordings like these sources"
            + (" (sources other than those trained on)" if r["grouped"] else "")
            + f", an EER near {x['eer_percent']:.1f} % (95 % interval {lo:.1f} - {hi:.1f} %, "
            f"from the nested cross-validation, {x['resampled']} resampled); about "
            f"{x['files_to_halve_interval']} labelled files would halve that interval.",
        ]
    lines += _split_table_lines(r["model"], r["n_bonafide"] + r["n_spoof"], r["grouped"])
    lines += [f"\n**Warning:** {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"


#: ``benchmarks/adapt_real.py``'s table for the official AASIST (docs/adapt.md)
SPLIT_TABLE = Path(__file__).parents[1] / "recipes" / "adapt_realdev.json"


def _split_table_lines(model: str, n: int, grouped: bool) -> list[str]:
    """The row of the repeated-split table (real recordings, official AASIST) for the size
    nearest to ``n`` files, unseen files from other sources when the data are grouped, else
    from the same sources; nothing for other models."""
    if str(model).split(":")[0] != "aasist" or not SPLIT_TABLE.is_file():
        return []
    t = json.loads(SPLIT_TABLE.read_text()).get("sources" if grouped else "files")
    if t is None:
        return []
    size = min(t["sizes"], key=lambda s: abs(int(s) - n))
    row = t["sizes"][size]
    cells = " | ".join(f"{row[k][0]:.1f} +- {row[k][1]:.1f}" for k in t["columns"])
    return [
        "",
        f"For comparison, {t['what']}: the EER on unseen files, mean +- standard deviation "
        f"over {t['splits']} splits (%), at the size nearest to yours:",
        "",
        "| adapt-set size | " + " | ".join(t["columns"].values()) + " |",
        "|---|" + "---|" * len(t["columns"]),
        f"| {size} | {cells} |",
    ]
