"""Services for the tests on free loopback ports: in a thread of the test process
(:class:`LocalServer`) or as a `spoofscope serve` process (:class:`ServeProcess`); and
headless Chromium."""

import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tone_wav(seconds=2.0, seed=0) -> bytes:
    """A WAV upload: a tone (its pitch set by ``seed``) with a little noise, 16 kHz."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (180 + 20 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


class ServeProcess:
    """`spoofscope serve --model CKPT --port P OPTIONS...` in its own process, ready
    (``/readyz`` 200) when made; ``stop()`` ends it with SIGTERM and gives its stderr."""

    def __init__(self, ckpt, *options):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "spoofscope", "serve", "--model", str(ckpt), "--port"]
        self.proc = subprocess.Popen(
            [*cmd, str(self.port), *map(str, options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(480):
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read())
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.proc.kill()
        raise RuntimeError("service did not start")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=60)
        return err


class LocalServer:
    """uvicorn on a free loopback port in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *a):
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def chromium_path():
    for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(p).exists():
            return p
    return None


def launch_chromium(pw, *extra):
    """Debian's Chromium, headless, with the background networking this machine refuses off."""
    return pw.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            *extra,
        ],
    )
