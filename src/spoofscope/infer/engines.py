"""Inference engines behind the Detector: eager PyTorch and ONNX Runtime.

An engine maps a float32 window batch (B, W) to logits (B, 2) and carries the model's
:class:`~spoofscope.models.ModelCard` (``engine.card``), so the detector knows the sample
rate, the window and the bona fide index whatever runs the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..export.onnx import cached_onnx, ort_session
from ..models._card import card_of

ENGINES = ("torch", "onnx")


class TorchEngine:
    """Runs a model in eval mode under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model.eval()
        self.card = card_of(model)
        if threads:
            torch.set_num_threads(threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits, _ = self.model(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return logits.float().numpy()


class OnnxEngine:
    """Runs an exported ONNX graph with onnxruntime on the CPU (exported once into the cache
    when built from a model)."""

    name = "onnx"

    def __init__(self, model: torch.nn.Module, onnx_path=None, threads=None, cache=None):
        self.model = model.eval()
        self.card = card_of(model)
        self.path = Path(onnx_path) if onnx_path is not None else cached_onnx(model, cache)
        self.session = ort_session(self.path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        length = inp.shape[1]
        self.fixed_length = length if isinstance(length, int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        if self.fixed_length is not None and batch.shape[1] != self.fixed_length:
            raise InputError(
                f"{self.path} was exported for {self.fixed_length}-sample windows, "
                f"got {batch.shape[1]}"
            )
        return self.session.run(None, {self.input_name: batch})[0]


def make_engine(model, engine: str = "torch", threads: int | None = None, cache=None):
    """The engine ``engine`` (one of :data:`ENGINES`) running ``model``."""
    if engine == "torch":
        return TorchEngine(model, threads)
    if engine == "onnx":
        return OnnxEngine(model, threads=threads, cache=cache)
    raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
