"""Published weights: the cache, the verified download, the licence notice beside the file.

The weights a model family publishes are declared on its card
(:attr:`ModelCard.weights <spoofscope.models.ModelCard>`, tag -> :class:`PretrainedWeights`).
A published file is taken from the cache (``$SPOOFSCOPE_CACHE``, default
``~/.cache/spoofscope``) or downloaded, and in both cases its sha256 must match the card: a
file the user names explicitly is not checked by checksum (it is loaded strictly by key and
shape instead, see :func:`~spoofscope.models.load_model`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import WeightsError
from ._card import PretrainedWeights
from ._registry import get_card


def cache_dir(override=None) -> Path:
    if override is not None:
        return Path(override)
    env = os.environ.get("SPOOFSCOPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spoofscope"


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_tag(source: str) -> tuple[str, str | None]:
    """``"aasist:official"`` -> ``("aasist", "official")``; ``"aasist"`` -> ``("aasist", None)``."""
    name, _, tag = source.partition(":")
    return name, (tag or None)


def published_weights(name: str, tag: str | None = None) -> tuple[str, PretrainedWeights]:
    """``(tag, weights)`` of a registered model's published file (the default tag if None)."""
    card = get_card(name)
    if not card.weights:
        raise WeightsError(
            f"{name} has no published weights; train one (spoofscope train) and load the "
            f"checkpoint, or pass your own state_dict with --weights PATH / weights=PATH. "
            f"Models with published weights: " + ", ".join(n for n in _names_with_weights())
        )
    tag = tag or card.default_tag
    if tag not in card.weights:
        raise WeightsError(f"{name} has no weights tagged {tag!r}; tags: {', '.join(card.weights)}")
    return tag, card.weights[tag]


def _names_with_weights() -> list[str]:
    from ._registry import list_models

    return list_models(pretrained=True)


def _verified(path: Path, entry: PretrainedWeights) -> Path:
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the expected {entry.sha256} for "
            f"{entry.filename}; the file was not used. Delete it and fetch {entry.url} again"
        )
    return path


def weights_status(name: str, tag: str | None = None, cache=None) -> str:
    """``downloaded`` (in the cache), ``available`` (can be fetched) or ``none``."""
    card = get_card(name)
    if not card.weights:
        return "none"
    _, w = published_weights(name, tag)
    return "downloaded" if (cache_dir(cache) / w.filename).is_file() else "available"


def resolve_weights(
    name: str, tag: str | None = None, cache=None, download: bool = True, url: str | None = None
) -> Path:
    """The verified published weights file of ``name[:tag]``: from the cache, else downloaded
    (from ``url`` when a mirror is given) and checked against the card's sha256."""
    tag, entry = published_weights(name, tag)
    target = cache_dir(cache) / entry.filename
    if target.is_file():
        return _verified(target, entry)
    src = url or entry.url
    how = (
        f"download {src} by hand and place it at {target} "
        f"(or pass your own file with --weights PATH / weights=PATH)"
    )
    if not download:
        raise WeightsError(f"{entry.filename} not in the cache ({target}); {how}")
    from ..data.download import DownloadError, download_file

    try:
        download_file(src, target, progress=True, timeout=30)
    except DownloadError as e:
        raise WeightsError(f"{name}:{tag} weights: {e.reason}; {how}") from None
    try:
        _verified(target, entry)
    except WeightsError:
        target.unlink(missing_ok=True)
        raise
    # the licence notice travels with the weights
    target.with_name(target.name + ".LICENSE.txt").write_text(
        f"{entry.filename}: {entry.licence}\nSource: {entry.url}\n\n{entry.notice}\n"
    )
    return target
