"""The package's promises that need no wheel nor virtual environment (tests/test_wheel.py
builds and installs one, in minutes): the extras named in errors, the version written once,
every public name of the lazy packages, the Dockerfile installing the wheel it builds."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import spoofscope
from spoofscope.cli import EXTRAS, build_parser

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_version_is_written_once():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "spoofscope.__version__"
    # spoofscope --version reads the same attribute
    spoofscope.__version__, before = "9.8.7", spoofscope.__version__
    try:
        p = build_parser()
    finally:
        spoofscope.__version__ = before
    version_action = next(a for a in p._actions if "--version" in a.option_strings)
    assert version_action.version == "spoofscope 9.8.7"


def test_extras_named_in_errors_exist_and_hold_the_module():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert extra in extras, (module, extra)
        dist = module.replace("_", "-")
        listed = {x for x, reqs in extras.items() if dist in map(_req_name, reqs)}
        assert not listed or extra in listed, (module, extra, listed)
    # every "pip install 'spoofscope[X]'" in the sources names a real extra
    named = {
        m
        for p in (REPO / "src").rglob("*.py")
        for m in re.findall(r"spoofscope\[(\w+)\]", p.read_text())
    }
    assert named and named <= set(extras) | {"{extra}"}, named - set(extras)


@pytest.mark.parametrize(
    "blocked, argv, extra",
    [
        (["fastapi"], ["serve", "--port", "9"], "serve"),
        (["ray"], ["detect", "{wav}", "--ray", "auto", "--out", "{out}"], "ray"),
        (
            ["transformers", "huggingface_hub"],
            ["detect", "{wav}", "--model", "antideepfake-w2v-small"],
            "ssl",
        ),
    ],
)
def test_a_missing_extra_is_named_in_one_line(tmp_path, blocked, argv, extra):
    """The extra's packages made unimportable (None in sys.modules): the command says which
    extra to install, in one line, exit 2."""
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(16000) * 0.1, 16000)
    argv = [a.format(wav=wav, out=tmp_path / "out") for a in argv]
    code = (
        f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
        f"from spoofscope.cli import main\nsys.exit(main({argv!r}))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SPOOFSCOPE_CACHE": str(tmp_path / "cache")},
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"pip install 'spoofscope[{extra}]'" in lines[0], lines[0]


def test_every_public_name_of_a_lazy_package_resolves():
    """In a fresh interpreter (nothing imported before): every name of ``__all__`` of the
    packages with lazy exports is there and listed by dir()."""
    code = (
        "import importlib\n"
        "for p in ('spoofscope', 'spoofscope.data', 'spoofscope.infer'):\n"
        "    m = importlib.import_module(p)\n"
        "    missing = [n for n in m.__all__ if n not in dir(m)]\n"
        "    assert not missing, (p, missing)\n"
        "    for n in m.__all__:\n"
        "        getattr(m, n)\n"
        "print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_dockerfile_installs_the_wheel_it_builds():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"python -m build --wheel --outdir /dist", text)
    m = re.search(r'pip install "\$\(ls /dist/spoofscope-\*\.whl\)\[([\w,]+)\]"', text)
    assert m, "the image must install the wheel it built"
    assert set(m.group(1).split(",")) <= set(PYPROJECT["project"]["optional-dependencies"])
    # what the wheel's build reads is copied in (setup.py reads README.md; the licence files)
    copied = {w for ln in text.splitlines() if ln.startswith("COPY ") for w in ln.split()[1:-1]}
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE", "src"} <= copied
    assert not re.search(r"pip install [\"']?spoofscope[\[\"' ]", text)
