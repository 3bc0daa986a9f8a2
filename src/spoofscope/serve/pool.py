"""A bounded pool of inference threads: ``workers`` scoring, ``queue_size`` waiting, and a 503
with ``Retry-After`` beyond that."""

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
        self.inflight = 0

    def _gauges(self):
        self.metrics.inflight.set(self.inflight)
        self.metrics.queue.set(max(self.inflight - self.workers, 0))

    async def run(self, fn, *args):
        """``fn(*args)`` on a worker thread, or a 503 when the pool and its queue are full."""
        if self.inflight >= self.limit:
            raise ServiceError(
                503,
                "overloaded",
                "the service is at capacity; retry shortly",
                {"Retry-After": str(self.retry_after_s)},
            )
        self.inflight += 1
        self._gauges()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.inflight -= 1
            self._gauges()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
