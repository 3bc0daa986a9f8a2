"""A throw-away PostgreSQL server for the tests: Debian's initdb and pg_ctl in a temporary folder
on a free port (no system service). PostgreSQL refuses to run as root; as root the server runs
as the ``postgres`` user (made by Debian's package) or ``nobody``."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from _server import free_port


def pg_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("pg_ctl")
    return Path(exe).parent if exe else None


def rows(url: str, sql: str) -> list[tuple]:
    """What ``sql`` returns from the database at ``url`` (nothing for a statement)."""
    import psycopg

    with psycopg.connect(url) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


class PgServer:
    def __init__(self):
        self.bin = pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="spoofscope-pg-"))
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"

    def _run(self, *args, check=True, timeout=120):
        def drop():
            if self.user is not None:
                os.setgid(self.user.pw_gid)
                os.setuid(self.user.pw_uid)

        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            preexec_fn=drop,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            cwd=self.dir,
        )

    @property
    def url(self) -> str:
        return f"postgresql://spoofscope:secret@127.0.0.1:{self.port}/audit"

    def init(self) -> PgServer:
        pw = self.dir / "pw"
        pw.write_text("secret\n")
        if self.user is not None:
            os.chown(pw, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "spoofscope",
            "--auth=md5",
            f"--pwfile={pw}",
            "-E",
            "UTF8",
        )
        self.start()
        env = dict(os.environ, PGPASSWORD="secret")
        subprocess.run(
            [
                str(self.bin / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "spoofscope",
                "audit",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
