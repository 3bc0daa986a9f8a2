"""Score files joined with protocols, and the report that ``spoofscope evaluate`` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.protocols import BONAFIDE, ProtocolError, Trial, read_asv_scores, read_protocol
from .errors import SpoofscopeError
from .metrics import EvaluationReport, evaluate_scores


class ScoreFileError(SpoofscopeError, ValueError):
    """A score file that does not fit its protocol; gives counts and examples."""


def _examples(items, n: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (" ..." if len(items) > n else "")


def read_score_file(path) -> dict[str, tuple[float, str | None, str | None]]:
    """Read ``UTT ATTACK KEY SCORE`` (official AASIST output) or ``UTT SCORE`` lines.

    Returns ``{utt: (score, attack or None, key or None)}``.
    """
    path = Path(path)
    if not path.is_file():
        raise ScoreFileError(f"{path}: score file not found")
    out: dict[str, tuple[float, str | None, str | None]] = {}
    dups: list[str] = []
    bad: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ScoreFileError(
                    f"{path}, line {lineno}: not UTF-8 text (a binary file?); a score file has "
                    "'UTT ATTACK KEY SCORE' or 'UTT SCORE' lines"
                ) from None
            cols = line.split()
            if not cols or cols[0].startswith("#"):
                continue
            if len(cols) == 4:
                utt, attack, key, s = cols
            elif len(cols) == 2:
                (utt, s), attack, key = cols, None, None
            else:
                raise ProtocolError(
                    path,
                    lineno,
                    line,
                    f"expected 'UTT ATTACK KEY SCORE' or 'UTT SCORE', got {len(cols)} columns",
                )
            try:
                score = float(s)
                if not np.isfinite(score):
                    raise ValueError
            except ValueError:
                bad.append(f"line {lineno} ({utt}: {s!r})")
                continue
            if utt in out:
                dups.append(utt)
            out[utt] = (score, attack, key)
    if bad:
        raise ScoreFileError(
            f"{path}: {len(bad)} scores are not finite numbers (first: {_examples(bad, 3)})"
        )
    if dups:
        raise ScoreFileError(
            f"{path}: {len(dups)} utterance ids appear more than once (first: {_examples(dups)})"
        )
    if not out:
        raise ScoreFileError(f"{path}: no scores")
    return out


def join_scores(scores: dict, trials: list[Trial], score_path="scores", protocol_path="protocol"):
    """Match scores to protocol trials; returns (scores, labels, attacks) in protocol order."""
    proto_ids = {t.utt_id for t in trials}
    extra = [u for u in scores if u not in proto_ids]
    absent = [t.utt_id for t in trials if t.utt_id not in scores]
    if extra:
        raise ScoreFileError(
            f"{score_path}: {len(extra)} of {len(scores)} scored ids are not in {protocol_path} "
            f"(first: {_examples(extra)}); is it the right protocol for this split?"
        )
    if absent:
        raise ScoreFileError(
            f"{score_path}: {len(absent)} of {len(trials)} trials of {protocol_path} have no score "
            f"(first: {_examples(absent)})"
        )
    conflicts = [
        t.utt_id for t in trials if scores[t.utt_id][2] is not None and scores[t.utt_id][2] != t.key
    ]
    if conflicts:
        raise ScoreFileError(
            f"{score_path}: {len(conflicts)} trials carry a KEY that disagrees with "
            f"{protocol_path} (first: {_examples(conflicts)})"
        )
    s = np.array([scores[t.utt_id][0] for t in trials], dtype=np.float64)
    labels = np.array([t.label for t in trials], dtype=np.int64)
    attacks = np.array([t.attack for t in trials])
    return s, labels, attacks


def evaluate_arrays(scores, labels, attacks, asv_scores=None) -> EvaluationReport:
    """EER, per-attack EER and (with ASV scores) min t-DCF of labelled scores (1 = bona fide)."""
    scores, labels, attacks = np.asarray(scores), np.asarray(labels), np.asarray(attacks)
    bona, spoof = scores[labels == BONAFIDE], scores[labels != BONAFIDE]
    if bona.size == 0 or spoof.size == 0:
        raise ScoreFileError(
            f"need both classes to evaluate: {bona.size} bona fide and {spoof.size} spoof trials"
        )
    return evaluate_scores(bona, spoof, attacks[labels != BONAFIDE], asv_scores)


def evaluate_score_file(
    score_path, protocol_path, asv_scores_path=None, lower_is_bonafide: bool = False
) -> tuple[EvaluationReport, np.ndarray, np.ndarray]:
    """Evaluate a CM score file against a labelled protocol.

    Returns ``(report, bona_scores, spoof_scores)`` (scores sign-flipped if
    ``lower_is_bonafide``).
    """
    trials = read_protocol(protocol_path)
    s, labels, attacks = join_scores(read_score_file(score_path), trials, score_path, protocol_path)
    if lower_is_bonafide:
        s = -s
    asv = read_asv_scores(asv_scores_path) if asv_scores_path else None
    rep = evaluate_arrays(s, labels, attacks, asv)
    return rep, s[labels == BONAFIDE], s[labels != BONAFIDE]


def write_score_file(path, utt_ids, attacks, labels, scores) -> Path:
    """Write the official AASIST score file: ``UTT ATTACK KEY SCORE`` per line."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for u, a, lab, s in zip(utt_ids, attacks, labels, scores, strict=True):
            f.write(f"{u} {a} {'bonafide' if lab == BONAFIDE else 'spoof'} {float(s)!r}\n")
    return path
