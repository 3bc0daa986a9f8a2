"""ONNX export of registered models and the onnxruntime agreement check.

What to export is read from the model card: ``export`` says whether the graph takes any length
(``dynamic``), only the card's window (``fixed``: AASIST's graph pooling keeps ``int(N * k)``
nodes, so the graph follows the length) or cannot be exported (``none``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..models._card import card_of

log = logging.getLogger(__name__)


def ort_session(path, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
        raise ConfigError("the ONNX engine needs onnxruntime: pip install onnxruntime") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export_onnx(model: torch.nn.Module, path, length: int | None = None, opset: int = 17) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis (and a dynamic length where its card
    says ``export: dynamic``). Input ``waveform`` (B, L); outputs ``logits`` (B, 2),
    ``embedding`` (B, D). ``length`` defaults to the card's window."""
    card = card_of(model)
    if card.export == "none":
        raise ConfigError(f"{card.name} cannot be exported to ONNX (its card says export: none)")
    model = model.eval()
    length = int(length or card.window_samples)
    axes = {"waveform": {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}}
    if card.export == "dynamic":
        axes["waveform"][1] = "length"
    x = torch.randn(2, length) * 0.1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["waveform"],
            output_names=["logits", "embedding"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    return path


def check_onnx(model: torch.nn.Module, path, inputs: np.ndarray, atol: float = 1e-3) -> float:
    """Max |onnxruntime - PyTorch| over the logits of ``inputs`` (N, L); raises if > atol."""
    sess = ort_session(path, threads=1)
    x = np.ascontiguousarray(inputs, np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x))[0].numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    diff = float(np.abs(got - ref).max())
    if diff > atol:
        raise AssertionError(f"{path}: onnxruntime differs from PyTorch by {diff} > {atol}")
    return diff


def _fingerprint(model, length: int) -> str:
    """Architecture, traced length, weights and the versions of spoofscope and torch: a change
    in any of them gives a new file."""
    from .. import __version__

    card = card_of(model)
    h = hashlib.sha256()
    h.update(f"{card.name}|{length}|{card.export}".encode())
    h.update(f"{__version__}|{torch.__version__}".encode())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    h.update(buf.getvalue())
    return h.hexdigest()[:16]


def cached_onnx(model, cache=None, length: int | None = None) -> Path:
    """Export once per (architecture, traced length, weights, versions) into the cache; reuse
    after. ``length`` defaults to the card's window."""
    from ..models._pretrained import cache_dir

    card = card_of(model)
    length = int(length or card.window_samples)
    path = cache_dir(cache) / "onnx" / f"{card.name}-{_fingerprint(model, length)}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (once) at %s", card.name, path)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        try:
            export_onnx(model, tmp, length=length)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
