"""The one place that finds the read-only reference material in ``../shared/``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# ONNX exports (the default engine) and downloads of the test session go to a fresh cache,
# not the user's; subprocesses inherit it
os.environ.setdefault("SPOOFSCOPE_CACHE", tempfile.mkdtemp(prefix="spoofscope-test-cache-"))
# most tests feed tones and noise as stand-ins for speech: they run under the energy meter;
# the tests of the Silero VAD (the default outside the tests) ask for it by name
os.environ["SPOOFSCOPE_VAD"] = "energy"

_CANDIDATES = [
    os.environ.get("SPOOFSCOPE_SHARED", ""),
    str(Path(__file__).resolve().parents[1].parent / "shared"),
]


def _find_shared() -> Path | None:
    for c in _CANDIDATES:
        if c and (Path(c) / "reference").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (or $SPOOFSCOPE_SHARED); skips the test if absent."""
    d = _find_shared()
    if d is None:
        pytest.skip(
            "reference material not found: expected ../shared/ beside the repository "
            "(or set SPOOFSCOPE_SHARED)"
        )
    return d


@pytest.fixture(scope="session")
def reference_dir(shared_dir) -> Path:
    return shared_dir / "reference"


@pytest.fixture(scope="session")
def la2019_dir(shared_dir) -> Path:
    return shared_dir / "asvspoof2019_la"


@pytest.fixture(scope="session")
def golden(reference_dir):
    return np.load(reference_dir / "golden.npz")


@pytest.fixture(scope="session")
def metrics_golden(reference_dir):
    return (
        np.load(reference_dir / "metrics_golden.npz"),
        json.loads((reference_dir / "metrics_golden.json").read_text()),
    )


@pytest.fixture(scope="session")
def metrics_more_golden(reference_dir):
    return (
        np.load(reference_dir / "metrics_more_golden.npz"),
        json.loads((reference_dir / "metrics_more_golden.json").read_text()),
    )
