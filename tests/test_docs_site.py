"""The documentation site: ``mkdocs build --strict`` passes (no broken link or anchor, no
missing reference or page), and the reference pages it generates say what the code says: every
command's ``--help`` as its parser prints it, every route of the service's app, every error code
the service raises. The README's links into the site point at pages that exist."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "material", "mkdocstrings")),
    reason="the docs site's tools are not installed (pip install -e '.[dev]')",
)


def _text(page: Path) -> str:
    """A built page's text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ)
    # the checkout's package, not another install; no banner from the theme
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", out],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "WARNING" not in r.stderr.replace("WARNING: MkDocs may break", ""), r.stderr[-4000:]
    return out


def test_every_page_in_the_nav_is_built(site):
    import yaml

    class _Loader(yaml.SafeLoader):  # mkdocs.yml's !relative tag
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    nav = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)["nav"]

    def pages(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from pages(value)
            else:
                yield value

    names = list(pages(nav))
    assert len(names) >= 20, names
    for name in names:
        assert (site / name).with_suffix(".html").is_file(), name
    # the other helpers' pending notes stay out of the site
    assert not (site / "_pending").exists()


def test_cli_page_is_every_commands_help(site, monkeypatch):
    import argparse

    from spoofscope.cli import build_parser

    monkeypatch.setenv("COLUMNS", "100")  # the width docs/gen/gen_cli.py renders at
    page = _text(site / "reference" / "cli.html")
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) >= 15
    for name, command in sub.choices.items():
        assert f"spoofscope {name}" in page, name
        assert command.format_help().strip() in page, name
    # detect's help in full, option by option, as the parser prints it
    detect = sub.choices["detect"].format_help()
    assert "--window" in detect and "--segments" in detect
    assert detect.strip() in page


def test_http_page_lists_every_route_of_the_app(site):
    pytest.importorskip("fastapi")
    from spoofscope.infer import Detector
    from spoofscope.serve import ServiceSettings, create_app

    app = create_app(Detector.load("aasist", engine="torch"), ServiceSettings())

    def paths(routes, prefix=""):
        for r in routes:
            if hasattr(r, "original_router"):  # an included router (newer FastAPI)
                yield from paths(r.original_router.routes, prefix + r.include_context.prefix)
            else:
                yield prefix + r.path

    found = set(paths(app.routes))
    assert {"/v1/detect", "/v1/stream", "/v1/stream/twilio", "/healthz"} <= found, found
    page = _text(site / "reference" / "http.html")
    for path in found:
        assert path in page, path
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            assert f"{method.upper()} {path}" in page, (method, path)


def test_error_page_lists_every_code_the_service_raises(site):
    pytest.importorskip("fastapi")
    from spoofscope.serve.errors import STATUS_OF_KIND

    page = _text(site / "reference" / "errors.html")
    raised = set()
    for f in (REPO / "src" / "spoofscope" / "serve").glob("*.py"):
        text = f.read_text()
        raised |= set(re.findall(r'(?:ServiceError|error_response)\(\s*(\d{3}),\s*"(\w+)"', text))
        raised |= {(None, c) for c in re.findall(r'StreamStop\(\s*"(\w+)"', text)}
    assert len(raised) >= 20, raised
    # the table rows, each as one line of text
    rows = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", tr)).split())
        for tr in re.findall(
            r"<tr>(.*?)</tr>", (site / "reference" / "errors.html").read_text(), re.S
        )
    ]
    for status, code in raised:
        if status is None:
            assert code in page, code
        else:
            assert any(row.startswith(f"{status} {code} ") for row in rows), (status, code)
    # a result's error kind -> its answer
    for kind, (status, code) in STATUS_OF_KIND.items():
        assert f"{kind} {status} {code}" in rows, (kind, status, code)
    assert "SpoofscopeError" in page and "WeightsError" in page


def test_python_reference_documents_the_public_api(site):
    page = _text(site / "reference" / "python.html")
    for name in ("spoofscope.infer.Detector", "spoofscope.models.load_model",
                 "spoofscope.metrics.compute_eer", "spoofscope.metrics.tdcf_2019"):  # fmt: skip
        assert name in page, name
    # a docstring, not only the name
    from spoofscope.metrics import compute_eer

    assert " ".join(compute_eer.__doc__.split("(")[0].split()) in page


def test_readme_is_a_front_page_whose_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 200
    # the two set-up commands, which .ci/run runs as written
    setup = text.split("## Set-up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [ln.split("#", 1)[0].strip() for ln in setup.splitlines()]
    assert commands == ["bash scripts/setup.sh", "python -m pytest -q"], commands
    # each is a line .ci/run runs (a comment, or text inside another line, is not run)
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    run = [ln for ln in ci if ln and not ln.startswith("#")]
    for command in commands:
        assert any(ln == command or ln.startswith(command + " ") for ln in run), command
    links = re.findall(r"\]\(((?:docs/)[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 10, links
    for link in links:
        assert (REPO / link).exists(), link


def test_readme_anchors_into_the_site_exist(site):
    """A README link ``docs/page.md#anchor`` names a heading the built page has (mkdocs checks
    the pages' own anchors, not the README's)."""
    text = (REPO / "README.md").read_text()
    for page, anchor in re.findall(r"\]\(docs/([^)#]+)\.md#([^)]+)\)", text):
        built = (site / page).with_suffix(".html").read_text(encoding="utf-8")
        assert f'id="{anchor}"' in built, (page, anchor)


def _doc_commands() -> list[tuple[str, str]]:
    """``(file, command line)`` of every ``spoofscope ...`` line in a bash block of the README
    and the docs (continuations joined; pipes and ``&&`` split; comments dropped)."""
    out = []
    for md in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", md.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"\s(?:\||&&)\s", line.strip()):
                    if part.strip().startswith("spoofscope "):
                        out.append((md.name, re.sub(r"\s+#.*$", "", part.strip())))
    return out


def test_every_command_the_docs_show_parses():
    """An option renamed or removed in the code fails here, not in a reader's terminal."""
    import shlex

    from spoofscope.cli import build_parser

    commands = _doc_commands()
    assert len(commands) >= 30, commands
    for where, line in commands:
        words = shlex.split(line)[1:]
        try:
            args, extra = build_parser().parse_known_args(words)
        except SystemExit as e:
            raise AssertionError(f"{where}: {line}") from e
        # key=value recipe overrides may follow (train, demo, adapt)
        assert not extra or (hasattr(args, "overrides") and all("=" in w for w in extra)), (
            where,
            line,
            extra,
        )
