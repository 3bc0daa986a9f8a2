"""benchmarks/large_graph.py: what its child processes report, and what the user sees when
one of them fails (no heavy export here: the failures are cheap)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "large_graph.py"
sys.path.insert(0, str(SCRIPT.parent))
import large_graph  # noqa: E402


def test_a_failing_quantiser_is_one_line_naming_it_and_the_end_of_its_stderr():
    """AASIST has no SSL transformer for the int8 quantiser (a real failure, seconds to reach):
    the user sees a line naming the step and the model, then the child's own error, exit 1;
    not a CalledProcessError that names neither."""
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "aasist", "--int8", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, r.stderr
    assert lines[0] == (
        "large_graph.py: quantising aasist to int8 failed with exit status 1; "
        "the end of its stderr:"
    )
    assert "ConfigError" in lines[-1] and "no MatMul with a constant weight" in lines[-1]
    assert 1 < len(lines) <= 1 + large_graph.TAIL_LINES
    assert "CalledProcessError" not in r.stderr and r.stdout == ""


def test_a_failed_child_shows_only_the_last_lines_of_its_stderr(capsys):
    code = "import sys\nfor i in range(30): print('line', i, file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(SystemExit) as e:
        large_graph._child("scoring x's fp32 graph", code)
    assert e.value.code == 1
    n = large_graph.TAIL_LINES
    assert capsys.readouterr().err.splitlines() == [
        "large_graph.py: scoring x's fp32 graph failed with exit status 3; the end of its stderr:",
        *(f"    line {i}" for i in range(30 - n, 30)),
    ]


def test_a_child_killed_by_the_kernel_says_so(capsys):
    """The kernel's out-of-memory killer sends SIGKILL and leaves stderr empty."""
    with pytest.raises(SystemExit):
        large_graph._child("quantising m to int8", "import os; os.kill(os.getpid(), 9)")
    assert capsys.readouterr().err == (
        "large_graph.py: quantising m to int8 was killed by SIGKILL (out of memory?); "
        "it wrote nothing on stderr\n"
    )


def test_a_child_that_succeeds_gives_the_words_it_printed():
    assert large_graph._child("x", "import sys; print(sys.argv[1:], 2.5)", "a", 3) == [
        "['a',",
        "'3']",
        "2.5",
    ]
