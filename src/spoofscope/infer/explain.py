"""Why this verdict: relevance over time x frequency, from methods whose faithfulness is measured.

An explanation cuts the recording (or a segment of it) into **tiles**: spans of ``tile_s``
seconds by ``n_bands`` equal frequency bands of the short-time Fourier transform (STFT,
512-point Hann frames every 128 samples at 16 kHz, which the inverse STFT reconstructs
exactly). A tile's **relevance** is how much that part of the signal moved the detector's
score *towards its verdict* (positive: it supports the verdict; negative: it argues against
it), in the units of the score (the bona fide logit). Two methods follow one protocol
(:class:`Method`), each a class:

* :class:`Occlusion` (model-agnostic, any engine including ONNX Runtime): each tile in turn
  is removed (its STFT coefficients set to zero, a band-stop over its span) and the audio
  scored again through the detector's own engine and windows; relevance = the score towards
  the verdict lost. Only the windows a tile reaches are scored again.
* :class:`IntegratedGradients` (PyTorch models): Integrated Gradients (Sundararajan et al.
  2017) on the straight path from silence to the waveform, with the gradient projected onto
  each tile's part of the signal. Since the tiles' parts sum to the waveform, the path is the
  plain waveform path and the relevances sum to score(audio) - score(silence) (completeness).

The cost is counted in **passes** (one window through the network forward, or backward) and
bounded by ``budget``: occlusion coarsens its tiles until it fits, Integrated Gradients takes
fewer steps. A relevance map shows what moved *this model's* score; it is not proof that
those parts were manipulated. A recording the detector abstains on (``no_speech``) has no
verdict and so no explanation.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from ..audio import official_crop
from ..errors import ConfigError, SpoofscopeError
from .windows import aggregate, official_window, sliding_windows

#: what every explanation says about itself
NOTE = (
    "a relevance map shows which parts of the audio moved this model's score towards its "
    "verdict; it is not proof that those parts were manipulated"
)
N_FFT, HOP = 512, 128  # at 16 kHz: 32-ms frames every 8 ms, 31.25 Hz bins
DEFAULT_BUDGET = 400
DEFAULT_TILE_S = 0.25
DEFAULT_BANDS = 8


class ExplainError(SpoofscopeError, ValueError):
    """An explanation that cannot be given as asked (budget, segment, method)."""


class ExplainStopped(ExplainError):
    """The compute limit passed (``kind`` timeout) or the owner cancelled (``shutting_down``)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Explanation:
    """The relevance map of one verdict. ``tiles``: ``{start_s, end_s, f_lo_hz, f_hi_hz,
    relevance}`` (times from the start of the file); ``relevance``: score units towards the
    verdict. ``passes``: windows through the network (forward or backward)."""

    path: str
    method: str
    baseline: str
    label: str | None
    score: float | None
    start_s: float
    end_s: float
    model: str = ""
    tiles: list[dict] = field(default_factory=list)
    tile_s: float | None = None
    n_bands: int | None = None
    passes: int = 0
    seconds: float = 0.0
    summary: str = ""
    reason: str | None = None  # why there is no explanation (no_speech)
    note: str = NOTE
    timeline: list[dict] = field(default_factory=list)  # the detector's, for the plot
    # a coarse log-power spectrogram of the segment for drawing: {t0, t1, f_max_hz, db:
    # rows from 0 Hz up, each a list of columns}
    spectrogram: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def grid(self) -> np.ndarray:
        """Relevance as a (bands, time tiles) array, low bands first."""
        n_t = len(self.tiles) // max(self.n_bands or 1, 1)
        r = np.array([t["relevance"] for t in self.tiles], float)
        return r.reshape(n_t, self.n_bands).T


class TileGrid:
    """The STFT of a mono waveform and its tiles (bands x time spans).

    Args:
        x: (L,) float32 waveform.
        sample_rate: its rate.
        tile_s: tile length in seconds (the last tile may be shorter, or up to one STFT hop
            longer: every tile holds at least one frame).
        n_bands: equal-width bands from 0 to Nyquist.
    """

    def __init__(self, x: np.ndarray, sample_rate: int, tile_s: float, n_bands: int):
        import torch

        if n_bands < 1 or not (tile_s > 0):
            raise ConfigError(f"tiles need n_bands >= 1 and tile_s > 0 (got {n_bands}, {tile_s})")
        self.sr, self.n = sample_rate, len(x)
        self.n_fft = frame_samples(sample_rate)
        self.hop = self.n_fft // 4
        # finer tiles than the STFT resolves would hold no coefficient: a relevance of exactly
        # 0 that nothing measured
        if tile_s < self.hop / sample_rate - 1e-12:
            raise ExplainError(
                f"--tile-s {tile_s:g} is shorter than the STFT's hop of "
                f"{self.hop / sample_rate:g} s, so some tiles would hold no frame; give "
                f"--tile-s >= {self.hop / sample_rate:g}"
            )
        if n_bands > self.n_fft // 2:
            raise ExplainError(
                f"--bands {n_bands} is more than the STFT's {self.n_fft // 2} frequency steps "
                f"of {sample_rate / self.n_fft:g} Hz, so some bands would hold no bin; give "
                f"--bands <= {self.n_fft // 2}"
            )
        self.window = torch.hann_window(self.n_fft)
        self.X = torch.stft(
            torch.from_numpy(np.ascontiguousarray(x, np.float32)),
            self.n_fft,
            self.hop,
            window=self.window,
            return_complex=True,
        )  # (bins, frames)
        n_bins, n_frames = self.X.shape
        dur = self.n / sample_rate
        self.n_time = max(1, math.ceil(dur / tile_s - 1e-9))
        # each frame to the tile its centre falls in (a centre on an edge: the later tile)
        tile_of = np.floor(np.arange(n_frames) * self.hop / sample_rate / tile_s + 1e-6)
        if self.n_time > 1 and tile_of.max() < self.n_time - 1:
            self.n_time -= 1  # a last sliver shorter than a hop holds no frame: the one before
        self.tile_s, self.n_bands = float(tile_s), int(n_bands)
        self.t_edges = np.minimum(np.arange(self.n_time + 1) * tile_s, dur)
        self.t_edges[-1] = dur
        self.f_edges = np.linspace(0, sample_rate / 2, n_bands + 1)
        freqs = np.arange(n_bins) * sample_rate / self.n_fft
        self.bin_band = torch.from_numpy(
            np.minimum((freqs / (sample_rate / 2) * n_bands).astype(int), n_bands - 1)
        )
        self.frame_tile = torch.from_numpy(np.minimum(tile_of.astype(int), self.n_time - 1))

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_bands, self.n_time

    def render(self, gains):
        """The waveform with each tile's STFT coefficients scaled by ``gains`` (bands, time
        tiles; a torch tensor, differentiable). Returns (L,)."""
        import torch

        m = gains[self.bin_band][:, self.frame_tile]
        return torch.istft(self.X * m, self.n_fft, self.hop, window=self.window, length=self.n)

    def span(self, k: int) -> tuple[int, int]:
        """Samples the render of time tile ``k`` can change (its frames' reach)."""
        a = int(self.t_edges[k] * self.sr) - self.n_fft
        b = int(math.ceil(self.t_edges[k + 1] * self.sr)) + self.n_fft
        return max(a, 0), min(b, self.n)


class Scorer:
    """The detector's score of a waveform the length of the one explained, over the windows
    the detector judged in it (their places fixed, so masking cannot change which windows
    count). Counts passes."""

    def __init__(self, det, x: np.ndarray, deadline: float | None = None):
        self.det, self.deadline = det, deadline
        size = det.window_samples
        if det.windows.kind == "official":
            wins = list(official_window([x], size))
        else:
            wins = list(sliding_windows([x], size, det.hop))
        judged = [w for w in wins if not det._silent(w)] or wins
        self.spans = [(w.start, w.end) for w in judged]
        self.size = size
        self.passes = 0
        self.ends: dict[bool, float] = {}  # curve(): the whole signal's and silence's scores
        self.bona = det.card.bonafide_index
        self.base = self.window_scores([self.cut(x, k) for k in range(len(self.spans))])

    def cut(self, y, k: int):
        """Window ``k`` of ``y`` (numpy or torch), tiled as the detector tiles a short file."""
        s, e = self.spans[k]
        w = y[s:e]
        if e - s == self.size:
            return w
        reps = -(-self.size // max(e - s, 1))
        if isinstance(w, np.ndarray):
            return official_crop(w, self.size)
        return w.repeat(reps)[: self.size]

    def check(self) -> None:
        """Raise :class:`ExplainStopped` when the owner cancelled or the deadline passed."""
        if self.det.cancel_event.is_set():
            raise ExplainStopped(
                "the service is shutting down; the explanation was not finished", "shutting_down"
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ExplainStopped(
                f"the explanation exceeded the {self.det.limits.timeout_s:g} s compute limit; "
                "ask for a smaller budget or a shorter segment",
                "timeout",
            )

    def window_scores(self, windows: list[np.ndarray]) -> np.ndarray:
        """Bona fide logits of windows, in the detector's batches."""
        out, bs = [], self.det.limits.batch_size
        for i in range(0, len(windows), bs):
            self.check()
            batch = np.stack(windows[i : i + bs]).astype(np.float32)
            out.append(self.det.engine(batch)[:, self.bona])
            self.passes += len(batch)
        return np.concatenate(out) if out else np.zeros(0)

    def aggregate(self, scores: np.ndarray) -> float:
        w = self.det.windows
        return aggregate(np.asarray(scores), w.aggregate, w.quantile)

    def score(self, y: np.ndarray) -> float:
        return self.aggregate(self.window_scores([self.cut(y, k) for k in range(len(self.spans))]))

    def weights(self, scores: np.ndarray) -> np.ndarray:
        """d aggregate / d window score at ``scores`` (mean, min, linear quantile)."""
        n, w = len(scores), self.det.windows
        g = np.zeros(n)
        if w.aggregate == "mean":
            g[:] = 1.0 / n
        elif w.aggregate == "min":
            g[int(np.argmin(scores))] = 1.0
        else:
            order = np.argsort(scores, kind="stable")
            pos = w.quantile * (n - 1)
            lo, frac = int(math.floor(pos)), pos - math.floor(pos)
            g[order[lo]] += 1 - frac
            if frac > 0:
                g[order[min(lo + 1, n - 1)]] += frac
        return g


class Method(Protocol):
    """A relevance method: ``relevance(scorer, grid, sign, budget)`` -> (bands, time tiles)
    relevance towards the verdict (``sign`` +1 bona fide, -1 spoof)."""

    name: str
    baseline: str

    def cost(self, grid: TileGrid, scorer: Scorer) -> int:
        """Passes this method needs on ``grid`` (at most)."""
        ...

    def fit(self, x, det, scorer: Scorer, budget: int, tile_s: float, n_bands: int) -> TileGrid:
        """The tile grid the budget allows."""
        ...

    def relevance(self, scorer: Scorer, grid: TileGrid, sign: float, budget: int) -> np.ndarray: ...


class Occlusion:
    """Remove each tile (band-stop over its span) and score again: relevance = the score
    towards the verdict lost. Passes: for each tile, the windows it reaches."""

    name = "occlusion"
    baseline = "the tile removed: its STFT coefficients set to zero (band-stop over its span)"

    def cost(self, grid: TileGrid, scorer: Scorer) -> int:
        return grid.n_bands * sum(len(self._reached(grid, scorer, k)) for k in range(grid.n_time))

    @staticmethod
    def _reached(grid: TileGrid, scorer: Scorer, k: int) -> list[int]:
        a, b = grid.span(k)
        out = []
        for i, (s, e) in enumerate(scorer.spans):
            if e - s < scorer.size:  # a tiled short window holds every sample
                out.append(i)
            elif s < b and e > a:
                out.append(i)
        return out

    def fit(self, x, det, scorer, budget, tile_s, n_bands) -> TileGrid:
        grid = TileGrid(x, det.sample_rate, tile_s, n_bands)
        while self.cost(grid, scorer) > budget:
            if grid.n_time > 1:
                grid = TileGrid(x, det.sample_rate, grid.tile_s * 2, grid.n_bands)
            elif grid.n_bands > 2:
                grid = TileGrid(x, det.sample_rate, grid.tile_s, grid.n_bands // 2)
            else:
                raise ExplainError(
                    f"a budget of {budget} passes is below the {self.cost(grid, scorer)} that "
                    "occlusion needs on its coarsest tiles here; raise --budget"
                )
        return grid

    def relevance(self, scorer, grid, sign, budget) -> np.ndarray:
        import torch

        base = scorer.aggregate(scorer.base)
        out = np.zeros(grid.shape)
        with torch.inference_mode():
            for k in range(grid.n_time):
                reach = self._reached(grid, scorer, k)
                wins, jobs = [], []
                for band in range(grid.n_bands):
                    g = torch.ones(grid.shape)
                    g[band, k] = 0.0
                    y = grid.render(g).numpy()
                    wins += [scorer.cut(y, i) for i in reach]
                    jobs.append(band)
                s = scorer.window_scores(wins).reshape(len(jobs), len(reach))
                for j, band in enumerate(jobs):
                    scores = scorer.base.copy()
                    scores[reach] = s[j]
                    out[band, k] = sign * (base - scorer.aggregate(scores))
        return out


class IntegratedGradients:
    """Integrated Gradients from silence to the waveform, projected onto the tiles (midpoint
    rule, ``steps`` at most). A step is a forward and a backward pass of every window (and,
    for a ``min`` or ``quantile`` aggregate, one more forward pass to find the window(s) the
    aggregate reads)."""

    name = "integrated-gradients"
    baseline = "silence (every tile's gain 0, the zero waveform), straight path, midpoint rule"

    def __init__(self, max_steps: int = 32, min_steps: int = 4):
        self.max_steps, self.min_steps = max_steps, min_steps

    def _per_step(self, scorer: Scorer) -> int:
        extra = 0 if scorer.det.windows.aggregate == "mean" else 1
        return (2 + extra) * len(scorer.spans)

    def steps(self, scorer: Scorer, budget: int) -> int:
        n = min(self.max_steps, budget // self._per_step(scorer))
        if n < self.min_steps:
            raise ExplainError(
                f"a budget of {budget} passes allows {n} Integrated-Gradients steps here "
                f"(each costs {self._per_step(scorer)}); at least {self.min_steps} are needed: "
                f"raise --budget to {self.min_steps * self._per_step(scorer)}"
            )
        return n

    def cost(self, grid, scorer) -> int:
        return self._per_step(scorer) * self.max_steps

    def fit(self, x, det, scorer, budget, tile_s, n_bands) -> TileGrid:
        model = det.model
        import torch

        if not isinstance(model, torch.nn.Module):
            raise ExplainError(
                "integrated-gradients needs the PyTorch model behind the detector (this "
                "engine has none); use --method occlusion, which works with every engine"
            )
        precision = getattr(det.engine, "precision", "fp32")
        if precision != "fp32":  # int8 layers have no gradient, and fp32 is another model
            raise ExplainError(
                f"integrated-gradients needs the fp32 model; this detector runs {precision}, "
                "which has no gradient; use --method occlusion (it explains the model as run) "
                "or --precision fp32"
            )
        self.steps(scorer, budget)
        return TileGrid(x, det.sample_rate, tile_s, n_bands)

    def relevance(self, scorer, grid, sign, budget) -> np.ndarray:
        import torch

        model, bona = scorer.det.model, scorer.bona
        steps = self.steps(scorer, budget)
        total = torch.zeros(grid.shape, dtype=torch.float64)
        bs = scorer.det.limits.batch_size
        for i in range(steps):
            scorer.check()
            alpha = (i + 0.5) / steps
            with torch.enable_grad():
                g = torch.full(grid.shape, alpha, requires_grad=True)
                y = grid.render(g)
                wins = [scorer.cut(y, k) for k in range(len(scorer.spans))]
                if scorer.det.windows.aggregate == "mean":
                    wts = np.full(len(wins), 1.0 / len(wins))
                else:
                    with torch.no_grad():
                        plain = scorer.window_scores([w.detach().numpy() for w in wins])
                    wts = scorer.weights(plain)
                for a in range(0, len(wins), bs):
                    batch = torch.stack(wins[a : a + bs])
                    logits = model(batch)[0][:, bona]
                    if not logits.requires_grad:
                        raise ExplainError(
                            "integrated-gradients needs a score that is differentiable in the "
                            "waveform, and this model's is not (its front end has no "
                            "gradient); use --method occlusion, which works with every model"
                        )
                    wt = torch.as_tensor(wts[a : a + bs], dtype=logits.dtype)
                    (grad,) = torch.autograd.grad(
                        sign * (logits * wt).sum(), g, retain_graph=a + bs < len(wins)
                    )
                    total += grad.double()
                    scorer.passes += 2 * len(batch)
        return (total / steps).numpy()  # (input - baseline) = 1 for every gain


METHODS = {m.name: m for m in (Occlusion, IntegratedGradients)}
#: the default method (chosen by benchmarks/explain.py; see docs/explain.md)
DEFAULT_METHOD = "occlusion"


def make_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method {name!r} is not one of {', '.join(METHODS)}")
    return METHODS[name]()


def load_segment(det, source, start_s=None, end_s=None, sample_rate=None):
    """``source`` (path, bytes, or an array at ``sample_rate``) decoded at the detector's
    rate, cut to [start_s, end_s): (samples, start_s, end_s); a one-line error for a segment
    outside the recording."""
    from ..audio import load_audio, resample

    if isinstance(source, np.ndarray):
        x = np.asarray(source, np.float32).reshape(-1)
        x = resample(x, sample_rate or det.sample_rate, det.sample_rate)
    else:
        x = load_audio(source, det.sample_rate, det.limits.max_duration_s)
    sr = det.sample_rate
    dur = len(x) / sr
    a = 0.0 if start_s is None else float(start_s)
    b = dur if end_s is None else min(float(end_s), dur)
    if not 0 <= a < dur:
        raise ExplainError(
            f"segment start {a:g} s is not within the recording (0-{dur:.3f} s); give a start "
            "inside it"
        )
    if not a < b:
        raise ExplainError(
            f"segment {a:g}-{b:g} s is not within the recording: its end is not after its "
            "start; give a start before the end"
        )
    seg = x[int(round(a * sr)) : int(round(b * sr))]
    n = frame_samples(sr)
    if len(seg) < n:
        what = "the recording" if start_s is None and end_s is None else "the segment"
        raise ExplainError(
            f"{what} is {len(seg) / sr:.3f} s long, shorter than one {n / sr:.3f}-s STFT frame "
            f"that tiles are cut from; explain at least {n / sr:.3f} s"
        )
    return seg, a, b


def frame_samples(sample_rate: int) -> int:
    """The STFT frame of the tiles at ``sample_rate`` (512 samples at 16 kHz)."""
    return max(16, int(round(N_FFT * sample_rate / 16000)))


def summarise(tiles: list[dict], label: str) -> str:
    """One line: the band span and time span around the most relevant tile that hold at
    least half the positive relevance of their marginals, and the share of the positive
    relevance that box holds ("mostly" only where that share is at least half)."""
    pos = [t for t in tiles if t["relevance"] > 0]
    what = "bona fide" if label == "bonafide" else "spoof"
    if not pos:
        return f"no tile moved the score towards the {what} verdict. {NOTE[0].upper()}{NOTE[1:]}."
    total = sum(t["relevance"] for t in pos)

    def span(key_lo, key_hi):
        keys = sorted({(t[key_lo], t[key_hi]) for t in tiles})
        mass = np.array(
            [
                sum(max(t["relevance"], 0) for t in tiles if (t[key_lo], t[key_hi]) == k)
                for k in keys
            ]
        )
        lo = hi = int(np.argmax(mass))
        while mass[lo : hi + 1].sum() < 0.5 * total:
            left = mass[lo - 1] if lo > 0 else -1
            right = mass[hi + 1] if hi + 1 < len(mass) else -1
            if left >= right:
                lo -= 1
            else:
                hi += 1
        return keys[lo][0], keys[hi][1]

    f0, f1 = span("f_lo_hz", "f_hi_hz")
    t0, t1 = span("start_s", "end_s")
    inside = sum(
        t["relevance"]
        for t in pos
        if f0 <= t["f_lo_hz"] and t["f_hi_hz"] <= f1 and t0 <= t["start_s"] and t["end_s"] <= t1
    )
    share = 100 * inside / total
    where = f"{f0 / 1000:.4g}-{f1 / 1000:.4g} kHz between {t0:.2f} and {t1:.2f} s"
    if share >= 50:
        head = f"the {what} verdict rests mostly on {where} ({share:.0f} % of the relevance"
    else:  # the two spans each hold half, but their box less: the relevance is spread out
        head = (
            f"the {what} verdict rests on no one place: its largest share lies in {where} "
            f"(only {share:.0f} % of the relevance"
        )
    return f"{head} towards it). {NOTE[0].upper()}{NOTE[1:]}."


def explain(
    det,
    source,
    *,
    method: str = DEFAULT_METHOD,
    start_s: float | None = None,
    end_s: float | None = None,
    budget: int = DEFAULT_BUDGET,
    tile_s: float = DEFAULT_TILE_S,
    n_bands: int = DEFAULT_BANDS,
    sample_rate: int | None = None,
    name: str | None = None,
) -> Explanation:
    """The relevance map of ``det``'s verdict on ``source`` (a path, bytes or an array at
    ``sample_rate``), or on its segment [start_s, end_s). See :meth:`Detector.explain`."""
    from ..audio import AudioError

    t_start = time.monotonic()
    if int(budget) < 1:
        raise ConfigError(f"budget must be >= 1 pass, got {budget}")
    m = make_method(method)
    path = name or ("<array>" if isinstance(source, np.ndarray) else _label(source))
    seg, a, b = load_segment(det, source, start_s, end_s, sample_rate)
    res = det(seg)
    if res.error:
        msg = res.error.split(": ", 1)[-1]
        if res.error_kind in ("timeout", "shutting_down"):
            raise ExplainStopped(msg, res.error_kind)
        raise AudioError(path, msg, kind=res.error_kind or "invalid")
    out = Explanation(
        path=path,
        method=m.name,
        baseline=m.baseline,
        label=res.label,
        score=res.score,
        start_s=a,
        end_s=b,
        model=det.name,
        timeline=[
            {**t, "start_s": t["start_s"] + a, "end_s": t["end_s"] + a} for t in res.timeline
        ],
    )
    out.spectrogram = coarse_spectrogram(seg, det.sample_rate, a, b)
    if res.label == "no_speech":
        out.reason = f"no explanation: the detector gives no verdict here ({res.reason})"
        out.summary = out.reason
        return out
    sign = 1.0 if res.label == "bonafide" else -1.0
    t = det.limits.timeout_s
    scorer = Scorer(det, seg, None if t is None else t_start + t)
    grid = m.fit(seg, det, scorer, int(budget) - scorer.passes, tile_s, n_bands)
    rel = m.relevance(scorer, grid, sign, int(budget) - scorer.passes)
    out.tile_s, out.n_bands = grid.tile_s, grid.n_bands
    out.tiles = [
        {
            "start_s": round(a + float(grid.t_edges[k]), 4),
            "end_s": round(a + float(grid.t_edges[k + 1]), 4),
            "f_lo_hz": float(grid.f_edges[band]),
            "f_hi_hz": float(grid.f_edges[band + 1]),
            "relevance": float(rel[band, k]),
        }
        for k in range(grid.n_time)
        for band in range(grid.n_bands)
    ]
    out.passes = scorer.passes
    out.summary = summarise(out.tiles, res.label)
    out.seconds = round(time.monotonic() - t_start, 3)
    return out


def coarse_spectrogram(x, sr, t0, t1, rows: int = 48, cols: int = 160) -> dict:
    """Log power (dB, 0.1 dB steps) of ``x`` pooled to at most ``rows`` x ``cols`` cells."""
    from scipy.signal import stft

    _, _, z = stft(x, sr, nperseg=N_FFT, noverlap=N_FFT - HOP)
    p = np.abs(z) ** 2
    r, c = min(rows, p.shape[0]), min(cols, p.shape[1])
    ri = np.linspace(0, p.shape[0], r + 1).astype(int)
    ci = np.linspace(0, p.shape[1], c + 1).astype(int)
    pooled = np.add.reduceat(np.add.reduceat(p, ri[:-1], axis=0), ci[:-1], axis=1)
    pooled /= np.outer(np.diff(ri), np.diff(ci))
    db = np.round(10 * np.log10(pooled + 1e-12), 1)
    return {"t0": t0, "t1": t1, "f_max_hz": sr / 2, "db": db.tolist()}


def _label(source) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return str(source)


# ---- faithfulness ---------------------------------------------------------------------------
def curve(
    scorer: Scorer, grid: TileGrid, order, sign: float, kind: str = "deletion", points: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """The score towards the verdict as tiles are removed in ``order`` (``deletion``: from
    the whole signal) or restored in ``order`` (``insertion``: from silence). Returns
    (fraction of tiles changed, score) at ``points`` evenly spaced fractions."""
    import torch

    order = np.asarray(order)
    n = len(order)
    fracs = np.linspace(0, 1, points)
    out = []
    ends = scorer.ends  # the whole signal and silence are scored once
    with torch.inference_mode():
        for f in fracs:
            k = int(round(f * n))
            whole = (k == 0) == (kind == "deletion")
            if k in (0, n) and whole in ends:
                out.append(ends[whole])
                continue
            g = torch.ones(grid.shape) if kind == "deletion" else torch.zeros(grid.shape)
            idx = np.unravel_index(order[:k], grid.shape)
            g[torch.as_tensor(idx[0]), torch.as_tensor(idx[1])] = 0.0 if kind == "deletion" else 1.0
            out.append(sign * scorer.score(grid.render(g).numpy()))
            if k in (0, n):
                ends[whole] = out[-1]
    return fracs, np.array(out)


def area(fracs: np.ndarray, scores: np.ndarray) -> float:
    """Area under a curve over [0, 1] (trapezoids)."""
    return float(np.sum((scores[1:] + scores[:-1]) / 2 * np.diff(fracs)))


# ---- the picture ----------------------------------------------------------------------------
def save_png(expl: Explanation, audio: np.ndarray, sample_rate: int, path) -> None:
    """A PNG of ``expl``: the detector's timeline above, the spectrogram (grey) of ``audio``
    (the explained segment) with each tile drawn in red (towards the verdict) or blue
    (against it) at opacity 0.85 x |relevance| / max |relevance|, the verdict in the title.
    The plot area's place in pixels and its axes' limits are written into the PNG's text
    (``spoofscope:axes``: left, top, right, bottom pixels; t0, t1 s; f0, f1 Hz) so that a
    reader can find each tile."""
    import json

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    f, t, z = stft(audio, sample_rate, nperseg=N_FFT, noverlap=N_FFT - HOP)
    db = 20 * np.log10(np.abs(z) + 1e-9)
    a0, a1 = expl.start_s, expl.end_s
    fig, (ax_t, ax) = plt.subplots(
        2, 1, figsize=(9, 5.5), dpi=100, height_ratios=(1, 3), sharex=True
    )
    steps = [s for s in expl.timeline if s.get("score") is not None]
    for s in steps:
        ax_t.plot([s["start_s"], s["end_s"]], [s["score"]] * 2, color="k", lw=2)
    ax_t.axhline(0, color="#999", lw=0.8)
    ax_t.set_ylabel("score")
    ax_t.set_title("window scores (higher = bona fide)", fontsize=9, loc="left")
    top = float(db.max())
    ax.imshow(
        db, origin="lower", aspect="auto", cmap="gray", vmin=top - 80, vmax=top,
        extent=(a0, a1, 0, sample_rate / 2), interpolation="nearest",
    )  # fmt: skip
    if expl.tiles:
        rgba = _overlay(expl)
        ax.imshow(
            rgba, origin="lower", aspect="auto", extent=(a0, a1, 0, sample_rate / 2),
            interpolation="nearest",
        )  # fmt: skip
    ax.set_xlim(a0, a1)
    ax.set_ylim(0, sample_rate / 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if expl.label == "no_speech":
        title = f"{expl.path}: no verdict (no_speech), so no explanation"
    else:
        title = (
            f"{expl.path}: {expl.label} (score {expl.score:.3f}); relevance by {expl.method}\n"
            "red: moved the score towards the verdict, blue: against. Not proof of manipulation."
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    w, h = fig.canvas.get_width_height()
    bb = ax.get_window_extent()
    axes = {
        "left": bb.x0, "right": bb.x1, "top": h - bb.y1, "bottom": h - bb.y0,
        "t0": a0, "t1": a1, "f0": 0.0, "f1": sample_rate / 2,
    }  # fmt: skip
    fig.savefig(path, dpi=100, metadata={"spoofscope:axes": json.dumps(axes)})
    plt.close(fig)


def _overlay(expl: Explanation) -> np.ndarray:
    """An RGBA image (bands, time tiles x 1 pixel per 10 ms) of the tiles: red or blue at
    opacity 0.85 x |relevance| / max |relevance|."""
    r = expl.grid()
    peak = float(np.abs(r).max()) or 1.0
    # one column per 10 ms, so the last (shorter) tile keeps its true width
    dur = expl.end_s - expl.start_s
    cols = max(1, int(round(dur * 100)))
    t = expl.start_s + (np.arange(cols) + 0.5) * dur / cols
    starts = np.array([expl.tiles[k * expl.n_bands]["start_s"] for k in range(r.shape[1])])
    col_tile = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, r.shape[1] - 1)
    rr = r[:, col_tile]
    rgba = np.zeros((*rr.shape, 4))
    rgba[..., 0] = rr > 0
    rgba[..., 2] = rr < 0
    rgba[..., 3] = 0.85 * np.abs(rr) / peak
    return rgba
