"""Where in a recording: a timeline of scores and the segments read off it.

The **timeline** cuts the file into steps of ``step_s`` (at most 0.5 s); a step's score is the
mean score of every judged window that overlaps it, and it is null where the activity meter
found no sound in the step (or no window judged it). The **segments** cover the file without
gaps, each ``bonafide``, ``spoof`` or ``no_speech``, by this rule:

1. each step with a score is labelled by the detector's decision rule, with hysteresis in
   probability: once a run is bona fide it turns spoof only where the step's ``p_bonafide``
   falls below the probability at the threshold by more than ``hysteresis`` (the detector's
   low-confidence band, 0.1 by default), and back only where it rises above it by as much,
   so that a score wavering at the threshold does not cut the recording into slivers; the
   band is at most half the way from the threshold's probability to 0 or to 1, so that a
   threshold near either end (a calibrated or explicit one: 0.024 for the demo's model) can
   still be crossed;
2. a bona fide or spoof run shorter than ``min_duration_s`` takes the label of the longer of
   its neighbours (no_speech runs are kept: they come from the signal, not the model);
3. boundaries are snapped to the sound: a boundary next to a no_speech run moves to the first
   (or last) active 20-ms frame, and a bona fide/spoof boundary moves to the middle of the
   longest pause of at least 0.1 s within one step of it, where a splice most likely is.

A segment's score and ``p_bonafide`` are the duration-weighted means of its steps'.
"""

from __future__ import annotations

import numpy as np

#: a bona fide or spoof run shorter than this takes a neighbour's label (rule 2); 0.5 s finds
#: more spliced stretches than 1 s without more false alarms, and a stream's segment events
#: come as early (benchmarks/localisation_real.py, docs/localise.md)
MIN_SEGMENT_S = 0.5


def step_grid(duration_s: float, step_s: float) -> np.ndarray:
    """Step edges over [0, duration]: every ``step_s``, the last step shorter."""
    n = max(1, int(np.ceil(duration_s / step_s - 1e-9)))
    return np.minimum(np.arange(n + 1) * step_s, duration_s)


def _has_sound(active: np.ndarray | None, a: float, b: float, frame_s: float) -> bool:
    """Whether any activity frame overlapping [a, b) seconds is active (True without a mask)."""
    if active is None:
        return True
    fa = int(a / frame_s)
    return bool(active[fa : max(int(np.ceil(b / frame_s)), fa + 1)].any())


def build_timeline(
    windows: list[tuple[float, float, float | None, float | None]],
    duration_s: float,
    step_s: float,
    active: np.ndarray | None,
    frame_s: float = 0.02,
) -> list[dict]:
    """``windows``: ``(start_s, end_s, score, p_bonafide)`` of each window (score None when
    it was not judged); ``active``: the activity mask of 20-ms frames (None: all active).
    Returns ``[{start_s, end_s, score, p}]`` (None where nothing is judged)."""
    edges = step_grid(duration_s, step_s)
    lo, hi = edges[:-1], edges[1:]
    # a window [s, e) covers the step [a, b) where s < b and e > a; as e > s, every window
    # with e <= a also has s < b, so the covering ones are those starting before b less those
    # ending by a: two sorted searches and two running sums, not a pass over every window for
    # every step (a stream rebuilds its timeline on every call). A window starting at or past
    # the end, clipped there, is in neither count: it starts after every b and ends after every a
    w = np.array(
        [(a, min(b, duration_s), s, m) for a, b, s, m in windows if s is not None], float
    ).reshape(-1, 4)
    by_s, by_e = w[np.argsort(w[:, 0], kind="stable")], w[np.argsort(w[:, 1], kind="stable")]
    zero = np.zeros((1, 2))
    sum_s = np.concatenate([zero, np.cumsum(by_s[:, 2:], axis=0)])
    sum_e = np.concatenate([zero, np.cumsum(by_e[:, 2:], axis=0)])
    n_s = np.searchsorted(by_s[:, 0], hi, side="left")  # windows starting before b
    n_e = np.searchsorted(by_e[:, 1], lo, side="right")  # windows ending at or before a
    count = n_s - n_e
    mean = (sum_s[n_s] - sum_e[n_e]) / np.maximum(count, 1)[:, None]
    out = []
    for k, (a, b) in enumerate(zip(lo, hi, strict=True)):
        score = prob = None
        if count[k] > 0 and _has_sound(active, a, b, frame_s):
            score, prob = float(mean[k, 0]), float(mean[k, 1])
        out.append(
            {"start_s": round(float(a), 3), "end_s": round(float(b), 3), "score": score,
             "p": prob}
        )  # fmt: skip
    return out


def frame_timeline(
    windows: list[tuple[int, np.ndarray]],
    probs: list[np.ndarray],
    n_samples: int,
    hop: int,
    sample_rate: int,
    active: np.ndarray | None,
    frame_s: float = 0.02,
) -> list[dict]:
    """A timeline at the model's frame rate (one step per encoder frame, ``hop`` samples):
    ``windows`` holds each judged window's start (samples) and its frames' scores, ``probs``
    their p_bonafide; a step's score is the mean over the windows whose frame ``t`` starts
    there (frame t of a window at s starts at s + t * hop), null without speech."""
    n = max(1, -(-n_samples // hop))
    tot_s, tot_p, cnt = np.zeros(n), np.zeros(n), np.zeros(n)
    for (start, fs), fp in zip(windows, probs, strict=True):
        first = int(round(start / hop))
        m = max(0, min(fs.size, n - first))
        tot_s[first : first + m] += fs[:m]
        tot_p[first : first + m] += fp[:m]
        cnt[first : first + m] += 1
    out = []
    for k in range(n):
        a, b = k * hop / sample_rate, min((k + 1) * hop, n_samples) / sample_rate
        ok = _has_sound(active, a, b, frame_s) and cnt[k] > 0
        out.append({
            "start_s": round(a, 3), "end_s": round(b, 3),
            "score": float(tot_s[k] / cnt[k]) if ok else None,
            "p": float(tot_p[k] / cnt[k]) if ok else None,
        })  # fmt: skip
    return out


#: a localisation step is read as spoof where its log-odds falls this far below the file's
#: typical verdict window (measured: benchmarks/localisation_real.py)
ANCHOR_DROP = 3.0
#: how much a step's distance from the file's typical step counts (measured likewise: short
#: windows score nearer one another than their content differs)
ANCHOR_GAIN = 2.0


def typical(values) -> float:
    """A file's typical step: the mean of its middle half (the interquartile mean), which a
    spoofed stretch of up to a quarter of the file hardly moves (measured against the median
    in benchmarks/localisation_real.py)."""
    v = np.sort(np.asarray(values, float))
    lo, hi = int(np.floor(v.size / 4)), int(np.ceil(3 * v.size / 4))
    return float(v[lo:hi].mean()) if hi > lo else float(np.median(v))


def anchor(
    steps: list[dict], score: float, p: float, drop: float | None = None, gain: float | None = None
) -> list[dict]:
    """Localisation steps read relative to the file's typical one (:func:`typical`): each
    step's score is ``score`` (the median verdict window's) plus ``gain`` times its distance
    from the typical step's, and its log-odds is the log-odds of ``p`` (the median verdict
    window's) less ``drop``, plus ``gain`` times its distance from the typical step's
    log-odds. Localisation windows shorter than the verdict's score lower (or higher)
    throughout; anchored, a recording whose windows are typically bona fide keeps its typical
    steps bona fide and turns spoof where a step falls far enough below them, and one
    typically spoof stays spoof where it is typical (not split). None: :data:`ANCHOR_DROP`,
    :data:`ANCHOR_GAIN` (read when called)."""
    drop = ANCHOR_DROP if drop is None else drop
    gain = ANCHOR_GAIN if gain is None else gain
    judged = [t for t in steps if t["p"] is not None]
    if not judged:
        return steps
    s0 = typical([t["score"] for t in judged])
    l0 = typical([_logit(t["p"]) for t in judged])
    lp = _logit(p) - drop
    return [
        t if t["p"] is None
        else {**t, "score": score + gain * (t["score"] - s0),
              "p": float(1 / (1 + np.exp(-(lp + gain * (_logit(t["p"]) - l0)))))}
        for t in steps
    ]  # fmt: skip


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)))


def _runs(labels: list[str]) -> list[list]:
    runs: list[list] = []
    for k, lab in enumerate(labels):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = k + 1
        else:
            runs.append([lab, k, k + 1])
    return runs


def _longest_pause(active, lo_s, hi_s, frame_s, min_s=0.1) -> float | None:
    """Middle of the longest inactive run (>= ``min_s``, measured whole) that reaches into
    [lo_s, hi_s], or None."""
    a, b = max(int(lo_s / frame_s), 0), min(int(np.ceil(hi_s / frame_s)), active.size)
    quiet = np.flatnonzero(~active[a:b]) + a
    best = None
    for k in quiet:
        if best is not None and best[0] <= k < best[1]:
            continue
        s, e = k, k + 1  # grow the run to its full extent, beyond the window too
        while s > 0 and not active[s - 1]:
            s -= 1
        while e < active.size and not active[e]:
            e += 1
        if (e - s) * frame_s >= min_s and (best is None or e - s > best[1] - best[0]):
            best = (s, e)
    return None if best is None else (best[0] + best[1]) / 2 * frame_s


def build_segments(
    timeline: list[dict],
    active: np.ndarray | None,
    p_threshold: float = 0.5,
    hysteresis: float = 0.1,
    min_duration_s: float | None = None,
    frame_s: float = 0.02,
    runs: bool = False,
) -> list[dict]:
    """Contiguous segments ``[{start_s, end_s, label, score, p_bonafide}]`` (see the module
    docstring); ``p_threshold``: the probability at the decision threshold;
    ``min_duration_s`` None: :data:`MIN_SEGMENT_S` (read when called). ``runs``: each
    segment also gives ``run_s``, its ``(start_s, end_s)`` as rule 2 measured it (before
    rule 3 snapped its edges), which :func:`settled` reads."""
    min_duration_s = MIN_SEGMENT_S if min_duration_s is None else min_duration_s
    labels: list[str] = []
    state = None
    lo = min(hysteresis, p_threshold / 2)  # the band never reaches past 0 or 1 (rule 1)
    hi = min(hysteresis, (1 - p_threshold) / 2)
    for st in timeline:
        m = None if st["p"] is None else st["p"] - p_threshold
        if m is None:
            labels.append("no_speech")
            continue
        if state is None:
            state = "bonafide" if m >= 0 else "spoof"
        elif state == "bonafide" and m < -lo:
            state = "spoof"
        elif state == "spoof" and m > hi:
            state = "bonafide"
        labels.append(state)
    # 2. short bona fide / spoof runs take the longer neighbour's label (repeat until stable)
    changed = True
    while changed:
        changed = False
        spans = _runs(labels)
        for i, (lab, a, b) in enumerate(spans):
            if lab == "no_speech":
                continue
            dur = timeline[b - 1]["end_s"] - timeline[a]["start_s"]
            around = spans[max(i - 1, 0) : i] + spans[i + 1 : i + 2]
            neigh = [r for r in around if r[0] not in ("no_speech", lab)]
            if dur < min_duration_s and neigh:
                best = max(neigh, key=lambda r: r[2] - r[1])
                labels[a:b] = [best[0]] * (b - a)
                changed = True
                break
    # 3. segments with snapped boundaries
    segs = []
    for lab, a, b in _runs(labels):
        start, end = timeline[a]["start_s"], timeline[b - 1]["end_s"]
        steps = [t for t in timeline[a:b] if t["score"] is not None]
        dur = sum(t["end_s"] - t["start_s"] for t in steps)
        score = sum(t["score"] * (t["end_s"] - t["start_s"]) for t in steps) / dur if dur else None
        prob = sum(t["p"] * (t["end_s"] - t["start_s"]) for t in steps) / dur if dur else None
        segs.append({"start_s": start, "end_s": end, "label": lab, "score": score,
                     "p_bonafide": prob})  # fmt: skip
        if runs:
            segs[-1]["run_s"] = (start, end)
    if active is not None:
        step = (timeline[0]["end_s"] - timeline[0]["start_s"]) if timeline else 0.5
        for left, right in zip(segs[:-1], segs[1:], strict=True):
            edge = right["start_s"]
            if "no_speech" in (left["label"], right["label"]):
                speech = right if left["label"] == "no_speech" else left
                lo, hi = int(speech["start_s"] / frame_s), int(np.ceil(speech["end_s"] / frame_s))
                idx = np.flatnonzero(active[lo:hi])
                if idx.size:
                    edge = (
                        (lo + idx[0]) * frame_s if speech is right else (lo + idx[-1] + 1) * frame_s
                    )
            else:
                mid = _longest_pause(active, edge - step, edge + step, frame_s)
                if mid is not None:
                    edge = mid
            edge = min(max(edge, left["start_s"]), right["end_s"])
            left["end_s"] = right["start_s"] = round(float(edge), 3)
    return [s for s in segs if s["end_s"] > s["start_s"]]


def settled(segments: list[dict], final_s: float, step_s: float, min_duration_s=None) -> int:
    """How many of ``segments`` (:func:`build_segments` with ``runs``, on the steps of the
    audio so far; the first one starting where the last one given ended) no later audio can
    change, when the steps before ``final_s`` are final. The hysteresis runs forwards; a run
    shorter than the minimum takes a neighbour's label; an edge snaps to a pause within one
    step. So a segment is settled once the run after it is stable (no speech, a short run
    between two pauses, or at least the minimum long as rule 2 measured it, before its edges
    snapped: snapping can shorten it, never relabel it) and ends a minimum duration and a step
    before ``final_s``. ``min_duration_s`` None: :data:`MIN_SEGMENT_S` (read when called)."""
    least = MIN_SEGMENT_S if min_duration_s is None else min_duration_s
    horizon = final_s - least - step_s
    n = 0
    for k in range(len(segments) - 1):
        seg, after = segments[k], segments[k + 1]
        nxt = segments[k + 2] if k + 2 < len(segments) else None
        # (a short run between two pauses keeps its label: it has no speech neighbour)
        between_pauses = (
            seg["label"] == "no_speech"
            and nxt is not None
            and nxt["label"] == "no_speech"
            and nxt["end_s"] <= horizon
        )
        a, b = after["run_s"]
        stable = after["label"] == "no_speech" or b - a >= least or between_pauses
        if not (stable and after["end_s"] <= horizon):
            break
        n = k + 1
    return n
