"""Concurrent live streams share engine calls (``feed_streams``, and the service's collector
that drains every stream's due audio into it): each stream's events are those it gets alone,
k streams with windows due make one engine call per window length, not k, and what goes wrong
with one stream (bad samples, windows the engine fails on) stays with that stream."""

import asyncio
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _models import responsive_lcnn

from spoofscope.audio import AudioError
from spoofscope.infer import Decision, Detector, Limits, TorchEngine, WindowPolicy, feed_streams

SR = 16000
K = 4  # concurrent streams


class _Recording(TorchEngine):
    """A real engine that records the shape of every batch it is called with, and fails any
    batch holding a window at full scale (the stand-in for input the engine cannot take)."""

    def __init__(self, model):
        super().__init__(model)
        self.calls: list[tuple[int, int]] = []

    def __call__(self, x):
        self.calls.append(x.shape)
        if np.any(np.max(np.abs(x), axis=1) >= 0.999):
            raise RuntimeError("a window at full scale")
        return super().__call__(x)


@pytest.fixture(scope="module")
def det():
    """Sliding 2-s windows every 0.5 s and the localisation windows (1 s every 0.25 s): two
    window lengths; a batch size that holds every stream's due windows in one call."""
    w = WindowPolicy(hop_s=0.5, samples=2 * SR).localising()
    return Detector(_Recording(responsive_lcnn(0)), windows=w, decision=Decision(vad="energy"),
                    limits=Limits(batch_size=256))  # fmt: skip


def _signal(seed, seconds=8.0):
    """Tone and noise in proportions that differ by stream, so that their scores differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t)
    a = int((0.1 + 0.15 * seed) * x.size)
    b = a + int(0.3 * x.size)
    x[a:b] = 0.1 * rng.standard_normal(b - a)
    return x.astype(np.float32)


def _pieces(x, seed):
    """Pieces of 0.1-0.6 s, cut differently for each stream."""
    cuts = np.cumsum(np.random.default_rng(100 + seed).integers(SR // 10, 6 * SR // 10, 200))
    return np.split(x, cuts[cuts < x.size])


def _alone(det, pieces):
    """One stream fed piece by piece: its events per piece, the batch shapes of each feed, and
    its result."""
    s = det.stream()
    events, shapes = [], []
    for p in pieces:
        det.engine.calls.clear()
        events.append(s.feed(p))
        shapes.append(list(det.engine.calls))
    return events, shapes, s.close()


def _by_piece(det, x):
    """One stream's events fed ``x`` alone in the pieces the service's batcher judges it in
    (``StreamBatcher.piece_s`` seconds each: the running verdict of a window event is the one
    after its piece)."""
    from spoofscope.serve.streams import StreamBatcher

    n = int(StreamBatcher.piece_s * SR)
    events, shapes, _ = _alone(det, np.split(x, range(n, x.size, n)))
    return [e for per in events for e in per], shapes


def _same(got, want, tol):
    assert [e["type"] for e in got] == [e["type"] for e in want]
    for g, w in zip(got, want, strict=True):
        for key, v in w.items():
            if isinstance(v, float):
                assert g[key] == pytest.approx(v, abs=tol), key
            else:
                assert g[key] == v, key


def _scores(events):
    return [e["score"] for per in events for e in per if e.get("score") is not None]


def test_concurrent_streams_share_calls_and_each_gets_its_own_events(det):
    signals = [_signal(i) for i in range(K)]
    pieces = [_pieces(x, i) for i, x in enumerate(signals)]
    alone = [_alone(det, p) for p in pieces]
    scores = np.array([s for a in alone for s in _scores(a[0])])
    assert np.ptp(scores) > 0.5  # the streams' windows differ: a mix-up would show
    tol = 1e-5 * np.ptp(scores)  # batch composition may move float32 sums, nothing more

    streams = [det.stream() for _ in range(K)]
    got = [[] for _ in range(K)]
    shared = 0
    for r in range(max(len(p) for p in pieces)):
        live = [i for i in range(K) if r < len(pieces[i])]
        det.engine.calls.clear()
        out = feed_streams([(streams[i], pieces[i][r]) for i in live])
        for i, events in zip(live, out, strict=True):
            got[i].append(events)
        # what each stream's feed alone sent to the engine, per window length ...
        due: dict[int, int] = {}
        for i in live:
            for b, n in alone[i][1][r]:
                due[n] = due.get(n, 0) + b
        # ... goes in one call per length
        assert sorted(det.engine.calls, key=lambda c: c[1]) == sorted(
            ((b, n) for n, b in due.items()), key=lambda c: c[1]
        )
        shared += sum(len(alone[i][1][r]) for i in live) - len(det.engine.calls)
    assert shared > 0  # calls were shared (without the batching there would be none)
    for i in range(K):
        assert len(got[i]) == len(alone[i][0])
        for g, w in zip(got[i], alone[i][0], strict=True):
            _same(g, w, tol)
        res, want = streams[i].close(), alone[i][2]
        assert res.label == want.label and res.score == pytest.approx(want.score, abs=tol)
        assert [g["label"] for g in res.segments] == [g["label"] for g in want.segments]


def test_one_streams_bad_input_and_engine_failure_stay_its_own(det):
    x = [_signal(i, 6.0) for i in range(3)]
    full = np.where(x[2] >= 0, 1.0, -1.0).astype(np.float32)  # the engine fails on it
    alone = [_alone(det, np.array_split(x[i], 6))[0] for i in range(2)]
    tol = 1e-5 * np.ptp(_scores(alone[0]) + _scores(alone[1]))
    a, b, c = (det.stream() for _ in range(3))
    pa, pb, pc = np.array_split(x[0], 6), np.array_split(x[1], 6), np.array_split(full, 6)
    out = feed_streams([(a, pa[0]), (b, pb[0])])
    _same(out[0], alone[0][0], tol)
    _same(out[1], alone[1][0], tol)
    # the full-scale stream's windows fail the shared call: retried alone, only it fails
    det.engine.calls.clear()
    out = feed_streams([(a, pa[1]), (b, pb[1]), (c, pc[0])])
    assert len(det.engine.calls) > 2  # the shared calls, then the retries
    assert isinstance(out[2], RuntimeError) and "full scale" in str(out[2])
    _same(out[0], alone[0][1], tol)
    _same(out[1], alone[1][1], tol)
    # NaN samples: that stream's error, the other's events as alone
    nan = np.full(800, np.nan, np.float32)
    out = feed_streams([(a, pa[2]), (b, nan)])
    assert isinstance(out[1], AudioError) and out[1].kind == "invalid_samples"
    _same(out[0], alone[0][2], tol)
    for k in range(3, 6):
        (events,) = feed_streams([(a, pa[k])])
        _same(events, alone[0][k], tol)


def test_the_services_collector_drains_every_due_stream_into_one_call(det):
    """The service's :class:`StreamBatcher`: streams that hand in audio while a batch is
    being judged (or in the same tick) are judged in one ``feed_streams`` call."""
    pytest.importorskip("fastapi")
    from spoofscope.serve.streams import StreamBatcher

    signals = [_signal(i, 4.0) for i in range(K)]
    alone, shapes = zip(*(_by_piece(det, x) for x in signals), strict=True)
    tol = 1e-5 * np.ptp([s for a in alone for s in _scores([a])])

    async def main():
        batcher = StreamBatcher()
        with ThreadPoolExecutor(1) as pool:
            streams = [det.stream() for _ in range(K)]
            det.engine.calls.clear()
            got = await asyncio.gather(
                *(batcher.feed(s, x, pool) for s, x in zip(streams, signals, strict=True))
            )
            calls = list(det.engine.calls)
            bad = await asyncio.gather(
                batcher.feed(streams[0], np.full(10, np.nan, np.float32), pool),
                batcher.feed(streams[1], np.zeros(10, np.float32), pool),
                return_exceptions=True,
            )
        return got, calls, bad

    got, calls, bad = asyncio.run(main())
    # the streams' pieces judged together: a call per piece and window length, not K
    per_piece = [{n for sh in shapes for _, n in sh[r]} for r in range(len(shapes[0]))]
    assert len(calls) == sum(map(len, per_piece)) and len(calls) < sum(map(len, shapes))
    assert sum(b for b, _ in calls) == sum(b for sh in shapes for per in sh for b, _ in per)
    for g, w in zip(got, alone, strict=True):
        _same(g, w, tol)
    assert isinstance(bad[0], AudioError) and bad[1] == []


def test_shared_calls_hold_at_most_batch_size_windows(det):
    """Windows of several streams share calls of at most ``limits.batch_size`` windows (the
    bound on memory), each window scored once, each stream's events as alone; streams of
    detectors that differ only in hop (as each live stream's ``hop_s``) share them too."""
    small = det.replace(limits=dataclasses.replace(det.limits, batch_size=3))
    other = small.replace(windows=dataclasses.replace(small.windows, hop_s=1.0))
    dets = [small, other] * (K // 2)
    signals = [_signal(i, 4.0) for i in range(K)]
    alone = [_alone(d, [x]) for d, x in zip(dets, signals, strict=True)]
    tol = 1e-5 * np.ptp([s for a in alone for s in _scores(a[0])])
    streams = [d.stream() for d in dets]
    det.engine.calls.clear()
    out = feed_streams(list(zip(streams, signals, strict=True)))
    calls = list(det.engine.calls)
    for n in (SR, 2 * SR):
        due = sum(b for a in alone for b, m in a[1][0] if m == n)
        assert due > 3 * K  # more windows than one call may hold
        sizes = [b for b, m in calls if m == n]
        assert sum(sizes) == due and max(sizes) <= 3 and len(sizes) == -(-due // 3)
    for g, a in zip(out, alone, strict=True):
        _same(g, a[0][0], tol)
    # within the batch size, one call per length for them all (not one per detector)
    wide = [det, det.replace(windows=dataclasses.replace(det.windows, hop_s=1.0))]
    det.engine.calls.clear()
    feed_streams([(d.stream(), x) for d, x in zip(wide, signals, strict=False)])
    assert sorted(n for _, n in det.engine.calls) == [SR, 2 * SR]


def test_each_failure_goes_to_its_own_stream_whatever_its_place(det):
    """A refused piece ahead of a stream whose windows fail the engine: each stream gets its
    own outcome (the failures are not shifted onto a neighbour)."""
    x = _signal(0, 3.0)
    full = np.where(_signal(1, 3.0) >= 0, 1.0, -1.0).astype(np.float32)
    (want,), _, _ = _alone(det, [x])
    tol = 1e-5 * np.ptp(_scores([want]))
    nan = np.full(800, np.nan, np.float32)
    out = feed_streams([(det.stream(), nan), (det.stream(), x), (det.stream(), full)])
    assert isinstance(out[0], AudioError) and out[0].kind == "invalid_samples"
    _same(out[1], want, tol)
    assert isinstance(out[2], RuntimeError) and "full scale" in str(out[2])
    with pytest.raises(RuntimeError, match="full scale"):  # a stream alone fails as well
        det.stream().feed(full)


class _Held:
    """``feed_streams`` that waits at its first call until released: a batch held in flight."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls: list[int] = []  # streams per call

    def __call__(self, feeds):
        self.calls.append(len(feeds))
        self.entered.set()
        self.release.wait(60)
        return feed_streams(feeds)


def test_audio_handed_in_during_a_call_goes_into_the_next(det, monkeypatch):
    pytest.importorskip("fastapi")
    from spoofscope.serve import streams as mod

    held = _Held()
    monkeypatch.setattr(mod, "feed_streams", held)
    signals = [_signal(i, 3.0) for i in range(3)]
    alone = [_by_piece(det, x)[0] for x in signals]
    tol = 1e-5 * np.ptp([s for a in alone for s in _scores([a])])

    async def main():
        batcher = mod.StreamBatcher()
        with ThreadPoolExecutor(1) as pool:
            try:
                first = asyncio.ensure_future(batcher.feed(det.stream(), signals[0], pool))
                await asyncio.to_thread(held.entered.wait, 60)
                rest = [batcher.feed(det.stream(), x, pool) for x in signals[1:]]
                held.release.set()
                return await asyncio.wait_for(asyncio.gather(first, *rest), 120)
            finally:
                held.release.set()

    got = asyncio.run(main())
    # the latecomers together, with the first stream's next piece, in the next call
    assert held.calls == [1, 3, 3, 2]
    for g, w in zip(got, alone, strict=True):
        _same(g, w, tol)


def test_a_cancelled_drain_ends_every_await_and_the_next_feed_works(det, monkeypatch):
    """The service stopping cancels the drain task: the stream in the call and the stream
    queued behind it are both cancelled (none waits for ever), and a later feed is judged."""
    pytest.importorskip("fastapi")
    from spoofscope.serve import streams as mod

    held = _Held()
    monkeypatch.setattr(mod, "feed_streams", held)
    x = _signal(0, 3.0)
    want, _ = _by_piece(det, x)

    async def main():
        batcher = mod.StreamBatcher()
        with ThreadPoolExecutor(1) as pool:
            try:
                a = asyncio.ensure_future(batcher.feed(det.stream(), x, pool))
                await asyncio.to_thread(held.entered.wait, 60)
                b = asyncio.ensure_future(batcher.feed(det.stream(), x, pool))
                await asyncio.sleep(0)
                batcher.task.cancel()
                ended = await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), 60)
            finally:
                held.release.set()
            left = (batcher.task, list(batcher.queue))
            later = await asyncio.wait_for(batcher.feed(det.stream(), x, pool), 120)
        return ended, left, later

    ended, left, later = asyncio.run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in ended)
    assert left == (None, [])
    _same(later, want, 1e-5 * np.ptp(_scores([want])))


def test_a_stream_handing_in_much_audio_delays_the_others_by_one_piece(det, monkeypatch):
    """One client's large frame (or backlog) is judged a piece per call: a stream that hands
    in half a second while the large one's first call runs gets its events before the large
    one is through, and the large one's windows and segments are those it gets alone."""
    pytest.importorskip("fastapi")
    from spoofscope.serve import streams as mod

    held = _Held()
    monkeypatch.setattr(mod, "feed_streams", held)
    big, small = _signal(0, 8.0), _signal(1, 0.5)
    want, _ = _by_piece(det, big)
    order = []

    async def main():
        batcher = mod.StreamBatcher()

        async def feed(name, x):
            events = await batcher.feed(det.stream(), x, pool)
            order.append(name)
            return events

        with ThreadPoolExecutor(1) as pool:
            try:
                a = asyncio.ensure_future(feed("big", big))
                await asyncio.to_thread(held.entered.wait, 60)
                b = asyncio.ensure_future(feed("small", small))
                held.release.set()
                return await asyncio.wait_for(asyncio.gather(a, b), 120)
            finally:
                held.release.set()

    got, _ = asyncio.run(main())
    assert order == ["small", "big"]
    assert held.calls == [1, 2] + [1] * 6  # 8 pieces of a second; the small one in the 2nd
    _same(got, want, 1e-5 * np.ptp(_scores([want])))


def test_streams_on_different_models_are_not_scored_by_one_engine(det):
    """Two detectors on different networks, with the same window lengths: a shared call holds
    windows of one engine only, so each stream's scores are its own network's (grouping by
    window length alone would score the second stream with the first's network)."""
    w = dataclasses.replace(det.windows)
    other = Detector(_Recording(responsive_lcnn(1, gap=5.0)), windows=w,
                     decision=Decision(vad="energy"), limits=Limits(batch_size=256))  # fmt: skip
    x = _signal(1)
    want = [_alone(d, [x])[0][0] for d in (det, other)]
    assert [e["score"] for e in want[0]] != pytest.approx([e["score"] for e in want[1]], abs=1e-3)
    det.engine.calls.clear()
    other.engine.calls.clear()
    got = feed_streams([(det.stream(), x), (other.stream(), x)])
    for g, wnt in zip(got, want, strict=True):
        assert [e["score"] for e in g] == pytest.approx([e["score"] for e in wnt], abs=1e-5)
    assert det.engine.calls and other.engine.calls  # each network scored its own windows


def test_each_calls_own_wall_time_is_observed_and_in_its_window_events(det, monkeypatch):
    """Each shared call's wall time goes to ``observe`` and into the window events it gave
    (``scoring_ms``). The first call is held in flight for ``hold`` seconds while two streams
    queue behind it: it takes at least ``hold``; the calls run one after another, so their
    times add up to at most the time all of them took, which a time counted from when a
    stream handed its audio in (the queued streams' wait for the held call) would pass."""
    pytest.importorskip("fastapi")
    from spoofscope.serve import streams as mod

    held = _Held()
    monkeypatch.setattr(mod, "feed_streams", held)
    hold = 0.5
    signals = [_signal(i, 3.0) for i in range(3)]
    observed: list[float] = []

    async def main():
        batcher = mod.StreamBatcher(observed.append)
        with ThreadPoolExecutor(1) as pool:
            try:
                t0 = time.perf_counter()
                first = asyncio.ensure_future(batcher.feed(det.stream(), signals[0], pool))
                await asyncio.to_thread(held.entered.wait, 60)
                rest = [asyncio.ensure_future(batcher.feed(det.stream(), x, pool))
                        for x in signals[1:]]  # fmt: skip
                await asyncio.sleep(hold)  # the two queued behind the held call
                held.release.set()
                got = await asyncio.wait_for(asyncio.gather(first, *rest), 120)
                return got, time.perf_counter() - t0
            finally:
                held.release.set()

    got, elapsed = asyncio.run(main())
    assert held.calls == [1, 3, 3, 2] and len(observed) == len(held.calls)
    assert observed[0] >= hold and sum(observed) <= elapsed
    windows = [e for g in got for e in g if e["type"] == "window"]
    assert windows and {e["scoring_ms"] for e in windows} <= {round(t * 1000, 2) for t in observed}
    # the queued streams' windows carry the times of the calls after the held one
    queued = {e["scoring_ms"] for g in got[1:] for e in g if e["type"] == "window"}
    assert queued and queued <= {round(t * 1000, 2) for t in observed[1:]}
