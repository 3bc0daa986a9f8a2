"""Every defect row of tests/breaks.md still quotes text that is in the code.

A row names a file and the exact text its swap replaces ("file: original -> broken"). When the
code moves on, the quote goes stale and the row can no longer be replayed; this test reads each
row, resolves the file from the section's short names, and checks that each backquoted original
(the pieces around an abbreviating ``...``) occurs in that file, in order.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "tests" / "breaks.md"

# Rows whose cell has no "original -> broken" form, keyed by (section start, defect start), with
# the reason. FREE_FORM: which of the cell's code spans after "file:" are text of the file (the
# others are inserted text); "all" where every one is. NAMED: rows that do not start with their
# file, with the file and the text they rest on.
FREE_FORM = {
    ("streams, Ray", "one eval file's samples changed"): ("an insertion before a line", (0,)),
    ("streams, Ray", "one dev file not written"): ("a line made conditional", (0,)),
    ("streams, Ray", "Ray's score of one file off"): ("an insertion after a line", (0,)),
    ("explain", "summary names the wrong band"): ("an insertion after a line", (0,)),
    ("live and shared", "slot freed only when ending"): ("lines moved", "all"),
    ("live and shared", "ended state not written"): ("a line removed", "all"),
    ("live and shared", "password in URL userinfo unmasked"): ("a pattern removed", "all"),
    ("live and shared", "key=value password unmasked"): ("a pattern removed", "all"),
    ("live and shared", "stream clipping removed"): ("a line removed", "all"),
    ("issue 37", "field in the schema only"): ("an insertion before a field", (1,)),
    ("issue 37", "broken relative link"): ("a line added", ()),
    ("issue 37", "broken anchor in a page"): ("a line added", ()),
    ("issue 37", "page dropped from nav"): ("a line removed", "all"),
    ("issue 37", "README link with a broken anchor"): ("a line added", ()),
    ("issue 37", "README over 200 lines"): ("lines added", ()),
    ("issue 30", "the probe's penalty chosen"): ("two insertions around a line", (1,)),
}
NAMED = {
    ("packaging", "AASIST's weights under the AASIST-L name"): (
        "a binary file overwritten: only its presence is checked",
        "src/spoofscope/models/weights/AASIST-L.pth",
        [],
    ),
    ("issue 37", "`spoofed_s` an int 0"): (
        "found, not planted: the fix's text (`sum(..., 0.0)`, now over two lines)",
        "src/spoofscope/infer/detector.py",
        ["spoofed = sum(", 'if g["label"] == "spoof"), 0.0'],
    ),
}


_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)


def _spans(cell: str) -> list[tuple[str, str]]:
    """The cell as ("text", s) and ("code", s) parts, code spans read as GFM reads them."""
    parts, at = [], 0
    for m in _CODE.finditer(cell):
        parts.append(("text", cell[at : m.start()]))
        code = m.group(2)
        if code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        parts.append(("code", code))
        at = m.end()
    parts.append(("text", cell[at:]))
    return [p for p in parts if p[1]]


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def _rows(text: str):
    """(section, defect, cell, aliases) for every table row of ``text``, in order."""
    aliases = _section_aliases(text)
    section, column = "", None
    for line in text.splitlines():
        if line.startswith("## "):
            section, column = line[3:], None
        elif line.startswith("|"):
            cells = _cells(line)
            if column is None:
                column = next(i for i, c in enumerate(cells) if "original -> broken" in c)
            elif not set(line) <= set("|- "):
                yield section, cells[0], cells[column], aliases.get(section, {})


def _section_aliases(text: str) -> dict[str, dict[str, str]]:
    """The short names each section's prose defines ("`S` is `src/spoofscope/`")."""
    out, section, prose = {}, "", []
    for line in text.splitlines() + ["## end"]:
        if line.startswith("## "):
            text = " ".join(prose)
            out[section] = dict(re.findall(r"`([^`]+)` is\s+`([^`]+)`", text))
            section, prose = line[3:], []
        elif not line.startswith("|"):
            prose.append(line)
    return out


def _resolve(token: str, aliases: dict[str, str], seen: list[str]) -> str:
    if token in aliases:
        return aliases[token]
    for short, full in aliases.items():
        if token.startswith(short.rstrip("/") + "/"):
            return full.rstrip("/") + "/" + token[len(short.rstrip("/")) + 1 :]
    if (ROOT / token).exists():
        return token
    for path in reversed(seen):
        if path.endswith("/" + token):
            return path
    raise AssertionError(f"cannot resolve the file {token!r} (no alias, no earlier full path)")


def _parse(cell: str, aliases: dict[str, str], seen: list[str]):
    """(file, code spans of the original, whether an arrow follows them), or None where the
    cell does not start with its file (and a colon, before an arrow)."""
    parts = _spans(cell)
    if parts[0][0] != "code":
        return None
    path = _resolve(parts[0][1], aliases, seen)
    originals, started = [], False
    for kind, s in parts[1:]:
        if kind == "text" and "->" in s:
            return (path, originals, True) if started else None
        if kind == "text" and ":" in s and not started:
            started = True
        elif kind == "code" and started:
            originals.append(s)
    return path, originals, False


def _key(table: dict, section: str, defect: str):
    return next((k for k in table if section.startswith(k[0]) and defect.startswith(k[1])), None)


def _cases(text: str):
    """One (file, texts) case per row of ``text``; (None, cell) for a row nothing here can
    read."""
    cases, current = [], None
    for section, defect, cell, aliases in _rows(text):
        if section != current:  # a short name means a full path earlier in its own section
            seen, last, current = [], None, section
        case_id = f"{section.split(' (')[0]}: {defect[:60]}"
        named, free = _key(NAMED, section, defect), _key(FREE_FORM, section, defect)
        if named is not None:
            cases.append(pytest.param(*NAMED[named][1:], id=case_id))
            continue
        if cell.startswith("same line ->"):  # the previous row's line, changed another way
            cases.append(pytest.param(*(last or (None, cell)), id=case_id))
            continue
        try:
            parsed = _parse(cell, aliases, seen)
        except AssertionError as e:  # a file name nothing resolves: this row fails, not all
            cases.append(pytest.param(None, f"{e}: {cell}", id=case_id))
            continue
        if parsed is None or (not parsed[2] and free is None) or not (parsed[1] or free):
            cases.append(pytest.param(None, cell, id=case_id))
            continue
        path, originals, _arrow = parsed
        if free is not None:
            which = FREE_FORM[free][1]
            originals = originals if which == "all" else [originals[i] for i in which]
        seen.append(path)
        last = (path, originals)
        cases.append(pytest.param(path, originals, id=case_id))
    return cases


def _occurs_in_order(text: str, quote: str) -> bool:
    pieces = [p.strip() for p in quote.split("...") if p.strip()]
    at = 0
    for piece in pieces:
        found = text.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def _check(path, originals, root: Path = ROOT) -> None:
    """One row's case: its file is under ``root`` and holds each of ``originals``."""
    assert path is not None, (
        f"cannot read this row; quote it as `file`: `original` -> `broken`, or add it to "
        f"FREE_FORM or NAMED with the reason: {originals}"
    )
    file = root / path
    assert file.is_file(), f"{path} does not exist"
    if not originals:
        return
    text = file.read_text()
    stale = [
        q
        for q in originals
        if not _occurs_in_order(text, q) and not _occurs_in_order(text, q.replace("\\n", "\n"))
    ]
    assert not stale, f"{path} no longer holds {stale}"


@pytest.mark.parametrize(("path", "originals"), _cases(DOC.read_text()))
def test_each_rows_original_text_is_in_its_file(path, originals):
    _check(path, originals)


def test_every_free_form_row_is_in_the_document():
    rows = [(section, defect) for section, defect, _cell, _aliases in _rows(DOC.read_text())]
    for sec, start in [*FREE_FORM, *NAMED]:
        assert any(s.startswith(sec) and d.startswith(start) for s, d in rows), (sec, start)


def test_every_table_row_is_read():
    lines = DOC.read_text().splitlines()
    rows = [
        line
        for before, line in zip([""] + lines[:-1], lines, strict=True)
        if line.startswith("|") and before.startswith("|") and not set(line) <= set("|- ")
    ]
    text = DOC.read_text()
    assert len(list(_rows(text))) == len(_cases(text)) == len(rows) > 0


def test_a_quote_is_read_and_checked_as_the_document_means_it():
    cell = "`S/serve/x.py` (`helper`): `a = f(1, ...)` and `b \\| c` -> `a = 2`"
    path, originals, arrow = _parse(cell, {"S": "src/spoofscope/"}, [])
    assert (path, originals, arrow) == (
        "src/spoofscope/serve/x.py",
        ["a = f(1, ...)", "b \\| c"],
        True,
    )
    assert _cells("| d | `x \\| y`: `z` -> `w` |") == ["d", "`x | y`: `z` -> `w`"]
    assert _occurs_in_order("a = f(1, 2)", "a = f(1, ...)")
    assert not _occurs_in_order(")\na = f(1, 2", "a = f(1, ...)")
    assert _parse("`x.py` + `added line`", {}, ["src/x.py"]) == ("src/x.py", [], False)


def test_a_row_that_cannot_be_replayed_fails(tmp_path):
    """A made-up document under a made-up tree: the row whose quotes are all in its file, in
    order, passes; a row whose file is gone, one with one quote of two stale, one with its
    pieces out of order, one that is no swap and one whose file name nothing resolves each
    fail."""
    (tmp_path / "x.py").write_text("a = f(1, 2)\nb = 3\n")
    text = "\n".join([
        "## made up",
        "",
        "`X` is `x.py` and `S` is `sub/`.",
        "",
        "| defect | file: original -> broken | test |",
        "|---|---|---|",
        "| good | `X`: `a = f(1, ...)` and `b = 3` -> `b = 4` | t |",
        "| file gone | `S/gone.py`: `a = f(1, 2)` -> `a = 2` | t |",
        "| one stale | `X`: `b = 3` and `c = 3` -> `c = 4` | t |",
        "| out of order | `X`: `b = ... f(1` -> `b = 4` | t |",
        "| no swap | the line changed by hand | t |",
        "| unresolved | `nowhere/y.py`: `a` -> `b` | t |",
    ])  # fmt: skip
    cases = {c.id: c.values for c in _cases(text)}
    assert list(cases) == [f"made up: {d}" for d in
                           ("good", "file gone", "one stale", "out of order", "no swap",
                            "unresolved")]  # fmt: skip
    _check(*cases.pop("made up: good"), root=tmp_path)
    why = {
        "file gone": "sub/gone.py does not exist",
        "one stale": re.escape("x.py no longer holds ['c = 3']"),
        "out of order": re.escape("x.py no longer holds ['b = ... f(1']"),
        "no swap": "cannot read this row",
        "unresolved": "cannot resolve the file 'nowhere/y.py'",
    }
    for defect, message in why.items():
        with pytest.raises(AssertionError, match=message):
            _check(*cases[f"made up: {defect}"], root=tmp_path)
