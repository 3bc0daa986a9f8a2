"""``Detector``: is this recording bona fide? Files, folders, arrays, long recordings.

A detector wraps a model (PyTorch or ONNX Runtime), a window policy, an aggregation of window
scores and, when fitted, a calibration. Window scores are the official CM score
``logits[:, 1]``; without calibration ``p_bonafide`` is the softmax of the two logits and the
threshold is the natural boundary (p = 0.5), and the result says ``calibrated: false``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..audio import OFFICIAL_NUM_SAMPLES, AudioError, resample, stream_audio
from .calibration import Calibration, calibration_path_beside, sigmoid
from .fusion import Fusion
from .windows import aggregate, official_window, sliding_windows

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000


@dataclass
class DetectionResult:
    """The verdict on one input. ``score``: higher means bona fide."""

    path: str | None
    score: float | None = None
    p_bonafide: float | None = None
    label: str | None = None
    confident: bool | None = None
    duration_s: float | None = None
    windows: list[dict] = field(default_factory=list)
    model: str = ""
    calibrated: bool = False
    threshold: float | None = None
    error: str | None = None
    error_kind: str | None = None  # missing, empty, too_long, invalid, internal

    def to_dict(self) -> dict:
        return asdict(self)


class _FileState:
    def __init__(self, index, source):
        self.index, self.source = index, source
        self.windows: list[tuple[int, int, bool]] = []  # (start, end, silent)
        self.scores: dict[int, float] = {}
        self.diffs: dict[int, float] = {}
        self.pending = 0
        self.done = False
        self.error: str | None = None
        self.error_kind: str | None = None
        self.n_samples = 0
        self.fallback = None  # (window idx, samples) of the first silent window


class Detector:
    """Score recordings with a countermeasure.

    Args:
        model: a registered model (``nn.Module``); or None with ``backend_obj`` given.
        backend: ``"torch"`` or ``"onnx"`` (exported once, cached beside the weights).
        calibration: a :class:`Calibration`, a path to one, or None.
        window: ``"sliding"`` (whole file, 64,600-sample windows every ``hop_s``) or
            ``"official"`` (first 64,600 samples, tiled when shorter).
        hop_s: hop between sliding windows in seconds.
        aggregate: ``"mean"``, ``"quantile"`` (``quantile``, default 0.1) or ``"min"``.
        threshold: score threshold for the label (default: calibrated threshold, else the
            natural boundary).
        band: half-width of the low-confidence band around the threshold, in probability.
        batch_size: windows per forward pass (memory is bounded by it).
        silence_db: windows quieter than this RMS (dBFS) are skipped when the file has speech.
    """

    def __init__(
        self,
        model=None,
        *,
        backend: str = "torch",
        calibration=None,
        window: str = "sliding",
        hop_s: float = 2.0,
        aggregate: str = "mean",
        quantile: float = 0.1,
        threshold: float | None = None,
        band: float | None = None,
        batch_size: int = 8,
        silence_db: float = -50.0,
        name: str | None = None,
        backend_obj=None,
        onnx_path=None,
        threads: int | None = None,
        max_duration_s: float | None = None,
    ):
        from .backends import OnnxBackend, TorchBackend

        if window not in ("sliding", "official"):
            raise ValueError(f"window must be 'sliding' or 'official', not {window!r}")
        if aggregate not in ("mean", "quantile", "min"):
            raise ValueError(f"aggregate must be mean, quantile or min, not {aggregate!r}")
        self.model = model
        self.name = name or getattr(model, "registry_name", type(model).__name__)
        if backend_obj is not None:
            self.backend = backend_obj
        elif backend == "torch":
            self.backend = TorchBackend(model, threads)
        elif backend == "onnx":
            if onnx_path is None:
                from ..export.onnx import cached_onnx

                onnx_path = cached_onnx(model)
            self.backend = OnnxBackend(onnx_path, threads)
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', not {backend!r}")
        if isinstance(calibration, str | Path):
            calibration = Calibration.load(calibration)
        self.calibration: Calibration | None = calibration
        self.window, self.hop = window, max(1, int(round(hop_s * SAMPLE_RATE)))
        self.aggregate, self.quantile = aggregate, quantile
        self.user_threshold = threshold
        self.band = band if band is not None else (calibration.band if calibration else 0.1)
        self.batch_size = max(1, int(batch_size))
        self.silence_db = silence_db
        self.max_duration_s = max_duration_s

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name: str, weights=None, **kw) -> Detector:
        """The published weights of a registry entry (e.g. ``"aasist"``)."""
        from ..models import create_model

        return cls(create_model(name, pretrained=True, weights=weights), **kw)

    @classmethod
    def from_checkpoint(cls, path, config=None, arch: str = "aasist", **kw) -> Detector:
        """A checkpoint written by ``spoofscope train`` (with its calibration, or a
        ``NAME.calib.json`` beside it), or an official AASIST state_dict with its config
        (an official ``.conf``/``model_config`` JSON; default: the registry's ``arch``)."""
        import torch

        from ..models import create_model, load_checkpoint
        from ..models._pretrained import load_state_dict_file
        from ..models.aasist import AASIST, AASISTConfig

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found")
        obj = torch.load(path, map_location="cpu", weights_only=True)
        calib = kw.pop("calibration", None)
        if isinstance(obj, dict) and obj.get("format", "").startswith("spoofscope-checkpoint"):
            model, ckpt = load_checkpoint(path)
            if calib is None and ckpt.get("calibration"):
                calib = Calibration.from_dict(ckpt["calibration"])
        else:
            if config is not None:
                model = AASIST(AASISTConfig.from_official(config))
                model.registry_name = "aasist"
            else:
                model = create_model(arch)
            model.load_state_dict(load_state_dict_file(path), strict=True)
            model.eval()
        beside = calibration_path_beside(path)
        if calib is None and beside.is_file():
            calib = Calibration.load(beside)
        return cls(model, calibration=calib, name=kw.pop("name", path.name), **kw)

    # ---- scoring ------------------------------------------------------------------------
    def _threshold(self) -> float | None:
        if self.user_threshold is not None:
            return self.user_threshold
        if self.calibration is not None:
            return self.calibration.threshold
        return None

    def _windows(self, source, sample_rate):
        if isinstance(source, np.ndarray):
            x = np.asarray(source, dtype=np.float32)
            if x.ndim == 2:  # (channels, samples) or (samples, channels): average the short axis
                x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
            if x.size == 0:
                raise AudioError("<array>", "zero samples", kind="empty")
            if not np.all(np.isfinite(x)):
                raise AudioError("<array>", "NaN or infinite samples")
            sr = sample_rate or SAMPLE_RATE
            chunks: Iterable[np.ndarray] = [resample(x, sr, SAMPLE_RATE)]
        else:
            chunks = stream_audio(source, SAMPLE_RATE, self.max_duration_s)
        if self.window == "official":
            return official_window(chunks, OFFICIAL_NUM_SAMPLES)
        return sliding_windows(chunks, OFFICIAL_NUM_SAMPLES, self.hop)

    def _jobs(self, sources, states, sample_rate) -> Iterator[tuple]:
        for i, src in enumerate(sources):
            st = _FileState(i, src)
            states.append(st)
            try:
                for w in self._windows(src, sample_rate):
                    silent = 20 * np.log10(w.rms + 1e-12) < self.silence_db
                    k = len(st.windows)
                    st.windows.append((w.start, w.end, bool(silent)))
                    st.n_samples = w.total if w.total is not None else max(st.n_samples, w.end)
                    if silent:
                        if st.fallback is None:
                            st.fallback = (k, w.samples)
                        continue
                    st.pending += 1
                    yield st, k, w.samples
                if not st.scores and st.pending == 0 and st.fallback is not None:
                    k, samples = st.fallback
                    st.pending += 1
                    yield st, k, samples
                st.fallback = None
            except AudioError as e:
                st.error, st.error_kind = str(e), e.kind
            except Exception as e:  # noqa: BLE001 - one bad file must not stop a batch
                log.exception("unexpected error on %s", src)
                st.error = f"{_name(src)}: {type(e).__name__}: {e}"
                st.error_kind = "internal"
            st.done = True
            yield st, None, None

    def iter_detect(
        self, sources: Iterable, sample_rate: int | None = None
    ) -> Iterator[DetectionResult]:
        """Score many inputs, batching windows across files; yields results as files finish
        (in input order)."""
        states: list[_FileState] = []
        batch: list[tuple[_FileState, int, np.ndarray]] = []
        emitted = 0

        def run():
            x = np.stack([b[2] for b in batch])
            logits = self.backend(x)
            for (st, k, _), lg in zip(batch, logits, strict=True):
                st.scores[k] = float(lg[1])
                st.diffs[k] = float(lg[1] - lg[0])
                st.pending -= 1
            batch.clear()

        def ready():
            nonlocal emitted
            while emitted < len(states):
                st = states[emitted]
                if not (st.done and st.pending == 0):
                    return
                emitted += 1
                yield self._finish(st)

        for st, k, samples in self._jobs(sources, states, sample_rate):
            if k is not None:
                batch.append((st, k, samples))
                if len(batch) >= self.batch_size:
                    run()
            yield from ready()
        if batch:
            run()
        yield from ready()

    def detect_many(
        self, sources: Iterable, sample_rate: int | None = None
    ) -> list[DetectionResult]:
        return list(self.iter_detect(sources, sample_rate))

    def __call__(self, source, sample_rate: int | None = None) -> DetectionResult:
        return self.detect_many([source], sample_rate)[0]

    def warm_up(self) -> None:
        """One inference on a quiet noise window, so that the first request is not slow."""
        x = np.random.default_rng(0).standard_normal(OFFICIAL_NUM_SAMPLES) * 0.01
        self.backend(x.astype(np.float32)[None])

    def _finish(self, st: _FileState) -> DetectionResult:
        res = DetectionResult(
            path=_name(st.source), model=self.name, calibrated=self.calibration is not None
        )
        if st.error:
            res.error, res.error_kind = st.error, st.error_kind
            return res
        res.duration_s = st.n_samples / SAMPLE_RATE
        keys = sorted(st.scores)
        res.windows = [
            {
                "start": s / SAMPLE_RATE,
                "end": e / SAMPLE_RATE,
                "score": st.scores.get(k),
                "silent": silent,
            }
            for k, (s, e, silent) in enumerate(st.windows)
        ]
        scores = np.array([st.scores[k] for k in keys])
        score = aggregate(scores, self.aggregate, self.quantile)
        thr = self._threshold()
        if self.calibration is not None:
            p = float(self.calibration.p_bonafide(score))
            p_thr = float(self.calibration.p_bonafide(thr))
        else:
            d = aggregate(np.array([st.diffs[k] for k in keys]), self.aggregate, self.quantile)
            p, p_thr = float(sigmoid(d)), 0.5
        bona = (score >= thr) if thr is not None else (p >= 0.5)
        res.score, res.p_bonafide, res.threshold = score, p, thr
        res.label = "bonafide" if bona else "spoof"
        res.confident = bool(abs(p - p_thr) >= self.band)
        return res


def _name(src) -> str:
    if isinstance(src, np.ndarray):
        return "<array>"
    if isinstance(src, bytes | bytearray | memoryview):
        return f"<{len(src)} bytes>"
    return str(src)


class FusedDetector:
    """An ensemble of detectors whose aggregated scores are fused by a logistic map.

    The fused score is a log-likelihood ratio; ``p_bonafide = sigmoid(fused + logit prior)``
    and the label threshold is the Bayes threshold (fused >= 0 at prior 0.5).
    """

    def __init__(self, detectors: list[Detector], fusion: Fusion, band: float = 0.1):
        if len(detectors) != len(fusion.weights):
            raise ValueError(
                f"fusion expects {len(fusion.weights)} systems, got {len(detectors)} detectors"
            )
        self.detectors, self.fusion, self.band = detectors, fusion, band
        self.name = "+".join(d.name for d in detectors)

    def detect_many(self, sources, sample_rate=None) -> list[DetectionResult]:
        sources = list(sources)
        per = [d.detect_many(sources, sample_rate) for d in self.detectors]
        out = []
        for i, src in enumerate(sources):
            rs = [p[i] for p in per]
            err = next((r.error for r in rs if r.error), None)
            res = DetectionResult(path=_name(src), model=self.name, calibrated=True, threshold=0.0)
            if err:
                res.error = err
                out.append(res)
                continue
            fused = float(self.fusion.apply(np.array([r.score for r in rs])))
            p = float(sigmoid(fused + np.log(self.fusion.prior / (1 - self.fusion.prior))))
            res.score, res.p_bonafide = fused, p
            res.label = "bonafide" if fused >= 0 else "spoof"
            res.confident = bool(abs(p - 0.5) >= self.band)
            res.duration_s = rs[0].duration_s
            res.windows = rs[0].windows
            out.append(res)
        return out

    def __call__(self, source, sample_rate=None) -> DetectionResult:
        return self.detect_many([source], sample_rate)[0]
