"""AASIST and AASIST-L on a CPU: the official evaluation as users run it against our engines.

    python benchmarks/inference.py [--files 48] [--repeats 3] [--threads 2]
        [--audio-dir DIR] [--models aasist,aasist-l] [--weights-dir DIR] [--memory]

Every configuration runs in a fresh process (so each one starts from the allocator state a
user's process starts from), and the configurations take turns, repeat after repeat:

* ``official``: ``official_port.official_forward`` (bitwise the official ``Model.forward``: the
  same operations in the same order, including the work the official code discards) driven as
  ``main.py --eval`` drives it: ``soundfile.read`` of each file, the fixed 64,600-sample crop
  (tiled when shorter), a DataLoader in batches of 24, ``torch.no_grad()``; glibc's defaults;
* ``official, allocator tuned``: the same with ``MALLOC_MMAP_MAX_=0`` and a trim threshold
  above any batch (what a user can set in the environment);
* ``spoofscope <engine>``: ``Detector.load(..., engine=...)`` with the official window policy
  (the same crop) over the same files, default batch (8; AASIST's engines run it two
  windows a call); and ``onnx-8``, ONNX Runtime with all 8 windows in one call (the previous
  release's engine), to show what running two a call changes.

End to end = decode + crop + score of all files, after the model is loaded (and, for ONNX
Runtime, after the one-off export into the cache, timed separately). Per window = scoring the
files' crops already in memory, in each configuration's batch size. Scores are compared with
the official ones (largest difference; decisions = which logit is larger).

The files are ``--audio-dir`` (any recordings; the first ``--files`` of them) or, offline, 4-s
clips made by the demo-corpus generator (bona fide speech of its synthetic speakers and the same
speech through its four vocoders) written as 16-bit FLAC.

The arithmetic limit per window is the model's multiply-adds (counted by
``torch.utils.flop_counter`` on one window) over the CPU's fp32 peak: cores x clock x FMA lanes
(2 FMA units x 8 lanes x 2 flops per cycle with AVX2, 16 lanes with AVX-512).
With ``--memory``, the peak resident memory of a fresh process scoring a 10-minute file with each
of our engines is added.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WINDOW = 64600
CONFIGS = ("official", "official-tuned", "onnx", "onnx-8", "torch")
LABELS = {
    "official": "official code (glibc defaults, batch 24)",
    "official-tuned": "official code, allocator tuned (batch 24)",
    "onnx": "spoofscope default: ONNX Runtime (batch 8, 2 windows a call)",
    "onnx-8": "ONNX Runtime, all 8 windows in one call (the previous release)",
    "torch": "spoofscope --engine torch (batch 8, 2 windows a call)",
}
WEIGHT_FILES = {"aasist": "official_AASIST.pth", "aasist-l": "official_AASIST-L.pth"}


# ---- the child process: one configuration, printed as JSON ---------------------------------
def _engine_name(config, model) -> str:
    """The engine a configuration asks for; ``onnx-8`` is ONNX Runtime with one call per
    detector batch (the previous release), so the model's ``engine_batch`` is lifted."""
    if config == "onnx-8":
        model.engine_batch = None
        return "onnx"
    return config


def _load(name, weights_dir):
    import torch

    import spoofscope

    w = Path(weights_dir) / WEIGHT_FILES[name] if weights_dir else None
    if w is not None and w.is_file():
        return spoofscope.load_model(name, weights=w)
    torch.manual_seed(0)
    return spoofscope.create_model(name).eval()


def _child(config, name, files, weights_dir, threads):
    import soundfile as sf
    import torch

    from spoofscope.audio import official_crop

    torch.set_num_threads(threads)
    model = _load(name, weights_dir)
    out = {"config": config}
    if config.startswith("official"):
        from official_port import official_forward

        class Eval(torch.utils.data.Dataset):
            def __len__(self):
                return len(files)

            def __getitem__(self, i):
                x, _ = sf.read(files[i])
                return torch.Tensor(official_crop(x, WINDOW)), i

        loader = torch.utils.data.DataLoader(Eval(), batch_size=24, shuffle=False)
        t0, c0 = time.perf_counter(), os.times()
        scores = []
        with torch.no_grad():
            for x, _ in loader:
                _, logits = official_forward(model, x)
                scores += logits[:, 1].tolist()
                out.setdefault("logits", []).extend(logits.tolist())
        wins = torch.stack([Eval()[i][0] for i in range(len(files))])

        def per_window():
            with torch.no_grad():
                for i in range(0, len(wins), 24):
                    official_forward(model, wins[i : i + 24])

        batch = 24
    else:
        from spoofscope.infer import Decision, Detector, WindowPolicy, make_engine

        t = time.perf_counter()
        engine = make_engine(model, _engine_name(config, model), threads)
        out["engine_build_s"] = time.perf_counter() - t
        # every file scored, as the official loop does (no abstention on quiet clips)
        det = Detector(
            engine, windows=WindowPolicy(kind="official"), decision=Decision(min_speech_s=0)
        )
        det.warm_up()
        t0, c0 = time.perf_counter(), os.times()
        rs = det.detect_many(files)
        assert all(r.error is None for r in rs), [r.error for r in rs if r.error]
        scores = [r.score for r in rs]
        wins = np.stack([official_crop(sf.read(f, dtype="float32")[0], WINDOW) for f in files])
        batch = det.limits.batch_size

        def per_window():
            for i in range(0, len(wins), batch):
                engine(wins[i : i + batch])

    c1 = os.times()
    out["wall_s"] = time.perf_counter() - t0
    out["user_s"], out["sys_s"] = c1.user - c0.user, c1.system - c0.system
    t = time.perf_counter()
    per_window()
    out["ms_per_window"] = (time.perf_counter() - t) / len(files) * 1000
    out["batch"], out["scores"] = batch, scores
    print(json.dumps(out))


def _memory_child(name, engine, weights_dir, threads):
    import soundfile as sf

    from spoofscope.infer import Detector, Limits, WindowPolicy, make_engine

    model = _load(name, weights_dir)
    path = os.path.join(tempfile.mkdtemp(), "ten_minutes.flac")
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(10):
            f.write((rng.standard_normal(16000 * 60) * 0.1).astype(np.float32))
    det = Detector(
        make_engine(model, _engine_name(engine, model), threads),
        windows=WindowPolicy(hop_s=4.0375),
        limits=Limits(batch_size=8),
    )
    r = det(path)
    assert r.error is None and abs(r.duration_s - 600) < 1e-6
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)
    hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
    print(json.dumps({"peak_mb": int(hwm.split()[1]) / 1024}))


# ---- the parent -----------------------------------------------------------------------------
def _demo_files(n, out_dir) -> list[str]:
    """n 4-s clips: demo-corpus speech, bona fide and through each of its four vocoders."""
    import soundfile as sf

    from spoofscope.data import demo

    rng = np.random.default_rng(0)
    vocoders = [
        None,
        demo.griffin_lim_vocoder,
        demo.lpc_vocoder,
        demo.channel_vocoder,
        demo.harmonic_vocoder,
    ]
    files = []
    for i in range(n):
        x = demo.synth_utterance(demo._speaker(rng), rng, 4.0)
        voc = vocoders[i % len(vocoders)]
        if voc is not None:
            x = voc(x, rng)
        x = (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)
        p = Path(out_dir) / f"clip_{i:03d}.flac"
        sf.write(p, x, 16000, subtype="PCM_16")
        files.append(str(p))
    return files


def _run(args: list[str], env: dict) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _env(config, cache) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["SPOOFSCOPE_CACHE"] = cache
    if config == "official-tuned":
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(1 << 40))
    return env


def _flops(name, weights_dir) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    m = _load(name, weights_dir)
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        m(torch.zeros(1, WINDOW))
    return float(fc.get_total_flops())


def _peak_gflops(threads) -> tuple[float, str]:
    flags, mhz = "", 0.0
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("flags") and not flags:
                    flags = ln
                if ln.startswith("cpu MHz") and not mhz:
                    mhz = float(ln.split(":")[1])
    except OSError:
        pass
    lanes = 16 if "avx512f" in flags.split() else 8 if "avx2" in flags.split() else 4
    isa = {16: "AVX-512", 8: "AVX2", 4: "SSE"}[lanes]
    peak = threads * mhz / 1000 * 2 * lanes * 2
    return peak, f"{threads} cores x {mhz / 1000:.2f} GHz x 2 FMA units x {lanes} lanes ({isa})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--audio-dir", help="real recordings to use (default: demo-corpus clips)")
    ap.add_argument("--models", default="aasist,aasist-l")
    ap.add_argument(
        "--weights-dir",
        default=str(HERE.parent.parent / "shared" / "reference"),
        help="folder with official_AASIST.pth / official_AASIST-L.pth (else random weights)",
    )
    ap.add_argument("--memory", action="store_true", help="peak RSS on a 10-minute file")
    a = ap.parse_args()

    import torch
    from _machine import cpu_name

    tmp = tempfile.mkdtemp()
    cache = os.path.join(tmp, "cache")
    if a.audio_dir:
        exts = {".flac", ".wav", ".mp3", ".ogg", ".m4a"}
        files = sorted(str(p) for p in Path(a.audio_dir).rglob("*") if p.suffix.lower() in exts)
        files = files[: a.files]
        source = f"{len(files)} files from {a.audio_dir}"
    else:
        files = _demo_files(a.files, tmp)
        source = f"{len(files)} 4-s demo-corpus clips (bona fide and four vocoders), 16-bit FLAC"
    listing = os.path.join(tmp, "files.json")
    Path(listing).write_text(json.dumps(files))
    peak, how = _peak_gflops(a.threads)

    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; torch "
        f"{torch.__version__}; {source}; median of {a.repeats} interleaved runs\n"
    )
    rows = []
    for name in a.models.split(","):
        wd = a.weights_dir if Path(a.weights_dir).is_dir() else None
        results = {c: [] for c in CONFIGS}
        for _ in range(a.repeats):
            for c in CONFIGS:
                results[c].append(
                    _run(["--child", c, name, listing, str(wd), str(a.threads)], _env(c, cache))
                )
        gflop = _flops(name, wd) / 1e9
        limit_ms = gflop / peak * 1000 if peak else float("nan")
        ref = np.array(results["official"][0]["scores"])
        ref_logits = np.array(results["official"][0]["logits"])
        ref_dec = ref_logits[:, 1] > ref_logits[:, 0]
        base = statistics.median(r["wall_s"] for r in results["official"])
        base_tuned = statistics.median(r["wall_s"] for r in results["official-tuned"])
        base_win = statistics.median(r["ms_per_window"] for r in results["official"])
        for c in CONFIGS:
            rs = results[c]
            wall = statistics.median(r["wall_s"] for r in rs)
            user = statistics.median(r["user_s"] for r in rs)
            sys_ = statistics.median(r["sys_s"] for r in rs)
            win = statistics.median(r["ms_per_window"] for r in rs)
            diff = max(float(np.abs(np.array(r["scores"]) - ref).max()) for r in rs)
            if c.startswith("official"):
                changed = 0
            else:
                # the spoof logit is not reported by the detector: the decision compares
                # the bona fide logit with the official spoof logit
                changed = int(((np.array(rs[0]["scores"]) > ref_logits[:, 0]) != ref_dec).sum())
            rows.append(
                (
                    name,
                    LABELS[c],
                    f"{wall:.1f}",
                    f"{user:.1f} / {sys_:.1f}",
                    f"{base / wall:.2f}x",
                    f"{base_tuned / wall:.2f}x",
                    f"{win:.0f}",
                    f"{base_win / win:.2f}x",
                    f"{win / limit_ms:.2f}x",
                    f"{diff:.1e}",
                    str(changed),
                )
            )
        build = statistics.median(r.get("engine_build_s", 0) for r in results["onnx"])
        print(
            f"{name}: {gflop:.1f} GFLOP per window; fp32 peak {peak:.0f} GFLOP/s ({how}); "
            f"arithmetic limit {limit_ms:.0f} ms per window; ONNX engine build (export once, "
            f"then load from the cache) median {build:.1f} s"
        )
    print()
    head = (
        "model",
        "engine",
        f"end to end, {len(files)} files (s)",
        "user / sys (s)",
        "vs official",
        "vs official tuned",
        "ms per window",
        "per window vs official",
        "per window / arithmetic limit",
        "max score diff vs official",
        "decisions changed",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")

    if a.memory:
        print(
            "\nPeak RSS, fresh process scoring a 10-minute file (hop 4.04 s, batch 8; AASIST "
            "runs 2 windows a call):\n"
        )
        print("| model | engine | peak RSS (MB) |\n|---|---|---|")
        for name in a.models.split(","):
            wd = a.weights_dir if Path(a.weights_dir).is_dir() else None
            for eng in ("onnx", "onnx-8", "torch"):
                r = _run(["--memory-child", name, eng, str(wd), str(a.threads)], _env(eng, cache))
                print(f"| {name} | {eng} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        c, name, listing, wd, threads = sys.argv[2:7]
        _child(
            c,
            name,
            json.loads(Path(listing).read_text()),
            None if wd == "None" else wd,
            int(threads),
        )
    elif len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        name, eng, wd, threads = sys.argv[2:6]
        _memory_child(name, eng, None if wd == "None" else wd, int(threads))
    else:
        from _docs import run_benchmark

        run_benchmark(main, "inference")
