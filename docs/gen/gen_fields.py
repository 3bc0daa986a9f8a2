"""Writes reference/fields.md at build time (mkdocs-gen-files): every field of a detection
result, its windows, timeline steps and segments, a batch answer, each stream event, a Parquet
row and the audit tables' rows, with its type and meaning, from the one schema in the code
(``spoofscope.infer.schema``) that the service's OpenAPI models and the Parquet writer are
built from and that tests/test_schema.py checks against real output."""

from __future__ import annotations

from spoofscope.infer import schema


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("``", "`")


def _anchor(record) -> str:
    return record.name.lower().replace(" ", "-")


def table(record) -> list[str]:
    """A record's heading, what it is, and a row per field."""
    out = [f"### {record.name[0].upper() + record.name[1:]}", "", _cell(record.about), ""]
    out += ["| field | type | meaning |", "|---|---|---|"]
    for f in record.fields:
        kind = schema.type_name(f)
        if f.items is not None:
            kind = f"list of [{f.items.name}](#{_anchor(f.items)})"
        only = f" ({f.only} only)" if f.only else ""
        out.append(f"| `{f.name}` | {kind} | {_cell(f.meaning)}{only} |")
    return out + [""]


def render() -> str:
    out = [
        "# Fields",
        "",
        "Every field spoofscope writes, with its type and meaning. Generated when the site is "
        "built (`docs/gen/gen_fields.py`) from `spoofscope.infer.schema`, the one definition "
        "that the service's OpenAPI models and the Parquet writer are built from; the tests "
        "(`tests/test_schema.py`) check that real output has exactly these fields, in this "
        "order. Numbers are never NaN or infinite: where there is no value the field is null.",
        "",
        "## A detection result",
        "",
    ]
    for r in (schema.RESULT, schema.WINDOW, schema.STEP, schema.SEGMENT, schema.BATCH):
        out += table(r)
    out += [
        "## Stream events",
        "",
        "A live stream (`spoofscope detect --stream - --json`, or the service's `/v1/stream`) "
        "gives one JSON object per line or message, each with a `type`. The command line gives "
        "`window`, `segment` and `summary` events, without the fields marked service only.",
        "",
    ]
    for r in schema.EVENTS.values():
        out += table(r)
    out += ["## Parquet rows", ""] + table(schema.PARQUET_ROW)
    out += [
        "## Audit rows",
        "",
        "The service's audit trail (`serve --audit-db`, SQLite or PostgreSQL, one schema).",
        "",
    ]
    out += table(schema.AUDIT_DECISION) + table(schema.AUDIT_REJECTION)
    return "\n".join(out)


if __name__ == "<run_path>":  # run by mkdocs-gen-files (runpy.run_path)
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference/fields.md", "w") as f:
        f.write(render())
