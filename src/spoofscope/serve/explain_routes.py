"""``POST /v1/explain``: why this verdict, computed on request, under the limits of
``/v1/detect`` (API key, upload size, longest recording, the request's compute deadline, the
bounded pool) and a cap on the passes one request may spend; one audit row per request."""

from __future__ import annotations

import functools
import hashlib
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ..audio import AudioError
from ..errors import ConfigError
from ..infer.detector import finite
from ..infer.explain import DEFAULT_BUDGET, DEFAULT_METHOD, METHODS, ExplainError, ExplainStopped
from .errors import STATUS_OF_KIND, ServiceError
from .routes import _check_durations, _multipart_schema, api_key, audited
from .uploads import content_length_limit, uploaded_files

#: the most passes (windows through the network) one request may spend
MAX_PASSES = DEFAULT_BUDGET

explain_api = APIRouter(
    prefix="/v1", dependencies=[Depends(api_key), Depends(content_length_limit)]
)


@explain_api.post(
    "/explain",
    openapi_extra=_multipart_schema("file", many=False),
    summary="Why this verdict: relevance of time-frequency tiles (the whole file or a segment)",
    response_description="the explanation: tiles {start_s, end_s, f_lo_hz, f_hi_hz, "
    "relevance}, the method and its baseline, the verdict, a one-line summary",
)
async def explain(
    request: Request,
    method: str = Query(DEFAULT_METHOD, description=f"one of {', '.join(METHODS)}"),
    start_s: float | None = Query(None, ge=0, description="explain from here (seconds)"),
    end_s: float | None = Query(None, gt=0, description="explain up to here (seconds)"),
    budget: int = Query(MAX_PASSES, ge=1, description=f"at most {MAX_PASSES} passes"),
):
    t0 = time.perf_counter()
    if budget > MAX_PASSES:
        raise ServiceError(
            422,
            "budget_too_large",
            f"budget {budget} is over this service's limit of {MAX_PASSES} passes per request",
        )
    name, blob = (await uploaded_files(request, "file", many=False))[0]
    if not blob:
        raise ServiceError(422, "empty_audio", f"{name}: the uploaded file is empty")
    st = request.app.state
    long = _check_durations(request, [(name, blob)])
    run = functools.partial(
        st.detector.explain,
        blob,
        method=method,
        start_s=start_s,
        end_s=end_s,
        budget=budget,
        name=name,
    )
    try:
        e = await st.pool.run(run, long=long)
    except ExplainStopped as err:
        status, code = STATUS_OF_KIND[err.kind]
        raise ServiceError(status, code, f"{name}: {err}") from None
    except AudioError as err:
        status, code = STATUS_OF_KIND.get(err.kind or "invalid", (415, "unsupported_audio"))
        if err.kind == "too_long":
            limit = st.settings.max_duration_s
            msg = f"{name}: the audio is longer than this service's limit of {limit:g} s per file"
        else:
            msg = f"{name}: {str(err).split(': ', 1)[-1]}"
        raise ServiceError(status, code, msg) from None
    except (ExplainError, ConfigError) as err:
        raise ServiceError(422, "invalid_request", f"{name}: {err}") from None
    d = e.to_dict()
    d["path"], d["model"] = name, st.model_name
    d["request_id"] = request.state.request_id
    d["processing_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    st.metrics.audio.inc(e.end_s - e.start_s)
    if st.audit:
        row = {"duration_s": e.end_s - e.start_s, "score": e.score, "label": e.label}
        sha = hashlib.sha256(blob).hexdigest()
        await audited(
            st.audit.record, request.state.request_id, sha, row, st.model_name,
            st.settings.model_version,
        )  # fmt: skip
    request.state.score = e.score
    if e.label == "no_speech":
        request.state.outcome = "no_speech"
    return JSONResponse(finite(d))  # strict JSON: no NaN or Infinity ever leaves
