"""Published weights: packaged, cached or downloaded and verified; the licence notice beside.

The weights a model family publishes are declared on its card
(:attr:`ModelCard.weights <spoofscope.models.ModelCard>`, tag -> :class:`PretrainedWeights`).
A file marked ``packaged`` ships inside spoofscope (``spoofscope/models/weights/``: the official
AASIST and AASIST-L, MIT, with NAVER's notice beside them) and is read from there. Any other
published file is taken from the cache (``$SPOOFSCOPE_CACHE``, default ``~/.cache/spoofscope``)
or downloaded. In every case its sha256 must match the card: a file the user names explicitly
is not checked by checksum (it is loaded strictly by key and shape instead, see
:func:`~spoofscope.models.load_model`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import WeightsError
from ._card import PretrainedWeights
from ._registry import get_card, list_models

#: where packaged weights live (package data of the wheel)
PACKAGED_DIR = Path(__file__).parent / "weights"
#: the copyright and licence notice of the packaged weights (NAVER Corp., MIT)
PACKAGED_NOTICE = PACKAGED_DIR / "LICENSE-NAVER.txt"


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
            f"Models with published weights: {', '.join(list_models(pretrained=True))}"
        )
    tag = tag or card.default_tag
    if tag not in card.weights:
        raise WeightsError(f"{name} has no weights tagged {tag!r}; tags: {', '.join(card.weights)}")
    return tag, card.weights[tag]


def packaged_file(entry: PretrainedWeights) -> Path | None:
    """The copy of ``entry`` shipped inside spoofscope, or None."""
    path = PACKAGED_DIR / entry.filename
    return path if entry.packaged and path.is_file() else None


def _verified(path: Path, entry: PretrainedWeights, source: str | None = None) -> Path:
    """``path`` if its sha256 matches the card. ``source``: where a fresh download came from
    (the bad file is then deleted here, and the message says so)."""
    if entry.sha256 is None:  # the authors publish none and we could not compute one offline
        return path
    digest = sha256_of(path)
    if digest != entry.sha256 and path.parent == PACKAGED_DIR:
        raise WeightsError(
            f"{path}: the packaged {entry.filename} has sha256 {digest}, not the expected "
            f"{entry.sha256}; the installation is damaged. Reinstall spoofscope (pip install "
            f"--force-reinstall spoofscope) or pass a copy of {entry.url} with --weights PATH"
        )
    if digest != entry.sha256:
        if source is not None:
            path.unlink(missing_ok=True)
            raise WeightsError(
                f"the file fetched from {source} has sha256 {digest}, not the expected "
                f"{entry.sha256} for {entry.filename}; it was deleted and not used. Check the "
                f"source (a mirror with another file?) or fetch {entry.url}"
            )
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the expected {entry.sha256} for "
            f"{entry.filename}; the file was not used. Delete it and fetch {entry.url} again"
        )
    return path


def weights_status(name: str, tag: str | None = None, cache=None) -> str:
    """``packaged`` (inside spoofscope), ``downloaded`` (in the cache), ``available`` (fetched
    on first use), ``manual`` (to be downloaded by hand) or ``none``."""
    card = get_card(name)
    if not card.weights:
        return "none"
    _, w = published_weights(name, tag)
    if packaged_file(w) is not None:
        return "packaged"
    if _cached_file(w, cache).is_file():
        return "downloaded"
    return "manual" if w.source == "manual" else "available"


def _cached_file(w: PretrainedWeights, cache=None) -> Path:
    if w.source == "hf":
        return cache_dir(cache) / "hf" / w.hf_repo.replace("/", "--") / w.filename
    return cache_dir(cache) / w.filename


def resolve_weights(
    name: str,
    tag: str | None = None,
    cache=None,
    download: bool = True,
    url: str | None = None,
) -> Path:
    """The published weights file of ``name[:tag]``: the packaged copy, else from the cache,
    else downloaded (from ``url`` when a mirror is given: that always downloads into the cache;
    from the Hugging Face Hub for ``source="hf"``), checked against the card's sha256 where the
    card has one. Weights published only on a page (Google Drive, OneDrive) raise an error that
    says which file to get and where to put it."""
    tag, entry = published_weights(name, tag)
    packaged = packaged_file(entry)
    if packaged is not None and url is None:
        return _verified(packaged, entry)
    if url is not None and "://" not in url:  # a plain path to a copy of the file
        local = Path(url).expanduser()
        if not local.is_file():
            raise WeightsError(f"{url}: no such file (give a path to the weights or a URL)")
        url = local.resolve().as_uri()
    target = _cached_file(entry, cache)
    if target.is_file():
        return _verified(target, entry)
    how = (
        f"download it by hand from {url or entry.url} and place it at {target} "
        f"(or pass the file with --weights PATH / weights=PATH)"
    )
    if entry.source == "manual" and url is None:
        raise WeightsError(
            f"{name}:{tag} weights are published only on a web page, not for automatic "
            f"download: get {entry.filename!r} ({entry.published}) from {entry.url} and place "
            f"it at {target}, or pass it with --weights PATH"
        )
    if not download:
        raise WeightsError(f"{entry.filename} not in the cache ({target}); {how}")
    if entry.source == "hf" and url is None:
        _hf_download(name, tag, entry, target, how)
    else:
        from ..data.download import DownloadError, download_file

        try:
            download_file(url or entry.url, target, progress=True, timeout=30)
        except DownloadError as e:
            raise WeightsError(f"{name}:{tag} weights: {e.reason}; {how}") from None
    _verified(target, entry, source=url or entry.url)
    # the licence notice travels with the weights
    target.with_name(target.name + ".LICENSE.txt").write_text(
        f"{entry.filename}: {entry.licence}\nSource: {entry.url}\n\n{entry.notice}\n"
    )
    return target


def _hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face Hub (or the mirror ``HF_ENDPOINT`` names) cannot be reached, or
    None: offline mode, or no connection (name lookup included) within ``timeout_s``."""
    from huggingface_hub import constants

    from ..data.download import connection_error

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    return connection_error(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT, timeout_s)


def _hf_download(name, tag, entry: PretrainedWeights, target: Path, how: str) -> None:
    """``entry.filename`` of ``entry.hf_repo`` (at ``entry.revision``) copied into ``target``."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError(
            f"{name}:{tag} weights live on the Hugging Face Hub ({entry.hf_repo}); install "
            f"huggingface_hub (pip install 'spoofscope[ssl]') or {how}"
        ) from None
    unreachable = _hub_unreachable()
    if unreachable:  # say so at once instead of after the hub client's retries (~25 s)
        raise WeightsError(
            f"{name}:{tag} weights: cannot fetch {entry.filename} from the Hugging Face repo "
            f"{entry.hf_repo} ({unreachable}); {how}"
        )
    try:
        got = hf_hub_download(
            entry.hf_repo,
            entry.filename,
            revision=entry.revision,
            cache_dir=str(target.parent.parent / "hub-cache"),
        )
    except Exception as e:  # noqa: BLE001 - offline, missing file, HTTP errors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{name}:{tag} weights: cannot fetch {entry.filename} from the Hugging Face repo "
            f"{entry.hf_repo} ({reason[:200]}); {how}"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copyfile(got, target)
