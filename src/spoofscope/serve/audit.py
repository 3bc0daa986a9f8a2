"""The audit trail: one SQLite row per decision, and a summary to watch for drift."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from ..errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    time TEXT NOT NULL,
    request_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    duration_s REAL,
    score REAL,
    label TEXT,
    p_bonafide REAL,
    confident INTEGER,
    model TEXT,
    version TEXT
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time);
CREATE TABLE IF NOT EXISTS rejections (
    time TEXT NOT NULL,
    request_id TEXT NOT NULL,
    endpoint TEXT,
    status INTEGER,
    reason TEXT,
    api_key_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS rejections_time ON rejections(time);
"""


class AuditLog:
    """Thread-safe appender of decisions to a SQLite file."""

    def __init__(self, path):
        self.path = Path(path)
        parent = self.path.parent
        if not parent.is_dir():
            raise ConfigError(
                f"audit database {self.path}: the folder {parent} does not exist; create it "
                "first (a typo here would otherwise lose the audit trail in a new folder)"
            )
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            self._conn.executescript(SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise ConfigError(
                f"audit database {self.path}: not a SQLite database ({e}); give a new file "
                "name or an existing spoofscope audit database"
            ) from None

    def record(
        self,
        request_id: str,
        sha256: str,
        result: dict,
        model: str,
        version: str,
        when: datetime | None = None,
    ) -> None:
        when = when or datetime.now(UTC)
        with self._lock:
            self._conn.execute(
                "INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    when.isoformat(timespec="milliseconds"),
                    request_id,
                    sha256,
                    result.get("duration_s"),
                    result.get("score"),
                    result.get("label"),
                    result.get("p_bonafide"),
                    None if result.get("confident") is None else int(result["confident"]),
                    model,
                    version,
                ),
            )
            self._conn.commit()

    def record_rejection(
        self,
        request_id: str,
        endpoint: str,
        status: int,
        reason: str,
        api_key: str | None,
        when: datetime | None = None,
    ) -> None:
        """A refused request: its reason and a sha256 of the API key it presented (never the
        key itself)."""
        when = when or datetime.now(UTC)
        digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else None
        with self._lock:
            self._conn.execute(
                "INSERT INTO rejections VALUES (?,?,?,?,?,?)",
                (
                    when.isoformat(timespec="milliseconds"),
                    request_id,
                    endpoint,
                    status,
                    reason,
                    digest,
                ),
            )
            self._conn.commit()

    def close(self):
        with self._lock:
            self._conn.close()


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time_bound(text: str, now: datetime | None = None) -> str:
    """An ISO 8601 date or time (``2026-11-01``, ``2026-11-01T08:00``, UTC unless it says),
    or a duration back from now (``90m``, ``24h``, ``7d``, ``2w``), as the ISO time the audit
    rows use. Anything else is a :class:`ConfigError`."""
    t = text.strip()
    m = _DURATION.match(t)
    if m:
        ago = timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
        return ((now or datetime.now(UTC)) - ago).isoformat(timespec="milliseconds")
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(
            f"{text!r} is neither an ISO date/time (2026-11-01, 2026-11-01T08:00:00) nor a "
            "duration (90m, 24h, 7d, 2w)"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.astimezone(UTC).isoformat(timespec="milliseconds")


def summarize(path, since: str | None = None, until: str | None = None) -> dict:
    """Counts by label, the low-confidence rate and the score distribution over a time range
    (bounds as :func:`parse_time_bound` reads them, inclusive), and the refused requests by
    reason."""
    since = parse_time_bound(since) if since else None
    until = parse_time_bound(until) if until else None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"audit database {p} not found")
    conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        q = "SELECT time, score, label, confident FROM decisions WHERE 1=1"
        args: list = []
        if since:
            q += " AND time >= ?"
            args.append(since)
        if until:
            q += " AND time <= ?"
            args.append(until)
        rows = conn.execute(q + " ORDER BY time", args).fetchall()
        has_rej = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='rejections'"
        ).fetchone()
        rejected: dict[str, int] = {}
        if has_rej:
            rq = q.replace("time, score, label, confident FROM decisions", "reason FROM rejections")
            for (reason,) in conn.execute(rq, args).fetchall():
                rejected[reason] = rejected.get(reason, 0) + 1
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{p}: not a spoofscope audit database ({e})") from None
    finally:
        conn.close()
    scores = np.array([r[1] for r in rows if r[1] is not None], dtype=float)
    labels: dict[str, int] = {}
    for r in rows:
        labels[r[2] or "error"] = labels.get(r[2] or "error", 0) + 1
    # low confidence is a property of verdicts; an abstention (no_speech) is not a verdict
    # and a verdict of an uncalibrated detector claims no confidence at all (confident null)
    verdicts = [r[3] for r in rows if r[2] in ("bonafide", "spoof")]
    conf = [c for c in verdicts if c is not None]
    abstained = sum(r[2] == "no_speech" for r in rows)
    out = {
        "decisions": len(rows),
        "first": rows[0][0] if rows else None,
        "last": rows[-1][0] if rows else None,
        "by_label": labels,
        "verdicts": len(verdicts),
        "no_confidence_claimed": len(verdicts) - len(conf),
        "low_confidence_rate": (float(np.mean([c == 0 for c in conf])) if conf else None),
        "abstained": abstained,
        "abstention_rate": abstained / len(rows) if rows else None,
        "rejected": rejected,
        "score": None,
    }
    if scores.size:
        q = np.quantile(scores, [0.05, 0.25, 0.5, 0.75, 0.95])
        hist, edges = np.histogram(scores, bins=10)
        out["score"] = {
            "mean": float(scores.mean()),
            "std": float(scores.std()),
            "quantiles": dict(zip(["p05", "p25", "p50", "p75", "p95"], map(float, q), strict=True)),
            "histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
        }
    return out


def format_summary(s: dict) -> str:
    span = f"({s['first']} .. {s['last']})" if s["decisions"] else "(none in this period)"
    lines = [f"decisions        {s['decisions']}  {span}"]
    lines.append(
        "by label         "
        + (", ".join(f"{k}: {v}" for k, v in sorted(s["by_label"].items())) or "-")
    )
    rate, unclaimed = s["low_confidence_rate"], s.get("no_confidence_claimed", 0)
    claimed = s["verdicts"] - unclaimed
    lines.append(
        "low confidence   "
        + ("n/a" if rate is None else f"{100 * rate:.1f} % of {claimed} verdicts")
        + (
            f"; {unclaimed} of {s['verdicts']} verdicts claim none (uncalibrated)"
            if unclaimed
            else ""
        )
    )
    ab = s["abstention_rate"]
    lines.append(
        "abstained        "
        + ("n/a" if ab is None else f"{s['abstained']} ({100 * ab:.1f} % of decisions, no_speech)")
    )
    rej = s.get("rejected") or {}
    lines.append(
        "rejected         " + (", ".join(f"{k}: {v}" for k, v in sorted(rej.items())) or "0")
    )
    if s["score"]:
        q = s["score"]["quantiles"]
        lines.append(
            f"score mean {s['score']['mean']:.4f}, std {s['score']['std']:.4f}; "
            + ", ".join(f"{k} {v:.4f}" for k, v in q.items())
        )
        h = s["score"]["histogram"]
        top = max(h["counts"]) or 1
        for c, lo, hi in zip(h["counts"], h["edges"][:-1], h["edges"][1:], strict=True):
            lines.append(f"  [{lo:8.3f}, {hi:8.3f})  {'#' * int(40 * c / top)} {c}")
    return "\n".join(lines)
