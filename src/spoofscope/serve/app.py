"""The detection service: a FastAPI app around a :class:`~spoofscope.infer.Detector`.

Uploaded audio stays in memory (the multipart body is read with a size cap and parsed in
memory, never spooled to disk), inference runs in a bounded thread pool behind a bounded queue
(503 with Retry-After when full), every error is ``{"error": {"code", "message"}}``, and each
request gives one JSON log line (never the audio).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..infer import Detector

log = logging.getLogger("spoofscope.serve")
STATIC = Path(__file__).parent / "static"
UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an audio file (WAV, FLAC, MP3, M4A, "
                            "OGG, Opus, WebM ...)",
                        }
                    },
                }
            }
        },
    }
}
BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


@dataclass
class ServiceSettings:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_duration_s: float = 600.0
    workers: int = 1
    queue_size: int = 8
    api_keys: frozenset | None = None
    audit_db: str | None = None
    model_name: str = ""
    model_version: str = ""
    max_batch_files: int = 16
    retry_after_s: int = 2


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(status: int, code: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def load_api_keys(path: str | None = None) -> frozenset | None:
    """Keys from a file (one per line, '#' comments) and/or ``SPOOFSCOPE_API_KEYS`` (comma
    separated). None when neither is set: the service is open."""
    keys: set[str] = set()
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"API keys file {p} not found")
        keys |= {
            ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")
        }
    env = os.environ.get("SPOOFSCOPE_API_KEYS")
    if env:
        keys |= {k.strip() for k in env.split(",") if k.strip()}
    return frozenset(keys) if (keys or path or env) else None


class _Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "spoofscope_requests",
            "Requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "spoofscope_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.audio = Counter(
            "spoofscope_audio_seconds", "Audio seconds scored", registry=self.registry
        )
        self.queue = Gauge(
            "spoofscope_queue_depth", "Requests waiting for a worker", registry=self.registry
        )
        self.inflight = Gauge(
            "spoofscope_inflight", "Requests being scored or waiting", registry=self.registry
        )
        self.low_conf = Counter(
            "spoofscope_low_confidence", "Low-confidence decisions", registry=self.registry
        )


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """(field name, file name, bytes) of each part of a multipart/form-data body, in memory."""
    if "multipart/form-data" not in content_type or "boundary=" not in content_type:
        raise ServiceError(
            422, "missing_file", "send the audio as multipart/form-data with a 'file' field"
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


def _named(name: str, error: str) -> str:
    """An error about the in-memory upload ("<N bytes>: reason"), named by its file name."""
    return f"{name}: {error.split(': ', 1)[-1]}"


_STATUS = {
    "too_long": (413, "audio_too_long"),
    "empty": (422, "empty_audio"),
    "invalid": (415, "unsupported_audio"),
    "missing": (422, "missing_file"),
    "internal": (500, "internal_error"),
}


def create_app(detector: Detector, settings: ServiceSettings | None = None) -> FastAPI:
    s = settings or ServiceSettings()
    detector.max_duration_s = s.max_duration_s
    metrics = _Metrics()
    executor = ThreadPoolExecutor(max_workers=max(1, s.workers), thread_name_prefix="score")
    audit = None
    if s.audit_db:
        from .audit import AuditLog

        audit = AuditLog(s.audit_db)
    state = {"ready": False, "inflight": 0}
    model_name = s.model_name or detector.name

    @asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(executor, detector.warm_up)
        state["ready"] = True
        yield
        executor.shutdown(wait=False, cancel_futures=True)
        if audit:
            audit.close()

    app = FastAPI(
        title="spoofscope",
        version=s.model_version or "0",
        description="Is this recording genuine (bona fide) or spoofed?",
        lifespan=lifespan,
    )

    @app.exception_handler(ServiceError)
    async def _service_error(request, exc: ServiceError):
        request.state.outcome = exc.code
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        return _error(422, "invalid_request", str(exc.errors()[:3]))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        log.exception("unexpected error")
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    @app.middleware("http")
    async def _around(request: Request, call_next):
        rid = uuid.uuid4().hex
        request.state.request_id = rid
        request.state.outcome = None
        request.state.score = None
        t0 = time.perf_counter()
        path = request.url.path
        if path.startswith("/v1"):
            if s.api_keys is not None:
                key = request.headers.get("x-api-key")
                auth = request.headers.get("authorization", "")
                if not key and auth.lower().startswith("bearer "):
                    key = auth[7:].strip()
                if key not in s.api_keys:
                    resp = _error(
                        401,
                        "unauthorized",
                        "a valid API key is required (X-API-Key header or "
                        "Authorization: Bearer KEY)",
                    )
                    request.state.outcome = "unauthorized"
                    return _finish(request, resp, path, t0)
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > s.max_upload_bytes:
                request.state.outcome = "too_large"
                return _finish(
                    request,
                    _error(
                        413,
                        "payload_too_large",
                        f"upload of {int(length)} bytes exceeds the limit of {s.max_upload_bytes} "
                        "bytes",
                    ),
                    path,
                    t0,
                )
        resp = await call_next(request)
        return _finish(request, resp, path, t0)

    def _finish(request, resp, path, t0):
        ms = (time.perf_counter() - t0) * 1000
        outcome = request.state.outcome or (
            "ok" if resp.status_code < 400 else f"http_{resp.status_code}"
        )
        resp.headers["X-Request-ID"] = request.state.request_id
        if path.startswith("/v1"):
            metrics.requests.labels(path, outcome).inc()
            metrics.latency.labels(path).observe(ms / 1000)
        log.info(
            json.dumps(
                {
                    "ts": time.time(),
                    "request_id": request.state.request_id,
                    "method": request.method,
                    "path": path,
                    "status": resp.status_code,
                    "duration_ms": round(ms, 2),
                    "outcome": outcome,
                    "score": request.state.score,
                }
            )
        )
        return resp

    async def _body(request: Request) -> bytes:
        chunks, n = [], 0
        try:
            async for chunk in request.stream():
                n += len(chunk)
                if n > s.max_upload_bytes:
                    raise ServiceError(
                        413,
                        "payload_too_large",
                        f"upload exceeds the limit of {s.max_upload_bytes} bytes",
                    )
                chunks.append(chunk)
        except ServiceError:
            raise
        except Exception as e:  # noqa: BLE001 - a client that disconnects mid-upload
            raise ServiceError(
                400, "incomplete_upload", f"the upload did not complete ({e})"
            ) from None
        return b"".join(chunks)

    async def _score(items: list[tuple[str, bytes]]):
        limit = s.workers + s.queue_size
        if state["inflight"] >= limit:
            raise ServiceError(
                503,
                "overloaded",
                "the service is at capacity; retry shortly",
                {"Retry-After": str(s.retry_after_s)},
            )
        state["inflight"] += 1
        metrics.inflight.set(state["inflight"])
        metrics.queue.set(max(state["inflight"] - s.workers, 0))
        try:
            blobs = [b for _, b in items]
            return await asyncio.get_running_loop().run_in_executor(
                executor, detector.detect_many, blobs
            )
        finally:
            state["inflight"] -= 1
            metrics.inflight.set(state["inflight"])
            metrics.queue.set(max(state["inflight"] - s.workers, 0))

    def _result(request, name, blob, res, t0) -> dict:
        d = res.to_dict()
        d["path"] = name
        if d.get("error"):  # name the upload, not the in-memory buffer
            d["error"] = _named(name, d["error"])
        d["request_id"] = request.state.request_id
        d["processing_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        if res.error is None:
            metrics.audio.inc(res.duration_s or 0.0)
            if res.confident is False:
                metrics.low_conf.inc()
            if audit:
                audit.record(
                    request.state.request_id,
                    hashlib.sha256(blob).hexdigest(),
                    d,
                    model_name,
                    s.model_version,
                )
        return d

    def _files(parts, field_names) -> list[tuple[str, bytes]]:
        files = [(fn or name or "upload", data) for name, fn, data in parts if name in field_names]
        if not files:
            raise ServiceError(
                422, "missing_file", f"no '{'/'.join(sorted(field_names))}' field in the form"
            )
        return files

    @app.post(
        "/v1/detect",
        openapi_extra=UPLOAD_SCHEMA,
        summary="Score one audio file",
        response_description="the verdict",
    )
    async def detect(request: Request):
        t0 = time.perf_counter()
        body = await _body(request)
        files = _files(parse_multipart(body, request.headers.get("content-type", "")), {"file"})
        name, blob = files[0]
        if not blob:
            raise ServiceError(422, "empty_audio", f"{name}: the uploaded file is empty")
        res = (await _score([(name, blob)]))[0]
        if res.error:
            status, code = _STATUS.get(res.error_kind or "invalid", (415, "unsupported_audio"))
            raise ServiceError(status, code, _named(name, res.error))
        d = _result(request, name, blob, res, t0)
        request.state.score = d["score"]
        return JSONResponse(d)

    @app.post(
        "/v1/detect/batch",
        openapi_extra=BATCH_SCHEMA,
        summary="Score several audio files; a failure in one does not fail the others",
    )
    async def detect_batch(request: Request):
        t0 = time.perf_counter()
        body = await _body(request)
        files = _files(
            parse_multipart(body, request.headers.get("content-type", "")), {"files", "file"}
        )
        if len(files) > s.max_batch_files:
            raise ServiceError(
                413,
                "too_many_files",
                f"{len(files)} files; at most {s.max_batch_files} per request",
            )
        results = await _score(files)
        out = [_result(request, n, b, r, t0) for (n, b), r in zip(files, results, strict=True)]
        return JSONResponse({"request_id": request.state.request_id, "results": out})

    @app.get("/healthz", summary="The process is alive")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and warmed up")
    async def readyz():
        if not state["ready"]:
            return _error(503, "not_ready", "the model is still loading")
        return {
            "status": "ready",
            "model": model_name,
            "version": s.model_version,
            "calibrated": detector.calibration is not None,
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def prom():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text())

    app.state.settings = s
    app.state.detector = detector
    return app
