"""Inference engines behind the Detector: eager PyTorch and ONNX Runtime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


class TorchBackend:
    """Runs a registered model in eval mode under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model.eval()
        if threads:
            torch.set_num_threads(threads)
        self.fixed_length: int | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits, _ = self.model(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return logits.float().numpy()


class OnnxBackend:
    """Runs an exported ONNX graph with onnxruntime on the CPU."""

    name = "onnx"

    def __init__(self, onnx_path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(
                "backend='onnx' needs onnxruntime: pip install 'spoofscope[onnx]'"
            ) from e
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        length = inp.shape[1]
        self.fixed_length = length if isinstance(length, int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        if self.fixed_length is not None and batch.shape[1] != self.fixed_length:
            raise ValueError(
                f"{self.path} was exported for {self.fixed_length}-sample windows, "
                f"got {batch.shape[1]}"
            )
        return self.session.run(None, {self.input_name: batch})[0]
