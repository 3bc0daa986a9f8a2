"""Reduced precision: how far the scores move and what it costs.

    python benchmarks/precision.py [--clips 16] [--threads 2] [--weights-dir DIR]
    python benchmarks/precision.py --model NAME [--weights FILE] --data LABELS.csv
                                   [--files 48] [--seed 0] [--repeats 5] [--threads 2]
                                   [--per-tensor] [--profile]

With ``--model`` (the SSL encoders' int8 path, ``--precision int8``): the model with seeded
random weights (``torch.manual_seed(--seed)``), or the checkpoint ``--weights``, exported to
ONNX fp32 and quantised as the engine does (:func:`spoofscope.export.onnx.quantize_int8`),
both run by ONNX Runtime on one window per file of ``--files`` files spread evenly through the
labelled CSV (``path,label``; the first window, tiled when shorter: the official crop). It
prints the max and 99th percentile |int8 - fp32| over the logits, that over the spread (SD)
of the fp32 score (bona fide minus spoof logit), the least and median cosine between the
int8 and fp32 embeddings (AntiDeepfake: the mean of the encoder's last hidden states;
SSL-AASIST: the back-end's last hidden vector), the decisions that flip at the model's
threshold (equal logits) and at the median fp32 score (where random weights put half the
windows on each side: a stress test, not the bound), whether that meets the card's bound
(:data:`spoofscope.infer.engines.INT8_BOUND`: max within 1e-2, no flip at the threshold),
and the ms per window of both graphs at batch 1, measured alternately (``--repeats`` each,
median) with the load average printed.

Without ``--model``, for AASIST and AASIST-L:

for each model (official weights) and each reduced-precision path, on the six golden inputs of
the official implementation (``../shared/reference/golden.npz``: 32,000 to 96,000 samples) and
on ``--clips`` 4-s demo-corpus clips (bona fide and its four vocoders):

* ``torch bf16``: ``torch.autocast("cpu", torch.bfloat16)`` around the eager model;
* ``ONNX int8 dynamic``: onnxruntime ``quantize_dynamic`` of Conv and MatMul (per channel);
* ``ONNX int8 static``: ``quantize_static`` (QOperator, per-channel int8 weights, uint8
  activations calibrated on 8 other clips) of the convolutions;

the largest score difference from fp32, the decisions changed (which logit is larger), and
the time per 4-s window against the fp32 path of the same engine (batch 8). The bar a path must
meet to be offered: every difference within 1e-2 and no decision changed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WINDOW = 64600


def _clips(n, seed):
    from spoofscope.data import demo

    rng = np.random.default_rng(seed)
    out = []
    vocoders = [None, *demo.VOCODERS.values()]
    for i in range(n):
        x = demo.synth_utterance(demo._speaker(rng), rng, 4.1)
        if vocoders[i % 5] is not None:
            x = vocoders[i % 5](x.astype(np.float64), rng)
        out.append((0.5 * x / (np.abs(x).max() + 1e-9))[:WINDOW].astype(np.float32))
    return np.stack(out)


def _timed(fn, x, batch=8):
    """(outputs of fn over x in batches, ms per window); the first batch is a warm-up."""
    fn(x[:batch])
    t = time.perf_counter()
    out = np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])
    return out, (time.perf_counter() - t) / len(x) * 1000


def _diff(ref, got):
    d = max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True))
    changed = sum(
        int(((r[:, 1] > r[:, 0]) != (g[:, 1] > g[:, 0])).sum())
        for r, g in zip(ref, got, strict=True)
    )
    return d, changed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=16, help="a multiple of 8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights-dir", default=str(HERE.parent.parent / "shared" / "reference"))
    ap.add_argument("--model", help="an SSL model: measure its ONNX int8 path")
    ap.add_argument("--weights", help="with --model: a checkpoint (default seeded random)")
    ap.add_argument("--data", help="with --model: a labelled CSV (path,label)")
    ap.add_argument("--files", type=int, default=48, help="with --model: files used")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="with --model: timed runs each")
    ap.add_argument(
        "--per-tensor", action="store_true", help="with --model: one weight scale per matrix"
    )
    ap.add_argument(
        "--profile", action="store_true", help="with --model: time per op type, both graphs"
    )
    a = ap.parse_args()
    if a.model:
        return int8_main(a)
    import onnxruntime as ort
    from _machine import cpu_name

    import spoofscope
    from spoofscope.infer._malloc import keep_freed_memory

    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as our engines do: no page-fault churn in the timings
    wd = Path(a.weights_dir)
    golden = np.load(wd / "golden.npz")
    inputs = [golden[f"input_{i}"].reshape(1, -1).astype(np.float32) for i in range(6)]
    clips = _clips(a.clips, 0)
    calib = _clips(8, 1)
    tmp = Path(tempfile.mkdtemp())
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; torch "
        f"{torch.__version__}, onnxruntime {ort.__version__}; 6 golden inputs + {a.clips} "
        "demo clips; ms per 4-s window at batch 8\n"
    )
    print(
        "| model | path | max score diff vs fp32 | decisions changed | ms/window | "
        "fp32 ms/window (same engine) | speed vs fp32 | meets the bar |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, f in (("aasist", "official_AASIST.pth"), ("aasist-l", "official_AASIST-L.pth")):
        m = spoofscope.load_model(name, weights=wd / f).eval()
        for label, d, changed, ms, base in _rows(name, m, inputs, clips, calib, tmp, a.threads):
            ok = "yes" if d <= 1e-2 and changed == 0 else "no"
            print(
                f"| {name} | {label} | {d:.2e} | {changed} | {ms:.0f} | {base:.0f} | "
                f"{base / ms:.2f}x | {ok} |"
            )


def _rows(name, m, inputs, clips, calib, tmp, threads):
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from spoofscope.export.onnx import export_onnx

    def torch_run(x, bf16=False):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return m(torch.from_numpy(x))[0].float().numpy()

    ref_c, fp32_ms = _timed(torch_run, clips)
    bf_c, bf_ms = _timed(lambda x: torch_run(x, True), clips)
    ref_t = [torch_run(x) for x in inputs] + [ref_c]
    bf = [torch_run(x, True) for x in inputs] + [bf_c]
    rows = [("torch bf16", *_diff(ref_t, bf), bf_ms, fp32_ms)]
    sessions = {}  # fixed-length graphs: one set per input length

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    class Reader(CalibrationDataReader):
        def __init__(self, length):
            c = np.stack([np.resize(x, length) for x in calib]).astype(np.float32)
            self.it = iter([{"waveform": c[i : i + 1]} for i in range(len(c))])

        def get_next(self):
            return next(self.it, None)

    def graphs(length):
        if length not in sessions:
            fp = export_onnx(m, tmp / f"{name}-{length}.onnx", length=length)
            pre = tmp / f"{name}-{length}-pre.onnx"
            quant_pre_process(str(fp), str(pre), skip_symbolic_shape=True)
            dyn = tmp / f"{name}-{length}-dyn.onnx"
            quantize_dynamic(
                str(pre),
                str(dyn),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv", "MatMul"],
            )
            st = tmp / f"{name}-{length}-static.onnx"
            quantize_static(
                str(pre),
                str(st),
                Reader(length),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
            )
            paths = {"fp32": fp, "dyn": dyn, "static": st}
            sessions[length] = {k: session(p) for k, p in paths.items()}
        return sessions[length]

    def onnx_run(x, kind):
        return graphs(x.shape[1])[kind].run(["logits"], {"waveform": x})[0]

    ref_c, fp32_ms = _timed(lambda x: onnx_run(x, "fp32"), clips)
    ref_o = [onnx_run(x, "fp32") for x in inputs] + [ref_c]
    for kind, label in (("dyn", "ONNX int8 dynamic"), ("static", "ONNX int8 static")):
        got_c, ms = _timed(lambda x, k=kind: onnx_run(x, k), clips)
        got = [onnx_run(x, kind) for x in inputs] + [got_c]
        rows.append((label, *_diff(ref_o, got), ms, fp32_ms))
    return rows


def _windows(csv_path, n_files, length):
    """One window (the official crop) of each of ``n_files`` files spread through the CSV."""
    from spoofscope.audio import load_audio, official_crop
    from spoofscope.data.protocols import parse_csv

    trials = parse_csv(csv_path)
    pick = np.unique(np.linspace(0, len(trials) - 1, min(n_files, len(trials))).astype(int))
    x = [official_crop(load_audio(trials[i].path), length) for i in pick]
    return np.stack(x).astype(np.float32), len(trials)


def _profile(path, x, threads, runs=3) -> dict[str, float]:
    """ms per op type of one window, from ONNX Runtime's profiler (mean of ``runs``, the first
    included)."""
    import json

    import onnxruntime as ort

    from spoofscope.export.onnx import _options

    so = _options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(path).with_suffix(""))
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        s.run(["logits"], {"waveform": x})
    out: dict[str, float] = {}
    for e in json.load(open(s.end_profiling())):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            out[op] = out.get(op, 0.0) + e["dur"] / 1000 / runs  # the first run included
    return out


def int8_main(a):
    import onnxruntime as ort
    from _machine import cpu_name

    import spoofscope
    from spoofscope.export.onnx import INT8_OPS, INT8_SCOPE, export_onnx, quantize_int8
    from spoofscope.infer.engines import INT8_BOUND, OnnxEngine

    if not a.data:
        raise SystemExit("--model needs --data LABELS.csv (path,label)")
    torch.manual_seed(a.seed)
    if a.weights:
        m = spoofscope.load_model(a.model, weights=a.weights).eval()
    else:
        m = spoofscope.create_model(a.model).eval()
    card = m.card
    length = card.window_samples
    x, n_trials = _windows(a.data, a.files, length)
    flags = open("/proc/cpuinfo").read().split()
    vnni = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    with tempfile.TemporaryDirectory() as d:
        fp = export_onnx(m, Path(d) / "fp32.onnx", length=length)
        q = quantize_int8(fp, Path(d) / "int8.onnx", per_channel=not a.per_tensor)
        fp32 = OnnxEngine(m, onnx_path=fp, threads=a.threads)
        int8 = OnnxEngine(m, onnx_path=q, threads=a.threads)
        kernels = sorted(
            {
                n.op_type
                for n in __import__("onnx").load(str(q), load_external_data=False).graph.node
                if "Integer" in n.op_type or "Quant" in n.op_type
            }
        )
        ref = [fp32.embed(x[i : i + 1]) for i in range(len(x))]
        got = [int8.embed(x[i : i + 1]) for i in range(len(x))]
        times = {"fp32": [], "int8": []}
        one = x[:1]
        fp32(one), int8(one)  # warm-up
        load0 = os.getloadavg()[0]
        for _ in range(a.repeats):  # alternately, so both see the same load
            for k, eng in (("fp32", fp32), ("int8", int8)):
                t = time.perf_counter()
                eng(one)
                times[k].append((time.perf_counter() - t) * 1000)
        load1 = os.getloadavg()[0]
        profiles = (
            {k: _profile(p, one, a.threads) for k, p in (("fp32", fp), ("int8", q))}
            if a.profile
            else {}
        )
    lr, lg = np.concatenate([r[0] for r in ref]), np.concatenate([g[0] for g in got])
    er, eg = np.concatenate([r[1] for r in ref]), np.concatenate([g[1] for g in got])
    b = card.bonafide_index
    sr, sg = lr[:, b] - lr[:, 1 - b], lg[:, b] - lg[:, 1 - b]
    d = np.abs(lg - lr).ravel()
    cos = (er * eg).sum(1) / (np.linalg.norm(er, axis=1) * np.linalg.norm(eg, axis=1))
    med = float(np.median(sr))
    flips0 = int(((sr > 0) != (sg > 0)).sum())
    flips_med = int(((sr > med) != (sg > med)).sum())
    p99 = float(np.percentile(d, 99))
    share = p99 / float(sr.std())
    ok = d.max() <= INT8_BOUND["max_abs_logit_diff"] and flips0 <= INT8_BOUND["flips_at_threshold"]
    ms = {k: float(np.median(v)) for k, v in times.items()}
    weights = a.weights or f"seeded random weights (seed {a.seed})"
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores ({', '.join(vnni) or 'no VNNI'}), "
        f"{a.threads} threads; torch {torch.__version__}, onnxruntime {ort.__version__}; "
        f"{a.model}, {weights}; {len(x)} windows of {length} samples (one per file, {len(x)} of "
        f"the {n_trials} files of {a.data}); int8: dynamic, "
        f"{'per tensor' if a.per_tensor else 'per channel'}, "
        f"{'/'.join(INT8_OPS)} under {INT8_SCOPE}; "
        f"int8 ops in the graph: {', '.join(kernels)}; load average {load0:.1f} -> {load1:.1f}\n"
    )
    print(
        "| model | max abs logit diff | p99 abs logit diff | p99 / SD of fp32 score | "
        "min (median) embedding cosine | flips at threshold 0 | flips at fp32 median | "
        "meets bound | ONNX fp32 ms/window | ONNX int8 ms/window | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {a.model} | {d.max():.2e} | {p99:.2e} | {share:.3f} | {cos.min():.5f} "
        f"({np.median(cos):.5f}) | {flips0}/{len(x)} | {flips_med}/{len(x)} | "
        f"{'yes' if ok else 'no'} | {ms['fp32']:.0f} | {ms['int8']:.0f} | "
        f"{ms['fp32'] / ms['int8']:.2f}x |"
    )
    if a.profile:
        print("\nTime per op type, ms per window (ONNX Runtime profiler, batch 1):\n")
        print("| op | fp32 | int8 |\n|---|---|---|")
        ops = sorted(
            set(profiles["fp32"]) | set(profiles["int8"]),
            key=lambda o: -max(profiles["fp32"].get(o, 0), profiles["int8"].get(o, 0)),
        )
        for op in ops[:8]:
            f, i = (profiles[k].get(op, 0.0) for k in ("fp32", "int8"))
            print(f"| {op} | {f:.0f} | {i:.0f} |")


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "precision")
