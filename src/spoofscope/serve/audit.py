"""The audit trail: one row per decision (a file, a batch member, a live stream) and per
refused request, in a SQLite file (one process) or a PostgreSQL database (several service
processes share one trail); and a summary to watch for drift.

Both backends use one schema (:data:`SCHEMA`) and the same statements. When the database
cannot be written the service fails closed: the request gets 503 ``audit_unavailable`` and
no verdict leaves without its row (see :class:`AuditUnavailable`)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SpoofscopeError
from ..infer.schema import AUDIT_DECISION, AUDIT_REJECTION

log = logging.getLogger("spoofscope.serve")


def _table(name: str, record) -> str:
    """``CREATE TABLE`` for a record of :mod:`spoofscope.infer.schema` (a field that can be
    null is nullable; DOUBLE PRECISION is a REAL column in SQLite)."""
    kinds = {str: "TEXT", float: "DOUBLE PRECISION", int: "INTEGER"}
    cols = []
    for f in record.fields:
        parts = getattr(f.type, "__args__", (f.type,))
        kind = kinds[next(t for t in parts if t is not type(None))]
        cols.append(f"    {f.name} {kind}" + ("" if type(None) in parts else " NOT NULL"))
    return f"CREATE TABLE IF NOT EXISTS {name} (\n" + ",\n".join(cols) + "\n)"


#: one schema for SQLite and PostgreSQL, the tables' columns from the audit records
SCHEMA = (
    _table("decisions", AUDIT_DECISION),
    "CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time)",
    _table("rejections", AUDIT_REJECTION),
    "CREATE INDEX IF NOT EXISTS rejections_time ON rejections(time)",
    # live streams: the latest state of each (any replica can answer GET /v1/streams/{id})
    """CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    updated TEXT NOT NULL,
    state TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS stream_aliases (
    alias TEXT PRIMARY KEY,
    id TEXT NOT NULL
)""",
)


#: the most characters of an endpoint a rejection row stores
MAX_ENDPOINT = 200


class AuditUnavailable(SpoofscopeError):
    """The audit database cannot be written (or read) now."""


async def write_off_loop(write, *args, failing: str) -> bool:
    """``write(*args)`` (an :class:`AuditLog` method) on a worker thread, so that a slow or
    unreachable database never holds the event loop. False, and an error log line
    ``audit trail unavailable, <failing>: <why>``, when the trail cannot be written."""
    import asyncio

    try:
        await asyncio.to_thread(write, *args)
        return True
    except AuditUnavailable as e:
        log.error("audit trail unavailable, %s: %s", failing, e)
        return False


#: a libpq key=value connection string: ``keyword=value`` words (any keyword first, such as
#: keepalives= or sslrootcert=), at least one of them naming the server, the user or the password
_CONNINFO = re.compile(r"^\s*[a-z_]+\s*=", re.IGNORECASE)
_CONNINFO_KEY = re.compile(
    r"(^|\s)(host|hostaddr|port|dbname|user|password|passfile|service)\s*=", re.IGNORECASE
)
#: a URL of any scheme (postgresql:// in any case is PostgreSQL; others are refused)
_URL = re.compile(r"^\s*([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


def is_postgres(target) -> bool:
    """A ``postgresql://`` URL (the scheme in any case) or a libpq ``key=value`` connection
    string."""
    t = str(target)
    url = _URL.match(t)
    if url:
        return url.group(1).lower() in ("postgresql", "postgres")
    return bool(_CONNINFO.match(t) and _CONNINFO_KEY.search(t))


# the password in every form libpq takes: URL userinfo (up to the last @ of the authority, so
# that a password with an unencoded @ is masked whole), a password= query parameter, and a
# password= keyword of a key=value string (bare, or single-quoted with \' and \\ escapes)
_PASSWORDS = (
    re.compile(r"(?<=://)[^:/@?#\s]*:([^/?#\s]*)@"),
    re.compile(r"[?&]password=([^&#]*)", re.IGNORECASE),
    re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
)


def redact(target: str, text: str | None = None) -> str:
    """``text`` (default: ``target`` itself) with every password ``target`` holds replaced by
    ``***``, for messages and logs."""
    target = str(target)
    text = target if text is None else str(text)
    secrets = {m.group(1) for p in _PASSWORDS for m in p.finditer(target) if m.group(1)}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
        if secret.startswith("'"):  # the value inside its quotes, as libpq reports it
            text = text.replace(secret[1:-1].replace("\\'", "'"), "***")
    return text


class _SQLite:
    placeholder = "?"

    def __init__(self, path, readonly: bool = False):
        self.path = Path(path)
        self.name = str(self.path)
        self._lock = threading.Lock()
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"audit database {self.path} not found")
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            return
        parent = self.path.parent
        if not parent.is_dir():
            raise ConfigError(
                f"audit database {self.path}: the folder {parent} does not exist; create it "
                "first (a typo here would otherwise lose the audit trail in a new folder)"
            )
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            for stmt in SCHEMA:
                self._conn.execute(stmt)
            self._conn.commit()
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise ConfigError(
                f"audit database {self.path}: not a SQLite database ({e}); give a new file "
                "name or an existing spoofscope audit database"
            ) from None

    def execute(self, sql: str, args=()) -> None:
        with self._lock:
            try:
                self._conn.execute(sql, args)
                self._conn.commit()
            except sqlite3.OperationalError as e:  # disk full, locked for too long ...
                raise AuditUnavailable(f"audit database {self.path}: {e}") from None

    def query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as e:
                raise ConfigError(f"{self.path}: not a spoofscope audit database ({e})") from None

    def has_table(self, name: str) -> bool:
        q = "SELECT name FROM sqlite_master WHERE type='table' AND name=?"
        return bool(self.query(q, (name,)))

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Postgres:
    """A psycopg 3 connection pool; every statement commits on its own."""

    placeholder = "%s"

    def __init__(self, url: str, timeout_s: float = 3.0, readonly: bool = False):
        try:
            import psycopg  # noqa: F401 - the pool's driver: its absence is said here
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigError(
                "a PostgreSQL audit trail needs psycopg: pip install 'spoofscope[postgres]'"
            ) from None
        self.url, self.name = url, redact(url)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=8,
            timeout=timeout_s,
            open=False,
            check=ConnectionPool.check_connection,  # a connection broken by a restart is replaced
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout_s))},
        )
        pool_log = logging.getLogger("psycopg.pool")
        level = pool_log.level
        pool_log.setLevel(logging.ERROR)  # its retries at start: the one error below says it
        try:
            self.pool.open(wait=True, timeout=timeout_s)
            if not readonly:
                for stmt in SCHEMA:
                    self.execute(stmt)
        except Exception as e:  # noqa: BLE001 - refuse to start on a database we cannot use
            self.pool.close()
            why = redact(url, e)
            raise ConfigError(f"audit database {self.name}: cannot connect ({why})") from None
        finally:
            pool_log.setLevel(level)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, args=()) -> None:
        try:
            with self.pool.connection() as conn:
                conn.execute(self._sql(sql), args)
        except Exception as e:  # noqa: BLE001 - psycopg errors and pool timeouts alike
            why = redact(self.url, e)
            raise AuditUnavailable(
                f"audit database {self.name}: {type(e).__name__}: {why}"
            ) from None

    def query(self, sql: str, args=()) -> list[tuple]:
        try:
            with self.pool.connection() as conn:
                return conn.execute(self._sql(sql), args).fetchall()
        except Exception as e:  # noqa: BLE001
            why = redact(self.url, e)
            raise AuditUnavailable(
                f"audit database {self.name}: {type(e).__name__}: {why}"
            ) from None

    def has_table(self, name: str) -> bool:
        return bool(self.query("SELECT to_regclass(?)::text", (name,))[0][0])

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except AuditUnavailable:
            return False

    def close(self) -> None:
        self.pool.close()


def open_database(target, readonly: bool = False):
    """The backend for a SQLite path or a ``postgresql://`` URL."""
    t = str(target)
    url = _URL.match(t)
    if url and not is_postgres(t):
        raise ConfigError(
            f"audit database {redact(t)}: a {url.group(1)}:// URL; give a SQLite file or a "
            "postgresql:// URL"
        )
    if url:
        t = "postgresql://" + t[url.end() :]  # libpq reads the scheme in lower case only
        if t.split("/", 3)[2].count("@") > 1:  # libpq would take the rest for the host name
            raise ConfigError(
                f"audit database {redact(t)}: the user name or password holds an '@'; "
                "write it percent-encoded (%40)"
            )
    if is_postgres(t):
        return _Postgres(t, readonly=readonly)
    return _SQLite(target, readonly=readonly)


class AuditLog:
    """Thread-safe appender of decisions (SQLite file or PostgreSQL URL). Writes that fail
    raise :class:`AuditUnavailable`."""

    def __init__(self, target):
        self.db = open_database(target)
        self.path = self.db.name

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
        self.db.execute(
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
        key itself). The endpoint is cut to :data:`MAX_ENDPOINT` characters."""
        when = when or datetime.now(UTC)
        endpoint = endpoint[:MAX_ENDPOINT]
        digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else None
        self.db.execute(
            "INSERT INTO rejections VALUES (?,?,?,?,?,?)",
            (when.isoformat(timespec="milliseconds"), request_id, endpoint, status, reason, digest),
        )

    def put_stream(self, sid: str, state: dict, aliases=()) -> None:
        """The latest state of a live stream (insert or replace), findable by its aliases."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.db.execute(
            "INSERT INTO streams VALUES (?,?,?) ON CONFLICT (id) DO UPDATE SET "
            "updated = excluded.updated, state = excluded.state",
            (sid, now, json.dumps(state)),
        )
        for a in aliases:
            self.db.execute(
                "INSERT INTO stream_aliases VALUES (?,?) ON CONFLICT (alias) DO UPDATE SET "
                "id = excluded.id",
                (a, sid),
            )

    def get_stream(
        self, key: str, stale_after_s: float | None = None, alias: str | None = None
    ) -> dict | None:
        """A stream's latest state by its id or an alias (``alias``, default ``key``). A
        ``live`` state not updated for ``stale_after_s`` is a stream whose replica ended
        without recording its end: it is marked ``stale`` in the table and answered so."""
        rows = self.db.query(
            "SELECT s.id, s.updated, s.state FROM streams s WHERE s.id = ? OR s.id = "
            "(SELECT id FROM stream_aliases WHERE alias = ?)",
            (key, key if alias is None else alias),
        )
        if not rows:
            return None
        sid, updated, text = rows[0]
        state = json.loads(text)
        age = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds()
        if state.get("state") == "live" and stale_after_s is not None and age > stale_after_s:
            state = {
                "stream_id": sid,
                "state": "stale",
                "updated": updated,
                "message": f"no news of this stream for {age:.0f} s: the process that held it "
                "ended without recording its end; its verdict is not known",
                "owner": state.get("owner"),  # who may read it (the service's key scoping)
            }
            self.db.execute(  # unless its replica wrote meanwhile
                "UPDATE streams SET state = ? WHERE id = ? AND updated = ?",
                (json.dumps(state), sid, updated),
            )
        return state

    def ping(self) -> bool:
        return self.db.ping()

    def close(self):
        self.db.close()


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


def summarize(target, since: str | None = None, until: str | None = None) -> dict:
    """Counts by label, the low-confidence rate and the score distribution over a time range
    (bounds as :func:`parse_time_bound` reads them, inclusive), and the refused requests by
    reason. ``target``: the SQLite file or the ``postgresql://`` URL of the trail."""
    since = parse_time_bound(since) if since else None
    until = parse_time_bound(until) if until else None
    db = open_database(target, readonly=True)
    try:
        q = "SELECT time, score, label, confident FROM decisions WHERE 1=1"
        args: list = []
        if since:
            q += " AND time >= ?"
            args.append(since)
        if until:
            q += " AND time <= ?"
            args.append(until)
        rows = db.query(q + " ORDER BY time", args)
        rejected: dict[str, int] = {}
        if db.has_table("rejections"):
            rq = q.replace("time, score, label, confident FROM decisions", "reason FROM rejections")
            for (reason,) in db.query(rq, args):
                rejected[reason] = rejected.get(reason, 0) + 1
    finally:
        db.close()
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
