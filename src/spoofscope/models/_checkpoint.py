"""Checkpoints that describe themselves: a model is rebuilt from the file alone.

A checkpoint is a dict ``{format, arch, model_args, state_dict, versions, config,
calibration, extra}`` of plain types and tensors, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from ._registry import create_model

FORMAT = "spoofscope-checkpoint-1"


def save_checkpoint(
    model,
    path,
    config: dict | None = None,
    calibration: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` (built by :func:`create_model`) with everything needed to rebuild it."""
    from .. import __version__

    arch = getattr(model, "registry_name", None)
    if arch is None:
        raise ValueError("save_checkpoint needs a model built by create_model(name, ...)")
    ckpt = {
        "format": FORMAT,
        "arch": arch,
        "model_args": dict(getattr(model, "model_args", {})),
        "state_dict": model.state_dict(),
        "versions": {
            "spoofscope": __version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "config": config or {},
        "calibration": calibration,
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a spoofscope checkpoint (a bare state_dict? load it with "
            "create_model(name, weights=PATH) or model.load_state_dict)"
        )
    return ckpt


def load_checkpoint(path):
    """Rebuild the model of a checkpoint, in eval mode. Returns ``(model, checkpoint dict)``."""
    ckpt = read_checkpoint(path)
    model = create_model(ckpt["arch"], **ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model, ckpt
