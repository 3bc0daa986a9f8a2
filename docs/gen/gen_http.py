"""Writes reference/http.md at build time (mkdocs-gen-files): every route of the service's
FastAPI app (``spoofscope.serve.create_app``) and, for those in its OpenAPI schema, the
parameters, request body, responses and the schemas they use, so the page is the schema that
``/docs`` serves. The app is built around the packaged official AASIST in PyTorch (nothing is
downloaded, exported or warmed up)."""

from __future__ import annotations

import json

from starlette.routing import Mount, Route, WebSocketRoute


def build_app():
    from spoofscope.infer import Detector
    from spoofscope.serve import ServiceSettings, create_app

    return create_app(Detector.load("aasist", engine="torch"), ServiceSettings())


def flat_routes(routes, prefix: str = ""):
    """``(path, route)`` of every route, the routers that FastAPI includes flattened (newer
    FastAPI keeps an included router as one entry of ``app.routes``)."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes, prefix + r.include_context.prefix)
        else:
            yield prefix + r.path, r


def routes(app) -> list[tuple[str, str, str]]:
    """``(kind or methods, path, name)`` of every route of ``app``, in its order."""
    rows = []
    for path, r in flat_routes(app.routes):
        if isinstance(r, WebSocketRoute):
            rows.append(("WebSocket", path, r.name))
        elif isinstance(r, Mount):
            rows.append(("static files", path + "/...", r.name or ""))
        elif isinstance(r, Route):
            methods = ", ".join(sorted(m for m in (r.methods or ()) if m != "HEAD")) or "GET"
            rows.append((methods, path, r.name))
    return rows


def _type(s: dict) -> str:
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#schema-{name.lower()})"
    if "anyOf" in s:
        return " or ".join(_type(x) for x in s["anyOf"])
    if s.get("type") == "array":
        return f"array of {_type(s.get('items', {}))}"
    if "enum" in s:
        return " / ".join(f"`{v}`" for v in s["enum"])
    return s.get("type", "any")


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render() -> str:
    app = build_app()
    schema = app.openapi()
    out = [
        "# HTTP API reference",
        "",
        "Generated when the site is built from the service's own FastAPI app "
        "(`spoofscope.serve.create_app`): every route it serves, then each operation of its "
        "OpenAPI schema (what `GET /openapi.json` returns and `/docs` shows). Errors are "
        '`{"error": {"code": ..., "message": ...}}`: see [Error codes](errors.md). '
        "How to run and limit the service: [The detection service](../deploy/service.md); "
        "its WebSocket streams: [Stream a call](../stream.md).",
        "",
        "## Routes",
        "",
        "| method | path | name |",
        "|---|---|---|",
    ]
    out += [f"| {m} | `{p}` | {n} |" for m, p, n in routes(app)]
    out += ["", "## Operations", ""]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            out += [f"### {method.upper()} `{path}`", ""]
            if op.get("summary"):
                out += [f"**{_cell(op['summary'])}**", ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                out += [
                    "| parameter | in | type | required | description |",
                    "|---|---|---|---|---|",
                ]
                for p in params:
                    ps = p.get("schema", {})
                    default = f" (default `{ps['default']}`)" if "default" in ps else ""
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_type(ps)} | "
                        f"{'yes' if p.get('required') else 'no'} | "
                        f"{_cell(p.get('description', ps.get('description', '')))}{default} |"
                    )
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for ctype, c in body.items():
                out += [f"Request body ({ctype}): {_type(c.get('schema', {}))}", ""]
            out += ["| status | meaning | body |", "|---|---|---|"]
            for status, r in op.get("responses", {}).items():
                s = next(iter(r.get("content", {}).values()), {}).get("schema", {})
                out.append(
                    f"| {status} | {_cell(r.get('description', ''))} | {_type(s) if s else ''} |"
                )
            out.append("")
    out += ["## Schemas", ""]
    for name, s in schema.get("components", {}).get("schemas", {}).items():
        out += [f"### {name} {{#schema-{name.lower()}}}", ""]
        if s.get("description"):
            out += [s["description"].strip(), ""]
        props = s.get("properties", {})
        if props:
            required = set(s.get("required", []))
            out += ["| field | type | required | description |", "|---|---|---|---|"]
            for field, fs in props.items():
                out.append(
                    f"| `{field}` | {_type(fs)} | {'yes' if field in required else 'no'} | "
                    f"{_cell(fs.get('description', fs.get('title', '')))} |"
                )
            out.append("")
        else:
            out += ["```json", json.dumps(s, indent=2), "```", ""]
    return "\n".join(out)


if __name__ == "<run_path>":  # run by mkdocs-gen-files (runpy.run_path)
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference/http.md", "w") as f:
        f.write(render())
