"""Writes reference/errors.md at build time (mkdocs-gen-files), read from the source code so
that it lists what the code raises: the service's error codes (every ``ServiceError``,
``error_response`` and ``StreamStop`` with a literal code, and the table ``STATUS_OF_KIND``
that maps a detection result's error to its answer) and the Python exception classes under
``SpoofscopeError``. The code is parsed, not imported."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "spoofscope"


def _text(node) -> str:
    """A message as written: an f-string's fields shown as ``{...}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return "" if node is None else f"`{ast.unparse(node)}`"


def _literal(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BoolOp):  # `e.kind or "bad_audio"`: the literal fallback
        return next((v.value for v in node.values if isinstance(v, ast.Constant)), None)
    return None


def _constants(tree) -> dict:
    """Module-level ``NAME = int`` and ``A, B = 1, 2`` assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                    out[target.id] = node.value.value
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for t, v in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(t, ast.Name) and isinstance(v, ast.Constant):
                            out[t.id] = v.value
    return out


def service_errors() -> tuple[list, list, dict]:
    """HTTP ``(status, code, message, where)``, stream ``(code, close, message, where)`` and
    ``STATUS_OF_KIND``."""
    http, stream, kinds = set(), set(), {}
    for path in sorted((SRC / "serve").glob("*.py")):
        tree = ast.parse(path.read_text())
        consts = _constants(tree)
        where = f"serve/{path.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "STATUS_OF_KIND" for t in node.targets
            ):
                kinds = ast.literal_eval(node.value)
            if not isinstance(node, ast.Call):
                if isinstance(node, ast.Dict):  # an `{"type": "error", "code": ...}` event
                    d = {
                        k.value: v
                        for k, v in zip(node.keys, node.values, strict=True)
                        if isinstance(k, ast.Constant)
                    }
                    if _literal(d.get("type")) == "error" and isinstance(
                        _literal(d.get("code")), str
                    ):
                        stream.add((_literal(d["code"]), None, _text(d.get("message")), where))
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args = node.args
            if name in ("ServiceError", "error_response") and len(args) >= 2:
                status, code = _literal(args[0]), _literal(args[1])
                if isinstance(status, int) and isinstance(code, str):
                    msg = _text(args[2]) if len(args) > 2 else ""
                    http.add((status, code, msg, where))
            elif name == "StreamStop" and args and isinstance(_literal(args[0]), str):
                close = args[2] if len(args) > 2 else None
                for kw in node.keywords:
                    if kw.arg == "close":
                        close = kw.value
                if close is None:
                    close_code = consts.get("POLICY")
                elif isinstance(close, ast.Name):
                    close_code = consts.get(close.id)
                else:
                    close_code = _literal(close)
                msg = _text(args[1]) if len(args) > 1 else ""
                stream.add((_literal(args[0]), close_code, msg, where))
            elif name == "_bad":  # streams: a malformed message
                stream.add(("bad_message", consts.get("INVALID"), _text(args[0]), where))
    return sorted(http), sorted(stream, key=lambda r: (r[0], r[1] or 0, r[2])), kinds


def exception_classes() -> list[tuple[str, str, list[str], str]]:
    """``(class, module, bases, docstring)`` of every class deriving from SpoofscopeError."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        module = "spoofscope." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                found[node.name] = (module, bases, ast.get_docstring(node) or "")
    ours = {"SpoofscopeError"}
    changed = True
    while changed:
        changed = False
        for name, (_, bases, _) in found.items():
            if name not in ours and ours & set(bases):
                ours.add(name)
                changed = True
    return [(n, *found[n]) for n in sorted(ours, key=lambda n: (n != "SpoofscopeError", n))]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render() -> str:
    http, stream, kinds = service_errors()
    out = [
        "# Error codes",
        "",
        "Generated from the source code when the site is built (`docs/gen/gen_errors.py`).",
        "",
        "## Command line",
        "",
        "Exit status 0: done; 1: some input failed (its row or object carries `error`, the "
        "batch goes on); 2: an error you can fix (one line on stderr naming the thing and the "
        "fix; `spoofscope --debug ...` shows the traceback), including a feature of an extra "
        "that is not installed (the line names `pip install 'spoofscope[EXTRA]'`); "
        "130: interrupted. Any other traceback is a bug.",
        "",
        "## HTTP answers",
        "",
        'Every error the service answers is `{"error": {"code": ..., "message": ...}}` with '
        "the status below (`http_error` carries the status of a routing error such as 404 or "
        "405; `invalid_request` a request that fails validation). The message is the one the "
        "code writes, with `{...}` standing for the values filled in.",
        "",
    ]
    rows = [[str(s), f"`{c}`", _cell(m), f"`{w}`"] for s, c, m, w in http]
    out += _table(["status", "code", "message", "raised in"], rows)
    out += [
        "",
        "A file that cannot be judged answers by its result's error kind "
        "(`STATUS_OF_KIND` in `serve/errors.py`):",
        "",
    ]
    rows = [[f"`{k}`", str(s), f"`{c}`"] for k, (s, c) in kinds.items()]
    out += _table(["result's error kind", "status", "code"], rows)
    out += [
        "",
        "## Stream errors (WebSocket)",
        "",
        'A stream that is refused or ends on an error gets an event `{"type": "error", "code": '
        '..., "message": ...}` and then closes with the close code shown (RFC 6455: 1001 going '
        "away, 1007 invalid data, 1008 policy, 1011 internal error, 1013 try again later). A "
        "code that is not a literal (`e.kind`) shows its fallback.",
        "",
    ]
    rows = [[f"`{c}`", str(k or ""), _cell(m), f"`{w}`"] for c, k, m, w in stream]
    out += _table(["code", "close code", "message", "raised in"], rows)
    out += [
        "",
        "## Python exceptions",
        "",
        "Every error a user can cause derives from `spoofscope.errors.SpoofscopeError`, and "
        "from the built-in exception it used to be (so `except ValueError` still works).",
        "",
    ]
    rows = [
        [
            f"`{name}`",
            f"`{module}`",
            ", ".join(f"`{b}`" for b in bases),
            _cell(doc.split("\n\n")[0]),
        ]
        for name, module, bases, doc in exception_classes()
    ]
    out += _table(["class", "module", "bases", "meaning"], rows)
    return "\n".join(out) + "\n"


if __name__ == "<run_path>":  # run by mkdocs-gen-files (runpy.run_path)
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference/errors.md", "w") as f:
        f.write(render())
