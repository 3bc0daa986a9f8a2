"""The detection service: a FastAPI app around a :class:`~spoofscope.infer.Detector`.

Uploaded audio stays in memory (:mod:`.uploads`), inference runs in a bounded thread pool
behind a bounded queue (:mod:`.pool`; 503 with Retry-After when full), every error is
``{"error": {"code", "message"}}`` (:mod:`.errors`), and each request gives one JSON log line
(never the audio). Routes live in :mod:`.routes`; state lives on ``app.state``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConfigError
from ..infer import Detector, Limits
from .audit import write_off_loop
from .errors import ServiceError, error_response
from .explain_routes import explain_api
from .metrics import ServiceMetrics
from .pool import ScoringPool
from .routes import api, ops, presented_key
from .streams import StreamHub, streams

log = logging.getLogger("spoofscope.serve")


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
    request_timeout_s: float = 60.0  # compute deadline of one request
    max_batch_audio_s: float = 1200.0  # total audio seconds one batch request may carry
    long_audio_s: float = 60.0  # requests with more audio than this use the long lane
    max_streams: int = 16  # live streams open at once
    max_stream_s: float = 4 * 3600.0  # seconds of audio (and of wall time) per stream
    stream_idle_s: float = 30.0  # a stream with no message for this long ends
    stream_max_lag_s: float = 10.0  # backlog of unjudged audio before reading pauses
    stream_hop_s: float = 1.0  # hop of a stream's windows unless its start message sets one
    replica: str = ""  # this process's name in metrics and headers (default: the host name)
    audit_retry_s: float = 10.0  # how long a stream's audit row is retried before its
    # verdict is withheld (audit_unavailable)

    def __post_init__(self):
        checks = {
            "max_upload_bytes": self.max_upload_bytes > 0,
            "max_duration_s": self.max_duration_s > 0,
            "workers": self.workers >= 1,
            "queue_size": self.queue_size >= 0,
            "max_batch_files": self.max_batch_files >= 1,
            "request_timeout_s": self.request_timeout_s > 0,
            "max_batch_audio_s": self.max_batch_audio_s > 0,
            "long_audio_s": self.long_audio_s > 0,
            "max_streams": self.max_streams >= 1,
            "max_stream_s": self.max_stream_s > 0,
            "stream_idle_s": self.stream_idle_s > 0,
            "stream_max_lag_s": self.stream_max_lag_s > 0,
            "stream_hop_s": self.stream_hop_s > 0,
            "audit_retry_s": self.audit_retry_s >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                "service settings out of range: "
                + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )


def public_model_name(detector: Detector) -> str:
    """How the service names its model to clients: the name and tag (or the checkpoint's file
    name) and a short sha256 of the weights file, never a path on the server."""
    name = str(detector.name).replace("\\", "/")
    if not name.startswith("hf:") or Path(name[3:]).exists():  # a hub id is not a path
        name = name.rsplit("/", 1)[-1]
    file = getattr(detector.model, "weights_file", None)
    if file is None or not Path(file).is_file():
        return name
    import hashlib

    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{name} (weights sha256 {h.hexdigest()[:12]})"


def load_api_keys(path: str | None = None) -> frozenset | None:
    """Keys from a file (one per line, '#' comments) and/or ``SPOOFSCOPE_API_KEYS`` (comma
    separated). None when neither is set: the service is open."""
    keys: set[str] = set()
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"API keys file {p} not found")
        from_file = {
            ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")
        }
        if not from_file:  # every request would get 401: refuse to start instead
            raise ConfigError(
                f"API keys file {p} holds no keys (one per line; lines starting with # are "
                "comments); add a key, or leave out --api-keys-file to serve without keys"
            )
        keys |= from_file
    env = os.environ.get("SPOOFSCOPE_API_KEYS")
    if env:
        keys |= {k.strip() for k in env.split(",") if k.strip()}
    return frozenset(keys) if (keys or path or env) else None


def _register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request, exc: ServiceError):
        request.state.outcome = exc.code
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        return error_response(422, "invalid_request", str(exc.errors()[:3]))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        log.exception("unexpected error")  # the detail goes to the log, not to the client
        return error_response(500, "internal_error", "an unexpected error; see the service log")


def _log_and_count(app: FastAPI) -> None:
    """One JSON log line per request; Prometheus counts for the ``/v1`` endpoints."""

    @app.middleware("http")
    async def _around(request: Request, call_next):
        request.state.request_id = uuid.uuid4().hex
        request.state.outcome = None
        request.state.score = None
        request.state.endpoint = None
        t0 = time.perf_counter()
        try:
            resp = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - answered here, so it is counted and audited
            log.exception("unexpected error")
            request.state.outcome = "internal_error"
            resp = error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")
        ms = (time.perf_counter() - t0) * 1000
        outcome = request.state.outcome or (
            "ok" if resp.status_code < 400 else f"http_{resp.status_code}"
        )
        resp.headers["X-Request-ID"] = request.state.request_id
        endpoint = request.state.endpoint
        if endpoint:
            app.state.metrics.requests.labels(endpoint, outcome).inc()
            app.state.metrics.latency.labels(endpoint).observe(ms / 1000)
            if resp.status_code >= 400 and app.state.audit is not None:
                await write_off_loop(
                    app.state.audit.record_rejection,
                    request.state.request_id,
                    endpoint,
                    resp.status_code,
                    outcome,
                    presented_key(request),
                    failing="refusal not recorded",  # the refusal stands
                )
        resp.headers["X-Replica"] = app.state.replica
        log.info(
            json.dumps(
                {
                    "ts": time.time(),
                    "request_id": request.state.request_id,
                    "method": request.method,
                    "path": request.url.path[:200],
                    "status": resp.status_code,
                    "duration_ms": round(ms, 2),
                    "outcome": outcome,
                    "score": request.state.score,
                }
            )
        )
        return resp


def create_app(detector: Detector, settings: ServiceSettings | None = None) -> FastAPI:
    """The service around ``detector`` (a copy limited to ``settings.max_duration_s``)."""
    s = settings or ServiceSettings()
    replica = s.replica or socket.gethostname()
    metrics = ServiceMetrics(replica, s.model_version)
    pool = ScoringPool(s.workers, s.queue_size, s.retry_after_s, metrics)
    audit = None
    if s.audit_db:
        from .audit import AuditLog

        audit = AuditLog(s.audit_db)
    detector = detector.replace(
        limits=Limits(
            batch_size=detector.limits.batch_size,
            max_duration_s=s.max_duration_s,
            timeout_s=s.request_timeout_s,
        )
    )

    @asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(pool.executor, detector.warm_up)
        app.state.ready = True
        yield
        # shutting down: live streams end with their summaries (if run_service has not
        # ended them already), work in flight stops at its next window, queued work is
        # dropped, so the process can exit
        try:
            await app.state.streams.shutdown(SHUTDOWN_ANSWER_S)
        except TimeoutError:
            log.warning("live streams did not end within %s s", SHUTDOWN_ANSWER_S)
        detector.cancel_event.set()
        pool.shutdown()
        if audit:
            audit.close()

    app = FastAPI(
        title="spoofscope",
        version=s.model_version or "0",
        description="Is this recording genuine (bona fide) or spoofed?",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by routes.docs (no CDN)
        redoc_url=None,
    )
    app.state.settings = s
    app.state.detector = detector
    app.state.metrics = metrics
    app.state.pool = pool
    app.state.audit = audit
    app.state.ready = False
    app.state.streams = StreamHub(metrics.stream_scoring.observe)
    app.state.replica = replica
    app.state.model_name = s.model_name or public_model_name(detector)
    _register_error_handlers(app)
    _log_and_count(app)
    app.include_router(api)
    app.include_router(explain_api)
    app.include_router(ops)
    app.include_router(streams)
    _mount_docs_assets(app)
    return app


def _mount_docs_assets(app: FastAPI) -> None:
    """Swagger UI 5 assets as the fastapi-offline package installs them (MIT): no CDN."""
    import fastapi_offline
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")


#: after the grace period, requests still running are stopped at their next window and
#: answered 503 ``shutting_down``; this long is left for that answer (one batch of windows)
#: before the server cancels what remains
SHUTDOWN_ANSWER_S = 15.0


def run_service(app: FastAPI, host: str, port: int, shutdown_grace_s: float) -> None:
    """Serve ``app`` with uvicorn until SIGTERM/SIGINT. Then: stop accepting; let requests in
    flight finish for ``shutdown_grace_s``; stop those still running at their next window, so
    each is answered with a JSON 503 ``shutting_down`` and recorded in the audit trail (not
    cut off by the server with a plain-text 500); close the audit trail; return."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            asyncio.get_running_loop().call_later(
                shutdown_grace_s, app.state.detector.cancel_event.set
            )
            # before uvicorn closes WebSockets itself (code 1012, no summary): each live
            # stream judges what arrived, sends its summary, writes its row, closes with 1001
            try:
                await app.state.streams.shutdown(shutdown_grace_s + SHUTDOWN_ANSWER_S)
            except TimeoutError:
                log.warning("live streams did not end in time; closing them")
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=shutdown_grace_s + SHUTDOWN_ANSWER_S,
    )
    _Server(config).run()
