"""What the live-stream default hop (1 s) changes against the file default (2 s), on real clips.

Scores every clip of ``../shared/realdev`` with the official AASIST weights through
`Detector.stream()` fed in 100-ms pieces at hop 1 s, and through `detect` at hop 2 s (Silero VAD
in both), and prints the EER over the clips both judge, how often the two verdicts differ, and
the windows scored.

    python benchmarks/stream_hop.py --weights ../shared/reference/official_AASIST.pth
                                    [--realdev ../shared/realdev]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument(
        "--realdev", default=str(Path(__file__).resolve().parents[2] / "shared/realdev")
    )
    a = ap.parse_args()
    from spoofscope.audio import load_audio
    from spoofscope.infer import Decision, Detector, WindowPolicy
    from spoofscope.metrics import compute_eer

    root = Path(a.realdev)
    rows = list(csv.DictReader(open(root / "labels.csv")))
    det = Detector.load("aasist", weights=a.weights, decision=Decision(vad="silero"))
    files = det.replace(windows=WindowPolicy(hop_s=2.0))
    live = det.replace(windows=WindowPolicy(hop_s=1.0))
    out = {"file (hop 2 s)": [], "stream (hop 1 s)": []}
    for r in rows:
        x = load_audio(root / r["path"], det.sample_rate)
        f = files(x)
        s = live.stream()
        for piece in np.array_split(x, max(1, x.size // 1600)):
            s.feed(piece)
        g = s.close()
        y = int(r["label"] == "bonafide")
        out["file (hop 2 s)"].append((f.score, f.label, len(f.windows), y))
        out["stream (hop 1 s)"].append((g.score, g.label, len(g.windows), y))
    both = [i for i in range(len(rows)) if all(v[i][0] is not None for v in out.values())]
    print(f"{len(rows)} realdev clips; {len(both)} judged by both (the rest: no speech)\n")
    print("| run | EER % | windows | verdicts differing from the file run |")
    print("|---|---:|---:|---:|")
    ref = out["file (hop 2 s)"]
    for name, v in out.items():
        sc = np.array([v[i][0] for i in both])
        y = np.array([v[i][3] for i in both])
        eer = compute_eer(sc[y == 1], sc[y == 0])[0] * 100
        diff = sum(v[i][1] != ref[i][1] for i in both)
        print(f"| {name} | {eer:.2f} | {sum(t[2] for t in v)} | {diff} |")


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "stream_hop")
