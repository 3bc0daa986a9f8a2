"""Checkpoints that describe themselves: a model is rebuilt from the file alone.

A checkpoint is a dict ``{format, arch, model_args, card, state_dict, versions, config,
calibration, extra}`` of plain types and tensors, so it loads with ``weights_only=True``.
``card`` is the model card as trained (its ``window_samples`` is the training crop).
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from ..errors import WeightsError
from ._card import card_of

FORMAT = "spoofscope-checkpoint-1"


def save_checkpoint(
    model,
    path,
    config: dict | None = None,
    calibration: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` (built by :func:`create_model` or :func:`load_model`) with everything
    needed to rebuild it."""
    from .. import __version__

    arch = getattr(model, "registry_name", None)
    if arch is None:
        raise ValueError("save_checkpoint needs a model built by create_model(name, ...)")
    ckpt = {
        "format": FORMAT,
        "arch": arch,
        "model_args": dict(getattr(model, "model_args", {})),
        "card": card_of(model).to_dict(),
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


def torch_load(path):
    """``torch.load(path, weights_only=True)`` with errors that name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    with open(path, "rb") as f:
        head = f.read(512)
    # a PyTorch file is a zip archive (torch.save) or a pickle (legacy, protocol >= 2)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        try:
            head.decode("utf-8")
            kind = "a text file"
        except UnicodeDecodeError:
            kind = "some other binary file"
        raise WeightsError(
            f"{path}: not a PyTorch checkpoint or state_dict ({kind}); give a registered model "
            "NAME[:TAG], a checkpoint written by spoofscope train, or a state_dict file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or unsafe files
        msg = str(e)
        if "Unsupported global" in msg:
            what = msg.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
            raise WeightsError(
                f"{path}: refused, it holds Python objects ({what}), not only tensors and "
                "plain types (checkpoints are loaded with weights_only=True: a file could run "
                "code). Save a state_dict instead"
            ) from None
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        if "WeightsUnpickler error" in msg:
            first = (
                "not a PyTorch pickle: "
                + msg.split("WeightsUnpickler error:", 1)[1]
                .split("Check the documentation", 1)[0]
                .strip()
            )
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint or state_dict ({first[:160]}); is the "
            "file complete?"
        ) from None


def is_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith("spoofscope-checkpoint")


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict (weights_only=True)."""
    ckpt = torch_load(path)
    if not is_checkpoint(ckpt):
        raise WeightsError(
            f"{path} is not a spoofscope checkpoint (a bare state_dict? load it with "
            "load_model(ARCH, weights=PATH) or --model ARCH --weights PATH)"
        )
    return ckpt
