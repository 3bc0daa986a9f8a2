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
   on an inner held-out fifth). A 3-fold cross-validation inside the training folds chooses
   among them and keeping the published layer (``none``); the fold's files, which none of
   these saw, are scored by the chosen one;
4. trains the final model by exactly that procedure on all files (the choice by a 3-fold
   cross-validation over all files, then the chosen procedure with its own stopping rule),
   calibrates it on the nested out-of-fold scores, and writes ``model.ckpt`` (self-describing,
   usable by ``detect`` and ``serve``), ``report.json`` (before, probe, recipe and after, per
   fold, and which procedure the final model used), ``report.md``, ``det.png`` and
   ``scores.csv`` (each file's fold and its scores).

The adaptation recipes (``configs/adapt-*.yaml``) train the final bona fide/spoof layer on the
frozen network's embeddings (``freeze: [all_but_head]``): the embeddings of every training
window (the file's sliding windows plus ``windows_per_file`` random crops through the recipe's
augmentation) are computed once by the fastest engine, so the K + 1 trainings cost seconds and
the run is dominated by one pass of the network over the data. Deeper fine-tuning (an unfrozen
encoder) is ``spoofscope train --init``.

An interrupted run resumes: per-file embeddings are kept under ``out/cache/``.
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
import torch

from ..audio import load_audio, random_crop
from ..data.protocols import BONAFIDE
from ..errors import ConfigError, InputError
from ..metrics import compute_eer
from .config import TrainConfig
from .finetune import head_logits, head_matches_embedding

log = logging.getLogger(__name__)

#: below this many files of a class the EER estimate is too coarse to trust
FEW_PER_CLASS = 20
#: above this ratio between the classes the estimate leans on the small class
UNBALANCED = 10.0


@dataclass
class Clip:
    path: str
    label: int
    group: str
    key: str = ""  # sha256 of the file's bytes: its seeds and its place in the folds
    windows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def read_labelled(spec) -> list:
    """The labelled files of ``spec``: a ``path,label[,group]`` CSV or a folder with
    ``bonafide/`` and ``spoof/``. Labels other than bonafide/spoof are an error naming the line."""
    from ..data.datasets import FolderDataset
    from ..data.protocols import parse_csv

    p = Path(spec)
    if p.is_dir():
        return list(FolderDataset(p, None).trials)
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
        raise ConfigError(
            f"{what}: {len(names)} groups cannot fill {k} folds: use --folds {len(names)}"
            + ("" if len(names) >= 2 else " or more groups")
        )


def _folds(labels: np.ndarray, groups: list[str], k: int, seed: int, keys=None) -> np.ndarray:
    """Fold index of each file: whole groups per fold (largest first, to the emptiest fold)
    when groups are given, else stratified by class. ``keys`` (one string per file, e.g. its
    content's sha256) fix the order before the shuffle, so the folds depend on the files and
    not on the order or spelling of the list."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), int)
    if any(g != "-" for g in groups):
        names = sorted(set(groups))
        if len(names) < k:
            raise ConfigError(
                f"{len(names)} groups cannot fill {k} folds: use --folds {len(names)}"
            )
        rng.shuffle(names)
        sizes = {g: groups.count(g) for g in names}
        load = np.zeros(k)
        where = {}
        for g in sorted(names, key=lambda g: -sizes[g]):
            where[g] = int(np.argmin(load))
            load[where[g]] += sizes[g]
        return np.array([where[g] for g in groups])
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        if keys is not None:
            idx = idx[np.argsort([keys[i] for i in idx], kind="stable")]
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def _eer(scores, labels) -> float:
    scores, labels = np.asarray(scores), np.asarray(labels)
    return float(compute_eer(scores[labels == BONAFIDE], scores[labels != BONAFIDE])[0] * 100)


class _Head:
    """Training the final layer on cached embeddings, from the pretrained layer's weights."""

    def __init__(self, layer: torch.nn.Linear, cfg: TrainConfig, bona: int):
        self.init = copy.deepcopy(layer).float()
        self.cfg, self.bona = cfg, bona

    def fit(self, x, y, epochs, x_val=None, y_val=None, seed=0):
        """Returns (layer, best_epoch). With validation data, the layer of the epoch with the
        lowest class-balanced validation loss (continuous, unlike the EER of a few files).

        The layer is trained on standardised embeddings (the training windows' mean and
        deviation), starting from the pretrained layer rewritten for them, and rewritten back
        at the end: the same function of the embedding, better conditioned for Adam."""
        cfg = self.cfg
        torch.manual_seed(seed)
        mu = torch.from_numpy(x.mean(0))
        sd = torch.from_numpy(x.std(0)).clamp_min(1e-6)
        layer = copy.deepcopy(self.init)
        with torch.no_grad():  # W z + c with z = (e - mu) / sd equals W0 e + b0
            layer.bias.add_(layer.weight @ mu)
            layer.weight.mul_(sd)
        opt = torch.optim.Adam(layer.parameters(), lr=cfg.optimizer.lr)
        # weight decay pulls towards the starting layer (L2-SP), not towards zero: what the
        # published layer knew about other attacks is kept unless the data say otherwise
        start = [p.detach().clone() for p in layer.parameters()]
        decay = cfg.optimizer.weight_decay

        def z(a):
            return (torch.from_numpy(a) - mu) / sd

        xt, yt = z(x), torch.from_numpy(y.astype(np.int64))
        loss_fn = torch.nn.CrossEntropyLoss(weight=_balanced(y))
        if x_val is not None:
            xv, yv = z(x_val), torch.from_numpy(y_val.astype(np.int64))
            val_loss = torch.nn.CrossEntropyLoss(weight=_balanced(y_val))
        g = torch.Generator().manual_seed(seed)
        best, best_epoch, best_state, stale = np.inf, 0, copy.deepcopy(layer.state_dict()), 0
        for epoch in range(epochs):
            order = torch.randperm(len(yt), generator=g)
            for i in range(0, len(order), cfg.batch_size):
                b = order[i : i + cfg.batch_size]
                opt.zero_grad()
                loss = loss_fn(head_logits(layer, xt[b]), yt[b])
                if decay:
                    loss = loss + decay * sum(
                        ((p - p0) ** 2).sum()
                        for p, p0 in zip(layer.parameters(), start, strict=True)
                    )
                loss.backward()
                opt.step()
            if x_val is None:
                continue
            with torch.no_grad():
                v = float(val_loss(head_logits(layer, xv), yv))
            if v < best - 1e-6:
                best, best_epoch, stale = v, epoch + 1, 0
                best_state = copy.deepcopy(layer.state_dict())
            else:
                stale += 1
                if cfg.early_stopping.patience and stale >= cfg.early_stopping.patience:
                    break
        if x_val is not None:
            layer.load_state_dict(best_state)
        with torch.no_grad():  # back to the embedding's own scale
            layer.weight.div_(sd)
            layer.bias.sub_(layer.weight @ mu)
        return layer, (max(best_epoch, 1) if x_val is not None else epochs)


#: how the new final layer is learnt: chosen by cross-validation among keeping the published
#: one, the probe and the recipe; or one of the two
PROCEDURES = ("auto", "probe", "recipe")
#: the probe's inverse penalties, chosen among by an inner cross-validation
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _fit_logreg(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression with an L2 penalty ``|w|^2 / (2 c n)`` on
    standardised features: ``(w, b)`` of the log-odds (bona fide vs spoof) in the features'
    own scale. It is the calibration's prior-weighted regression at prior 0.5."""
    from ..infer._logreg import fit_llr_map

    x = np.asarray(x, np.float64)
    pos = np.asarray(y) == BONAFIDE
    w, b = fit_llr_map(x[pos], x[~pos], prior=0.5, l2=0.5 / (c * len(pos)))
    return w, b


def _balanced_log_loss(s: np.ndarray, y: np.ndarray) -> float:
    pos = np.asarray(y) == BONAFIDE
    return float(0.5 * np.mean(np.logaddexp(0, -s[pos])) + 0.5 * np.mean(np.logaddexp(0, s[~pos])))


def _as_head(template: torch.nn.Linear, w: np.ndarray, b: float, bona: int) -> torch.nn.Linear:
    """A copy of the head that scores the log-odds ``w.e + b``: the bona fide logit minus the
    spoof logit (a two-output head gets half on each, so its bona fide logit, the score, is
    half the log-odds), or the single output of a one-output head."""
    layer = copy.deepcopy(template).float()
    wt = torch.from_numpy(np.asarray(w, np.float32))
    with torch.no_grad():
        if layer.out_features == 1:
            layer.weight[0], layer.bias[0] = wt, float(b)
        else:
            layer.weight[bona], layer.bias[bona] = wt / 2, float(b) / 2
            layer.weight[1 - bona], layer.bias[1 - bona] = -wt / 2, -float(b) / 2
    return layer


def _balanced(y) -> torch.Tensor:
    """CE class weights that give both classes the same total weight."""
    counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
    return torch.tensor(len(y) / (2 * np.maximum(counts, 1)), dtype=torch.float32)


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
) -> dict:
    """Adapt ``model_source`` (``name[:tag]``, a checkpoint or ``hf:...``; ``bonafide_label``
    as in :func:`~spoofscope.models.load_model`) to the labelled files ``data``, leaving out
    the files ``detect`` would not judge under the activity meter ``vad`` (default as detect's);
    see the module docstring. ``procedure``: ``auto`` (probe or recipe, chosen by the inner
    cross-validation), or ``probe`` / ``recipe`` to use that one throughout. Returns the report
    (also written to ``out/report.json``)."""
    from tqdm.auto import tqdm

    from ..augment import build_augmentation
    from ..infer import Decision, WindowPolicy, make_engine
    from ..infer.activity import default_vad, make_meter
    from ..infer.calibration import Calibration
    from ..infer.windows import sliding_windows
    from ..metrics.det_plot import plot_dets
    from ..models import load_model, save_checkpoint
    from ..models._card import replace

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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

    model = load_model(model_source, weights=weights, bonafide_label=bonafide_label)
    card = model.card
    win = int(cfg.crop_samples or card.window_samples)
    head = head_matches_embedding(model, win)
    if head is None:
        raise ConfigError(
            f"{card.name}: its logits are not one Linear layer of its embedding, so the head "
            "cannot be trained on cached embeddings; use spoofscope train --init"
        )
    eng = make_engine(model, engine, length=win)
    augment = build_augmentation(cfg.augment)
    hop = max(1, int(round(hop_s * card.sample_rate)))
    vad = vad or default_vad()  # the activity meter detect uses
    cache = (
        out
        / "cache"
        / _fingerprint(
            str(model_source),
            str(weights),
            card.to_dict(),
            win,
            hop,
            cfg.augment,
            cfg.windows_per_file,
            cfg.seed,
            "judged-windows-v2",  # windows as detect judges them; abstentions recorded
            vad,
        )
    )
    cache.mkdir(parents=True, exist_ok=True)
    silence_db, need = WindowPolicy().silence_db, Decision().min_speech_s

    # 1-2. every file: the windows detect judges (scored: before) and augmented random crops
    # (training); a file detect would not judge (no_speech) is listed and left out
    clips, skipped, no_speech = [], [], []
    emb_eval, idx_eval, emb_aug, idx_aug, before = [], [], [], [], []
    bar = tqdm(trials, desc="embedding", disable=not progress, leave=False)
    for t in bar:
        try:
            key = _content_key(t.path)
        except OSError as e:
            skipped.append({"path": str(t.path), "why": f"cannot be read ({e.strerror or e})"})
            continue
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
    if no_speech:
        log.warning(
            "%d of %d files left out: detect would not judge them (no_speech; listed in "
            "report.json); first: %s",
            len(no_speech),
            len(trials),
            no_speech[0]["path"],
        )
    if skipped:
        log.warning(
            "%d of %d files unreadable, skipped (listed in report.json); first: %s (%s)",
            len(skipped),
            len(trials),
            skipped[0]["path"],
            skipped[0]["why"],
        )
    labels = np.array([c.label for c in clips])
    n_bona, n_spoof = int(np.sum(labels == BONAFIDE)), int(np.sum(labels != BONAFIDE))
    if min(n_bona, n_spoof) < folds:
        raise InputError(
            f"{data}: {n_bona} bona fide and {n_spoof} spoof files readable; {folds}-fold "
            f"cross-validation needs at least {folds} of each"
        )
    warnings = []
    if min(n_bona, n_spoof) < FEW_PER_CLASS:
        warnings.append(
            f"only {min(n_bona, n_spoof)} files of the smaller class: the EER estimates move by "
            f"{100 / min(n_bona, n_spoof):.0f} points per file; collect more before trusting them"
        )
    if max(n_bona, n_spoof) / min(n_bona, n_spoof) > UNBALANCED:
        warnings.append(
            f"unbalanced data ({n_bona} bona fide, {n_spoof} spoof): the estimate rests on the "
            "smaller class"
        )
    for w in warnings:
        log.warning(w)

    E = np.concatenate(emb_eval).astype(np.float32)
    I_e = np.concatenate(idx_eval)
    A = np.concatenate(emb_aug).astype(np.float32)
    I_a = np.concatenate(idx_aug)
    y_e, y_a = labels[I_e], labels[I_a]
    before = np.array(before)
    groups = [c.group for c in clips]
    keys = [c.key for c in clips]
    trainer = _Head(head, cfg, card.bonafide_index)
    bona = card.bonafide_index
    grouped = any(g != "-" for g in groups)
    # each file's embedding as the detector judges it: the mean of its judged windows (its
    # score is the mean of their logits, i.e. the linear head of this mean)
    F = np.stack([E[I_e == i].mean(0) for i in range(len(clips))]).astype(np.float32)

    def score(layer, files) -> np.ndarray:
        with torch.no_grad():
            return head_logits(layer, torch.from_numpy(F[files]))[:, bona].double().numpy()

    def fit_recipe(files, seed=0):
        """The recipe on ``files``: early stopping on an inner held-out fifth (grouped when
        there are groups enough), as in every fold and for the final model."""
        files = np.asarray(files)
        sub = [groups[i] for i in files]
        if len(set(sub)) < 5:
            sub = ["-"] * len(files)  # too few groups for an inner grouped split
        inner = _folds(labels[files], sub, 5, cfg.seed + 1 + seed, [keys[i] for i in files])
        val, tr = files[inner == 0], files[inner != 0]
        if len(set(labels[val].tolist())) < 2 or len(set(labels[tr].tolist())) < 2:
            tr, val = files, None  # too few files to hold any out: the recipe's epochs
        sel_e, sel_a = np.isin(I_e, tr), np.isin(I_a, tr)
        x = np.concatenate([E[sel_e], A[sel_a]])
        y = np.concatenate([y_e[sel_e], y_a[sel_a]])
        if val is None:
            return trainer.fit(x, y, cfg.epochs, seed=seed)
        sel_v = np.isin(I_e, val)
        return trainer.fit(x, y, cfg.epochs, E[sel_v], y_e[sel_v], seed=seed)

    def fit_probe(files, seed=0):
        """Class-balanced L2 logistic regression on the file embeddings, its penalty chosen
        by a 3-fold cross-validation inside ``files`` (balanced log loss)."""
        files = np.asarray(files)
        y = labels[files]
        c = 1.0
        if min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE)) >= 3:
            inner = _folds(
                y, ["-"] * len(files), 3, cfg.seed + 101 + seed, [keys[i] for i in files]
            )
            losses = []
            for cc in PROBE_C:
                oof = np.zeros(len(files))
                for j in range(3):
                    w, b = _fit_logreg(F[files[inner != j]], y[inner != j], cc)
                    oof[inner == j] = F[files[inner == j]].astype(np.float64) @ w + b
                losses.append(_balanced_log_loss(oof, y))
            c = PROBE_C[int(np.argmin(losses))]
        w, b = _fit_logreg(F[files], y, c)
        return _as_head(head, w, b, bona), c

    def select(files, seed=0):
        """Keep the published layer (``none``), the probe or the recipe for ``files``, by a
        cross-validation inside them: 3 folds, by group when there are groups (2 groups: 2
        folds; 1: nothing to judge new groups on, so ``none``), pooled EER. The better of
        probe and recipe replaces the published layer only when its EER is lower by more than
        one standard error, sqrt(e (1 - e) / n) for the published layer's EER e and the
        smaller class's n files. ``(name, {name: inner EER %, "margin": points})``."""
        if procedure != "auto":
            return procedure, {}
        files = np.asarray(files)
        y = labels[files]
        if min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE)) < 3:
            return "none", {}
        sub = [groups[i] for i in files] if grouped else ["-"] * len(files)
        k = min(3, len(set(sub))) if grouped else 3
        if k < 2:
            return "none", {}
        inner = _folds(y, sub, k, cfg.seed + 201 + seed, [keys[i] for i in files])
        if any(len(set(y[inner != j].tolist())) < 2 for j in range(k)):  # a one-class part
            return "none", {}
        oof = {"none": before[files], "probe": np.zeros(len(files)), "recipe": np.zeros(len(files))}
        for j in range(k):
            tr, te = files[inner != j], files[inner == j]
            oof["probe"][inner == j] = score(fit_probe(tr, seed + j)[0], te)
            oof["recipe"][inner == j] = score(fit_recipe(tr, seed + j)[0], te)
        eers = {n: _eer(o, y) for n, o in oof.items()}
        best = min(("probe", "recipe"), key=lambda n: eers[n])
        # a new layer must beat the published one by more than the noise of the estimate: one
        # standard error of an error rate e over the smaller class's n files
        e, n = eers["none"] / 100, min(np.sum(y == BONAFIDE), np.sum(y != BONAFIDE))
        margin = 100 * float(np.sqrt(e * (1 - e) / n))
        eers["margin"] = margin
        return (best if eers[best] < eers["none"] - margin else "none"), eers

    def cross_validate(fold_of):
        """Nested: in each outer fold, both procedures and the choice between them (made
        inside the training folds only) score the fold's files, which none of them saw."""
        oof = {n: np.zeros(len(clips)) for n in ("probe", "recipe", "after")}
        rows = []
        for k in range(folds):
            test, train = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
            probe_layer, c = fit_probe(train, seed=k)
            recipe_layer, ep = fit_recipe(train, seed=k)
            choice, inner = select(train, seed=k)
            oof["probe"][test] = score(probe_layer, test)
            oof["recipe"][test] = score(recipe_layer, test)
            oof["after"][test] = before[test] if choice == "none" else oof[choice][test]
            both = len(set(labels[test].tolist())) == 2

            def fold_eer(s, test=test, both=both):
                return _eer(s[test], labels[test]) if both else None

            rows.append(
                {
                    "fold": k + 1,
                    "files": int(len(test)),
                    "eer_before_percent": fold_eer(before),
                    "eer_probe_percent": fold_eer(oof["probe"]),
                    "eer_recipe_percent": fold_eer(oof["recipe"]),
                    "chosen": choice,
                    "eer_after_percent": fold_eer(oof["after"]),
                    "inner_eer_percent": inner,
                    "probe_c": c,
                    "recipe_best_epoch": ep,
                }
            )
        return oof, rows

    # 3. nested cross-validation: each fold scored by models that never saw it
    fold_of = _folds(labels, groups, folds, cfg.seed, keys)
    oof, per_fold = cross_validate(fold_of)
    after = oof["after"]
    eer_before, eer_after = _eer(before, labels), _eer(after, labels)
    stratified = None
    if grouped:  # the estimate for files of sources seen in training, beside unseen ones
        s_oof, _ = cross_validate(_folds(labels, ["-"] * len(clips), folds, cfg.seed, keys))
        stratified = {n: _eer(v, labels) for n, v in s_oof.items()}

    # 4. the final model: the same procedure on all files, calibrated on the out-of-fold
    # scores of the nested cross-validation
    choice, inner = select(np.arange(len(clips)), seed=folds)
    c_final = ep = None
    if choice == "none":
        layer = copy.deepcopy(head)
        how = (
            "none: the published final layer kept (neither the probe nor the recipe beat it in "
            "a 3-fold cross-validation on all files); only the calibration is new"
        )
    elif choice == "probe":
        layer, c_final = fit_probe(np.arange(len(clips)), seed=folds)
        how = (
            f"probe: class-balanced logistic regression on the file embeddings, C = {c_final:g} "
            "chosen by a 3-fold cross-validation on all files"
        )
    else:
        layer, ep = fit_recipe(np.arange(len(clips)), seed=folds)
        how = (
            "recipe: the final layer trained from the published one, early stopping on a "
            f"held-out fifth of the files (best epoch {ep}), as in every fold"
        )
    final = copy.deepcopy(model).eval()
    head_matches_embedding(final, win).load_state_dict(layer.state_dict())
    cal = Calibration.fit(
        after[labels == BONAFIDE],
        after[labels != BONAFIDE],
        fitted_on=f"{data}: {n_bona} bona fide and {n_spoof} spoof files (cross-validated scores)",
        domain="deployment",
    )
    final.card = replace(
        card,
        window_samples=win,
        training_data=f"adapted from {model_source} ({card.training_data}) on {data}: "
        f"{n_bona} bona fide and {n_spoof} spoof files, "
        + ("final layer kept, calibration new" if choice == "none" else f"final layer: {choice}"),
    )
    report = {
        "model": str(model_source),
        "weights": str(weights) if weights else None,
        "data": str(data),
        "n_bonafide": n_bona,
        "n_spoof": n_spoof,
        "skipped": skipped,
        "no_speech": no_speech,
        "folds": folds,
        "grouped": grouped,
        "eer_before_percent": eer_before,
        "eer_probe_percent": _eer(oof["probe"], labels),
        "eer_recipe_percent": _eer(oof["recipe"], labels),
        "eer_after_percent": eer_after,
        "eer_stratified_percent": stratified,
        "per_fold": per_fold,
        "procedure": procedure,
        "final": {
            "procedure": choice,
            "inner_eer_percent": inner,
            "probe_c": c_final,
            "recipe_best_epoch": ep,
            "how": how,
        },
        "windows": {"samples": win, "hop_s": hop_s, "aggregate": "mean"},
        "warnings": warnings,
        "calibration": cal.report,
        "recipe": cfg.to_dict(),
    }
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
        for i, c in enumerate(clips):
            lab = "bonafide" if c.label == BONAFIDE else "spoof"
            w.writerow(
                [c.path, lab, c.group, int(fold_of[i]) + 1, f"{before[i]:.6f}"]
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
    return report


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
        "Every file is scored by models that never saw it; the choice (the published layer, "
        "probe or recipe) is made inside the training folds only.",
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
    lines += [f"\n**Warning:** {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"
