"""``Detector``: is this recording bona fide? Files, folders, arrays, long recordings.

A detector wraps an engine (PyTorch or ONNX Runtime) and the model card it carries, a window
policy with the aggregation of window scores, a decision rule, limits and, when fitted, a
calibration. Window scores are the bona fide logit the card names (the official CM score
``logits[:, 1]`` for every registered model); without calibration ``p_bonafide`` is the
softmax of the two logits, the threshold is the natural boundary (p = 0.5), and the result
says ``calibrated: false``.

``confident`` is true or false only under a calibration fitted on the user's own kind of
recordings (``calibrate``, ``adapt``): without one, or under one fitted on the training data's
dev split, it is null and ``confidence_note`` says why (a softmax of a network trained on
2019 data is confidently wrong on today's generators). Every result carries the card's
``notes``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio import AudioError, _report_clipping, resample, stream_audio
from ..errors import ConfigError
from ..models._card import card_of
from .activity import SpeechMeter, make_meter
from .calibration import Calibration, calibration_path_beside, sigmoid
from .engines import make_engine
from .fusion import Fusion
from .policy import Decision, Limits, WindowPolicy
from .timeline import anchor, build_segments, build_timeline, frame_timeline, settled
from .windows import WindowCutter, aggregate, grid_windows, official_window

log = logging.getLogger(__name__)


@dataclass
class DetectionResult:
    """The verdict on one input. ``score``: higher means bona fide. Every field's type and
    meaning: :data:`spoofscope.infer.schema.RESULT` (the tests hold the two to the same
    fields, in this order)."""

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
    window_samples: int | None = None
    speech_s: float | None = None  # seconds of active sound in what was judged
    reason: str | None = None  # why the detector abstained (label "no_speech")
    # why ``confident`` is null: the probability is not one the detector can stand behind
    confidence_note: str | None = None
    notes: str = ""  # the model card's notes: what it was trained on, what it misses
    # where: a score per step of at most 0.5 s (null without sound), and contiguous segments
    # (bonafide / spoof / no_speech) read off it (infer/timeline.py); seconds judged spoof
    timeline: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    spoofed_s: float | None = None
    error: str | None = None
    error_kind: str | None = None  # missing, empty, too_long, invalid, invalid_samples,
    # timeout, shutting_down, internal

    def to_dict(self) -> dict:
        """The result as JSON types; never NaN or infinity (see :func:`finite`)."""
        return finite(asdict(self))


def finite(obj):
    """``obj`` (dicts, lists, numbers) with every NaN or infinite float as None: what
    spoofscope writes (JSON lines, API answers, stream events, Parquet) is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def to_json(obj) -> str:
    """One line of strict JSON (no NaN, no Infinity) for ``obj``."""
    return json.dumps(finite(obj), allow_nan=False)


class _Verdict(NamedTuple):
    score: float
    p: float
    p_thr: float
    thr: float | None
    label: str
    confident: bool | None
    note: str | None


class _FileState:
    def __init__(self, index, source, parent: _FileState | None = None):
        self.index, self.source = index, source
        self.parent = parent  # the file's state, for the windows of the localisation grid
        self.where: _FileState | None = None  # the localisation grid's windows, when it has one
        self.windows: list[tuple[int, int, bool]] = []  # (start, end, silent)
        self.scores: dict[int, float] = {}
        self.diffs: dict[int, float] = {}
        self.frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame (score, diff)
        self.pending = 0
        self.done = False
        self.error: str | None = None
        self.error_kind: str | None = None
        self.n_samples = 0
        self.meter = None  # SpeechMeter of this file


class Detector:
    """Score recordings with a countermeasure.

    Args:
        model: a model (``nn.Module``, run by the fastest engine that gives its scores:
            ONNX Runtime where its card allows export, else PyTorch) or an engine from
            :mod:`spoofscope.infer.engines`. Its card gives the sample rate, the window and
            the bona fide index.
        windows: the :class:`WindowPolicy` (default: sliding windows of the card's length).
        decision: the :class:`Decision` (threshold, low-confidence band).
        limits: the :class:`Limits` (batch size, longest recording).
        calibration: a :class:`Calibration`, a path to one, or None.
        name: the model name reported in results.

    A detector is not changed after construction; :meth:`replace` gives a new one.
    """

    def __init__(
        self,
        model,
        *,
        windows: WindowPolicy | None = None,
        decision: Decision | None = None,
        limits: Limits | None = None,
        calibration=None,
        name: str | None = None,
    ):
        import torch

        self.windows = windows or WindowPolicy()
        if isinstance(model, torch.nn.Module):
            model = make_engine(model, "auto", length=self.windows.samples)
        self.engine = model
        self.card = card_of(self.engine)
        self.decision = decision or Decision()
        self.limits = limits or Limits()
        if isinstance(calibration, str | Path):
            calibration = Calibration.load(calibration)
        self.calibration: Calibration | None = calibration
        self.name = name or getattr(self.model, "source", None) or self.card.name
        self.sample_rate = self.card.sample_rate
        self.window_samples = int(self.windows.samples or self.card.window_samples)
        _check_window(self.window_samples, self.card)
        if self.decision.vad == "silero" and self.sample_rate != 16000:
            raise ConfigError(
                f"the Silero VAD reads 16-kHz audio and {self.card.name} takes "
                f"{self.sample_rate} Hz: use --vad energy (Decision(vad='energy'))"
            )
        self.hop = max(1, int(round(self.windows.hop_s * self.sample_rate)))
        # the localisation grid (samples, hop): windows judged for the timeline only
        # (none for a model that scores its frames: their timeline is finer already)
        self.where = None
        frames = bool(getattr(self.engine, "gives_frames", False))
        if self.windows.where_s is not None and self.windows.kind == "sliding" and not frames:
            # (never shorter than the model takes)
            n = max(int(round(self.windows.where_s * self.sample_rate)), self.card.min_length)
            self.where = (n, max(1, int(round(self.windows.where_hop_s * self.sample_rate))))
        # the engine for each window length (an ONNX graph exported at a fixed length is
        # exported again for the localisation grid's)
        at = getattr(self.engine, "at_length", None)
        self._engines = {self.window_samples: self.engine}
        if self.where and at is not None:
            self._engines[self.where[0]] = at(self.where[0])
        # the timeline's resolution
        self.step_s = min(0.5, self.windows.where_hop_s if self.where else self.windows.hop_s)
        self.band = self.decision.band
        if self.band is None:
            self.band = calibration.band if calibration else 0.1
        # set by the owner (the service, on shutdown) to stop work at the next window
        self.cancel_event = threading.Event()

    def _abstain(self, duration_s: float, speech_s: float) -> str | None:
        """Why there is nothing to judge, or None."""
        need = self.decision.min_speech_s
        if duration_s < need:
            return (
                f"too short: {duration_s:.3f} s of audio; at least {need:g} s of speech is "
                "needed for a verdict"
            )
        if speech_s < need:
            found = (
                "of speech found by the Silero VAD"
                if self.decision.vad == "silero"
                else f"of sound above {self.windows.silence_db:g} dBFS"
            )
            return (
                f"no speech: {speech_s:.2f} s {found}; at least {need:g} s is needed for a verdict"
            )
        return None

    @property
    def model(self):
        """The PyTorch model behind the engine (None for an engine without one)."""
        return getattr(self.engine, "model", None)

    def replace(self, **changes) -> Detector:
        """A new detector with some of ``windows``, ``decision``, ``limits``, ``calibration``
        or ``name`` changed (the engine is shared)."""
        kw = dict(
            windows=self.windows,
            decision=self.decision,
            limits=self.limits,
            calibration=self.calibration,
            name=self.name,
        )
        unknown = set(changes) - set(kw)
        if unknown:
            raise ConfigError(f"Detector.replace: unknown field(s) {sorted(unknown)}")
        new = copy.copy(self)
        type(self).__init__(new, self.engine, **{**kw, **changes})
        return new

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        source,
        *,
        engine: str = "auto",
        precision: str = "fp32",
        threads: int | None = None,
        weights=None,
        arch: str | None = None,
        config=None,
        cache_dir=None,
        calibration=None,
        name: str | None = None,
        bonafide_label: str | None = None,
        **policies,
    ) -> Detector:
        """A detector over :func:`~spoofscope.models.load_model` ``(source, ...)``.

        ``source`` is ``name[:tag]`` (published weights, or ``weights=`` your own file), a
        checkpoint, a state_dict file, or ``hf:OWNER/REPO[@REV]`` / ``hf:FOLDER`` (a
        ``transformers`` audio classifier; ``bonafide_label`` names its bona fide class).
        The calibration is ``calibration`` if given, else the one attached to the
        checkpoint, else ``FILE.calib.json`` beside the file.
        ``engine``: ``auto`` (ONNX Runtime where the model exports, else PyTorch), ``onnx``
        or ``torch``; ``precision``: ``fp32`` or a reduced precision the card lists.
        ``policies``: ``windows``, ``decision``, ``limits``.
        """
        from ..models import load_model

        model = load_model(
            source,
            weights=weights,
            arch=arch,
            config=config,
            cache_dir=cache_dir,
            bonafide_label=bonafide_label,
        )
        if calibration is None:
            attached = getattr(model, "checkpoint", {}).get("calibration")
            if attached:
                calibration = Calibration.from_dict(attached)
        if calibration is None:
            for f in (source, weights):
                if f is not None and Path(str(f)).is_file():
                    beside = calibration_path_beside(f)
                    if beside.is_file():
                        calibration = Calibration.load(beside)
        if name is None and Path(str(source)).is_file():
            name = Path(str(source)).name
        windows = policies.get("windows")
        if windows is not None and windows.samples:  # before an engine is built for it
            _check_window(int(windows.samples), model.card)
        eng = make_engine(
            model,
            engine,
            threads,
            cache_dir,
            precision=precision,
            length=windows.samples if windows is not None else None,
        )
        return cls(eng, calibration=calibration, name=name, **policies)

    @classmethod
    def from_pretrained(cls, name: str, weights=None, **kw) -> Detector:
        """The published weights of a registry entry (``"aasist"``, ``"aasist:official"``),
        or your own ``weights`` file for that architecture."""
        return cls.load(name, weights=weights, **kw)

    @classmethod
    def from_checkpoint(cls, path, config=None, arch: str | None = None, **kw) -> Detector:
        """A checkpoint written by ``spoofscope train`` (with its calibration, or a
        ``NAME.calib.json`` beside it), or a state_dict (official AASIST with its ``.conf``,
        or any registered architecture ``arch``)."""
        return cls.load(Path(path), config=config, arch=arch, **kw)

    # ---- scoring ------------------------------------------------------------------------
    def _threshold(self) -> float | None:
        if self.decision.threshold is not None:
            return self.decision.threshold
        if self.calibration is not None:
            return self.calibration.threshold
        return None

    def cutters(self) -> list[WindowCutter]:
        """The window grids of a file: the verdict's, then the localisation grid's if any."""
        grids = [(self.window_samples, self.hop)] + ([self.where] if self.where else [])
        return [WindowCutter(n, h) for n, h in grids]

    def _windows(self, source, sample_rate, meter: SpeechMeter):
        """``(grid, window)`` of a source: grid 0 the verdict's, 1 the localisation grid's."""
        if isinstance(source, np.ndarray):
            x = np.asarray(source, dtype=np.float32)
            if x.ndim == 2:  # (channels, samples) or (samples, channels): average the short axis
                x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
            if x.size == 0:
                raise AudioError("<array>", "zero samples", kind="empty")
            if not np.all(np.isfinite(x)):
                raise AudioError(
                    "<array>", "invalid samples: NaN or infinite values", kind="invalid_samples"
                )
            sr = sample_rate or self.sample_rate
            chunks: Iterable[np.ndarray] = [resample(x, sr, self.sample_rate)]
        else:
            chunks = stream_audio(source, self.sample_rate, self.limits.max_duration_s)
        chunks = meter.wrap(chunks)
        if self.windows.kind == "official":
            return ((0, w) for w in official_window(chunks, self.window_samples))
        return grid_windows(chunks, self.cutters())

    def _check_stop(self, deadline, started: bool) -> None:
        """Raise :class:`_Stopped` when the owner cancelled or the deadline passed.
        ``started``: this file has windows read already (else the time went to the files
        before it, and the message says so rather than blaming this one)."""
        if self.cancel_event.is_set():
            raise _Stopped(
                "the service is shutting down; the request was not finished", "shutting_down"
            )
        if deadline is not None and time.monotonic() > deadline:
            limit = f"{self.limits.timeout_s:g} s"
            raise _Stopped(
                f"the computation exceeded the {limit} limit"
                if started
                else f"not scored: the {limit} compute limit of the request was used up by "
                "the files before it",
                "timeout",
            )

    def _jobs(self, sources, states, sample_rate, deadline, progress) -> Iterator[tuple]:
        limit = self.window_samples if self.windows.kind == "official" else None
        for i, src in enumerate(sources):
            st = _FileState(i, src)
            st.meter = make_meter(
                self.decision.vad, self.sample_rate, self.windows.silence_db, limit
            )
            if self.where:
                st.where = _FileState(i, src, parent=st)
            states.append(st)
            try:
                for g, w in self._windows(src, sample_rate, st.meter):
                    self._check_stop(deadline, started=bool(st.windows))
                    silent = self._silent(w)
                    on = st.where if g else st
                    k = len(on.windows)
                    on.windows.append((w.start, w.end, silent))
                    st.n_samples = w.total if w.total is not None else max(st.n_samples, w.end)
                    if progress is not None and not g:  # silent windows are read too
                        progress(i, min(w.end, w.total or w.end) / self.sample_rate)
                    if silent:  # nothing to judge here: not scored
                        continue
                    st.pending += 1
                    yield on, k, w.samples
            except _Stopped as e:
                st.error, st.error_kind = f"{_name(src)}: {e}", e.kind
            except AudioError as e:
                st.error, st.error_kind = str(e), e.kind
            except Exception as e:  # noqa: BLE001 - one bad file must not stop a batch
                log.exception("unexpected error on %s", src)
                st.error = f"{_name(src)}: {type(e).__name__}: {e}"
                st.error_kind = "internal"
            st.done = True
            yield st, None, None

    def iter_detect(
        self, sources: Iterable, sample_rate: int | None = None, progress=None
    ) -> Iterator[DetectionResult]:
        """Score many inputs, batching windows across files; yields results as files finish
        (in input order). ``progress(file_index, seconds_reached)`` is called as each file's
        windows are read (the CLI's progress bar counts audio seconds with it)."""
        states: list[_FileState] = []
        batches: dict[int, list[tuple[_FileState, int, np.ndarray]]] = {}  # by window length
        emitted = 0

        def run(n):
            batch = batches.pop(n)
            self._score(batch)
            for st, _, _ in batch:
                (st.parent or st).pending -= 1

        def ready():
            nonlocal emitted
            while emitted < len(states):
                st = states[emitted]
                if not (st.done and st.pending == 0):
                    return
                emitted += 1
                yield self._finish(st)

        deadline = None
        if self.limits.timeout_s is not None:
            deadline = time.monotonic() + self.limits.timeout_s
        for st, k, samples in self._jobs(sources, states, sample_rate, deadline, progress):
            if k is not None:
                batches.setdefault(samples.size, []).append((st, k, samples))
                if len(batches[samples.size]) >= self.limits.batch_size:
                    run(samples.size)
            yield from ready()
        for n in list(batches):
            run(n)
        yield from ready()

    def detect_many(
        self, sources: Iterable, sample_rate: int | None = None
    ) -> list[DetectionResult]:
        return list(self.iter_detect(sources, sample_rate))

    def stream(self, sample_rate: int | None = None, name: str = "<stream>") -> DetectorStream:
        """A live stream: :meth:`DetectorStream.feed` audio of any length as it arrives, get
        an event per window judged, and :meth:`DetectorStream.close` for the same result
        ``detect`` gives on the whole recording (same windows, scores, timeline, segments)."""
        return DetectorStream(self, sample_rate, name)

    def __call__(self, source, sample_rate: int | None = None) -> DetectionResult:
        return self.detect_many([source], sample_rate)[0]

    def explain(self, source, method: str | None = None, **kw):
        """Why this verdict: a relevance map over time x frequency of the verdict on
        ``source`` (a path, bytes, or an array at ``sample_rate=``), or on its segment
        ``start_s``-``end_s``; ``method`` one of :data:`~spoofscope.infer.explain.METHODS`
        (default the one measured most faithful), at most ``budget`` passes. A recording the
        detector abstains on has no explanation (``reason`` says why). See
        :mod:`spoofscope.infer.explain`."""
        from .explain import DEFAULT_METHOD, explain

        return explain(self, source, method=method or DEFAULT_METHOD, **kw)

    def warm_up(self) -> None:
        """One inference on a quiet noise window, so that the first request is not slow."""
        x = np.random.default_rng(0).standard_normal(self.window_samples) * 0.01
        self.engine(x.astype(np.float32)[None])

    def _finish(self, st: _FileState) -> DetectionResult:
        sr = self.sample_rate
        res = DetectionResult(
            path=_name(st.source),
            model=self.name,
            calibrated=self.calibration is not None,
            window_samples=self.window_samples,
            notes=self.card.notes or f"trained on: {self.card.training_data}",
        )
        if st.error:
            res.error, res.error_kind = st.error, st.error_kind
            return res
        res.duration_s = st.n_samples / sr
        # never more speech than audio (a 10-sample file is 0.000625 s long)
        res.speech_s = min(round(st.meter.active_s, 3), res.duration_s)
        res.windows = [
            {
                "start_s": s / sr,
                "end_s": e / sr,
                "score": st.scores.get(k),
                "silent": silent,
            }
            for k, (s, e, silent) in enumerate(st.windows)
        ]
        reason = self._abstain(res.duration_s, res.speech_s)
        if reason:  # nothing to judge: no score, no verdict
            res.label, res.confident, res.reason = "no_speech", False, reason
            res.timeline = [
                {"start_s": t["start_s"], "end_s": t["end_s"], "score": None}
                for t in build_timeline([], res.duration_s, self.step_s, None)
            ]
            res.segments = [
                {"start_s": 0.0, "end_s": res.duration_s, "label": "no_speech", "score": None,
                 "p_bonafide": None}
            ]  # fmt: skip
            return res
        v = self._verdict(st)
        res.score, res.p_bonafide, res.threshold, res.label = v.score, v.p, v.thr, v.label
        self._where(res, st, v)
        res.confidence_note, res.confident = v.note, v.confident
        return res

    def _verdict(self, st: _FileState) -> _Verdict:
        """The verdict over the windows of ``st`` judged so far (files and streams alike):
        the aggregated score, its probability and the one at the threshold, the label, and
        whether it may claim confidence."""
        keys = sorted(st.scores)
        how, q = self.windows.aggregate, self.windows.quantile
        score = aggregate(np.array([st.scores[k] for k in keys]), how, q)
        thr = self._threshold()
        if self.calibration is not None:
            p = float(self.calibration.p_bonafide(score))
            p_thr = float(self.calibration.p_bonafide(thr))
        else:
            d = aggregate(np.array([st.diffs[k] for k in keys]), how, q)
            p, p_thr = float(sigmoid(d)), 0.5
        bona = (score >= thr) if thr is not None else (p >= 0.5)
        note = self.confidence_note()
        confident = None if note else bool(abs(p - p_thr) >= self.band)
        return _Verdict(score, p, p_thr, thr, "bonafide" if bona else "spoof", confident, note)

    def _silent(self, w) -> bool:
        """A window too quiet to judge (it is not scored)."""
        return bool(20 * np.log10(w.rms + 1e-12) < self.windows.silence_db)

    def _engine_at(self, n: int):
        """The engine that scores windows of ``n`` samples (the localisation grid's may be
        another export of the same model)."""
        return self._engines.get(n, self.engine)

    def _score(self, batch: list[tuple[_FileState, int, np.ndarray]]) -> None:
        """Score a batch of windows ``(state, window index, samples)`` in one engine call
        (with their frames, from the same pass, where the engine gives them)."""
        bona = self.card.bonafide_index
        x = np.stack([b[2] for b in batch])
        frames = bool(getattr(self.engine, "gives_frames", False))
        if frames:  # one pass: the window's logits are the mean of its frames' logits
            fl = self.engine.frame_logits(x)
            logits = fl.mean(axis=1)
        else:
            logits = self._engine_at(x.shape[1])(x)
        finite = np.all(np.isfinite(logits), axis=1)
        for i, ((st, k, _), lg) in enumerate(zip(batch, logits, strict=True)):
            if not finite[i]:  # no NaN or infinity ever reaches a score: the file fails
                at = st.windows[k][0] / self.sample_rate
                st = st.parent or st  # a localisation window fails its file too
                if st.error is None:
                    st.error = (
                        f"{_name(st.source)}: the model gave a non-finite score (NaN or "
                        f"infinity) on the window at {at:g} s; the model or its weights are "
                        "broken for this input"
                    )
                    st.error_kind = "internal"
                continue
            st.scores[k] = float(lg[bona])
            st.diffs[k] = float(lg[bona] - lg[1 - bona])
            if frames:
                st.frames[k] = (fl[i, :, bona], fl[i, :, bona] - fl[i, :, 1 - bona])

    def _where(self, res: DetectionResult, st: _FileState, v: _Verdict, runs=False) -> None:
        """The timeline and segments of a judged file (see :mod:`.timeline`); ``v``: the
        file's verdict; ``runs``: the segments give ``run_s`` (see ``build_segments``)."""
        sr, thr, p_thr = self.sample_rate, v.thr, v.p_thr
        mask, frame_s = st.meter.mask, st.meter.frame / sr
        if st.frames:  # the model scores every encoder frame: a timeline at that resolution
            hop = int(getattr(self.model, "frame_hop", 320))
            ks = [k for k in range(len(st.windows)) if k in st.frames]
            scores = [(st.windows[k][0], st.frames[k][0]) for k in ks]
            probs = [self._p(st.frames[k][0], st.frames[k][1], thr) for k in ks]
            steps = frame_timeline(scores, probs, st.n_samples, hop, sr, mask, frame_s)
        else:  # the localisation grid's windows where there is one, else the verdict's
            on = st.where or st
            wins = []
            for k, (s, e, _) in enumerate(on.windows):
                sc = on.scores.get(k)
                p = None if sc is None else float(self._p(sc, on.diffs[k], thr))
                wins.append((s / sr, e / sr, sc, p))
            steps = build_timeline(wins, res.duration_s, self.step_s, mask, frame_s)
            if st.where:  # the localisation steps, read against the verdict's typical window
                ks = sorted(st.scores)
                sc = np.array([st.scores[k] for k in ks])
                p = np.clip(self._p(sc, np.array([st.diffs[k] for k in ks]), thr), 1e-9, 1 - 1e-9)
                typ = float(np.median(np.log(p / (1 - p))))  # the median window's log-odds
                steps = anchor(steps, float(np.median(sc)), float(1 / (1 + np.exp(-typ))))
        res.segments = build_segments(steps, mask, p_thr, self.band, frame_s=frame_s, runs=runs)
        res.timeline = [{k: t[k] for k in ("start_s", "end_s", "score")} for t in steps]
        spoofed = sum(
            (g["end_s"] - g["start_s"] for g in res.segments if g["label"] == "spoof"), 0.0
        )
        res.spoofed_s = round(spoofed, 3)

    def _p(self, score, diff, thr):
        """p_bonafide of window (or frame) scores, as the file's is computed: the
        calibration's; else the softmax, or, under an explicit threshold, the score's distance
        to it read as log-odds (so that p >= 0.5 exactly when the label would be bona fide).
        Scalars or arrays."""
        if self.calibration is not None:
            return self.calibration.p_bonafide(score)
        return sigmoid(np.asarray(score) - thr if thr is not None else diff)

    def confidence_note(self) -> str | None:
        """Why this detector's verdicts claim no confidence (``confident`` null), or None:
        no calibration (the probability is the network's softmax), or a calibration fitted
        on another kind of data than the recordings it judges."""
        if self.calibration is None:
            return (
                "not calibrated: p_bonafide is the network's softmax, which says nothing about "
                "recordings unlike its training data; fit a calibration on your own labelled "
                "files (spoofscope calibrate or adapt)"
            )
        return self.calibration.untrusted_because()


class DetectorStream:
    """Audio that arrives in pieces, judged by the detector's own window scheduler
    (:class:`~spoofscope.infer.windows.WindowCutter`), activity meter, engine and finishing
    rule. ``sample_rate``: the rate of what is fed (resampled on the way in; default the
    model's)."""

    def __init__(self, det: Detector, sample_rate: int | None, name: str):
        if det.windows.kind != "sliding":
            raise ConfigError(
                "a stream is judged in sliding windows (WindowPolicy(kind='sliding'))"
            )
        self.det = det
        self.rate = int(sample_rate or det.sample_rate)
        self._resampler = None
        if self.rate != det.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.rate, det.sample_rate, 1, dtype="float32")
        self.state = _FileState(0, name)
        self.state.meter = make_meter(
            det.decision.vad, det.sample_rate, det.windows.silence_db, None
        )
        if det.where:
            self.state.where = _FileState(0, name, parent=self.state)
        self.cutters = det.cutters()
        self.closed = False
        self.last_events: list[dict] = []
        self._ending: list[dict] = []  # the last windows' events (end), until close gives them
        self._due_end: _Due | None = None  # the last windows, cut and recorded by end
        self._sent: list[dict] = []  # segments already given as events
        self._peak = 0.0  # the loudest sample seen, when over full scale

    def _clip(self, x: np.ndarray) -> np.ndarray:
        """Samples over full scale clipped to [-1, 1] after resampling, as files are
        (:func:`~spoofscope.audio.stream_audio`), with the same warning at the end."""
        if x.size:
            peak = float(np.max(np.abs(x)))
            if peak > 1.0:
                self._peak = max(self._peak, peak)
                return np.clip(x, -1.0, 1.0)
        return x

    def feed(self, samples) -> list[dict]:
        """Mono samples (float in [-1, 1]) at the stream's rate -> one event per window
        completed: ``{type: "window", start_s, end_s, score (None when silent), label,
        score_so_far, p_bonafide, confident}`` (the running verdict over the windows so far),
        then ``{type: "segment", start_s, end_s, label, score, p_bonafide}`` for each segment
        that later audio can no longer change (see :meth:`_settled`); ``close`` gives the
        rest, so that every segment of the result is given once, in order."""
        (out,) = feed_streams([(self, samples)])
        if isinstance(out, Exception):
            raise out
        return out

    def _take(self, samples) -> _Due:
        """Stage 1 of :meth:`feed`: the piece checked, resampled and cut; its windows recorded
        in the stream's state; those to score (not silent) returned, unscored."""
        if self.closed or self._due_end is not None:
            raise ConfigError("this stream is closed")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise AudioError(
                "<stream>", "invalid samples: NaN or infinite values", kind="invalid_samples"
            )
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        x = self._clip(x)
        return self._record(list(self._cut(self.state.meter.wrap([x]))))

    def _events(self, due: _Due) -> list[dict]:
        """Stage 3 of :meth:`feed`, once ``due``'s windows are scored: an event per verdict
        window, then the segments settled."""
        events = self._window_events(due)
        return events + self._settled() if events else events

    def _cut(self, chunks, last: bool = False):
        """``(grid, window)`` of the pieces, in the order files get them (grid_windows)."""
        for c in chunks:
            for g, cut in enumerate(self.cutters):
                yield from ((g, w) for w in cut.push(c))
        if last:
            for g, cut in enumerate(self.cutters):
                yield from ((g, w) for w in cut.finish())

    def end(self) -> None:
        """Judge the stream's last windows (the audio held back for a whole window, the
        resampler's tail) and take no more audio; :meth:`close` gives their events with the
        result. Called by :meth:`close` when not called before: apart, it lets a service time
        the judging of the last windows without the building of the result."""
        if self.closed:
            return
        if self._due_end is None:  # cut once: a retry after an engine failure rescores them
            tail = np.zeros(0, np.float32)
            if self._resampler is not None:
                last = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                tail = self._clip(last)
            cut = self._cut(self.state.meter.wrap([tail]), last=True)
            self._due_end = self._record(list(cut))
        for e in _score_due([self._due_end]).values():
            raise e
        self._ending = self._window_events(self._due_end)
        self.closed = True
        if self._peak > 1.0:
            _report_clipping(str(self.state.source), self._peak)

    def close(self) -> DetectionResult:
        """The result of the whole stream, as ``detect`` gives it on the recording."""
        self.end()
        events, self._ending = self._ending, []
        st = self.state
        st.n_samples, st.done = self.cutters[0].total, True
        if st.n_samples == 0:
            st.error, st.error_kind = f"{st.source}: zero samples", "empty"
        res = self.det._finish(st)
        if res.segments:  # the segments sent stay; the rest of the stream's follow them
            rest = self._after_sent(res.segments)
            res.segments = self._sent + rest
            spoof = sum(
                (g["end_s"] - g["start_s"] for g in res.segments if g["label"] == "spoof"), 0.0
            )
            res.spoofed_s = round(spoof, 3)
            self._sent = list(res.segments)
        else:
            rest = []
        self.last_events = events + [{"type": "segment", **g} for g in rest]
        return res

    def _after_sent(self, segs: list[dict]) -> list[dict]:
        """``segs`` from the end of the last segment sent on (the first one cut there). With
        localisation windows the anchor moves as audio arrives, so a segment computed now may
        start before that end; without them it starts exactly there."""
        cut = self._sent[-1]["end_s"] if self._sent else 0.0
        out = [dict(g) for g in segs if g["end_s"] > cut]
        if out and out[0]["start_s"] < cut:
            out[0]["start_s"] = cut
        return out

    def _settled(self) -> list[dict]:
        """Segment events for the segments of the audio judged so far that later audio cannot
        change (:func:`~spoofscope.infer.timeline.settled`: timeline steps before the next
        window's start are final)."""
        det, st, sr = self.det, self.state, self.det.sample_rate
        if not st.scores:
            return []
        end = st.windows[-1][1]
        on, hop = (st.where, det.where[1]) if det.where else (st, det.hop)
        part = copy.copy(st)
        part.n_samples = end
        res = DetectionResult(path="", model="")
        res.duration_s = end / sr
        det._where(res, part, det._verdict(st), runs=True)
        segs = self._after_sent(res.segments)
        n = settled(segs, (on.windows[-1][0] + hop) / sr, det.step_s)
        done = [{k: v for k, v in g.items() if k != "run_s"} for g in segs[:n]]
        self._sent += done
        return [{"type": "segment", **g} for g in done]

    def _record(self, windows) -> _Due:
        """``(grid, window)`` pairs recorded in the stream's state; those to score."""
        det, st = self.det, self.state
        todo = []
        for g, w in windows:
            on = st.where if g else st
            silent = det._silent(w)
            on.windows.append((w.start, w.end, silent))
            if not silent:
                todo.append((on, len(on.windows) - 1, w.samples))
        return _Due(self, sum(1 for g, _ in windows if not g), todo)

    def _window_events(self, due: _Due) -> list[dict]:
        """An event for each of the verdict's windows ``due`` recorded (scored by now)."""
        st, sr = self.state, self.det.sample_rate
        events = []
        for k in range(len(st.windows) - due.n_verdict, len(st.windows)):
            s, e, _ = st.windows[k]
            ev = {"type": "window", "start_s": s / sr, "end_s": e / sr, "score": st.scores.get(k)}
            ev.update(self._running())
            events.append(ev)
        return events

    def _running(self) -> dict:
        """The verdict over the windows judged so far (the file's rule, without abstention)."""
        if not self.state.scores:
            return {"label": None, "score_so_far": None, "p_bonafide": None, "confident": None}
        v = self.det._verdict(self.state)
        return {"label": v.label, "score_so_far": v.score, "p_bonafide": v.p,
                "confident": v.confident}  # fmt: skip


class _Due(NamedTuple):
    """A stream's windows cut from one piece: ``n_verdict`` of them on the verdict's grid, and
    ``todo`` those to score, ``(state, window index, samples)`` as :meth:`Detector._score`
    takes them."""

    stream: DetectorStream
    n_verdict: int
    todo: list[tuple[_FileState, int, np.ndarray]]


def feed_streams(feeds: list[tuple[DetectorStream, np.ndarray]]) -> list[list[dict] | Exception]:
    """Feed several streams at once, their due windows scored in shared engine calls.

    Each stream's piece is cut as :meth:`DetectorStream.feed` cuts it (stage 1); the windows
    of all streams are then scored together, one engine call per engine and window length (in
    calls of at most ``limits.batch_size`` windows): k streams with a window due make one
    call, not k (stage 2); each stream's events follow, as its ``feed`` alone gives them up to
    floating-point batch effects (stage 3). What goes wrong stays with its stream: the result
    of a stream whose piece is refused (NaN samples, a closed stream), or whose windows make
    the engine fail, is that exception, and the others' results are unchanged (an engine call
    that fails is retried stream by stream, so that one stream's windows cannot fail another's).

    Args:
        feeds: ``(stream, samples)`` pairs, the samples mono at each stream's rate; a stream
            appears at most once.

    Returns:
        For each pair in order, its events (a list) or the exception that ended its feed.
    """
    out: list[list[dict] | Exception | None] = [None] * len(feeds)
    dues: dict[int, _Due] = {}
    for i, (s, x) in enumerate(feeds):
        try:
            dues[i] = s._take(x)
        except Exception as e:  # noqa: BLE001 - one stream's bad piece is its own result
            out[i] = e
    ids = list(dues)
    for j, e in _score_due([dues[i] for i in ids]).items():
        out[ids[j]] = e
    for i, due in dues.items():
        if out[i] is None:
            try:
                out[i] = due.stream._events(due)
            except Exception as e:  # noqa: BLE001 - as above
                out[i] = e
    return out  # type: ignore[return-value]


def _score_due(dues: list[_Due]) -> dict[int, Exception]:
    """Score the windows of ``dues`` (streams, each at most once) in shared engine calls: one
    group per engine and window length, in calls of at most ``limits.batch_size`` windows.
    An engine call that fails is retried stream by stream; each stream's failure is returned
    under its index in ``dues`` (its later windows are not scored)."""
    groups: dict[tuple[int, int], tuple[Detector, list]] = {}
    for i, due in enumerate(dues):
        det = due.stream.det
        for w in due.todo:
            n = w[2].size
            key = (id(det._engine_at(n)), n)  # the engine _score will call
            groups.setdefault(key, (det, []))[1].append((i, w))
    failed: dict[int, Exception] = {}
    for det, items in groups.values():
        size = det.limits.batch_size
        for c in range(0, len(items), size):
            chunk = [(i, w) for i, w in items[c : c + size] if i not in failed]
            if not chunk:
                continue
            try:
                det._score([w for _, w in chunk])
            except Exception as e:  # noqa: BLE001 - the failure is one stream's: retried alone
                _score_alone(det, chunk, e, failed)
    return failed


def _score_alone(det: Detector, chunk: list, error: Exception, failed: dict) -> None:
    """A shared call on ``chunk`` ``(stream id, window)`` failed with ``error``: each stream's
    windows scored on their own, each failure recorded in ``failed`` under its stream's id."""
    streams = list(dict.fromkeys(i for i, _ in chunk))
    if len(streams) == 1:
        failed[streams[0]] = error
        return
    for i in streams:
        try:
            det._score([w for j, w in chunk if j == i])
        except Exception as e:  # noqa: BLE001 - that stream's result
            failed[i] = e


def _check_window(samples: int, card) -> None:
    if samples < card.min_length:
        raise ConfigError(
            f"a {samples}-sample window is shorter than the {card.min_length} samples "
            f"{card.name} needs (--window-samples / WindowPolicy.samples)"
        )


class _Stopped(Exception):
    """The deadline passed (``kind`` timeout) or the owner cancelled (``shutting_down``): the
    file is not finished."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


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
            raise ConfigError(
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
            quiet = next((r for r in rs if r.label == "no_speech"), None)
            if quiet is not None:  # one system abstains: the ensemble abstains
                res.label, res.confident, res.reason = "no_speech", False, quiet.reason
                res.duration_s, res.speech_s, res.threshold = quiet.duration_s, quiet.speech_s, None
                out.append(res)
                continue
            fused = float(self.fusion.apply(np.array([r.score for r in rs])))
            p = float(sigmoid(fused + np.log(self.fusion.prior / (1 - self.fusion.prior))))
            res.score, res.p_bonafide = fused, p
            res.label = "bonafide" if fused >= 0 else "spoof"
            res.confident = bool(abs(p - 0.5) >= self.band)
            res.duration_s, res.speech_s = rs[0].duration_s, rs[0].speech_s
            res.windows = rs[0].windows
            out.append(res)
        return out

    def __call__(self, source, sample_rate=None) -> DetectionResult:
        return self.detect_many([source], sample_rate)[0]
