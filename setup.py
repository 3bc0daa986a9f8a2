"""The registry page's description: README.md's introduction and its "Install" section, not the
whole guide (whose links point into the repository). Everything else is in pyproject.toml."""

import re
from pathlib import Path

from setuptools import setup


def registry_description() -> str:
    text = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    intro = text.split("\n## ", 1)[0].rstrip()
    install = re.search(r"^## Install\n.*?(?=^## )", text, re.M | re.S)
    if install is None:
        raise SystemExit("README.md has no '## Install' section for the registry page")
    return f"{intro}\n\n{install.group(0).rstrip()}\n"


setup(long_description=registry_description(), long_description_content_type="text/markdown")
