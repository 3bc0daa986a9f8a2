"""Training and data-loading throughput.

    python benchmarks/training.py [--data DIR] [--threads 2] [--steps 3]

Training: utterances per second per model at batch 24 on 64,600-sample crops (forward, backward
and an Adam step), on the CPU and on a GPU where one is present. Data loading: utterances per
second through the training pipeline (decode FLAC, random crop) with and without the decoded-audio
cache, on the demo corpus (made in a temporary folder when --data is not given). Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def train_throughput(name, device, steps, batch=24, length=64600):
    import spoofscope

    torch.manual_seed(0)
    m = spoofscope.create_model(name).to(device).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    x = torch.randn(batch, length, device=device) * 0.1
    y = torch.randint(0, 2, (batch,), device=device)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x)[0], y)
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def loading_throughput(root, cache_dir):
    from spoofscope.data import ASVspoof2019LA
    from spoofscope.data.cache import AudioCache
    from spoofscope.train.data import TrainSet

    trials = ASVspoof2019LA(root, "train", transform=None).trials
    res = {}
    for label, cache in (
        ("no cache", None),
        ("cache, first epoch", AudioCache(cache_dir)),
        ("cache, later epochs", AudioCache(cache_dir)),
    ):
        ds = TrainSet(trials, 64600, None, 0, cache)
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        res[label] = len(ds) / (time.perf_counter() - t)
    return res


def main():
    from _machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--models", default="aasist,aasist-l,rawnet2,lfcc-lcnn,lfcc-xvector")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    cpu = cpu_name()
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores, {a.threads} threads; torch {torch.__version__}"
        + (f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
        + "\n"
    )
    print("| model | device | training utt/s (batch 24, 64,600 samples) |")
    print("|---|---|---|")
    for name in a.models.split(","):
        for d in devices:
            print(f"| {name} | {d.type} | {train_throughput(name, d, a.steps):.2f} |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = a.data
        if root is None:
            from spoofscope.data.demo import make_demo_corpus

            root = Path(tmp) / "demo"
            make_demo_corpus(root, progress=False)
        res = loading_throughput(root, Path(tmp) / "cache")
    print("\n| data loading (decode + random crop, 1 process) | utt/s |")
    print("|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v:.0f} |")


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "training")
