"""Training recipes: YAML -> typed dataclasses, with ``key=value`` overrides from the command
line. Every section is typed: an unknown key, a value of the wrong type or a name that is not
one of the choices is a :class:`~spoofscope.errors.ConfigError` naming the key and the valid
choices (``loss.sampler: balansed`` does not fall back to a default)."""

from __future__ import annotations

import copy
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Literal

import yaml

from ..errors import ConfigError


@dataclass
class OptimizerConfig:
    """``frontend_lr``: learning rate of a pre-trained front-end (SSL encoders); default lr."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    amsgrad: bool = False
    momentum: float = 0.9
    frontend_lr: float | None = None


@dataclass
class SchedulerConfig:
    """``cosine``: per-step cosine from lr down to ``min_lr``; ``none``: constant lr."""

    name: Literal["cosine", "none"] = "cosine"
    min_lr: float = 5e-6


@dataclass
class LossConfig:
    """``class_weights``: ``"inverse"`` (inverse class frequency of the training list), a list
    ``[w_spoof, w_bonafide]`` (the official [0.1, 0.9]) or null (unweighted);
    ``sampler``: ``random`` or ``balanced`` (a class-balanced sampler)."""

    class_weights: str | list | None = field(default_factory=lambda: [0.1, 0.9])
    sampler: Literal["random", "balanced"] = "random"


@dataclass
class EarlyStoppingConfig:
    """Stop after ``patience`` epochs without a better dev ``metric`` (0: never)."""

    patience: int = 0
    metric: Literal["eer", "min_tdcf"] = "eer"


@dataclass
class SWAConfig:
    """Average the ``top_n`` best dev checkpoints (BatchNorm statistics recomputed)."""

    enabled: bool = True
    top_n: int = 5


@dataclass
class TrainConfig:
    """One training recipe. Field names map one-to-one onto the YAML keys.

    ``crop_samples``: training crop (None: the model card's window); it becomes the window of
    the trained model's card, which ``detect`` then uses. ``eval_samples``: the fixed crop of
    dev/eval scoring (None: the crop).

    Fine-tuning: ``init`` starts from published weights (``aasist``, ``aasist-l:official``,
    any ``name[:tag]``) or a checkpoint, instead of a fresh ``model``; ``freeze`` keeps
    parameters fixed: ``frontend`` (the family's front-end: sinc/encoder stage, SSL encoder),
    ``all_but_head`` (everything but the final bona fide/spoof layer) or parameter-name
    prefixes (``encoder.0``); frozen BatchNorm layers keep their statistics.
    ``freeze_epochs``: unfreeze after that many epochs (0: frozen for the whole run);
    ``optimizer.frontend_lr`` gives the front-end its own learning rate.
    ``windows_per_file``: random crops of each file per epoch (several windows of long files).
    """

    model: str = "aasist"
    model_args: dict = field(default_factory=dict)
    init: str | None = None
    freeze: list = field(default_factory=list)
    freeze_epochs: int = 0
    windows_per_file: int = 1
    epochs: int = 100
    batch_size: int = 24
    eval_batch_size: int = 32
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    crop_samples: int | None = None
    eval_samples: int | None = None
    augment: list = field(default_factory=list)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    swa: SWAConfig = field(default_factory=SWAConfig)
    seed: int = 1234
    deterministic: bool = False
    amp: Literal["none", "bf16", "fp16"] = "none"  # GPU only
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
        cfg = _build(cls, d, "")
        for k in (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "grad_accum_steps",
            "windows_per_file",
        ):
            if getattr(cfg, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(cfg, k)}")
        for k in ("crop_samples", "eval_samples"):
            if getattr(cfg, k) is not None and getattr(cfg, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(cfg, k)}")
        if cfg.optimizer.lr <= 0:
            raise ConfigError(f"optimizer.lr must be positive, got {cfg.optimizer.lr}")
        if cfg.freeze_epochs < 0:
            raise ConfigError(f"freeze_epochs must be >= 0, got {cfg.freeze_epochs}")
        if not all(isinstance(f, str) and f for f in cfg.freeze):
            raise ConfigError(f"freeze: expected a list of names, got {cfg.freeze!r}")
        if cfg.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {cfg.num_workers}")
        cw = cfg.loss.class_weights
        if isinstance(cw, str) and cw not in ("inverse", "none"):
            raise ConfigError(f"loss.class_weights: {cw!r} is not 'inverse', null or a list")
        if isinstance(cw, list) and len(cw) != 2:
            raise ConfigError("loss.class_weights must be [w_spoof, w_bonafide]")
        return cfg

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))


def _check_value(key: str, value, tp):
    """``value`` checked (and ints widened to float) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(
                f"{key}: {value!r} is not one of {', '.join(map(str, typing.get_args(tp)))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _check_value(key, value, arg)
            except ConfigError as e:
                errors.append(e)
        names = " or ".join(_type_name(a) for a in typing.get_args(tp))
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return value
    base = origin or tp
    if base is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string: take it as the number it means
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if base in (bool, str, list, dict):
        if not isinstance(value, base):
            raise ConfigError(f"{key}: expected {_type_name(base)}, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r}")  # pragma: no cover - a bug


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    return {
        float: "a number",
        int: "an integer",
        bool: "true/false",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(typing.get_origin(tp) or tp, str(tp))


def _build(cls, d, prefix: str):
    """An instance of the dataclass ``cls`` from the mapping ``d``, every key checked."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the recipe'}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid: {', '.join(prefix + k for k in known)}"
        )
    out = {}
    for k, v in d.items():
        tp = hints[k]
        if is_dataclass(tp):
            out[k] = _build(tp, v, f"{prefix}{k}.")
        else:
            out[k] = _check_value(prefix + k, v, tp)
    return cls(**out)


def parse_override(text: str) -> tuple[list[str], object]:
    """``a.b=value`` -> (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None


def load_config(path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe and apply ``key=value`` overrides (dotted keys reach into dicts)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found (see configs/ for examples)")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping")
    for o in overrides or []:
        keys, value = parse_override(o)
        node = d
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {o!r}: {k} is not a mapping")
        node[keys[-1]] = value
    try:
        return TrainConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
