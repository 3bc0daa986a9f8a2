"""ONNX export of registered models and the onnxruntime agreement check."""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..audio import OFFICIAL_NUM_SAMPLES

log = logging.getLogger(__name__)

#: Models whose graph depends on the input length (graph pooling keeps int(N * k) nodes, and
#: the node count follows the length): exported for a fixed window length.
FIXED_LENGTH_FAMILIES = ("aasist",)
FIXED_LENGTH_MODELS = ("ssl-aasist",)


def export_onnx(
    model: torch.nn.Module, path, length: int = OFFICIAL_NUM_SAMPLES, opset: int = 17
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis (and a dynamic length where the
    architecture allows). Outputs: ``logits`` (B, 2), ``embedding`` (B, D)."""
    from ..models._registry import get_entry

    model = model.eval()
    name = getattr(model, "registry_name", "")
    family = get_entry(name).family if name else ""
    dynamic_length = family not in FIXED_LENGTH_FAMILIES and name not in FIXED_LENGTH_MODELS
    if family == "xvector" and getattr(model.config, "frontend", "") == "cqcc":
        raise ValueError("cqcc-xvector computes CQCC in numpy and cannot be exported to ONNX")
    axes = {"waveform": {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}}
    if dynamic_length:
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
    from ..infer.backends import OnnxBackend

    be = OnnxBackend(path, threads=1)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(np.asarray(inputs, np.float32)))[0].numpy()
    diff = float(np.abs(be(inputs) - ref).max())
    if diff > atol:
        raise AssertionError(f"{path}: onnxruntime differs from PyTorch by {diff} > {atol}")
    return diff


def _fingerprint(model) -> str:
    h = hashlib.sha256()
    h.update(getattr(model, "registry_name", type(model).__name__).encode())
    h.update(torch.__version__.encode())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    h.update(buf.getvalue())
    return h.hexdigest()[:16]


def cached_onnx(model, cache=None) -> Path:
    """Export once per (architecture, weights, torch version) into the cache; reuse after."""
    from ..models._pretrained import cache_dir

    name = getattr(model, "registry_name", "model")
    path = cache_dir(cache) / "onnx" / f"{name}-{_fingerprint(model)}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (once) at %s", name, path)
        tmp = path.with_name(path.name + ".tmp")
        export_onnx(model, tmp)
        tmp.replace(path)
    return path
