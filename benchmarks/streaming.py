"""Live streams: verdict latency and how many real-time streams one machine holds.

For each model and precision, `spoofscope serve` runs as its own process (random weights: they
do not change the speed; the energy meter, so that every window of the test signal is scored,
the worst case); for each hop, N clients connect to /v1/stream at once (starts spread over one
hop; the hop in their start message), each sending 16-kHz 16-bit audio in 100-ms frames at real
time for --seconds, then stop. The service judges the windows of all its live streams that are
due together, in shared engine calls. Latency is the service's own ``latency_ms`` of each
scored window (the arrival of the window's last sample to its event). N grows through --levels
until the 95th percentile passes 1 s; the first table gives every level run, with the server's
peak resident memory (/proc), and the second, per model, precision and hop, the p95 of one
stream and the real-time streams: the most streams run whose p95 stayed under 1 s with no
``lagging`` event ("at least" where the last level run still did). The service judges streams
with the localisation windows (``WindowPolicy.localising``) besides the verdict's, and so does
the measurement of one stream's state. What one open stream holds is measured apart, in this
process with tracemalloc: the state of one stream (at the smallest hop) after 10 s and after
--held-minutes of audio (it grows with the stream: the speech mask and the window list).

Where a level misses (p95 of 1 s or more, or a ``lagging`` event), a third table says what
dominates, from that level's own measurements: the windows at or above its p95 split into
scoring (each window event's ``scoring_ms``, the wall time of the shared call that judged it)
and waiting (the rest of ``latency_ms``: behind earlier calls and the stream's backlog); the
service's scoring calls in seconds per second of audio (``spoofscope_stream_scoring_seconds``
from /metrics before and after the level: one call at a time, so 1 or more means the service
cannot keep up and the backlog grows) and per stream and hop; and the server process's CPU
seconds per second of audio (/proc) against the machine's CPUs.

    python benchmarks/streaming.py [--models aasist,ssl-aasist] [--hops 1,2] [--seconds 20]
                                   [--levels 1,2,4,8,12,16] [--precisions fp32,int8]

Prints two Markdown tables, and a third where a level missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

SR = 16000
FRAME = SR // 10  # 100 ms


def _signal(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.2 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system, all threads) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _scoring_calls(port: int) -> np.ndarray:
    """The service's scoring calls so far: (seconds in them, how many), from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        text = r.read().decode()
    got = {}
    for line in text.splitlines():
        for k in ("sum", "count"):
            if line.startswith(f"spoofscope_stream_scoring_seconds_{k} "):
                got[k] = float(line.split()[1])
    return np.array([got["sum"], got["count"]])


class _Peak(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            time.sleep(0.2)


async def _client(url: str, seconds: float, seed: int, delay: float, hop: float) -> dict:
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    data = _signal(seconds, seed)
    lat, scoring, lagging = [], [], 0
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": SR, "hop_s": hop}))

        async def reader():
            nonlocal lagging
            async for m in ws:
                e = json.loads(m)
                if e["type"] == "window" and e["score"] is not None:
                    lat.append(e["latency_ms"])
                    scoring.append(e["scoring_ms"])
                elif e["type"] == "lagging":
                    lagging += 1
                elif e["type"] == "summary":
                    return e

        task = asyncio.create_task(reader())
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(data), 2 * FRAME)):
            await asyncio.sleep(max(0.0, t0 + k * 0.1 - time.perf_counter()))
            await ws.send(data[i : i + 2 * FRAME])
        await ws.send(json.dumps({"type": "stop"}))
        summary = await asyncio.wait_for(task, 600)
    return {
        "latency_ms": lat,
        "scoring_ms": scoring,
        "lagging": lagging,
        "windows": len(summary["windows"]),
    }


async def _level(url, n, seconds, hop):
    rng = np.random.default_rng(n)
    return await asyncio.gather(
        *[_client(url, seconds, k, float(rng.uniform(0, hop)), hop) for k in range(n)]
    )


def _held_mb(ckpt: Path, hop: float, minutes: float) -> tuple[float, float]:
    """Memory one stream's state holds after 10 s and after ``minutes`` of audio."""
    import tracemalloc

    from spoofscope.infer import Decision, Detector, WindowPolicy

    w = WindowPolicy(hop_s=hop).localising()  # as the service judges streams
    det = Detector.load(ckpt, windows=w, decision=Decision(vad="energy"))
    det.warm_up()
    x = np.frombuffer(_signal(10.0, 0), "<i2").astype(np.float32) / 32768
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    st = det.stream()
    st.feed(x)
    short = (tracemalloc.get_traced_memory()[0] - base) / 2**20
    for _ in range(int(minutes * 6) - 1):
        st.feed(x)
    long = (tracemalloc.get_traced_memory()[0] - base) / 2**20
    tracemalloc.stop()
    return short, long


def _serve(ckpt: Path, port: int, hop: float, precision: str = "fp32") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spoofscope", "serve", "--model", str(ckpt), "--port", str(port)]
    cmd += ["--max-streams", "64", "--stream-hop", str(hop), "--vad", "energy", "--quiet"]
    cmd += ["--precision", precision]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_ready(port: int, proc: subprocess.Popen) -> None:
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("the service did not become ready")


#: a stream is real-time while the 95th percentile of its verdict latency stays under this
REAL_TIME_P95_MS = 1000.0


def _dominates(res: list[dict], n: int, hop: float, seconds: float, calls, cpu_s: float) -> str:
    """A table row's cells after the level's: what a missed level's p95 is made of and what
    dominates it, from the level's measurements (``calls``: seconds in the service's scoring
    calls and their number; ``cpu_s``: the server's CPU seconds)."""
    lat = np.array([v for r in res for v in r["latency_ms"]])
    scoring = np.array([v for r in res for v in r["scoring_ms"]])
    top = lat >= np.percentile(lat, 95)  # the windows at or above the p95
    at, score = lat[top].mean(), scoring[top].mean()
    wait = at - score
    load = calls[0] / seconds  # seconds of scoring per second of audio
    per_hop = calls[0] * 1000 / (n * seconds / hop)  # ms of scoring per stream and hop
    cpus = os.cpu_count()
    lagging = sum(r["lagging"] for r in res)
    if load >= 1:
        what = (
            f"compute: the scoring calls take {load:.2f} s per s of audio ({per_hop:.0f} ms per "
            f"stream and {hop:g}-s hop), more than real time, so the backlog grows; "
            f"{wait / at:.0%} of the p95 is waiting behind it; the server used "
            f"{cpu_s / calls[0]:.1f} CPU-s per s of scoring, of {cpus} CPUs"
        )
    elif score >= wait:
        what = f"scoring: the call that judged a p95 window took {score:.0f} of its {at:.0f} ms"
    else:
        what = (
            f"waiting: {wait / at:.0%} of the p95 is waiting behind earlier calls, with the "
            f"scoring calls busy {load:.0%} of real time"
        )
    if lagging and np.percentile(lat, 95) < REAL_TIME_P95_MS:
        what = f"{lagging} lagging events: the clients sent faster than the service judged"
    return (
        f"{score:.0f} + {wait:.0f} | {calls[1] / seconds:.1f} | {load:.2f} | {per_hop:.0f} | "
        f"{cpu_s / seconds:.2f} of {cpus} | {what} |"
    )


def _run_levels(name, ckpt, precision, levels, hops, a, missed: list[str]) -> list[tuple]:
    """One service for ``name`` at ``precision``; for each hop, the levels until p95 passes
    1 s (a row printed per level; the row of what dominates a missed level added to
    ``missed``). Returns a summary row per hop: (model, engine, precision, hop, p95 of one
    stream, real-time streams, whether the last level run was real-time)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = _serve(ckpt, port, hops[0], precision)
    out = []
    try:
        _wait_ready(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as r:
            engine = json.loads(r.read())["engine"]
        for hop in hops:
            p95_one, held, ok = None, 0, False
            for n in levels:
                peak = _Peak(proc.pid)
                peak.start()
                calls, cpu = _scoring_calls(port), _cpu_s(proc.pid)
                res = asyncio.run(_level(f"ws://127.0.0.1:{port}/v1/stream", n, a.seconds, hop))
                calls, cpu = _scoring_calls(port) - calls, _cpu_s(proc.pid) - cpu
                peak.stop.set()
                peak.join()
                lat = np.array([v for r in res for v in r["latency_ms"]])
                p50, p95 = np.percentile(lat, [50, 95])
                lagging = sum(r["lagging"] for r in res)
                print(
                    f"| {name} | {engine} | {precision} | {hop:g} | {n} | {lat.size} | "
                    f"{p50:.0f} | {p95:.0f} | {lat.max():.0f} | {lagging} | {peak.peak:.0f} |",
                    flush=True,
                )
                if n == 1:
                    p95_one = p95
                ok = p95 < REAL_TIME_P95_MS and lagging == 0
                if not ok:
                    why = _dominates(res, n, hop, a.seconds, calls, cpu)
                    missed.append(f"| {name} | {engine} | {precision} | {hop:g} | {n} | "
                                  f"{p95:.0f} | {why}")  # fmt: skip
                    break
                held = n
            out.append((name, engine, precision, hop, p95_one, held, ok))
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="aasist,ssl-aasist")
    ap.add_argument(
        "--hops", "--hop", default="1", type=_floats, help="seconds between a stream's verdicts"
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--levels", default="1,2,4,8,12,16")
    ap.add_argument("--held-minutes", type=float, default=5.0)
    ap.add_argument(
        "--precisions", default="fp32", help="fp32,int8: int8 where the model's card lists it"
    )
    a = ap.parse_args()
    import torch

    import spoofscope
    from spoofscope.models import save_checkpoint

    levels = [int(v) for v in a.levels.split(",")]
    hops = a.hops
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__}; random "
        f"weights; hops {', '.join(f'{h:g}' for h in hops)} s; {a.seconds:g} s of real-time "
        "audio per stream"
    )
    print()
    print(
        "| model | engine | precision | hop (s) | streams | windows | latency p50 (ms) | "
        "p95 (ms) | max (ms) | lagging events | server RSS peak (MB) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    held, summary, missed = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            torch.manual_seed(0)
            ckpt = save_checkpoint(spoofscope.create_model(name), Path(tmp) / f"{name}.ckpt")
            for precision in a.precisions.split(","):
                if precision not in spoofscope.models.get_card(name).precisions:
                    print(f"| {name} | - | {precision} | - | not offered by its card |")
                    continue
                summary += _run_levels(name, ckpt, precision, levels, hops, a, missed)
            held.append((name, _held_mb(ckpt, min(hops), a.held_minutes)))
    print()
    print(
        f"Real-time streams on this machine ({os.cpu_count()} CPUs): the most streams run "
        f"whose verdict latency p95 stayed under {REAL_TIME_P95_MS:.0f} ms with no lagging "
        "event (levels run: " + ", ".join(map(str, levels)) + ")"
    )
    print()
    print("| model | engine | precision | hop (s) | p95 of one stream (ms) | real-time streams |")
    print("|---|---|---|---:|---:|---:|")
    for name, engine, precision, hop, p95, n, ok in summary:
        most = f"at least {n}" if ok and n == levels[-1] else str(n)
        one = "-" if p95 is None else f"{p95:.0f}"  # (levels without 1)
        print(f"| {name} | {engine} | {precision} | {hop:g} | {one} | {most} |")
    print()
    if missed:
        print(
            "What dominates where a level missed (its own measurements): at p95, the mean "
            "scoring and waiting of the windows at or above the p95 (scoring: the shared call "
            "that judged the window); the service's scoring calls per second of audio, the "
            "seconds spent in them per second of audio (one call at a time: 1 or more cannot "
            "keep up) and per stream and hop; the server's CPU seconds per second of audio"
        )
        print()
        print(
            "| model | engine | precision | hop (s) | streams | p95 (ms) | at p95: scoring + "
            "waiting (ms) | scoring calls per s | scoring s per s of audio | scoring ms per "
            "stream and hop | server CPU-s per s of audio | what dominates |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        print("\n".join(missed))
        print()
    for name, (short, long) in held:
        print(
            f"{name}: one open stream holds {short:.2f} MB after 10 s and {long:.2f} MB after "
            f"{a.held_minutes:g} min of audio (tracemalloc)"
        )


if __name__ == "__main__":
    run_benchmark(main, "streaming")
