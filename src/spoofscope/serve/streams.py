"""Live streams over WebSocket, judged as the audio arrives by a
:class:`~spoofscope.infer.detector.DetectorStream`.

``/v1/stream``: the client sends a JSON start message ``{"type": "start", "sample_rate",
"encoding" (pcm_s16le | f32le | mulaw | alaw), "channels", "hop_s"?, "api_key"?}``, then
binary frames of audio, then ``{"type": "stop"}``. ``/v1/stream/twilio``: the messages of
Twilio Media Streams (``connected``, ``start`` with the key in ``customParameters``, ``media``
with base64 8-kHz mu-law, ``stop``); nothing is sent back to Twilio (it accepts no other
messages), and the running verdict is read from ``GET /v1/streams/{id}`` (the stream's id, or
Twilio's ``streamSid`` or ``callSid``).

The server sends JSON events, each with a ``type``: ``started``; ``window`` (``start_s``,
``end_s`` in seconds of stream audio, ``score``, the running verdict, ``latency_ms`` from the
arrival of the window's last sample to the event, and ``scoring_ms``, the wall time of the
scoring call that judged the window, shared with the other streams' windows due with it: the
rest of ``latency_ms`` is waiting, behind earlier calls and the stream's own backlog);
``segment`` (a stretch later audio can no longer change); ``lagging`` (the client sends
faster than the server judges: reading pauses, so memory stays bounded, until the backlog
halves); ``error`` (``code``, ``message``); and ``summary`` (``detect``'s result for the
whole stream). Every stream ends with a summary and one audit row of what was judged, however
it ends: stop, limit, bad message, dropped connection, or shutdown (close code 1001); a
summary whose row cannot be written (after ``audit_retry_s``) is withheld for an ``error``
``audit_unavailable`` (1011). A stream's state is read only with the API key that opened it.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict

import numpy as np
from fastapi import APIRouter, Request, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..audio import AudioError, RawDecoder
from ..errors import ConfigError
from ..infer.detector import feed_streams, to_json
from .audit import AuditUnavailable, write_off_loop
from .errors import ServiceError
from .routes import api, api_key_ok, presented_key

log = logging.getLogger("spoofscope.serve")

#: the encodings a start message may name -> :class:`~spoofscope.audio.RawDecoder` formats
ENCODINGS = {
    "pcm_s16le": "s16le",
    "s16le": "s16le",
    "f32le": "f32le",
    "pcm_f32le": "f32le",
    "mulaw": "mulaw",
    "alaw": "alaw",
}
#: query parameters that would put a key in the URL (logged by proxies): refused
_KEY_PARAMS = {"api_key", "apikey", "key", "token", "access_token"}
#: how many ended streams ``GET /v1/streams/{id}`` remembers
RECENT = 256

# close codes (RFC 6455)
NORMAL, GOING_AWAY, INVALID, POLICY, TRY_LATER = 1000, 1001, 1007, 1008, 1013


class StreamStop(Exception):
    """Ends a stream with an ``error`` event (unless ``code`` is None), then its summary."""

    def __init__(self, code: str | None, message: str = "", close: int = POLICY):
        super().__init__(message)
        self.code, self.message, self.close = code, message, close


@dataclasses.dataclass
class _Start:
    rate: int
    fmt: str
    channels: int
    hop_s: float | None
    key: str | None
    aliases: tuple[str, ...] = ()
    track: str | None = None  # Twilio: the track judged


def _bad(message: str) -> StreamStop:
    return StreamStop("bad_message", message, INVALID)


def _format(rate, ch, rate_name: str, ch_name: str) -> tuple[int, int]:
    """A start message's sample rate and channel count, checked alike for both endpoints."""
    if type(rate) is not int or not 4000 <= rate <= 192000:
        raise _bad(f"{rate_name} must be an integer number of Hz (4000-192000), got {rate!r}")
    if type(ch) is not int or not 1 <= ch <= 8:
        raise _bad(f"{ch_name} must be an integer 1-8, got {ch!r}")
    return rate, ch


def _reason(stop: StreamStop) -> str:
    """A close frame's reason (at most 123 bytes): Twilio reads no messages, only this."""
    return stop.message.encode()[:123].decode(errors="ignore")


def _native_start(msg: dict) -> _Start:
    if msg.get("type") != "start":
        raise _bad(
            f'the first message must be {{"type": "start", ...}}, got type {msg.get("type")!r}'
        )
    enc = msg.get("encoding", "pcm_s16le")
    if not isinstance(enc, str) or enc not in ENCODINGS:
        raise _bad(f"unknown encoding {enc!r:.60}; one of pcm_s16le, f32le, mulaw, alaw")
    rate, ch = _format(msg.get("sample_rate"), msg.get("channels", 1), "sample_rate", "channels")
    hop = msg.get("hop_s")
    if hop is not None and not (
        isinstance(hop, int | float) and not isinstance(hop, bool) and hop > 0
    ):
        raise _bad(f"hop_s must be a positive number of seconds, got {hop!r}")
    key = msg.get("api_key")
    return _Start(rate, ENCODINGS[enc], ch, hop, key if isinstance(key, str) else None)


#: the tracks of a Twilio stream
TRACKS = ("inbound", "outbound")


def _object(parent: dict, name: str, where: str) -> dict:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise _bad(f"{where}{name} must be an object, got {value!r:.60}")
    return value


def _twilio_start(msg: dict) -> _Start:
    start = _object(msg, "start", "")
    fmt = _object(start, "mediaFormat", "start.")
    enc = fmt.get("encoding")
    if not isinstance(enc, str) or enc.lower() not in ("audio/x-mulaw", "audio/pcmu"):
        raise _bad(f"start.mediaFormat.encoding {enc!r:.60}: only audio/x-mulaw is known")
    where = "start.mediaFormat."
    rate, ch = _format(
        fmt.get("sampleRate"), fmt.get("channels", 1), where + "sampleRate", where + "channels"
    )
    params = start.get("customParameters", {})
    if not isinstance(params, dict):
        raise _bad(f"start.customParameters must be an object, got {params!r:.60}")
    key = params.get("api_key") or params.get("apiKey")
    hop = params.get("hop_s")
    try:
        if isinstance(hop, bool):
            raise TypeError
        hop = float(hop) if hop is not None else None
    except (TypeError, ValueError):
        raise _bad(f"start.customParameters.hop_s must be a number, got {hop!r:.60}") from None
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not tracks or not all(t in TRACKS for t in tracks):
        raise _bad(f"start.tracks must be a list of {' and '.join(TRACKS)}, got {tracks!r:.60}")
    track = params.get("track") or ("inbound" if "inbound" in tracks else tracks[0])
    if track not in tracks:
        raise _bad(
            f"start.customParameters.track must be one of the stream's tracks {tracks}, "
            f"got {track!r:.60}"
        )
    aliases = tuple(
        str(v)[:64]
        for v in (msg.get("streamSid"), start.get("streamSid"), start.get("callSid"))
        if v
    )
    return _Start(rate, "mulaw", ch, hop, key if isinstance(key, str) else None, aliases, track)


async def _audit(write, *args) -> bool:
    """A refusal's row or a stream's shared state: not written (an error log line) when the
    database is down; a stream's verdict goes through :func:`_audit_retried` instead."""
    return await write_off_loop(write, *args, failing="stream state not recorded")


async def _audit_retried(st, write, *args) -> bool:
    """An audit write retried every half second for up to ``audit_retry_s``."""
    deadline = time.monotonic() + st.settings.audit_retry_s
    while not await write_off_loop(write, *args, failing="stream row not recorded yet"):
        if time.monotonic() >= deadline:
            log.error("stream row not recorded: its verdict is withheld")
            return False
        await asyncio.sleep(0.5)
    return True


def _owner_of(app, key: str | None) -> str | None:
    """Who a stream belongs to: the sha256 of the API key that opened it where keys are
    required (never the key itself), else None (an open service: anyone may read it)."""
    if app.state.settings.api_keys is None or not key:
        return None
    return hashlib.sha256(key.encode()).hexdigest()


def _scoped(owner: str | None, alias: str) -> str:
    """A Twilio alias (client-chosen: a ``callSid`` can be guessed) as the key that opened
    its stream sees it: another key's stream with the same ``callSid`` does not shadow it."""
    return f"{owner}:{alias}" if owner else alias


def _timed(fn, *args):
    """``fn(*args)`` and the seconds it took (run on a scoring thread)."""
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _closed(stream):
    """``stream.close()`` and the seconds its last windows took to judge (``stream.end()``),
    not counting the building of the stream's result, which follows (run on a scoring
    thread)."""
    _, took = _timed(stream.end)
    return stream.close(), took


def _cut(stream) -> int:
    """How many windows ``stream`` has cut so far, its verdict's and its localisation's: a
    call that cuts none judges nothing (a piece that completes no window) and is not
    observed as a scoring call."""
    st = stream.state
    return len(st.windows) + (len(st.where.windows) if st.where is not None else 0)


def _stamp(events: list[dict], seconds: float) -> None:
    """Each window event's ``scoring_ms``: the call that judged it took ``seconds``."""
    for e in events:
        if e["type"] == "window":
            e["scoring_ms"] = round(seconds * 1000, 2)


def _owned(state: dict, owner: str | None) -> dict:
    """``state`` with its owner, as kept in memory and in the shared table."""
    return {**state, "owner": owner}


class StreamBatcher:
    """The live streams' windows judged together: each stream's scorer hands in the audio it
    has received and awaits its events; whatever all streams handed in since the last call is
    judged in one :func:`~spoofscope.infer.detector.feed_streams` call on a scoring thread,
    so that k streams with windows due make one engine call per window length, not k. Nothing
    waits for company: a stream alone is judged at once, and audio that arrives while a call
    runs goes into the next. A call takes at most ``piece_s`` seconds of each stream's audio,
    so that a stream that hands in much at once (a large frame, a backlog) delays the others
    by one piece, not by all of it. A stream's refused audio or failed windows fail its own
    await. Each call's wall time goes into its window events (``scoring_ms``) and, where it
    judged a window, to ``observe`` (the service's ``spoofscope_stream_scoring_seconds``)."""

    piece_s = 1.0

    def __init__(self, observe=None):
        self.queue: list[tuple[object, np.ndarray, asyncio.Future]] = []
        self.task: asyncio.Task | None = None  # the drain running, if any
        self.observe = observe or (lambda seconds: None)

    async def feed(self, stream, samples: np.ndarray, executor) -> list[dict]:
        """``stream.feed(samples)``, judged together with the other streams' due audio, a
        piece of at most ``piece_s`` seconds per call."""
        n = max(1, int(self.piece_s * stream.rate))
        events = []
        for i in range(0, max(samples.size, 1), n):
            events += await self._piece(stream, samples[i : i + n], executor)
        return events

    async def _piece(self, stream, samples: np.ndarray, executor) -> list[dict]:
        done = asyncio.get_running_loop().create_future()
        self.queue.append((stream, samples, done))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain(executor))
        return await done

    async def _drain(self, executor) -> None:
        loop = asyncio.get_running_loop()
        work: list = []
        try:
            while self.queue:
                work, self.queue = self.queue, []
                cut = sum(_cut(s) for s, _, _ in work)
                try:
                    out, took = await loop.run_in_executor(
                        executor, _timed, feed_streams, [(s, x) for s, x, _ in work]
                    )
                    if sum(_cut(s) for s, _, _ in work) > cut:
                        self.observe(took)
                except Exception as e:  # noqa: BLE001 - e.g. the pool shut down: all fail
                    out, took = [e] * len(work), 0.0
                for (_, _, done), r in zip(work, out, strict=True):
                    if done.done():  # its stream stopped waiting
                        continue
                    if isinstance(r, Exception):
                        done.set_exception(r)
                    else:
                        _stamp(r, took)
                        done.set_result(r)
                await asyncio.sleep(0)  # the streams fed: their next pieces join the next call
        finally:  # cancelled (the service stopping): no stream waits for ever
            for _, _, done in work + self.queue:
                if not done.done():
                    done.cancel()
            self.queue, self.task = [], None


class StreamHub:
    """The service's live streams: how many, their latest state, and the ended ones."""

    def __init__(self, observe=None):
        self.active: dict[str, _Live] = {}
        self.recent: OrderedDict[str, dict] = OrderedDict()
        self.alias: dict[str, str] = {}
        self.closing: asyncio.Event | None = None
        # every live stream's windows, judged together; ``observe``: each call's seconds
        self.batcher = StreamBatcher(observe)

    def _closing(self) -> asyncio.Event:
        if self.closing is None:
            self.closing = asyncio.Event()
        return self.closing

    def state(self, sid: str, owner: str | None = None) -> dict | None:
        """A stream's state (by its id, or an alias as ``owner`` sees it), with its ``owner``
        (see :func:`_owned`)."""
        sid = self.alias.get(_scoped(owner, sid), sid)
        if sid in self.active:
            live = self.active[sid]
            return _owned(live.status(), live.owner)
        return self.recent.get(sid)

    def ended(self, live: _Live, state: dict) -> None:
        self.active.pop(live.sid, None)
        self.recent[live.sid] = _owned(state, live.owner)
        while len(self.recent) > RECENT:
            old, _ = self.recent.popitem(last=False)
            for k in [k for k, v in self.alias.items() if v == old]:
                del self.alias[k]

    async def shutdown(self, timeout: float) -> None:
        """Ask every stream to end with its summary (close code 1001) and wait for them."""
        self._closing().set()
        done = [lv.finished.wait() for lv in list(self.active.values())]
        if done:
            await asyncio.wait_for(asyncio.gather(*done), timeout)


class _Live:
    """One stream: decoder, detector stream, backlog and the events sent."""

    def __init__(self, ws: WebSocket, endpoint: str, start: _Start, sid: str, owner=None):
        app = ws.app
        st, s = app.state, app.state.settings
        self.ws, self.endpoint, self.sid, self.app = ws, endpoint, sid, app
        self.decode = RawDecoder(start.fmt, start.channels)
        det = st.detector
        hop = start.hop_s if start.hop_s is not None else s.stream_hop_s
        window_s = det.window_samples / det.sample_rate
        if not 0.1 <= hop <= window_s:
            raise _bad(f"hop_s {hop:g} is outside 0.1-{window_s:g} s (the model's window)")
        det = det.replace(windows=dataclasses.replace(det.windows, kind="sliding", hop_s=hop))
        self.stream = det.stream(sample_rate=start.rate, name=f"stream {sid}")
        self.rate, self.hop_s, self.window_s, self.track = start.rate, hop, window_s, start.track
        self.sha = hashlib.sha256()
        self.received = 0  # samples at the stream's rate
        self.arrivals: list[tuple[int, float]] = []  # (samples received, perf_counter)
        self.pending: list[np.ndarray] = []
        self.pending_n = 0
        self.wake = asyncio.Event()  # new audio for the scorer
        self.drained = asyncio.Event()  # backlog back under half the limit
        self.finished = asyncio.Event()
        self.t0 = time.perf_counter()
        self.last_window: dict | None = None
        self.segments: list[dict] = []
        self.windows = 0
        self.sent_ok = True
        self.finishing = False  # no more audio: the scorer judges the backlog and returns
        self.max_lag_s = s.stream_max_lag_s
        self.owner = owner
        self.aliases = tuple(_scoped(owner, a) for a in start.aliases)
        self._put_at = 0.0  # when the shared state was last written
        self._putting = False

    def status(self) -> dict:
        return {
            "stream_id": self.sid,
            "state": "live",
            "received_s": self.received / self.rate,
            "last_window": self.last_window,
            "segments": self.segments,
        }

    @property
    def backlog_s(self) -> float:
        return self.pending_n / self.rate

    async def send(self, event: dict) -> None:
        if not self.sent_ok or self.endpoint.endswith("/twilio"):
            return  # Twilio takes no messages back; a gone client takes nothing
        try:
            await self.ws.send_text(to_json(event))
        except Exception:  # noqa: BLE001 - the client went away; keep judging what arrived
            self.sent_ok = False

    def add(self, data: bytes) -> None:
        x = self.decode(data)  # AudioError on NaN samples
        self.sha.update(data)
        if x.size:
            self.received += x.size
            self.arrivals.append((self.received, time.perf_counter()))
            self.pending.append(x)
            self.pending_n += x.size
            self.wake.set()

    def _latency_ms(self, end_s: float, now: float) -> float:
        i = bisect.bisect_left(self.arrivals, (int(np.ceil(end_s * self.rate - 1e-6)), 0.0))
        t = self.arrivals[min(i, len(self.arrivals) - 1)][1] if self.arrivals else now
        return round((now - t) * 1000, 2)

    async def emit(self, events: list[dict]) -> None:
        st = self.app.state
        now = time.perf_counter()
        for e in events:
            if e["type"] == "window":
                e["latency_ms"] = self._latency_ms(e["end_s"], now)
                if e["score"] is not None:
                    st.metrics.stream_latency.observe(e["latency_ms"] / 1000)
                self.last_window = e
                self.windows += 1
            elif e["type"] == "segment":
                self.segments.append({k: v for k, v in e.items() if k != "type"})
            await self.send(e)
        self.share()

    def share(self, force: bool = False) -> None:
        """Write the live state to the audit database (at most once a second, one write at a
        time, never waited for), so that any replica answers GET /v1/streams/{id}."""
        audit = self.app.state.audit
        now = time.perf_counter()
        if audit is None or self._putting or (not force and now - self._put_at < 1.0):
            return
        self._put_at, self._putting = now, True

        async def put():
            try:
                state = _owned(self.status(), self.owner)
                await _audit(audit.put_stream, self.sid, state, self.aliases)
            finally:
                self._putting = False

        asyncio.ensure_future(put())

    async def score(self) -> None:
        """Judge the backlog as it grows, on the service's scoring threads together with the
        other live streams' (:class:`StreamBatcher`), until told to stop (``self.finishing``)
        and the backlog is empty."""
        pool, batcher = self.app.state.pool.executor, self.app.state.streams.batcher
        try:
            while True:
                if not self.pending:
                    if self.finishing:
                        return
                    await self.wake.wait()
                    self.wake.clear()
                    continue
                x = np.concatenate(self.pending)
                self.pending, self.pending_n = [], 0
                events = await batcher.feed(self.stream, x, pool)
                if self.backlog_s <= self.max_lag_s / 2:
                    self.drained.set()
                await self.emit(events)
        finally:  # failed or cancelled: a reader held back resumes, and finds the scorer done
            self.drained.set()


def _check_key(ws: WebSocket, key: str | None) -> None:
    if not api_key_ok(ws.app, presented_key(ws) or key):
        raise StreamStop(
            "unauthorized",
            "a valid API key is required: the X-API-Key or Authorization: Bearer header, or "
            "api_key in the start message (browsers cannot set WebSocket headers)",
            POLICY,
        )


async def _receive(ws: WebSocket, hub: StreamHub, idle_s: float) -> dict | None:
    """The next message; None when the service is shutting down; StreamStop when idle."""
    recv = asyncio.ensure_future(ws.receive())
    closing = asyncio.ensure_future(hub._closing().wait())
    done, _ = await asyncio.wait(
        {recv, closing}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
    )
    closing.cancel()
    if recv in done:
        return recv.result()
    recv.cancel()
    if closing in done:
        return None
    raise StreamStop("idle_timeout", f"no message for {idle_s:g} s (serve --stream-idle)")


def _json(msg: dict) -> dict:
    text = msg.get("text")
    if text is None:
        raise _bad("a binary frame was sent where a JSON text message was expected")
    try:
        out = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(f"a text message is not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(out, dict):
        raise _bad("a text message must be a JSON object")
    return out


async def _first(ws: WebSocket, hub: StreamHub, twilio: bool, idle_s: float) -> _Start | None:
    while True:
        msg = await _receive(ws, hub, idle_s)
        if msg is None:
            return None
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        m = _json(msg)
        if twilio:
            if m.get("event") == "connected":
                continue
            if m.get("event") != "start":
                raise _bad(f"expected Twilio's start message, got event {m.get('event')!r}")
            return _twilio_start(m)
        return _native_start(m)


def _audio(msg: dict, twilio: bool, track: str | None) -> bytes | str | None:
    """Audio bytes of a message, ``"stop"``, or None (a message that carries none)."""
    if twilio:
        m = _json(msg)
        ev = m.get("event")
        if ev == "stop":
            return "stop"
        if ev == "start":  # the format of the audio already judged cannot change midway
            raise _bad("a second start message; a Twilio stream has one")
        if ev != "media":
            return None  # mark, dtmf, ...
        media = _object(m, "media", "a media message's ")
        if media.get("track", "inbound") != track:
            return None
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise _bad(f"a media message's payload must be a base64 string, got {payload!r:.60}")
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise _bad("a media message's payload is not base64") from None
    if msg.get("bytes") is not None:
        return msg["bytes"]
    m = _json(msg)
    if m.get("type") == "stop":
        return "stop"
    raise _bad(f"unknown message type {m.get('type')!r}; send binary audio or a stop message")


async def serve_stream(ws: WebSocket, twilio: bool) -> None:
    app = ws.app
    st, s, hub = app.state, app.state.settings, app.state.streams
    endpoint = "/v1/stream/twilio" if twilio else "/v1/stream"
    sid = uuid.uuid4().hex
    await ws.accept()
    live: _Live | None = None
    stop = StreamStop(None, close=NORMAL)
    reason = "stop"

    async def refuse(e: StreamStop) -> None:
        if not twilio:
            await ws.send_text(json.dumps({"type": "error", "code": e.code, "message": e.message}))
        st.metrics.streams.labels(endpoint, e.code).inc()
        if st.audit:
            await _audit(
                st.audit.record_rejection, sid, endpoint, e.close, e.code, presented_key(ws)
            )
        await ws.close(e.close, reason=_reason(e))

    try:
        if _KEY_PARAMS & set(ws.query_params):
            raise StreamStop(
                "key_in_url",
                "never put an API key in the URL (proxies log it); "
                "send it in a header or the start message",
                POLICY,
            )
        if hub._closing().is_set():
            raise StreamStop("shutting_down", "the service is shutting down", GOING_AWAY)
        start = await _first(ws, hub, twilio, s.stream_idle_s)
        if start is None:
            raise StreamStop("shutting_down", "the service is shutting down", GOING_AWAY)
        _check_key(ws, start.key)
        if len(hub.active) >= s.max_streams:
            raise StreamStop(
                "too_many_streams",
                f"this service holds at most {s.max_streams} "
                "streams at once (serve --max-streams); retry later",
                TRY_LATER,
            )
        live = _Live(ws, endpoint, start, sid, _owner_of(app, presented_key(ws) or start.key))
    except StreamStop as e:
        await refuse(e)
        return
    except WebSocketDisconnect:
        return
    except ConfigError as e:
        await refuse(StreamStop("bad_message", str(e), INVALID))
        return
    except Exception:  # noqa: BLE001 - refused, recorded and closed all the same
        log.exception("stream %s failed to start", sid)
        await refuse(StreamStop("internal_error", "the stream could not start", 1011))
        return
    hub.active[sid] = live
    for a in live.aliases:
        hub.alias[a] = sid
    st.metrics.streams_active.inc()
    await live.send(
        {
            "type": "started",
            "stream_id": sid,
            "model": st.model_name,
            "sample_rate": live.rate,
            "hop_s": live.hop_s,
            "window_s": live.window_s,
        }
    )
    live.share(force=True)
    scorer = asyncio.ensure_future(live.score())
    try:
        while True:
            if scorer.done():  # the scorer failed: end the stream with what was judged
                scorer.result()
            if live.received / live.rate > s.max_stream_s or (
                time.perf_counter() - live.t0 > s.max_stream_s + s.stream_idle_s
            ):
                raise StreamStop(
                    "stream_too_long",
                    f"streams last at most {s.max_stream_s:g} s (serve --max-stream)",
                )
            msg = await _receive(ws, hub, s.stream_idle_s)
            if msg is None:
                reason, stop = "shutdown", StreamStop(None, close=GOING_AWAY)
                break
            if msg["type"] == "websocket.disconnect":
                reason, live.sent_ok = "disconnected", False
                break
            live.share()  # at most once a second: the shared state shows the stream alive
            data = _audio(msg, twilio, live.track)
            if data == "stop":
                break
            if data:
                live.add(data)
            if live.backlog_s > live.max_lag_s:
                live.drained.clear()
                await live.send(
                    {
                        "type": "lagging",
                        "behind_s": round(live.backlog_s, 3),
                        "max_lag_s": live.max_lag_s,
                    }
                )
                await live.drained.wait()  # reading pauses: TCP holds the client back
    except StreamStop as e:
        stop, reason = e, e.code
    except AudioError as e:
        stop, reason = StreamStop(e.kind or "bad_audio", str(e), INVALID), e.kind or "bad_audio"
    except Exception as e:  # noqa: BLE001 - any failure still ends with a summary and a row
        log.exception("stream %s failed", sid)
        stop, reason = StreamStop("internal_error", f"{type(e).__name__}", 1011), "internal"
    await _end(live, scorer, stop, reason)


async def _end(live: _Live, scorer, stop: StreamStop, reason: str) -> None:
    """End a stream (:func:`_finish`), and whatever happens there, free its slot, forget it
    as live, and close its connection."""
    st = live.app.state
    state = {"stream_id": live.sid, "state": "ended", "error": "internal_error"}
    try:
        state = await _finish(live, scorer, stop, reason)
    except Exception:  # noqa: BLE001 - the slot is freed all the same
        log.exception("stream %s: ending failed", live.sid)
        stop = StreamStop("internal_error", "", 1011)
    finally:
        st.metrics.streams_active.dec()
        st.streams.ended(live, state)
        live.finished.set()
        if live.ws.client_state == WebSocketState.CONNECTED:
            try:
                await live.ws.close(stop.close, reason=_reason(stop))
            except Exception:  # noqa: BLE001 - already gone
                pass


async def _finish(live: _Live, scorer, stop: StreamStop, reason: str) -> dict:
    """Judge what arrived, send the rest of the events and the summary, write the audit row;
    the stream's ended state."""
    st = live.app.state
    live.finishing = True
    live.wake.set()
    live.drained.set()
    try:
        await scorer
    except Exception:  # noqa: BLE001 - already judged windows stay judged
        log.exception("stream %s: scoring failed", live.sid)
    if stop.code is not None:
        await live.send({"type": "error", "code": stop.code, "message": stop.message})
    loop = asyncio.get_running_loop()
    cut = _cut(live.stream)
    res, took = await loop.run_in_executor(st.pool.executor, _closed, live.stream)
    if _cut(live.stream) > cut:  # the stream's last windows are judged here
        st.metrics.stream_scoring.observe(took)
    _stamp(live.stream.last_events, took)
    await live.emit(live.stream.last_events)
    d = res.to_dict()
    d.update(path=f"stream {live.sid}", model=st.model_name)
    summary = {"type": "summary", "stream_id": live.sid, "ended_by": reason, **d}
    st.metrics.streams.labels(live.endpoint, reason).inc()
    st.metrics.stream_audio.inc(live.received / live.rate)
    live._put_at = float("inf")  # no more live-state writes: the ended state comes last
    while live._putting:
        await asyncio.sleep(0.01)
    state = {"stream_id": live.sid, "state": "ended", "summary": summary}
    if st.audit:
        # as for uploads, the verdict is not final without its row: the write is retried
        # for up to audit_retry_s, and a stream that still has none gets an error instead
        if res.error is None:
            args = (live.sid, live.sha.hexdigest(), d, st.model_name, st.settings.model_version)
            recorded = await _audit_retried(st, st.audit.record, *args)
        else:
            args = (
                live.sid,
                live.endpoint,
                stop.close,
                res.error_kind or reason,
                presented_key(live.ws),
            )
            recorded = await _audit_retried(st, st.audit.record_rejection, *args)
        if not recorded:
            stop.close = 1011
            error = {
                "code": "audit_unavailable",
                "message": "the stream's verdict could not be recorded in the audit trail, so "
                "it is not given",
            }
            summary = None
            state = {"stream_id": live.sid, "state": "ended", "error": error}
            await live.send({"type": "error", **error})
        await _audit(st.audit.put_stream, live.sid, _owned(state, live.owner), live.aliases)
    if summary is not None:
        await live.send(summary)
    log.info(
        json.dumps(
            {
                "ts": time.time(),
                "stream_id": live.sid,
                "path": live.endpoint,
                "reason": reason,
                "received_s": round(live.received / live.rate, 3),
                "windows": live.windows,
                "label": res.label,
                "score": res.score,
                "error": res.error,
            }
        )
    )
    return state


streams = APIRouter()


@streams.websocket("/v1/stream")
async def stream(ws: WebSocket):
    await serve_stream(ws, twilio=False)


@streams.websocket("/v1/stream/twilio")
async def stream_twilio(ws: WebSocket):
    await serve_stream(ws, twilio=True)


@api.get("/streams/{sid}", summary="A live stream's running verdict, or an ended one's summary")
async def stream_state(request: Request, sid: str):
    """By the stream's id, or Twilio's ``streamSid`` or ``callSid``."""
    st = request.app.state
    owner = _owner_of(request.app, presented_key(request))
    out = st.streams.state(sid, owner)
    if out is None and st.audit is not None:  # another replica's stream
        s = st.settings
        # a live stream's state is written at least once per message gap (under
        # stream_idle_s) or per batch of backlog: older than this, its replica is gone
        stale_s = s.stream_idle_s + s.stream_max_lag_s + 5.0
        try:
            out = await asyncio.to_thread(st.audit.get_stream, sid, stale_s, _scoped(owner, sid))
        except AuditUnavailable as e:
            log.error("audit trail unavailable, answering 503: %s", e)
            raise ServiceError(
                503, "audit_unavailable", "the shared stream state cannot be read; retry shortly"
            ) from None
    # a stream opened with one key is not found with another (ids and Twilio's callSid can be
    # guessed): the same 404 as for an id that was never used
    if out is None or out.get("owner") != owner:
        raise ServiceError(404, "unknown_stream", f"no live or recent stream {sid[:80]!r}")
    return {k: v for k, v in out.items() if k != "owner"}
