"""Training recipes: YAML -> dataclasses, with ``key=value`` overrides from the command line."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml


@dataclass
class TrainConfig:
    """One training recipe. Field names map one-to-one onto the YAML keys.

    ``loss.class_weights``: ``"inverse"`` (inverse class frequency of the training list),
    a list ``[w_spoof, w_bonafide]`` (the official [0.1, 0.9]) or ``null`` (unweighted);
    ``loss.sampler``: ``"random"`` or ``"balanced"`` (a class-balanced sampler).
    """

    model: str = "aasist"
    model_args: dict = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 24
    eval_batch_size: int = 32
    optimizer: dict = field(
        default_factory=lambda: {
            "name": "adam",
            "lr": 1e-4,
            "weight_decay": 1e-4,
            "betas": [0.9, 0.999],
            "amsgrad": False,
        }
    )
    scheduler: dict = field(default_factory=lambda: {"name": "cosine", "min_lr": 5e-6})
    loss: dict = field(default_factory=lambda: {"class_weights": [0.1, 0.9], "sampler": "random"})
    crop_samples: int = 64600
    eval_samples: int = 64600
    augment: list = field(default_factory=list)
    early_stopping: dict = field(default_factory=lambda: {"patience": 0, "metric": "eer"})
    swa: dict = field(default_factory=lambda: {"enabled": True, "top_n": 5})
    seed: int = 1234
    deterministic: bool = False
    amp: str = "none"  # none | bf16 | fp16 (GPU only)
    channels_last: bool = False
    grad_clip: float | None = None
    grad_accum_steps: int = 1  # optimizer step every k batches (effective batch k * batch_size)
    num_workers: int = 2
    cache_audio: bool = False
    max_train_utts: int | None = None  # a random subset, for quick runs
    max_dev_utts: int | None = None
    log_tensorboard: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown config keys: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        base = cls()
        merged = {}
        for k, v in d.items():
            default = getattr(base, k)
            merged[k] = {**default, **v} if isinstance(default, dict) and isinstance(v, dict) else v
        return cls(**{**asdict(base), **merged})

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))


def parse_override(text: str) -> tuple[list[str], object]:
    """``a.b=value`` -> (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not key=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def load_config(path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe and apply ``key=value`` overrides (dotted keys reach into dicts)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} not found")
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    for o in overrides or []:
        keys, value = parse_override(o)
        node = d
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {o!r}: {k} is not a mapping")
        node[keys[-1]] = value
    return TrainConfig.from_dict(d)
