"""The package as users get it: the wheel built and checked (``python -m build``, ``twine
check``), installed into a new virtual environment with only the base dependencies, and run
there with no network and no checkout on the path; then with the service's extras, installed
the way the Dockerfile installs them (no Docker engine on CI), serving until ``/readyz`` answers.

Slow: the fresh environment installs PyTorch (the pinned CPU wheel, from pip's cache or the
local wheel store) and the base dependencies (a few minutes).
"""

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: what the base install must not bring in: each lives in an extra
EXTRA_ONLY = {
    "ray",
    "transformers",
    "huggingface-hub",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "playwright",
    "fastapi",
    "uvicorn",
}
#: pip and the build see neither the checkout (the tests' PYTHONPATH) nor the test settings
PIP_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", ".venv", "runs"
)


def _no_network() -> list[str]:
    """A prefix that runs a command in a network namespace of its own (no interface but a
    loopback that is down: truly offline), where the machine allows it (root, util-linux)."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return ["unshare", "-n"] if ok else []


OFFLINE = _no_network()


def _run(argv, env=None, timeout=900, check=True, **kw):
    r = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )
    if check:
        assert r.returncode == 0, (
            f"{argv}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        )
    return r


def _source_version() -> str:
    tree = ast.parse((REPO / "src/spoofscope/__init__.py").read_text())
    return next(
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__version__"
    )


@pytest.fixture(scope="module")
def work():
    """This module's own folder: minutes long, it must outlive other pytest sessions, which
    prune the shared basetemp (pytest-of-USER) to their last three."""
    with tempfile.TemporaryDirectory(prefix="spoofscope-wheel-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    out = work / "dist"
    # from a copy of the working tree: the build writes egg-info and build/ where it runs
    tree = shutil.copytree(REPO, work / "tree", ignore=COPY_IGNORE)
    _run([sys.executable, "-m", "build", "--outdir", out, tree], PIP_ENV)
    _run([sys.executable, "-m", "twine", "check", "--strict", *sorted(out.iterdir())])
    (whl,) = out.glob("spoofscope-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(work, wheel) -> Path:
    """A new virtual environment: the pinned CPU torch first (as scripts/setup.sh and the
    Dockerfile install it), then the wheel with its base dependencies only."""
    d = work / "venv"
    _run([sys.executable, "-m", "venv", d])
    _pip(d, "install", "--quiet", f"torch=={torch.__version__.split('+')[0]}")
    _pip(d, "install", "--quiet", wheel)
    return d


@pytest.fixture(scope="module")
def user_env(venv, work) -> dict:
    """A user's shell: the venv on PATH, a fresh home (empty cache), no PYTHONPATH or test
    settings, and no network: every proxy a closed loopback port, and the offline commands run
    under :data:`OFFLINE` where the machine allows it."""
    home = work / "home"
    home.mkdir()
    off = "http://127.0.0.1:9"
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        **{k: off for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    }


def _pip(venv, *args):
    return _run([venv / "bin" / "python", "-m", "pip", *args], PIP_ENV)


def _installed(venv) -> set[str]:
    r = _pip(venv, "list", "--format", "json")
    return {p["name"].lower().replace("_", "-") for p in json.loads(r.stdout)}


def test_wheel_metadata_and_licence_files(wheel):
    version = _source_version()
    assert wheel.name == f"spoofscope-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"spoofscope-{version}.dist-info/METADATA").decode()
        weights = {n: z.read(n) for n in names if n.startswith("spoofscope/models/weights/")}
    info = f"spoofscope-{version}.dist-info/licenses/"
    assert {info + "LICENSE", info + "src/spoofscope/models/weights/LICENSE-NAVER.txt"} <= names
    # the packaged weights are the official files, byte for byte (sha256 on the cards)
    from spoofscope.models import get_card
    from spoofscope.models._pretrained import sha256_of

    for name in ("aasist", "aasist-l"):
        w = get_card(name).weights["official"]
        data = weights[f"spoofscope/models/weights/{w.filename}"]
        assert hashlib.sha256(data).hexdigest() == w.sha256
        assert sha256_of(REPO / "src/spoofscope/models/weights" / w.filename) == w.sha256
    assert (
        "Copyright (c) 2021-present NAVER Corp."
        in weights["spoofscope/models/weights/LICENSE-NAVER.txt"].decode()
    )
    assert "License-Expression: MIT" in meta and f"Version: {version}" in meta
    assert "Classifier: Programming Language :: Python :: 3.11" in meta
    # the registry page: the README's introduction and Install section, not the whole guide
    body = meta.split("\n\n", 1)[1]
    assert "## Install" in body and "## Set-up" not in body and "## Training" not in body
    # the base requirements name no extra-only package
    base = [
        ln.split(":", 1)[1].strip()
        for ln in meta.splitlines()
        if ln.startswith("Requires-Dist:") and "extra ==" not in ln
    ]
    names = {re.split(r"[<>=!~\[; ]", b, maxsplit=1)[0].lower() for b in base}
    assert names and not names & EXTRA_ONLY, names & EXTRA_ONLY


def test_sdist_is_the_package_and_its_build_files(wheel):
    """The sdist holds the package (weights and notice included) and the files that build it;
    not a test suite that cannot run from it (its helpers and ../shared/ stay behind)."""
    (sdist,) = wheel.parent.glob("spoofscope-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile()}
    package = {
        str(p.relative_to(REPO))
        for p in (REPO / "src/spoofscope").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert package <= names, package - names
    build = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in"}
    others = {n for n in names - package - build if not n.startswith("src/spoofscope.egg-info/")}
    assert others == {"PKG-INFO"}, others


def test_base_install_runs_offline(venv, user_env, work, shared_dir, golden):
    """--version, detect with no flags (a verdict from the packaged weights), the documented
    Python example, and each extra's feature naming its extra."""
    assert not _installed(venv) & EXTRA_ONLY, _installed(venv) & EXTRA_ONLY
    here = work / "base"
    here.mkdir()
    py = venv / "bin" / "python"
    r = _run([py, "-c", "import spoofscope; print(spoofscope.__file__)"], user_env, cwd=here)
    assert r.stdout.startswith(str(venv))  # the installed package, not the checkout
    version = _source_version()
    r = _run([*OFFLINE, "spoofscope", "--version"], user_env, cwd=here)
    assert r.stdout.strip() == f"spoofscope {version}"
    r = _run(
        [
            py,
            "-c",
            "import spoofscope, importlib.metadata as m; "
            "print(spoofscope.__version__, m.version('spoofscope'))",
        ],
        user_env,
    )
    assert r.stdout.split() == [version, version]

    # a real recording (LibriTTS, realdev's bona fide) made into call.wav here
    x, sr = sf.read(shared_dir / "realdev/bigvgan-demo/bonafide/gt-ltclean1.flac")
    call = here / "call.wav"
    sf.write(call, x, sr, subtype="PCM_16")
    r = _run([*OFFLINE, "spoofscope", "detect", "--json", call], user_env, cwd=here)
    got = json.loads(r.stdout)
    assert got["error"] is None and got["label"] in ("bonafide", "spoof"), got
    assert not list(Path(user_env["HOME"]).rglob("*.pth"))  # nothing downloaded
    # the checkout's own detect (same defaults, Silero VAD) gives the same verdict
    env = {k: v for k, v in os.environ.items() if k != "SPOOFSCOPE_VAD"}
    env["PYTHONPATH"] = str(REPO / "src")
    ref = json.loads(
        _run([sys.executable, "-m", "spoofscope", "detect", "--json", call], env).stdout
    )
    assert got["label"] == ref["label"]
    assert got["score"] == pytest.approx(ref["score"], abs=1e-4)

    # the documented Python example, on the official reference input: the official logit
    page = (REPO / "docs" / "verdict" / "python.md").read_text()
    block = page.split("Load the official AASIST and score a file", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    sf.write(here / "speech.wav", golden["input_0"], 16000, subtype="PCM_24")
    x24 = sf.read(here / "speech.wav", dtype="float32")[0]
    r = _run([*OFFLINE, py, "-c", code], user_env, cwd=here)
    with torch.no_grad():
        from spoofscope.models import load_model

        want = load_model("aasist")(torch.from_numpy(x24)[None])[0][0, 1].item()
    assert float(r.stdout.strip()) == pytest.approx(want, abs=1e-4)
    assert want == pytest.approx(golden["AASIST_logits_0"][1], abs=1e-3)

    # features of extras the base install leaves out name the extra, in one line
    for argv, extra in (
        (["serve", "--port", "9"], "serve"),
        (["detect", call, "--ray", "auto", "--out", here / "ray"], "ray"),
        (["detect", call, "--model", "antideepfake-w2v-small"], "ssl"),
    ):
        r = _run([*OFFLINE, "spoofscope", *argv], user_env, check=False, cwd=here)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("note:")]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert f"pip install 'spoofscope[{extra}]'" in lines[0], lines[0]


def test_service_extras_as_the_dockerfile_installs_them(venv, user_env, wheel, work):
    """The Dockerfile's install line and CMD, in the venv: serve answers /readyz and the
    HEALTHCHECK probe passes."""
    from _server import free_port

    here = work / "service"
    here.mkdir()
    text = (REPO / "Dockerfile").read_text()
    extras = re.search(r"spoofscope-\*\.whl\)\[([\w,]+)\]", text).group(1)
    _pip(venv, "install", "--quiet", f"{wheel}[{extras}]")
    assert {"fastapi", "uvicorn"} <= _installed(venv)
    assert not _installed(venv) & {"ray", "transformers", "playwright"}
    argv = json.loads(next(ln for ln in text.splitlines() if ln.startswith("CMD "))[4:])
    assert argv[:2] == ["spoofscope", "serve"] and "--weights" not in argv
    port = str(free_port())
    swap = {"8000": port, "0.0.0.0": "127.0.0.1", "/home/app/audit.sqlite": here / "a.db"}
    argv = [str(swap.get(a, a)) for a in argv]
    probe = next(ln for ln in text.splitlines() if "urlopen" in ln)
    probe = probe.split('python -c "', 1)[1].rsplit('"', 1)[0].replace("8000", port)
    proc = subprocess.Popen(
        argv, env=user_env, cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    import urllib.request

    try:
        ready = None
        for _ in range(240):
            if proc.poll() is not None:
                break
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{port}/readyz", timeout=2
                ) as resp:
                    ready = (resp.status, json.loads(resp.read()))
                break
            except OSError:
                time.sleep(0.5)
        assert ready is not None, (
            proc.stderr.read().decode()[-3000:] if proc.poll() else "no answer"
        )
        assert ready[0] == 200
        no_proxy = {**user_env, "no_proxy": "127.0.0.1"}
        _run([venv / "bin" / "python", "-c", probe], no_proxy)
    finally:
        proc.terminate()
        proc.wait(20)
