"""The recipe: the published final layer retrained on every window and augmented crop."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..config import TrainConfig
from ..finetune import head_logits
from ._base import AdaptData, Fitted, folds


def balanced(y) -> torch.Tensor:
    """CE class weights that give both classes the same total weight."""
    counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
    return torch.tensor(len(y) / (2 * np.maximum(counts, 1)), dtype=torch.float32)


class HeadTrainer:
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
        loss_fn = torch.nn.CrossEntropyLoss(weight=balanced(y))
        if x_val is not None:
            xv, yv = z(x_val), torch.from_numpy(y_val.astype(np.int64))
            val_loss = torch.nn.CrossEntropyLoss(weight=balanced(y_val))
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


class Recipe:
    """The recipe's training of the final layer from the published one (``cfg``: epochs,
    batch, Adam, L2-SP decay) on every judged window and augmented crop of the files, with
    early stopping on an inner held-out fifth of them (grouped when there are groups enough)."""

    name = "recipe"

    def __init__(self, cfg: TrainConfig, head: torch.nn.Linear, bona: int):
        self.cfg = cfg
        self.trainer = HeadTrainer(head, cfg, bona)

    def fit(self, data: AdaptData, files: np.ndarray, seed: int = 0) -> Fitted:
        cfg, files = self.cfg, np.asarray(files)
        labels = data.labels
        sub = [data.groups[i] for i in files]
        if len(set(sub)) < 5:
            sub = ["-"] * len(files)  # too few groups for an inner grouped split
        inner = folds(labels[files], sub, 5, cfg.seed + 1 + seed, [data.keys[i] for i in files])
        val, tr = files[inner == 0], files[inner != 0]
        if len(set(labels[val].tolist())) < 2 or len(set(labels[tr].tolist())) < 2:
            tr, val = files, None  # too few files to hold any out: the recipe's epochs
        sel_e, sel_a = np.isin(data.window_file, tr), np.isin(data.crop_file, tr)
        x = np.concatenate([data.windows[sel_e], data.crops[sel_a]])
        y = np.concatenate([labels[data.window_file[sel_e]], labels[data.crop_file[sel_a]]])
        if val is None:
            layer, ep = self.trainer.fit(x, y, cfg.epochs, seed=seed)
        else:
            sel_v = np.isin(data.window_file, val)
            layer, ep = self.trainer.fit(
                x, y, cfg.epochs, data.windows[sel_v], labels[data.window_file[sel_v]], seed=seed
            )
        return Fitted(layer, {"recipe_best_epoch": ep})

    def score(self, fitted: Fitted, data: AdaptData, files: np.ndarray) -> np.ndarray:
        return data.head_scores(fitted.layer, files)

    def describe(self, fitted: Fitted) -> str:
        return (
            "recipe: the final layer trained from the published one, early stopping on a "
            f"held-out fifth of the files (best epoch {fitted.info['recipe_best_epoch']}), "
            "as in every fold"
        )
