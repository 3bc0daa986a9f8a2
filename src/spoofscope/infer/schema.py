"""One schema per record: the fields of everything spoofscope writes, each with its type and
meaning, defined here once.

A detection result (:class:`~spoofscope.infer.detector.DetectionResult`, ``detect --json``,
``POST /v1/detect``), its windows, timeline steps and segments, the events of a live stream
(``detect --stream - --json`` and ``/v1/stream``), a Parquet row (``detect --ray``) and the
audit trail's rows (``serve --audit-db``). The service builds its OpenAPI models from these
records (:mod:`spoofscope.serve.schemas`), the Parquet writer its columns, and the docs'
field reference its tables (``docs/gen/gen_fields.py``); the tests check each against real
output, so a field cannot be added, renamed or dropped in one place only.

Types are Python annotations of JSON values (``float | None`` is a number or null);
``items`` names the record of each element of a list of objects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Field:
    """One field: its name, type, meaning, and where it appears when not everywhere."""

    name: str
    type: object
    meaning: str
    items: Record | None = None  # a list of objects: the record of each element
    only: str | None = None  # e.g. "service": the field appears only there


@dataclass(frozen=True)
class Record:
    """A record: its name (the docs' heading), what it is, and its fields in output order."""

    name: str
    about: str
    fields: tuple[Field, ...]

    def names(self, where: str | None = None) -> list[str]:
        """The field names, in order; ``where``: those that appear there (fields marked
        ``only`` for another place left out)."""
        return [f.name for f in self.fields if f.only is None or f.only == where]


def _record(name: str, about: str, *fields: Field) -> Record:
    return Record(name, about, tuple(fields))


WINDOW = _record(
    "window",
    "One window of a result's ``windows``: a stretch the model judged whole.",
    Field("start_s", float, "where the window starts, in seconds from the start of the input"),
    Field("end_s", float, "where it ends (seconds); the last window may end past the audio"),
    Field("score", float | None, "the model's bona fide logit on it; null when it was silent"),
    Field("silent", bool, "whether the window was too quiet to judge (not scored)"),
)

STEP = _record(
    "timeline step",
    "One step of a result's ``timeline``: at most 0.5 s (one encoder frame for frame models).",
    Field("start_s", float, "where the step starts (seconds)"),
    Field("end_s", float, "where it ends (seconds)"),
    Field(
        "score",
        float | None,
        "mean score of the judged windows overlapping it; null where there is no sound",
    ),
)

SEGMENT = _record(
    "segment",
    "One segment of a result's ``segments``: a stretch judged one way; the segments cover the "
    "input without gaps.",
    Field("start_s", float, "where the segment starts (seconds)"),
    Field("end_s", float, "where it ends (seconds)"),
    Field("label", str, "``bonafide``, ``spoof`` or ``no_speech``"),
    Field("score", float | None, "duration-weighted mean score of its steps; null without sound"),
    Field("p_bonafide", float | None, "duration-weighted mean probability of its steps"),
)

RESULT = _record(
    "detection result",
    "The verdict on one input: ``Detector(...)(x).to_dict()``, a line of ``detect --json``, "
    "the answer of ``POST /v1/detect`` (plus the service fields) and the ``summary`` of a "
    "stream.",
    Field(
        "path",
        str | None,
        "the input: its path, ``<array>``, ``<N bytes>``, the upload's "
        "file name (service) or ``stream ID``",
    ),
    Field(
        "score",
        float | None,
        "the aggregated window score (bona fide logit, or the "
        "calibrated log-likelihood ratio); higher means bona fide; null without a verdict",
    ),
    Field(
        "p_bonafide",
        float | None,
        "probability that the input is bona fide: the calibration's, else the network's softmax",
    ),
    Field(
        "label",
        str | None,
        "``bonafide``, ``spoof``, ``no_speech`` (the detector "
        "abstains: too little sound), or null on error",
    ),
    Field(
        "confident",
        bool | None,
        "whether ``p_bonafide`` is outside the low-confidence "
        "band; null when the detector cannot claim confidence (see ``confidence_note``)",
    ),
    Field("duration_s", float | None, "length of the decoded audio (seconds)"),
    Field("windows", list, "every window judged, in order", items=WINDOW),
    Field("model", str, "the model's name (the service's public name)"),
    Field("calibrated", bool, "whether a calibration maps scores to probabilities"),
    Field(
        "threshold",
        float | None,
        "the score threshold of the label, when one is set "
        "(calibrated: the Bayes threshold); null: p_bonafide >= 0.5 decides",
    ),
    Field("window_samples", int | None, "samples per window (at the model's rate)"),
    Field("speech_s", float | None, "seconds of active sound in what was judged"),
    Field("reason", str | None, "why the detector abstained (label ``no_speech``)"),
    Field(
        "confidence_note",
        str | None,
        "why ``confident`` is null: the probability is not one the detector can stand behind",
    ),
    Field("notes", str, "the model card's notes: what it was trained on, what it misses"),
    Field("timeline", list, "a score per step of at most 0.5 s", items=STEP),
    Field(
        "segments",
        list,
        "contiguous bona fide / spoof / no_speech stretches read off the timeline",
        items=SEGMENT,
    ),
    Field("spoofed_s", float | None, "seconds judged spoof (sum of the spoof segments)"),
    Field("error", str | None, "what went wrong with this input, naming it; null on success"),
    Field(
        "error_kind",
        str | None,
        "``missing``, ``empty``, ``too_long``, ``invalid``, "
        "``invalid_samples``, ``timeout``, ``shutting_down`` or ``internal``",
    ),
    Field(
        "request_id",
        str,
        "the request's id (also the ``X-Request-ID`` header and the audit row's)",
        only="service",
    ),
    Field(
        "processing_ms", float, "time from receiving the request to the answer (ms)", only="service"
    ),
)

BATCH = _record(
    "batch answer",
    "The answer of ``POST /v1/detect/batch``: a result per file, in order; a file that "
    "fails has ``error`` set and does not fail the others.",
    Field("request_id", str, "the request's id"),
    Field("results", list, "one detection result (with the service fields) per file", items=RESULT),
)


def _event(kind: str, about: str, *fields: Field) -> Record:
    return _record(f"{kind} event", about, Field("type", str, f"``{kind}``"), *fields)


#: the events of a live stream, by ``type``, in the order a stream gives them
EVENTS = {
    "started": _event(
        "started",
        "The stream is accepted (service only; the first event).",
        Field("stream_id", str, "the stream's id (``GET /v1/streams/{id}``, the audit row's)"),
        Field("model", str, "the model's public name"),
        Field("sample_rate", int, "the rate of the audio sent (Hz)"),
        Field("hop_s", float, "seconds between window starts"),
        Field("window_s", float, "seconds per window"),
    ),
    "window": _event(
        "window",
        "A window judged, with the running verdict over the windows so far.",
        Field("start_s", float, "where the window starts, in seconds of stream audio"),
        Field("end_s", float, "where it ends (seconds)"),
        Field("score", float | None, "the window's score; null when it was silent"),
        Field("label", str | None, "the running label (null before any window is judged)"),
        Field("score_so_far", float | None, "the running aggregated score"),
        Field("p_bonafide", float | None, "the running probability of bona fide"),
        Field("confident", bool | None, "the running confidence (null: none claimed)"),
        Field(
            "scoring_ms",
            float,
            "wall time of the scoring call that judged the window, shared with the other "
            "streams' windows due with it (ms); the rest of latency_ms is waiting",
            only="service",
        ),
        Field(
            "latency_ms",
            float,
            "from the arrival of the window's last sample to this event (ms)",
            only="service",
        ),
    ),
    "segment": _event(
        "segment",
        "A segment that later audio can no longer change; every segment of the summary is "
        "given once, in order.",
        *SEGMENT.fields,
    ),
    "lagging": _event(
        "lagging",
        "The client sends faster than the server judges: reading pauses until the backlog "
        "halves (service only).",
        Field("behind_s", float, "seconds of audio received and not yet judged"),
        Field("max_lag_s", float, "the backlog at which reading pauses (serve --stream-max-lag)"),
    ),
    "error": _event(
        "error",
        "The stream is refused or ends early (service only); a summary follows when any "
        "audio was judged.",
        Field(
            "code",
            str,
            "a stable code, e.g. ``bad_message``, ``unauthorized``, "
            "``stream_too_long``, ``audit_unavailable``",
        ),
        Field("message", str, "what went wrong and what to do"),
    ),
    "summary": _event(
        "summary",
        "The result of the whole stream, as ``detect`` gives it on the recording (the last event).",
        Field("stream_id", str, "the stream's id", only="service"),
        Field(
            "ended_by",
            str,
            "``stop``, ``disconnected``, ``shutdown`` or the error code that ended it",
            only="service",
        ),
        *(f for f in RESULT.fields if f.only is None),
    ),
}

#: result fields kept as JSON text in a Parquet row (lists of objects)
JSON_IN_PARQUET = ("windows", "timeline", "segments")

PARQUET_ROW = _record(
    "Parquet row",
    "A row of ``detect --ray`` Parquet shards: the fields of ``detect --json``; the lists of "
    "objects are JSON text (``spoofscope.infer.ray.read_results`` parses them).",
    *(
        replace(f, type=str, items=None, meaning=f"{f.meaning} (JSON text)")
        if f.name in JSON_IN_PARQUET
        else f
        for f in RESULT.fields
        if f.only is None
    ),
)

AUDIT_DECISION = _record(
    "audit decision row",
    "A row of the audit table ``decisions`` (SQLite or PostgreSQL): one per verdict given (a "
    "file, a batch member, a stream).",
    Field("time", str, "when (ISO 8601, UTC, milliseconds)"),
    Field("request_id", str, "the request's id (a stream's: its stream id)"),
    Field("sha256", str, "SHA-256 of the audio bytes received"),
    Field("duration_s", float | None, "the result's ``duration_s``"),
    Field("score", float | None, "the result's ``score``"),
    Field("label", str | None, "the result's ``label``"),
    Field("p_bonafide", float | None, "the result's ``p_bonafide``"),
    Field("confident", int | None, "the result's ``confident`` as 1, 0 or null"),
    Field("model", str | None, "the model's public name"),
    Field("version", str | None, "the service's model version (serve --model-version)"),
)

AUDIT_REJECTION = _record(
    "audit rejection row",
    "A row of the audit table ``rejections``: one per refused request or stream.",
    Field("time", str, "when (ISO 8601, UTC, milliseconds)"),
    Field("request_id", str, "the request's (or stream's) id"),
    Field("endpoint", str | None, "the route refused (at most 200 characters)"),
    Field("status", int | None, "the HTTP status, or the WebSocket close code"),
    Field("reason", str | None, "the error code"),
    Field("api_key_sha256", str | None, "SHA-256 of the API key presented (never the key)"),
)

#: every record, in the order the field reference gives them
RECORDS = (
    RESULT,
    WINDOW,
    STEP,
    SEGMENT,
    BATCH,
    *EVENTS.values(),
    PARQUET_ROW,
    AUDIT_DECISION,
    AUDIT_REJECTION,
)


def type_name(f: Field) -> str:
    """A field's type in JSON words: ``number``, ``string or null``, ``list of segment`` ..."""
    if f.items is not None:
        return f"list of {f.items.name}"
    words = {float: "number", int: "integer", str: "string", bool: "boolean", list: "list"}
    parts = getattr(f.type, "__args__", None) or (f.type,)
    return " or ".join("null" if p is type(None) else words[p] for p in parts)
