"""Adapt a pretrained detector to a user's own labelled audio, and say honestly whether it helped.

``adapt(model, data, out, recipe)``:

1. reads ``data`` (a ``path,label[,group]`` CSV or ``bonafide/`` + ``spoof/`` folders of files
   in any format and length); unreadable files are listed and skipped;
2. scores every file with the starting model (sliding windows of the model's window, hop
   ``hop_s``, window scores averaged): the EER *before*;
3. estimates the EER *after* adaptation by K-fold cross-validation (folds grouped by the CSV's
   ``group`` column when it has one, else stratified by class): each fold's model is adapted on
   the other folds (with an inner held-out part for early stopping) and scores only its own
   fold's files, which it never saw;
4. adapts the final model on all files (for the median of the folds' best epoch counts),
   calibrates it on the out-of-fold scores, and writes ``model.ckpt`` (self-describing, usable
   by ``detect`` and ``serve``), ``report.json``, ``report.md``, ``det.png`` (both curves) and
   ``scores.csv`` (each file's fold, score before and cross-validated score after).

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

    def file_scores(self, layer, emb, index, labels_per_window):
        """Mean bona fide logit of each file's windows, and the file labels."""
        with torch.no_grad():
            s = head_logits(layer, torch.from_numpy(emb))[:, self.bona].numpy()
        files = np.unique(index)
        scores = np.array([s[index == f].mean() for f in files])
        labels = np.array([labels_per_window[index == f][0] for f in files])
        return scores, labels


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
    progress: bool = True,
) -> dict:
    """Adapt ``model_source`` (``name[:tag]`` or a checkpoint) to the labelled files ``data``;
    see the module docstring. Returns the report (also written to ``out/report.json``)."""
    from tqdm.auto import tqdm

    from ..augment import build_augmentation
    from ..infer import make_engine
    from ..infer.calibration import Calibration
    from ..infer.windows import sliding_windows
    from ..metrics.det_plot import plot_dets
    from ..models import load_model, save_checkpoint
    from ..models._card import replace

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
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

    model = load_model(model_source, weights=weights)
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
        )
    )
    cache.mkdir(parents=True, exist_ok=True)

    # 1-2. every file: sliding windows (scored: before) and augmented random crops (training)
    clips, skipped = [], []
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
        else:
            try:
                x = load_audio(t.path, card.sample_rate)
            except Exception as e:  # noqa: BLE001 - any unreadable file is listed, not fatal
                skipped.append({"path": str(t.path), "why": str(e).splitlines()[0][:300]})
                continue
            ws = np.stack([w.samples for w in sliding_windows([x], win, hop)])
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
            np.savez(f.with_suffix(".tmp.npz"), eval=ev, eval_logits=ev_logits, aug=aug)
            f.with_suffix(".tmp.npz").replace(f)
        k = len(clips)
        clips.append(Clip(str(t.path), t.label, t.speaker, key))
        emb_eval.append(ev)
        idx_eval.append(np.full(len(ev), k))
        emb_aug.append(aug)
        idx_aug.append(np.full(len(aug), k))
        before.append(float(ev_logits[:, card.bonafide_index].mean()))
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
    fold_of = _folds(labels, groups, folds, cfg.seed, keys)
    trainer = _Head(head, cfg, card.bonafide_index)

    def fit_on(files, epochs=None, seed=0):
        """Train on ``files``; with ``epochs`` None, early-stop on an inner held-out part."""
        files = np.asarray(files)
        if epochs is not None:
            sel_e, sel_a = np.isin(I_e, files), np.isin(I_a, files)
            x = np.concatenate([E[sel_e], A[sel_a]])
            y = np.concatenate([y_e[sel_e], y_a[sel_a]])
            return trainer.fit(x, y, epochs, seed=seed)
        sub = [groups[i] for i in files]
        if len(set(sub)) < 5:
            sub = ["-"] * len(files)  # too few groups for an inner grouped split
        inner = _folds(labels[files], sub, 5, cfg.seed + 1 + seed, [keys[i] for i in files])
        val, tr = files[inner == 0], files[inner != 0]
        if len(set(labels[val].tolist())) < 2 or len(set(labels[tr].tolist())) < 2:
            return fit_on(files, epochs=cfg.epochs, seed=seed)
        sel_e, sel_a, sel_v = np.isin(I_e, tr), np.isin(I_a, tr), np.isin(I_e, val)
        x = np.concatenate([E[sel_e], A[sel_a]])
        y = np.concatenate([y_e[sel_e], y_a[sel_a]])
        return trainer.fit(x, y, cfg.epochs, E[sel_v], y_e[sel_v], seed=seed)

    # 3. cross-validation: each fold scored by a model that never saw it
    after = np.zeros(len(clips))
    per_fold, best_epochs = [], []
    for k in range(folds):
        test = np.flatnonzero(fold_of == k)
        layer, ep = fit_on(np.flatnonzero(fold_of != k), seed=k)
        sel = np.isin(I_e, test)
        s, _ = trainer.file_scores(layer, E[sel], I_e[sel], y_e[sel])
        after[test] = s
        best_epochs.append(ep)
        one = len(set(labels[test].tolist())) == 2
        per_fold.append(
            {
                "fold": k + 1,
                "files": int(len(test)),
                "eer_before_percent": _eer(before[test], labels[test]) if one else None,
                "eer_after_percent": _eer(s, labels[test]) if one else None,
                "best_epoch": ep,
            }
        )
    eer_before, eer_after = _eer(before, labels), _eer(after, labels)

    # 4. the final model on all files, calibrated on the out-of-fold scores
    epochs = int(np.median(best_epochs))
    layer, _ = fit_on(np.arange(len(clips)), epochs=epochs, seed=folds)
    final = copy.deepcopy(model).eval()
    head_matches_embedding(final, win).load_state_dict(layer.state_dict())
    cal = Calibration.fit(after[labels == BONAFIDE], after[labels != BONAFIDE])
    final.card = replace(
        card,
        window_samples=win,
        training_data=f"adapted from {model_source} ({card.training_data}) on {data}: "
        f"{n_bona} bona fide and {n_spoof} spoof files, final layer retrained",
    )
    report = {
        "model": str(model_source),
        "weights": str(weights) if weights else None,
        "data": str(data),
        "n_bonafide": n_bona,
        "n_spoof": n_spoof,
        "skipped": skipped,
        "folds": folds,
        "grouped": any(g != "-" for g in groups),
        "eer_before_percent": eer_before,
        "eer_after_percent": eer_after,
        "per_fold": per_fold,
        "final_epochs": epochs,
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
        w.writerow(["path", "label", "group", "fold", "score_before", "score_after_cv"])
        for c, fo, b_, a_ in zip(clips, fold_of, before, after, strict=True):
            lab = "bonafide" if c.label == BONAFIDE else "spoof"
            w.writerow([c.path, lab, c.group, int(fo) + 1, f"{b_:.6f}", f"{a_:.6f}"])
    (out / "report.md").write_text(_markdown(report))
    plot_dets(
        {
            "before": (before[labels == BONAFIDE], before[labels != BONAFIDE]),
            "after (cross-validated)": (after[labels == BONAFIDE], after[labels != BONAFIDE]),
        },
        out / "det.png",
        title=f"{card.name}: before and after adaptation",
    )
    return report


def _markdown(r: dict) -> str:
    lines = [
        f"# Adaptation of {r['model']} to {r['data']}",
        "",
        f"{r['n_bonafide']} bona fide and {r['n_spoof']} spoof files"
        + (f" ({len(r['skipped'])} unreadable, skipped)" if r["skipped"] else "")
        + f"; {r['folds']}-fold cross-validation, "
        + ("grouped by the group column" if r["grouped"] else "stratified by class")
        + ".",
        "",
        "| | EER (%) |",
        "|---|---|",
        f"| before (the starting model) | {r['eer_before_percent']:.2f} |",
        f"| after (cross-validated: each file scored by a model that never saw it) | "
        f"{r['eer_after_percent']:.2f} |",
        "",
        "| fold | files | EER before (%) | EER after (%) | epochs |",
        "|---|---|---|---|---|",
    ]
    for f in r["per_fold"]:
        b = "-" if f["eer_before_percent"] is None else f"{f['eer_before_percent']:.2f}"
        a = "-" if f["eer_after_percent"] is None else f"{f['eer_after_percent']:.2f}"
        lines.append(f"| {f['fold']} | {f['files']} | {b} | {a} | {f['best_epoch']} |")
    lines += ["", f"The final model was trained on all files for {r['final_epochs']} epochs."]
    lines += [f"\n**Warning:** {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"
