"""The ``/v1`` API (API key and upload-size checks as router dependencies) and the operational
routes (health, readiness, metrics, the web page)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .errors import STATUS_OF_KIND, ServiceError, error_response
from .schemas import BatchResponse, DetectResponse
from .uploads import content_length_limit, uploaded_files

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("spoofscope.serve")


def _multipart_schema(field: str, many: bool) -> dict:
    item = {"type": "string", "format": "binary"}
    prop = (
        {"type": "array", "items": item}
        if many
        else {
            **item,
            "description": "an audio file (WAV, FLAC, MP3, M4A, OGG, Opus, WebM ...)",
        }
    )
    schema = {"type": "object", "required": [field], "properties": {field: prop}}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


def presented_key(request) -> str | None:
    """The API key a request or WebSocket presents (``X-API-Key`` or ``Authorization:
    Bearer``)."""
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def api_key_ok(app, key: str | None) -> bool:
    """Whether ``key`` opens the service (any does when no keys are set)."""
    keys = app.state.settings.api_keys
    return keys is None or key in keys


def api_key(request: Request) -> None:
    """Every ``/v1`` route: count it under its endpoint (the route's template, such as
    ``/v1/streams/{sid}``, never the path a client chose), then require a key when keys are
    set."""
    route = request.scope.get("route")
    request.state.endpoint = getattr(route, "path", None) or "/v1"
    if not api_key_ok(request.app, presented_key(request)):
        raise ServiceError(
            401,
            "unauthorized",
            "a valid API key is required (X-API-Key header or Authorization: Bearer KEY)",
        )


api = APIRouter(prefix="/v1", dependencies=[Depends(api_key), Depends(content_length_limit)])
ops = APIRouter()


def _named(request: Request, name: str, res) -> str:
    """A result's error about the in-memory upload ("<N bytes>: reason"), named by its file
    name, in the service's words (its limits are options of ``serve``)."""
    if res.error_kind == "too_long":
        limit = request.app.state.settings.max_duration_s
        return (
            f"{name}: the audio is longer than this service's limit of {limit:g} s per file "
            "(set by serve --max-duration); send a shorter recording"
        )
    return f"{name}: {res.error.split(': ', 1)[-1]}"


async def _result(request: Request, name: str, blob: bytes, res, t0: float) -> dict:
    st = request.app.state
    d = res.to_dict()
    d["path"] = name
    d["model"] = st.model_name  # never the server's path to the weights
    if d.get("error"):  # name the upload, not the in-memory buffer
        d["error"] = _named(request, name, res)
    d["request_id"] = request.state.request_id
    d["processing_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    if res.error is None:
        st.metrics.audio.inc(res.duration_s or 0.0)
        if res.label == "no_speech":
            st.metrics.no_speech.inc()
        elif res.confident is False:
            st.metrics.low_conf.inc()
        if st.audit:
            await audited(
                st.audit.record,
                request.state.request_id,
                hashlib.sha256(blob).hexdigest(),
                d,
                st.model_name,
                st.settings.model_version,
            )
    return d


async def audited(write, *args) -> None:
    """An audit write, failing closed: a decision that cannot be recorded is not returned
    (503 ``audit_unavailable``, and a log line naming the database)."""
    from .audit import write_off_loop

    if not await write_off_loop(write, *args, failing="answering 503"):
        raise ServiceError(
            503,
            "audit_unavailable",
            "the decision could not be recorded in the audit trail, so it is not returned; "
            "retry shortly",
            {"Retry-After": "5"},
        )


@api.post(
    "/detect",
    openapi_extra=_multipart_schema("file", many=False),
    summary="Score one audio file",
    response_description="the verdict",
    response_model=DetectResponse,
)
async def detect(request: Request):
    t0 = time.perf_counter()
    name, blob = (await uploaded_files(request, "file", many=False))[0]
    if not blob:
        raise ServiceError(422, "empty_audio", f"{name}: the uploaded file is empty")
    st = request.app.state
    long = _check_durations(request, [(name, blob)])
    res = (await st.pool.run(st.detector.detect_many, [blob], long=long))[0]
    if res.error:
        status, code = STATUS_OF_KIND.get(res.error_kind or "invalid", (415, "unsupported_audio"))
        raise ServiceError(status, code, _named(request, name, res))
    d = await _result(request, name, blob, res, t0)
    request.state.score = d["score"]
    if res.label == "no_speech":
        request.state.outcome = "no_speech"
    return JSONResponse(d)


def _check_durations(request: Request, files) -> bool:
    """Refuse a batch whose headers declare more audio than the batch cap; say whether the
    request goes to the long lane. Nothing is decoded here."""
    from ..audio import probe_duration

    s = request.app.state.settings
    total = sum(probe_duration(b) or 0.0 for _, b in files)
    if len(files) > 1 and total > s.max_batch_audio_s:
        raise ServiceError(
            413,
            "batch_too_long",
            f"the batch holds {total:.0f} s of audio, over the limit of {s.max_batch_audio_s:g} "
            "s per request; send fewer or shorter files",
        )
    return total > s.long_audio_s


@api.post(
    "/detect/batch",
    openapi_extra=_multipart_schema("files", many=True),
    summary="Score several audio files; a failure in one does not fail the others",
    response_model=BatchResponse,
)
async def detect_batch(request: Request):
    t0 = time.perf_counter()
    files = await uploaded_files(request, "files", many=True, also=("file",))
    st = request.app.state
    limit = st.settings.max_batch_files
    if len(files) > limit:
        raise ServiceError(
            413, "too_many_files", f"{len(files)} files; at most {limit} per request"
        )
    long = _check_durations(request, files)
    results = await st.pool.run(st.detector.detect_many, [b for _, b in files], long=long)
    stopped = next((r for r in results if r.error_kind == "shutting_down"), None)
    if stopped is not None:  # the whole request is refused, as for one file
        raise ServiceError(503, "shutting_down", stopped.error.split(": ", 1)[-1])
    out = [await _result(request, n, b, r, t0) for (n, b), r in zip(files, results, strict=True)]
    return JSONResponse({"request_id": request.state.request_id, "results": out})


@ops.get("/healthz", summary="The process is alive")
async def healthz():
    return {"status": "ok"}


@ops.get("/readyz", summary="The model is loaded and warmed up")
async def readyz(request: Request):
    st = request.app.state
    if not st.ready:
        return error_response(503, "not_ready", "the model is still loading")
    if st.audit is not None and not await asyncio.to_thread(st.audit.ping):
        # anyone may ask: the database's name, user and address go to the log only
        log.error("not ready: the audit database %s cannot be reached", st.audit.path)
        return error_response(503, "not_ready", "audit database unavailable")
    return {
        "status": "ready",
        "model": st.model_name,
        "version": st.settings.model_version,
        "calibrated": st.detector.calibration is not None,
        "engine": st.detector.engine.name,
        "replica": st.replica,
    }


@ops.get("/metrics", summary="Prometheus metrics")
async def prom(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@ops.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return HTMLResponse((STATIC / "index.html").read_text())


@ops.get("/docs", include_in_schema=False)
async def docs(request: Request):
    """Swagger UI from locally installed assets (fastapi-offline): works with no internet."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title="spoofscope API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon.png",
    )
