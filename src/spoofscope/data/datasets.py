"""Lazy datasets: listing reads only the protocol; audio is decoded in ``__getitem__``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..audio import load_audio, official_crop
from ..errors import ConfigError, SpoofscopeError
from .protocols import (
    BONAFIDE,
    SPOOF,
    ProtocolError,
    Trial,
    parse_asvspoof5,
    parse_asvspoof2019,
    parse_asvspoof2021,
    parse_csv,
    parse_in_the_wild,
)

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3", ".m4a", ".opus", ".webm", ".aac")


class MissingAudioError(SpoofscopeError, FileNotFoundError):
    """Files named by a protocol are missing: carries the count and the first ids."""

    def __init__(self, name: str, missing: list[Trial], total: int):
        self.missing = missing
        ids = ", ".join(t.utt_id for t in missing[:5])
        more = " ..." if len(missing) > 5 else ""
        where = missing[0].path.parent if missing and missing[0].path else "?"
        super().__init__(
            f"{name}: {len(missing)} of {total} audio files named by the protocol are missing "
            f"(first: {ids}{more}; looked in {where})"
        )


class AudioDataset:
    """A list of trials whose audio is read on access.

    ``ds[i]`` returns ``(waveform (L,) float32, label int, utt_id str)``; the waveform goes
    through ``transform`` (default: the official fixed 64,600-sample crop; pass ``None`` for
    the whole file). Works directly with ``torch.utils.data.DataLoader``.
    """

    def __init__(
        self,
        trials: Sequence[Trial],
        transform: Callable[[np.ndarray], np.ndarray] | None = official_crop,
        name: str = "dataset",
        sample_rate: int = 16000,
    ):
        self.trials = list(trials)
        self.transform = transform
        self.name = name
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int):
        t = self.trials[i]
        x = load_audio(t.path, self.sample_rate)
        if self.transform is not None:
            x = self.transform(x)
        return x, t.label, t.utt_id

    @property
    def labels(self) -> np.ndarray:
        return np.array([t.label for t in self.trials], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        n_bona = int(np.sum(self.labels == BONAFIDE))
        return {"bonafide": n_bona, "spoof": len(self) - n_bona}

    def attacks(self) -> list[str]:
        return sorted({t.attack for t in self.trials if t.label == SPOOF})

    def missing_files(self) -> list[Trial]:
        return [t for t in self.trials if t.path is None or not t.path.is_file()]

    def check_files(self) -> None:
        """Raise :class:`MissingAudioError` (count and first ids) if any file is missing."""
        missing = self.missing_files()
        if missing:
            raise MissingAudioError(self.name, missing, len(self))


LA2019_SPLITS = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


def asvspoof2019_paths(root, split: str, track: str = "LA") -> tuple[Path, Path]:
    """(protocol file, flac folder) of one split of the official ASVspoof 2019 tree.

    ``root`` may be the folder that holds ``LA/`` or ``LA/`` itself.
    """
    if split not in LA2019_SPLITS:
        raise ConfigError(f"split must be one of {sorted(LA2019_SPLITS)}, not {split!r}")
    root = Path(root)
    base = root if (root / f"ASVspoof2019_{track}_cm_protocols").is_dir() else root / track
    proto = (
        base
        / f"ASVspoof2019_{track}_cm_protocols"
        / f"ASVspoof2019.{track}.cm.{LA2019_SPLITS[split]}.txt"
    )
    return proto, base / f"ASVspoof2019_{track}_{split}" / "flac"


def asvspoof2019_asv_scores_path(root, split: str, track: str = "LA") -> Path:
    proto, _ = asvspoof2019_paths(root, split, track)
    return (
        proto.parent.parent
        / f"ASVspoof2019_{track}_asv_scores"
        / f"ASVspoof2019.{track}.asv.{split}.gi.trl.scores.txt"
    )


def _dataset(trials, audio_dir, name, transform, check, ext=".flac") -> AudioDataset:
    """Point each trial at ``audio_dir/UTT.ext`` (when a folder is given), wrap, check files."""
    if audio_dir is not None:
        for t in trials:
            t.path = Path(audio_dir) / f"{t.utt_id}{ext}"
    ds = AudioDataset(trials, transform, name=name)
    if check:
        ds.check_files()
    return ds


def ASVspoof2019LA(root, split: str, transform=official_crop, check: bool = True) -> AudioDataset:
    """ASVspoof 2019 LA in its official tree::

        ROOT/LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt
        ROOT/LA/ASVspoof2019_LA_{train,dev,eval}/flac/UTT.flac
        ROOT/LA/ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.{dev,eval}.gi.trl.scores.txt

    The eval protocol carries labels, so the eval split is scored like the others.
    """
    proto, flac = asvspoof2019_paths(root, split)
    return _dataset(parse_asvspoof2019(proto), flac, f"ASVspoof 2019 LA {split}", transform, check)


def ASVspoof2021(protocol, audio_dir, transform=official_crop, check: bool = True) -> AudioDataset:
    """ASVspoof 2021 LA or DF eval: the key file ``trial_metadata.txt`` and the folder
    ``ASVspoof2021_{LA,DF}_eval/flac/`` holding ``UTT.flac``."""
    name = f"ASVspoof 2021 ({Path(protocol).name})"
    return _dataset(parse_asvspoof2021(protocol), audio_dir, name, transform, check)


def ASVspoof5(protocol, audio_dir, transform=official_crop, check: bool = True) -> AudioDataset:
    """ASVspoof 5: a protocol ``ASVspoof5.*.tsv`` and a folder (``flac_T``, ``flac_D``,
    ``flac_E_eval``) holding ``FILE.flac``."""
    name = f"ASVspoof 5 ({Path(protocol).name})"
    return _dataset(parse_asvspoof5(protocol), audio_dir, name, transform, check)


def InTheWild(root, transform=official_crop, check: bool = True) -> AudioDataset:
    """In-the-Wild (Müller et al., 2022): ``ROOT/meta.csv`` and ``ROOT/N.wav``."""
    root = Path(root)
    trials = parse_in_the_wild(root / "meta.csv")
    for t in trials:
        t.path = root / t.meta["file"]
    return _dataset(trials, None, "In-the-Wild", transform, check)


def CsvDataset(csv_path, transform=official_crop, check: bool = True) -> AudioDataset:
    """A CSV with a header ``path,label[,attack]``; labels bonafide/spoof; relative paths are
    taken from the CSV's folder."""
    return _dataset(parse_csv(csv_path), None, str(csv_path), transform, check)


def FolderDataset(root, transform=official_crop) -> AudioDataset:
    """``ROOT/bonafide/**`` and ``ROOT/spoof/**`` audio files; a spoof's attack is its
    sub-folder name under ``spoof/`` when it has one."""
    root = Path(root)
    trials = []
    for sub, label in (("bonafide", BONAFIDE), ("spoof", SPOOF)):
        d = root / sub
        if not d.is_dir():
            raise ProtocolError(root, None, None, f"folder dataset needs {sub}/ under {root}")
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                rel = p.relative_to(d)
                attack = "-" if label else (rel.parts[0] if len(rel.parts) > 1 else "spoof")
                trials.append(
                    Trial(str(p.relative_to(root).with_suffix("")), label, attack, path=p)
                )
    if not trials:
        raise ProtocolError(root, None, None, "no audio files under bonafide/ or spoof/")
    return AudioDataset(trials, transform, name=str(root))
