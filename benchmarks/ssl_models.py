"""SSL models with the tiny random encoder on the CPU: training and inference throughput and
peak memory.

    python benchmarks/ssl_models.py [--threads 2] [--steps 3] [--batch 8]

Each configuration runs in a fresh process so that its peak resident memory (VmHWM) is its own.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch, spoofscope
name, threads, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
from spoofscope.models.ssl import TINY_ENCODER
m = spoofscope.create_model(name, encoder_config=TINY_ENCODER)
x = torch.randn(batch, 64600) * 0.1
y = torch.randint(0, 2, (batch,))
opt = torch.optim.Adam(m.parameters(), lr=1e-4)
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(x)[0], y).backward(); opt.step()
m.train(); step()
t = time.perf_counter()
for _ in range(steps): step()
train = batch * steps / (time.perf_counter() - t)
m.eval()
with torch.inference_mode():
    m(x); t = time.perf_counter()
    for _ in range(steps): m(x)
infer = batch * steps / (time.perf_counter() - t)
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"params": sum(p.numel() for p in m.parameters()), "train": train,
                  "infer": infer, "peak_mb": hwm}))
"""


def main():
    from _machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    cpu = cpu_name()
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores, {a.threads} threads; tiny random wav2vec 2.0 "
        f"encoder (2 layers, width 32); batch {a.batch} of 64,600 samples\n"
    )
    print("| model | parameters | train utt/s | inference utt/s | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for name in ("ssl-linear", "ssl-aasist"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, name, str(a.threads), str(a.steps), str(a.batch)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {name} | {r['params']:,} | {r['train']:.1f} | {r['infer']:.1f} | "
            f"{r['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "ssl_models")
