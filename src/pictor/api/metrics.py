"""Prometheus metrics: requests by route and status, latency, images made, queue depth, model time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class CacheCollector(Collector):
    """`pictor_cache_{hits,misses}_total` and `pictor_cache_bytes` by cache (result, prompt), as last updated.

    The caches count for themselves; the /metrics route copies their counts here before each scrape.
    """

    def __init__(self) -> None:
        self.stats: dict[str, tuple[int, int, int]] = {}  # cache -> (hits, misses, bytes)

    def update(self, stats: dict[str, tuple[int, int, int]]) -> None:
        self.stats = dict(stats)

    def collect(self) -> Iterator[Metric]:
        hits = CounterMetricFamily("pictor_cache_hits", "Cache hits", labels=["cache"])
        misses = CounterMetricFamily("pictor_cache_misses", "Cache misses", labels=["cache"])
        size = GaugeMetricFamily("pictor_cache_bytes", "Bytes held by a cache", labels=["cache"])
        for name, (hit, miss, held) in sorted(self.stats.items()):
            hits.add_metric([name], hit)
            misses.add_metric([name], miss)
            size.add_metric([name], held)
        yield from (hits, misses, size)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("pictor_http_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("pictor_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.images = Counter("pictor_images_total", "Images produced", ["model", "kind"], registry=self.registry)
        self.steps = Histogram("pictor_request_step_seconds", "Time per step of an image request (Server-Timing)",
                               ["step"], registry=self.registry,
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.queue_depth = Gauge("pictor_queue_depth", "Requests waiting for a model", ["model"],
                                 registry=self.registry)
        self.caches = CacheCollector()
        self.registry.register(self.caches)
        self.model_seconds = Gauge("pictor_model_busy_seconds", "Time models spent running", ["model"],
                                   registry=self.registry)
        self.dropped = Gauge("pictor_engine_requests_dropped", "Queued model requests cancelled before they ran",
                             ["model"], registry=self.registry)
        self.stopped = Gauge("pictor_engine_calls_stopped",
                             "Model calls stopped part way because every request in them was cancelled",
                             ["model"], registry=self.registry)

    def observe_steps(self, steps_ms: dict[str, float]) -> None:
        """One request's time per step (milliseconds), into the per-step histogram."""
        for name, ms in steps_ms.items():
            self.steps.labels(name).observe(ms / 1000)
