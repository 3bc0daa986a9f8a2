"""Load test of the detection service over loopback: N requests from C concurrent clients.

    python benchmarks/load_test.py [--requests 200] [--concurrency 8] [--model NAME|CKPT]
        [--weights FILE] [--workers 2] [--queue-size 16] [--url http://127.0.0.1:8000]

Without --url it starts the service in-process on a free loopback port. Reports p50/p95/p99
latency, throughput, the status codes seen (only 200 and designed 503s are acceptable) and the
process's peak memory. Traffic goes to 127.0.0.1 only; the loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _audio(seconds=4.0) -> bytes:
    import soundfile as sf

    x = (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV")
    return buf.getvalue()


def run_load(
    url: str,
    n_requests: int = 200,
    concurrency: int = 8,
    audio: bytes | None = None,
    timeout_s: float = 120.0,
) -> dict:
    """Send ``n_requests`` POST /v1/detect from ``concurrency`` clients; return the stats."""
    import httpx

    audio = audio or _audio()
    lat, codes = [], {}
    queue = list(range(n_requests))

    async def client():
        async with httpx.AsyncClient(timeout=timeout_s) as c:
            while queue:
                queue.pop()
                t = time.perf_counter()
                try:
                    r = await c.post(url + "/v1/detect", files={"file": ("a.wav", audio, "x")})
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    lat.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()

    async def all_clients():
        await asyncio.wait_for(
            asyncio.gather(*[client() for _ in range(concurrency)]), timeout=timeout_s * 2
        )

    asyncio.run(all_clients())
    wall = time.perf_counter() - t0
    q = np.percentile(lat, [50, 95, 99]) if lat else [float("nan")] * 3
    return {
        "requests": n_requests,
        "concurrency": concurrency,
        "ok": codes.get(200, 0),
        "rejected_503": codes.get(503, 0),
        "errors_other_than_503": sum(v for k, v in codes.items() if k not in (200, 503)),
        "codes": codes,
        "p50_ms": float(q[0]),
        "p95_ms": float(q[1]),
        "p99_ms": float(q[2]),
        "throughput_rps": codes.get(200, 0) / wall,
        "wall_s": wall,
    }


def _peak_mb():
    return (
        int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1])
        / 1024
    )


def main():
    from _machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--model", default="lfcc-lcnn")
    ap.add_argument("--weights")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue-size", type=int, default=16)
    ap.add_argument("--engine", "--backend", dest="engine", default="torch")
    ap.add_argument("--url")
    a = ap.parse_args()
    srv = None
    url = a.url
    if url is None:
        import torch
        import uvicorn

        import spoofscope
        from spoofscope.infer import Detector
        from spoofscope.serve import ServiceSettings, create_app

        if Path(a.model).is_file() or a.weights:
            det = Detector.load(a.model, weights=a.weights, engine=a.engine)
        else:
            from spoofscope.infer import make_engine

            torch.manual_seed(0)
            det = Detector(make_engine(spoofscope.create_model(a.model), a.engine))
        app = create_app(det, ServiceSettings(workers=a.workers, queue_size=a.queue_size))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
    rep = run_load(url, a.requests, a.concurrency)
    if srv:
        srv.should_exit = True
    cpu = cpu_name()
    print(
        f"Machine: {cpu}; model {a.model} ({a.engine}); 4-s WAV uploads; "
        f"{a.workers} workers, queue {a.queue_size}\n"
    )
    print(
        "| requests | clients | ok | 503 | other errors | p50 ms | p95 ms | p99 ms | req/s "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {rep['requests']} | {rep['concurrency']} | {rep['ok']} | {rep['rejected_503']} | "
        f"{rep['errors_other_than_503']} | {rep['p50_ms']:.0f} | {rep['p95_ms']:.0f} | "
        f"{rep['p99_ms']:.0f} | {rep['throughput_rps']:.1f} | {_peak_mb():.0f} |"
    )


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "load_test")
