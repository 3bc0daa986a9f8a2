"""Every example marked runnable in README.md and docs/ (not docs/_pending/) runs, and prints
what the page shows.

The convention: a line ``<!-- run -->`` directly above a fenced ``bash`` (``sh``, ``shell``) or
``python`` (``py``) block marks it as run; a line ``<!-- output -->`` directly above the next
fenced block marks that block as the output the first prints on stdout. Outputs are compared
line by line after trailing whitespace is stripped; a line ``...`` stands for any lines (none
included), and ``...`` inside a line for any text on that line.

Each block is one test (its id ``file:line``), run on its own (``bash -e -o pipefail``, or
Python) in a fresh temporary folder holding the inputs the examples use, made here from
speech synthesized by the demo corpus's generator: ``speech.wav`` (4 s), ``long.wav`` (20 s)
and ``recordings/a.wav``, ``b.wav``, ``c.wav`` (2, 1.5 and 2.5 s), all 16 kHz mono;
``spoofscope`` runs this checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SR = 16000
LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
#: the runnable examples the pages hold at least (test_the_pages_have_runnable_examples):
#: a page losing its markers would otherwise pass by running nothing
MIN_EXAMPLES = 9
#: the runnable examples whose output the pages show (test_every_output_block_checks_something)
MIN_OUTPUTS = 2


class MarkupError(Exception):
    """A marker that marks nothing (no fence directly below it, or an unknown language)."""


@dataclass
class Example:
    path: str  # relative to the repository (the test id)
    line: int  # of the opening fence, 1-based
    lang: str  # bash or python
    code: str
    output: str | None = None  # the expected stdout, when the page shows it

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return bool(s) and set(s) == {fence[0]} and len(s) >= len(fence)


def _blocks(lines: list[str]):
    """``(fence line index, language, body)`` of every fenced block; a block indented (inside
    a list or an admonition) loses its fence's indentation."""
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        body, j = [], i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        yield i, lang.lower(), "\n".join(body)
        i = j + 1


def collect(text: str, path: str) -> list[Example]:
    """The runnable examples of a markdown page (see the module docstring)."""
    lines = text.splitlines()
    blocks = list(_blocks(lines))
    starts = {i for i, _, _ in blocks}
    for k, line in enumerate(lines):
        if line.strip() in ("<!-- run -->", "<!-- output -->") and k + 1 not in starts:
            raise MarkupError(f"{path}:{k + 1}: {line.strip()} is not directly above a fence")
    out: list[Example] = []
    for n, (i, lang, body) in enumerate(blocks):
        mark = lines[i - 1].strip() if i > 0 else ""
        if mark == "<!-- output -->":
            if not out or n == 0 or out[-1].line != blocks[n - 1][0] + 1:
                raise MarkupError(f"{path}:{i}: <!-- output --> does not follow a run block")
            out[-1].output = body
        elif mark == "<!-- run -->":
            if lang not in LANGS:
                raise MarkupError(
                    f"{path}:{i + 1}: a run block must be bash or python, not {lang!r}"
                )
            out.append(Example(path, i + 1, LANGS[lang], body))
    return out


def pages(root: Path = REPO) -> list[Path]:
    """README.md and every page under docs/, without docs/_pending/ (notes not yet placed)."""
    docs = root / "docs"
    found = sorted(p for p in docs.rglob("*.md") if "_pending" not in p.relative_to(docs).parts)
    return [p for p in [root / "README.md", *found] if p.is_file()]


def all_examples(root: Path = REPO) -> list[Example]:
    return [
        ex for p in pages(root) for ex in collect(p.read_text(), p.relative_to(root).as_posix())
    ]


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected``, lines compared without trailing whitespace and
    trailing blank lines; a line ``...`` matches any lines, ``...`` within a line any text."""

    def norm(s: str) -> list[str]:
        lines = [line.rstrip() for line in s.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    pattern = ""
    for line in norm(expected):
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += r"[^\n]*".join(map(re.escape, line.split("..."))) + r"\n"
    got = "".join(line + "\n" for line in norm(actual))
    return re.fullmatch(pattern, got) is not None


def _voice(seconds: float, seed: int) -> np.ndarray:
    """Deterministic speech-like audio: utterances of at most 4 s from the demo corpus's
    source-filter synthesiser (one speaker per seed), which the Silero VAD hears as speech."""
    from spoofscope.data.demo import _speaker, synth_utterance

    rng = np.random.default_rng(seed)
    spk = _speaker(rng)
    n = int(np.ceil(seconds / 4.0))
    return np.concatenate(
        [synth_utterance(spk, rng, min(4.0, seconds - 4.0 * k)) for k in range(n)]
    )


def make_inputs(folder: Path) -> None:
    """The files the examples read (see the module docstring); seeds whose audio the Silero
    VAD finds speech in (a verdict, not ``no_speech``)."""
    sf.write(folder / "speech.wav", _voice(4.0, 0), SR)
    sf.write(folder / "long.wav", _voice(20.0, 3), SR)
    (folder / "recordings").mkdir()
    for name, seconds, seed in (("a", 2.0, 2), ("b", 1.5, 3), ("c", 2.5, 4)):
        sf.write(folder / "recordings" / f"{name}.wav", _voice(seconds, seed), SR)


def run(ex: Example, cwd: Path, timeout: float = 600) -> None:
    """Run ``ex`` in ``cwd`` with this checkout's ``spoofscope`` first on PATH; fail with
    what it printed unless it exits 0 and prints its page's output."""
    bin_dir = cwd / ".bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "spoofscope"
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m spoofscope "$@"\n')
    tool.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if (REPO / "src" / "spoofscope").is_dir():  # this checkout, not another install
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p
        )
    if ex.lang == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", ex.code]
    else:
        cmd = [sys.executable, "-c", ex.code]
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    said = f"\n--- stdout:\n{p.stdout}\n--- stderr:\n{p.stderr[-3000:]}"
    assert p.returncode == 0, f"{ex.id}: exit status {p.returncode}{said}"
    if ex.output is not None:
        assert matches(ex.output, p.stdout), (
            f"{ex.id}: the output differs from the page's\n--- page:\n{ex.output}{said}"
        )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    make_inputs(folder)
    return folder


@pytest.fixture
def workdir(inputs, tmp_path) -> Path:
    cwd = tmp_path / "work"
    shutil.copytree(inputs, cwd)
    return cwd


EXAMPLES = all_examples()


@pytest.mark.slow
@pytest.mark.parametrize("ex", EXAMPLES, ids=[ex.id for ex in EXAMPLES])
def test_example_runs(ex, workdir):
    run(ex, workdir)


def test_the_pages_have_runnable_examples():
    """The pages hold at least MIN_EXAMPLES runnable examples (this reports how many)."""
    n = len(EXAMPLES)
    assert n >= MIN_EXAMPLES, (
        f"{n} runnable examples in README.md and docs/ (at least {MIN_EXAMPLES} expected): "
        "was a <!-- run --> marker lost?"
    )


def test_every_output_block_checks_something():
    """An output block of ``...`` lines only would match whatever its command prints; the
    pages keep their MIN_OUTPUTS checked outputs."""
    shown = [ex for ex in EXAMPLES if ex.output is not None]
    assert len(shown) >= MIN_OUTPUTS, [ex.id for ex in shown]
    for ex in shown:
        assert any(line.replace("...", "").strip() for line in ex.output.splitlines()), ex.id


# the collector itself, on a page written here

PAGE = """# A page

<!-- run -->
```bash
echo one
printf 'two  \\n\\n'
```

<!-- output -->
```
one
two
```

Not run:

```bash
exit 1
```

- in a list:

    <!-- run -->
    ```python
    import soundfile as sf
    info = sf.info("speech.wav")
    print(info.samplerate, info.channels, round(info.duration, 3))
    print("took 0.123 s")
    for k in range(5):
        print(k)
    ```

    <!-- output -->
    ```text
    16000 1 4.0
    took ... s
    0
    ...
    4
    ```

<!-- run -->
```bash
spoofscope --help | head -n 1
ls recordings
```

<!-- output -->
```
usage: spoofscope ...
a.wav
b.wav
c.wav
```
"""


def test_collector_finds_marked_blocks_and_their_outputs():
    exs = collect(PAGE, "page.md")
    assert [(e.id, e.lang) for e in exs] == [
        ("page.md:4", "bash"),
        ("page.md:24", "python"),
        ("page.md:43", "bash"),
    ]
    assert exs[0].code == "echo one\nprintf 'two  \\n\\n'"
    assert exs[0].output == "one\ntwo"
    assert exs[1].code.startswith("import soundfile as sf\n")  # the list's indent removed
    assert exs[1].output.splitlines()[1] == "took ... s"


def test_collected_examples_run_and_match_their_outputs(workdir):
    for ex in collect(PAGE, "page.md"):
        run(ex, workdir, timeout=300)


@pytest.mark.parametrize(
    "code, output, why",
    [
        ("echo one\nfalse\necho two", None, "exit status 1"),
        ("false | cat", None, "exit status 1"),  # a failure inside a pipe too
        ("echo one", "two", "differs"),
        ("echo one; echo two", "one", "differs"),  # a line too many
        ("echo one", "one\ntwo", "differs"),  # a line missing
        ("echo 'took 1 s'", "took ... ms", "differs"),
        ("ls", "speech.wav", "differs"),
    ],
)
def test_a_failing_block_or_a_wrong_output_fails(code, output, why, workdir):
    with pytest.raises(AssertionError, match=why):
        run(Example("page.md", 1, "bash", code, output), workdir)


def test_python_blocks_fail_on_an_exception(workdir):
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        run(Example("page.md", 1, "python", "print(1 / 0)"), workdir)


@pytest.mark.parametrize(
    "page, where",
    [
        ("<!-- run -->\n\n```bash\necho\n```\n", "page.md:1"),  # a blank line between
        ("<!-- run -->\n```console\n$ echo\n```\n", "page.md:2"),
        ("```bash\necho\n```\n<!-- output -->\n```\n\n```\n", "page.md:4"),
        (
            "<!-- run -->\n```bash\necho\n```\n```bash\n```\n<!-- output -->\n```\n```\n",
            "page.md:7",
        ),
    ],
)
def test_a_marker_that_marks_nothing_is_an_error(page, where):
    with pytest.raises(MarkupError, match=where):
        collect(page, "page.md")


def test_dots_match_any_lines_and_any_text():
    assert matches("a\n...\nd", "a\nb\nc\nd\n")
    assert matches("a\n...\nd", "a\nd")
    assert matches("x = ... s", "x = 1.25 s  ")
    assert not matches("a\n...\nd", "a\nb\nc")
    assert not matches("x = ... s", "x = 1.25 ms")
