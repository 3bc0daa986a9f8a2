"""The command line starts without the heavy libraries: ``--version`` and ``--help`` load
neither PyTorch nor ONNX Runtime (they cost about a second; the scoring commands load them
when they first need a model)."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from spoofscope.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in ("torch", "onnxruntime", "transformers") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["detect", "--help"], ["serve", "--help"]]
)
def test_version_and_help_load_no_heavy_library(argv):
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout[-500:]


def test_the_probe_sees_a_heavy_import():
    """The probe itself works: a command that builds a model does load PyTorch."""
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE.replace("main(sys.argv[1:])", "import spoofscope.models; main(['--version'])"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.stdout.strip().splitlines()[-1] == "['torch']", r.stdout[-500:]
