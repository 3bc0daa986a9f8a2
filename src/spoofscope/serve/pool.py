"""Bounded inference lanes: a request holds a worker thread while it is scored; ``workers``
threads serve ordinary requests, and one more thread serves long ones (over
``long_audio_s`` of audio, as their headers declare), so that a 10-minute upload never makes
a 4-second one wait behind it. Beyond ``workers + queue_size`` requests in flight the answer
is a 503 with ``Retry-After``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from .errors import ServiceError
from .metrics import ServiceMetrics


class ScoringPool:
    def __init__(self, workers: int, queue_size: int, retry_after_s: int, metrics: ServiceMetrics):
        self.workers, self.limit = workers, workers + queue_size
        self.retry_after_s, self.metrics = retry_after_s, metrics
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="score")
        self.long_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-long")
        self.inflight = 0

    def _gauges(self):
        self.metrics.inflight.set(self.inflight)
        self.metrics.queue.set(max(self.inflight - self.workers, 0))

    async def run(self, fn, *args, long: bool = False):
        """``fn(*args)`` on a worker thread (the long lane when ``long``), or a 503 when the
        service is at capacity."""
        if self.inflight >= self.limit:
            raise ServiceError(
                503,
                "overloaded",
                "the service is at capacity; retry shortly",
                {"Retry-After": str(self.retry_after_s)},
            )
        self.inflight += 1
        self._gauges()
        pool = self.long_executor if long else self.executor
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        finally:
            self.inflight -= 1
            self._gauges()

    def shutdown(self) -> None:
        for ex in (self.executor, self.long_executor):
            ex.shutdown(wait=False, cancel_futures=True)
