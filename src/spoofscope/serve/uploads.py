"""Uploads read into memory with a size cap and parsed in memory (never spooled to disk)."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

from fastapi import Request

from .errors import ServiceError


def content_length_limit(request: Request) -> None:
    """Refuse a body whose declared length is over the limit before reading it."""
    limit = request.app.state.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ServiceError(
            413,
            "payload_too_large",
            f"upload of {int(length)} bytes exceeds the limit of {limit} bytes",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes as they arrive."""
    chunks, n = [], 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise ServiceError(
                    413, "payload_too_large", f"upload exceeds the limit of {limit} bytes"
                )
            chunks.append(chunk)
    except ServiceError:
        raise
    except Exception as e:  # noqa: BLE001 - a client that disconnects mid-upload
        raise ServiceError(400, "incomplete_upload", f"the upload did not complete ({e})") from None
    return b"".join(chunks)


def parse_multipart(
    body: bytes, content_type: str, field: str = "file"
) -> list[tuple[str, str | None, bytes]]:
    """(field name, file name, bytes) of each part of a multipart/form-data body, in memory.
    ``field``: the form field the endpoint reads, named in the error for other bodies."""
    if "multipart/form-data" not in content_type or "boundary=" not in content_type:
        raise ServiceError(
            422, "missing_file", f"send the audio as multipart/form-data with a '{field}' field"
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise ServiceError(422, "bad_request", "the multipart body could not be parsed")
    parts = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        parts.append((str(name) if name else "", part.get_filename(), data))
    return parts


async def uploaded_files(
    request: Request, field: str, many: bool, also: tuple[str, ...] = ()
) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the form's ``field`` parts (and those of the fields ``also``
    accepts; ``many``: any number of them, else exactly one), or a 422 that names ``field``."""
    body = await read_body(request, request.app.state.settings.max_upload_bytes)
    parts = parse_multipart(body, request.headers.get("content-type", ""), field)
    files = [(fn or name or "upload", data) for name, fn, data in parts if name in (field, *also)]
    if not files:
        raise ServiceError(422, "missing_file", f"no '{field}' field in the form")
    if len(files) > 1 and not many:
        raise ServiceError(
            422,
            "too_many_files",
            f"{len(files)} '{field}' parts; this endpoint scores one file per request "
            "(send several to /v1/detect/batch as 'files')",
        )
    return files
