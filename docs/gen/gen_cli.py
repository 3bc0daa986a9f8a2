"""Writes reference/cli.md at build time (mkdocs-gen-files): the ``--help`` of every
``spoofscope`` command, exactly as the CLI's own parsers print it (``spoofscope.cli.build_parser``),
so the page cannot drift from the options."""

from __future__ import annotations

import argparse
import os

#: the width help is wrapped at (argparse reads $COLUMNS); tests/test_docs_site.py uses the same
COLUMNS = 100


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser)`` for ``parser`` and every sub-command under it, in the parsers' order."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias names the same parser again
                    seen.add(id(sub))
                    yield from commands(sub, (*path, name))


def render() -> str:
    os.environ["COLUMNS"] = str(COLUMNS)
    from spoofscope.cli import build_parser

    out = [
        "# Command-line reference",
        "",
        "Every command's `--help`, generated from the parsers of `spoofscope.cli` when the site "
        "is built. Errors you can fix print one line and exit with status 2; "
        "`spoofscope --debug ...` shows their traceback.",
        "",
    ]
    for path, parser in commands(build_parser()):
        title = " ".join(("spoofscope", *path))
        out += [f"## `{title}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "<run_path>":  # run by mkdocs-gen-files (runpy.run_path)
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference/cli.md", "w") as f:
        f.write(render())
