"""Where in a recording the spoof is: localisation metrics of PartialSpoof.

* :func:`range_eer`: the range-based EER (L. Zhang, X. Wang, E. Cooper, N. Evans and
  J. Yamagishi, "Range-based equal error rate for spoof localization", Interspeech 2023;
  official code nii-yamagishilab/PartialSpoof ``metric/RangeEER.py``). For a threshold t the
  hypothesis calls spoof every stretch whose score is at most t (scores: higher = bona fide,
  as every spoofscope score); the false-alarm duration (called spoof, bona fide in the
  reference) over the total bona fide duration and the miss duration (spoof in the reference,
  not called) over the total spoof duration are summed over all files; the EER is where the
  two rates cross. The official code searches t by bisection; here every distinct score is a
  candidate, so the crossing is exact: the EER is the mean of the two rates at the threshold
  where they differ least (the ASVspoof convention). A rate whose total is zero is 0 when
  nothing is counted (the official ``_compute_rate``).
* :func:`segment_eer`: EER over fixed units of ``resolution`` seconds (PartialSpoof's
  20-640 ms segment labels): a unit is spoof when any of it is spoof in the reference, and its
  score is the lowest (most spoof-like) hypothesis score over it.
* :func:`utterance_eer`: a file is spoof when any of it is; its score is its lowest step.

A reference is ``{file: [(start_s, end_s), ...]}`` (the spoofed stretches) with the files'
durations; a hypothesis is ``{file: [(start_s, end_s, score or None), ...]}`` (a timeline:
None where nothing was judged, which is never called spoof; stretches it does not cover are
treated the same way). numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from ._det import compute_eer


def _rate(num: float, den: float) -> float:
    if den == 0.0:
        return 0.0 if num == 0.0 else 1.0
    return num / den


def _pieces(spoof, duration: float, timeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The file cut at every reference and hypothesis boundary: (durations, scores (inf where
    nothing was judged), spoof in the reference)."""
    cuts = {0.0, float(duration)}
    for a, b in spoof:
        cuts.update((min(max(a, 0.0), duration), min(max(b, 0.0), duration)))
    for a, b, _ in timeline:
        cuts.update((min(max(a, 0.0), duration), min(max(b, 0.0), duration)))
    edges = np.array(sorted(cuts))
    mids = (edges[:-1] + edges[1:]) / 2
    d = np.diff(edges)
    is_spoof = np.zeros(mids.size, bool)
    for a, b in spoof:
        is_spoof |= (mids > a) & (mids < b)
    scores = np.full(mids.size, np.inf)
    for a, b, s in timeline:
        if s is not None:
            inside = (mids > a) & (mids < b)
            scores[inside] = np.minimum(scores[inside], s)
    keep = d > 0
    return d[keep], scores[keep], is_spoof[keep]


def _check(reference, durations, hypothesis) -> list[str]:
    missing = sorted(set(durations) - set(hypothesis))
    if missing:
        raise ValueError(
            f"{len(missing)} file(s) of the reference have no hypothesis: " + ", ".join(missing[:5])
        )
    unknown = sorted(set(reference) - set(durations))
    if unknown:
        raise ValueError(f"no duration for reference file(s): {', '.join(unknown[:5])}")
    return sorted(durations)


def range_eer(reference: dict, durations: dict, hypothesis: dict) -> dict:
    """Range-based EER over all files (see the module docstring).

    Returns ``{"eer", "threshold", "false_alarm_rate", "miss_rate", "bonafide_s",
    "spoof_s"}``; rates as fractions, durations in seconds.
    """
    ids = _check(reference, durations, hypothesis)
    parts = [_pieces(reference.get(f, []), durations[f], hypothesis[f]) for f in ids]
    d = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    s = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    y = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, bool)
    bona_total, spoof_total = float(d[~y].sum()), float(d[y].sum())
    order = np.argsort(s, kind="stable")
    d, s, y = d[order], s[order], y[order]
    # thresholds: below every score (nothing called spoof), then each distinct finite score
    # (everything scored at or below it called spoof)
    finite = np.isfinite(s)
    cand = np.unique(s[finite])
    fa = np.concatenate([[0.0], np.cumsum(np.where(~y, d, 0.0))])  # bona fide called spoof
    hit = np.concatenate([[0.0], np.cumsum(np.where(y, d, 0.0))])  # spoof called spoof
    upto = np.searchsorted(s, cand, side="right")  # pieces with score <= candidate
    idx = np.concatenate([[0], upto])
    thresholds = np.concatenate([[-math.inf], cand])
    fpr = np.array([_rate(fa[i], bona_total) for i in idx])
    fnr = np.array([_rate(spoof_total - hit[i], spoof_total) for i in idx])
    k = int(np.argmin(np.abs(fpr - fnr)))
    return {
        "eer": float((fpr[k] + fnr[k]) / 2),
        "threshold": float(thresholds[k]),
        "false_alarm_rate": float(fpr[k]),
        "miss_rate": float(fnr[k]),
        "bonafide_s": bona_total,
        "spoof_s": spoof_total,
    }


def segment_eer(reference: dict, durations: dict, hypothesis: dict, resolution: float) -> dict:
    """EER over units of ``resolution`` seconds (a last, shorter unit included); units with
    no judged score are left out. Returns ``{"eer", "threshold", "n_bonafide", "n_spoof"}``."""
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    ids = _check(reference, durations, hypothesis)
    bona, spoof = [], []
    for f in ids:
        dur = durations[f]
        n = max(1, math.ceil(dur / resolution - 1e-9))
        for k in range(n):
            a, b = k * resolution, min((k + 1) * resolution, dur)
            ref_spoof = any(min(b, e) > max(a, st) for st, e in reference.get(f, []))
            sc = [sv for st, e, sv in hypothesis[f] if sv is not None and min(b, e) > max(a, st)]
            if not sc:
                continue
            (spoof if ref_spoof else bona).append(min(sc))
    eer, thr = _eer(bona, spoof)
    return {"eer": eer, "threshold": thr, "n_bonafide": len(bona), "n_spoof": len(spoof)}


def utterance_eer(reference: dict, durations: dict, hypothesis: dict) -> dict:
    """EER over files: spoof when any stretch is spoof; score = the lowest judged step."""
    ids = _check(reference, durations, hypothesis)
    bona, spoof = [], []
    for f in ids:
        sc = [s for _, _, s in hypothesis[f] if s is not None]
        if not sc:
            continue
        (spoof if reference.get(f) else bona).append(min(sc))
    eer, thr = _eer(bona, spoof)
    return {"eer": eer, "threshold": thr, "n_bonafide": len(bona), "n_spoof": len(spoof)}


def _eer(bona, spoof) -> tuple[float, float]:
    if not bona or not spoof:
        raise ValueError(
            f"an EER needs both classes; got {len(bona)} bona fide and {len(spoof)} spoof"
        )
    eer, thr = compute_eer(np.asarray(bona, float), np.asarray(spoof, float))
    return float(eer), float(thr)


# ---- files -------------------------------------------------------------------------------------
def read_rttm(
    path, labels=None, disjoint: bool = False
) -> dict[str, list[tuple[float, float, str]]]:
    """``SPEAKER <file> <chan> <start> <dur> <NA> <NA> <label> <NA> <NA>`` lines ->
    ``{file: [(start, end, label), ...]}``. A malformed line, a label not among ``labels``
    (case-insensitive; any when None), or with ``disjoint`` a segment overlapping an earlier
    one of its file raises ``ValueError`` naming the file, the line number and the line."""
    out: dict[str, list] = {}
    lines: dict[str, list] = {}  # file -> [(start, end, line number)]
    allowed = None if labels is None else {x.lower() for x in labels}
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if parts[0] != "SPEAKER" or len(parts) < 8:
                    raise ValueError
                start, dur = float(parts[3]), float(parts[4])
                if not (math.isfinite(start) and math.isfinite(dur)) or dur < 0 or start < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"{path}:{n}: not an RTTM line (SPEAKER FILE CHANNEL START DURATION <NA> "
                    f"<NA> LABEL ...): {line.strip()!r}"
                ) from None
            if allowed is not None and parts[7].lower() not in allowed:
                raise ValueError(
                    f"{path}:{n}: label {parts[7]!r} is neither spoof nor bona fide (one of "
                    f"{', '.join(labels)}): {line.strip()!r}"
                )
            if disjoint:
                for a, b, m in lines.get(parts[1], []):
                    if min(b, start + dur) > max(a, start):
                        raise ValueError(
                            f"{path}:{n}: {start:g}-{start + dur:g} s overlaps {a:g}-{b:g} s of "
                            f"{parts[1]} (line {m}); a reference gives each moment one label"
                        )
                lines.setdefault(parts[1], []).append((start, start + dur, n))
            out.setdefault(parts[1], []).append((start, start + dur, parts[7]))
    return out


def spoof_stretches(rttm: dict, spoof_labels=("spoof", "fake")) -> dict[str, list]:
    """The stretches labelled spoof in an RTTM mapping (other labels are bona fide)."""
    return {
        f: [(a, b) for a, b, lab in rows if lab.lower() in spoof_labels] for f, rows in rttm.items()
    }


def read_partialspoof_labels(path, resolution: float, spoof_value: str = "0") -> tuple[dict, dict]:
    """PartialSpoof's segment labels (``{utt: array of '0'/'1'}`` in a ``.npy``, one label per
    ``resolution`` seconds; the corpus writes '1' for bona fide and '0' for spoof) ->
    ``(spoof stretches, durations)``."""
    labels = np.load(path, allow_pickle=True).item()
    spoof, durs = {}, {}
    for utt, lab in labels.items():
        lab = np.asarray(lab).astype(str)
        is_spoof = lab == str(spoof_value)
        runs, start = [], None
        for k, v in enumerate(is_spoof):
            if v and start is None:
                start = k
            if not v and start is not None:
                runs.append((start * resolution, k * resolution))
                start = None
        if start is not None:
            runs.append((start * resolution, lab.size * resolution))
        spoof[str(utt)], durs[str(utt)] = runs, lab.size * resolution
    return spoof, durs


def write_rttm(fh, file_id: str, segments) -> None:
    """Segments ``[{start_s, end_s, label}, ...]`` as RTTM lines (no_speech left out)."""
    for s in segments:
        if s["label"] == "no_speech":
            continue
        dur = s["end_s"] - s["start_s"]
        fh.write(
            f"SPEAKER {file_id} 1 {s['start_s']:.3f} {dur:.3f} <NA> <NA> {s['label']} <NA> <NA>\n"
        )


__all__ = [
    "range_eer",
    "read_partialspoof_labels",
    "read_rttm",
    "segment_eer",
    "spoof_stretches",
    "utterance_eer",
    "write_rttm",
]
