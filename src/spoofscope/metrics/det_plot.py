"""DET curve plot on normal-deviate axes (matplotlib is imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import norm

from ._det import compute_eer, det_curve

_TICKS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99]


def plot_det(bona, spoof, path: str | Path, title: str = "DET curve") -> Path:
    """Write a PNG of the DET curve (miss vs false alarm, probit axes) with the EER marked."""
    return plot_dets({"": (bona, spoof)}, path, title)


def plot_dets(curves: dict, path: str | Path, title: str = "DET curves") -> Path:
    """Several DET curves on one plot: ``{label: (bona, spoof)}``, each with its EER marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = 1e-5
    fig, ax = plt.subplots(figsize=(5, 5))
    for i, (name, (bona, spoof)) in enumerate(curves.items()):
        miss, fa, _ = det_curve(bona, spoof)
        eer, _ = compute_eer(bona, spoof)
        color = f"C{i}"
        x, y = norm.ppf(np.clip(fa, eps, 1 - eps)), norm.ppf(np.clip(miss, eps, 1 - eps))
        ax.plot(x, y, lw=1.5, color=color)
        e = norm.ppf(np.clip(eer, eps, 1 - eps))
        label = f"{name}: EER = {eer * 100:.2f} %" if name else f"EER = {eer * 100:.2f} %"
        ax.plot([e], [e], "o", color=color if name else "C3", label=label)
    lim = norm.ppf([0.0005, 0.995])
    ax.plot(lim, lim, ":", color="grey", lw=0.8)
    ticks = norm.ppf(_TICKS)
    labels = [f"{t * 100:g}" for t in _TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("False acceptance rate of spoofs (%)")
    ax.set_ylabel("False rejection rate of bona fide (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
