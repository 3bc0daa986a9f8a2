"""Scoring a whole dataset with the reference crop: the dev/eval scores of training runs and of
``spoofscope score``, sharded over ``torchrun`` ranks and gathered in trial order."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..audio import load_audio, official_crop
from ..data.cache import AudioCache
from ..distributed import DistInfo, gather_scores, shard
from ..models._card import card_of


class ScoreSet:
    """Each trial cut or tiled to ``samples`` (the official fixed crop); ``(x, index)``."""

    def __init__(self, trials, samples: int, cache: AudioCache | None = None):
        self.trials, self.samples, self.cache = trials, samples, cache

    def __len__(self):
        return len(self.trials)

    def __getitem__(self, i):
        p = self.trials[i].path
        x = self.cache.load(p) if self.cache else load_audio(p)
        return torch.from_numpy(official_crop(x, self.samples).astype(np.float32)), i


@torch.no_grad()
def score_dataset(
    model,
    trials,
    *,
    window_samples: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    cache: AudioCache | None = None,
    info: DistInfo | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> np.ndarray:
    """The score (bona fide logit, as the model card names it) of every trial on its fixed
    crop of ``window_samples`` (default: the card's window), in trial order.

    ``model``: an ``nn.Module`` (run as it is, on its device: what training uses) or an
    engine from :func:`~spoofscope.infer.make_engine` (``spoofscope score``).
    Under ``torchrun`` (``info``) each rank scores its shard and every rank gets all scores.
    """
    from tqdm.auto import tqdm

    info = info or DistInfo()
    card = card_of(model)
    if isinstance(model, torch.nn.Module):
        device = next(model.parameters()).device
        was = model.training
        model.eval()

        def run(x):
            return model(x.to(device))[0].float().cpu()
    else:

        def run(x):
            return torch.from_numpy(model(x.numpy()))

    loader = DataLoader(
        Subset(
            ScoreSet(trials, window_samples or card.window_samples, cache), shard(len(trials), info)
        ),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    idx, out = [], []
    for x, i in tqdm(loader, desc=desc, disable=not progress, leave=False):
        out += run(x)[:, card.bonafide_index].tolist()
        idx += i.tolist()
    if isinstance(model, torch.nn.Module):
        model.train(was)
    return gather_scores(idx, out, len(trials), info)
