"""``serve`` and ``audit``: the detection service and its audit trail."""

from __future__ import annotations

import json
import logging
import sys

from ..errors import SpoofscopeError
from ._common import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    PORT,
    POSITIVE,
    POSITIVE_INT,
    CLIError,
    _model_notices,
    detector_args,
    detector_for,
)


def _cmd_serve(a) -> int:
    from .. import __version__
    from ..serve import ServiceSettings, create_app, load_api_keys, run_service

    try:
        det = detector_for(a, max_duration_s=a.max_duration)
        # the page and streams show where: the measured localisation windows (README)
        det = det.replace(windows=det.windows.localising())
    except (SpoofscopeError, OSError) as e:  # fail fast, with the reason, before serving
        raise CLIError(f"cannot load the model: {e}") from None
    settings = ServiceSettings(
        max_upload_bytes=int(a.max_upload_mb * 1024 * 1024),
        max_duration_s=a.max_duration,
        workers=a.workers,
        queue_size=a.queue_size,
        api_keys=load_api_keys(a.api_keys_file),
        audit_db=a.audit_db,
        model_version=__version__,
        request_timeout_s=a.request_timeout,
        max_batch_audio_s=a.max_batch_seconds,
        long_audio_s=a.long_audio,
        max_streams=a.max_streams,
        max_stream_s=a.max_stream,
        stream_idle_s=a.stream_idle,
        stream_max_lag_s=a.stream_max_lag,
        stream_hop_s=a.stream_hop,
        replica=a.replica or "",
    )
    app = create_app(det, settings)
    logging.getLogger("spoofscope.serve").setLevel(logging.WARNING if a.quiet else logging.INFO)
    for line in _model_notices(det):  # the licence binds whoever runs the service
        print(f"note: {line}", file=sys.stderr, flush=True)
    if not a.quiet:
        print(
            f"spoofscope serve: http://{a.host}:{a.port} model {app.state.model_name} "
            f"(engine {det.engine.name}, window {det.window_samples} samples); limits: upload "
            f"{a.max_upload_mb:g} MB, audio {a.max_duration:g} s per file and "
            f"{a.max_batch_seconds:g} s per batch, {a.request_timeout:g} s per request, "
            f"{a.workers} worker(s) + 1 long-audio lane, queue {a.queue_size}; API keys "
            f"{'required' if settings.api_keys is not None else 'off'}; audit "
            f"{app.state.audit.path if app.state.audit else 'off'}",
            file=sys.stderr,
            flush=True,
        )
    # SIGTERM/SIGINT: stop accepting, let requests in flight finish for the grace period,
    # then stop them (503 shutting_down, audited) and exit with status 0. uvicorn re-raises
    # the signal after its shutdown: a handler of ours takes it.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    run_service(app, a.host, a.port, a.shutdown_grace)
    return 0


def _cmd_audit(a) -> int:
    from ..serve.audit import format_summary, summarize

    s = summarize(a.db, a.since, a.until)
    print(json.dumps(s, indent=2) if a.json else format_summary(s))
    return 0


def add_serve(command) -> None:
    sv = command(
        "serve",
        "run the detection service (FastAPI)",
        "Serve POST /v1/detect and /v1/detect/batch, health, readiness, metrics, a web page "
        "and offline API docs at /docs.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=PORT, default=8000, help="port to listen on")
    detector_args(sv)
    sv.add_argument("--workers", type=POSITIVE_INT, default=1, help="inference threads")
    sv.add_argument(
        "--queue-size", type=NON_NEGATIVE_INT, default=8, help="requests waiting beyond workers"
    )
    sv.add_argument(
        "--max-upload-mb", type=POSITIVE, default=25.0, help="largest request body (MB)"
    )
    sv.add_argument(
        "--max-duration", type=POSITIVE, default=600.0, help="longest file (seconds of audio)"
    )
    sv.add_argument(
        "--max-batch-seconds",
        type=POSITIVE,
        default=1200.0,
        help="most audio one batch request may carry (seconds, from the headers)",
    )
    sv.add_argument(
        "--request-timeout",
        type=POSITIVE,
        default=60.0,
        help="compute deadline of one request (seconds)",
    )
    sv.add_argument(
        "--long-audio",
        type=POSITIVE,
        default=60.0,
        help="requests with more audio than this (seconds) use the separate long-audio lane",
    )
    sv.add_argument(
        "--shutdown-grace",
        type=NON_NEGATIVE,
        default=10.0,
        help="on SIGTERM, seconds to let requests in flight finish before exiting",
    )
    sv.add_argument(
        "--max-streams", type=POSITIVE_INT, default=16, help="live streams (WebSocket) at once"
    )
    sv.add_argument(
        "--max-stream",
        type=POSITIVE,
        default=14400.0,
        help="seconds of audio (and of wall time) one live stream may last",
    )
    sv.add_argument(
        "--stream-idle",
        type=POSITIVE,
        default=30.0,
        help="a live stream that sends nothing for this many seconds is ended",
    )
    sv.add_argument(
        "--stream-max-lag",
        type=POSITIVE,
        default=10.0,
        help="seconds of unjudged audio a stream may queue; beyond it the client gets a "
        "'lagging' event and reading pauses until half of it is judged",
    )
    sv.add_argument(
        "--stream-hop",
        type=POSITIVE,
        default=1.0,
        help="hop (seconds) of a live stream's windows unless its start message sets hop_s",
    )
    sv.add_argument("--api-keys-file", help="one API key per line (or SPOOFSCOPE_API_KEYS)")
    sv.add_argument(
        "--audit-db",
        metavar="FILE|URL",
        help="record every decision in this SQLite file, or in PostgreSQL at a "
        "postgresql://USER:PASSWORD@HOST/DB URL (several service processes share one trail)",
    )
    sv.add_argument(
        "--replica",
        metavar="NAME",
        help="this process's name in /metrics, /readyz and the X-Replica header (default: "
        "the host name)",
    )
    sv.add_argument("--quiet", action="store_true", help="no start-up line, no request logs")
    sv.set_defaults(func=_cmd_serve)


def add_audit(command) -> None:
    au = command("audit", "summarise the audit trail")
    ausub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    su = command(
        "summary", "decisions by label, low-confidence rate, scores, refusals", parent=ausub
    )
    su.add_argument(
        "--db", required=True, help="the SQLite file or postgresql:// URL of serve --audit-db"
    )
    su.add_argument(
        "--since", help="ISO date/time (2026-11-01, 2026-11-01T08:00) or a duration (24h, 7d)"
    )
    su.add_argument("--until", help="as --since")
    su.add_argument("--json", action="store_true", help="print one JSON object")
    su.set_defaults(func=_cmd_audit)
