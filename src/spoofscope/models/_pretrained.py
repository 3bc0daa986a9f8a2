"""Pretrained weights as data beside the models: where they come from and how to verify them.

``create_model(name, pretrained=True)`` looks for the file in an explicit ``weights=`` path,
then in the cache (``$SPOOFSCOPE_CACHE``, default ``~/.cache/spoofscope``), then downloads it
and checks its sha256. A checkpoint is untrusted input: it is always loaded with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

NAVER_MIT_NOTICE = (
    "Copyright (c) 2021-present NAVER Corp. Permission is hereby granted, free of charge, to any "
    "person obtaining a copy of this software and associated documentation files (the "
    '"Software"), to deal in the Software without restriction, including without limitation '
    "the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies "
    "of the Software, and to permit persons to whom the Software is furnished to do so, subject "
    "to the following conditions: The above copyright notice and this permission notice shall be "
    "included in all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED "
    '"AS IS", WITHOUT WARRANTY OF ANY KIND.'
)


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file and its input contract."""

    url: str
    filename: str
    sha256: str
    licence: str
    notice: str
    trained_on: str
    sample_rate: int = 16000
    input_length: int = 64600
    input_policy: str = "first 64,600 samples; shorter audio tiled (official evaluation)"
    bonafide_index: int = 1
    published: str = ""


_CLOVA = "https://github.com/clovaai/aasist/raw/main/models/weights/"

PRETRAINED: dict[str, PretrainedWeights] = {
    "aasist": PretrainedWeights(
        url=_CLOVA + "AASIST.pth",
        filename="AASIST.pth",
        sha256="51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0",
        licence="MIT (NAVER Corp.)",
        notice=NAVER_MIT_NOTICE,
        trained_on="ASVspoof 2019 LA train (bona fide + A01-A06), selected on 2019 LA dev",
        published="EER 0.83 %, min t-DCF 0.0275 on ASVspoof 2019 LA eval (Jung et al., 2022)",
    ),
    "aasist-l": PretrainedWeights(
        url=_CLOVA + "AASIST-L.pth",
        filename="AASIST-L.pth",
        sha256="814331d088032bb4c3fa61cc014789eadeed464209dd094ab3a2dd6ffbdce27a",
        licence="MIT (NAVER Corp.)",
        notice=NAVER_MIT_NOTICE,
        trained_on="ASVspoof 2019 LA train (bona fide + A01-A06), selected on 2019 LA dev",
        published="EER 0.99 %, min t-DCF 0.0309 on ASVspoof 2019 LA eval (Jung et al., 2022)",
    ),
}


class WeightsError(RuntimeError):
    """Weights that are missing, unreachable or fail their checksum."""


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


def _verified(path: Path, entry: PretrainedWeights) -> Path:
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the expected {entry.sha256} for "
            f"{entry.filename}; the file was not used. Delete it and fetch {entry.url} again"
        )
    return path


def resolve_weights(name: str, weights=None, cache=None, download: bool = True) -> Path:
    """Find (or fetch) the verified weights file of a registered pretrained entry."""
    if name not in PRETRAINED:
        raise WeightsError(
            f"no published weights for {name!r}; models with weights: {', '.join(PRETRAINED)}"
        )
    entry = PRETRAINED[name]
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise WeightsError(f"weights file {p} not found")
        return _verified(p, entry)
    target = cache_dir(cache) / entry.filename
    if target.is_file():
        return _verified(target, entry)
    how = (
        f"download {entry.url} by hand and place it at {target} "
        f"(or pass weights=PATH / --weights PATH)"
    )
    if not download:
        raise WeightsError(f"{entry.filename} not in the cache ({target}); {how}")
    from ..data.download import DownloadError, download_file

    try:
        download_file(entry.url, target, progress=True, timeout=30)
    except DownloadError as e:
        raise WeightsError(f"cannot download {entry.url} ({e}); {how}") from None
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


def load_state_dict_file(path) -> dict:
    """Load a state_dict (or a spoofscope checkpoint's ``state_dict``) with weights_only=True."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj


def load_pretrained(model, name: str, weights=None, cache_dir=None) -> None:
    path = resolve_weights(name, weights, cache_dir)
    model.load_state_dict(load_state_dict_file(path), strict=True)
    model.pretrained = PRETRAINED[name]
    model.eval()
