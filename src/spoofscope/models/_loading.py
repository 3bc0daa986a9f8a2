"""``load_model``: the one way to get a model with weights.

``source`` is one of

* ``hf:OWNER/REPO[@REVISION]`` or ``hf:FOLDER``: a ``transformers`` audio classifier
  (:mod:`spoofscope.models.hf`);
* a registry name with an optional tag, ``"aasist"`` or ``"aasist:official"``: the published
  weights of that tag (cache, else a verified download); with ``weights=PATH`` the user's own
  state_dict for that architecture instead;
* a spoofscope checkpoint (``spoofscope train`` writes them): rebuilt from the file alone;
* a foreign state_dict file (the official AASIST, RawNet2 or LCNN layouts, or ``module.``
  prefixed): converted by its family's hook and loaded strictly. Its architecture is
  ``arch=``, an official AASIST ``config=``, or found among the models with published
  weights whose keys and shapes it matches.

A file the user names is loaded strictly by key and shape (a mismatch names the missing,
unexpected and mis-shaped keys), never by checksum.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from torch import nn

from ..errors import ConfigError, WeightsError
from ._card import ModelCard
from ._checkpoint import is_checkpoint, torch_load
from ._pretrained import resolve_weights, split_tag
from ._registry import _REGISTRY, create_model, get_entry, list_models


def _state_dict_of(obj, path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{path}: holds no state_dict (got {type(obj).__name__})")
    return obj


def _read(path):
    """What a weights file holds: ``.safetensors`` (Hugging Face repositories) or a PyTorch
    file loaded with ``weights_only=True``."""
    return _safetensors(path) if str(path).endswith(".safetensors") else torch_load(path)


def load_state_dict_file(path) -> dict:
    """A state_dict from a file: a bare one, the ``state_dict`` of a checkpoint, or a
    ``.safetensors`` file."""
    return _state_dict_of(_read(path), path)


def _safetensors(path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        raise WeightsError(f"{path}: reading .safetensors needs the safetensors package") from None
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - a corrupt or truncated file
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def _mismatch(model: nn.Module, sd: dict) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)
    ]

    def few(xs):
        return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (file vs model): {few(shapes)}")
    return "; ".join(parts) or None


def load_strict(model: nn.Module, sd: dict, what) -> nn.Module:
    """Convert ``sd`` with the model's family hook and load it strictly, or raise a
    :class:`WeightsError` that names the keys that do not fit."""
    name = getattr(model, "registry_name", None)
    if name in _REGISTRY:
        sd = _REGISTRY[name].convert(sd)
    problem = _mismatch(model, sd)
    if problem:
        raise WeightsError(f"{what} does not fit {name or type(model).__name__}: {problem}")
    model.load_state_dict(sd, strict=True)
    return model


def _guess_arch(sd: dict, path) -> nn.Module:
    """The model with published weights whose keys and shapes ``sd`` matches exactly.
    Candidates are built on the meta device (shapes only: no memory, no initialisation; the
    zoo holds 2-billion-parameter encoders); only the match is built for real."""
    import torch

    for name in list_models(pretrained=True):
        with torch.device("meta"):
            m = create_model(name)
        if _mismatch(m, _REGISTRY[name].convert(sd)) is None:
            return create_model(name)
    raise WeightsError(
        f"{path} is a bare state_dict that matches no model with published weights; say which "
        f"architecture it is (--model ARCH --weights {path}, or load_model(ARCH, "
        f"weights=PATH)); architectures: {', '.join(list_models())}"
    )


def _from_file(path: Path, arch, config, overrides) -> nn.Module:
    obj = _read(path)
    if is_checkpoint(obj):
        if arch is not None and arch != obj["arch"]:
            raise WeightsError(f"{path} is a {obj['arch']} checkpoint, not {arch}")
        model = create_model(obj["arch"], **{**obj.get("model_args", {}), **overrides})
        stored = obj.get("card") or {}
        keep = {
            k: stored[k]
            for k in ("window_samples", "window_policy", "training_data")
            if k in stored
        }
        model.card = replace(model.card, **keep)
        load_strict(model, obj["state_dict"], f"checkpoint {path}")
        model.checkpoint = {k: v for k, v in obj.items() if k != "state_dict"}
        return model
    sd = _state_dict_of(obj, path)
    if config is not None:  # an official AASIST .conf: its model_config as constructor arguments
        from .aasist import AASISTConfig

        official = asdict(AASISTConfig.from_official(config))
        model = create_model("aasist", **{**official, **overrides})
    elif arch is not None:
        model = create_model(arch, **overrides)
    else:
        model = _guess_arch(sd, path)
    return load_strict(model, sd, str(path))


def load_model(
    source,
    *,
    weights=None,
    arch: str | None = None,
    config=None,
    cache_dir=None,
    download: bool = True,
    bonafide_label: str | None = None,
    **overrides,
) -> nn.Module:
    """Get a model with weights, in eval mode (see the module docstring for ``source``).

    Args:
        source: ``name[:tag]``, a checkpoint path or a state_dict path.
        weights: the user's own state_dict for the architecture ``source`` names.
        arch: architecture of a bare state_dict file.
        config: an official AASIST ``.conf`` / ``model_config`` (path or dict) for a state_dict.
        cache_dir: overrides ``$SPOOFSCOPE_CACHE``.
        download: allow downloading published weights missing from the cache.
        bonafide_label: for ``hf:`` models, the label of the bona fide class when their
            ``id2label`` does not make it plain.
        **overrides: model constructor arguments.

    The model carries ``model.card``, ``model.source`` (what was loaded, named without
    folders) and ``model.weights_file`` (the file read); a checkpoint's
    metadata (config, calibration, versions) is on ``model.checkpoint``.
    """
    src = str(source)
    path = Path(src)
    if src.startswith("hf:"):  # a transformers audio classifier (models/hf.py)
        if weights is not None:
            raise ConfigError(f"{src} carries its own weights; --weights is for NAME or ARCH")
        local = Path(src[3:])
        model = create_model(
            "hf-classifier",
            # a folder by its absolute path, so that a checkpoint of it rebuilds anywhere
            source=f"hf:{local.resolve()}" if local.is_dir() else src,
            bonafide_label=bonafide_label,
            cache_dir=None if cache_dir is None else str(cache_dir),
            **overrides,
        )
        model.source = src
        return model.eval()
    if bonafide_label is not None:
        raise ConfigError("--bonafide-label is for hf: models (their labels name the classes)")
    if isinstance(source, Path) and not path.is_file():
        raise WeightsError(f"{path}: file not found")
    if path.is_file():
        if weights is not None and Path(weights).resolve() != path.resolve():
            raise ConfigError(
                f"{src} is a file already; --weights/weights= is for a registered architecture "
                f"name (--model ARCH --weights {weights})"
            )
        model = _from_file(path, arch, config, overrides)
        file = path
    else:
        name, tag = split_tag(src)
        if name not in list_models():
            if path.suffix or "/" in src or "\\" in src:
                raise WeightsError(f"{src}: file not found")
            get_entry(name)  # raises ConfigError listing the known names
        if weights is not None:
            if tag is not None:
                raise ConfigError(f"give either a tag ({src}) or weights={weights}, not both")
            file, src = Path(weights), f"{name} + {Path(weights).name}"
        else:  # find the file before building the model (an XLS-R model is 1.3 GB)
            tag = tag or get_entry(name).card.default_tag
            file, src = resolve_weights(name, tag, cache_dir, download), f"{name}:{tag}"
        sd = load_state_dict_file(file)
        model = load_strict(create_model(name, **overrides), sd, str(file))
    model.source = src
    model.weights_file = Path(file)  # what was read (the service shows its digest, not it)
    return model.eval()


def load_checkpoint(path):
    """Rebuild the model of a spoofscope checkpoint, in eval mode.

    Returns ``(model, checkpoint dict without the state_dict)``.
    """
    model = load_model(Path(path))
    if not hasattr(model, "checkpoint"):
        raise WeightsError(
            f"{path} is not a spoofscope checkpoint (a bare state_dict? load it with "
            "load_model(ARCH, weights=PATH) or --model ARCH --weights PATH)"
        )
    return model, model.checkpoint


__all__ = ["ModelCard", "load_checkpoint", "load_model", "load_state_dict_file", "load_strict"]
