"""The training loop: weighted CE, cosine schedule, dev EER / min t-DCF every epoch, best and
top-N checkpoints, early stopping, SWA with BatchNorm recomputation, exact resume, DDP, and the
final evaluation on the labelled eval split."""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.cache import AudioCache
from ..data.formats import open_splits
from ..data.protocols import BONAFIDE
from ..distributed import barrier, cleanup, init_distributed
from ..evaluation import evaluate_arrays, evaluate_score_file, write_score_file
from ..infer.scoring import score_dataset
from ..metrics.det_plot import plot_det
from ..models import create_model, load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig
from .data import TrainSet, balanced_sampler, class_weights
from .finetune import frozen_parameter_names, keep_frozen_statistics, set_frozen

log = logging.getLogger(__name__)


def _subset(trials, n, seed):
    if n is None or n >= len(trials):
        return trials
    idx = np.sort(np.random.default_rng(seed).permutation(len(trials))[:n])
    return [trials[i] for i in idx]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(cfg: TrainConfig, device):
    if device.type != "cuda" or cfg.amp == "none":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


def _labels_attacks(trials):
    return (np.array([t.label for t in trials]), np.array([t.attack for t in trials]))


def _cosine(step, total, lr, min_lr):
    """Multiplier of the base lr on a per-step cosine from lr down to min_lr."""
    if lr <= 0:
        return 1.0
    return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))) / lr


class Trainer:
    def __init__(self, cfg: TrainConfig, data, out, resume: bool = False, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.info = init_distributed()
        self.device = _device()
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = str(data)
        self.splits = open_splits(data, cfg.seed)
        self.train_trials = _subset(self.splits.train.trials, cfg.max_train_utts, cfg.seed)
        self.dev_trials = _subset(self.splits.dev.trials, cfg.max_dev_utts, cfg.seed + 1)
        self.cache = AudioCache(self.out / "audio_cache") if cfg.cache_audio else None
        self.resume = resume

    # -- helpers --------------------------------------------------------------------------
    def log(self, msg, *a):
        if self.info.is_main:
            log.info(msg, *a)

    def _seed(self):
        random.seed(self.cfg.seed)
        np.random.seed(self.cfg.seed % (2**32))
        torch.manual_seed(self.cfg.seed)
        if self.cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

    def _new_model(self):
        """A fresh model (or the ``init`` weights) whose card records the crop and data."""
        cfg = self.cfg
        if cfg.init:
            model = load_model(cfg.init)
            self.log("fine-tuning from %s (%s)", cfg.init, model.card.name)
            seen = f"fine-tuned from {cfg.init} ({model.card.training_data}) on {self.data}"
        else:
            model = create_model(cfg.model, **cfg.model_args)
            seen = f"trained with spoofscope on {self.data}"
        self.crop = int(cfg.crop_samples or model.card.window_samples)
        self.eval_samples = int(cfg.eval_samples or self.crop)
        model.card = replace(
            model.card,
            window_samples=self.crop,
            window_policy=f"first {self.crop} samples; shorter audio tiled",
            training_data=seen,
        )
        self.frozen = frozen_parameter_names(model, cfg.freeze) if cfg.freeze else []
        self.frozen_set = set(self.frozen)
        if self.frozen:
            set_frozen(model, self.frozen)
            n = sum(p.numel() for n_, p in model.named_parameters() if n_ in self.frozen_set)
            total = sum(p.numel() for p in model.parameters())
            self.log(
                "frozen: %s (%d of %d parameters)%s",
                ", ".join(cfg.freeze),
                n,
                total,
                f" for {cfg.freeze_epochs} epochs" if cfg.freeze_epochs else "",
            )
        return model

    def _score(self, model, trials, desc: str):
        return score_dataset(
            model,
            trials,
            window_samples=self.eval_samples,
            batch_size=self.cfg.eval_batch_size,
            num_workers=self.cfg.num_workers,
            cache=self.cache,
            info=self.info,
            progress=self.progress and self.info.is_main,
            desc=desc,
        )

    def _build(self):
        cfg = self.cfg
        self._seed()
        model = self._new_model().to(self.device)
        if cfg.channels_last and self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        labels = np.array([t.label for t in self.train_trials])
        w = class_weights(labels, cfg.loss.class_weights)
        self.criterion = torch.nn.CrossEntropyLoss(weight=None if w is None else w.to(self.device))
        self.log(
            "training on %d trials (%d bona fide, %d spoof); class weights %s; sampler %s",
            len(labels),
            int(np.sum(labels == 1)),
            int(np.sum(labels == 0)),
            None if w is None else [round(float(v), 6) for v in w],
            cfg.loss.sampler,
        )
        o = cfg.optimizer
        params = self._param_groups(model)
        if o.name == "adam":
            opt = torch.optim.Adam(
                params,
                lr=o.lr,
                betas=tuple(o.betas),
                weight_decay=o.weight_decay,
                amsgrad=o.amsgrad,
            )
        elif o.name == "adamw":
            opt = torch.optim.AdamW(
                params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
            )
        else:
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        self.steps_per_epoch = math.ceil(
            len(self.train_trials) * cfg.windows_per_file / (cfg.batch_size * self.info.world)
        )
        total = max(1, cfg.epochs * self.steps_per_epoch)
        if cfg.scheduler.name == "cosine":
            lr, mn = o.lr, cfg.scheduler.min_lr
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, total, lr, mn))
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        self.model, self.opt, self.sched = model, opt, sched
        # fp16 needs loss scaling; elsewhere the scaler is a pass-through
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=cfg.amp == "fp16" and self.device.type == "cuda"
        )
        if self.info.enabled:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.info.local_rank] if self.device.type == "cuda" else None
            )
        else:
            self.ddp = model
        from ..augment import build_augmentation

        self.trainset = TrainSet(
            self.train_trials,
            self.crop,
            build_augmentation(cfg.augment),
            cfg.seed,
            self.cache,
            windows_per_file=cfg.windows_per_file,
        )

    def _param_groups(self, model) -> list[dict]:
        """The front-end at ``frontend_lr`` where set, the rest at ``lr``. Parameters frozen
        for the first ``freeze_epochs`` are in the optimizer already (they get no gradient,
        so no update, until they are unfrozen); frozen for the whole run, they are left out."""
        o, cfg = self.cfg.optimizer, self.cfg
        keep = set(self.frozen) if not cfg.freeze_epochs else set()
        named = [(n, p) for n, p in model.named_parameters() if n not in keep]
        if not cfg.freeze_epochs:
            named = [(n, p) for n, p in named if p.requires_grad]
        front = tuple(getattr(model, "frontend_modules", ()) or ())
        if o.frontend_lr is None or not front:
            return [p for _, p in named]
        is_front = [n.split(".")[0] in front for n, _ in named]
        groups = [{"params": [p for (_, p), f in zip(named, is_front, strict=True) if not f]}]
        fp = [p for (_, p), f in zip(named, is_front, strict=True) if f]
        if fp:
            groups.append({"params": fp, "lr": o.frontend_lr})
        return groups

    def _loader(self, epoch: int):
        cfg = self.cfg
        self.trainset.epoch = epoch
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        labels = self.trainset.labels
        if cfg.loss.sampler == "balanced":
            sampler = balanced_sampler(labels, cfg.seed * 1000 + epoch)
            if self.info.enabled:
                idx = list(sampler)[self.info.rank :: self.info.world]
                sampler = idx
        elif self.info.enabled:
            sampler = torch.utils.data.distributed.DistributedSampler(
                self.trainset, self.info.world, self.info.rank, shuffle=True, seed=cfg.seed
            )
            sampler.set_epoch(epoch)
        else:
            sampler = torch.utils.data.RandomSampler(self.trainset, generator=g)
        return DataLoader(
            self.trainset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            drop_last=False,
            generator=g,
            persistent_workers=False,
        )

    def _state_path(self):
        return self.out / "train_state.pt"

    def _save_state(self, epoch, history, best, top):
        torch.save(
            {
                "epoch": epoch,
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "rng": torch.get_rng_state(),
                "history": history,
                "best": best,
                "top": top,
            },
            self._state_path().with_suffix(".tmp"),
        )
        self._state_path().with_suffix(".tmp").replace(self._state_path())

    # -- the loop -------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        from tqdm.auto import tqdm

        self.ddp.train()
        if self.frozen and epoch >= self.cfg.freeze_epochs > 0:
            first = next(p for n_, p in self.model.named_parameters() if n_ in self.frozen_set)
            if not first.requires_grad:
                set_frozen(self.model, self.frozen, frozen=False)
                self.log("epoch %d: unfrozen %s", epoch + 1, ", ".join(self.cfg.freeze))
        keep_frozen_statistics(self.model)
        total, n = 0.0, 0
        accum = max(self.cfg.grad_accum_steps, 1)
        loader = self._loader(epoch)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not (self.progress and self.info.is_main),
            leave=False,
        )
        self.opt.zero_grad(set_to_none=True)
        for b, (x, y) in enumerate(bar):
            x, y = x.to(self.device), y.to(self.device)
            with _autocast(self.cfg, self.device):
                logits, _ = self.ddp(x)
                loss = self.criterion(logits.float(), y)
            self.scaler.scale(loss / accum).backward()
            total += loss.item() * len(y)
            n += len(y)
            bar.set_postfix(loss=f"{total / max(n, 1):.4f}")
            if (b + 1) % accum and b + 1 != len(loader):
                continue  # accumulate gradients over `accum` batches
            if self.cfg.grad_clip:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)
            self.sched.step()
        return total / max(n, 1)

    def dev_metrics(self, model) -> dict:
        scores = self._score(model, self.dev_trials, "dev")
        labels, attacks = _labels_attacks(self.dev_trials)
        rep = evaluate_arrays(
            scores, labels, attacks, self.splits.dev_asv if self.cfg.max_dev_utts is None else None
        )
        return {"eer": rep.eer_percent, "min_tdcf": rep.min_tdcf}

    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        self._build()
        history, best, top, start = [], None, [], 0
        if self.resume and self._state_path().is_file():
            st = torch.load(self._state_path(), map_location="cpu", weights_only=True)
            self.model.load_state_dict(st["model"])
            self.opt.load_state_dict(st["opt"])
            self.sched.load_state_dict(st["sched"])
            torch.set_rng_state(st["rng"])
            history, best, top, start = st["history"], st["best"], st["top"], st["epoch"] + 1
            self.log("resuming after epoch %d", start)
        writer = self._tensorboard()
        patience, metric = cfg.early_stopping.patience, cfg.early_stopping.metric
        for epoch in range(start, cfg.epochs):
            t0 = time.time()
            loss = self.train_epoch(epoch)
            dev = self.dev_metrics(self.model)
            key = (
                dev["min_tdcf"]
                if metric == "min_tdcf" and dev["min_tdcf"] is not None
                else dev["eer"]
            )
            row = {
                "epoch": epoch + 1,
                "train_loss": loss,
                "dev_eer_percent": dev["eer"],
                "dev_min_tdcf": dev["min_tdcf"],
                "lr": self.opt.param_groups[0]["lr"],
                "seconds": round(time.time() - t0, 2),
            }
            history.append(row)
            if info.is_main:
                self._log_row(row, writer)
                ck = self.out / "checkpoints" / f"epoch_{epoch + 1:03d}.ckpt"
                save_checkpoint(
                    self.model, ck, config=cfg.to_dict(), extra={"dev": dev, "epoch": epoch + 1}
                )
                top = sorted(top + [(key, epoch + 1, str(ck))])[: max(cfg.swa.top_n, 1)]
                for p in (self.out / "checkpoints").glob("epoch_*.ckpt"):
                    if str(p) not in {t[2] for t in top}:
                        p.unlink()
                if best is None or key < best[0]:
                    best = (key, epoch + 1)
                    save_checkpoint(
                        self.model,
                        self.out / "best.ckpt",
                        config=cfg.to_dict(),
                        extra={"dev": dev, "epoch": epoch + 1},
                    )
                self.log(
                    "epoch %d: loss %.4f, dev EER %.3f %%%s",
                    epoch + 1,
                    loss,
                    dev["eer"],
                    "" if dev["min_tdcf"] is None else f", min t-DCF {dev['min_tdcf']:.4f}",
                )
                self._save_state(epoch, history, best, top)
            barrier(info)
            if patience and best is not None and epoch + 1 - best[1] >= patience:
                self.log("early stopping: no dev improvement for %d epochs", patience)
                break
        if writer:
            writer.close()
        result = self.finish(best, top)
        cleanup(info)
        return result

    def _tensorboard(self):
        if not (self.cfg.log_tensorboard and self.info.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard not installed: metrics go to metrics.csv only")
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _log_row(self, row, writer):
        path = self.out / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if writer:
            for k, v in row.items():
                if k != "epoch" and v is not None:
                    writer.add_scalar(k, v, row["epoch"])

    # -- SWA and the final evaluation ---------------------------------------------------------
    def swa_model(self, top):
        """Average the weights of the top-N dev checkpoints, then recompute BatchNorm statistics
        on the training data."""
        models = [load_checkpoint(p)[0] for _, _, p in top]
        avg = self._new_model()
        sd = avg.state_dict()
        for k in sd:
            vals = [m.state_dict()[k] for m in models]
            sd[k] = (
                vals[0].clone()
                if not vals[0].is_floating_point()
                else torch.stack([v.float() for v in vals]).mean(0).to(vals[0].dtype)
            )
        avg.load_state_dict(sd)
        avg.to(self.device)
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in avg.modules())
        if has_bn:
            loader = DataLoader(
                TrainSet(self.train_trials, self.crop, None, self.cfg.seed, self.cache),
                batch_size=self.cfg.batch_size,
                num_workers=self.cfg.num_workers,
            )
            torch.optim.swa_utils.update_bn(((x.to(self.device)) for x, _ in loader), avg)
        return avg.eval()

    def finish(self, best, top) -> dict:
        cfg, info = self.cfg, self.info
        # every rank needs the same list of checkpoints: broadcast from rank 0
        if info.enabled:
            obj = [best, top]
            torch.distributed.broadcast_object_list(obj, src=0)
            best, top = obj
        final_path = self.out / "best.ckpt"
        final, _ = load_checkpoint(final_path)
        final.to(self.device)
        chosen = "best"
        if cfg.swa.enabled and len(top) > 1:
            swa = self.swa_model(top)
            dev = self.dev_metrics(swa)
            self.log("SWA of %d checkpoints: dev EER %.3f %%", len(top), dev["eer"])
            if info.is_main:
                save_checkpoint(
                    swa,
                    self.out / "swa.ckpt",
                    config=cfg.to_dict(),
                    extra={"dev": dev, "averaged_epochs": [t[1] for t in top]},
                )
            final, chosen = swa, "swa"
        result = {"best_epoch": best[1] if best else None, "final_model": chosen}
        ev = self.splits.eval
        if ev is not None and len(ev):
            scores = self._score(final, ev.trials, "eval")
            if info.is_main:
                result.update(self.report(ev.trials, scores))
        cal = self.calibrate(final)
        if cal is not None:
            result["calibration"] = cal.report
        if info.is_main:
            save_checkpoint(
                final,
                self.out / "final.ckpt",
                config=cfg.to_dict(),
                calibration=cal.to_dict() if cal is not None else None,
                extra={"from": f"{chosen}.ckpt", "best_epoch": result["best_epoch"]},
            )
            (self.out / "result.json").write_text(json.dumps(result, indent=2))
        barrier(info)
        return result

    def calibrate(self, model):
        """The score -> LLR map fitted on the dev (held-out) scores of the final model,
        attached to ``final.ckpt`` (None when dev lacks a class)."""
        from ..infer.calibration import Calibration

        labels = np.array([t.label for t in self.dev_trials])
        if len(set(labels.tolist())) < 2:
            self.log("no calibration: the dev split lacks a class")
            return None
        scores = self._score(model, self.dev_trials, "calibration")
        cal = Calibration.fit(
            scores[labels == BONAFIDE],
            scores[labels != BONAFIDE],
            fitted_on=f"the training recipe's dev split ({len(labels)} trials)",
            domain="training",
        )
        self.log(
            "calibration on %d dev trials: Cllr %.3f -> %.3f",
            len(labels),
            cal.report["cllr_before"],
            cal.report["cllr_after"],
        )
        return cal

    def report(self, trials, scores) -> dict:
        labels, attacks = _labels_attacks(trials)
        score_path = write_score_file(
            self.out / "eval_scores.txt", [t.utt_id for t in trials], attacks, labels, scores
        )
        proto = self.splits.eval_protocol
        if proto is not None:
            rep, bona, spoof = evaluate_score_file(score_path, proto, self.splits.eval_asv_path)
        else:
            rep = evaluate_arrays(scores, labels, attacks)
            bona, spoof = scores[labels == BONAFIDE], scores[labels != BONAFIDE]
        d = rep.to_dict()
        (self.out / "report.json").write_text(json.dumps(d, indent=2))
        (self.out / "report.md").write_text(
            "# Evaluation on the eval split\n\n" + rep.to_markdown()
        )
        plot_det(bona, spoof, self.out / "det.png", title="eval DET")
        self.log(
            "eval: EER %.3f %%%s",
            d["eer_percent"],
            "" if d["min_tdcf"] is None else f", min t-DCF {d['min_tdcf']:.4f}",
        )
        return {"eval": d, "report_text": rep.to_text()}


def train(cfg: TrainConfig, data, out, resume: bool = False, progress: bool = True) -> dict:
    return Trainer(cfg, data, out, resume, progress).fit()
