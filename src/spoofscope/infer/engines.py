"""Inference engines behind the Detector: ONNX Runtime (the default where the model exports)
and eager PyTorch.

An engine maps a float32 window batch (B, W) to logits (B, 2) and carries the model's
:class:`~spoofscope.models.ModelCard` (``engine.card``), so the detector knows the sample
rate, the window and the bona fide index whatever runs the arithmetic.

``make_engine(model, "auto")`` picks the fastest engine that gives the model's own scores:
ONNX Runtime (the graph is exported once into the cache, keyed by the weights, the window and
the versions of spoofscope and torch), else PyTorch with one log line saying why. Reduced
precision (``precision="int8"``) is offered only where the model's card lists it, i.e. where
it was measured to keep scores close to fp32 (:data:`INT8_BOUND`), in the engine its card's
``int8_engine`` names: ONNX Runtime dynamic int8 of the encoder's transformer layers (built
once into the cache beside the fp32 graph) or PyTorch's dynamic int8 of the encoder's
feed-forward layers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..export.onnx import cached_onnx, ort_session
from ..models._card import card_of
from ._malloc import keep_freed_memory
from .policy import ENGINES, PRECISIONS

log = logging.getLogger(__name__)

#: what a card's ``int8`` promises (the project's bar for reduced precision), measured by
#: ``benchmarks/precision.py --model`` over the windows of a labelled set: every logit within
#: 1e-2 of fp32 and no decision changed at the model's threshold (equal logits)
INT8_BOUND = {"max_abs_logit_diff": 1e-2, "flips_at_threshold": 0}


def _in_calls(model, batch: np.ndarray, run) -> tuple[np.ndarray, ...]:
    """``run`` on the batch in calls of at most the model's ``engine_batch`` windows (all at
    once where it sets none), the outputs joined: a model whose activations are large per
    window says how many windows one call may hold."""
    k = getattr(model, "engine_batch", None)
    if not k or len(batch) <= k:
        return tuple(run(batch))
    parts = [run(batch[i : i + k]) for i in range(0, len(batch), k)]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


class TorchEngine:
    """Runs a model in eval mode under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model.eval()
        self.card = card_of(model)
        self.precision = getattr(model, "precision", "fp32")
        if threads:
            torch.set_num_threads(threads)
        keep_freed_memory()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.embed(batch)[0]

    def embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (B, 2), embedding (B, D)) of a window batch (B, W)."""

        def run(x):
            with torch.inference_mode():
                logits, emb = self.model(torch.from_numpy(x))
            return logits.float().numpy(), emb.float().numpy()

        return _in_calls(self.model, np.ascontiguousarray(batch, np.float32), run)

    @property
    def gives_frames(self) -> bool:
        """Whether the model scores each encoder frame (its card says ``localisation:
        frame`` and it has ``frame_logits``)."""
        return self.card.localisation == "frame" and hasattr(self.model, "frame_logits")

    def frame_logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, T, 2) logits of each encoder frame of a window batch (B, W)."""
        with torch.inference_mode():
            return (
                self.model.frame_logits(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
                .float()
                .numpy()
            )


class OnnxEngine:
    """Runs an exported ONNX graph with onnxruntime on the CPU (exported once into the cache
    when built from a model; at ``length`` samples when the card's export is ``fixed``)."""

    name = "onnx"

    def __init__(
        self,
        model: torch.nn.Module,
        onnx_path=None,
        threads=None,
        cache=None,
        length=None,
        precision: str = "fp32",
    ):
        self.model = model.eval()
        self.card = card_of(model)
        self.threads, self.cache, self.precision = threads, cache, precision
        if onnx_path is None:
            onnx_path = cached_onnx(model, cache, length=length, precision=precision)
        self.path = Path(onnx_path)
        self.session = ort_session(self.path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        n = inp.shape[1]
        self.fixed_length = n if isinstance(n, int) else None
        self._at: dict[int, OnnxEngine] = {}  # the engines at other lengths (at_length)
        keep_freed_memory()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, ["logits"])[0]

    def at_length(self, n: int) -> OnnxEngine:
        """This engine for windows of ``n`` samples (another export where the graph's length
        is fixed and differs, made once: every detector on this engine, such as each live
        stream's, shares its session, and so can share its engine calls)."""
        if self.fixed_length in (None, n):
            return self
        if n not in self._at:
            self._at[n] = OnnxEngine(
                self.model,
                threads=self.threads,
                cache=self.cache,
                length=n,
                precision=self.precision,
            )
        return self._at[n]

    def embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (B, 2), embedding (B, D)) of a window batch (B, W)."""
        logits, emb = self._run(batch, None)
        return logits, emb

    def _run(self, batch, outputs):
        batch = np.ascontiguousarray(batch, np.float32)
        if self.fixed_length is not None and batch.shape[1] != self.fixed_length:
            raise InputError(
                f"{self.path} was exported for {self.fixed_length}-sample windows, "
                f"got {batch.shape[1]}"
            )
        return _in_calls(
            self.model, batch, lambda x: self.session.run(outputs, {self.input_name: x})
        )


def _int8(model: torch.nn.Module) -> torch.nn.Module:
    """The model's int8 path (the encoder's feed-forward layers in dynamic int8)."""
    from ..models.ssl import quantize_feed_forward

    q = quantize_feed_forward(model)
    q.card, q.precision = card_of(model), "int8"
    return q


def make_engine(
    model,
    engine: str = "auto",
    threads: int | None = None,
    cache=None,
    *,
    precision: str = "fp32",
    length: int | None = None,
):
    """The engine ``engine`` (one of :data:`ENGINES`) running ``model`` at ``precision``.

    ``auto``: PyTorch for a model that scores its frames (``localisation: frame``: the
    timeline gets their resolution); else ONNX Runtime where the card allows export,
    onnxruntime imports and the export succeeds; else PyTorch, with one log line.
    ``length``: the window the detector will feed (graphs of ``fixed``-export models are
    exported at that length; default the card's).
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    card = card_of(model)
    if precision != "fp32":
        if precision not in card.precisions:
            raise ConfigError(
                f"{card.name} has no {precision} path that keeps its scores close to fp32 "
                f"(its card lists {', '.join(card.precisions)}); use --precision fp32"
            )
        auto = engine == "auto"
        if auto:
            engine = card.int8_engine if card.export != "none" else "torch"
        if engine == "torch":
            return TorchEngine(_int8(model), threads)
        if card.export == "none":
            raise ConfigError(
                f"{card.name} cannot be exported to ONNX (its card says export: none): "
                f"its {precision} path runs in PyTorch, use --engine torch (or auto)"
            )
        if card.int8_engine != "onnx":
            log.warning(
                "%s: its card's int8 bound was measured in PyTorch (--engine torch), not for "
                "ONNX Runtime's int8 graph (benchmarks/precision.py --model to measure it)",
                card.name,
            )
        try:
            return OnnxEngine(
                model, threads=threads, cache=cache, length=length, precision=precision
            )
        except Exception as e:  # noqa: BLE001 - under auto, a failure falls back, said once
            if not auto:
                raise
            log.warning("%s int8 runs in PyTorch: the ONNX engine failed (%s)", card.name, e)
            return TorchEngine(_int8(model), threads)
    if engine == "torch":
        return TorchEngine(model, threads)
    if engine == "onnx":
        return OnnxEngine(model, threads=threads, cache=cache, length=length)
    # auto
    if card.localisation == "frame" and hasattr(model, "frame_logits"):
        log.info(
            "%s runs in PyTorch: it scores every encoder frame in the same pass, which gives "
            "the timeline its frame resolution (--engine onnx: faster, window-level timeline)",
            card.name,
        )
        return TorchEngine(model, threads)
    if card.export == "none":
        log.info("%s runs in PyTorch (its card says it cannot be exported to ONNX)", card.name)
        return TorchEngine(model, threads)
    if any(p.device.type != "cpu" for p in model.parameters()):
        return TorchEngine(model, threads)  # a GPU model stays in PyTorch
    try:
        return OnnxEngine(model, threads=threads, cache=cache, length=length)
    except Exception as e:  # noqa: BLE001 - any export/runtime failure falls back, said once
        log.warning("%s runs in PyTorch: the ONNX engine failed (%s)", card.name, e)
        return TorchEngine(model, threads)
