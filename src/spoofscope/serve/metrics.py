"""Prometheus metrics of the service, in a registry of its own."""

from __future__ import annotations


class ServiceMetrics:
    def __init__(self, replica: str = "", version: str = ""):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = CollectorRegistry()
        # which process these numbers come from (Prometheus adds instance; this names it)
        Info("spoofscope_replica", "This service process", registry=self.registry).info(
            {"replica": replica, "version": version}
        )
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
        self.no_speech = Counter(
            "spoofscope_no_speech",
            "Files not judged: no speech or too short (label no_speech)",
            registry=self.registry,
        )

        self.streams_active = Gauge(
            "spoofscope_streams_active", "Live streams open now", registry=self.registry
        )
        self.streams = Counter(
            "spoofscope_streams",
            "Streams ended (or refused) by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.stream_audio = Counter(
            "spoofscope_stream_audio_seconds", "Seconds of live audio received",
            registry=self.registry,
        )  # fmt: skip
        self.stream_latency = Histogram(
            "spoofscope_stream_verdict_latency_seconds",
            "From the arrival of a window's last sample to its event",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, 10),
            registry=self.registry,
        )
        self.stream_scoring = Histogram(
            "spoofscope_stream_scoring_seconds",
            "Wall time of the calls that judge live streams' windows (one call shared by the "
            "streams with windows due; a stream's last windows in its closing call)",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, 10),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
