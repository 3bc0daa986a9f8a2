"""Fetch and check ASVspoof 2019 LA, and report what a dataset root holds."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ..errors import SpoofscopeError
from .datasets import LA2019_SPLITS, asvspoof2019_paths
from .formats import check_dataset

log = logging.getLogger(__name__)

#: Edinburgh DataShare, handle 10283/3336 (ASVspoof 2019, ODC-By 1.0).
ASVSPOOF2019_LA_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3336/LA.zip"


class DownloadError(SpoofscopeError, RuntimeError):
    """A download or archive check that failed; says what to do next. ``reason`` is the
    short cause (for callers that give their own advice)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def connection_error(url: str, timeout_s: float = 3.0) -> str | None:
    """Why ``url``'s host (or the proxy urllib would use for it) takes no TCP connection within
    ``timeout_s``, or None. The name lookup counts too (it runs in a thread: a resolver that
    cannot be reached would otherwise hold the first download of an offline machine for its own
    retries)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("http", "https"):
        return None
    proxy = urllib.request.getproxies().get(u.scheme)
    if proxy and not urllib.request.proxy_bypass(u.hostname or ""):
        u = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e.strerror or str(e) or type(e).__name__)

    t = threading.Thread(target=connect, daemon=True, name="spoofscope-connect")
    t.start()
    t.join(timeout_s)
    if not outcome:
        return f"no connection to {host} within {timeout_s:g} s; offline?"
    return None if outcome[0] is None else f"no connection to {host}: {outcome[0]}; offline?"


def download_file(url: str, dest, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` if an earlier try stopped.

    Uses an HTTP Range request; a server that ignores it makes the download start over. A host
    that takes no connection within 3 s fails at once (offline); ``timeout`` bounds each read.
    """
    from tqdm.auto import tqdm

    why = connection_error(url)
    if why is not None:
        raise DownloadError(
            f"cannot reach {url} ({why}). Download it by hand and place it at {dest}, then run "
            "the command again",
            f"cannot reach {url}: {why}",
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the part file is already complete
            part.replace(dest)
            return dest
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}", f"HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DownloadError(
            f"cannot reach {url} ({getattr(e, 'reason', e)}). Download it by hand and "
            f"place it at {dest}, then run the command again",
            f"cannot reach {url}: {getattr(e, 'reason', e)}",
        ) from None
    with resp:
        resumed = resp.status == 206
        if have and not resumed:
            log.info("server ignored the range request; restarting %s", url)
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if resumed else "wb"
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; run the command again to resume"
        )
    part.replace(dest)
    return dest


def verify_zip(path) -> list[str]:
    """CRC-check every member of a zip archive; returns the member names."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = z.namelist()
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{path}: not a valid zip archive ({e}); delete it and retry") from None
    if bad is not None:
        raise DownloadError(f"{path}: member {bad} fails its CRC check; delete it and retry")
    return names


def download_asvspoof2019_la(
    root, url: str = ASVSPOOF2019_LA_URL, progress: bool = True, keep_archive: bool = False
) -> dict:
    """Download ``LA.zip``, check it, unpack it under ``root`` and verify the official tree.

    Returns the :func:`~spoofscope.data.check_dataset` report of the unpacked tree.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "LA.zip"
    if not archive.exists():
        download_file(url, archive, progress=progress)
    names = verify_zip(archive)
    want = [asvspoof2019_paths(Path(""), s)[0].as_posix() for s in LA2019_SPLITS]
    missing = [w for w in want if w not in names]
    if missing:
        raise DownloadError(f"{archive}: the archive lacks {', '.join(missing)}")
    with zipfile.ZipFile(archive) as z:
        for m in z.infolist():
            target = (root / m.filename).resolve()
            if not str(target).startswith(str(root.resolve())):
                raise DownloadError(f"{archive}: member {m.filename} escapes the target folder")
        z.extractall(root)
    report = check_dataset(root)
    bad = {s: r["missing_files"] for s, r in report["splits"].items() if r["missing_files"]}
    if bad:
        raise DownloadError(f"unpacked tree under {root} lacks audio files: {bad}")
    if not keep_archive:
        archive.unlink()
    return report
