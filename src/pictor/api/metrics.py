"""Prometheus metrics: requests by route and status, latency, images made, queue depth, model time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("pictor_http_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("pictor_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.images = Counter("pictor_images_total", "Images produced", ["model", "kind"], registry=self.registry)
        self.queue_depth = Gauge("pictor_queue_depth", "Requests waiting for a model", ["model"],
                                 registry=self.registry)
        self.model_seconds = Gauge("pictor_model_busy_seconds", "Time models spent running", ["model"],
                                   registry=self.registry)
