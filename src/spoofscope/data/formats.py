"""The dataset formats spoofscope knows, in one registry: how each is recognised, which splits
it has, and how a split is opened. ``open_dataset``, ``open_splits`` (train, score) and
``check_dataset`` (``spoofscope data check``) all go through it.

To add a format, write its parser in :mod:`~spoofscope.data.protocols` and append one
:class:`DatasetFormat` to :data:`FORMATS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import official_crop
from ..errors import ConfigError
from .datasets import (
    ASVspoof5,
    ASVspoof2019LA,
    ASVspoof2021,
    AudioDataset,
    CsvDataset,
    FolderDataset,
    InTheWild,
    asvspoof2019_asv_scores_path,
    asvspoof2019_paths,
)
from .protocols import BONAFIDE, read_asv_scores

log = logging.getLogger(__name__)

ASVSPOOF5_SPLITS = {
    "train": ("ASVspoof5.train.tsv", "flac_T"),
    "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D"),
    "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval"),
}
SPLITS = ("train", "dev", "eval")


def _la2021_key(root: Path) -> tuple[str, Path] | None:
    for track in ("LA", "DF"):
        key = root / "keys" / track / "CM" / "trial_metadata.txt"
        if key.is_file():
            return track, key
    return None


def _open_2021(root: Path, split, transform, check) -> AudioDataset:
    track, key = _la2021_key(root)
    return ASVspoof2021(key, root / f"ASVspoof2021_{track}_eval" / "flac", transform, check)


def _open_5(root: Path, split, transform, check) -> AudioDataset:
    name, audio = ASVSPOOF5_SPLITS[split]
    return ASVspoof5(root / "ASVspoof5_protocols" / name, root / audio, transform, check)


def _asv_2019(root: Path, split: str) -> Path | None:
    p = asvspoof2019_asv_scores_path(root, split)
    return p if p.is_file() else None


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset layout.

    Attributes:
        name: short name (shown by ``data check``).
        layout: the expected tree, for error messages.
        detect: ``root -> bool``.
        open: ``(root, split, transform, check) -> AudioDataset``.
        splits: its official splits; ``()`` for one list that training splits 80/10/10.
        protocol: ``(root, split) -> Path`` of the split's labelled protocol (for reports).
        asv_scores: ``(root, split) -> Path | None`` of the organisers' ASV scores.
    """

    name: str
    layout: str
    detect: Callable[[Path], bool]
    open: Callable[..., AudioDataset]
    splits: tuple[str, ...] = ()
    protocol: Callable[[Path, str], Path] | None = None
    asv_scores: Callable[[Path, str], Path | None] | None = None


FORMATS: list[DatasetFormat] = [
    DatasetFormat(
        "csv",
        "a CSV with a header path,label[,attack][,group]",
        lambda p: p.is_file() and p.suffix.lower() == ".csv",
        lambda p, split, tf, check: CsvDataset(p, tf, check),
    ),
    DatasetFormat(
        "asvspoof2019",
        "ROOT/LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.*.txt (the demo corpus too)",
        lambda p: p.is_dir() and asvspoof2019_paths(p, "train")[0].is_file(),
        lambda p, split, tf, check: ASVspoof2019LA(p, split, tf, check),
        SPLITS,
        lambda p, split: asvspoof2019_paths(p, split)[0],
        _asv_2019,
    ),
    DatasetFormat(
        "asvspoof5",
        "ROOT/ASVspoof5_protocols/*.tsv with flac_T, flac_D, flac_E_eval",
        lambda p: p.is_dir() and (p / "ASVspoof5_protocols").is_dir(),
        _open_5,
        SPLITS,
        lambda p, split: p / "ASVspoof5_protocols" / ASVSPOOF5_SPLITS[split][0],
    ),
    DatasetFormat(
        "asvspoof2021",
        "ROOT/keys/{LA,DF}/CM/trial_metadata.txt with ASVspoof2021_{LA,DF}_eval/flac",
        lambda p: p.is_dir() and _la2021_key(p) is not None,
        _open_2021,
        ("eval",),
        lambda p, split: _la2021_key(p)[1],
    ),
    DatasetFormat(
        "in-the-wild",
        "ROOT/meta.csv with ROOT/N.wav",
        lambda p: p.is_dir() and (p / "meta.csv").is_file(),
        lambda p, split, tf, check: InTheWild(p, tf, check),
    ),
    DatasetFormat(
        "folders",
        "ROOT/bonafide/** and ROOT/spoof/** audio files",
        lambda p: p.is_dir() and (p / "bonafide").is_dir() and (p / "spoof").is_dir(),
        lambda p, split, tf, check: FolderDataset(p, tf),
    ),
]


def detect_format(spec) -> DatasetFormat:
    """The format of ``spec``, or a ``FileNotFoundError`` listing the layouts known."""
    p = Path(spec)
    for fmt in FORMATS:
        if fmt.detect(p):
            return fmt
    known = "; ".join(f"{f.name}: {f.layout}" for f in FORMATS)
    raise DatasetNotFound(f"{spec}: not a dataset this toolkit knows. Expected one of: {known}")


class DatasetNotFound(ConfigError, FileNotFoundError):
    """A path that holds no dataset of a known format."""


def open_dataset(spec, split: str = "train", transform=official_crop, check: bool = True):
    """Open one split of whatever ``spec`` points at (see :data:`FORMATS`). Formats without
    official splits return the whole list for any split."""
    fmt = detect_format(spec)
    if fmt.splits and split not in fmt.splits:
        raise ConfigError(f"{spec} ({fmt.name}) has {_splits_text(fmt)}, not {split!r}")
    return fmt.open(Path(spec), split, transform, check)


def _splits_text(fmt: DatasetFormat) -> str:
    if len(fmt.splits) == 1:
        return f"only an {fmt.splits[0]} split"
    return f"the splits {', '.join(fmt.splits)}"


@dataclass
class Splits:
    """The train/dev/eval lists of a dataset, with what the reports need."""

    train: AudioDataset
    dev: AudioDataset
    eval: AudioDataset | None
    dev_asv: tuple | None = None
    eval_asv: tuple | None = None
    eval_protocol: Path | None = None
    eval_asv_path: Path | None = None
    format: str = ""


def open_splits(root, seed: int = 0, transform=None, check: bool = True) -> Splits:
    """Train/dev/eval of ``root``: the official splits where the format has them, else a
    seeded 80/10/10 split of the one list. Missing audio fails here (``check``)."""
    fmt = detect_format(root)
    root = Path(root)
    if fmt.splits and set(SPLITS) <= set(fmt.splits):
        ds = {s: fmt.open(root, s, transform, check) for s in SPLITS}
        asv = {}
        for s in ("dev", "eval"):
            p = fmt.asv_scores(root, s) if fmt.asv_scores else None
            asv[s] = (read_asv_scores(p) if p else None), p
        return Splits(
            ds["train"],
            ds["dev"],
            ds["eval"],
            asv["dev"][0],
            asv["eval"][0],
            fmt.protocol(root, "eval") if fmt.protocol else None,
            asv["eval"][1],
            fmt.name,
        )
    if fmt.splits:
        raise ConfigError(
            f"{root} ({fmt.name}) has {_splits_text(fmt)}: it can be "
            "scored (spoofscope score --split eval) but not trained on"
        )
    whole = fmt.open(root, "train", transform, check)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "dev": [], "eval": []}
    labels = np.array([t.label for t in whole.trials])
    # stratified: dev and eval each get 10 % of every class (at least one file of a class
    # with three or more), so that their EER is defined
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = max(1, len(idx) // 10) if len(idx) >= 3 else 0
        parts["dev"] += idx[:n].tolist()
        parts["eval"] += idx[n : 2 * n].tolist()
        parts["train"] += idx[2 * n :].tolist()

    def pick(idx):
        return AudioDataset([whole.trials[i] for i in sorted(idx)], transform, name=whole.name)

    log.warning(
        "%s has no official splits: using a seeded, class-stratified 80/10/10 train/dev/eval split",
        root,
    )
    return Splits(pick(parts["train"]), pick(parts["dev"]), pick(parts["eval"]), format=fmt.name)


def check_dataset(root) -> dict:
    """What a dataset root holds: per split the trials, classes, attacks, missing audio files
    and whether ASV scores are there (``spoofscope data check``)."""
    fmt = detect_format(root)
    root = Path(root)
    out: dict = {"root": str(root), "format": fmt.name, "splits": {}}
    for split in fmt.splits or ("all",):
        proto = fmt.protocol(root, split) if fmt.protocol else None
        if proto is not None and not proto.is_file():
            out["splits"][split] = {"protocol": None}
            continue
        ds = fmt.open(root, split, None, False)
        missing = [t.utt_id for t in ds.missing_files()]
        n_bona = int(np.sum(ds.labels == BONAFIDE))
        asv = fmt.asv_scores(root, split) if fmt.asv_scores else None
        first = ds.trials[0].path if ds.trials else None
        out["splits"][split] = {
            "protocol": str(proto or root),
            "trials": len(ds),
            "bonafide": n_bona,
            "spoof": len(ds) - n_bona,
            "attacks": ds.attacks(),
            "audio_dir": str(first.parent) if first is not None else None,
            "missing_files": len(missing),
            "first_missing": missing[:5],
            "asv_scores": str(asv) if asv else None,
        }
    return out


def format_check(report: dict) -> str:
    lines = [f"dataset root: {report['root']} ({report['format']})"]
    for split, r in report["splits"].items():
        if r.get("protocol") is None:
            lines.append(f"  {split:<5} no protocol found")
            continue
        miss = r["missing_files"]
        lines.append(
            f"  {split:<5} {r['trials']:>6} trials ({r['bonafide']} bona fide, {r['spoof']} spoof; "
            f"attacks {','.join(r['attacks']) or '-'}); "
            + (
                "all audio present"
                if miss == 0
                else f"{miss} audio files missing (first: {', '.join(r['first_missing'])})"
            )
            + ("; ASV scores present" if r["asv_scores"] else "")
        )
    return "\n".join(lines)
