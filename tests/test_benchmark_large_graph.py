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


def test_an_unknown_model_is_one_line_naming_it_exit_2():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "no-such-model", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("large_graph.py: unknown model 'no-such-model'; known models: ")
    assert "antideepfake-mms-300m" in line and r.stdout == ""


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


def test_a_child_whose_stderr_is_not_utf8_still_gives_its_line(capsys):
    """A native library may write any bytes: the line and the tail still come, not a
    UnicodeDecodeError from reading them."""
    code = "import sys; sys.stderr.buffer.write(bytes([98, 255, 10])); sys.exit(3)"
    with pytest.raises(SystemExit):
        large_graph._child("scoring m's fp32 graph", code)
    assert capsys.readouterr().err.splitlines() == [
        "large_graph.py: scoring m's fp32 graph failed with exit status 3; the end of its stderr:",
        "    b\ufffd",
    ]


def test_a_child_that_succeeds_gives_the_words_it_printed():
    assert large_graph._child("x", "import sys; print(sys.argv[1:], 2.5)", "a", 3) == [
        "['a',",
        "'3']",
        "2.5",
    ]


#: in a fresh process: resident memory (kB) with the package's exporter loaded, then with onnx
#: loaded as well
_RSS = """
def status(key):
    return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(key)))
from spoofscope.export.onnx import quantize_int8
before = status("VmRSS")
import onnx
print(before, status("VmRSS"))
"""


def test_the_quantisers_starting_memory_has_onnx_loaded(tmp_path):
    """The header's "(N MB before it started)" is what the quantising process holds before
    quantize_int8 starts, the interpreter with torch and onnx loaded (docs/speed.md), so that
    the peak above it is the quantiser's work. Measured on a tiny graph with a product in the
    SSL encoder's layers, it is nearer to a fresh process's memory with onnx imported than
    without (imported inside quantize_int8, onnx would count as the quantiser's work)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from spoofscope.export.onnx import INT8_SCOPE

    w = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], f"{INT8_SCOPE}0/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "fp32.onnx"))
    out = large_graph._child(
        "quantising", large_graph.QUANT_CHILD, tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    )
    assert (tmp_path / "int8.onnx").is_file()
    start = int(out[2])
    without, with_onnx = map(int, large_graph._child("measuring", _RSS))
    assert with_onnx - without > 1024  # onnx takes MBs: the two are told apart
    assert abs(start - with_onnx) < abs(start - without), (start, without, with_onnx)
