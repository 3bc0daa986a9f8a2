"""Parsers of the ASVspoof protocols and of the other label files the toolkit reads.

Every parser returns a list of :class:`Trial`; a malformed line raises :class:`ProtocolError`
with the file, the line number and the line itself. Label convention: 1 = bona fide, 0 = spoof
(as the official AASIST and RawNet2 code).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpoofscopeError

BONAFIDE, SPOOF = 1, 0
_KEYS = {"bonafide": BONAFIDE, "bona-fide": BONAFIDE, "bona_fide": BONAFIDE, "spoof": SPOOF}


class ProtocolError(SpoofscopeError, ValueError):
    """A protocol or label file that cannot be parsed; names the file, line and content."""

    def __init__(self, path, lineno: int | None, line: str | None, reason: str):
        self.path, self.lineno, self.line = str(path), lineno, line
        where = f"{path}, line {lineno}" if lineno is not None else str(path)
        shown = f": {line.rstrip()!r}" if line is not None else ""
        super().__init__(f"{where}{shown}: {reason}")


@dataclass
class Trial:
    """One labelled utterance of a protocol.

    Attributes:
        utt_id: utterance id (file name without extension for the ASVspoof corpora).
        label: 1 for bona fide, 0 for spoof.
        attack: attack id (e.g. ``A07``), ``"-"`` for bona fide.
        speaker: speaker id, or ``"-"`` when the protocol has none.
        path: the audio file, where the dataset knows it (None until resolved).
        meta: other protocol columns (codec, transmission, subset, ...).
    """

    utt_id: str
    label: int
    attack: str = "-"
    speaker: str = "-"
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "bonafide" if self.label == BONAFIDE else "spoof"


def _key(path, lineno, line, value: str) -> int:
    try:
        return _KEYS[value.strip().lower()]
    except KeyError:
        raise ProtocolError(
            path, lineno, line, f"unknown key {value!r}; expected 'bonafide' or 'spoof'"
        ) from None


def _lines(path):
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(path, None, None, "protocol file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a spreadsheet's BOM
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(path, lineno, None, "not UTF-8 text (a binary file?)") from None
            if line.strip() and not line.lstrip().startswith("#"):
                yield lineno, line


def _check_unique(path, trials: list[Trial]) -> list[Trial]:
    seen: dict[str, int] = {}
    for i, t in enumerate(trials):
        if t.utt_id in seen:
            raise ProtocolError(
                path, None, None, f"utterance id {t.utt_id!r} appears twice; list each file once"
            )
        seen[t.utt_id] = i
    return trials


def parse_asvspoof2019(path) -> list[Trial]:
    """ASVspoof 2019 LA/PA CM protocol: ``SPEAKER UTT - ATTACK KEY`` (eval keys carry labels)."""
    out = []
    for lineno, line in _lines(path):
        cols = line.split()
        if len(cols) != 5:
            raise ProtocolError(
                path,
                lineno,
                line,
                f"expected 5 columns (SPEAKER UTT - ATTACK KEY), got {len(cols)}",
            )
        spk, utt, env, attack, key = cols
        label = _key(path, lineno, line, key)
        meta = {"environment": env} if env != "-" else {}
        out.append(Trial(utt, label, attack, spk, meta=meta))
    return _check_unique(path, out)


_2021_COLS = ("codec", "transmission", "attack", "key", "trim", "subset")


def parse_asvspoof2021(path) -> list[Trial]:
    """ASVspoof 2021 LA/DF keys (``trial_metadata.txt``):
    ``SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET [extra DF columns...]``."""
    out = []
    for lineno, line in _lines(path):
        cols = line.split()
        if len(cols) < 8:
            raise ProtocolError(
                path,
                lineno,
                line,
                "expected at least 8 columns "
                f"(SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET), got {len(cols)}",
            )
        spk, utt, codec, trans, attack, key, trim, subset = cols[:8]
        label = _key(path, lineno, line, key)
        meta = {"codec": codec, "transmission": trans, "trim": trim, "subset": subset}
        if len(cols) > 8:
            meta["extra"] = cols[8:]
        out.append(Trial(utt, label, attack, spk, meta=meta))
    return _check_unique(path, out)


def parse_asvspoof5(path) -> list[Trial]:
    """ASVspoof 5 protocol (``ASVspoof5.{train,dev.track_1,eval.track_1}.tsv``, whitespace):
    ``SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP``."""
    out = []
    for lineno, line in _lines(path):
        cols = line.split()
        if len(cols) < 9:
            raise ProtocolError(
                path,
                lineno,
                line,
                "expected 10 columns (SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED "
                f"ATTACK_TAG ATTACK_LABEL KEY TMP), got {len(cols)}",
            )
        spk, utt, gender, codec, codec_q, codec_seed, tag, attack, key = cols[:9]
        label = _key(path, lineno, line, key)
        meta = {
            "gender": gender,
            "codec": codec,
            "codec_q": codec_q,
            "codec_seed": codec_seed,
            "attack_tag": tag,
        }
        out.append(Trial(utt, label, attack, spk, meta=meta))
    return _check_unique(path, out)


def parse_in_the_wild(path) -> list[Trial]:
    """In-the-Wild ``meta.csv``: header ``file,speaker,label`` with labels bona-fide/spoof."""
    path = Path(path)
    out = []
    rows = _csv_rows(path, required=("file", "speaker", "label"))
    for lineno, line, row in rows:
        label = _key(path, lineno, line, row["label"])
        f = row["file"].strip()
        out.append(
            Trial(
                Path(f).stem,
                label,
                "-" if label else "spoof",
                row["speaker"].strip(),
                meta={"file": f},
            )
        )
    return _check_unique(path, out)


def parse_csv(path) -> list[Trial]:
    """Generic list ``path,label[,attack][,group]`` with a header row; paths relative to the
    CSV. ``group`` (e.g. speaker or source) becomes the trial's speaker and ``meta["group"]``."""
    path = Path(path)
    out = []
    for lineno, line, row in _csv_rows(path, required=("path", "label")):
        label = _key(path, lineno, line, row["label"])
        p = Path(row["path"].strip())
        if not p.is_absolute():
            p = path.parent / p
        attack = (row.get("attack") or "").strip() or ("-" if label else "spoof")
        group = (row.get("group") or "").strip()
        out.append(
            Trial(
                row["path"].strip(),
                label,
                attack,
                speaker=group or "-",
                path=p,
                meta={"group": group} if group else {},
            )
        )
    # the id is the path without its extension, unless two different files share it
    # (b00.wav and b00.flac): those keep their extension; the same file twice is an error
    stems = [str(Path(t.utt_id).with_suffix("")) for t in out]
    n = Counter(stems)
    for t, stem in zip(out, stems, strict=True):
        if n[stem] == 1:
            t.utt_id = stem
    return _check_unique(path, out)


def _csv_rows(path: Path, required: tuple[str, ...]):
    if not path.is_file():
        raise ProtocolError(path, None, None, "file not found")
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the header
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise ProtocolError(path, None, None, "not UTF-8 text (save the CSV as UTF-8)") from None
    if not lines:
        raise ProtocolError(path, None, None, "empty file")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    missing = [c for c in required if c not in header]
    if missing:
        raise ProtocolError(
            path,
            1,
            lines[0],
            f"header lacks column(s) {', '.join(missing)}; expected {','.join(required)}",
        )
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        vals = next(csv.reader([line]))
        if len(vals) < len(required) or len(vals) > len(header):
            raise ProtocolError(
                path, lineno, line, f"expected {len(header)} fields ({','.join(header)})"
            )
        yield lineno, line, dict(zip(header, vals, strict=False))


def read_protocol(path) -> list[Trial]:
    """Parse a CM protocol, recognising its format from the first data line.

    5 columns: ASVspoof 2019; 8 or more with a key in column 6: ASVspoof 2021 LA/DF;
    10 with a key in column 9: ASVspoof 5; a CSV header ``file,speaker,label``: In-the-Wild;
    ``path,label``: the generic CSV.
    """
    path = Path(path)
    first = next(_lines(path), None)
    if first is None:
        raise ProtocolError(path, None, None, "the protocol holds no trials")
    lineno, line = first
    low = line.strip().lower()
    if "," in low:
        header = [h.strip() for h in low.split(",")]
        if "file" in header and "label" in header:
            return parse_in_the_wild(path)
        return parse_csv(path)
    cols = line.split()
    if len(cols) == 5:
        return parse_asvspoof2019(path)
    if len(cols) == 10:
        return parse_asvspoof5(path)
    if len(cols) >= 8 and cols[5].lower() in _KEYS:
        return parse_asvspoof2021(path)
    raise ProtocolError(
        path,
        lineno,
        line,
        "unrecognised protocol format; expected ASVspoof 2019 (5 columns), 2021 (8+), "
        "ASVspoof 5 (10), In-the-Wild meta.csv or a path,label CSV",
    )


def read_asv_scores(path):
    """Official ASV score file ``SOURCE KEY SCORE`` -> (target, nontarget, spoof) score arrays.

    KEY is ``target``, ``nontarget`` or ``spoof``.
    """
    import numpy as np

    groups: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for lineno, line in _lines(path):
        cols = line.split()
        if len(cols) != 3 or cols[1] not in groups:
            raise ProtocolError(
                path,
                lineno,
                line,
                "expected 'SOURCE KEY SCORE' with KEY target, nontarget or spoof",
            )
        try:
            groups[cols[1]].append(float(cols[2]))
        except ValueError:
            raise ProtocolError(path, lineno, line, f"score {cols[2]!r} is not a number") from None
    for k, v in groups.items():
        if not v:
            raise ProtocolError(path, None, None, f"no {k} trials: the t-DCF needs all three")
    return tuple(np.asarray(groups[k]) for k in ("target", "nontarget", "spoof"))
