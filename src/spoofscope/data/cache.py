"""A cache of decoded audio shared by training epochs, worker processes and scoring."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np

from ..audio import load_audio


class AudioCache:
    """Decoded 16 kHz float32 audio stored as ``.npy`` under ``root``, keyed by path, size and
    modification time, so that epochs after the first do not decode FLAC again (and worker
    processes share it)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _key(self, path: Path) -> Path:
        st = path.stat()
        h = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        return self.root / h[:2] / f"{h}.npy"

    def load(self, path) -> np.ndarray:
        path = Path(path)
        key = self._key(path)
        if key.is_file():
            return np.load(key)
        x = load_audio(path)
        key.parent.mkdir(exist_ok=True)
        # a unique name per writer (workers may race); no draw from numpy's global RNG
        tmp = key.with_name(f"{key.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, x)
        tmp.replace(key)
        return x
